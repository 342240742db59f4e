/** What the run engine tells its observers (the progress view, `--json` lines, tests). */
export type RunEvent =
  | {
      event: 'run-start';
      run: string;
      name: string;
      db: string;
      resumed: boolean;
      /** Points this invocation will run (resume: the missing and failed ones). */
      todo: number;
      /** Points of the whole plan. */
      total: number;
      alreadyDone: number;
      estimatedSeconds: number;
      accelerator: string;
      acceleratorReason: string;
      warning?: string;
      notes: string[];
    }
  | {
      event: 'point-start';
      run: string;
      index: number;
      round: number;
      host: string;
      variant: string;
      workload: string;
      /** Points left to run after this one starts (this one included). */
      left: number;
      adaptive: boolean;
    }
  | {
      event: 'point-end';
      run: string;
      index: number;
      variant: string;
      workload: string;
      status: 'ok' | 'failed';
      durationSeconds: number;
      error?: string;
    }
  | { event: 'adaptive-round'; run: string; round: number; points: number; reasons: string[] }
  | {
      event: 'race-round';
      run: string;
      /** The round about to run (0-based), and its points racing runs and leaves out. */
      round: number;
      points: number;
      skipped: number;
      /** Comparisons decided and still open after the last look. */
      decided: number;
      open: number;
      /** Why points are left out beyond decided comparisons (the time budget). */
      reason?: string;
    }
  | { event: 'log'; run: string; line: string }
  /** Something the user should read although the run goes on (a guest booted twice). */
  | { event: 'warning'; run: string; line: string }
  | { event: 'interrupted'; run: string; signal: string; resume: string }
  | {
      event: 'run-end';
      run: string;
      status: 'complete' | 'partial' | 'interrupted';
      ok: number;
      failed: number;
      seconds: number;
      /** Hosts given up on (multi-host studies), with why. */
      failedHosts?: Array<{ name: string; reason: string }>;
    };

export type RunEventSink = (e: RunEvent) => void;
