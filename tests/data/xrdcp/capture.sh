#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Record real xrdcp stderr against a local xrootd into this directory (about 20 s; as root, with
# xrootd-server and xrootd-client installed by ci/install-data.sh). Each file holds the command line
# ("$ ..."), what xrdcp wrote on stderr, and "[exit status N]". See README.md.
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=servers.sh
source "$OUT/servers.sh"
WORK="$(mktemp -d /tmp/hpcpilot-xrdcp-samples.XXXXXX)"
chmod 755 "$WORK"
trap 'stop_all; rm -rf "$WORK"' EXIT
export XRD_CONNECTIONRETRY=1 XRD_CONNECTIONWINDOW=2

port=$(free_port)
start_xrootd "$WORK/srv" "$port" "all.export /store" "all.export /readonly r/o"
auth_port=$(free_port)
mkdir -p "$WORK/auth"
xrdsssadmin -k testkey -u nobody -g nogroup add "$WORK/auth/sss.keytab" <<<"y" >/dev/null 2>&1
start_xrootd "$WORK/auth" "$auth_port" "xrootd.seclib libXrdSec.so" \
    "sec.protocol sss -s $WORK/auth/sss.keytab" "sec.protbind * only sss"
silent_port=$(free_port)
start_silent "$silent_port" 60
closed_port=$(free_port)  # nothing listens there

head -c 3000000 /dev/urandom >"$WORK/local.bin"
sum=$(xrdadler32 "$WORK/local.bin" | cut -d' ' -f1)
url="root://127.0.0.1:$port//store/job/local.bin"
mkdir -p "$WORK/readonly" && chmod 555 "$WORK/readonly"

record "$OUT/upload_ok.txt" xrdcp --force --nopbar --cksum "adler32:$sum" --posc --rm-bad-cksum "$WORK/local.bin" "$url"
record "$OUT/download_ok.txt" xrdcp --force --nopbar --cksum "adler32:$sum" "$url" "$WORK/back.bin"
record "$OUT/upload_source_ok.txt" xrdcp --force --nopbar --cksum adler32:source --posc "$WORK/local.bin" "$url"
record "$OUT/download_checksum_mismatch.txt" xrdcp --force --nopbar --cksum adler32:deadbeef "$url" "$WORK/bad.bin"
record "$OUT/upload_checksum_mismatch.txt" xrdcp --force --nopbar --cksum adler32:deadbeef --posc --rm-bad-cksum \
    "$WORK/local.bin" "root://127.0.0.1:$port//store/job/bad.bin"
record "$OUT/download_missing.txt" xrdcp --force --nopbar "root://127.0.0.1:$port//store/job/missing.bin" "$WORK/m.bin"
record "$OUT/upload_missing_source.txt" xrdcp --force --nopbar --cksum adler32:source --posc "$WORK/missing.bin" "$url"
record "$OUT/upload_read_only.txt" xrdcp --force --nopbar --cksum "adler32:$sum" --posc --rm-bad-cksum \
    "$WORK/local.bin" "root://127.0.0.1:$port//readonly/local.bin"
record "$OUT/upload_not_exported.txt" xrdcp --force --nopbar --posc "$WORK/local.bin" "root://127.0.0.1:$port//elsewhere/local.bin"
record "$OUT/download_permission_denied.txt" runuser -u nobody -- env XRD_CONNECTIONRETRY=1 XRD_CONNECTIONWINDOW=2 \
    xrdcp --force --nopbar "$url" "$WORK/readonly/local.bin"
record "$OUT/download_refused.txt" xrdcp --force --nopbar "root://127.0.0.1:$closed_port//store/job/local.bin" "$WORK/r.bin"
record "$OUT/upload_auth_failed.txt" xrdcp --force --nopbar --posc "$WORK/local.bin" "root://127.0.0.1:$auth_port//job/local.bin"
record "$OUT/download_timeout.txt" env XRD_REQUESTTIMEOUT=3 XRD_STREAMTIMEOUT=3 \
    xrdcp --force --nopbar "root://127.0.0.1:$silent_port//store/job/local.bin" "$WORK/t.bin"
xrdcp --version >"$OUT/version.txt" 2>&1
