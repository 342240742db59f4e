import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The test host of scripts/test-host.sh for e2e tests: `up` returns its libvirt URI; `release` takes
 * it down again when this process brought it up (under `make test` it was up before and stays up for
 * the next file; the Makefile removes it at the end, also when tests fail).
 */

const repo = join(import.meta.dirname, '..', '..', '..');
const script = join(repo, 'scripts', 'test-host.sh');
let broughtUp = false;

export function testHost(verb: 'up' | 'stop' | 'down'): string {
  return execFileSync('bash', [script, verb], { encoding: 'utf8', timeout: 180_000 });
}

export function testHostUp(): string {
  if (!existsSync('/run/netns/kvmio-th')) broughtUp = true;
  return testHost('up').trim().split('\n').slice(-1)[0] ?? '';
}

export function releaseTestHost(): void {
  if (broughtUp) testHost('down');
  broughtUp = false;
}
