#!/usr/bin/env bash
# A real single-node SLURM cluster (Debian slurm-wlm + munge) for the integration test,
# everything under one folder, every daemon bound to 127.0.0.1 and stopped by its PID.
#
#   bash tests/services/slurm.sh install        # apt-get the packages if missing (root)
#   bash tests/services/slurm.sh start  BASE    # install if needed, start, wait for the node
#   bash tests/services/slurm.sh stop   BASE    # stop what `start BASE` started
#   source BASE/env.sh                          # then sbatch/squeue/snakemake talk to it
#
# Ports: SLURM_CTLD_PORT (default 6817) and SLURM_SLURMD_PORT (default 6818).
# Idempotent: `start` on a running cluster only waits for the node.
#
# Pitfalls this script avoids (each one makes SLURM or Snakemake hang or fail):
# - no accounting daemon: the profile must use `slurm-status-command: squeue`, and
#   finished jobs must stay visible to squeue (MinJobAge below) or the plugin falls back
#   to sacct and Snakemake waits forever;
# - the jobstep plugin removes SLURM_CONF before calling srun inside a job: an srun
#   wrapper in BASE/bin re-exports it (nothing is written to /etc);
# - munged's socket folder must be mode 0755 and every folder above it searchable by all
#   (pytest's temporary folders are 0700): the socket lives in /run, named after BASE;
# - without DefMemPerCPU a job without --mem is given all the node's memory.
set -euo pipefail

PKGS="slurmctld slurmd slurm-client munge"

install_packages() {
  local missing p
  missing=$(for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
  done)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: $missing; run as root: sudo bash $0 install" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munged's socket folder for BASE (same BASE, same folder: start stays idempotent)
socket_dir() { echo "/run/forestwatch-munge-$(printf %s "$1" | md5sum | cut -c1-12)"; }

start() {
  local base=$1 node=localhost addr=127.0.0.1
  local m="$base/munge" s="$base/slurm"
  local conf="$s/slurm.conf" sock
  sock="$(socket_dir "$base")/munge.socket"
  local ctld_port=${SLURM_CTLD_PORT:-6817} slurmd_port=${SLURM_SLURMD_PORT:-6818}
  install_packages
  mkdir -p "$m" "$s/ctld" "$s/spool" "$s/log" "$base/bin" "$(dirname "$sock")"
  chmod 755 "$(dirname "$sock")"
  [ -s "$m/munge.key" ] || mungekey --create --keyfile="$m/munge.key"
  chmod 600 "$m/munge.key"
  alive "$m/munged.pid" || munged --socket="$sock" --key-file="$m/munge.key" \
    --log-file="$m/munged.log" --pid-file="$m/munged.pid" --seed-file="$m/munged.seed"

  local cpus mem_mb
  cpus=$(nproc)
  # leave 10 % of the memory to the system and the daemons
  mem_mb=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 9 / 10 ))
  # the node is called "localhost" (slurmctld accepts it as its own name on any host),
  # so nothing depends on what the machine's hostname resolves to
  cat > "$conf" <<EOF
ClusterName=forestwatch
SlurmctldHost=$node($addr)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$s/ctld
SlurmdSpoolDir=$s/spool
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=$addr NodeHostname=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  printf '#!/bin/sh\nexport SLURM_CONF="%s"\nexec /usr/bin/srun "$@"\n' "$conf" > "$base/bin/srun"
  chmod +x "$base/bin/srun"
  printf 'export SLURM_CONF="%s"\nexport PATH="%s/bin:$PATH"\n' "$conf" "$base" > "$base/env.sh"

  export SLURM_CONF=$conf
  alive "$s/slurmctld.pid" || slurmctld -c -f "$conf"
  alive "$s/slurmd.pid" || slurmd -c -f "$conf" -N "$node"
  local state="" i
  for i in $(seq 1 60); do
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated) echo "slurm up: node $node $state, SLURM_CONF=$conf"; return 0 ;;
    esac
    sleep 0.5
  done
  echo "slurm did not come up (node state '$state'); logs in $s/log" >&2
  return 1
}

stop() {
  local base=$1 p pid i status=0
  for p in "$base/slurm/slurmd.pid" "$base/slurm/slurmctld.pid" "$base/munge/munged.pid"; do
    [ -s "$p" ] || continue
    pid=$(cat "$p")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "$p: pid $pid ignored SIGTERM, sending SIGKILL" >&2
        kill -9 "$pid" || status=1
      fi
    fi
    rm -f "$p"
  done
  rm -rf "$(socket_dir "$base")"
  return $status
}

case "${1:-}" in
  install) install_packages ;;
  start) start "${2:?usage: $0 start BASE}" ;;
  stop) stop "${2:?usage: $0 stop BASE}" ;;
  *) echo "usage: $0 install | start BASE | stop BASE" >&2; exit 2 ;;
esac
