#!/usr/bin/env bash
# Start (idempotently) a small Slurm cluster on localhost, without systemd, for the tests under
# tests/slurm: one slurmctld and HPCPILOT_SLURM_NODES pseudo-nodes n1..nN (default 4), each its own
# `slurmd -N nX` on this host, all sharing munge. Run as root. See /work/shared/INFRA.md ("Slurm").
#
#   bash ci/slurm/start.sh      # install what is missing, start what is not running, wait for the nodes
#   bash ci/slurm/stop.sh       # stop the daemons this script started (by their pid files)
#
# Environment:
#   HPCPILOT_SLURM_NODES   number of pseudo-nodes (default 4), each CPUs=4 RealMemory=2000
#   HPCPILOT_SLURM_WAIT    seconds to wait for slurmctld and the nodes (default 60)
#
# It never stops a process it did not start: when the configuration it would write differs from the one
# in place, it restarts only the daemons named by its own pid files (stop.sh). A slurm.conf it did not
# write is never overwritten.
set -euo pipefail

NODES="${HPCPILOT_SLURM_NODES:-4}"
WAIT="${HPCPILOT_SLURM_WAIT:-60}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# written by hpcpilot ci/slurm/start.sh"
RUN_DIR=/run/slurm                    # pid files (slurmctld.pid, slurmd-nX.pid)
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_ROOT=/var/spool/slurmd          # per node: /var/spool/slurmd/nX
TMPFS_ROOT=/tmp/slurm-tmpfs           # per node: /tmp/slurm-tmpfs/nX
MUNGE_KEY=/etc/munge/munge.key
MUNGE_STARTED="$RUN_DIR/munged.started-by-hpcpilot"

