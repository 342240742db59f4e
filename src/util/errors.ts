/**
 * Errors a user can fix (bad study file, bad flag, missing tool) are UserErrors: the CLI prints
 * their message alone and exits 2. Anything else is a bug or an environment fault and keeps its stack
 * behind --debug.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    // Messages quote file contents: they stay one line of plain text whatever a file held.
    super(printable(message, MAX_MESSAGE_CHARS));
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

/** A measured point failed (QEMU died, guest hung, workload failed): recorded, and the run goes on. */
export class PointFailure extends Error {
  constructor(
    message: string,
    /** kernelLog: the kernel log lines about the dead process (signal, address, library). */
    readonly detail: { consoleTail?: string; stderrTail?: string; kernelLog?: string } = {},
  ) {
    super(message);
    this.name = 'PointFailure';
  }
}

/** A host does not answer at all: every point on it would fail the same way, so it is given up. */
export class HostUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostUnreachableError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Longest value a message quotes; a study can hold megabytes in one value. */
export const MAX_QUOTED_CHARS = 120;
/** Longest error message printed: a key path alone can be as long as a file allows. */
const MAX_MESSAGE_CHARS = 2000;

// C0 controls, DEL, C1 controls, and the Unicode line separators and bidi overrides that rewrite
// how a terminal shows the rest of the line.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  switch (c) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\u001b':
      return '\\e';
    default: {
      const code = c.charCodeAt(0);
      return code <= 0xff
        ? `\\x${code.toString(16).padStart(2, '0')}`
        : `\\u${code.toString(16).padStart(4, '0')}`;
    }
  }
}

/**
 * Text from a file or another program made safe for one line of a terminal or log: control
 * characters are shown escaped (`\n`, `\e`, `\x00`) and text past `max` characters is cut with a
 * note of how much was left out.
 */
export function printable(text: string, max = Number.POSITIVE_INFINITY): string {
  const cut = text.length > max;
  const head = cut ? text.slice(0, max) : text;
  const escaped = head.replace(UNPRINTABLE, escapeChar);
  return cut ? `${escaped}… (${text.length - max} more characters)` : escaped;
}

/** A value from a file, quoted for a message: `"value"`, escaped and cut as `printable` does. */
export function quoted(text: string, max = MAX_QUOTED_CHARS): string {
  return `"${printable(text, max).replace(/"/g, '\\"')}"`;
}
