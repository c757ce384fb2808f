#!/bin/sh
# Install Debian's chromium for the dashboard's browser tests (tests/dashboard/). Idempotent.
# Needs root (CI runs as root); the tests call it themselves, so `python3 dev.py test` works on
# a clean machine. An flock keeps concurrent test runs from racing apt.
set -eu
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "setup_chromium.sh: $CHROMIUM is missing and we are not root; run 'apt-get install -y chromium' as root." >&2
    exit 1
fi
exec 9>/tmp/local-ai-router-chromium.lock
flock 9
[ -x "$CHROMIUM" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt (dev.py installs docker-compose; CI may run this in the background).
APT="apt-get -o DPkg::Lock::Timeout=600"
$APT install -y --no-install-recommends chromium >/dev/null 2>&1 || {
    $APT update -q >/dev/null
    $APT install -y --no-install-recommends chromium
}
[ -x "$CHROMIUM" ] || { echo "setup_chromium.sh: chromium did not install to $CHROMIUM" >&2; exit 1; }
