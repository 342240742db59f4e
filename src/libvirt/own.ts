import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { DOMParser, type Element } from '@xmldom/xmldom';
import type { GuestVm } from '../guest/vm.js';
import { testDiskPaths } from '../study/disks.js';
import type { DomainSource, Study, Variant, Workload } from '../study/types.js';
import { variantDisks } from '../study/variants.js';
import { UserError } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import { run } from '../util/proc.js';
import { DOMAIN_XML_MAX_BYTES, type MergedDomain, mergeDomain, parseUserDomain } from './domain.js';
import { Virsh, VirshError } from './virsh.js';
import type { Accel, DomainOwner } from './xml.js';

/**
 * Running a copy of a user's own domain: loading it (a file, or a domain defined on the study's
 * libvirt host, read and never changed), the safety checks (not running, its disks used by no running
 * VM), libvirt's own verdict on the merged XML, and the throwaway overlays the copy writes instead.
 */

/** Where the domain comes from, for messages: the file, or `domain NAME on URI`. */
export function describeDomainSource(source: DomainSource, uri: string): string {
  return 'file' in source ? source.file : `domain ${source.name} on ${uri}`;
}

/** The user's domain XML; a defined domain is only read (`dumpxml --inactive`), and must be shut off. */
export async function loadUserDomainXml(virsh: Virsh, source: DomainSource): Promise<string> {
  if ('file' in source) {
    let size: number;
    try {
      size = statSync(source.file).size;
    } catch {
      throw new UserError(`${source.file}: no such file`);
    }
    if (size > DOMAIN_XML_MAX_BYTES)
      throw new UserError(`${source.file}: larger than ${DOMAIN_XML_MAX_BYTES / 1024} KiB; not a domain XML`);
    return readFileSync(source.file, 'utf8');
  }
  const where = describeDomainSource(source, virsh.uri);
  let state: string;
  try {
    state = (await virsh.run(['domstate', source.name])).trim();
  } catch (e) {
    throw new UserError(`${where}: ${e instanceof VirshError ? e.virshMessage : (e as Error).message}`);
  }
  if (state !== 'shut off')
    throw new UserError(
      `${where} is ${state}: kvmio varies a shut-off domain only (a copy would share its disks)`,
    );
  return virsh.run(['dumpxml', '--inactive', source.name]);
}

export interface OwnDomainRequest {
  virsh: Virsh;
  study: Study;
  variant: Variant;
  name: string;
  accel: Accel;
  diskPath: string;
  diskType?: 'file' | 'block';
  iothreadVqMapping?: boolean;
  owner?: DomainOwner;
}

export interface PreparedOwnDomain extends MergedDomain {
  /** Host directory holding the overlays and copies; removed by cleanup(). */
  scratch: string;
  cleanup(): void;
}

/** Merges and checks the user's domain without touching anything (for `kvmio xml` and `kvmio argv`). */
export async function mergeOwnDomain(req: OwnDomainRequest, scratch: string): Promise<MergedDomain> {
  const source = req.study.guest.domain;
  if (!source) throw new Error('mergeOwnDomain: the study has no guest.domain');
  const where = describeDomainSource(source, req.virsh.uri);
  const xml = await loadUserDomainXml(req.virsh, source);
  parseUserDomain(xml, where);
  return mergeDomain({
    xml,
    source: where,
    variant: req.variant,
    name: req.name,
    accel: req.accel,
    testDisks: testDiskPaths(req.diskPath, variantDisks(req.variant)),
    diskType: req.diskType,
    iothreadVqMapping: req.iothreadVqMapping,
    qcow2: req.study.disk.qcow2,
    pinning: req.study.pinning,
    owner: req.owner,
    study: req.study.name,
    scratch,
  });
}

/**
 * libvirt's verdict on a domain XML without defining anything: its schema (virt-xml-validate) and its
 * translation to a QEMU command line (domxml-to-native), which runs the driver's own checks.
 */
