#!/usr/bin/env bash
# Set up harness on a Debian machine: tshark (for dumpcap), a virtual environment, the package.
# Idempotent: each step is skipped when its result is already there. Run as root, or with sudo
# available, for the apt-get step.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
need_apt=()
have dumpcap || need_apt+=(tshark)
have python3 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# For the multi-host and least-privilege tests: namespaces, nftables rules, file capabilities.
have ip || need_apt+=(iproute2)
have nft || need_apt+=(nftables)
have setcap || need_apt+=(libcap2-bin)
# For harness/_speedups.c, the summary's per-packet work in C (without them harness still works,
# in pure Python, several times slower): a C compiler and the headers of the Python the venv uses.
have gcc || need_apt+=(gcc libc6-dev)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  >/dev/null 2>&1 || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Answer wireshark-common's question up front: no setuid dumpcap (root or setcap does the capturing).
  echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
  as_root apt-get update -qq
  as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.harness-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ harness/_speedups.c -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
