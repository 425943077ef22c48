#!/usr/bin/env bash
# Install MathJax 2 (Debian package `libjs-mathjax`) for the documentation site: tools/build_docs.py copies it into
# _docs/_static/mathjax so the site's formulas render offline, with nothing loaded from a CDN.
# Idempotent: does nothing when /usr/share/javascript/mathjax/MathJax.js (or $CLIPWB_MATHJAX/MathJax.js) exists.
# usage: tools/install_docs_deps.sh        (root, or a user with sudo)
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
MJ="${CLIPWB_MATHJAX:-/usr/share/javascript/mathjax}"

if [ -f "$MJ/MathJax.js" ]; then
    echo "install_docs_deps: MathJax already in $MJ"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif have sudo; then SUDO="sudo"
else
    echo "install_docs_deps: need root (or sudo) to apt-get install libjs-mathjax" >&2
    exit 1
fi
if ! have apt-get; then
    echo "install_docs_deps: apt-get not found; install MathJax 2 with your package manager and set CLIPWB_MATHJAX to its folder" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libjs-mathjax
echo "install_docs_deps: installed libjs-mathjax in /usr/share/javascript/mathjax"
