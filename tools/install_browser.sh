#!/usr/bin/env bash
# Install headless Chromium (Debian package `chromium`) for the browser end-to-end test
# (tests/test_browser.py drives it over the DevTools protocol, so no chromedriver is needed).
# Idempotent: does nothing when `chromium` is already on PATH.
# usage: tools/install_browser.sh        (root, or a user with sudo)
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if [ -n "${CLIPWB_CHROMIUM:-}" ] && have "$CLIPWB_CHROMIUM"; then
    echo "install_browser: using CLIPWB_CHROMIUM=$CLIPWB_CHROMIUM"
    exit 0
fi
if have chromium; then
    echo "install_browser: $(chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif have sudo; then SUDO="sudo"
else
    echo "install_browser: need root (or sudo) to apt-get install chromium" >&2
    exit 1
fi
if ! have apt-get; then
    echo "install_browser: apt-get not found; install Chromium with your package manager (or set CLIPWB_CHROMIUM to a Chromium/Chrome binary)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
echo "install_browser: installed $(chromium --version)"
