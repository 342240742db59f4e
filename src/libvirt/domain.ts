import { DOMParser, type Document, type Element, XMLSerializer } from '@xmldom/xmldom';
import { parseCpuList } from '../study/cpuset.js';
import { TEST_DISK_SERIAL } from '../study/disks.js';
import type { Pinning, Qcow2Options, Variant } from '../study/types.js';
import { variantDisks } from '../study/variants.js';
import { UserError } from '../util/errors.js';
import { type Accel, type DomainOwner, diskXml, KVMIO_XMLNS, scsiControllerXml } from './xml.js';

/**
 * A user's own libvirt domain, varied: the user's XML is kept whole (parsed with a DOM, so every
 * element, attribute, comment and namespace kvmio does not own survives), and kvmio adds only the
 * test disk(s), their virtio-scsi controller(s), iothreads after the user's own and hugepages memory
 * backing. The copy runs under a new name without the user's UUID, its disks behind throwaway qcow2
 * overlays, so neither the user's definition nor their data is ever written.
 */

/** A domain XML larger than this is refused before parsing (real ones are a few KiB). */
export const DOMAIN_XML_MAX_BYTES = 1024 * 1024;

/** Disk formats an overlay may name as its backing format (qemu-img -F); never probed. */
const BACKING_FORMATS = ['raw', 'qcow2', 'qed', 'vmdk', 'vdi', 'vpc', 'vhdx'] as const;

/** Host paths from the user's XML that kvmio hands to qemu-img or copies: absolute, plain, no `..`. */
const SAFE_HOST_PATH = /^\/[A-Za-z0-9._+@%,:=~ /-]*$/;

function isPlainPath(path: string): boolean {
  return SAFE_HOST_PATH.test(path) && !path.split('/').includes('..');
}

const AGENT_CHANNEL = 'org.qemu.guest_agent.0';

/** A user disk that the copy sees through a throwaway overlay; kvmio creates it before the VM starts. */
export interface DiskOverlay {
  /** The user's disk (file or block device): the overlay's read-only backing. */
  backing: string;
  backingFormat: string;
  /** qcow2 overlay in kvmio's scratch directory, removed with the VM. */
  overlay: string;
  /** The guest target (for messages only). */
  target: string;
}

/** How kvmio's test devices are numbered among the user's (live verification checks these). */
export interface TestDeviceLayout {
  /** The user's own iothreads (kvmio's come after them), and their ids. */
  userIothreads: number;
  userIothreadIds: number[];
  /** kvmio's iothread n (1-based, as testDiskIothread counts) is `iothreadBase + n`. */
  iothreadBase: number;
  /** Index of test disk i's virtio-scsi controller. */
  scsiControllers: number[];
}

export interface MergeOptions {
  /** The user's domain XML, and where it came from (a file path or `domain NAME on URI`), for messages. */
  xml: string;
  source: string;
  variant: Variant;
  /** The copy's name. */
  name: string;
  accel: Accel;
  /** Test disk paths (testDiskPaths) as the libvirt host sees them. */
  testDisks: string[];
  diskType?: 'file' | 'block';
  iothreadVqMapping?: boolean;
  /** The study's qcow2 settings, for qcow2 variants' test disks. */
  qcow2?: Qcow2Options;
  pinning?: Pinning;
  owner?: DomainOwner;
  study: string;
  /** Directory on the libvirt host for overlays, NVRAM copies and redirected chardev files. */
  scratch: string;
}

export interface MergedDomain {
  xml: string;
  /** The user's domain name, as their XML says. */
  userName: string;
  /** The user's domain UUID (lower case), where their XML has one. */
  userUuid?: string;
  overlays: DiskOverlay[];
  /** Files to copy before start (UEFI variable store): from the user's path to the scratch one. */
  copies: Array<{ from: string; to: string }>;
  /** Every host path of the user's disks (for the running-VM check). */
  userDiskPaths: string[];
  layout: TestDeviceLayout;
  /** What kvmio changed besides adding its test devices, one sentence each (shown in the plan). */
  notes: string[];
}

