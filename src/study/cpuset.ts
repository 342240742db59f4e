/** Parses a cpuset list like "0-1,4" into CPU numbers, in the order given; undefined when malformed. */
export function parseCpuset(text: string): number[] | undefined {
  const cpus: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to > 4095) return undefined;
    for (let cpu = from; cpu <= to; cpu++) if (!cpus.includes(cpu)) cpus.push(cpu);
  }
  return cpus;
}
