import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument, visit } from 'yaml';
import { ConfigError, printable, UserError } from '../util/errors.js';

const MAX_KEY_CHARS = 60;

/**
 * Limits of a study file, checked before anything else looks at its values: a shared file can be
 * built to exhaust memory, time or the stack (alias bombs, huge matrices, hundreds of thousands of
 * keys). Each is far above what a real study needs.
 */
export const STUDY_LIMITS = {
  fileBytes: 1024 * 1024,
  nodes: 10_000,
  valueChars: 4096,
  aliases: 100,
} as const;

export type KeyPath = ReadonlyArray<string | number>;

/** `matrix.aio[2]`, `workloads[0].iodepth`: how key paths appear in messages. */
export function formatKeyPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) {
    // Keys come from the file: escaped and cut like any other value in a message.
    const key = typeof seg === 'number' ? `[${seg}]` : printable(seg, MAX_KEY_CHARS);
    out += typeof seg === 'number' || !out ? key : `.${key}`;
  }
  return out;
}

/**
 * A parsed YAML study with its line numbers: validation works on plain values (`data`) and asks
 * `lineOf` where a key path sits, so every message can say `file:LINE`.
 */
export interface YamlSource {
  file: string;
  data: unknown;
  lineOf(path: KeyPath): number | undefined;
  fail(path: KeyPath, problem: string): never;
}

export function parseYaml(text: string, file: string): YamlSource {
  const limit = (line: number | undefined, what: string): never => {
    throw new UserError(`${file}${line ? `:${line}` : ''}: ${what}`);
  };
  if (text.length > STUDY_LIMITS.fileBytes)
    limit(
      undefined,
      `the file is ${text.length} characters, over the limit of ${STUDY_LIMITS.fileBytes} (1 MiB) for a study file`,
    );
  const lineCounter = new LineCounter();
  // Duplicate keys are found below with a set per map: the yaml package's own check is quadratic.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const lineAt = (offset: number | undefined) =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line;
  const first = doc.errors[0];
  if (first) {
    // The yaml package appends a code excerpt after the first line; the line number says enough.
    const message = first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    const line = lineAt(first.pos[0]);
    throw new UserError(`${file}${line ? `:${line}` : ''}: YAML syntax error: ${message}`);
  }

  let nodes = 0;
  let aliases = 0;
  let firstAlias: number | undefined;
  visit(doc, {
    Node(_, node) {
      const line = () => lineAt((node as Node).range?.[0]);
      if (++nodes > STUDY_LIMITS.nodes)
        limit(line(), `more than ${STUDY_LIMITS.nodes} keys and values, the limit for a study file`);
      if (isAlias(node)) {
        aliases++;
        firstAlias ??= line();
        if (aliases > STUDY_LIMITS.aliases)
          limit(line(), `more than ${STUDY_LIMITS.aliases} YAML aliases, the limit for a study file`);
      }
      if (isScalar(node) && typeof node.value === 'string' && node.value.length > STUDY_LIMITS.valueChars)
        limit(
          line(),
          `a value of ${node.value.length} characters, over the limit of ${STUDY_LIMITS.valueChars}`,
        );
      if (isMap(node)) {
        const seen = new Set<unknown>();
        for (const pair of node.items) {
          const key = isScalar(pair.key) ? pair.key.value : pair.key;
          if (seen.has(key))
            limit(
              lineAt((pair.key as Node | null)?.range?.[0]),
              `YAML syntax error: Map keys must be unique`,
            );
          seen.add(key);
        }
      }
    },
  });

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: STUDY_LIMITS.aliases });
  } catch (err) {
    // An alias bomb: few aliases in the text, each expanding to many copies.
    if (/alias/i.test((err as Error).message))
      limit(
        firstAlias,
        `YAML aliases expand to too many values (at most ${STUDY_LIMITS.aliases} alias expansions in a study file)`,
      );
    throw err;
  }

  const lineOf = (path: KeyPath): number | undefined => {
    let node: unknown = doc.contents;
    let line = lineAt((node as Node | null)?.range?.[0]);
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === seg);
        if (!pair) break;
        line = lineAt((pair.key as Node).range?.[0]) ?? line;
        node = pair.value;
        // A value on the key's line or below it: prefer the value's own line when it has one.
        line = lineAt((node as Node | null)?.range?.[0]) ?? line;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
        line = lineAt((node as Node | null)?.range?.[0]) ?? line;
      } else {
        break;
      }
    }
    return line;
  };

  return {
    file,
    data,
    lineOf,
    fail(path, problem) {
      throw new ConfigError(file, formatKeyPath(path), problem, lineOf(path));
    },
  };
}
