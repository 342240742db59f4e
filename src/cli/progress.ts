import { createLogUpdate } from 'log-update';
import type { RunEvent, RunEventSink } from '../engine/events.js';
import { mean } from '../stats/summary.js';
import { formatSeconds } from '../util/units.js';

/**
 * How a run shows where it is: a live view on a terminal, plain lines otherwise, JSON lines for
 * machines, nothing with --quiet. ETA from the durations measured so far in this run.
 */

export type ProgressMode = 'live' | 'plain' | 'json' | 'quiet';

export function progressMode(
  opts: { quiet?: boolean; json?: boolean },
  stream: NodeJS.WriteStream,
): ProgressMode {
  if (opts.json) return 'json';
  if (opts.quiet) return 'quiet';
  return stream.isTTY ? 'live' : 'plain';
}

export interface Progress {
  sink: RunEventSink;
  /** Ends the live view (leaves its last frame on screen). */
  done(): void;
}

class Tracker {
  total = 0;
  done = 0;
  failed = 0;
  left = 0;
  current: Extract<RunEvent, { event: 'point-start' }> | undefined;
  currentSince = 0;
  readonly started = Date.now();
  /** Measured seconds per workload name: a sweep and a QD1 job do not take the same time. */
  private readonly durations = new Map<string, number[]>();
  private estimatePerPoint = 0;

  update(e: RunEvent): void {
    if (e.event === 'run-start') {
      this.total = e.todo;
      this.left = e.todo;
      this.estimatePerPoint = e.total > 0 ? e.estimatedSeconds / e.total : 0;
    } else if (e.event === 'point-start') {
      this.current = e;
      this.currentSince = Date.now();
      this.left = e.left;
    } else if (e.event === 'point-end') {
      this.done++;
      if (e.status === 'failed') this.failed++;
      this.left = Math.max(0, this.left - 1);
      const list = this.durations.get(e.workload) ?? [];
      list.push(e.durationSeconds);
      this.durations.set(e.workload, list);
      this.current = undefined;
    } else if (e.event === 'adaptive-round') {
      this.total += e.points;
      this.left += e.points;
    } else if (e.event === 'race-round') {
      this.total -= e.skipped;
      this.left -= e.skipped;
    }
  }

  /** Seconds to go: the mean measured duration (all workloads) times the points left, minus the current one's progress. */
  eta(): number {
    const all = [...this.durations.values()].flat();
    const per = all.length > 0 ? mean(all) : this.estimatePerPoint;
    const inCurrent = this.current ? (Date.now() - this.currentSince) / 1000 : 0;
    return Math.max(0, per * this.left - Math.min(inCurrent, per));
  }

  elapsed(): number {
    return (Date.now() - this.started) / 1000;
  }
}

function bar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** A host given up during the run (URI not answering, guests not booting): said at the end, whatever the mode. */
function failedHostLines(e: Extract<RunEvent, { event: 'run-end' }>): string[] {
  return (e.failedHosts ?? []).map((h) => `kvmio: FAILED HOST ${h.name}: ${h.reason}`);
}

