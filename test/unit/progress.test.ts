import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createProgress, type ProgressMode } from '../../src/cli/progress.js';

/** What the terminal shows of a run's events in each mode (the JSON mode prints every event). */

function shown(
  mode: ProgressMode,
  events: Parameters<ReturnType<typeof createProgress>['sink']>[0][],
): string {
  let text = '';
  const out = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  const progress = createProgress(mode, out);
  for (const e of events) progress.sink(e);
  progress.done();
  return text;
}

test('a run warning is printed in the plain, live and quiet modes; a log line is not', () => {
  const events = [
    { event: 'log' as const, run: 'r1', line: 'kvmio-1: guest agent answered after 9000 ms' },
    {
      event: 'warning' as const,
      run: 'r1',
      line: 'boot of v1: the guest kernel panicked while booting under TCG',
    },
  ];
  for (const mode of ['plain', 'live', 'quiet'] as const) {
    const text = shown(mode, events);
    assert.match(
      text,
      /^kvmio: WARNING: boot of v1: the guest kernel panicked while booting under TCG$/m,
      mode,
    );
    assert.doesNotMatch(text, /guest agent answered/, mode);
  }
});
