#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for tests/test_slurm.py (CI and development).
#
# Idempotent: installs slurm-wlm and munge through apt when they are missing, writes
# slurm.conf and gres.conf for this host (its real CPU count, its memory but at least 16 GiB,
# one fake GPU), starts munged, slurmctld and slurmd unless they already run (restarting them
# when the configuration changed), and waits until `sinfo` shows the node idle. Needs root
# (or passwordless sudo) and, for the install, Debian/Ubuntu apt.
#
# What the cluster is: no systemd, no cgroups (proctrack/linuxproc, task/none), select/cons_tres
# with memory as a consumable, no accounting storage (so `sacct` does not work: clients must
# poll with `squeue`), one partition `debug` (the default), one node with `Gres=gpu:1` backed by
# /dev/null so that `--gpus=1` jobs schedule. Completed jobs stay visible to `scontrol show
# job` (with `TresPerJob=gres:gpu:1` for GPU jobs) for an hour (MinJobAge), and every finished
# job's state is appended to /var/log/slurm/jobcomp.log. Jobs see CUDA_VISIBLE_DEVICES=0 and
# SLURM_GPUS=1 but no device: TensorFlow falls back to the CPU.
#
# It never touches a real cluster: where /etc/slurm/slurm.conf exists and was not written by
# this script, it stops.
#
# Exit status: 0 the node is up; 2 no test cluster can be had here (no root or sudo, no apt,
# the install failed, or a foreign slurm.conf), which tests/test_slurm.py reports as a skip;
# 1 anything else (a daemon did not start: a failure).
#
# Stop it with tests/slurm/stop-slurm.sh.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
WAIT_S=${SLURM_START_TIMEOUT:-60}
MARKER="# Written by lossbench's tests/slurm/start-slurm.sh: a one-node test cluster."