/** Parses a user's domain XML, refusing anything that is not a plain x86_64 KVM/QEMU `<domain>`. */
export function parseUserDomain(xml: string, source: string): Element {
  if (Buffer.byteLength(xml) > DOMAIN_XML_MAX_BYTES)
    throw new UserError(`${source}: larger than ${DOMAIN_XML_MAX_BYTES / 1024} KiB; not a domain XML`);
  // A domain never needs a DTD; refusing it outright rules out entity tricks whatever the parser does.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new UserError(`${source}: has a DTD (<!DOCTYPE>); not allowed`);
  let root: Element | null;
  try {
    const doc = new DOMParser({
      onError: (level, message) => {
        throw new Error(`${level}: ${message}`);
      },
    }).parseFromString(xml, 'text/xml');
    root = doc.documentElement;
  } catch (e) {
    const reason = (e as Error).message.split('\n')[0]?.replace(/^\[xmldom \w+\]\s*/, '');
    throw new UserError(`${source}: not XML (${reason})`);
  }
  if (root?.tagName !== 'domain' || root.namespaceURI)
    throw new UserError(`${source}: not a libvirt <domain> (the root element is <${root?.tagName ?? ''}>)`);
  const type = root.getAttribute('type');
  if (type !== 'kvm' && type !== 'qemu')
    throw new UserError(`${source}: <domain type='${type ?? ''}'>: kvmio varies kvm and qemu domains only`);
  const osType = child(root, 'os') && child(child(root, 'os') as Element, 'type');
  const arch = osType?.getAttribute('arch') ?? '';
  if (osType?.textContent?.trim() !== 'hvm' || arch !== 'x86_64')
    throw new UserError(
      `${source}: <os><type arch='${arch}'>${osType?.textContent?.trim() ?? ''}</type>: kvmio runs x86_64 hvm guests only (arch='x86_64' required)`,
    );
  if (!child(root, 'name')?.textContent?.trim()) throw new UserError(`${source}: the domain has no <name>`);
  if (!child(root, 'devices')) throw new UserError(`${source}: the domain has no <devices>`);
  return root;
}

