import type { HttpClient } from '../../src/net/client.js';
import { ReadClient, type RemoteLayout } from '../../src/read/client.js';

/** A place the agent fetches from: a depot, or finally the master. */
export interface Source {
  name: string;
  url: string;
  kind: 'depot' | 'master';
  site?: string;
  /**
   * Listed by the signed depot directory: the server must present the machine certificate of depot `name`.
   */
  fromDirectory?: boolean;
  /** The master's other URLs (configured, then from the signed depot directory): the client fails over. */
  alternateUrls?: string[];
}

/**
 * One source over HTTP(S): the shared read-API client (src/read/client.ts) with the agent's wording
 * of a refused certificate, and the source it was built for (ranking, penalties).
 */
export class RemoteSource extends ReadClient {
  constructor(
    readonly source: Source,
    http: HttpClient,
    layout?: RemoteLayout,
  ) {
    super(http, {
      name: source.name,
      role: 'agent',
      refused: `${source.name} (${source.url}) refused this agent`,
      ...(layout ? { layout } : {}),
    });
  }
}