cannot() { echo "start-slurm.sh: $*" >&2; exit 2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        cannot "needs root or passwordless sudo to start (and install) SLURM daemons"
    fi
fi

if [ -e "$CONF_DIR/slurm.conf" ] && [ "$(head -n 1 "$CONF_DIR/slurm.conf")" != "$MARKER" ]; then
    cannot "$CONF_DIR/slurm.conf exists and was not written by this script (a real cluster?); not touching it"
fi

# 1. Install (about 2 minutes on a fresh Debian 12 / Ubuntu).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || cannot "SLURM is not installed and there is no apt-get to install it"
    echo "start-slurm.sh: installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null; }; then
        cannot "apt-get could not install slurm-wlm and munge"
    fi
fi

# 2. Configuration for this host.
NODE=$(hostname -s)
# `slurmd -C` prints this machine's layout: "NodeName=... CPUs=... RealMemory=...".
LAYOUT=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
CPUS=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$LAYOUT")
MEMORY_MB=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$LAYOUT")
# Memory the node offers to jobs: 90 % of the real memory, but at least NODE_MIN_MEMORY_MB
# (default 16 GiB) so that workflow/profiles/slurm's per-job request (mem_mb: 8000) fits on a
# small CI runner. Nothing enforces it here (no cgroups; `SlurmdParameters=config_overrides`
# keeps slurmd from draining a node whose declared memory exceeds the real one), and the
# test's jobs are tiny.
MIN_MEMORY_MB=${NODE_MIN_MEMORY_MB:-16384}
MEMORY_MB=$((MEMORY_MB * 9 / 10))
if [ "$MEMORY_MB" -lt "$MIN_MEMORY_MB" ]; then MEMORY_MB=$MIN_MEMORY_MB; fi
# Each job without --mem gets DefMemPerCPU per CPU (without it a job would take the whole
# node's memory and jobs would never share the node).
DEF_MEM_PER_CPU=$((MEMORY_MB / CPUS))
if [ "$DEF_MEM_PER_CPU" -gt 2048 ]; then DEF_MEM_PER_CPU=2048; fi
LAYOUT=$(sed -e "s/RealMemory=[0-9]*/RealMemory=$MEMORY_MB/" <<<"$LAYOUT")

$SUDO mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/munge
NEW_CONF=$(mktemp)
cat >"$NEW_CONF" <<EOF
$MARKER
ClusterName=lossbench-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
# The node is what this file says (RealMemory may exceed the real memory, see start-slurm.sh).
SlurmdParameters=config_overrides
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd and no cgroups in containers and CI runners.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# One line per finished job (state, exit code, node), kept after slurmctld forgets the job.
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
ReturnToService=2
# Keep finished jobs in slurmctld's memory for an hour: squeue/scontrol can still see them.
MinJobAge=3600
GresTypes=gpu
NodeName=$NODE $LAYOUT Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
NEW_GRES=$(mktemp)
# A fake GPU: SLURM counts and allocates it; the jobs see no device (CPU TensorFlow).
echo "NodeName=$NODE Name=gpu File=/dev/null" >"$NEW_GRES"

CHANGED=0
if ! cmp -s "$NEW_CONF" "$CONF_DIR/slurm.conf" || ! cmp -s "$NEW_GRES" "$CONF_DIR/gres.conf"; then
    $SUDO cp "$NEW_CONF" "$CONF_DIR/slurm.conf"
    $SUDO cp "$NEW_GRES" "$CONF_DIR/gres.conf"
    $SUDO chmod 644 "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"
    CHANGED=1
fi
rm -f "$NEW_CONF" "$NEW_GRES"

running() { pgrep -x "$1" >/dev/null; }

# 3. Daemons (no systemd: started directly, each daemonizes itself).
if ! running munged; then
    if [ ! -s /etc/munge/munge.key ]; then
        $SUDO mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || $SUDO sh -c 'dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null'
    fi
    $SUDO chown -R munge:munge /etc/munge /var/log/munge /run/munge 2>/dev/null || true
    $SUDO chmod 400 /etc/munge/munge.key
    $SUDO chmod 755 /run/munge
    # munged runs as the munge user (it refuses root without --force).
    if [ -z "$SUDO" ]; then
        runuser -u munge -- /usr/sbin/munged || su -s /bin/sh munge -c /usr/sbin/munged
    else
        $SUDO -u munge /usr/sbin/munged
    fi
fi
for _ in $(seq 1 20); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n </dev/null | unmunge >/dev/null

if [ "$CHANGED" = 1 ] && { running slurmctld || running slurmd; }; then
    echo "start-slurm.sh: configuration changed, restarting the daemons"
    bash "$(dirname "$0")/stop-slurm.sh" --keep-munge
fi
start_daemon() {  # start_daemon NAME COMMAND...: start it unless it runs; retry twice
    local name=$1 attempt
    shift
    for attempt in 1 2 3; do
        running "$name" && return 0
        $SUDO "$@" || true
        sleep 1
    done
    running "$name"
}
# slurmctld -c: a clean start, without the state (and jobs) of an earlier test cluster.
start_daemon slurmctld /usr/sbin/slurmctld -c
start_daemon slurmd /usr/sbin/slurmd

# 4. Wait until the node is idle (or mixed/allocated: running jobs of an earlier start), at
# most WAIT_S seconds of wall time; stop early when a daemon died (its log says why).
STATE=""
DEADLINE=$((SECONDS + WAIT_S))
while [ "$SECONDS" -lt "$DEADLINE" ]; do
    if ! running slurmctld || ! running slurmd; then
        sleep 1
        if ! running slurmctld || ! running slurmd; then STATE="daemon exited"; break; fi
    fi
    STATE=$(timeout 10 sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n 1 || true)
    case "$STATE" in
        idle | mix | alloc) break ;;
        down* | drain* | inval*) $SUDO scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$STATE" in
    idle | mix | alloc)
        echo "start-slurm.sh: node $NODE is $STATE ($LAYOUT Gres=gpu:1)"
        ;;
    *)
        echo "start-slurm.sh: node $NODE did not become idle (state '${STATE}'); logs:" >&2
        tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
        exit 1
        ;;
esac
