import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

export interface RunningProxy {
  url: string;
  /** What the proxy logged (tinyproxy) or recorded (the test proxy): one entry per line. */
  log(): string[];
  stop(): Promise<void>;
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`proxy on port ${port} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** tinyproxy (Debian package, scripts/system-deps.sh) on 127.0.0.1, allowing CONNECT to `connectPorts` only. */
export async function startTinyproxy(
  dir: string,
  port: number,
  connectPorts: number[],
): Promise<RunningProxy> {
  const conf = join(dir, `tinyproxy-${port}.conf`);
  const logFile = join(dir, `tinyproxy-${port}.log`);
  writeFileSync(
    conf,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 60',
      'Allow 127.0.0.1',
      'LogLevel Info',
      `LogFile "${logFile}"`,
      'MaxClients 50',
      ...connectPorts.map((p) => `ConnectPort ${p}`),
      '',
    ].join('\n'),
  );
  writeFileSync(logFile, '');
  // A log file: tinyproxy buffers what it writes to a pipe.
  const child = spawn('tinyproxy', ['-d', '-c', conf], { stdio: 'ignore' });
  await waitForPort(port);
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => readFileSync(logFile, 'utf8').split('\n'),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * A CONNECT proxy in this process (run the clients with an asynchronous spawn) that cuts the first tunnel that has carried `dropAfterBytes` from the server, in
 * the middle of a response; every later tunnel is left alone.
 */
export async function startDroppingProxy(
  port: number,
  dropAfterBytes: number,
): Promise<RunningProxy & { drops: () => number }> {
  const lines: string[] = [];
  let drops = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.once('data', (head: Buffer) => {
      const m = /^CONNECT ([^\s:]+):(\d+) HTTP\/1\.[01]\r\n/.exec(head.toString('latin1'));
      if (!m) return client.destroy();
      lines.push(`CONNECT ${m[1]}:${m[2]}`);
      const upstream = connect(Number(m[2]), m[1]!, () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        let carried = 0;
        upstream.on('data', (d: Buffer) => {
          carried += d.length;
          if (drops === 0 && carried > dropAfterBytes) {
            drops++;
            lines.push(`dropped after ${carried} bytes`);
            upstream.destroy();
            client.destroy();
            return;
          }
          client.write(d);
        });
        client.on('data', (d: Buffer) => upstream.write(d));
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
      });
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => lines,
    drops: () => drops,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
