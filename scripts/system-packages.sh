#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, and only when one is missing,
# so that a developer's machine with everything in place is not touched.
# --no-upgrade: never upgrade what the machine already has.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# socat: pseudo-terminal pairs for the serial driver tests.
command -v socat >/dev/null 2>&1 || need+=(socat)
# libmtdev1: Kivy's multitouch input provider (the kiosk tests run Kivy offscreen).
ldconfig -p 2>/dev/null | grep -q 'libmtdev.so.1' || need+=(libmtdev1)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-packages: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 1
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-upgrade "${need[@]}"
