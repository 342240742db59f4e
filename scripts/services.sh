#!/usr/bin/env bash
# Starts the host services that the tests and the demo use, when they are not running: a few 2 MiB
# hugepages with hugetlbfs mounted, then virtlogd and libvirtd (for the libvirt backend).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "services: not root, leaving host services alone"; exit 0; fi

# Hugepages for the hugepages variants: enough for two small guests.
want=${KVMIO_HUGEPAGES:-1100}
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then echo "$want" > /proc/sys/vm/nr_hugepages || true; fi
mkdir -p /dev/hugepages
mounted_now=no
if ! mountpoint -q /dev/hugepages; then
  mount -t hugetlbfs hugetlbfs /dev/hugepages && mounted_now=yes || true
fi

# Without udev /dev/kvm stays root-only; libvirt then re-probes QEMU on every call (a `virsh
# version` takes over a minute). Debian's udev rule would make it root:kvm 0660.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm || true
fi

libvirt_up() { virsh -c qemu:///system version >/dev/null 2>&1; }
# The system's daemons, by their default pid files: other instances (a test host in a network
# namespace, with pid files of its own) are not this system's.
running() { [ -f "/run/$1.pid" ] && [ "$(cat "/proc/$(cat "/run/$1.pid")/comm" 2>/dev/null)" = "$1" ]; }
# libvirtd reads the hugetlbfs mounts when it starts: restart one we started before the mount.
if [ "$mounted_now" = yes ] && running libvirtd; then
  pid=$(cat /run/libvirtd.pid)
  kill "$pid" || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
if ! libvirt_up; then
  running virtlogd || virtlogd -d
  running libvirtd || libvirtd -d
  # A new libvirt probes every QEMU first: on a loaded 2-core machine that takes a minute.
  for _ in $(seq 300); do libvirt_up && break; sleep 0.2; done
fi
libvirt_up || { echo "services: libvirtd does not answer on qemu:///system" >&2; exit 1; }
