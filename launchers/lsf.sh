#!/bin/bash
#
# hpcpilot batch script for IBM Spectrum LSF: starts the pilot with one rank per node over all nodes of
# the job.
#
# A template, filled in with Python's str.format: Harvester's LSF submitter uses it unchanged
# (templateFile = .../launchers/lsf.sh), and `hpcpilot submit` renders it with the same values
# (launchers/README.md). Only Harvester's placeholders appear in it; every brace meant for the shell
# is doubled, so a copy that is edited must keep them doubled.
#
# {nCoreTotal} slots, {nCorePerNode} per node ({nNode} nodes), for {requestWalltimeMinute} minutes,
# in queue {localQueueName}; output and error in {logDir}. LSF sends the warning action SIGUSR1
# 5 minutes before the run limit (-wa USR1 -wt 5): it is passed on to the pilot, which drains and exits
# before the limit. On a CSM system (jsrun: Summit, Sierra, Lassen) ask for nodes instead of slots:
# replace the -n and -R lines by "#BSUB -nnodes {nNode}". An account goes into the submit options
# (bsub -P ...).
#
# Environment of the job (all optional):
#   HPCPILOT_PYTHON  the Python that runs hpcpilot (default: python3 on PATH)
#   HPCPILOT_SETUP   a file sourced first (module loads, a virtualenv's bin/activate)
#   HPCPILOT_SITE    a site name given to the pilot as --site (and to `hpcpilot launch`)
#   HPCPILOT_HARVESTER_CONFIG  Harvester's configuration file (panda_harvester.cfg), given to the
#                    pilot as --harvester-config: the file names of its [payload_interaction] section.
#                    Unset: $PANDA_HOME/etc/panda/panda_harvester.cfg if Harvester's environment
#                    reached the job (sbatch/bsub pass it on) and the file is readable here
#BSUB -J hpcpilot-{workerID}
#BSUB -n {nCoreTotal}
#BSUB -R "span[ptile={nCorePerNode}]"
#BSUB -W {requestWalltimeMinute}
#BSUB -q {localQueueName}
#BSUB -cwd {accessPoint}
#BSUB -o {logDir}/hpcpilot-{workerID}.%J.out
#BSUB -e {logDir}/hpcpilot-{workerID}.%J.err
#BSUB -wa USR1
#BSUB -wt 5

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
