import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

/**
 * A throw-away OpenLDAP server (Debian `slapd`) for tests: a generated slapd.conf and MDB database in
 * `dir`, loaded from `ldif` with slapadd, listening on 127.0.0.1 with ldap:// (StartTLS when `tls` is
 * given) and ldaps://. Not the package's own service: nothing outside `dir` is touched.
 */
export interface Slapd {
  ldapUrl: string;
  ldapsUrl: string;
  stop(): Promise<void>;
}

export const SUFFIX = 'dc=example,dc=org';
/** The directory's administrator, for tests that change entries while the master runs. */
export const ROOT_DN = `cn=root,${SUFFIX}`;
export const ROOT_PASSWORD = 'rootsecret';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startSlapd(
  dir: string,
  opts: { ldif: string; tls?: { certPem: string; keyPem: string } },
): Promise<Slapd> {
  mkdirSync(join(dir, 'db'), { recursive: true });
  const tlsLines: string[] = [];
  if (opts.tls) {
    writeFileSync(join(dir, 'cert.pem'), opts.tls.certPem);
    writeFileSync(join(dir, 'key.pem'), opts.tls.keyPem, { mode: 0o600 });
    tlsLines.push(
      `TLSCertificateFile ${join(dir, 'cert.pem')}`,
      `TLSCertificateKeyFile ${join(dir, 'key.pem')}`,
    );
  }
  const conf = join(dir, 'slapd.conf');
  writeFileSync(
    conf,
    [
      'include /etc/ldap/schema/core.schema',
      'include /etc/ldap/schema/cosine.schema',
      'include /etc/ldap/schema/inetorgperson.schema',
      'modulepath /usr/lib/ldap',
      'moduleload back_mdb',
      `pidfile ${join(dir, 'slapd.pid')}`,
      ...tlsLines,
      'database mdb',
      'maxsize 10485760',
      `suffix "${SUFFIX}"`,
      `rootdn "${ROOT_DN}"`,
      `rootpw ${ROOT_PASSWORD}`,
      `directory ${join(dir, 'db')}`,
      'access to attrs=userPassword by anonymous auth by * none',
      'access to * by users read by * none',
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, 'data.ldif'), opts.ldif);
  const add = spawnSync('slapadd', ['-f', conf, '-l', join(dir, 'data.ldif')], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`slapadd failed: ${add.stderr}`);
  const [ldapPort, ldapsPort] = [await freePort(), await freePort()];
  const ldapUrl = `ldap://127.0.0.1:${ldapPort}`;
  const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
  const urls = opts.tls ? `${ldapUrl}/ ${ldapsUrl}/` : `${ldapUrl}/`;
  const child: ChildProcess = spawn('slapd', ['-f', conf, '-h', urls, '-d', 'none'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const deadline = Date.now() + 15_000;
  while (!(await accepts(ldapPort))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`slapd did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    ldapUrl,
    ldapsUrl,
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Entries for the tests: people, a search account, and groups (groupOfNames) listing people. */
export function directoryLdif(o: {
  people: Record<string, string>;
  service: { cn: string; password: string };
  groups: Record<string, string[]>;
}): string {
  const e: string[] = [
    `dn: ${SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example`,
    `dn: ou=people,${SUFFIX}\nobjectClass: organizationalUnit\nou: people`,
    `dn: ou=groups,${SUFFIX}\nobjectClass: organizationalUnit\nou: groups`,
    `dn: ou=services,${SUFFIX}\nobjectClass: organizationalUnit\nou: services`,
    `dn: cn=${o.service.cn},ou=services,${SUFFIX}\nobjectClass: inetOrgPerson\ncn: ${o.service.cn}\nsn: service\nuserPassword: ${o.service.password}`,
  ];
  for (const [uid, pw] of Object.entries(o.people))
    e.push(
      `dn: uid=${uid},ou=people,${SUFFIX}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\nuserPassword: ${pw}`,
    );
  for (const [cn, members] of Object.entries(o.groups))
    e.push(
      `dn: cn=${cn},ou=groups,${SUFFIX}\nobjectClass: groupOfNames\ncn: ${cn}\n${members.map((m) => `member: uid=${m},ou=people,${SUFFIX}`).join('\n')}`,
    );
  return `${e.join('\n\n')}\n`;
}
