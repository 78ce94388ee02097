#!/usr/bin/env node
// The import rules of docs/contributing.md: dependency-cruiser checks files (.dependency-cruiser.cjs: no cycles,
// src/ a leaf, roles apart); this adds the same no-cycle rule between the core's folders (src/pki, src/net, ...) and
// between the top-level folders. Inside a role, subfolders share the role's base files (context, config, layout),
// so there the file rule is the one that applies.
import { execFileSync } from 'node:child_process';

const roots = ['src', 'master', 'depot', 'agent', 'cli'];
const run = (args) => {
  try {
    return {
      out: execFileSync('npx', ['depcruise', ...roots, '--config', '.dependency-cruiser.cjs', ...args], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      }),
      ok: true,
    };
  } catch (e) {
    return { out: `${e.stdout ?? ''}${e.stderr ?? ''}`, ok: false };
  }
};

const files = run(['--output-type', 'err']);
if (!files.ok) process.stdout.write(files.out);

const folderOf = (path) => {
  const parts = path.split('/');
  return parts[0] === 'src' && parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0];
};
const graph = JSON.parse(run(['--output-type', 'json']).out);
const edges = new Map();
for (const m of graph.modules) {
  if (!roots.some((r) => m.source.startsWith(`${r}/`))) continue;
  const from = folderOf(m.source);
  for (const d of m.dependencies) {
    if (d.coreModule || d.couldNotResolve || !roots.some((r) => d.resolved.startsWith(`${r}/`))) continue;
    const to = folderOf(d.resolved);
    if (to === from) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to)) edges.get(from).set(to, `${m.source} -> ${d.resolved}`);
  }
}
// Tarjan's strongly connected components: a component of more than one folder is a folder cycle.
let index = 0;
const idx = new Map(),
  low = new Map(),
  stack = [],
  on = new Set(),
  cycles = [];
const visit = (v) => {
  idx.set(v, index);
  low.set(v, index);
  index++;
  stack.push(v);
  on.add(v);
  for (const w of edges.get(v)?.keys() ?? []) {
    if (!idx.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const comp = [];
    let w;
    do {
      w = stack.pop();
      on.delete(w);
      comp.push(w);
    } while (w !== v);
    if (comp.length > 1) cycles.push(comp);
  }
};
for (const v of edges.keys()) if (!idx.has(v)) visit(v);
for (const comp of cycles) {
  console.log(`folder cycle: ${comp.join(' <-> ')}`);
  for (const a of comp)
    for (const [b, why] of edges.get(a) ?? []) if (comp.includes(b)) console.log(`  ${why}`);
}
if (!files.ok || cycles.length > 0) process.exit(1);
console.log('deps: no file or folder cycles; src/ imports no role; roles import no other role');
