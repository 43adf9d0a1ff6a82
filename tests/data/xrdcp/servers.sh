# shellcheck shell=bash
# Helpers for the capture scripts (sourced): local xrootd servers on free loopback ports, and a TCP
# listener that accepts and never answers. Every server runs in the foreground in its own session
# (setsid), so stop_all can end exactly the process groups started here. xrootd refuses to run as root:
# as root it runs with -R nobody and its directories belong to nobody.

STARTED_PGIDS=()

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_xrootd DIR PORT [CONFIG LINE...]: an xrootd exporting DIR/data (adler32 checksums)
start_xrootd() {
    local dir="$1" port="$2"; shift 2
    mkdir -p "$dir/data" "$dir/admin"
    {
        echo "xrd.port $port"
        echo "oss.localroot $dir/data"
        echo "xrootd.chksum adler32"
        echo "all.adminpath $dir/admin"
        echo "all.pidpath $dir/admin"
        printf '%s\n' "$@"
    } >"$dir/xrootd.cfg"
    grep -q '^all.export' "$dir/xrootd.cfg" || echo "all.export /" >>"$dir/xrootd.cfg"
    local user=()
    if [ "$(id -u)" -eq 0 ]; then
        chown -R nobody: "$dir"
        user=(-R nobody)
    fi
    setsid xrootd "${user[@]}" -c "$dir/xrootd.cfg" -n "srv$port" </dev/null >"$dir/xrootd.log" 2>&1 &
    STARTED_PGIDS+=("$!")
    for _ in $(seq 100); do
        grep -q 'initialization completed' "$dir/xrootd.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "xrootd on port $port did not start; see $dir/xrootd.log" >&2
    return 1
}

# start_silent PORT SECONDS: accepts TCP connections on PORT and never answers, for SECONDS
start_silent() {
    setsid python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); s.settimeout(0.5)
held, end = [], time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        held.append(s.accept())
    except socket.timeout:
        pass
' "$1" "$2" </dev/null >/dev/null 2>&1 &
    STARTED_PGIDS+=("$!")
    sleep 0.3
}

stop_all() {
    local pgid
    for pgid in "${STARTED_PGIDS[@]}"; do
        kill -- "-$pgid" 2>/dev/null || true
    done
}

# record FILE CMD...: the command line, its stderr (stdout dropped), its exit status
record() {
    local file="$1"; shift
    # 2>&1 >/dev/null on purpose: stderr into the file, stdout dropped
    # shellcheck disable=SC2069
    { echo "\$ $*"; "$@" 2>&1 >/dev/null; echo "[exit status $?]"; } >"$file" || true
}
