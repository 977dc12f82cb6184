#!/usr/bin/env bash
# System packages the test suite drives, installed where missing (run by `make test`):
# Debian's Chromium (the gallery, kedro-viz and MLflow UI tests, through Playwright; no
# browser is ever downloaded) and PostgreSQL's server binaries (the team deployment test).
# Uses apt-get, with sudo when not root; elsewhere it says what to install and stops.
set -euo pipefail
missing=()
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
((${#missing[@]})) || exit 0
if ! command -v apt-get >/dev/null; then
    echo "make test needs these system packages, and this system has no apt-get to install" \
         "them: ${missing[*]} (Chromium at /usr/bin/chromium; PostgreSQL's initdb, pg_ctl" \
         "and postgres). Install them with your package manager, then rerun make test." >&2
    exit 1
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "Installing the test suite's system packages: ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
