#!/usr/bin/env bash
# Starts the host services that the tests and the demo use, when they are not running:
# virtlogd and libvirtd (for the libvirt backend), and a few hugepages with hugetlbfs mounted.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "services: not root, leaving host services alone"; exit 0; fi

if ! virsh -c qemu:///system version >/dev/null 2>&1; then
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
  for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
fi

# 2 MiB hugepages for the hugepages variants: reserve enough for two small guests.
want=${KVMIO_HUGEPAGES:-1100}
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then echo "$want" > /proc/sys/vm/nr_hugepages || true; fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs hugetlbfs /dev/hugepages || true
