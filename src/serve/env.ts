import type { HttpBindings } from '@hono/node-server';

/** The machine a request speaks for, established by the mutual-TLS gate. */
export interface MachineRef {
  name: string;
  role: 'depot' | 'agent';
  serial: string;
}

/** Hono environment shared by the master's and the depots' apps. */
export type ServeEnv = {
  Bindings: HttpBindings;
  Variables: {
    machine: MachineRef;
    operator: { name: string; role: 'admin' | 'publisher' | 'viewer' };
  };
};
