import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient } from '../../../src/net/client.js';
import { tlsServerOptions } from '../../../src/net/tls.js';
import { createCa, issueServerCertificate, loadCa } from '../../../src/pki/ca.js';

/**
 * How clients verify a listener with an operator certificate (real TLS on 127.0.0.1): only with the
 * organisation's CA given as `listenerCaPem`, on its host name; internal-CA certificates still have to be
 * the named machine's.
 */
describe('trust for operator listener certificates', () => {
  const internal = createCa({ commonName: 'depotsync internal CA' });
  const org = createCa({ commonName: 'Org CA' });
  const servers: https.Server[] = [];
  let orgUrl = '';
  let internalUrl = '';

  const start = async (cert: { keyPem: string; certPem: string }) => {
    const s = https.createServer(tlsServerOptions({ ...cert, caPem: internal.certPem }), (_req, res) =>
      res.end('ok'),
    );
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
    servers.push(s);
    return `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };

  beforeAll(async () => {
    const orgCert = issueServerCertificate(loadCa(org.keyPem, org.certPem), {
      commonName: 'depot.example.org',
      ipAddresses: ['127.0.0.1'],
    });
    orgUrl = await start({ keyPem: orgCert.keyPem, certPem: `${orgCert.certPem}${org.certPem}` });
    // An internal-CA certificate that is not depot-1's.
    internalUrl = await start(
      issueServerCertificate(loadCa(internal.keyPem, internal.certPem), {
        commonName: 'someone-else',
        ipAddresses: ['127.0.0.1'],
      }),
    );
  });
  afterAll(() => {
    for (const s of servers) s.close();
  });

  const get = (baseUrl: string, listenerCaPem?: string) => {
    const client = new HttpClient({
      baseUrl,
      caPem: internal.certPem,
      ...(listenerCaPem ? { listenerCaPem } : {}),
      serverMachine: { name: 'depot-1', role: 'depot' },
      timeoutMs: 5000,
    });
    return client.getBytes('/x', { maxBytes: 100 }).finally(() => client.close());
  };

  it('an operator certificate is refused without tls.caFile and accepted with it', async () => {
    await expect(get(orgUrl)).rejects.toThrow(/server certificate not trusted/);
    expect((await get(orgUrl, org.certPem)).toString()).toBe('ok');
  });

  it('an internal-CA certificate must still be the named machine’s', async () => {
    await expect(get(internalUrl, org.certPem)).rejects.toThrow(
      /belongs to server someone-else, not depot depot-1/,
    );
  });
});