/** Merges the variant's test devices into the user's domain; pure (files are made by the caller). */
export function mergeDomain(opts: MergeOptions): MergedDomain {
  const root = parseUserDomain(opts.xml, opts.source);
  const doc = docOf(root);
  const src = opts.source;
  const notes: string[] = [];
  const devices = child(root, 'devices') as Element;
  const userName = (child(root, 'name')?.textContent ?? '').trim();

  // Identity: a new name, no UUID (libvirt makes one), so the copy never clashes with the original.
  setText(child(root, 'name') as Element, opts.name);
  const uuid = child(root, 'uuid');
  const userUuid = uuid?.textContent?.trim().toLowerCase() || undefined;
  if (uuid) removeIndented(uuid);
  root.removeAttribute('id'); // a running domain's number, not part of a definition
  const domainType = opts.accel === 'kvm' ? 'kvm' : 'qemu';
  if (root.getAttribute('type') !== domainType) {
    notes.push(
      `domain type ${root.getAttribute('type')} runs as ${domainType} (this host runs guests under ${opts.accel})`,
    );
    root.setAttribute('type', domainType);
  }
  markOwned(root, opts, userName);

  const { overlays, userDiskPaths } = overlayUserDisks(devices, opts, notes);
  const copies = copyNvram(root, opts, notes);
  redirectChardevFiles(devices, opts, notes);
  refuseWritableHostDevices(devices, src);
  ensureAgentChannel(devices, notes);
  mergeMemoryBacking(root, opts);

  const v = opts.variant;
  const disks = variantDisks(v);
  // iothreads: kvmio's come after the user's ids.
  const userIothreads = iothreadIds(root, src);
  const iothreadBase = userIothreads.length ? Math.max(...userIothreads) : 0;
  if (v.iothreads > 0) setIothreads(root, userIothreads, iothreadBase, v.iothreads);
  mergePinning(root, opts, iothreadBase);

  const userDisks = elements(devices, 'disk');
  for (const d of userDisks) {
    const serial = child(d, 'serial')?.textContent?.trim() ?? '';
    if (serial.startsWith(TEST_DISK_SERIAL))
      throw new UserError(`${src}: a disk of the domain has serial ${serial}, which kvmio's test disks use`);
  }
  const usedTargets = new Set(userDisks.map((d) => child(d, 'target')?.getAttribute('dev') ?? ''));
  const scsiControllers = v.bus === 'virtio-scsi' ? freeScsiControllers(devices, disks) : [];
  const remapIothread = (el: Element | undefined) => {
    const id = el?.getAttribute('iothread');
    if (el && id) el.setAttribute('iothread', String(iothreadBase + Number(id)));
  };
  for (const [index, path] of opts.testDisks.entries()) {
    const disk = fragment(
      doc,
      diskXml({
        variant: v,
        diskPath: path,
        diskType: opts.diskType,
        iothreadVqMapping: opts.iothreadVqMapping,
        index,
        qcow2: opts.qcow2,
      }),
    );
    const dev = freeTarget(usedTargets, v.bus === 'virtio-blk' ? 'vd' : 'sd');
    usedTargets.add(dev);
    child(disk, 'target')?.setAttribute('dev', dev);
    const driver = child(disk, 'driver');
    remapIothread(driver);
    for (const t of driver ? elements(child(driver, 'iothreads') ?? driver, 'iothread') : [])
      t.setAttribute('id', String(iothreadBase + Number(t.getAttribute('id'))));
    if (v.bus === 'virtio-scsi') {
      const address =
        child(disk, 'address') ??
        appendIndented(
          disk,
          fragment(doc, `<address type='drive' controller='0' bus='0' target='0' unit='0'/>`),
        );
      address.setAttribute('controller', String(scsiControllers[index]));
    }
    appendIndented(devices, disk);
  }
  for (const [index, controllerIndex] of scsiControllers.entries()) {
    const controller = fragment(doc, scsiControllerXml(v, '', index));
    controller.setAttribute('index', String(controllerIndex));
    remapIothread(child(controller, 'driver'));
    appendIndented(devices, controller);
  }
  // Hot-plug aside, the test disks are kvmio's; say where they are so the plan and artefacts agree.
  if (overlays.length)
    notes.push(
      `the domain's own disks (${overlays.map((o) => o.target).join(', ')}) are attached through throwaway qcow2 overlays: the copy never writes them`,
    );
  return {
    xml: `${new XMLSerializer().serializeToString(root)}\n`,
    userName,
    userUuid,
    overlays,
    copies,
    userDiskPaths,
    layout: {
      userIothreads: userIothreads.length,
      userIothreadIds: userIothreads,
      iothreadBase,
      scsiControllers,
    },
    notes,
  };
}

/** The metadata element that marks kvmio's domains (reapOrphans), added beside the user's metadata. */
function markOwned(root: Element, opts: MergeOptions, userName: string): void {
  const doc = docOf(root);
  let metadata = child(root, 'metadata');
  if (metadata && Array.from(metadata.childNodes).some((n) => (n as Element).namespaceURI === KVMIO_XMLNS))
    throw new UserError(`${opts.source}: the domain is already a kvmio copy (it has kvmio's metadata)`);
  if (!metadata) {
    metadata = doc.createElement('metadata');
    insertAfter(root, metadata, child(root, 'description') ?? child(root, 'title') ?? child(root, 'name'));
  }
  const mark = doc.createElementNS(KVMIO_XMLNS, 'kvmio:domain');
  mark.setAttribute('study', opts.study);
  mark.setAttribute('variant', opts.variant.id);
  mark.setAttribute('copy-of', userName);
  if (opts.owner) {
    mark.setAttribute('owner-host', opts.owner.host);
    mark.setAttribute('owner-pid', String(opts.owner.pid));
  }
  appendIndented(metadata, mark);
}

/**
 * Every writable disk of the user's is switched to a qcow2 overlay backed by it; read-only and
 * transient disks, CD-ROMs and empty drives stay as they are. Disks kvmio cannot put behind an
 * overlay are made read-only; SCSI passthrough LUNs are refused.
 */
