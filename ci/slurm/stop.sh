#!/usr/bin/env bash
# Stop the Slurm daemons ci/slurm/start.sh started, and only those: by their pid files in /run/slurm,
# each checked to be the expected program before it is signalled. munged is stopped too when start.sh
# started it (a marker file says so), unless --keep-munge is given. Jobs still running are not touched.
set -euo pipefail

RUN_DIR=/run/slurm
MUNGE_STARTED="$RUN_DIR/munged.started-by-hpcpilot"
keep_munge=0
[[ "${1:-}" == "--keep-munge" ]] && keep_munge=1

say() { echo "ci/slurm/stop.sh: $*"; }

# alive PID NAME: PID is a live NAME (a zombie is not: nothing may reap it soon when init does not)
alive() {
    [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] || return 1
    [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# stop_pidfile FILE NAME: SIGTERM the pid in FILE if it is a live NAME, wait up to 15 s, then SIGKILL
stop_pidfile() {
    local file="$1" name="$2" pid
    [[ -r "$file" ]] || return 0
    pid="$(tr -dc '0-9' <"$file")"
    if [[ -z "$pid" ]] || ! alive "$pid" "$name"; then
        rm -f "$file"    # stale: the process is gone (or the pid was reused by another program)
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        alive "$pid" "$name" || { rm -f "$file"; return 0; }
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

shopt -s nullglob
for f in "$RUN_DIR"/slurmd-*.pid; do
    stop_pidfile "$f" slurmd
done
stop_pidfile "$RUN_DIR/slurmctld.pid" slurmctld
if (( ! keep_munge )) && [[ -e "$MUNGE_STARTED" ]]; then
    stop_pidfile /run/munge/munged.pid munged
    rm -f "$MUNGE_STARTED"
fi
