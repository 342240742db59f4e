import assert from 'node:assert/strict';
import {
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { unpackDeb } from '../../src/guest/deb.js';
import { compareVersions, parseRelations } from '../../src/guest/deb822.js';
import {
  type DebianPackage,
  parsePackages,
  parseRelease,
  verifyInRelease,
  verifyRelease,
} from '../../src/guest/debian.js';
import { indexPackages, resolveClosure } from '../../src/guest/resolve.js';

// Recorded from this machine's Debian mirror on 2026-11-28: dists/bookworm-updates/{InRelease,Release,Release.gpg}.
const fixtures = new URL('../../../test/fixtures/debian/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, fixtures));

const scratch = mkdtempSync(join(tmpdir(), 'kvmio-deb-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('InRelease: the signed text verifies with the shipped Debian keys and lists the Packages hashes', async () => {
  const text = await verifyInRelease(fixture('bookworm-updates.InRelease').toString('utf8'), 'InRelease');
  const index = parseRelease(text);
  assert.equal(index.codename, 'bookworm-updates');
  assert.equal(index.byHash, true);
  assert.match(index.files.get('main/binary-amd64/Packages.xz')?.sha256 ?? '', /^[0-9a-f]{64}$/);
});

test('InRelease: one changed byte in the signed text is refused', async () => {
  const original = fixture('bookworm-updates.InRelease').toString('utf8');
  // The Packages.xz hash's first digit changed: a mirror serving another index than Debian signed.
  const tampered = original.replace(
    / ([0-9a-f])([0-9a-f]{63})\s+\d+ main\/binary-amd64\/Packages\.xz/,
    (m, first: string) => m.replace(` ${first}`, ` ${first === '0' ? '1' : '0'}`),
  );
  assert.notEqual(tampered, original);
  await assert.rejects(
    verifyInRelease(tampered, 'InRelease'),
    /InRelease: no valid signature by a Debian archive key/,
  );
  await assert.rejects(
    verifyInRelease(original.replace(/-----BEGIN PGP SIGNATURE-----[\s\S]*$/, ''), 'x'),
    /not an OpenPGP signed message/,
  );
});

test('Release + Release.gpg: a Release its detached signature does not cover is refused', async () => {
  // This mirror serves dists/bookworm-updates/Release with one line more than the text its
  // Release.gpg signs (InRelease, signed at the same time, lacks it); gpgv reports "BAD signature" too.
  const release = fixture('bookworm-updates.Release');
  const sig = fixture('bookworm-updates.Release.gpg').toString('utf8');
  await assert.rejects(
    verifyRelease(release, sig, 'Release'),
    /Release: no valid signature.*Signed digest did not match/,
  );
  await assert.rejects(
    verifyRelease(release, 'garbage', 'Release'),
    /Release\.gpg is not an OpenPGP signature/,
  );
});
test('Release + Release.gpg: a detached Debian signature over the Release text verifies; one byte changed is refused', async () => {
  // This mirror's own Release.gpg files do not match their Release (gpgv: BAD signature, for
  // bookworm-updates and bookworm-backports alike, checked 2026-11-28), so the good pair is made from
  // the recorded InRelease: its real Debian signature, detached, over the signed text it covers.
  const inRelease = fixture('bookworm-updates.InRelease').toString('utf8');
  const signature = /-----BEGIN PGP SIGNATURE-----[\s\S]*-----END PGP SIGNATURE-----/.exec(inRelease)?.[0];
  const body =
    /^-----BEGIN PGP SIGNED MESSAGE-----\nHash: \S+\n\n([\s\S]*)\n-----BEGIN PGP SIGNATURE-----/.exec(
      inRelease,
    )?.[1];
  assert.ok(signature && body);
  const text = await verifyRelease(Buffer.from(body), signature, 'Release');
  assert.equal(parseRelease(text).codename, 'bookworm-updates');
  assert.equal(text, await verifyInRelease(inRelease, 'InRelease'));
  const tampered = body.replace(/^(Codename: )bookworm-updates$/m, '$1bookworm-updatez');
  assert.notEqual(tampered, body);
  await assert.rejects(
    verifyRelease(Buffer.from(tampered), signature, 'Release'),
    /Release: no valid signature by a Debian archive key/,
  );
});

// The fio stanza as in bookworm's main/binary-amd64/Packages (Description and tags trimmed).
const FIO = `Package: fio
Version: 3.33-3
Installed-Size: 2129
Architecture: amd64
Depends: libaio1 (>= 0.3.93), libc6 (>= 2.34), zlib1g (>= 1:1.2.0), init-system-helpers (>= 1.51), python3
Description: flexible I/O tester
Tag: admin::benchmarking, admin::filesystem, hardware::storage,
 implemented-in::c, interface::commandline, role::program
Priority: optional
Filename: pool/main/f/fio/fio_3.33-3_amd64.deb
Size: 537684
SHA256: dc79dae895125512620fcd16465f1a19edec8f2d73736fe76a9fbf8195cfb745

Package: fio-arm
Version: 1
Architecture: arm64
Filename: pool/main/f/fio/fio_1_arm64.deb
SHA256: dc79dae895125512620fcd16465f1a19edec8f2d73736fe76a9fbf8195cfb745
`;

test('Packages: the fields the resolver needs, amd64 and all only', () => {
  const [fio, ...rest] = parsePackages(FIO, 'http://m/debian');
  assert.equal(rest.length, 0);
  assert.deepEqual(fio, {
    name: 'fio',
    version: '3.33-3',
    arch: 'amd64',
    filename: 'pool/main/f/fio/fio_3.33-3_amd64.deb',
    sha256: 'dc79dae895125512620fcd16465f1a19edec8f2d73736fe76a9fbf8195cfb745',
    size: 537684,
    depends:
      'libaio1 (>= 0.3.93), libc6 (>= 2.34), zlib1g (>= 1:1.2.0), init-system-helpers (>= 1.51), python3',
    priority: 'optional',
    uri: 'http://m/debian',
  });
  assert.deepEqual(parseRelations('a (>= 1:2) | b:any, c (<< 3)'), [
    [{ name: 'a', op: '>=', version: '1:2' }, { name: 'b' }],
    [{ name: 'c', op: '<<', version: '3' }],
  ]);
});

test('Packages: a file name leaving the pool, or a name with a slash, is refused', () => {
  assert.throws(() => parsePackages(FIO.replace('pool/main/f/fio/', 'pool/../../etc/'), 'u'), /malformed/);
  assert.throws(() => parsePackages(FIO.replace('Package: fio\n', 'Package: ../fio\n'), 'u'), /malformed/);
});

test('versions order as dpkg --compare-versions says (recorded on this host)', () => {
  const cases: [string, string, string][] = [
    ['1.0', '>', '1.0~rc1'],
    ['1:0.9', '>', '2.0'],
    ['2.36-9+deb12u14', '>', '2.36-9+deb12u9'],
    ['1.0-1', '>', '1.0'],
    ['1.0a', '<', '1.0+'],
    ['1.0~~', '<', '1.0~'],
    ['10.0.2+ds-2+deb13u1~bpo12+1', '<', '1:7.2+dfsg-7'],
    ['7.2+dfsg-7+deb12u18+b3', '>', '7.2+dfsg-7+deb12u18'],
    ['1.2.3', '<', '1.2.10'],
    ['0:1.0', '=', '1.0'],
  ];
  for (const [a, op, b] of cases)
    assert.equal(Math.sign(compareVersions(a, b)), { '<': -1, '=': 0, '>': 1 }[op], `${a} ${op} ${b}`);
});

function pkg(name: string, version: string, fields: Partial<DebianPackage> = {}): DebianPackage {
  return {
    name,
    version,
    arch: 'amd64',
    filename: `pool/${name}.deb`,
    sha256: '0'.repeat(64),
    size: 1,
    uri: 'u',
    ...fields,
  };
}

test('resolver: newest version, first satisfiable alternative, versioned and virtual dependencies', () => {
  const index = indexPackages([
    pkg('app', '1', { depends: 'libold (>= 2) | libnew, mail-transport-agent', preDepends: 'base' }),
    pkg('libold', '1'),
    pkg('libold', '1.5'), // still too old: the alternative libnew is taken
    pkg('libnew', '3', { depends: 'base (>= 2)' }),
    pkg('base', '1'),
    pkg('base', '2:0'),
    pkg('exim', '4', { provides: 'mail-transport-agent', priority: 'optional' }),
    pkg('postfix', '3', { provides: 'mail-transport-agent', priority: 'standard' }),
  ]);
  const names = resolveClosure(index, ['app']).map((p) => `${p.name}=${p.version}`);
  assert.deepEqual(names.sort(), ['app=1', 'base=2:0', 'libnew=3', 'postfix=3']);
  assert.throws(
    () => resolveClosure(indexPackages([pkg('a', '1', { depends: 'b (>= 2)' }), pkg('b', '1')]), ['a']),
    /guest: a needs b \(>= 2\), which no Debian suite searched provides/,
  );
  assert.throws(
    () => resolveClosure(index, ['nonesuch']),
    /package nonesuch is in none of the Debian suites/,
  );
});

/** A .deb as dpkg-deb builds one: ar with debian-binary, control.tar.gz and data.tar.gz. */
async function makeDeb(
  entries: {
    name: string;
    type?: 'file' | 'symlink' | 'directory' | 'link';
    body?: string;
    linkname?: string;
    mode?: number;
  }[],
): Promise<string> {
  const tar = pack();
  for (const e of entries) {
    const { body, ...header } = e;
    tar.entry({ mode: 0o644, ...header }, body ?? '');
  }
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const c of tar) chunks.push(c as Buffer);
  const member = (name: string, data: Buffer) => {
    const h = `${name.padEnd(16)}${'0'.padEnd(12)}${'0'.padEnd(6)}${'0'.padEnd(6)}${'100644'.padEnd(8)}${String(data.length).padEnd(10)}\`\n`;
    return Buffer.concat([Buffer.from(h, 'latin1'), data, Buffer.alloc(data.length % 2, '\n')]);
  };
  const file = join(scratch, `t${Math.random().toString(36).slice(2)}.deb`);
  writeFileSync(
    file,
    Buffer.concat([
      Buffer.from('!<arch>\n'),
      member('debian-binary', Buffer.from('2.0\n')),
      member('control.tar.gz', gzipSync(Buffer.alloc(1024))),
      member('data.tar.gz', gzipSync(Buffer.concat(chunks))),
    ]),
  );
  return file;
}

test('unpack: files with modes, directories, symlinks and hard links', async () => {
  const root = mkdtempSync(join(scratch, 'root-'));
  await unpackDeb(
    await makeDeb([
      { name: './', type: 'directory', mode: 0o755 },
      { name: './usr/bin/', type: 'directory', mode: 0o755 },
      { name: './usr/bin/tool', body: '#!/bin/sh\n', mode: 0o4755 },
      { name: './usr/bin/alias', type: 'symlink', linkname: 'tool' },
      { name: './usr/bin/twin', type: 'link', linkname: './usr/bin/tool' },
    ]),
    root,
  );
  assert.equal(readFileSync(join(root, 'usr/bin/tool'), 'utf8'), '#!/bin/sh\n');
  assert.equal(lstatSync(join(root, 'usr/bin/tool')).mode & 0o7777, 0o4755);
  assert.equal(readlinkSync(join(root, 'usr/bin/alias')), 'tool');
  assert.equal(lstatSync(join(root, 'usr/bin/twin')).ino, lstatSync(join(root, 'usr/bin/tool')).ino);
});

test('unpack: no entry is written outside the tree, by name or through a link', async () => {
  const root = mkdtempSync(join(scratch, 'root-'));
  await assert.rejects(
    unpackDeb(await makeDeb([{ name: '../../escape', body: 'x' }]), root),
    /leaves the package's tree/,
  );
  const outside = mkdtempSync(join(scratch, 'outside-'));
  await assert.rejects(
    unpackDeb(
      await makeDeb([
        { name: './lib', type: 'symlink', linkname: outside },
        { name: './lib/evil', body: 'x' },
      ]),
      root,
    ),
    /through a link leaving the tree/,
  );
  // A link inside the tree (merged /usr) is followed.
  symlinkSync('usr/lib', join(root, 'lib2'));
  await unpackDeb(
    await makeDeb([
      { name: './usr/lib/', type: 'directory', mode: 0o755 },
      { name: './lib2/ok', body: 'y' },
    ]),
    root,
  );
  assert.equal(readFileSync(join(root, 'usr/lib/ok'), 'utf8'), 'y');
});
