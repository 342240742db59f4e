/**
 * Debian's control-file formats as kvmio reads them from the archive: stanzas of `Field: value`
 * (Release, Packages), dependency relations, and version ordering (deb-version(7)).
 */

export type Stanza = Map<string, string>;

/** Stanzas separated by blank lines; continuation lines (leading space) join their field with '\n'. */
export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  let current: Stanza = new Map();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (current.size) out.push(current);
      current = new Map();
      last = undefined;
    } else if (line[0] === ' ' || line[0] === '\t') {
      if (last !== undefined) current.set(last, `${current.get(last)}\n${line.trim()}`);
    } else {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      last = line.slice(0, colon);
      current.set(last, line.slice(colon + 1).trim());
    }
  }
  if (current.size) out.push(current);
  return out;
}

export type RelationOp = '<<' | '<=' | '=' | '>=' | '>>';

export interface Relation {
  name: string;
  op?: RelationOp;
  version?: string;
}

/** "a (>= 1) | b, c:any" -> [[a >= 1, b], [c]]; architecture qualifiers (:any, :native) are dropped. */
export function parseRelations(field: string | undefined): Relation[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((group) =>
      group
        .split('|')
        .map((alt): Relation | undefined => {
          const m =
            /^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?/.exec(
              alt,
            );
          if (!m) return undefined;
          // "<" and ">" are the obsolete spellings of "<=" and ">=".
          const op = m[2] === '<' ? '<=' : m[2] === '>' ? '>=' : (m[2] as RelationOp | undefined);
          return op ? { name: m[1]!, op, version: m[3]! } : { name: m[1]! };
        })
        .filter((r): r is Relation => r !== undefined),
    )
    .filter((g) => g.length > 0);
}

function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[0-9]/.test(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

/** dpkg's comparison of one upstream-version or revision part. */
function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let first = 0;
    while ((i < a.length && !/[0-9]/.test(a[i]!)) || (j < b.length && !/[0-9]/.test(b[j]!))) {
      const ac = order(a[i]);
      const bc = order(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    while (i < a.length && /[0-9]/.test(a[i]!) && j < b.length && /[0-9]/.test(b[j]!)) {
      if (!first) first = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && /[0-9]/.test(a[i]!)) return 1;
    if (j < b.length && /[0-9]/.test(b[j]!)) return -1;
    if (first) return first;
  }
  return 0;
}

function splitVersion(v: string): { epoch: number; upstream: string; revision: string } {
  const colon = v.indexOf(':');
  const epoch = colon >= 0 ? Number(v.slice(0, colon)) : 0;
  const rest = colon >= 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf('-');
  return dash >= 0
    ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) }
    : { epoch, upstream: rest, revision: '' };
}

/** Negative, zero or positive as a sorts before, with or after b (dpkg --compare-versions). */
export function compareVersions(a: string, b: string): number {
  const va = splitVersion(a);
  const vb = splitVersion(b);
  if (va.epoch !== vb.epoch) return va.epoch - vb.epoch;
  return compareFragment(va.upstream, vb.upstream) || compareFragment(va.revision, vb.revision);
}

export function satisfies(version: string, op: RelationOp | undefined, wanted: string | undefined): boolean {
  if (!op || wanted === undefined) return true;
  const c = compareVersions(version, wanted);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}
