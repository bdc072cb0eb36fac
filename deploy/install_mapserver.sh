#!/usr/bin/env bash
# Install MapServer 8 from Debian (the `mapserv` CGI program and its command-line tools),
# which `forestwatch serve` runs behind its HTTP front. Idempotent: does nothing when
# mapserv is installed. Needs root (or run it once with sudo).
set -euo pipefail
if command -v mapserv >/dev/null 2>&1 || [ -x /usr/lib/cgi-bin/mapserv ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "MapServer is missing; run as root: sudo bash $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends cgi-mapserver mapserver-bin
