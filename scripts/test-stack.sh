#!/usr/bin/env bash
# The study's stack for the tests, beside Debian 12's own (make test runs this; make demo never does):
#  - QEMU 10.0 from Debian's bookworm-backports, unpacked from its .debs into a prefix
#    (default /opt/kvmio/qemu-10) with launchers at PREFIX/bin/qemu-system-x86_64 and
#    PREFIX/bin/qemu-storage-daemon (its storage daemon, from qemu-utils since QEMU 8: kvmio runs
#    the daemon beside the QEMU it serves); the system QEMU 7.2 stays what it is;
#  - libvirt 11.3 from bookworm-backports as this (throwaway test) machine's libvirt, which runs
#    QEMU 7.2 by default and QEMU 10 where a domain's <emulator> names the launcher.
# Backports come in through a source of their own, pinned to priority 100 so that nothing else is
# ever upgraded from them: only the packages named here, from bookworm-backports explicitly.
# Idempotent; quick when everything is in place.
set -euo pipefail

PREFIX=${KVMIO_QEMU10_PREFIX:-/opt/kvmio/qemu-10}
# The emulator and every module package of it (their modules are what QEMU 10 can load), and
# qemu-utils for qemu-storage-daemon.
QEMU_DEBS=(qemu-system-x86 qemu-system-common qemu-system-data seabios qemu-system-modules-opengl
  qemu-system-modules-spice qemu-system-gui qemu-block-extra qemu-utils)
LIBVIRT_PACKAGES=(libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu libvirt-daemon libvirt0)
WANT_QEMU=10.0
WANT_LIBVIRT=11.3

if [ "$(id -u)" != 0 ]; then echo "test-stack: not root, leaving QEMU 10 / libvirt 11.3 alone"; exit 0; fi

SOURCES=/etc/apt/sources.list.d/kvmio-backports.sources
PIN=/etc/apt/preferences.d/kvmio-backports
if [ ! -f "$SOURCES" ]; then
  cat >"$SOURCES" <<'EOF'
# Added by kvmio's scripts/test-stack.sh: QEMU 10 and libvirt 11.3 for the tests.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
if [ ! -f "$PIN" ]; then
  cat >"$PIN" <<'EOF'
