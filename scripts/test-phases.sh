#!/usr/bin/env bash
# `make test`'s two phases, in this order (the argument picks one: host | study; none: both):
#  1. host:  every unit and e2e test on the host's own stack — on a fresh Debian 12 machine QEMU 7.2
#            and libvirt 9.0 — except the study-stack files (test/e2e/stack-*.test.ts);
#  2. study: scripts/test-stack.sh sets up the study's stack (QEMU 10 in a prefix, libvirt 11.3 as the
#            system libvirt, libvirtd restarted), scripts/services.sh starts libvirtd again, then the
#            study-stack files run (QEMU 10 direct; libvirt 11.3 with QEMU 10 as <emulator>), and the
#            libvirt e2e files once more, now on libvirt 11.3 with QEMU 7.2, unless phase 1 already
#            ran them on that libvirt.
# Each phase first prints the QEMU and libvirt it runs on. A failing phase 1 does not stop phase 2
# (CI sees both); the script fails when either did.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:-all}
case "$phase" in host | study | all) ;; *) echo "test-phases: unknown phase '$phase' (host, study)" >&2; exit 2 ;; esac

libvirt_version() { libvirtd --version 2>/dev/null | awk '{print $NF}'; }
qemu_version() { qemu-system-x86_64 --version 2>/dev/null | awk 'NR == 1 {print $4}'; }
# The e2e files of the study's stack, and those the host phase runs (all others).
study_files() { ls dist/test/e2e/stack-*.test.js; }
host_files() { ls dist/test/unit/*.test.js; ls dist/test/e2e/*.test.js | grep -v '^dist/test/e2e/stack-'; }
run_tests() { node --test --test-concurrency=1 --test-reporter=spec "$@"; }
failed=()

host_libvirt=$(libvirt_version)
if [ "$phase" != study ]; then
  echo "test phase 1: the host's stack: QEMU $(qemu_version), libvirt ${host_libvirt:-none}"
  case "$host_libvirt" in
    9.0.*) ;;
    "") echo "test phase 1: no libvirt here: the libvirt tests say so and skip" ;;
    *) echo "test phase 1: libvirt is already $host_libvirt, not Debian 12's 9.0 (an earlier test-stack upgraded it): phase 1 runs on $host_libvirt" ;;
  esac
  mapfile -t files < <(host_files)
  run_tests "${files[@]}" || failed+=("phase 1 (host's stack)")
fi

if [ "$phase" != host ]; then
  bash scripts/test-stack.sh
  bash scripts/services.sh
  study_libvirt=$(libvirt_version)
  qemu10=${KVMIO_TEST_QEMU10:-/opt/kvmio/qemu-10/bin/qemu-system-x86_64}
  echo "test phase 2: the study's stack: QEMU $("$qemu10" --version | awk 'NR == 1 {print $4}') ($qemu10), libvirt ${study_libvirt:-none} (its default QEMU: $(qemu_version))"
  mapfile -t files < <(study_files)
  if [ "$phase" = all ] && [ "$study_libvirt" = "$host_libvirt" ]; then
    echo "test phase 2: the libvirt e2e files already ran on libvirt $study_libvirt in phase 1"
  else
    mapfile -t -O "${#files[@]}" files < <(ls dist/test/e2e/libvirt-*.test.js)
  fi
  run_tests "${files[@]}" || failed+=("phase 2 (study's stack)")
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "test-phases: tests failed in ${failed[*]}" >&2
  exit 1
fi
