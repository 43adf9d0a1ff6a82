#!/usr/bin/env bash
# Install the command-line tools the tests use that are not Python packages (idempotent; run as root).
#
# - ShellCheck, which lints the rendered batch-script templates (tests/unit/test_templates.py)
#
# Nothing is done for a tool already on PATH, so the script is cheap to run on every CI job.
set -euo pipefail

missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-tools.sh: needs root to install: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
