import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that counts every byte it forwards, both ways: what a client and a server
 * put on the wire, TLS records and handshakes included, whatever the protocol (HTTPS, rsync's daemon
 * protocol). Benchmarks compare tools by these counts rather than by what each tool reports about itself.
 */
export interface CountingProxy {
  readonly port: number;
  /** Bytes client → server and server → client since the last `reset`. */
  counts(): { up: number; down: number; connections: number };
  reset(): void;
  close(): Promise<void>;
}

export async function startCountingProxy(
  targetPort: number,
  targetHost = '127.0.0.1',
): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  let connections = 0;
  const open = new Set<Socket>();
  const server = createServer((client) => {
    connections++;
    const upstream = createConnection({ host: targetHost, port: targetPort });
    open.add(client);
    open.add(upstream);
    client.on('data', (d: Buffer) => {
      up += d.length;
      if (!upstream.write(d)) client.pause();
    });
    upstream.on('data', (d: Buffer) => {
      down += d.length;
      if (!client.write(d)) upstream.pause();
    });
    upstream.on('drain', () => client.resume());
    client.on('drain', () => upstream.resume());
    // Half-close is forwarded (rsync and TLS close_notify rely on it); errors tear both sides down.
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    const destroy = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', destroy);
    upstream.on('error', destroy);
    client.on('close', () => open.delete(client));
    upstream.on('close', () => open.delete(upstream));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    counts: () => ({ up, down, connections }),
    reset: () => {
      up = 0;
      down = 0;
      connections = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
