# Shared by the project's Debian installers (deploy/install_mapserver.sh,
# tests/services/install_{postgis,qgis}.sh): each checks on its own whether its software is
# there, then sources this file and calls
#   apt_install "<what is missing, as a sentence>" package...
# which installs the packages (needs root; otherwise it says how to run the script).
apt_install() {
  local missing=$1
  shift
  if [ "$(id -u)" != 0 ]; then
    echo "$missing; run as root: sudo bash $0" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$@"
}
