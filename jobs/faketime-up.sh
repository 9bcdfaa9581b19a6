#!/usr/bin/env bash
# Install libfaketime's `faketime` (Debian's faketime package), which the store's history test uses to skew
# the clocks of some of its processes. Run as root; does nothing when it is already there.
set -euo pipefail
command -v faketime >/dev/null && exit 0
[ "$(id -u)" = 0 ] || { echo "faketime-up: must run as root (it installs Debian's faketime)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q faketime >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q faketime >/dev/null; }
command -v faketime >/dev/null
