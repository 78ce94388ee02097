import type { Root } from '@tufjs/models';
import type { Logger } from 'pino';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { HttpError } from '../../src/net/http-error.js';
import { TufClient, type ClientLimits, type RefreshResult, type TrustedStore } from '../../src/tuf/client.js';
import {
  VALIDITY_WINDOW_MAX_BYTES,
  verifyValidityWindow,
  type ValidityWindow,
} from '../../src/wire/validity-window.js';
import type { RemoteSource } from './remote.js';

/** Where a depot serves the validity window of a generation it imported from an offline bundle. */
export const VALIDITY_WINDOW_PATH = '/v1/validity-window';

export interface CatalogRefreshOptions {
  remote: RemoteSource;
  store: TrustedStore;
  fingerprint?: string | undefined;
  now: () => Date;
  limits?: Partial<ClientLimits> | undefined;
  log: Logger;
  bins: 'stale' | 'none';
}

export interface CatalogRefresh {
  client: TufClient;
  result: RefreshResult;
  /** Set when the metadata was accepted under an air-gapped depot's validity window. */
  window?: ValidityWindow;
}

/**
 * The TUF update from one source (timestamp → snapshot → targets → bins, verified up to the pinned root),
 * with one exception to the freeze check, for air-gapped depots (README "Freshness across
 * an air gap"): when the update fails ONLY because timestamp, snapshot, targets or a bin expired, and the
 * source is a depot, the agent asks that depot for its validity window and accepts the metadata if:
 *   1. the window is signed by a threshold of the master's timestamp keys in the root this agent trusts
 *      (forged window);
 *   2. the window names the depot whose TLS certificate served it (a window replayed by another depot:
 *      no other machine honours a depot's window);
 *   3. the window is open now, by this agent's clock (indefinite freeze);
 *   4. the metadata, verified as of the window's signed export time, is exactly the window's generation
 *      and timestamp version (the window of one generation never vouches for another).
 * The retried update writes into a pending store, committed only after check 4: a refused window leaves
 * the agent's trusted metadata as it was. A depot without a window, the master, and an expired ROOT keep
 * the plain TUF freeze check.
 */
export async function refreshCatalog(o: CatalogRefreshOptions): Promise<CatalogRefresh> {
  const client = await TufClient.open({
    source: o.remote,
    store: o.store,
    fingerprint: o.fingerprint,
    now: o.now,
    limits: o.limits,
    logger: o.log,
  });
  try {
    return { client, result: await client.refresh({ bins: o.bins }) };
  } catch (e) {
    if (!isDepotsyncError(e, 'expired') || o.remote.source.kind !== 'depot') throw e;
    const root = client.trusted.root.md.signed;
    // An expired root is not covered by any window: it fails the root walk before the online roles.
    if (o.now().getTime() >= Date.parse(root.expires)) throw e;
    return refreshUnderWindow(o, root, e);
  }
}