export async function checkWithLibvirt(virsh: Virsh, file: string, where: string): Promise<string> {
  const schema = await run(['virt-xml-validate', file, 'domain'], { allowFailure: true, timeoutMs: 60_000 });
  if (schema.code !== 0) {
    const reason = (schema.stderr || schema.stdout).split('\n').find((l) => l.trim()) ?? 'invalid';
    throw new UserError(
      `${where}: libvirt's schema rejects it: ${reason.replace(file, 'the merged domain')}`,
    );
  }
  try {
    return await virsh.run(['domxml-to-native', 'qemu-argv', '--xml', file], { timeoutMs: 60_000 });
  } catch (e) {
    if (e instanceof VirshError) throw new UserError(`${where}: libvirt rejects it: ${e.virshMessage}`);
    throw e;
  }
}

/**
 * Everything before `virsh create`: the domain must be shut off and its disks used by no running VM;
 * the merged XML must pass libvirt's checks; then the overlays and the NVRAM copy are made in a
 * scratch directory QEMU can reach (libvirt relabels the files, not their directories).
 */
export async function prepareOwnDomain(req: OwnDomainRequest): Promise<PreparedOwnDomain> {
  const { virsh } = req;
  const source = req.study.guest.domain;
  if (!source) throw new Error('prepareOwnDomain: the study has no guest.domain');
  const where = describeDomainSource(source, virsh.uri);
  if (!virsh.isLocal)
    throw new UserError(
      `${where}: guest.domain runs on a local libvirt only (the disk overlays are made on this machine); ${virsh.uri} is remote`,
    );
  const scratch = mkdtempSync(`/var/tmp/kvmio-${req.name}-`);
  chmodSync(scratch, 0o711);
  const cleanup = () => rmSync(scratch, { recursive: true, force: true });
  try {
    const merged = await mergeOwnDomain(req, scratch);
    await refuseIfInUse(virsh, merged, where);
    const file = join(scratch, 'domain.xml');
    writeFileSync(file, merged.xml, { mode: 0o600 });
    await checkWithLibvirt(virsh, file, where);
    const testDisks = new Set(testDiskPaths(req.diskPath, variantDisks(req.variant)).map((p) => resolve(p)));
    for (const o of merged.overlays) {
      const what = `${where}: disk ${o.target} (${o.backing})`;
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(o.backing);
      } catch {
        throw new UserError(`${what}: no such file or device`);
      }
      if (!st.isFile() && !st.isBlockDevice()) throw new UserError(`${what}: not a file or block device`);
      if (testDisks.has(resolve(o.backing)))
        throw new UserError(`${what}: is the study's test disk too; give the test disk another disk.path`);
      const made = await run(
        ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', o.backing, '-F', o.backingFormat, o.overlay],
        { allowFailure: true, timeoutMs: 60_000 },
      );
      if (made.code !== 0)
        throw new UserError(
          `${what}: qemu-img could not make its overlay: ${made.stderr.trim().split('\n')[0]}`,
        );
    }
    for (const c of merged.copies) if (existsSync(c.from)) copyFileSync(c.from, c.to);
    return { ...merged, scratch, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** A running domain as its live XML describes it. */
export interface RunningDomain {
  name: string;
  xml: string;
}

/** A file's identity: the same file under another path (a hard link, a bind mount) or device node. */
function fileIdentity(path: string): string | undefined {
  try {
    const st = statSync(path);
    return st.isBlockDevice() ? `rdev:${st.rdev}` : `ino:${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * Why the user's domain may not be copied while `running` run, or undefined: one of them is the user's
 * domain (by name, or by UUID whatever its name), or uses one of its disks — by path or by the file or
 * device behind it, anywhere in its disks' backing chains.
 */
export function inUseReason(
  merged: Pick<MergedDomain, 'userName' | 'userUuid' | 'userDiskPaths'>,
  running: RunningDomain[],
  where: string,
): string | undefined {
  const ours = new Map<string, string>();
  for (const p of merged.userDiskPaths) {
    ours.set(`path:${resolve(p)}`, p);
    const id = fileIdentity(p);
    if (id) ours.set(id, p);
  }
  for (const dom of running) {
    if (dom.name === merged.userName)
      return `${where}: domain ${dom.name} is running; kvmio varies a shut-off domain only`;
    let root: Element | null = null;
    try {
      root = new DOMParser().parseFromString(dom.xml, 'text/xml').documentElement;
    } catch {
      root = null;
    }
    if (!root) continue;
    const uuid = root.getElementsByTagName('uuid')[0]?.textContent?.trim().toLowerCase();
    if (merged.userUuid && uuid === merged.userUuid)
      return `${where}: the running domain ${dom.name} has its UUID ${uuid}: it is this domain under another name; kvmio varies a shut-off domain only`;
    for (const source of Array.from(root.getElementsByTagName('source'))) {
      if (
        (source.parentNode as Element | null)?.nodeName !== 'disk' &&
        (source.parentNode as Element | null)?.nodeName !== 'backingStore'
      )
        continue;
      const path = source.getAttribute('file') || source.getAttribute('dev');
      if (!path?.startsWith('/')) continue;
      const id = fileIdentity(path);
      const mine = ours.get(`path:${resolve(path)}`) ?? (id ? ours.get(id) : undefined);
      if (mine)
        return `${where}: its disk ${mine} is in use by the running domain ${dom.name}${mine === path ? '' : ` (as ${path})`}`;
    }
  }
  return undefined;
}

/** Refuses when a running domain is this one (by name or UUID) or uses one of its disks. */
async function refuseIfInUse(virsh: Virsh, merged: MergedDomain, where: string): Promise<void> {
  const names = (await virsh.run(['list', '--name']))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const running: RunningDomain[] = [];
  for (const name of names) {
    // A domain that stopped meanwhile has nothing to say.
    const xml = await virsh.tryRun(['dumpxml', name]);
    if (xml) running.push({ name, xml });
  }
  const reason = inUseReason(merged, running, where);
  if (reason) throw new UserError(reason);
}

/** Guest programs each workload kind runs (the user's guest must have them; kvmio installs nothing). */
const GUEST_TOOLS: Record<Workload['kind'], string[]> = {
  fio: ['fio'],
  sweep: ['fio'],
  pgbench: ['pgbench', 'initdb', 'pg_ctl', 'mkfs.ext4'],
  // fio lays out rsync's source tree.
  rsync: ['rsync', 'mkfs.ext4', 'fio'],
};

/**
 * Says exactly which programs the study's workloads need that the user's guest lacks. fio alone is
 * not a refusal: kvmio brings its own (`bringsFio`); anything else is.
 */
export async function checkGuestTools(
  vm: Pick<GuestVm, 'exec' | 'name'>,
  study: Study,
): Promise<{ bringsFio: boolean }> {
  const needed = [...new Set(study.workloads.flatMap((w) => GUEST_TOOLS[w.kind]))];
  const missing: string[] = [];
  for (const tool of needed) {
    const r = await vm
      .exec([tool, tool === 'mkfs.ext4' ? '-V' : '--version'], { timeoutMs: 30_000 })
      .catch(() => undefined);
    if (!r || r.exitCode === 127) missing.push(tool);
  }
  const refused = missing.filter((t) => t !== 'fio');
  if (refused.length) {
    const guest = study.guest.domain ? describeDomainSource(study.guest.domain, '') : vm.name;
    const fio = missing.includes('fio') ? ' (it lacks fio too, which kvmio would bring itself)' : '';
    throw new UserError(
      `the guest of ${guest} lacks ${refused.join(', ')} (in its PATH), which the study's workloads run; install them in your guest${fio}`,
    );
  }
  return { bringsFio: missing.includes('fio') };
}

/**
 * The merged domain of a variant as `kvmio run` would start it (overlay paths under a placeholder
 * scratch directory), and with `native` libvirt's own QEMU command line for it; nothing is created.
 */
export async function previewOwnDomain(
  study: Study,
  variant: Variant,
  accel: Accel,
  opts: { native?: boolean; iothreadVqMapping?: boolean } = {},
): Promise<{ merged: MergedDomain; native?: string }> {
  const virsh = new Virsh(study.libvirt.uri);
  const name = `kvmio-${variant.id}`;
  const req = {
    virsh,
    study,
    variant,
    name,
    accel,
    diskPath: study.disk.path,
    iothreadVqMapping: opts.iothreadVqMapping,
  };
  const merged = await mergeOwnDomain(req, `/var/tmp/kvmio-${name}-XXXXXX`);
  if (!opts.native) return { merged };
  const dir = mkdtempSync(join(runtimeDir(), 'preview-'));
  try {
    const file = join(dir, 'domain.xml');
    writeFileSync(file, merged.xml, { mode: 0o600 });
    const where = describeDomainSource(study.guest.domain as DomainSource, virsh.uri);
    return { merged, native: await checkWithLibvirt(virsh, file, where) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
