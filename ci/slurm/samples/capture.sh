#!/usr/bin/env bash
# Record real `squeue -h -j ID -o %e` and `scontrol show job ID` output of a pending, running, completed,
# held, unlimited, TIMEOUT, CANCELLED and FAILED job, and of one killed by its own warning signal, into this
# directory (about 95 s; needs ci/slurm/start.sh's cluster). Each file starts with the command and ends with its exit status.
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/hpcpilot-slurm-samples.XXXXXX)"
cd "$WORK"

# record NAME CMD...: the command line, its stdout+stderr, its exit status
record() {
    local name="$1"; shift
    { echo "\$ $*"; "$@" 2>&1; echo "[exit status $?]"; } >"$OUT/$name.txt" || true
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_state() {  # wait_state ID STATE...
    local id="$1"; shift
    for _ in $(seq 400); do
        local s; s="$(state "$id")"
        for want in "$@"; do [[ "$s" == "$want" ]] && return 0; done
        sleep 0.5
    done
    echo "job $id never reached $*" >&2; return 1
}

# a job limited to one minute that runs past it (trapping its warning signal), the same without the trap
# (USR1's default action kills the batch shell: FAILED, Reason=JobLaunchFailure, ExitCode=0:10), a job
# that cannot start for 10 minutes (--begin), one without a time limit, one that succeeds, one that fails
tmo=$(sbatch --parsable -N 2 --time=1 --signal=B:USR1@50 -J sample-timeout \
    --wrap 'trap "echo got USR1" USR1; while :; do sleep 1 & wait $!; done')
sig=$(sbatch --parsable -N 1 --time=1 --signal=B:USR1@50 -J sample-signal-untrapped --wrap 'sleep 300')
pend=$(sbatch --parsable -N 1 --time=5 -J sample-pending --begin=now+600 --wrap 'true')
held=$(sbatch --parsable -N 1 --time=5 -J sample-held --hold --wrap 'true')
unl=$(sbatch --parsable -N 1 -J sample-unlimited --wrap 'sleep 300')
ok=$(sbatch --parsable -N 1 --time=5 -J sample-completed --wrap 'echo hello')
bad=$(sbatch --parsable -N 1 --time=5 -J sample-failed --wrap 'exit 3')
wait_state "$tmo" RUNNING
wait_state "$unl" RUNNING
wait_state "$ok" COMPLETED
wait_state "$bad" FAILED
sleep 2

record squeue_e_pending squeue -h -j "$pend" -o %e
record scontrol_show_job_pending scontrol show job "$pend"
record squeue_e_held squeue -h -j "$held" -o %e
record scontrol_show_job_held scontrol show job "$held"
record squeue_e_running squeue -h -j "$tmo" -o %e
record squeue_format_running squeue -h -j "$tmo" -o '%i|%T|%S|%e|%L|%l|%N|%r'
record scontrol_show_job_running scontrol show job "$tmo"
record squeue_e_unlimited squeue -h -j "$unl" -o %e
record scontrol_show_job_unlimited scontrol show job "$unl"
record squeue_e_completed squeue -h -j "$ok" -o %e
record squeue_e_completed_t_all squeue -h -t all -j "$ok" -o '%T|%e'
record scontrol_show_job_completed scontrol show job "$ok"
record scontrol_show_job_failed scontrol show job "$bad"
scancel "$unl" "$pend" "$held"
wait_state "$unl" CANCELLED
record scontrol_show_job_cancelled scontrol show job "$unl"
record scontrol_show_job_unknown scontrol show job 999999
record squeue_e_unknown squeue -h -j 999999 -o %e
wait_state "$sig" FAILED
record scontrol_show_job_signal_untrapped scontrol show job "$sig"
wait_state "$tmo" TIMEOUT
record squeue_e_timeout squeue -h -j "$tmo" -o %e
record squeue_e_timeout_t_all squeue -h -t all -j "$tmo" -o '%T|%e'
record scontrol_show_job_timeout scontrol show job "$tmo"
record scontrol_show_hostnames scontrol show hostnames 'n[1-3]'
record sinfo_version sinfo -V
rm -rf "$WORK"
echo "samples in $OUT"
