import { join } from 'node:path';
import { recoverCredentials, type CredentialFiles } from '../../src/net/renewal.js';
import type { DepotLayout } from '../layout.js';

/** The files a certificate renewal of this depot writes (src/net/renewal.ts): key, certificate, request. */
export function depotCredentialFiles(layout: DepotLayout): CredentialFiles {
  return { key: layout.key, cert: layout.cert, csr: join(layout.tlsDir, 'depot.csr') };
}

/** Finish (or drop) a renewal a crash interrupted; run before the credentials are read. */
export function recoverDepotCredentials(layout: DepotLayout): ReturnType<typeof recoverCredentials> {
  return recoverCredentials(depotCredentialFiles(layout));
}
