#!/usr/bin/env bash
# Install MapServer 8 from Debian (the `mapserv` CGI program and its command-line tools),
# which `forestwatch serve` runs behind its HTTP front. Idempotent: does nothing when
# mapserv is installed. Needs root (or run it once with sudo).
set -euo pipefail
if command -v mapserv >/dev/null 2>&1 || [ -x /usr/lib/cgi-bin/mapserv ]; then
  exit 0
fi
# shellcheck source=/dev/null
source "$(dirname "$0")/apt_install.sh"
apt_install "MapServer is missing" cgi-mapserver mapserver-bin
