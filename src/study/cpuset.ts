import { readFileSync } from 'node:fs';
import { UserError } from '../util/errors.js';

/** Parses a cpuset list like "0-1,4" into CPU numbers, in the order given; undefined when malformed. */
export function parseCpuset(text: string): number[] | undefined {
  const cpus: number[] = [];
  const seen = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to > 4095) return undefined;
    for (let cpu = from; cpu <= to; cpu++) {
      if (seen.has(cpu)) continue;
      seen.add(cpu);
      cpus.push(cpu);
    }
  }
  return cpus;
}

/** parseCpuset for a value that must be valid (the study loader checked it): throws naming `what` otherwise. */
export function parseCpuList(list: string, what = 'cpuset'): number[] {
  const cpus = parseCpuset(list);
  if (!cpus) throw new UserError(`${what}: "${list}" is not a CPU list (use e.g. "0-3,8")`);
  return cpus;
}

/** The CPUs this host has online (/sys/devices/system/cpu/online); undefined where that cannot be read. */
export function onlineCpus(): number[] | undefined {
  try {
    return parseCpuset(readFileSync('/sys/devices/system/cpu/online', 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** "0-3,8": a CPU list in its short form. */
export function formatCpus(cpus: number[]): string {
  const sorted = [...cpus].sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.join(',');
}
