import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { ConfigError, printable, UserError } from '../util/errors.js';

const MAX_KEY_CHARS = 60;

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
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineAt = (offset: number | undefined) =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line;
  const first = doc.errors[0];
  if (first) {
    // The yaml package appends a code excerpt after the first line; the line number says enough.
    const message = first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    const line = lineAt(first.pos[0]);
    throw new UserError(`${file}${line ? `:${line}` : ''}: YAML syntax error: ${message}`);
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
    data: doc.toJS({ maxAliasCount: 100 }),
    lineOf,
    fail(path, problem) {
      throw new ConfigError(file, formatKeyPath(path), problem, lineOf(path));
    },
  };
}
