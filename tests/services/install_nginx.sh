#!/usr/bin/env bash
# Install nginx (Debian's nginx-light, with its echo module), the C file server that
# `benchmarks/chain.py --file-server nginx` puts in place of the Python test file server, and
# the latency proxy of `--latency-proxy nginx` (echo_sleep), as an object store's servers
# would be: not on the cores of what is measured. Idempotent; needs root (or run it once
# with sudo).
set -euo pipefail
if [ -x /usr/sbin/nginx ] && [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
  exit 0
fi
# shellcheck source=/dev/null
source "$(dirname "$0")/../../deploy/apt_install.sh"
apt_install "nginx or its echo module is missing" nginx-light libnginx-mod-http-echo