function overlayUserDisks(
  devices: Element,
  opts: MergeOptions,
  notes: string[],
): { overlays: DiskOverlay[]; userDiskPaths: string[] } {
  const overlays: DiskOverlay[] = [];
  const userDiskPaths: string[] = [];
  for (const disk of elements(devices, 'disk')) {
    const target = child(disk, 'target')?.getAttribute('dev') ?? '?';
    const what = `${opts.source}: disk ${target}`;
    const type = disk.getAttribute('type') ?? 'file';
    const device = disk.getAttribute('device') ?? 'disk';
    const source = child(disk, 'source');
    const path = source?.getAttribute(type === 'block' ? 'dev' : 'file') ?? undefined;
    if (path && (type === 'file' || type === 'block')) userDiskPaths.push(path);
    if (!source || (!path && (type === 'file' || type === 'block'))) continue; // an empty drive
    if (device === 'cdrom' || device === 'floppy' || child(disk, 'readonly') || child(disk, 'transient'))
      continue;
    if (device === 'lun')
      throw new UserError(
        `${what}: a SCSI passthrough LUN cannot be kept from being written; remove it from the domain kvmio varies`,
      );
    if (type !== 'file' && type !== 'block') {
      disk.appendChild(docOf(disk).createElement('readonly'));
      notes.push(
        `disk ${target} (type ${type}) is attached read-only: kvmio puts only file and block disks behind overlays`,
      );
      continue;
    }
    // Without a format libvirt opens a disk as raw (it never probes); so does its overlay.
    const driver = child(disk, 'driver') ?? insertAfter(disk, docOf(disk).createElement('driver'), undefined);
    if (!driver.getAttribute('name')) driver.setAttribute('name', 'qemu');
    const format = driver.getAttribute('type') || 'raw';
    if (!(BACKING_FORMATS as readonly string[]).includes(format))
      throw new UserError(
        `${what}: <driver type='${format}'>: kvmio puts only ${BACKING_FORMATS.join(', ')} disks behind an overlay`,
      );
    if (!isPlainPath(path as string))
      throw new UserError(
        `${what}: source ${JSON.stringify(path)} is not a plain absolute path (letters, digits and ._+@%,:=~ -/)`,
      );
    const overlay = `${opts.scratch}/overlay-${overlays.length}.qcow2`;
    overlays.push({ backing: path as string, backingFormat: format, overlay, target });
    disk.setAttribute('type', 'file');
    source.removeAttribute('dev');
    source.setAttribute('file', overlay);
    driver.setAttribute('type', 'qcow2');
    // The overlay's header names its backing file and format; a stale chain here would override it.
    const chain = child(disk, 'backingStore');
    if (chain) removeIndented(chain);
  }
  return { overlays, userDiskPaths };
}

/** A UEFI variable store is written by the firmware: the copy gets its own copy of it. */
function copyNvram(root: Element, opts: MergeOptions, notes: string[]): Array<{ from: string; to: string }> {
  const os = child(root, 'os');
  const loader = os && child(os, 'loader');
  if (loader && loader.getAttribute('readonly') === 'no' && loader.getAttribute('type') === 'pflash')
    throw new UserError(
      `${opts.source}: <loader readonly='no'>: the firmware image itself is writable; kvmio would not run a copy that writes it`,
    );
  const nvram = os && child(os, 'nvram');
  if (!nvram) return [];
  const to = `${opts.scratch}/nvram.fd`;
  // The classic form names the file as text; newer libvirt also takes <nvram type='file'><source file=…/>.
  const type = nvram.getAttribute('type');
  const source = child(nvram, 'source');
  let from: string;
  if (!type && !source) {
    from = nvram.textContent?.trim() ?? '';
    setText(nvram, to);
  } else if (type === 'file' && source?.getAttribute('file')) {
    from = source.getAttribute('file') as string;
    source.setAttribute('file', to);
  } else
    throw new UserError(
      `${opts.source}: <nvram type='${type ?? ''}'>: kvmio copies only a local variable-store file`,
    );
  if (!from) return [];
  if (!isPlainPath(from))
    throw new UserError(`${opts.source}: <nvram> ${JSON.stringify(from)} is not a plain absolute path`);
  notes.push(`the UEFI variable store ${from} is copied; the copy's firmware writes only the copy`);
  return [{ from, to }];
}

/** Character devices writing into the user's files (serial logs) write into scratch instead. */
function redirectChardevFiles(devices: Element, opts: MergeOptions, notes: string[]): void {
  let n = 0;
  for (const tag of ['serial', 'console', 'parallel', 'channel']) {
    for (const dev of elements(devices, tag)) {
      const sources = dev.getAttribute('type') === 'file' ? elements(dev, 'source') : [];
      for (const el of [...sources, ...elements(dev, 'log')]) {
        const attr = el.tagName === 'log' ? 'file' : 'path';
        const path = el.getAttribute(attr);
        if (!path) continue;
        const to = `${opts.scratch}/chardev-${n++}.log`;
        el.setAttribute(attr, to);
        notes.push(`${tag} output to ${path} goes to ${to}`);
      }
    }
  }
}

