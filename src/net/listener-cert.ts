import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { DepotsyncError, fromSystemError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * The `tls` section of master.json, depot.json and agent.json (docs/operations.md, "Certificates"):
 * `certFile` + `keyFile` replace the internal certificate of an HTTPS listener with one from the
 * organisation's CA (chain, leaf first, and its key); `caFile` is what a client trusts for such a
 * listener besides the internal CA. Machine authentication (client certificates) stays on the internal CA.
 */
export interface ListenerTlsConfig {
  certFile: string;
  keyFile: string;
  caFile?: string;
}

type TlsKey = 'certFile' | 'keyFile' | 'caFile';

/** Decode a `tls` section; `keys` are the ones this file may carry. '' = not set. */
export function decodeListenerTls(
  where: string,
  value: unknown,
  keys: readonly TlsKey[] = ['certFile', 'keyFile'],
): ListenerTlsConfig {
  if (value === undefined) value = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DepotsyncError('bad-input', `${where}: tls must be an object, got ${JSON.stringify(value)}`);
  }
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) {
    if (!(keys as readonly string[]).includes(k))
      throw new DepotsyncError('bad-input', `${where}: unknown setting "tls.${k}"`, {
        hint: `tls takes ${keys.join(', ')}`,
      });
    if (typeof v[k] !== 'string')
      throw new DepotsyncError(
        'bad-input',
        `${where}: tls.${k} must be a file path or '', got ${JSON.stringify(v[k])}`,
      );
  }
  const out: ListenerTlsConfig = {
    certFile: (v.certFile as string) ?? '',
    keyFile: (v.keyFile as string) ?? '',
  };
  if (keys.includes('caFile')) out.caFile = (v.caFile as string) ?? '';
  if (!keys.includes('certFile')) return { certFile: '', keyFile: '', caFile: out.caFile ?? '' };
  if ((out.certFile === '') !== (out.keyFile === '')) {
    throw new DepotsyncError('bad-input', `${where}: tls.certFile and tls.keyFile go together; got only one`);
  }
  return out;
}

export interface ListenerCertificate {
  certPem: string;
  keyPem: string;
  subject: string;
  notAfter: Date;
  fingerprint256: string;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `${what} ${path}`);
  }
}

/**
 * Read and check an operator certificate before it is served: the chain parses, the key is the leaf's,
 * and the leaf is valid at `now`. Every failure is a `bad-certificate` naming the file, so a start or a
 * reload can refuse it and keep what it had.
 */
export function loadListenerCertificate(
  tls: Pick<ListenerTlsConfig, 'certFile' | 'keyFile'>,
  now: Date = new Date(),
): ListenerCertificate {
  const certPem = readPem(tls.certFile, 'tls.certFile');
  const keyPem = readPem(tls.keyFile, 'tls.keyFile');
  const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0)
    throw new DepotsyncError('bad-certificate', `tls.certFile ${tls.certFile}: no PEM certificate in it`, {
      hint: 'give the certificate chain in PEM, the server certificate first',
    });
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]!);
    for (const b of blocks.slice(1)) new X509Certificate(b);
  } catch (e) {
    throw new DepotsyncError('bad-certificate', `tls.certFile ${tls.certFile}: unreadable certificate`, {
      cause: e,
    });
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(keyPem));
  } catch (e) {
    throw new DepotsyncError('bad-certificate', `tls.keyFile ${tls.keyFile}: not a readable private key`, {
      hint: 'give the unencrypted private key in PEM',
      cause: e,
    });
  }
  if (!matches)
    throw new DepotsyncError(
      'bad-certificate',
      `tls.keyFile ${tls.keyFile} is not the key of the certificate in ${tls.certFile} (${leaf.subject.replace(/\n/g, ', ')})`,
      { hint: 'give the key the certificate was issued for' },
    );
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now.getTime())
    throw new DepotsyncError(
      'bad-certificate',
      `tls.certFile ${tls.certFile}: the certificate expired on ${notAfter.toISOString()}`,
      { hint: 'install a renewed certificate from your CA' },
    );
  if (notBefore.getTime() > now.getTime())
    throw new DepotsyncError(
      'bad-certificate',
      `tls.certFile ${tls.certFile}: the certificate is not valid before ${notBefore.toISOString()}`,
      { hint: "check the certificate and this machine's clock" },
    );
  return {
    certPem,
    keyPem,
    subject: leaf.subject.replace(/\n/g, ', '),
    notAfter,
    fingerprint256: leaf.fingerprint256,
  };
}

/** The CA bundle of `tls.caFile` (PEM), added to the internal CA a client trusts for listeners. */
export function readTrustedCa(caFile: string | undefined): string | undefined {
  if (!caFile) return undefined;
  const pem = readPem(caFile, 'tls.caFile');
  if (!/-----BEGIN CERTIFICATE-----/.test(pem))
    throw new DepotsyncError('bad-certificate', `tls.caFile ${caFile}: no PEM certificate in it`);
  return pem;
}

/**
 * Follows the files of an operator certificate: when either changes (a renewal tool replaced them), the
 * pair is loaded and checked once they have been quiet for `settleMs` (a certificate and key are rarely
 * replaced in the same instant), then `apply` serves it. A pair that does not pass is logged and ignored:
 * the certificate in use stays. Polls with stat (`fs.watchFile`), which also follows files replaced by
 * rename or through symbolic links.
 */
export class ListenerCertificateWatcher {
  private files: Pick<ListenerTlsConfig, 'certFile' | 'keyFile'> | undefined;
  private settle: NodeJS.Timeout | undefined;
  private readonly onChange = () => {
    clearTimeout(this.settle);
    this.settle = setTimeout(() => this.load(), this.o.settleMs ?? 2000);
    this.settle.unref();
  };

  constructor(
    private readonly o: {
      apply: (cert: ListenerCertificate) => void;
      log: Logger;
      /** stat polling interval; default one minute. */
      intervalMs?: number;
      settleMs?: number;
      now?: () => Date;
    },
  ) {}

  /** Follow these files from now on (after a reload, the new ones); undefined: none. */
  watch(files: Pick<ListenerTlsConfig, 'certFile' | 'keyFile'> | undefined): void {
    const same =
      files && this.files && files.certFile === this.files.certFile && files.keyFile === this.files.keyFile;
    if (same) return;
    this.unwatch();
    if (!files || !files.certFile) return;
    this.files = { certFile: files.certFile, keyFile: files.keyFile };
    const interval = this.o.intervalMs ?? 60_000;
    for (const f of [files.certFile, files.keyFile])
      watchFile(f, { interval, persistent: false }, this.onChange);
  }

  close(): void {
    this.unwatch();
  }

  private unwatch(): void {
    clearTimeout(this.settle);
    if (!this.files) return;
    for (const f of [this.files.certFile, this.files.keyFile]) unwatchFile(f, this.onChange);
    this.files = undefined;
  }

  private load(): void {
    if (!this.files) return;
    try {
      const cert = loadListenerCertificate(this.files, (this.o.now ?? (() => new Date()))());
      this.o.apply(cert);
      this.o.log.info(
        { subject: cert.subject, notAfter: cert.notAfter.toISOString(), certFile: this.files.certFile },
        'listener certificate files changed; serving the new certificate',
      );
    } catch (e) {
      this.o.log.error(
        { err: (e as Error).message, hint: (e as { hint?: string }).hint },
        'listener certificate files changed but were refused; the certificate in use stays',
      );
    }
  }
}
