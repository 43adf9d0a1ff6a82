#!/usr/bin/env bash
# Install what the real environment tests (tests/environment) use and build their cached images
# (idempotent; run as root).
#
# - lmod                 environment modules (Lmod 8.6): ModulesEnvironment against the real tool
# - charliecloud         ch-run 0.31: CharliecloudEnvironment on a busybox directory image
# - podman, runc         podman 4.3 as root with runc (the default crun fails here; docs/environment.md)
# - catatonit            the init of `podman run --init` (without it a stopped payload leaves its container)
# - busybox-static       the busybox rootfs of the charliecloud and podman tests
# - debootstrap          the Debian rootfs the pilot itself runs in (tests/environment/test_pilot_in_container.py)
#
# Then it builds, once, the Debian bookworm rootfs (debootstrap --variant=minbase, with python3) into
# $HPCPILOT_CI_CACHE/bookworm-python (default /var/cache/hpcpilot-ci): about a minute the first time,
# nothing afterwards. The tests import it into podman themselves (under a tag of their own) and remove
# that image again.
#
# Lmod and Debian's environment-modules conflict: this installs Lmod only, and apt removes
# environment-modules if it is there (Tcl modules are tested on recorded `modulecmd` output,
# tests/data/modulecmd).
set -euo pipefail

CACHE="${HPCPILOT_CI_CACHE:-/var/cache/hpcpilot-ci}"
ROOTFS="$CACHE/bookworm-python"

missing=()
[ -x /usr/share/lmod/lmod/libexec/lmod ] || missing+=(lmod)
command -v ch-run >/dev/null 2>&1 || missing+=(charliecloud)
command -v podman >/dev/null 2>&1 || missing+=(podman)
[ -x /usr/sbin/runc ] || missing+=(runc)
[ -x /usr/bin/catatonit ] || missing+=(catatonit)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)

if [ "${#missing[@]}" -ne 0 ] || [ ! -e "$ROOTFS.complete" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-environment.sh: needs root (to install: ${missing[*]:-nothing}; rootfs $ROOTFS)" >&2
        exit 1
    fi
fi

if [ "${#missing[@]}" -ne 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian rootfs for running the pilot in a container: its python3 is 3.11, the project's Python,
# so the checkout and the venv's site-packages (bound into the container, on PYTHONPATH) run there.
# Built into a temporary directory and renamed, so an interrupted build is never taken for a
# finished one.
if [ ! -e "$ROOTFS.complete" ]; then
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    /usr/sbin/debootstrap --variant=minbase --include=python3 bookworm "$tmp/rootfs" \
        "${HPCPILOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$tmp/debootstrap.log" 2>&1 || {
        tail -n 20 "$tmp/debootstrap.log" >&2
        exit 1
    }
    # What only exists in the image: the test's payload reads it to prove where it ran.
    echo "hpcpilot-ci bookworm-python" >"$tmp/rootfs/etc/hpcpilot-image"
    rm -rf "$tmp/rootfs/var/cache/apt/archives"/*.deb "$tmp/rootfs/var/lib/apt/lists"/*
    rm -rf "$ROOTFS"
    mv "$tmp/rootfs" "$ROOTFS"
    touch "$ROOTFS.complete"
fi
