#!/usr/bin/env bash
# Install the Debian packages the STAC API integration test needs: PostgreSQL 15 with
# PostGIS 3 (pgstac's database). Idempotent; needs root (or run it once with sudo).
set -euo pipefail
PG_MAJOR=${PG_MAJOR:-15}
if [ -f "/usr/share/postgresql/${PG_MAJOR}/extension/postgis.control" ] \
   && [ -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_ctl" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL ${PG_MAJOR} + PostGIS are missing; run as root: sudo bash $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "postgresql-${PG_MAJOR}" "postgresql-${PG_MAJOR}-postgis-3"
