import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * HACKING.md's module table names every source file in its directory's row (a row may name a whole
 * subdirectory as `sub/<verb>.ts`), and every file a row names exists, so the table stays true as the tree
 * changes. The table is read from the source tree, not from dist/.
 */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const hacking = readFileSync(join(ROOT, 'HACKING.md'), 'utf8');

/** Source files under src/, as paths relative to the repository root with forward slashes. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sources(posix.join(dir, e.name))
      : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')
        ? [posix.join(dir, e.name)]
        : [],
  );
}

/** The table's rows: the directory of the first cell (`src/` or `src/x/`) and the whole row's text. */
const rows = new Map(
  [...hacking.matchAll(/^\| `(src\/(?:[a-z0-9-]+\/)*)` \|(.*)$/gm)].map((m) => [
    m[1] as string,
    m[2] as string,
  ]),
);
/** The .ts names a row mentions, as written (`run.ts`, `race/rule.ts`, `commands/<verb>.ts`). */
const named = (row: string) => [...row.matchAll(/[A-Za-z0-9_<>/-]+\.ts\b/g)].map((m) => m[0]);

test('HACKING.md has a module table row for src/ and each directory under it', () => {
  assert.ok(rows.has('src/'), 'a row for the top-level src/*.ts files');
  const dirs = readdirSync(join(ROOT, 'src'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => `src/${e.name}/`);
  assert.ok(dirs.length > 10, `${dirs.length} directories under src/`);
  const missing = dirs.filter((d) => !rows.has(d));
  assert.deepEqual(missing, [], `directories under src/ without a row in HACKING.md: ${missing.join(', ')}`);
});

test("every file under src/ is named in its directory's row of HACKING.md", () => {
  const files = sources('src');
  assert.ok(files.length > 100, `${files.length} files found under ${ROOT}src`);
  const unnamed = files.filter((file) => {
    // The row of the deepest directory that has one: src/cli/commands/run.ts belongs to the src/cli/ row.
    let dir = posix.dirname(file);
    while (!rows.has(`${dir}/`) && dir !== 'src') dir = posix.dirname(dir);
    const row = rows.get(`${dir}/`);
    if (row === undefined) return true;
    const rel = file.slice(dir.length + 1);
    const names = named(row);
    const pattern = `${posix.dirname(rel)}/<`;
    return !names.includes(rel) && !(rel.includes('/') && names.some((n) => n.startsWith(pattern)));
  });
  assert.deepEqual(unnamed, [], `files missing from HACKING.md's module table: ${unnamed.join(', ')}`);
});

test('every file a row of HACKING.md names exists', () => {
  const gone: string[] = [];
  for (const [dir, row] of rows) {
    for (const name of named(row)) {
      if (name.includes('<')) {
        if (!existsSync(join(ROOT, dir, posix.dirname(name)))) gone.push(`${dir}${name}`);
        continue;
      }
      // A name with a directory may point into a sibling directory (`race/rule.ts` from the engine's row).
      const here = join(ROOT, dir, name);
      const fromSrc = join(ROOT, 'src', name);
      if (!existsSync(here) && !(name.includes('/') && existsSync(fromSrc))) gone.push(`${dir}${name}`);
    }
  }
  assert.deepEqual(gone, [], `HACKING.md names files that do not exist: ${gone.join(', ')}`);
});
