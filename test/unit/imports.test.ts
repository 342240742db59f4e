import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * The compiled modules (type-only imports are gone there) import each other without a cycle, and the
 * layers point one way: the engine never imports the CLI, and no backend, workload or metric imports
 * the engine.
 */
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? modules(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : [],
  );
}

/** Static imports and re-exports of a compiled module, as absolute paths. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.{1,2}\/[^']+)'/gms)].map((m) => m[1]);
  const bare = [...text.matchAll(/^import\s+'(\.{1,2}\/[^']+)'/gm)].map((m) => m[1]);
  return [...specs, ...bare].map((s) => resolve(dirname(file), s as string));
}

const graph = new Map(modules(SRC).map((f) => [f, imports(f)]));
const rel = (f: string) => f.slice(SRC.length);

test('no runtime import cycle among the modules of src/', () => {
  assert.ok(graph.size > 100, `${graph.size} modules found under ${SRC}`);
  assert.ok([...graph.values()].flat().length > 300, 'their imports are read');
  const cycles: string[] = [];
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'active');
    stack.push(f);
    for (const to of graph.get(f) ?? []) {
      if (state.get(to) === 'active')
        cycles.push([...stack.slice(stack.indexOf(to)), to].map(rel).join(' -> '));
      else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

/** Imports of every TypeScript source, type-only ones included: a type imported backwards is a layer leak too. */
const TS_SRC = fileURLToPath(new URL('../../../src/', import.meta.url));
const tsGraph = new Map(
  (function walk(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  })(TS_SRC).map((f) => [f, imports(f).map((to) => to.replace(/\.js$/, '.ts'))]),
);

test('imports flow one way: cli -> engine -> backends, workloads, metrics -> study, util', () => {
  assert.ok(tsGraph.size > 100, `${tsGraph.size} sources found under ${TS_SRC}`);
  const wrong: string[] = [];
  const layer = (f: string) => f.slice(TS_SRC.length).split('/')[0] as string;
  const backends = ['qemu', 'libvirt', 'backends.ts'];
  const forbidden: Record<string, string[]> = {
    engine: ['cli'],
    qemu: ['engine', 'cli', 'metrics', 'workloads'],
    libvirt: ['engine', 'cli', 'metrics', 'workloads'],
    workloads: ['engine', 'cli', ...backends],
    metrics: ['engine', 'cli', 'workloads', ...backends],
    study: ['engine', 'cli', ...backends, 'workloads', 'metrics', 'store', 'report', 'guest', 'race'],
    util: ['engine', 'cli', ...backends, 'workloads', 'metrics', 'study', 'store', 'report', 'guest'],
    stats: ['engine', 'cli', ...backends, 'workloads', 'metrics', 'store', 'report'],
  };
  for (const [f, tos] of tsGraph) {
    for (const to of tos)
      if (forbidden[layer(f)]?.includes(layer(to)))
        wrong.push(`${f.slice(TS_SRC.length)} -> ${to.slice(TS_SRC.length)}`);
  }
  assert.deepEqual(wrong, []);
});
