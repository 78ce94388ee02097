import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The shared core's folders form no cycle: each folder of src/ can be read (and tested) knowing only
 * the folders below it. A cycle such as pki → net → pki means neither can change alone.
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `src/<folder>` of a file, or undefined for files directly in src/ (errors.ts, log.ts …). */
function folderOf(file: string): string | undefined {
  const parts = relative(join(root, 'src'), file).split('/');
  return parts.length > 1 ? parts[0] : undefined;
}

/** Folder graph of src/: an edge per relative import (type-only imports too) between two folders. */
function folderGraph(): Map<string, Map<string, string[]>> {
  const graph = new Map<string, Map<string, string[]>>();
  for (const file of sourceFiles(join(root, 'src'))) {
    const from = folderOf(file);
    if (!from) continue;
    for (const m of readFileSync(file, 'utf8').matchAll(/\b(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'/g)) {
      const to = folderOf(resolve(dirname(file), m[1] as string));
      if (!to || to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, edges);
      edges.set(to, [...(edges.get(to) ?? []), relative(root, file)]);
    }
  }
  return graph;
}

/** Every cycle's folders, found by depth-first search (the graph has a few dozen nodes). */
function cycles(graph: Map<string, Map<string, string[]>>): string[][] {
  const found = new Map<string, string[]>();
  const walk = (path: string[]): void => {
    const last = path[path.length - 1] as string;
    for (const next of graph.get(last)?.keys() ?? []) {
      const at = path.indexOf(next);
      if (at >= 0) {
        const cycle = path.slice(at);
        const key = [...cycle].sort().join(',');
        if (!found.has(key)) found.set(key, [...cycle, next]);
      } else walk([...path, next]);
    }
  };
  for (const start of graph.keys()) walk([start]);
  return [...found.values()];
}

describe('src/ folder dependencies', () => {
  it('have no cycle', () => {
    const graph = folderGraph();
    const described = cycles(graph).map((c) =>
      c
        .slice(1)
        .map((to, i) => `${c[i]} → ${to} (${graph.get(c[i] as string)?.get(to)?.[0]})`)
        .join(', '),
    );
    expect(described).toEqual([]);
  });

  it('sees an import between folders (the scan itself works)', () => {
    expect(folderGraph().get('net')?.has('pki')).toBe(true);
  });
});
