#!/usr/bin/env bash
# Install the data-movement tools the tests use (idempotent; run as root).
#
# - xrootd-server, xrootd-client: a real xrootd on a loopback port and xrdcp (tests/data_movement)
# - gfal2 with its file and xrootd plugins, and gfal-copy (gfal2-util-scripts + python3-gfal2-util)
#
# Nothing is installed when every tool and plugin is already there, so the script is cheap to run on
# every CI job.
set -euo pipefail

missing=()
command -v xrootd >/dev/null 2>&1 || missing+=(xrootd-server)
command -v xrdcp >/dev/null 2>&1 || missing+=(xrootd-client)
command -v gfal-copy >/dev/null 2>&1 || missing+=(gfal2-util-scripts python3-gfal2-util)
# gfal2 loads its protocols as plugins; the library alone cannot copy anything
for plugin in file xrootd; do
    if ! ls /usr/lib/*/gfal2-plugins/libgfal_plugin_"${plugin}".so >/dev/null 2>&1; then
        missing+=(gfal2 "gfal2-plugin-${plugin}")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-data.sh: needs root to install: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
