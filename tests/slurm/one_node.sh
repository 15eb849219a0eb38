#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the sweep tests and for trying
# `lttools sweep` (docs/more-than-one-machine.md): munged, slurmctld and slurmd started
# directly (no systemd, no Docker), no accounting database. As root, with Debian's packages
# slurmctld slurmd slurm-client munge (`make slurm` installs them).
#   tests/slurm/one_node.sh start    # writes /etc/slurm/slurm.conf, starts the daemons, waits
#   tests/slurm/one_node.sh stop     # stops them by their pid files
set -euo pipefail
state=${SLURM_ONE_NODE_DIR:-/tmp/lttools-slurm}
conf=/etc/slurm/slurm.conf

stop() {
  for pid in "$state/slurmd.pid" "$state/slurmctld.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    rm -f "$pid"
  done
}

start() {
  for tool in munged slurmctld slurmd sinfo sbatch; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin
    command -v "$tool" >/dev/null || { echo "error: $tool not found; run 'make slurm' (as root)" >&2; exit 2; }
  done
  [ "$(id -u)" = 0 ] || { echo "error: starting slurmctld and slurmd needs root" >&2; exit 2; }
  if sinfo -h -o %t 2>/dev/null | grep -qx idle; then return 0; fi  # already up
  stop
  mkdir -p "$state/spool" "$state/ctld" /etc/munge /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- munged
  mkdir -p "$(dirname "$conf")"
  cat > "$conf" <<CONF
ClusterName=lttools
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
$(slurmd -C | head -1)
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then return 0; fi
    sleep 0.5
  done
  echo "error: the node did not come up; see $state/slurmctld.log and $state/slurmd.log" >&2
  exit 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
