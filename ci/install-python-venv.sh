#!/usr/bin/env bash
# Install Debian's venv support for the system python3 (idempotent).
set -euo pipefail
if python3 -c 'import ensurepip' >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3-venv >/dev/null
