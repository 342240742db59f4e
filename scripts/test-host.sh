#!/usr/bin/env bash
# A second host for the tests, on this machine, reachable only the way a remote host is: its own
# network namespace (a veth pair with a private /30), its own sshd (keys made for it, no passwords,
# root by key only) and its own libvirtd and virtlogd, in a mount namespace where /run/libvirt,
# /var/lib/libvirt, /var/cache/libvirt, /etc/libvirt, /var/lib/kvmio and /root are private directories. The
# processes share the kernel (and so /proc and the pid space) with this machine; everything else kvmio
# uses goes through `ssh` and `qemu+ssh://`.
#
#   scripts/test-host.sh up     start what is not running; prints the libvirt URI as the last line
#   scripts/test-host.sh stop   the host goes away: its sshd, libvirtd and VMs are killed; `up` brings it back
#   scripts/test-host.sh down   remove all of it: processes, namespaces, keys, state
#
# The ssh client side is a drop-in /etc/ssh/ssh_config.d/kvmio-test-host.conf naming the key and the
# known host key for the address, so that plain `ssh root@ADDR` (and libvirt's qemu+ssh) works.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "test-host: needs root (network and mount namespaces)" >&2; exit 1; fi

NS=kvmio-th
NET=${KVMIO_TEST_HOST_NET:-10.251.15}     # the /30: .1 this machine's end, .2 the test host
OUTER=$NET.1
ADDR=$NET.2
STATE=/var/lib/kvmio-test-host            # keys, configs and the host's private libvirt directories
RUNDIR=/run/kvmio-test-host               # holds the mount namespace
MNTNS=$RUNDIR/mnt
CLIENT_CONF=/etc/ssh/ssh_config.d/kvmio-test-host.conf
URI="qemu+ssh://root@$ADDR/system"
# /root too: the test host's root has a home of its own, so no shell start-up file of this machine's
# (such as a slow ~/.bashrc) runs with each SSH command.
PRIVATE_DIRS=(/run/libvirt /var/lib/libvirt /var/cache/libvirt /etc/libvirt /var/lib/kvmio /root)

in_host() { nsenter --net=/run/netns/$NS --mount=$MNTNS -- "$@"; }