die() {
    echo "ci/slurm/start.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "ci/slurm/start.sh: $*"; }

[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "HPCPILOT_SLURM_NODES must be a positive integer, not '$NODES'"
[[ "$WAIT" =~ ^[1-9][0-9]*$ ]] || die "HPCPILOT_SLURM_WAIT must be a positive integer, not '$WAIT'"
(( NODES <= 64 )) || die "HPCPILOT_SLURM_NODES=$NODES: at most 64 pseudo-nodes"
[[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and starts slurmctld/slurmd/munged)"
HOST="$(hostname -s)"
[[ -n "$HOST" ]] || die "hostname -s is empty"
T0=$SECONDS

# --- packages -----------------------------------------------------------------------------------------
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
missing=()
for pkg in slurm-wlm munge; do
    installed "$pkg" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # another apt-get may be running (lock timeout); the package lists may be missing on a fresh machine
    apt_install() { apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/tmp/hpcpilot-slurm-apt.log 2>&1; }
    if ! apt_install; then
        apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null 2>&1 || true
        apt_install || { tail -20 /tmp/hpcpilot-slurm-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
    fi
fi
for cmd in slurmctld slurmd sinfo scontrol srun sbatch squeue munged munge unmunge; do
    command -v "$cmd" >/dev/null || die "$cmd not found after installing slurm-wlm and munge"
done

# --- helpers ------------------------------------------------------------------------------------------
# pid_alive FILE NAME: the pid in FILE is a live process (not a zombie) whose command name is NAME
pid_alive() {
    local pid
    [[ -r "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

# --- munge --------------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
install -d -o root -g root -m 0755 "$RUN_DIR"
if [[ ! -s "$MUNGE_KEY" ]]; then
    # Debian's munge postinst usually makes one (128 bytes); it is kept. Otherwise 1 KiB of random bytes.
    say "creating $MUNGE_KEY"
    (umask 0277 && dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none)
fi
chown munge:munge "$MUNGE_KEY"
chmod 0400 "$MUNGE_KEY"
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    touch "$MUNGE_STARTED"
    for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
    munge_ok || die "munge -n | unmunge fails after starting munged (see /var/log/munge/munged.log)"
fi

# --- slurm.conf ---------------------------------------------------------------------------------------
last_port=$((6818 + NODES - 1))
if (( NODES == 1 )); then nodelist="n1"; ports="6818"; else nodelist="n[1-$NODES]"; ports="[6818-$last_port]"; fi
new_conf="$(mktemp)"
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
$MARKER (edit that script, not this file)
ClusterName=hpcpilot
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=6817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdSpoolDir=$SPOOL_ROOT/%n
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
TmpFS=$TMPFS_ROOT/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmi2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
MailProg=/bin/true
# pseudo-nodes declare more CPUs than the host has: trust the configuration, do not drain them
SlurmdParameters=config_overrides
ReturnToService=2
# short timers for tests
MessageTimeout=5
SlurmdTimeout=30
SlurmctldTimeout=30
KillWait=10
MinJobAge=300
OverTimeLimit=0
InactiveLimit=0
UnkillableStepTimeout=30
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$nodelist NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$ports CPUs=4 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP
EOF

our_pidfiles() { ls "$RUN_DIR"/slurmctld.pid "$RUN_DIR"/slurmd-*.pid 2>/dev/null || true; }
install -d -m 0755 "$CONF_DIR"
if [[ -e "$CONF" ]] && ! head -1 "$CONF" | grep -qF "$MARKER"; then
    die "$CONF exists and was not written by this script: move it away to use this test cluster"
fi
if ! cmp -s "$new_conf" "$CONF"; then
    if [[ -n "$(our_pidfiles)" ]]; then
        say "slurm.conf changes: restarting the daemons this script started"
        bash "$HERE/stop.sh" --keep-munge
    fi
    install -m 0644 "$new_conf" "$CONF"
fi

# a slurmctld/slurmd this script did not start would hold the ports: say so rather than fight it
# (zombies do not count: this machine's init may leave exited daemons unreaped for a while)
running() { ps -eo pid=,stat=,comm= | awk -v name="$1" '$3 == name && $2 !~ /^Z/ {printf "%s%s", sep, $1; sep=" "}'; }
if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld && [[ -n "$(running slurmctld)" ]]; then
    die "a slurmctld not started by this script is running (pid $(running slurmctld)); stop it first"
fi

# --- directories --------------------------------------------------------------------------------------
install -d -m 0755 "$LOG_DIR" "$SPOOL_ROOT" "$TMPFS_ROOT"
install -d -m 0700 "$STATE_DIR"
for i in $(seq 1 "$NODES"); do
    install -d -m 0755 "$SPOOL_ROOT/n$i"
    install -d -m 1777 "$TMPFS_ROOT/n$i"
done

# --- slurmctld ----------------------------------------------------------------------------------------
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
    say "starting slurmctld"
    slurmctld || die "slurmctld did not start: see $LOG_DIR/slurmctld.log"
fi
deadline=$((SECONDS + WAIT))
until ctld_up; do
    (( SECONDS < deadline )) || { tail -20 "$LOG_DIR/slurmctld.log" >&2; die "slurmctld not UP after ${WAIT}s"; }
    sleep 0.2
done

# --- slurmd, one per pseudo-node ----------------------------------------------------------------------
for i in $(seq 1 "$NODES"); do
    if ! pid_alive "$RUN_DIR/slurmd-n$i.pid" slurmd; then
        say "starting slurmd -N n$i"
        slurmd -N "n$i" || die "slurmd -N n$i did not start: see $LOG_DIR/slurmd-n$i.log"
    fi
done

# --- wait until every node is up (idle, or busy with jobs), resuming down/drained ones ----------------
deadline=$((SECONDS + WAIT))
resumed=""
while :; do
    states="$(sinfo -h -N -p debug -o '%N %t' 2>/dev/null | sort -u || true)"
    bad="$(awk '$2 !~ /^(idle|alloc|mix|comp)$/ {print $1 "=" $2}' <<<"$states" | tr '\n' ' ')"
    count="$(grep -c . <<<"$states" || true)"
    if [[ -n "$states" && -z "$bad" && "$count" == "$NODES" ]]; then
        break
    fi
    for entry in $bad; do
        node="${entry%%=*}" state="${entry#*=}"
        # down/drain without "*" (not responding): the node answers, slurmctld keeps it out -> resume
        if [[ "$state" =~ ^(down|drain|drng|fail)$ && " $resumed " != *" $node "* ]]; then
            say "resuming $node (was $state)"
            scontrol update nodename="$node" state=resume || true
            resumed+=" $node"
        fi
    done
    if (( SECONDS >= deadline )); then
        sinfo -N -l >&2 || true
        die "nodes not up after ${WAIT}s: ${bad:-expected $NODES nodes, saw $count} (logs in $LOG_DIR)"
    fi
    sleep 0.5
done
summary="$(awk '{print $2}' <<<"$states" | sort | uniq -c | awk '{printf "%s%s %s", (NR>1?", ":""), $1, $2}')"
say "Slurm $(sinfo -V | awk '{print $2}') up on $HOST: slurmctld + $NODES nodes $nodelist in partition debug ($summary) in $((SECONDS - T0))s"
