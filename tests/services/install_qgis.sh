#!/usr/bin/env bash
# Install QGIS's Python bindings from Debian (python3-qgis 3.22) for the headless QGIS
# test of the WMS (tests/test_publish_wms.py). Idempotent; needs root (or sudo).
# Measured: 174 packages, about 100 s with apt's lists up to date.
set -euo pipefail
if /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1; then
  exit 0
fi
# shellcheck source=/dev/null
source "$(dirname "$0")/../../deploy/apt_install.sh"
apt_install "QGIS's Python bindings are missing" python3-qgis
