#!/usr/bin/env bash
# Install the Debian packages the STAC API integration test needs: PostgreSQL 15 with
# PostGIS 3 (pgstac's database). Idempotent; needs root (or run it once with sudo).
set -euo pipefail
PG_MAJOR=${PG_MAJOR:-15}
if [ -f "/usr/share/postgresql/${PG_MAJOR}/extension/postgis.control" ] \
   && [ -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_ctl" ]; then
  exit 0
fi
# shellcheck source=/dev/null
source "$(dirname "$0")/../../deploy/apt_install.sh"
apt_install "PostgreSQL ${PG_MAJOR} + PostGIS are missing" "postgresql-${PG_MAJOR}" "postgresql-${PG_MAJOR}-postgis-3"
