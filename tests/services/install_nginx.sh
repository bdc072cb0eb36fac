#!/usr/bin/env bash
# Install nginx (Debian's nginx-light), the C file server that
# `benchmarks/chain.py --file-server nginx` puts in place of the Python test file server, as
# an object store's servers would be: not on the cores of what is measured. Idempotent;
# needs root (or run it once with sudo).
set -euo pipefail
if [ -x /usr/sbin/nginx ]; then
  exit 0
fi
# shellcheck source=/dev/null
source "$(dirname "$0")/../../deploy/apt_install.sh"
apt_install "nginx is missing" nginx-light
