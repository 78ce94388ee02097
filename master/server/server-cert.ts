import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { issueServerCertificate } from '../../src/pki/ca.js';
import { certificateInfo } from '../../src/pki/cert-info.js';
import { installCredentials, recoverCredentials, renewalDue } from '../../src/net/renewal.js';
import type { MasterContext } from '../context.js';

/**
 * The master's own HTTPS certificate (825 days from `master init`) is renewed like a machine's: once
 * two thirds of its lifetime have passed, a new key and certificate from the internal CA, installed
 * crash-safely. Depots and agents trust the CA, not this certificate, so they accept the new one.
 */
export async function renewServerCertificateIfDue(
  ctx: Pick<MasterContext, 'layout' | 'config' | 'ca' | 'log'>,
  now: Date,
): Promise<boolean> {
  const files = { key: ctx.layout.serverKey, cert: ctx.layout.serverCert };
  recoverCredentials(files);
  const info = certificateInfo(readFileSync(files.cert, 'utf8'));
  if (!renewalDue(info, now)) return false;
  const hosts = ctx.config.hosts;
  const next = issueServerCertificate(ctx.ca, {
    commonName: ctx.config.name,
    dnsNames: hosts.filter((h) => !isIP(h)),
    ipAddresses: hosts.filter((h) => isIP(h)),
    now,
  });
  await installCredentials(files, next);
  ctx.log.info(
    { notAfter: certificateInfo(next.certPem).notAfter.toISOString() },
    "master's server certificate renewed",
  );
  return true;
}
