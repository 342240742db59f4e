/** The names a study may give LVM objects (disk.lvm.vg, disk.lvm.thin), checked before LVM sees them. */

/** LVM's own name rules (lvm(8), VALID NAMES): these characters, no leading hyphen, at most 127. */
export const LVM_NAME_PATTERN = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$/;
export const LVM_NAME_HELP = 'letters, digits and + _ . - (not starting with -), at most 127 characters';
/** Names and name parts LVM keeps for itself (lvm(8)). */
const LVM_RESERVED = ['.', '..', 'snapshot', 'pvmove'];
const LVM_RESERVED_PARTS = [
  '_cdata',
  '_cmeta',
  '_corig',
  '_iorig',
  '_mimage',
  '_mlog',
  '_pmspare',
  '_rimage',
  '_rmeta',
  '_tdata',
  '_tmeta',
  '_vdata',
  '_vorigin',
];

/** Why `name` is not a name LVM accepts for a volume group or logical volume, or undefined. */
export function lvmNameProblem(name: string): string | undefined {
  if (!LVM_NAME_PATTERN.test(name)) return `is not an LVM name: ${LVM_NAME_HELP}`;
  if (LVM_RESERVED.includes(name)) return `is a name LVM reserves (${LVM_RESERVED.join(', ')})`;
  const part = LVM_RESERVED_PARTS.find((p) => name.includes(p));
  if (part) return `contains "${part}", which LVM reserves for its internal volumes`;
  return undefined;
}
