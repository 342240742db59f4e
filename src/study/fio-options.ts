/**
 * What a study may pass to fio. fio runs on the host for the baseline (as root) and in the guest;
 * some of its options run commands (`exec_prerun`, `exec_postrun`, `ioengine=exec`, `trigger-cmd`),
 * load code (`ioengine=external:…`), or name other files to write, read or delete (`write_*_log`,
 * `read_iolog`, `directory`, `unlink`, `verify_state_save`, `mem=mmaphuge:…`). Only the options and
 * engines listed here are passed on: each one tunes how I/O is issued to the disk under test and
 * nothing else.
 */

/** I/O engines that read and write the given filename only. */
export const FIO_IOENGINES = [
  'libaio',
  'io_uring',
  'psync',
  'pvsync',
  'pvsync2',
  'sync',
  'vsync',
  'posixaio',
  'mmap',
] as const;

/** fio options `extra:` may set, with the kind of value each takes. */
export const FIO_EXTRA_OPTIONS = [
  // Access pattern
  'norandommap',
  'randrepeat',
  'allrandrepeat',
  'randseed',
  'random_generator',
  'random_distribution',
  'percentage_random',
  'rwmixwrite',
  'rw_sequencer',
  'offset',
  'offset_increment',
  'io_size',
  'number_ios',
  'bsrange',
  'bssplit',
  'blockalign',
  'bs_unaligned',
  // Buffers and data
  'zero_buffers',
  'refill_buffers',
  'scramble_buffers',
  'buffer_compress_percentage',
  'buffer_compress_chunk',
  'dedupe_percentage',
  'iomem_align',
  // Synchronisation
  'direct',
  'buffered',
  'sync',
  'fsync',
  'fdatasync',
  'end_fsync',
  'fsync_on_close',
  'invalidate',
  'fadvise_hint',
  // Queueing
  'iodepth_batch_submit',
  'iodepth_batch_complete_min',
  'iodepth_batch_complete_max',
  'iodepth_low',
  'io_submit_mode',
  'serialize_overlap',
  // Rate and think time
  'rate',
  'rate_min',
  'rate_process',
  'rate_cycle',
  'rate_iops_min',
  'thinktime',
  'thinktime_spin',
  'thinktime_blocks',
  // Engine tuning (libaio, io_uring, pvsync2)
  'hipri',
  'fixedbufs',
  'registerfiles',
  'sqthread_poll',
  'sqthread_poll_cpu',
  'nonvectored',
  'uncached',
  'nowait',
  'force_async',
  'userspace_reap',
  // CPU placement of fio's own threads
  'cpus_allowed',
  'cpus_allowed_policy',
  // Reporting
  'gtod_reduce',
  'disable_lat',
  'disable_clat',
  'disable_slat',
  'disable_bw_measurement',
  'clat_percentiles',
  'lat_percentiles',
  'slat_percentiles',
  'percentile_list',
  'unified_rw_reporting',
] as const;

/**
 * Values of allowed options: numbers, sizes, percentages, ranges and lists such as `4k/50:8k/50` or
 * `zipf:1.2`. No spaces, newlines, quotes, `$` or `=`, so a value stays one fio option in argv and
 * in a job file.
 */
export const FIO_VALUE_PATTERN = /^[A-Za-z0-9._:%,/+-]{1,200}$/;
export const FIO_VALUE_HELP =
  'letters, digits and . _ : % , / + - (at most 200 characters), e.g. 1, 4k/50:8k/50, zipf:1.2';
