import type { GuestVm } from '../guest/vm.js';
import type { MetricValue } from '../study/results.js';

/**
 * VM responsiveness while I/O runs: round trips of a no-op through the QEMU monitor and through the
 * guest agent, one after another every ~250 ms. The study warns that aio=native without an iothread
 * can block QEMU's main loop; a blocked loop shows here as long monitor round trips. A ping still in
 * flight when the window ends counts with the time it has waited so far (a lower bound), so that a VM
 * that stopped answering is not reported as quiet.
 */

export interface ProbeSummary {
  samples: number;
  failures: number;
  monitorMs: number[];
  agentMs: number[];
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest-rank: the smallest value with at least p% of samples at or below it.
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export class ResponsivenessProbe {
  private readonly monitorMs: number[] = [];
  private readonly agentMs: number[] = [];
  private failures = 0;
  private stopped = false;
  private inFlightSince: number | undefined;
  private loop: Promise<void> | undefined;

  private constructor(
    private readonly vm: GuestVm,
    private readonly intervalMs: number,
  ) {}

  static start(vm: GuestVm, intervalMs = 250): ResponsivenessProbe {
    const p = new ResponsivenessProbe(vm, intervalMs);
    p.loop = p.run();
    return p;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const began = performance.now();
      this.inFlightSince = began;
      try {
        const r = await this.vm.ping();
        if (this.stopped) break; // this answer came after the window: the in-flight time was counted
        this.monitorMs.push(r.monitorMs);
        this.agentMs.push(r.agentMs);
      } catch {
        if (this.stopped) break;
        this.failures++;
        const waited = performance.now() - began;
        this.monitorMs.push(waited);
        this.agentMs.push(waited);
      }
      this.inFlightSince = undefined;
      const rest = this.intervalMs - (performance.now() - began);
      if (rest > 0 && !this.stopped) await new Promise((r) => setTimeout(r, rest));
    }
  }

  /** Ends sampling now; an unanswered ping counts with its waiting time so far. */
  stop(): ProbeSummary {
    this.stopped = true;
    const waited = this.inFlightSince === undefined ? 0 : performance.now() - this.inFlightSince;
    // A ping cut short early would add a meaninglessly small sample; only a stuck one matters.
    if (waited >= this.intervalMs) {
      // Which of the two round trips hangs is unknown; a hang of either shows in both maxima.
      this.monitorMs.push(waited);
      this.agentMs.push(waited);
    }
    void this.loop?.catch(() => undefined);
    return {
      samples: this.monitorMs.length,
      failures: this.failures,
      monitorMs: [...this.monitorMs],
      agentMs: [...this.agentMs],
    };
  }
}

export function probeMetrics(s: ProbeSummary): MetricValue[] {
  if (s.samples === 0) return [];
  return [
    { metric: 'probe.qmp_rtt_p99_ms', value: percentile(s.monitorMs, 99), unit: 'ms' },
    { metric: 'probe.qmp_rtt_max_ms', value: Math.max(...s.monitorMs), unit: 'ms' },
    { metric: 'probe.agent_rtt_p99_ms', value: percentile(s.agentMs, 99), unit: 'ms' },
    { metric: 'probe.agent_rtt_max_ms', value: Math.max(...s.agentMs), unit: 'ms' },
    { metric: 'probe.samples', value: s.samples, unit: 'count' },
    { metric: 'probe.failures', value: s.failures, unit: 'count' },
  ];
}
