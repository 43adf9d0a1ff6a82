#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Record real gfal-copy stderr (file <-> root:// through gfal2's xrootd plugin, and file -> file) into
# this directory (about 30 s; as root, with the packages of ci/install-data.sh). Each file holds the
# command line ("$ ..."), what gfal-copy wrote on stderr, and "[exit status N]". See README.md.
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../xrdcp/servers.sh
source "$OUT/../xrdcp/servers.sh"
WORK="$(mktemp -d /tmp/hpcpilot-gfal-samples.XXXXXX)"
chmod 755 "$WORK"
trap 'stop_all; rm -rf "$WORK"' EXIT
export XRD_CONNECTIONRETRY=1 XRD_CONNECTIONWINDOW=2 GFAL_PYTHONBIN=/usr/bin/python3

port=$(free_port)
start_xrootd "$WORK/srv" "$port" "all.export /store" "all.export /readonly r/o"
mkdir -p "$WORK/auth"
xrdsssadmin -k testkey -u nobody -g nogroup add "$WORK/auth/sss.keytab" <<<"y" >/dev/null 2>&1
auth_port=$(free_port)
start_xrootd "$WORK/auth" "$auth_port" "xrootd.seclib libXrdSec.so" \
    "sec.protocol sss -s $WORK/auth/sss.keytab" "sec.protbind * only sss"
silent_port=$(free_port)
start_silent "$silent_port" 60
closed_port=$(free_port)

head -c 3000000 /dev/urandom >"$WORK/local.bin"
sum=$(xrdadler32 "$WORK/local.bin" | cut -d' ' -f1)
src="file://$WORK/local.bin"
url="root://127.0.0.1:$port//store/job/local.bin"
mkdir -p "$WORK/readonly" && chmod 555 "$WORK/readonly"

record "$OUT/upload_ok.txt" gfal-copy -f -p -K "adler32:$sum" -t 60 "$src" "$url"
record "$OUT/download_ok.txt" gfal-copy -f -p -K "adler32:$sum" -t 60 "$url" "file://$WORK/back.bin"
record "$OUT/download_checksum_mismatch.txt" gfal-copy -f -p -K adler32:deadbeef -t 60 "$url" "file://$WORK/bad.bin"
record "$OUT/upload_checksum_mismatch.txt" gfal-copy -f -p -K adler32:deadbeef -t 60 "$src" \
    "root://127.0.0.1:$port//store/job/bad.bin"
record "$OUT/file_checksum_mismatch.txt" gfal-copy -f -p -K adler32:deadbeef -t 60 "$src" "file://$WORK/copy.bin"
record "$OUT/download_missing.txt" gfal-copy -f -p -K adler32 -t 60 "root://127.0.0.1:$port//store/job/missing.bin" \
    "file://$WORK/m.bin"
record "$OUT/upload_missing_source.txt" gfal-copy -f -p -K adler32 -t 60 "file://$WORK/missing.bin" "$url"
record "$OUT/upload_read_only.txt" gfal-copy -f -p -K "adler32:$sum" -t 60 "$src" \
    "root://127.0.0.1:$port//readonly/local.bin"
record "$OUT/download_permission_denied.txt" runuser -u nobody -- env GFAL_PYTHONBIN=/usr/bin/python3 \
    XRD_CONNECTIONRETRY=1 XRD_CONNECTIONWINDOW=2 gfal-copy -f -p -K adler32 -t 60 "$url" "file://$WORK/readonly/local.bin"
record "$OUT/download_refused.txt" gfal-copy -f -p -K adler32 -t 60 "root://127.0.0.1:$closed_port//store/job/local.bin" \
    "file://$WORK/r.bin"
record "$OUT/upload_auth_failed.txt" gfal-copy -f -p -K adler32 -t 60 "$src" "root://127.0.0.1:$auth_port//job/local.bin"
record "$OUT/download_timeout.txt" gfal-copy -f -p -K adler32 -t 5 "root://127.0.0.1:$silent_port//store/job/local.bin" \
    "file://$WORK/t.bin"
gfal-copy --version >"$OUT/version.txt" 2>&1
