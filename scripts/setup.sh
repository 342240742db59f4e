#!/usr/bin/env bash
# Installs what kvmio needs and is missing: Debian packages, npm dependencies, the compiled code.
# Idempotent and quick when nothing is missing. Run as root (or with sudo available) on Debian; on
# another distribution it installs the npm side and says what to install with its package manager.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_HOST=0
if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null &&
  grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release 2>/dev/null; then
  DEBIAN_HOST=1
fi

DEBIAN_PACKAGES=(
  qemu-system-x86 qemu-utils fio           # VMs and the I/O workload (host baseline too)
  libvirt-daemon-system libvirt-clients    # the libvirt backend; virt-xml-validate
  libvirt-daemon-driver-qemu dnsmasq-base
  libxml2-utils                            # xmllint, used by virt-xml-validate
  e2fsprogs cpio util-linux                # the guest build and the data guard (blkid, wipefs, losetup)
  sysstat                                  # pidstat, to cross-check CPU accounting in the benchmark
  openssh-server openssh-client            # the test host's sshd (make test-host) and remote hosts
  chromium fonts-dejavu-core               # the report's browser test and PNG charts
)
# Packages only some studies need (disk.lvm needs lvm2, guest.firmware uefi needs ovmf): kvmio asks
# for them when a study does; the tests exercise those studies too.
if [ "${KVMIO_SETUP_TESTS:-0}" = 1 ]; then
  DEBIAN_PACKAGES+=(lvm2 ovmf)
fi

if [ "$DEBIAN_HOST" = 1 ]; then
  SUDO=()
  if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi

  missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: apt-get update"
    "${SUDO[@]}" apt-get update -qq
    echo "setup: installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not a Debian host: no apt; the host's own packages are checked after compiling"
fi

# npm dependencies: reinstall when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Compile when a source is newer than the build.
if [ ! -f dist/src/cli/main.js ] || [ -n "$(find src test scripts -name '*.ts' -newer dist/src/cli/main.js -print -quit)" ]; then
  echo "setup: compiling"
  npx tsc -p .
  touch dist/src/cli/main.js
fi

if [ "$DEBIAN_HOST" = 0 ]; then
  node dist/scripts/host-needs.js
fi
