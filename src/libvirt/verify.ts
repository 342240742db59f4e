import { type LiveTestDisk, verifyQemu } from '../qemu/verify.js';
import { TEST_DISK_SERIAL, testDiskSerial, variantImagePaths } from '../study/disks.js';
import { QCOW2_DEFAULTS } from '../study/image-schema.js';
import type { Variant } from '../study/types.js';
import {
  iothreadQueues,
  variantDetectZeroes,
  variantDiscard,
  variantDisks,
  variantFormat,
  variantPath,
} from '../study/variants.js';
import { PointFailure } from '../util/errors.js';
import type { LiveContext } from './vm.js';
import { testDiskIothread } from './xml.js';

/**
 * Checks that the running domain has the test disks the variant asked for, twice: in libvirt's live
 * XML (what libvirt believes) and in QEMU itself through libvirt's monitor connection (what QEMU
 * does, qemu/verify.ts).
 */

/** Attributes of the first element `tag` inside `block` (libvirt always writes single quotes). */
function attrsOf(block: string, tag: string): Record<string, string> {
  const m = new RegExp(`<${tag}\\b([^>]*)>`).exec(block);
  const out: Record<string, string> = {};
  for (const a of m?.[1]?.matchAll(/([\w-]+)='([^']*)'/g) ?? []) out[a[1] as string] = a[2] as string;
  return out;
}

/** The live `<disk>` element whose serial is kvmio-test, and the virtio-scsi controller if any. */
export function liveTestDisk(xml: string): { disk?: string; controller?: string; iothreads: number } {
  const disk = [...xml.matchAll(/<disk\b[\s\S]*?<\/disk>/g)]
    .map((m) => m[0])
    .find((d) => d.includes(`<serial>${TEST_DISK_SERIAL}</serial>`));
  const controller = [...xml.matchAll(/<controller type='scsi'[\s\S]*?<\/controller>/g)].map((m) => m[0])[0];
  const iothreads = Number(/<iothreads>(\d+)<\/iothreads>/.exec(xml)?.[1] ?? 0);
  return { disk, controller, iothreads };
}

/** The live XML's `<disk>` elements or virtio-scsi `<controller>`s, whole (others may be self-closing). */
function liveElements(xml: string, what: 'disk' | 'scsi controller'): string[] {
  const re = what === 'disk' ? /<disk\b[\s\S]*?<\/disk>/g : /<controller type='scsi'[\s\S]*?<\/controller>/g;
  return [...xml.matchAll(re)].map((m) => m[0]);
}