export function createProgress(mode: ProgressMode, out: NodeJS.WriteStream = process.stderr): Progress {
  const t = new Tracker();
  const write = (line: string) => out.write(`${line}\n`);
  if (mode === 'json') {
    return {
      // JSON lines on stdout: one event per line, the machine contract of `run --json`.
      sink: (e) => {
        process.stdout.write(`${JSON.stringify({ ...e, time: new Date().toISOString() })}\n`);
      },
      done: () => undefined,
    };
  }
  if (mode === 'quiet') {
    return {
      sink: (e) => {
        if (e.event === 'interrupted') write(`kvmio: interrupted; resume with: ${e.resume}`);
        else if (e.event === 'warning') write(`kvmio: WARNING: ${e.line}`);
        else if (e.event === 'run-end') failedHostLines(e).forEach(write);
      },
      done: () => undefined,
    };
  }
  const headline = (e: Extract<RunEvent, { event: 'run-start' }>) => {
    write(
      `kvmio: run ${e.run} (${e.name})${e.resumed ? `, resuming: ${e.alreadyDone} of ${e.total} points already measured` : ''}`,
    );
    write(
      `kvmio: ${e.todo} point(s) to run, estimated ${formatSeconds(e.estimatedSeconds * (e.todo / Math.max(1, e.total)))}; accelerator ${e.accelerator} (${e.acceleratorReason})`,
    );
    if (e.warning) write(`kvmio: WARNING: ${e.warning}`);
    for (const n of e.notes) write(`kvmio: note: ${n}`);
  };
  if (mode === 'plain') {
    return {
      sink: (e) => {
        t.update(e);
        if (e.event === 'run-start') headline(e);
        else if (e.event === 'point-start') {
          write(
            `[${t.done + 1}/${t.total}] ${e.variant} ${e.workload} (round ${e.round + 1}${e.host === 'local' ? '' : `, ${e.host}`})…`,
          );
        } else if (e.event === 'point-end') {
          const what = e.status === 'ok' ? 'ok' : `FAILED: ${e.error}`;
          write(
            `[${t.done}/${t.total}] ${e.variant} ${e.workload}: ${what} (${e.durationSeconds.toFixed(1)} s; elapsed ${formatSeconds(t.elapsed())}, ETA ${formatSeconds(t.eta())})`,
          );
        } else if (e.event === 'adaptive-round') {
          write(`kvmio: adaptive round ${e.round + 1}: ${e.points} more point(s) (${e.reasons.join('; ')})`);
        } else if (e.event === 'race-round' && e.skipped > 0) {
          write(raceLine(e));
        } else if (e.event === 'interrupted') {
          write(`kvmio: interrupted by ${e.signal}; resume with: ${e.resume}`);
        } else if (e.event === 'warning') {
          write(`kvmio: WARNING: ${e.line}`);
        } else if (e.event === 'run-end') {
          failedHostLines(e).forEach(write);
        }
      },
      done: () => undefined,
    };
  }
  const live = createLogUpdate(out);
  let lastFailure = '';
  let finished = false;
  const render = () => {
    const cur = t.current;
    const lines = [
      `${bar(t.done, t.total)} ${t.done}/${t.total} points${t.failed ? `, ${t.failed} failed` : ''}  elapsed ${formatSeconds(t.elapsed())}  ETA ${formatSeconds(t.eta())}`,
      cur
        ? `now: ${cur.variant} · ${cur.workload} · round ${cur.round + 1}${cur.host === 'local' ? '' : ` · ${cur.host}`} (${formatSeconds((Date.now() - t.currentSince) / 1000)})`
        : 'now: -',
    ];
    if (lastFailure) lines.push(`last failure: ${lastFailure}`);
    live(lines.join('\n'));
  };
  const timer = setInterval(render, 1000);
  timer.unref();
  return {
    sink: (e) => {
      t.update(e);
      if (e.event === 'run-start') {
        headline(e);
      } else if (e.event === 'point-end' && e.status === 'failed') {
        lastFailure = `${e.variant} ${e.workload}: ${e.error?.split('\n')[0]}`;
        live.clear();
        write(`kvmio: ${e.variant} ${e.workload} FAILED: ${e.error}`);
      } else if (e.event === 'warning') {
        live.clear();
        write(`kvmio: WARNING: ${e.line}`);
      } else if (e.event === 'adaptive-round') {
        live.clear();
        write(`kvmio: adaptive round ${e.round + 1}: ${e.points} more point(s)`);
      } else if (e.event === 'race-round' && e.skipped > 0) {
        live.clear();
        write(raceLine(e));
      } else if (e.event === 'interrupted') {
        clearInterval(timer);
        live.done();
        write(`kvmio: interrupted by ${e.signal}; resume with: ${e.resume}`);
        return;
      } else if (e.event === 'run-end' && e.failedHosts?.length) {
        live.clear();
        failedHostLines(e).forEach(write);
      }
      if (e.event !== 'log') render();
    },
    done: () => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      render();
      live.done();
    },
  };
}

function raceLine(e: Extract<RunEvent, { event: 'race-round' }>): string {
  const why = e.reason ?? `${e.decided} comparison(s) decided, ${e.open} open`;
  return `kvmio: race round ${e.round + 1}: ${e.points} point(s), ${e.skipped} left out (${why})`;
}