# Added by kvmio's scripts/test-stack.sh: nothing is upgraded from backports unless named.
Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100
EOF
fi
if ! ls /var/lib/apt/lists/*bookworm-backports*Packages* >/dev/null 2>&1; then
  echo "test-stack: apt-get update (bookworm-backports)"
  apt-get update -qq -o Dir::Etc::sourcelist="$SOURCES" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
fi

# QEMU 10 in a prefix. Debian's QEMU is not relocatable: the launcher points it at the prefix's data
# and firmware (-L; the system's ipxe ROMs are found on QEMU's default path) and at its own modules.
# Every module QEMU 10 knows must be in the prefix: QEMU looks for a module it lacks in the system's
# module dir next, loads QEMU 7.2's build of it and aborts (libvirt's capability probe loads them all).
launcher="$PREFIX/bin/qemu-system-x86_64"
moddir="$PREFIX/root/usr/lib/x86_64-linux-gnu/qemu"
want_debs=$(printf '%s\n' "${QEMU_DEBS[@]}" | sort)
# The storage daemon's launcher: the prefix's modules, like QEMU's.
write_daemon_launcher() {
  cat >"$1/bin/qemu-storage-daemon" <<EOF
#!/bin/sh
# qemu-storage-daemon of QEMU $WANT_QEMU from Debian's bookworm-backports, unpacked by kvmio's scripts/test-stack.sh.
export QEMU_MODULE_DIR=$moddir
exec $PREFIX/root/usr/bin/qemu-storage-daemon "\$@"
EOF
  chmod 0755 "$1/bin/qemu-storage-daemon"
}
# A prefix of the right QEMU that lacks only some of the packages gets them unpacked into it in
# place: QEMUs running from it meanwhile keep every file they use.
have_debs=$(cat "$PREFIX/debs" 2>/dev/null || true)
missing_debs=$(comm -13 <(echo "$have_debs") <(echo "$want_debs") | grep . || true)
if [ -n "$have_debs" ] && [ -n "$missing_debs" ] &&
  [ -z "$(comm -23 <(echo "$have_debs") <(echo "$want_debs"))" ] &&
  "$launcher" --version 2>/dev/null | grep -q "version $WANT_QEMU"; then
  echo "test-stack: adding" $missing_debs "to QEMU $WANT_QEMU in $PREFIX"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # shellcheck disable=SC2046
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root $(printf '%s/bookworm-backports ' $missing_debs))
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$PREFIX/root"; done
  write_daemon_launcher "$PREFIX"
  echo "$want_debs" >"$PREFIX/debs"
fi
if ! "$launcher" --version 2>/dev/null | grep -q "version $WANT_QEMU" ||
  [ "$(cat "$PREFIX/debs" 2>/dev/null)" != "$want_debs" ]; then
  echo "test-stack: unpacking QEMU $WANT_QEMU into $PREFIX"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "${QEMU_DEBS[@]/%//bookworm-backports}")
  # Built beside the old prefix and swapped in, so that a QEMU starting meanwhile finds a whole one.
  new="$PREFIX.new.$$"
  mkdir -p "$new/bin" "$new/root"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$new/root"; done
  cat >"$new/bin/qemu-system-x86_64" <<EOF
#!/bin/sh
# QEMU $WANT_QEMU from Debian's bookworm-backports, unpacked by kvmio's scripts/test-stack.sh.
export QEMU_MODULE_DIR=$moddir
exec $PREFIX/root/usr/bin/qemu-system-x86_64 -L $PREFIX/root/usr/share/qemu -L $PREFIX/root/usr/share/seabios "\$@"
EOF
  chmod 0755 "$new/bin/qemu-system-x86_64"
  write_daemon_launcher "$new"
  echo "$want_debs" >"$new/debs"
  if [ -e "$PREFIX" ]; then mv "$PREFIX" "$PREFIX.old.$$"; fi
  mv "$new" "$PREFIX"
  rm -rf "$PREFIX.old.$$"
  "$launcher" --version | head -1
fi

if ! "$PREFIX/bin/qemu-storage-daemon" --version 2>/dev/null | grep -q "version $WANT_QEMU"; then
  echo "test-stack: $PREFIX/bin/qemu-storage-daemon is not QEMU $WANT_QEMU's storage daemon:" >&2
  "$PREFIX/bin/qemu-storage-daemon" --version >&2 || true
  exit 1
fi

# A module of the prefix that cannot load (a library the host lacks) falls through to the system's
# build of the same name as well: that name must not be in the system's module dir.
for module in "$moddir"/*.so; do
  if ldd "$module" | grep -q 'not found' && [ -e "/usr/lib/x86_64-linux-gnu/qemu/${module##*/}" ]; then
    echo "test-stack: $module lacks libraries ($(ldd "$module" | awk '/not found/ {print $1}' | xargs)); QEMU would load the system QEMU's ${module##*/} instead" >&2
    exit 1
  fi
done
# What libvirt's probe does first: every QOM type, modules included, listed without an abort.
probe=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"qom-list-types"}' '{"execute":"quit"}' |
  timeout 120 "$launcher" -machine none -nodefaults -display none -qmp stdio 2>&1) || {
  echo "test-stack: QEMU $WANT_QEMU in $PREFIX fails listing its types:" >&2
  echo "$probe" | grep -v '"return"' >&2
  exit 1
}

# libvirt 11.3 as the system libvirt. The system's running libvirtd (and virtlogd), found by their
# default pid files (other instances with pid files of their own are left alone), are restarted once,
# after the upgrade; running domains survive (libvirtd reconnects to them, virtlogd re-executes in place).
have_libvirt=$(libvirtd --version 2>/dev/null | awk '{print $NF}')
if [ "${have_libvirt%.*}" != "$WANT_LIBVIRT" ]; then
  echo "test-stack: installing libvirt $WANT_LIBVIRT from bookworm-backports (was ${have_libvirt:-none})"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${LIBVIRT_PACKAGES[@]/%//bookworm-backports}" >/dev/null
  pid_of() { [ -f "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ] && cat "$1"; }
  if pid=$(pid_of /run/virtlogd.pid virtlogd); then kill -USR1 "$pid" || true; fi
  if pid=$(pid_of /run/libvirtd.pid libvirtd); then
    kill "$pid" || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  libvirtd --version
fi