function refuseWritableHostDevices(devices: Element, source: string): void {
  const hostdev = elements(devices, 'hostdev')[0];
  if (hostdev)
    throw new UserError(
      `${source}: <hostdev type='${hostdev.getAttribute('type') ?? ''}'>: a copy would drive the real host device (and write to it); remove passthrough devices from the domain kvmio varies`,
    );
  for (const fs of elements(devices, 'filesystem')) {
    if (!child(fs, 'readonly'))
      throw new UserError(
        `${source}: <filesystem> ${child(fs, 'target')?.getAttribute('dir') ?? ''} is writable: a copy would write the host directory; make it <readonly/> or remove it`,
      );
  }
}

/** kvmio talks to the guest through its agent: a domain without the channel gets one. */
function ensureAgentChannel(devices: Element, notes: string[]): void {
  const has = elements(devices, 'channel').some(
    (c) => child(c, 'target')?.getAttribute('name') === AGENT_CHANNEL,
  );
  if (has) return;
  const channel = `<channel type='unix'>\n  <target type='virtio' name='${AGENT_CHANNEL}'/>\n</channel>`;
  appendIndented(devices, fragment(docOf(devices), channel));
  notes.push('a guest-agent channel (org.qemu.guest_agent.0) is added: kvmio drives the guest through it');
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1e6,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1e9,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1e12,
};

/** A libvirt scaled integer (`<memory unit='MiB'>512</memory>`) in bytes. */
export function scaledBytes(el: Element, source: string): number {
  const unit = (el.getAttribute('unit') ?? 'KiB').toLowerCase();
  const value = Number(el.textContent?.trim());
  const scale = UNIT_BYTES[unit];
  if (!scale || !Number.isFinite(value) || value < 0)
    throw new UserError(`${source}: <${el.tagName}> ${el.textContent?.trim()} ${unit} is not a size`);
  return value * scale;
}

/** The hugepages axis: the user's own hugepages satisfy it; a 4k variant cannot take them away. */
function mergeMemoryBacking(root: Element, opts: MergeOptions): void {
  const backing = child(root, 'memoryBacking');
  const userHuge = backing && child(backing, 'hugepages');
  const want = opts.variant.memory === 'hugepages';
  const where = `${opts.source}: variant ${opts.variant.id}`;
  if (!want) {
    if (userHuge)
      throw new UserError(
        `${where}: the domain's <memoryBacking> has <hugepages/>, which a 4k variant would have to remove; use matrix memory: [hugepages] or drop them from the domain`,
      );
    return;
  }
  if (userHuge) return;
  const source = backing && child(backing, 'source')?.getAttribute('type');
  if (source === 'anonymous')
    throw new UserError(
      `${where}: the domain's <memoryBacking><source type='anonymous'/> excludes hugepages; remove it or use matrix memory: [4k]`,
    );
  const memory = child(root, 'memory');
  if (memory && scaledBytes(memory, opts.source) % (2 * 1024 * 1024) !== 0)
    throw new UserError(`${where}: the domain's <memory> is not a multiple of 2 MiB, which hugepages need`);
  const doc = docOf(root);
  let mb = backing;
  if (!mb) {
    mb = doc.createElement('memoryBacking');
    insertAfter(root, mb, child(root, 'currentMemory') ?? child(root, 'memory'));
  }
  appendIndented(mb, doc.createElement('hugepages'));
}

/** The user's iothread ids: `<iothreadids>` when given, else 1..`<iothreads>`. */
function iothreadIds(root: Element, source: string): number[] {
  const ids = child(root, 'iothreadids');
  const explicit = ids ? elements(ids, 'iothread').map((t) => Number(t.getAttribute('id'))) : [];
  if (explicit.some((id) => !Number.isInteger(id) || id < 1))
    throw new UserError(`${source}: <iothreadids> has an id that is not a whole number >= 1`);
  const countEl = child(root, 'iothreads');
  const count = countEl ? Number(countEl.textContent?.trim()) : 0;
  if (!Number.isInteger(count) || count < 0)
    throw new UserError(`${source}: <iothreads> ${countEl?.textContent?.trim()} is not a whole number`);
  const all = new Set(explicit);
  for (let id = 1; all.size < count; id++) all.add(id);
  return [...all].sort((a, b) => a - b);
}

