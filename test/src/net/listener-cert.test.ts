import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  decodeListenerTls,
  ListenerCertificateWatcher,
  loadListenerCertificate,
  readTrustedCa,
  type ListenerCertificate,
} from '../../../src/net/listener-cert.js';
import { createCa, issueServerCertificate, loadCa } from '../../../src/pki/ca.js';
import { tempDir } from '../../helpers/tmp.js';

describe('operator listener certificates', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  const org = createCa({ commonName: 'Org CA' });
  const ca = loadCa(org.keyPem, org.certPem);
  const issue = (o: { notBefore?: Date; notAfter?: Date } = {}) =>
    issueServerCertificate(ca, { commonName: 'host.example', dnsNames: ['host.example'], ...o });
  const file = (name: string, text: string) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, text);
    return p;
  };
  const good = issue();
  const certFile = file('cert.pem', `${good.certPem}${org.certPem}`);
  const keyFile = file('key.pem', good.keyPem);

  it('accepts a chain and its key', () => {
    const c = loadListenerCertificate({ certFile, keyFile });
    expect(c.subject).toContain('CN=host.example');
    expect(c.certPem).toContain(org.certPem.trim());
  });

  it('refuses a key that is not the certificate’s, an expired or not yet valid certificate, and non-PEM', () => {
    const other = file('other-key.pem', issue().keyPem);
    expect(() => loadListenerCertificate({ certFile, keyFile: other })).toThrow(
      `tls.keyFile ${other} is not the key of the certificate in ${certFile}`,
    );
    const old = issue({ notBefore: new Date('2020-01-01'), notAfter: new Date('2021-01-01') });
    expect(() =>
      loadListenerCertificate({
        certFile: file('old.pem', old.certPem),
        keyFile: file('old-key.pem', old.keyPem),
      }),
    ).toThrow(/the certificate expired on 2021-01-01/);
    expect(() =>
      loadListenerCertificate({ certFile, keyFile }, new Date(Date.now() - 86_400_000 * 2)),
    ).toThrow(/not valid before/);
    expect(() => loadListenerCertificate({ certFile: file('junk.pem', 'junk'), keyFile })).toThrow(
      /no PEM certificate/,
    );
    expect(() => loadListenerCertificate({ certFile, keyFile: file('junk-key.pem', 'junk') })).toThrow(
      /not a readable private key/,
    );
    expect(() => loadListenerCertificate({ certFile: join(tmp.dir, 'missing.pem'), keyFile })).toThrow(
      /tls.certFile .*missing.pem: no such file or directory/,
    );
    expect(() => readTrustedCa(keyFile)).toThrow(/no PEM certificate/);
  });

  it('the tls section: known keys only, cert and key together', () => {
    expect(decodeListenerTls('master.json', undefined)).toEqual({ certFile: '', keyFile: '' });
    expect(() => decodeListenerTls('master.json', { certFile: 'a' })).toThrow(/go together/);
    expect(() => decodeListenerTls('master.json', { caFile: 'a' })).toThrow(/unknown setting "tls.caFile"/);
    expect(() => decodeListenerTls('depot.json', { certFile: 1 }, ['certFile', 'keyFile', 'caFile'])).toThrow(
      /tls.certFile must be a file path/,
    );
    expect(decodeListenerTls('agent.json', { caFile: 'x' }, ['caFile'])).toEqual({
      certFile: '',
      keyFile: '',
      caFile: 'x',
    });
  });

  it('follows the files: a renewed pair is applied, a pair that does not match is refused and the old stays', async () => {
    const cert = file('watched-cert.pem', good.certPem);
    const key = file('watched-key.pem', good.keyPem);
    const applied: ListenerCertificate[] = [];
    const lines: Array<{ msg: string; err?: string }> = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(JSON.parse(chunk.toString()));
          cb();
        },
      }),
    );
    const watcher = new ListenerCertificateWatcher({
      apply: (c) => applied.push(c),
      log,
      intervalMs: 20,
      settleMs: 60,
    });
    watcher.watch({ certFile: cert, keyFile: key });
    const until = async (cond: () => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error('timed out');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      const renewed = issueServerCertificate(ca, {
        commonName: 'renewed.example',
        dnsNames: ['renewed.example'],
      });
      writeFileSync(cert, renewed.certPem);
      writeFileSync(key, renewed.keyPem);
      await until(() => applied.length === 1);
      expect(applied[0]!.subject).toContain('CN=renewed.example');

      writeFileSync(key, issue().keyPem);
      await until(() => lines.some((l) => l.msg.includes('were refused')));
      expect(lines.find((l) => l.msg.includes('were refused'))!.err).toContain(
        'is not the key of the certificate',
      );
      expect(applied).toHaveLength(1);
    } finally {
      watcher.close();
    }
  });
});
