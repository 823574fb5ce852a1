#!/usr/bin/env bash
# Regenerates the README's screenshots of the wallboard and the report page
# (docs/screenshots/*.png) by running the headless-Chromium test, which
# scripts a small call centre (logins by *38 over SIP, a break, an ACD call)
# and keeps what the browser rendered. Needs Debian's chromium and
# chromium-driver (apt-get install -y chromium chromium-driver).
set -euo pipefail
cd "$(dirname "$0")/.."
FACD_SCREENSHOTS=docs/screenshots CI=1 nice cargo test --test wallboard_browser -- --nocapture
ls -l docs/screenshots/