function setIothreads(root: Element, user: number[], base: number, ours: number): void {
  const doc = docOf(root);
  let countEl = child(root, 'iothreads');
  if (!countEl) {
    countEl = doc.createElement('iothreads');
    insertAfter(root, countEl, child(root, 'vcpus') ?? child(root, 'vcpu'));
  }
  setText(countEl, String(user.length + ours));
  // Without <iothreadids> libvirt numbers them 1..N, which puts kvmio's right after the user's.
  const ids = child(root, 'iothreadids');
  if (!ids) return;
  for (let n = 1; n <= ours; n++) {
    const t = doc.createElement('iothread');
    t.setAttribute('id', String(base + n));
    appendIndented(ids, t);
  }
}

/** Study pinning: added where the domain has none; the same thread pinned two ways is refused. */
function mergePinning(root: Element, opts: MergeOptions, iothreadBase: number): void {
  const p = opts.pinning;
  const v = opts.variant;
  if (!p || (!p.vcpus && !p.emulator && !(p.iothreads && v.iothreads > 0))) return;
  const doc = docOf(root);
  let cputune = child(root, 'cputune');
  if (!cputune) {
    cputune = doc.createElement('cputune');
    insertAfter(root, cputune, child(root, 'iothreadids') ?? child(root, 'iothreads') ?? child(root, 'vcpu'));
  }
  const pin = (tag: string, attrs: Record<string, string>) => {
    const el = doc.createElement(tag);
    for (const [k, val] of Object.entries(attrs)) el.setAttribute(k, val);
    appendIndented(cputune as Element, el);
  };
  const conflict = (what: string, key: string) =>
    new UserError(
      `${opts.source}: the domain's <cputune> already pins ${what}; remove pinning.${key} from the study or the pinning from the domain`,
    );
  if (p.vcpus) {
    if (elements(cputune, 'vcpupin').length) throw conflict('vCPUs', 'vcpus');
    const cpus = parseCpuList(p.vcpus, 'pinning.vcpus');
    const vcpus = Number(child(root, 'vcpu')?.textContent?.trim() ?? 1);
    for (let i = 0; i < vcpus; i++)
      pin('vcpupin', { vcpu: String(i), cpuset: String(cpus[i % cpus.length]) });
  }
  if (p.emulator) {
    if (elements(cputune, 'emulatorpin').length) throw conflict('the emulator', 'emulator');
    parseCpuList(p.emulator, 'pinning.emulator');
    pin('emulatorpin', { cpuset: p.emulator });
  }
  if (p.iothreads && v.iothreads > 0) {
    const cpus = parseCpuList(p.iothreads, 'pinning.iothreads');
    for (let n = 1; n <= v.iothreads; n++)
      pin('iothreadpin', { iothread: String(iothreadBase + n), cpuset: String(cpus[(n - 1) % cpus.length]) });
  }
}

/**
 * Indexes for kvmio's virtio-scsi controllers after every SCSI controller the user has or libvirt
 * will add for the user's unaddressed SCSI disks (up to 7 to a controller when libvirt assigns).
 */
function freeScsiControllers(devices: Element, count: number): number[] {
  const used: number[] = [];
  for (const c of elements(devices, 'controller'))
    if (c.getAttribute('type') === 'scsi') used.push(Number(c.getAttribute('index') ?? 0));
  let unaddressed = 0;
  for (const el of [...elements(devices, 'disk'), ...elements(devices, 'hostdev')]) {
    const bus = child(el, 'target')?.getAttribute('bus');
    if (el.tagName === 'disk' && bus !== 'scsi') continue;
    const address = child(el, 'address');
    if (address?.getAttribute('type') === 'drive') used.push(Number(address.getAttribute('controller') ?? 0));
    else if (el.tagName === 'disk') unaddressed++;
  }
  const first = Math.max(-1, ...used.filter(Number.isInteger)) + 1 + Math.ceil(unaddressed / 7);
  return Array.from({ length: count }, (_, i) => first + i);
}

