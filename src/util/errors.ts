/**
 * Errors a user can fix (bad study file, bad flag, missing tool) are UserErrors: the CLI prints
 * their message alone and exits 2. Anything else is a bug or an environment fault and keeps its stack
 * behind --debug.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** A study-file problem: names the file, the key path and what is allowed. */
export class ConfigError extends UserError {
  constructor(
    readonly file: string,
    readonly keyPath: string,
    readonly problem: string,
    /** 1-based line in the file, when known: the message then starts with `file:LINE`. */
    readonly line?: number,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${keyPath || '(top level)'}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** Raised for a verb the CLI lists but this build does not implement yet. */
export class NotImplementedError extends UserError {
  constructor(what: string) {
    super(`${what} is not implemented yet`, 2);
    this.name = 'NotImplementedError';
  }
}

/** A measured point failed (QEMU died, guest hung, workload failed): recorded, and the run goes on. */
export class PointFailure extends Error {
  constructor(
    message: string,
    readonly detail: { consoleTail?: string; stderrTail?: string } = {},
  ) {
    super(message);
    this.name = 'PointFailure';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
