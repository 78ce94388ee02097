import { DepotsyncError } from '../errors.js';
import { HttpError } from '../net/http-error.js';

/** Who is reading: the wording of a refusal names the machine and the command that enrolls it again. */
export type ReaderRole = 'agent' | 'depot';

/** Server codes that mean "this machine is not allowed anywhere": no other source will answer differently. */
const FATAL_REFUSALS = new Set(['revoked', 'blocked', 'expired']);

function httpErrorOf(e: unknown): HttpError | undefined {
  if (e instanceof HttpError) return e;
  const cause = (e as { cause?: unknown } | undefined)?.cause;
  return cause instanceof HttpError ? cause : undefined;
}

/** The refusal code when a source refused this machine's certificate for good (revoked, blocked, expired). */
export function fatalRefusal(e: unknown): string | undefined {
  const http = httpErrorOf(e);
  if (!http || (http.status !== 401 && http.status !== 403)) return undefined;
  return http.serverCode && FATAL_REFUSALS.has(http.serverCode) ? http.serverCode : undefined;
}

function refusalHint(why: string, role: ReaderRole): string {
  const enroll = `enroll it again (depotsync ${role} init)`;
  switch (why) {
    case 'revoked':
      return role === 'agent'
        ? `this agent's certificate was revoked by the master operator; ${enroll}`
        : `this depot's certificate was revoked by the master operator; it cannot sync until it is enrolled again (depotsync depot init)`;
    case 'expired': {
      const when = role === 'agent' ? 'at a fetch' : 'during `depot serve`';
      return `this ${role}'s certificate expired before it renewed itself (renewal starts at two thirds of its lifetime, ${when}); ${enroll}`;
    }
    case 'blocked':
      return role === 'agent'
        ? 'the master operator blocked this agent; ask them to unblock it'
        : 'ask the master operator to approve or unblock this depot';
    default:
      return role === 'agent'
        ? 'ask the master operator to approve this agent, or check that the depot belongs to this master'
        : 'ask the master operator to approve or unblock this depot';
  }
}

/**
 * A read-API server refusing this machine (401/403 from its mutual-TLS gate) becomes one clear
 * message: a revoked or blocked machine must not look like a network problem. `refused` opens the
 * message (`depot-1 (https://…) refused this agent`); anything else is returned unchanged.
 */
export function explainRefusal(e: unknown, role: ReaderRole, refused: string): unknown {
  if (!(e instanceof HttpError) || (e.status !== 401 && e.status !== 403)) return e;
  const why = e.serverCode ?? (e.status === 401 ? 'unauthorized' : 'forbidden');
  return new DepotsyncError(
    e.status === 401 ? 'unauthorized' : 'forbidden',
    `${refused}: ${why} (${e.message})`,
    {
      hint: refusalHint(why, role),
      cause: e,
    },
  );
}