/** The first target name with `prefix` (vd/sd + letters, as the kernel names them) nobody uses. */
function freeTarget(used: Set<string>, prefix: string): string {
  for (let n = 0; ; n++) {
    let suffix = '';
    for (let k = n; k >= 0; k = Math.floor(k / 26) - 1) suffix = String.fromCharCode(97 + (k % 26)) + suffix;
    if (!used.has(prefix + suffix)) return prefix + suffix;
  }
}

function docOf(el: Element): Document {
  if (!el.ownerDocument) throw new Error(`<${el.tagName}> belongs to no document`);
  return el.ownerDocument;
}

function child(el: Element, tag: string): Element | undefined {
  for (const n of Array.from(el.childNodes))
    if (n.nodeType === 1 && (n as Element).tagName === tag) return n as Element;
  return undefined;
}

function elements(el: Element, tag: string): Element[] {
  return Array.from(el.childNodes).filter(
    (n) => n.nodeType === 1 && (n as Element).tagName === tag,
  ) as Element[];
}

function setText(el: Element, text: string): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  el.appendChild(docOf(el).createTextNode(text));
}

/** The indentation of `parent`'s children, judged from the whitespace before its first child element. */
function indentOf(parent: Element): { inner: string; outer: string } {
  const first = Array.from(parent.childNodes).find((n) => n.nodeType === 1);
  const before = first?.previousSibling;
  const inner =
    before?.nodeType === 3 ? (/\n([ \t]*)$/.exec(before.nodeValue ?? '')?.[1] ?? '  ') : undefined;
  const parentIndent =
    parent.previousSibling?.nodeType === 3
      ? (/\n([ \t]*)$/.exec(parent.previousSibling.nodeValue ?? '')?.[1] ?? '')
      : '';
  return { inner: inner ?? `${parentIndent}  `, outer: parentIndent };
}

/** kvmio's own XML (from its builders) as an element of `doc`. */
function fragment(doc: Document, xml: string): Element {
  const el = new DOMParser().parseFromString(xml, 'text/xml').documentElement;
  if (!el) throw new Error(`not XML: ${xml}`);
  return doc.importNode(el, true) as Element;
}

/** Removes `el` with the whitespace that indented it. */
function removeIndented(el: Element): void {
  const before = el.previousSibling;
  if (before?.nodeType === 3 && /^\s*$/.test(before.nodeValue ?? '')) el.parentNode?.removeChild(before);
  el.parentNode?.removeChild(el);
}

/** Appends `el` as the last child element of `parent`, indented like its siblings; returns `el`. */
function appendIndented(parent: Element, el: Element): Element {
  const doc = docOf(parent);
  const { inner, outer } = indentOf(parent);
  const last = parent.lastChild;
  if (last?.nodeType === 3 && /^\s*$/.test(last.nodeValue ?? '')) parent.removeChild(last);
  reindent(el, inner);
  parent.appendChild(doc.createTextNode(`\n${inner}`));
  parent.appendChild(el);
  parent.appendChild(doc.createTextNode(`\n${outer}`));
  return el;
}

/** Inserts `el` after `ref` (or first) among `parent`'s children, indented like them; returns `el`. */
function insertAfter(parent: Element, el: Element, ref: Element | undefined): Element {
  const doc = docOf(parent);
  const { inner } = indentOf(parent);
  reindent(el, inner);
  const next = ref ? ref.nextSibling : parent.firstChild;
  parent.insertBefore(doc.createTextNode(`\n${inner}`), next);
  parent.insertBefore(el, next);
  return el;
}

/** Re-indents a parsed fragment's descendants (kvmio's own builders indent from column 0). */
function reindent(el: Element, indent: string): void {
  for (const n of Array.from(el.childNodes)) {
    if (n.nodeType === 3 && /^\s*$/.test(n.nodeValue ?? '')) {
      const depth = /\n([ \t]*)$/.exec(n.nodeValue ?? '')?.[1] ?? '';
      n.nodeValue = `\n${indent}${depth}`;
    } else if (n.nodeType === 1) reindent(n as Element, indent);
  }
}
