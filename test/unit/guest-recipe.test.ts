import assert from 'node:assert/strict';
import { test } from 'node:test';
import { debFileName } from '../../src/guest/debian.js';
import { contentHash, GUEST_ASSETS, guestRecipe, readAssets, recipeHash } from '../../src/guest/recipe.js';

test('every asset file has a guest path, and every guest path an asset', () => {
  const assets = readAssets();
  assert.deepEqual([...assets.keys()].sort(), Object.keys(GUEST_ASSETS).sort());
  assert.match(assets.get('init')!.toString(), /^#!\/bin\/busybox sh\n/);
  assert.match(assets.get('agent')!.toString(), /KVMIO-GUEST-READY/);
});

test('the guest is made from its kernel, tools, agent and workload packages, PostgreSQL as its release has it', () => {
  for (const [release, pg] of [
    ['trixie', 'postgresql-17'],
    ['bookworm', 'postgresql-15'],
  ] as const) {
    const recipe = guestRecipe(release);
    for (const p of [
      'linux-image-cloud-amd64',
      'busybox-static',
      'qemu-guest-agent',
      'fio',
      pg,
      'rsync',
      'e2fsprogs',
    ])
      assert.ok(recipe.packages.includes(p), `${release}: ${p}`);
    assert.ok(recipe.programs.includes(`usr/lib/postgresql/${pg.slice(-2)}/bin/pgbench`));
  }
  assert.equal(guestRecipe().release, 'trixie');
  assert.notEqual(recipeHash(readAssets(), 'trixie'), recipeHash(readAssets(), 'bookworm'));
});

test('the recipe hash is stable and follows the assets', () => {
  const assets = readAssets();
  assert.equal(recipeHash(assets), recipeHash(new Map(assets)));
  const changed = new Map(assets);
  changed.set('init', Buffer.concat([assets.get('init')!, Buffer.from('# changed\n')]));
  assert.notEqual(recipeHash(changed), recipeHash(assets));
});

test('the content hash depends on package versions, not on their order', () => {
  const a = { name: 'libc6', version: '2.36-9+deb12u14', arch: 'amd64' };
  const b = { name: 'fio', version: '3.33-3', arch: 'amd64' };
  assert.equal(contentHash('r', [a, b]), contentHash('r', [b, a]));
  assert.notEqual(contentHash('r', [a, b]), contentHash('r', [a, { ...b, version: '3.33-4' }]));
  assert.notEqual(contentHash('r', [a]), contentHash('s', [a]));
});

test('archive file names escape the epoch colon as apt does', () => {
  // As found in the apt archive cache here: busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb
  assert.equal(
    debFileName({ name: 'busybox-static', version: '1:1.35.0-4+deb12u1+b1', arch: 'amd64' }),
    'busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb',
  );
});
