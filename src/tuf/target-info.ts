import type { TargetFile } from '@tufjs/models';

/** A target as TUF metadata lists it: length, hashes (sha256 at least) and the publisher's `custom` JSON. */
export interface TargetInfo {
  path: string;
  length: number;
  hashes: Record<string, string>;
  custom: Record<string, unknown>;
}

export function targetInfoOf(t: TargetFile): TargetInfo {
  return { path: t.path, length: t.length, hashes: { ...t.hashes }, custom: structuredClone(t.custom) };
}
