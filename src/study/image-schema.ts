import { formatBytes } from '../util/units.js';
import { describe, readBool, readEnum, readMap, readSize } from './fields.js';
import { QCOW2_PREALLOCATIONS, type Qcow2Options } from './types.js';
import type { KeyPath, YamlSource } from './yaml-source.js';

/** qcow2 settings of a study (`disk.qcow2`), each from an allow-list that qemu-img and QEMU accept. */

const KIB = 1024;
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

/** QEMU's qcow2 cluster sizes: powers of two from 512 bytes to 2 MiB. */
export const QCOW2_CLUSTER_SIZES: readonly number[] = Array.from({ length: 13 }, (_, i) => 512 * 2 ** i);

export const QCOW2_DEFAULTS: Qcow2Options = {
  clusterSizeBytes: 64 * KIB,
  preallocation: 'off',
  lazyRefcounts: false,
};

/** 512, 64k, 2M: a cluster size as qemu-img's -o takes it. */
function sizeWord(bytes: number): string {
  if (bytes < KIB) return String(bytes);
  return bytes < MIB ? `${bytes / KIB}k` : `${bytes / MIB}M`;
}

const QCOW2_KEYS = ['cluster_size', 'preallocation', 'lazy_refcounts', 'l2_cache_size', 'cache_size'];

export function readQcow2(src: YamlSource, path: KeyPath, value: unknown): Qcow2Options {
  const q = readMap(src, path, value, QCOW2_KEYS);
  const out: Qcow2Options = { ...QCOW2_DEFAULTS };
  if (q.cluster_size !== undefined) {
    const bytes = readSize(src, [...path, 'cluster_size'], q.cluster_size, { min: 512, max: 2 * MIB });
    if (!QCOW2_CLUSTER_SIZES.includes(bytes))
      src.fail(
        [...path, 'cluster_size'],
        `${describe(q.cluster_size)} is not allowed: a power of two from 512 to 2M (${QCOW2_CLUSTER_SIZES.map(sizeWord).join(', ')})`,
      );
    out.clusterSizeBytes = bytes;
  }
  if (q.preallocation !== undefined)
    out.preallocation = readEnum(src, [...path, 'preallocation'], q.preallocation, QCOW2_PREALLOCATIONS);
  if (q.lazy_refcounts !== undefined)
    out.lazyRefcounts = readBool(src, [...path, 'lazy_refcounts'], q.lazy_refcounts);
  // QEMU needs room for at least two tables in a cache; a few GiB covers the largest image's L2 tables.
  const cache = (key: string) =>
    readSize(src, [...path, key], q[key], {
      min: 2 * out.clusterSizeBytes,
      max: 4 * GIB,
      multipleOf: 512,
    });
  if (q.l2_cache_size !== undefined) out.l2CacheSizeBytes = cache('l2_cache_size');
  if (q.cache_size !== undefined) out.cacheSizeBytes = cache('cache_size');
  if (
    out.l2CacheSizeBytes !== undefined &&
    out.cacheSizeBytes !== undefined &&
    out.l2CacheSizeBytes > out.cacheSizeBytes
  )
    src.fail(
      [...path, 'l2_cache_size'],
      `${formatBytes(out.l2CacheSizeBytes)} is larger than cache_size (${formatBytes(out.cacheSizeBytes)}), which holds the L2 and refcount caches together`,
    );
  return out;
}