async function refreshUnderWindow(
  o: CatalogRefreshOptions,
  root: Root,
  expired: DepotsyncError,
): Promise<CatalogRefresh> {
  const src = o.remote.source;
  const label = `${src.name} (${src.url})`;
  const { bytes, peer } = await fetchWindow(o.remote, expired);
  // 1. Forged or altered window.
  const w = verifyValidityWindow(bytes, root, `validity window from ${label}`);
  // 2. A window made for another depot, presented by this one.
  if (!peer || peer.organizationalUnit !== 'depot' || peer.commonName !== w.depot) {
    throw new DepotsyncError(
      'forbidden',
      `validity window from ${label} is for depot ${w.depot}, but the server's certificate names ${peer ? `${peer.organizationalUnit || 'machine'} ${peer.commonName}` : 'no depot'}; its expired metadata is refused (${expired.message})`,
      {
        hint: 'a depot may only use its own validity window; import a fresh bundle into that depot, or use another source',
        cause: expired,
      },
    );
  }
  // 3. Freeze: the window itself must still be open.
  const now = o.now();
  if (now.getTime() >= Date.parse(w.validUntil)) {
    throw new DepotsyncError(
      'expired',
      `${label}: the validity window of depot ${w.depot} for generation ${w.generation} closed at ${w.validUntil} (now ${now.toISOString()}), and its metadata expired (${expired.message})`,
      {
        hint: `carry a fresh bundle to depot ${w.depot} (depotsync master export --depot ${w.depot}), or fetch from a source with current metadata`,
        cause: expired,
      },
    );
  }
  // 4. The metadata as of the window's export time, kept aside until it proves to be the window's generation.
  const issuedAt = new Date(w.issuedAt);
  const pending = new PendingTrustedStore(o.store);
  const client = await TufClient.open({
    source: o.remote,
    store: pending,
    fingerprint: o.fingerprint,
    now: () => issuedAt,
    limits: o.limits,
    logger: o.log,
  });
  const result = await client.refresh({ bins: o.bins });
  if (result.generation !== w.generation || result.timestampVersion !== w.timestampVersion) {
    throw new DepotsyncError(
      'forbidden',
      `${label} serves generation ${result.generation} (timestamp v${result.timestampVersion}), but its validity window covers generation ${w.generation} (timestamp v${w.timestampVersion}); its expired metadata is refused`,
      {
        hint: 'the depot mixes metadata of different imports; import a fresh bundle into it, or use another source',
        cause: expired,
      },
    );
  }
  await pending.commit();
  o.log.info(
    { source: src.name, depot: w.depot, generation: w.generation, validUntil: w.validUntil },
    "expired metadata accepted under the depot's validity window",
  );
  return { client, result, window: w };
}

/**
 * `GET /v1/validity-window` over the source's mutual-TLS client, with the subject
 * of the certificate it came over.
 */
async function fetchWindow(
  remote: RemoteSource,
  expired: DepotsyncError,
): Promise<{ bytes: Buffer; peer: { commonName: string; organizationalUnit: string } | undefined }> {
  const src = remote.source;
  try {
    const res = await remote.http.request('GET', VALIDITY_WINDOW_PATH, {
      maxBytes: VALIDITY_WINDOW_MAX_BYTES,
      what: `validity window from ${src.name}`,
    });
    const parts: Buffer[] = [];
    for await (const part of res.body) parts.push(part as Buffer);
    return { bytes: Buffer.concat(parts), peer: res.peerSubject };
  } catch (e) {
    // Freeze protection: expired metadata from a depot without a window stays refused.
    if (e instanceof HttpError && e.status === 404) {
      throw new DepotsyncError(
        'expired',
        `${expired.message}; ${src.name} (${src.url}) has no validity window for it (its generation did not come from an offline bundle)`,
        {
          hint: expired.hint ?? 'the source serves stale metadata; use another source',
          cause: expired,
        },
      );
    }
    const explained = remote.explain(e);
    throw isDepotsyncError(explained)
      ? new DepotsyncError(
          explained.code,
          `${expired.message}; the validity window of ${src.name} could not be read: ${explained.message}`,
          { ...(explained.hint ? { hint: explained.hint } : {}), cause: explained },
        )
      : explained;
  }
}

/**
 * A trusted store whose writes are held back until `commit` (then written through, as later writes are).
 * Reads see the held-back writes. Used so a refused validity window changes nothing the agent trusts.
 */
export class PendingTrustedStore implements TrustedStore {
  private readonly held = new Map<string, { bytes: Uint8Array; version: number } | null>();
  private committed = false;

  constructor(private readonly base: TrustedStore) {}

  async load(role: string): Promise<Uint8Array | undefined> {
    const h = this.held.get(role);
    if (h === null) return undefined;
    return h ? h.bytes : this.base.load(role);
  }

  async save(role: string, bytes: Uint8Array, version: number): Promise<void> {
    if (this.committed) return this.base.save(role, bytes, version);
    this.held.set(role, { bytes, version });
  }

  async remove(role: string): Promise<void> {
    if (this.committed) return this.base.remove(role);
    this.held.set(role, null);
  }

  /**
   * Write what was held back (the last write per role; the root walk happened before, outside this store).
   */
  async commit(): Promise<void> {
    for (const [role, h] of this.held) {
      if (h === null) await this.base.remove(role);
      else await this.base.save(role, h.bytes, h.version);
    }
    this.held.clear();
    this.committed = true;
  }
}