# Pids of processes in the test host's network namespace whose command name is $1 (all when empty).
ns_pids() {
  local want=${1:-} pid
  [ -e /run/netns/$NS ] || return 0
  for pid in $(ip netns pids $NS 2>/dev/null); do
    if [ -z "$want" ] || [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$want" ]; then echo "$pid"; fi
  done
}

kill_and_wait() {
  local pids=("$@") _
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    local alive=0 pid
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# The /30 must not clash with an address or route this machine already has (other than ours).
check_net_free() {
  if ip -4 -o addr show | grep -v " $NS" | grep -q " inet $NET\."; then
    echo "test-host: $NET.0/30 is in use on this machine; set KVMIO_TEST_HOST_NET to a free 10.x.y" >&2
    exit 1
  fi
}

setup_network() {
  [ -e /run/netns/$NS ] || ip netns add $NS
  ip netns exec $NS ip link set lo up
  if ! ip link show ${NS}0 >/dev/null 2>&1; then
    check_net_free
    ip link add ${NS}0 type veth peer name ${NS}1 netns $NS
  fi
  ip addr replace $OUTER/30 dev ${NS}0
  ip link set ${NS}0 up
  ip netns exec $NS ip addr replace $ADDR/30 dev ${NS}1
  ip netns exec $NS ip link set ${NS}1 up
}

setup_keys() {
  mkdir -p -m 0700 $STATE
  [ -f $STATE/host_key ] || ssh-keygen -q -t ed25519 -N '' -C kvmio-test-host -f $STATE/host_key
  [ -f $STATE/client_key ] || ssh-keygen -q -t ed25519 -N '' -C kvmio-test-client -f $STATE/client_key
  cp $STATE/client_key.pub $STATE/authorized_keys
  chmod 0600 $STATE/authorized_keys
  echo "$ADDR $(cut -d' ' -f1,2 $STATE/host_key.pub)" >$STATE/known_hosts
  cat >$STATE/sshd_config <<EOF
ListenAddress $ADDR
Port 22
HostKey $STATE/host_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers root
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
EOF
  mkdir -p /etc/ssh/ssh_config.d
  cat >$CLIENT_CONF <<EOF
# The kvmio test host (scripts/test-host.sh); removed by 'make test-host-down'.
Host $ADDR
  User root
  IdentityFile $STATE/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/known_hosts
  StrictHostKeyChecking yes
  PasswordAuthentication no
EOF
}

# The mount namespace is bound to a file so that it outlives the commands run in it; mounts from this
# machine propagate into it (slave), its own do not propagate out.
setup_mounts() {
  mkdir -p $RUNDIR
  if ! mountpoint -q $RUNDIR; then
    mount --bind $RUNDIR $RUNDIR
    mount --make-private $RUNDIR
  fi
  if ! findmnt -n $MNTNS >/dev/null 2>&1; then
    touch $MNTNS
    unshare --mount=$MNTNS --propagation slave true
  fi
  local dir private
  for dir in "${PRIVATE_DIRS[@]}"; do
    private=$STATE/fs${dir//\//_}
    mkdir -p "$dir" "$private"
    if ! nsenter --mount=$MNTNS -- mountpoint -q "$dir" ||
      [ "$(nsenter --mount=$MNTNS -- findmnt -n -o SOURCE "$dir")" = "$(findmnt -n -o SOURCE "$dir" || true)" ]; then
      nsenter --mount=$MNTNS -- mount --bind "$private" "$dir"
    fi
  done
  # The host's configuration is this machine's (*.conf only: no domains, networks or pools of its own).
  local etc=$STATE/fs_etc_libvirt
  if [ ! -f $etc/libvirtd.conf ]; then cp /etc/libvirt/*.conf $etc/; fi
  chmod 0755 $STATE/fs_*
  chmod 0700 $STATE/fs_root
}

start_services() {
  mkdir -p /run/sshd
  if [ -z "$(ns_pids virtlogd)" ]; then in_host virtlogd -d -p $STATE/virtlogd.pid; fi
  if [ -z "$(ns_pids libvirtd)" ]; then in_host libvirtd -d -p $STATE/libvirtd.pid; fi
  if ! [ -f $STATE/sshd.pid ] || ! kill -0 "$(cat $STATE/sshd.pid)" 2>/dev/null ||
    [ -z "$(ns_pids sshd)" ]; then
    in_host /usr/sbin/sshd -f $STATE/sshd_config
  fi
}

wait_ready() {
  local _
  for _ in $(seq 150); do
    if ssh -o BatchMode=yes -o ConnectTimeout=2 root@$ADDR true 2>/dev/null &&
      virsh -q -c "$URI" uri >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "test-host: $URI does not answer" >&2
  virsh -q -c "$URI" uri >&2 || true
  exit 1
}

up() {
  setup_keys
  setup_network
  setup_mounts
  start_services
  wait_ready
  echo "test-host: up at $ADDR (network namespace $NS, state in $STATE)"
  echo "$URI"
}

stop() {
  # shellcheck disable=SC2046
  kill_and_wait $(ns_pids sshd) $(ns_pids libvirtd)
  # Like a host that crashed: its VMs are gone too (libvirtd finds none when it comes back).
  # shellcheck disable=SC2046
  kill_and_wait $(ns_pids)
  rm -f $STATE/fs_run_libvirt/qemu/*.xml $STATE/fs_run_libvirt/qemu/*.pid
  echo "test-host: stopped ($ADDR): sshd, libvirtd and its VMs killed"
}

down() {
  # Everything in the namespace was started by this script or by its libvirtd (QEMU included).
  local pids
  pids=$(ns_pids)
  # shellcheck disable=SC2086
  kill_and_wait $pids
  if [ -e /run/netns/$NS ]; then ip netns del $NS; fi
  ip link del ${NS}0 2>/dev/null || true
  if findmnt -n $MNTNS >/dev/null 2>&1; then umount $MNTNS; fi
  if mountpoint -q $RUNDIR; then umount $RUNDIR; fi
  rm -rf $RUNDIR $STATE $CLIENT_CONF
  echo "test-host: removed"
}

case "${1:-up}" in
  up) up ;;
  stop) stop ;;
  down) down ;;
  *) echo "usage: $0 up|stop|down" >&2; exit 2 ;;
esac
