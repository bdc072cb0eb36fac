#!/usr/bin/env bash
# Install QGIS's Python bindings from Debian (python3-qgis 3.22) for the headless QGIS
# test of the WMS (tests/test_publish_wms.py). Idempotent; needs root (or sudo).
# Measured: 174 packages, about 100 s with apt's lists up to date.
set -euo pipefail
if /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "QGIS's Python bindings are missing; run as root: sudo bash $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3-qgis