export async function verifyLive(ctx: LiveContext, v: Variant): Promise<void> {
  const problems: string[] = [];
  const expect = (what: string, got: unknown, want: unknown) => {
    if (JSON.stringify(got) !== JSON.stringify(want))
      problems.push(`${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  };
  const blk = v.bus === 'virtio-blk';

  // libvirt's live definition (what libvirt believes), disk by disk (a multi-disk variant has disks
  // kvmio-test, kvmio-test-1, …, disk i on iothread (i mod M) + 1); QEMU itself is checked below.
  const xml = await ctx.virsh.run(['dumpxml', ctx.name]);
  const live = liveTestDisk(xml);
  // In a user's own domain kvmio's iothreads and controllers come after the user's.
  const layout = ctx.layout ?? {
    userIothreads: 0,
    userIothreadIds: [],
    iothreadBase: 0,
    scsiControllers: [],
  };
  // vhost-user-blk's iothreads are the storage daemon's, not QEMU's.
  const vhost = variantPath(v) === 'vhost-user-blk';
  const nbd = variantPath(v) === 'nbd';
  const qemuIothreads = vhost ? 0 : v.iothreads;
  expect('live XML iothreads', live.iothreads, qemuIothreads + layout.userIothreads);
  if (v.qemu)
    expect('live XML <emulator>', /<emulator>([^<]+)<\/emulator>/.exec(xml)?.[1]?.trim(), v.qemu.path);
  const disks = variantDisks(v);
  const paths = variantImagePaths(ctx.diskPath, v, Math.max(disks, ctx.maxDisks));
  const liveDisks: LiveTestDisk[] = [];
  for (const [i, path] of paths.slice(0, disks).entries()) {
    // Disk 0 keeps the single-disk wording.
    const which = disks === 1 ? '' : ` ${i}`;
    const serial = testDiskSerial(i);
    // A vhost-user-blk disk has no serial of libvirt's (the daemon's export answers with its own).
    const disk = liveElements(xml, 'disk').find((d) =>
      vhost ? d.startsWith("<disk type='vhostuser'") : d.includes(`<serial>${serial}</serial>`),
    );
    const controller = liveElements(xml, 'scsi controller').find(
      (c) => attrsOf(c, 'controller').index === String(layout.scsiControllers[i] ?? i),
    );
    // One iothread for the whole disk (or controller), or none: a vq-mapped disk is checked by count only.
    const n = disks > 1 || v.iothreads <= 1 ? testDiskIothread(v, i) : null;
    const own = n === null || n === undefined ? n : layout.iothreadBase + n;
    if (!disk) problems.push(`live XML has no ${vhost ? 'vhostuser disk' : `disk with serial ${serial}`}`);
    else if (vhost) {
      expect(`live XML disk${which} queues`, attrsOf(disk, 'driver').queues, String(v.queues));
      expect(`live XML disk${which} socket`, attrsOf(disk, 'source').path, ctx.served?.sockets.vhost(i));
    } else {
      const driver = attrsOf(disk, 'driver');
      expect(`live XML disk${which} cache`, driver.cache, v.cache);
      if (nbd) {
        // The daemon opens the image (format, aio); QEMU's side is a raw NBD client on its socket.
        expect(`live XML disk${which} source`, attrsOf(disk, 'source').protocol, 'nbd');
        expect(`live XML disk${which} socket`, attrsOf(disk, 'host').socket, ctx.served?.sockets.nbd);
      } else {
        expect(`live XML disk${which} io`, driver.io, v.aio);
        expect(`live XML disk${which} format`, driver.type, variantFormat(v));
        expect(`live XML disk${which} discard`, driver.discard, variantDiscard(v));
        const zeroes = variantDetectZeroes(v);
        expect(
          `live XML disk${which} detect_zeroes`,
          driver.detect_zeroes,
          zeroes === 'off' ? undefined : zeroes,
        );
      }
      expect(`live XML disk${which} bus`, attrsOf(disk, 'target').bus, blk ? 'virtio' : 'scsi');
      if (blk) {
        expect(`live XML disk${which} queues`, driver.queues, String(v.queues));
        if (own !== null) expect(`live XML disk${which} iothread`, driver.iothread, own?.toString());
      }
    }
    if (!blk) {
      if (!controller) problems.push(`live XML has no virtio-scsi controller${which}`);
      else {
        const driver = attrsOf(controller, 'driver');
        expect(`live XML controller${which} queues`, driver.queues, String(v.queues));
        if (own !== null) expect(`live XML controller${which} iothread`, driver.iothread, own?.toString());
      }
    }
    const qom = (element: string | undefined) => {
      const alias = /<alias name='([^']+)'\/>/.exec(element ?? '')?.[1];
      return alias === undefined ? undefined : `/machine/peripheral/${alias}`;
    };
    liveDisks.push({
      label: disks === 1 ? 'test disk' : `test disk ${i} (${serial})`,
      path,
      device: qom(blk ? disk : controller),
      drive: qom(disk),
      iothread: own === null ? null : own ? `iothread${own}` : '',
      vqMapping: iothreadQueues(v).map((vqs, k) => ({ iothread: `iothread${k + 1}`, vqs })),
      ...(nbd && ctx.served ? { socket: ctx.served.sockets.nbd } : {}),
    });
  }

  const qemu = await verifyQemu(
    {
      monitor: (command, args) => ctx.virsh.monitor(ctx.name, command, args),
      pid: ctx.qemuPid(),
      stderr: ctx.qemuLog,
      fresh: ctx.fresh,
    },
    {
      variant: v,
      disks: liveDisks,
      iothreadIds: [
        ...layout.userIothreadIds,
        ...Array.from({ length: qemuIothreads }, (_, k) => layout.iothreadBase + k + 1),
      ].map((id) => `iothread${id}`),
      absentPaths: paths.slice(disks),
      qcow2: ctx.qcow2 ?? QCOW2_DEFAULTS,
    },
  );
  problems.push(...qemu);
  if (ctx.served) problems.push(...(await ctx.served.daemon.verify(v, liveDisks, ctx.qcow2, false)));
  if (problems.length)
    throw new PointFailure(
      `the live domain ${ctx.name} does not match variant ${v.id}: ${problems.join('; ')}`,
    );
}
