import { DepotsyncError } from '../../src/errors.js';
import { optionalString, requireString } from '../../src/command/args.js';
import type { Command, CommandContext } from '../../src/command/command.js';
import type { KeyChangeResult } from './rotate.js';

/** `depotsync master keys …` and `master root …`: the key lifecycle (docs/keys.md). */
const dirOption = { dir: { type: 'string' as const } };

async function withMaster<T>(
  c: CommandContext,
  what: string,
  fn: (ctx: import('../context.js').MasterContext) => Promise<T>,
): Promise<T> {
  const { openMaster } = await import('../context.js');
  const ctx = await openMaster(requireString(c.values, 'dir', what), c.log);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

export function intFlag(c: CommandContext, name: string, what: string): number | undefined {
  const v = optionalString(c.values, name);
  if (v === undefined) return undefined;
  if (!/^\d{1,3}$/.test(v))
    throw new DepotsyncError('usage', `${what}: --${name} must be a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

const list = (c: CommandContext, name: string): string[] => (c.values[name] as string[] | undefined) ?? [];

function changeOutput(r: KeyChangeResult) {
  const subject = r.change === 'renew' ? 'root renewal' : `${r.change} key rotation`;
  const human =
    r.state === 'committed'
      ? `${subject}: root v${r.rootVersion}, generation ${r.generation}; new key(s) ${r.newKeyIds.map((k) => k.slice(0, 16)).join(', ')}` +
        (r.newKeyFiles.length ? `\nnew private key files:\n  ${r.newKeyFiles.join('\n  ')}` : '')
      : `${subject} needs the offline root keys: root signing request for root v${r.rootVersion} written to ${r.request?.file}\n` +
        `digest ${r.request?.digest}; signatures so far: ${r.request?.oldSignatures} of ${r.request?.oldThreshold} current root keys, ${r.request?.newSignatures} of ${r.request?.newThreshold} new ones\n` +
        `sign it where the root keys are: depotsync master root sign --request FILE --key ROOTKEY.pem ...\nthen: depotsync master root import --dir M FILE`;
  return { json: r, human };
}

const rootKeyOptions = {
  'root-key': { type: 'string' as const, multiple: true },
  'request-out': { type: 'string' as const },
};

export const trustCommands: Command[] = [
  {
    path: ['master', 'keys', 'status'],
    usage: 'master keys status --dir M [--json]',
    summary:
      "every TUF role's key ids, threshold and metadata expiry, and which private keys are on the master",
    options: dirOption,
    async run(c) {
      return withMaster(c, 'master keys status', async (ctx) => {
        const { keysStatus, keysStatusLines } = await import('./status.js');
        const s = await keysStatus(ctx, ctx.db.now().getTime());
        return { json: s, human: keysStatusLines(s) };
      });
    },
  },
  {
    path: ['master', 'keys', 'rotate'],
    usage:
      'master keys rotate --dir M --role root|targets|snapshot|timestamp|bins [--root-keys N --root-threshold K] [--new-root-key-dir DIR] [--root-key FILE|DIR]... [--request-out FILE] [--json]',
    summary:
      'a new key for a role and a new root version signed by old and new root keys (or a signing request when the root keys are offline)',
    options: {
      ...dirOption,
      role: { type: 'string' },
      'root-keys': { type: 'string' },
      'root-threshold': { type: 'string' },
      'new-root-key-dir': { type: 'string' },
      ...rootKeyOptions,
    },
    async run(c) {
      const what = 'master keys rotate';
      const { parseKeyRole } = await import('../keys.js');
      const role = parseKeyRole(requireString(c.values, 'role', what), what);
      const rootKeys = intFlag(c, 'root-keys', what);
      const rootThreshold = intFlag(c, 'root-threshold', what);
      const newDir = optionalString(c.values, 'new-root-key-dir');
      if (
        role !== 'root' &&
        (rootKeys !== undefined || rootThreshold !== undefined || newDir !== undefined)
      ) {
        throw new DepotsyncError(
          'usage',
          `${what}: --root-keys, --root-threshold and --new-root-key-dir apply to --role root only`,
        );
      }
      return withMaster(c, what, async (ctx) => {
        const { changeKeys } = await import('./rotate.js');
        const out = optionalString(c.values, 'request-out');
        const r = await changeKeys(ctx, role, {
          actor: 'cli',
          rootKeys: list(c, 'root-key'),
          ...(rootKeys !== undefined ? { newRootKeys: rootKeys } : {}),
          ...(rootThreshold !== undefined ? { newRootThreshold: rootThreshold } : {}),
          ...(newDir ? { newRootKeyDir: newDir } : {}),
          ...(out ? { requestOut: out } : {}),
        });
        return changeOutput(r);
      });
    },
  },
  {
    path: ['master', 'root', 'renew'],
    usage: 'master root renew --dir M [--root-key FILE|DIR]... [--request-out FILE] [--json]',
    summary:
      'root N+1 with the same keys and a new expiry now (or a signing request when the root keys are offline)',
    options: { ...dirOption, ...rootKeyOptions },
    async run(c) {
      return withMaster(c, 'master root renew', async (ctx) => {
        const { changeKeys } = await import('./rotate.js');
        const out = optionalString(c.values, 'request-out');
        return changeOutput(
          await changeKeys(ctx, 'renew', {
            actor: 'cli',
            rootKeys: list(c, 'root-key'),
            ...(out ? { requestOut: out } : {}),
          }),
        );
      });
    },
  },
  {
    path: ['master', 'root', 'sign'],
    usage:
      'master root sign --request FILE --key ROOTKEY.pem [--key ...] [--fingerprint FP] [--out FILE] [--json]',
    summary:
      'on the machine holding root keys: check a root signing request and add the signatures of these keys (written back to FILE, or --out)',
    options: {
      request: { type: 'string' },
      key: { type: 'string', multiple: true },
      fingerprint: { type: 'string' },
      out: { type: 'string' },
    },
    async run(c) {
      const what = 'master root sign';
      const file = requireString(c.values, 'request', what);
      const keys = list(c, 'key');
      if (!keys.length) throw new DepotsyncError('usage', `${what}: give at least one --key ROOTKEY.pem`);
      const { readFileSync } = await import('node:fs');
      const { fromSystemError } = await import('../../src/errors.js');
      const { writeFileAtomic } = await import('../../src/fs/atomic-write.js');
      const { readKeyFile } = await import('../keys.js');
      const r = await import('./request.js');
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (e) {
        throw fromSystemError(e, `root signing request ${file}`);
      }
      const request = r.decodeRootRequest(bytes, `root signing request ${file}`);
      const fp = optionalString(c.values, 'fingerprint');
      const outcome = r.signRootRequest(request, keys.map(readKeyFile), `root signing request ${file}`, fp);
      const out = optionalString(c.values, 'out') ?? file;
      await writeFileAtomic(out, r.encodeRootRequest(outcome.request));
      const ready = outcome.old.valid >= outcome.old.threshold && outcome.new.valid >= outcome.new.threshold;
      const v = outcome.request.root.signed.version as number;
      return {
        json: {
          file: out,
          master: request.master,
          rootVersion: v,
          purpose: request.purpose,
          digest: r.requestDigest(request),
          signedBy: outcome.signedBy,
          old: outcome.old,
          new: outcome.new,
          complete: ready,
        },
        human:
          `signed root v${v} of master ${request.master} (${request.purpose}), digest ${r.requestDigest(request)}\n` +
          `signatures: ${outcome.old.valid} of ${outcome.old.threshold} current root keys, ${outcome.new.valid} of ${outcome.new.threshold} new root keys\n` +
          (ready
            ? `complete: import it with depotsync master root import --dir M ${out}`
            : 'not complete yet: sign with more root keys'),
      };
    },
  },
  {
    path: ['master', 'root', 'import'],
    usage: 'master root import --dir M FILE [--json]',
    summary:
      'adopt the root signed offline (a signed root signing request): a new root version and generation',
    options: dirOption,
    positionals: [1, 1],
    async run(c) {
      return withMaster(c, 'master root import', async (ctx) => {
        const { importRootRequest } = await import('./rotate.js');
        const r = await importRootRequest(ctx, c.positionals[0] as string, { actor: 'cli' });
        return {
          json: r,
          human: `root v${r.rootVersion} imported (${r.purpose}), generation ${r.generation}`,
        };
      });
    },
  },
];
