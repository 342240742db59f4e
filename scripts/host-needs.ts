import { hostPackageManager, missingAdvice, missingNeeds } from '../src/host/packages.js';
import { qemuLocation } from '../src/qemu/binary.js';

/**
 * For scripts/setup.sh on a host that is not Debian: prints what kvmio needs from the host and the
 * command that installs it with the host's own package manager; exit 1 when something is missing.
 */
const advice = missingAdvice(missingNeeds(qemuLocation().found), hostPackageManager());
for (const line of advice) process.stdout.write(`setup: ${line}\n`);
process.exitCode = advice.length ? 1 : 0;
