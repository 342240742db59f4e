/**
 * kvmio as a library: everything the CLI does is a call here. The CLI (src/cli) only parses flags.
 */

export { formatComparison } from './cli/comparison.js';
export { compareRuns } from './engine/compare.js';
export { type RunStudyOptions, type RunStudyResult, runStudy } from './engine/run.js';
export { agentExec, agentReadFile, agentWriteFile } from './guest/agent-protocol.js';
export { builtGuest, ensureGuest, GUEST_KERNEL_CMDLINE, type GuestImage } from './guest/build.js';
export type { GuestExecOptions, GuestExecResult, GuestVm } from './guest/vm.js';
export { type AccelResult, probeAccelerator } from './host/accel.js';
export { doctor, formatDoctor } from './host/doctor.js';
export { type HostFacts, hostFacts } from './host/facts.js';
export { startLibvirtVm } from './libvirt/vm.js';
export { diskXml, domainXml } from './libvirt/xml.js';
export { AgentClient } from './qemu/agent.js';
export { qemuArgv } from './qemu/argv.js';
export { qemuCapabilities } from './qemu/capabilities.js';
export { QmpClient } from './qemu/qmp.js';
export { startQemuVm } from './qemu/vm.js';
export { loadReportData, renderReport, reportDataFromExports, writeReport } from './report/index.js';
export { guardTarget, lockDisk, prepareDiskFile } from './safety/index.js';
export { compareSamples, controlFamily, summary, welchTest } from './stats/index.js';
export { exportJson, rowsToCsv } from './store/export.js';
export { importFio } from './store/import-fio.js';
export { Store } from './store/store.js';
export { loadPreset, loadStudy, parseStudy } from './study/load.js';
export { type Plan, type PlannedPoint, planStudy } from './study/plan.js';
export { listPresets } from './study/presets.js';
export type * from './study/types.js';
export { makeVariant, variantId } from './study/variants.js';
export { UserError } from './util/errors.js';
export { parseFioJson, runWorkload } from './workloads/index.js';
