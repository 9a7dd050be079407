#!/usr/bin/env bash
# Stop the one-node test cluster started by tests/slurm/start-slurm.sh: slurmd, slurmctld and
# (unless --keep-munge) munged, each by the pid it recorded (SIGTERM, then SIGKILL after 20 s). Idempotent; keeps the packages,
# the configuration and the logs (/var/log/slurm).
set -uo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

stop() {  # stop NAME PIDFILE: SIGTERM the recorded pid and wait for it to exit
    local name=$1 pidfile=$2 pid=""
    [ -s "$pidfile" ] && pid=$(cat "$pidfile")
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        pid=$(pgrep -x "$name" | head -n 1 || true)
    fi
    [ -n "$pid" ] || return 0
    $SUDO kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    echo "stop-slurm.sh: $name ($pid) did not stop in 20 s, killing it" >&2
    $SUDO kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
if [ "${1:-}" != "--keep-munge" ]; then
    stop munged /run/munge/munged.pid
fi
exit 0
