import { UserError } from '../util/errors.js';
import { compareVersions, parseRelations, type Relation, satisfies } from './deb822.js';
import type { DebianPackage } from './debian.js';

/**
 * The packages to unpack for the guest: the wanted ones and, recursively, what their Pre-Depends and
 * Depends need, as apt chooses on an empty system without Recommends: the newest version of each
 * name across the suites, the first alternative of a dependency that can be met, a real package
 * before a virtual one, and for a virtual one its most important provider. Conflicts are not
 * considered: nothing is installed, the packages' files are only unpacked and picked from.
 */

const PRIORITY_RANK: Record<string, number> = {
  required: 0,
  important: 1,
  standard: 2,
  optional: 3,
  extra: 4,
};

export interface PackageIndex {
  /** The newest version of every package name. */
  candidates: Map<string, DebianPackage>;
  /** Virtual name -> candidates that provide it, in index order. */
  providers: Map<string, { pkg: DebianPackage; version?: string }[]>;
}

export function indexPackages(all: readonly DebianPackage[]): PackageIndex {
  const candidates = new Map<string, DebianPackage>();
  for (const p of all) {
    const seen = candidates.get(p.name);
    if (!seen || compareVersions(p.version, seen.version) > 0) candidates.set(p.name, p);
  }
  const providers = new Map<string, { pkg: DebianPackage; version?: string }[]>();
  for (const pkg of candidates.values()) {
    for (const v of parseRelations(pkg.provides).flat()) {
      const list = providers.get(v.name) ?? [];
      list.push(v.op === '=' && v.version ? { pkg, version: v.version } : { pkg });
      providers.set(v.name, list);
    }
  }
  return { candidates, providers };
}

export function resolveClosure(index: PackageIndex, wanted: readonly string[]): DebianPackage[] {
  const selected = new Map<string, DebianPackage>();

  const provided = (rel: Relation, p: { version?: string }) =>
    !rel.op || (p.version !== undefined && satisfies(p.version, rel.op, rel.version));

  const met = (rel: Relation): boolean => {
    const real = selected.get(rel.name);
    if (real && satisfies(real.version, rel.op, rel.version)) return true;
    return (index.providers.get(rel.name) ?? []).some((p) => selected.has(p.pkg.name) && provided(rel, p));
  };

  const choose = (rel: Relation): DebianPackage | undefined => {
    const real = index.candidates.get(rel.name);
    if (real && satisfies(real.version, rel.op, rel.version)) return real;
    const options = (index.providers.get(rel.name) ?? []).filter((p) => provided(rel, p)).map((p) => p.pkg);
    const rank = (p: DebianPackage) => PRIORITY_RANK[p.priority ?? 'optional'] ?? 5;
    return options.sort((a, b) => rank(a) - rank(b))[0];
  };

  const install = (pkg: DebianPackage, chain: string[]): void => {
    if (selected.has(pkg.name)) return;
    selected.set(pkg.name, pkg);
    for (const group of [...parseRelations(pkg.preDepends), ...parseRelations(pkg.depends)]) {
      if (group.some(met)) continue;
      const pick = group.map(choose).find((p) => p !== undefined);
      if (!pick) {
        const text = group.map((r) => (r.op ? `${r.name} (${r.op} ${r.version})` : r.name)).join(' | ');
        throw new UserError(
          `guest: ${[...chain, pkg.name].join(' -> ')} needs ${text}, which no Debian suite searched provides`,
        );
      }
      install(pick, [...chain, pkg.name]);
    }
  };

  for (const name of wanted) {
    const pkg = index.candidates.get(name) ?? choose({ name });
    if (!pkg) throw new UserError(`guest: package ${name} is in none of the Debian suites searched`);
    install(pkg, []);
  }
  return [...selected.values()];
}
