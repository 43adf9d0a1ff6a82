#!/bin/bash
#
# hpcpilot batch script for PBS Pro / OpenPBS: starts the pilot with one rank per node over all nodes
# of the job.
#
# A template, filled in with Python's str.format: Harvester's PBS submitter uses it unchanged
# (templateFile = .../launchers/pbs.sh), and `hpcpilot submit` renders it with the same values
# (launchers/README.md). Only Harvester's placeholders appear in it; every brace meant for the shell
# is doubled, so a copy that is edited must keep them doubled.
#
# {nNode} chunks of {nCorePerNode} cores, one per node (place=scatter), for {requestWalltime} seconds
# (PBS takes a walltime in seconds as well as HH:MM:SS), in queue {localQueueName}; output and error in
# {logDir}. PBS has no warning signal before the walltime: at the limit it sends SIGTERM to the job,
# then SIGKILL after the server's kill_delay (10 s by default). SIGTERM is passed on to the pilot, but
# the pilot does not wait for it: it knows the job's end time and drains on its own (batch.exit_margin_s
# before the end). An account goes into the submit options (qsub -A ...).
#
# Environment of the job (all optional; PBS does not pass the submitter's environment on: give them
# with qsub -v NAME=VALUE or -V in the submit options):
#   HPCPILOT_PYTHON  the Python that runs hpcpilot (default: python3 on PATH)
#   HPCPILOT_SETUP   a file sourced first (module loads, a virtualenv's bin/activate)
#   HPCPILOT_SITE    a site name given to the pilot as --site (and to `hpcpilot launch`)
#   HPCPILOT_HARVESTER_CONFIG  Harvester's configuration file (panda_harvester.cfg), given to the
#                    pilot as --harvester-config: the file names of its [payload_interaction] section.
#                    Unset: $PANDA_HOME/etc/panda/panda_harvester.cfg if Harvester's environment
#                    reached the job (sbatch/bsub pass it on) and the file is readable here
#PBS -N hpcpilot-{workerID}
#PBS -l select={nNode}:ncpus={nCorePerNode}:mpiprocs=1
#PBS -l place=scatter
#PBS -l walltime={requestWalltime}
#PBS -q {localQueueName}
#PBS -o {logDir}/hpcpilot-{workerID}.out
#PBS -e {logDir}/hpcpilot-{workerID}.err
#PBS -r n
#PBS -S /bin/bash

set -euo pipefail

cd "{accessPoint}"
PY=${{HPCPILOT_PYTHON:-python3}}
if [ -n "${{HPCPILOT_SETUP:-}}" ]; then
    # module scripts and activate scripts often read unset variables
    set +u
    # shellcheck disable=SC1090
    source "$HPCPILOT_SETUP"
    set -u
fi
site=()
if [ -n "${{HPCPILOT_SITE:-}}" ]; then
    site=(--site "$HPCPILOT_SITE")
fi
harvester=()
if [ -n "${{HPCPILOT_HARVESTER_CONFIG:-}}" ]; then
    harvester=(--harvester-config "$HPCPILOT_HARVESTER_CONFIG")
elif [ -n "${{PANDA_HOME:-}}" ] && [ -r "$PANDA_HOME/etc/panda/panda_harvester.cfg" ]; then
    harvester=(--harvester-config "$PANDA_HOME/etc/panda/panda_harvester.cfg")
fi

# pass the batch system's signals on to the pilot (its launcher forwards them to every rank)
child=""
trap 'kill -s USR1 "$child" 2>/dev/null || true' USR1
trap 'kill -s TERM "$child" 2>/dev/null || true' TERM
trap 'kill -s INT "$child" 2>/dev/null || true' INT

# ${{site[@]+...}}: an empty array is "unbound" under set -u in bash < 4.4
"$PY" -m hpcpilot launch --workdir "{accessPoint}" ${{site[@]+"${{site[@]}}"}} \
    -- run --workdir "{accessPoint}" ${{site[@]+"${{site[@]}}"}} ${{harvester[@]+"${{harvester[@]}}"}} &
child=$!

# a trapped signal interrupts `wait`: wait again until the pilot has really exited
while :; do
    status=0
    wait "$child" || status=$?
    if ! kill -0 "$child" 2>/dev/null; then
        break
    fi
done
exit "$status"
