import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { quoteRemoteArgv, sshTargetOf } from '../../src/host/access.js';
import { parseGrepDump } from '../../src/metrics/cpu.js';
import {
  parseIdentities,
  parseLoopBackings,
  parseProcSwaps,
  parseRemoteStat,
  swapAndLoopUses,
} from '../../src/safety/remote.js';

test('quoteRemoteArgv: a POSIX shell gets back exactly the argv, expanding nothing', () => {
  const argv = [
    'printf',
    '%s\\n',
    "it's",
    '$(touch /tmp/kvmio-pwned)',
    '`id`',
    '$HOME',
    'a b  c',
    '',
    '*',
    ';',
    '|',
    '\\',
    '"',
    "''",
    'line\nbreak',
    '--',
  ];
  // ssh hands the joined string to the remote user's shell: sh -c is that shell here.
  for (const shell of ['sh', 'bash']) {
    const out = execFileSync(shell, ['-c', quoteRemoteArgv(argv)], { encoding: 'utf8' });
    assert.deepEqual(
      out.split('\n').slice(0, -1),
      argv.slice(2).flatMap((a) => a.split('\n')),
      shell,
    );
  }
  assert.throws(() => quoteRemoteArgv([]));
});

test('sshTargetOf: user, host, port and keyfile of qemu+ssh URIs; nothing for other transports', () => {
  assert.deepEqual(sshTargetOf('qemu+ssh://root@10.251.15.2/system'), { host: '10.251.15.2', user: 'root' });
  assert.deepEqual(sshTargetOf('qemu+ssh://hv1:2222/system?keyfile=/k/id'), {
    host: 'hv1',
    port: 2222,
    keyfile: '/k/id',
  });
  assert.deepEqual(sshTargetOf('qemu+ssh://[fd00::5]/system'), { host: 'fd00::5' });
  assert.equal(sshTargetOf('qemu:///system'), undefined);
  assert.equal(sshTargetOf('qemu+tls://hv1/system'), undefined);
  assert.equal(sshTargetOf('qemu+tcp://127.0.0.1:1/system'), undefined);
  // Nothing that ssh could take for an option.
  assert.equal(sshTargetOf('qemu+ssh://-oProxyCommand=x@h/system'), undefined);
});

test('parseGrepDump: file names before the first colon; comms may hold colons and spaces', () => {
  // The shape of `grep -H '' /proc/PID/stat /proc/PID/task/*/stat` as read on this machine.
  const dump =
    '/proc/42/stat:42 (qemu-system-x86) S 1 42 42 0 -1 4194560 1 0 0 0 10 20 0 0 20 0 5 0\n' +
    '/proc/42/task/43/stat:43 (CPU 0/TCG) R 1 42 42 0 -1 4194560 1 0 0 0 7 1 0 0 20 0 5 0\n' +
    '/proc/42/task/44/stat:44 (a:b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 1 1 0 0 20 0 5 0\n' +
    '/proc/42/task/43/schedstat:81234567 1000 20\n';
  const m = parseGrepDump(dump);
  assert.equal(m.size, 4);
  assert.match(m.get('/proc/42/task/44/stat') ?? '', /^44 \(a:b \(c\)\)/);
  assert.equal(m.get('/proc/42/task/43/schedstat'), '81234567 1000 20');
});

test('parseRemoteStat: GNU stat --printf "%F|%s|%b|%B|%d|%i|%.9W"', () => {
  // Recorded from coreutils 9.1 here; Node's statSync(…, {bigint: true}).birthtimeNs of that file was
  // 1795868037020498730: the remote identity is the local one.
  const g = parseRemoteStat('regular file|67108864|131072|512|65024|15343690|1795868037.020498730');
  assert.equal(g.birthNs, '1795868037020498730');
  assert.equal(parseRemoteStat('regular file|1|8|512|5|7|0.000000000').birthNs, '0');
  const f = parseRemoteStat('regular file|67108864|131072|512|65024|1234|1764321000');
  assert.equal(f.kind, 'file');
  assert.equal(f.sizeBytes, 67108864);
  assert.equal(f.allocatedBytes, 67108864);
  assert.equal(f.birthNs, '1764321000000000000');
  assert.equal(parseRemoteStat('block special file|0|0|512|5|7|-').kind, 'block');
  assert.equal(parseRemoteStat('directory|4096|8|512|5|7|0').kind, 'other');
});

const guardFixture = (name: string) =>
  readFileSync(join(import.meta.dirname, '../../../test/fixtures/remote-guard', name), 'utf8');

test('remote data guard: a file that is active swap or backs a loop device is found by identity', () => {
  const swaps = parseProcSwaps(guardFixture('swaps.txt'));
  assert.deepEqual(swaps, ['/tmp/remote2-fx.Kuly/swap file']);
  const loops = parseLoopBackings(guardFixture('loops.txt'));
  assert.deepEqual(loops, [{ devPath: '/dev/loop0', backingFile: '/tmp/remote2-fx.Kuly/disk one.img' }]);
  const ids = parseIdentities(guardFixture('ids.txt'));
  const backing = parseRemoteStat(guardFixture('stat-loop-backing.txt'));
  const swapFile = parseRemoteStat(guardFixture('stat-swap-file.txt'));
  assert.deepEqual(swapAndLoopUses(backing, swaps, loops, ids), ['is attached to /dev/loop0']);
  assert.deepEqual(swapAndLoopUses(swapFile, swaps, loops, ids), ['is active swap']);
  // Another file on the same filesystem (another inode) is neither; nor is anything when stat failed.
  assert.deepEqual(swapAndLoopUses({ dev: backing.dev, ino: '1' }, swaps, loops, ids), []);
  assert.deepEqual(swapAndLoopUses(swapFile, swaps, loops, new Map()), []);
});
