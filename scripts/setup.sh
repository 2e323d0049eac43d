#!/usr/bin/env bash
# Set up harness on a Debian machine: the system tools of harness/run/tools.txt, a virtual environment
# in .venv, and the package installed into it (C path included). Idempotent: each step is skipped
# when its result is already there. Run as root, or with sudo available, for the apt-get step.
#
#   bash scripts/setup.sh                  everything the harness and its tests use
#   bash scripts/setup.sh --corpus         also what regenerating captures/corpus needs
#   bash scripts/setup.sh --print-missing  only list the Debian packages that would be installed
#
# HARNESS_SYSTEM_DIRS (default: the directories below) is where programs are looked for after PATH,
# as harness.tools does.
set -euo pipefail
here="${BASH_SOURCE[0]}"
[[ "$here" == */* ]] && cd "${here%/*}/.." || cd ..

groups=" bootstrap capture namespaces privilege build tests "
print_only=0
for arg in "$@"; do
  case "$arg" in
    --corpus) groups+="corpus " ;;
    --print-missing) print_only=1 ;;
    *) echo "setup: unknown option $arg (known: --corpus, --print-missing)" >&2; exit 2 ;;
  esac
done
system_dirs="${HARNESS_SYSTEM_DIRS:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

have_program() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local dir
  IFS=: read -ra dirs <<<"$system_dirs"
  for dir in "${dirs[@]}"; do [ -x "$dir/$1" ] && return 0; done
  return 1
}

# Headers, modules and libraries of the interpreter the virtual environment is made from.
python_has() {
  have_program python3 || return 1
  python3 - "$1" "$2" <<'EOF' >/dev/null 2>&1
import ctypes.util, importlib.util, os, sys, sysconfig
kind, name = sys.argv[1], sys.argv[2]
if kind == "header":
    found = os.path.exists(os.path.join(sysconfig.get_paths()["include"], name))
elif kind == "module":
    found = importlib.util.find_spec(name) is not None
else:
    found = ctypes.util.find_library(name[3:] if name.startswith("lib") else name) is not None
raise SystemExit(0 if found else 1)
EOF
}

present() {
  case "$2" in
    program) have_program "$1" ;;
    header|module|library) python_has "$2" "$1" ;;
    *) echo "setup: harness/run/tools.txt: unknown kind $2 for $1" >&2; exit 2 ;;
  esac
}

need_apt=()
while read -r tool kind packages group _purpose; do
  case "$tool" in ''|'#'*) continue ;; esac
  case "$groups" in *" $group "*) ;; *) continue ;; esac
  present "$tool" "$kind" && continue
  for package in ${packages//,/ }; do
    case " ${need_apt[*]-} " in *" $package "*) ;; *) need_apt+=("$package") ;; esac
  done
done < harness/run/tools.txt

if [ "$print_only" -eq 1 ]; then
  [ ${#need_apt[@]} -eq 0 ] || printf '%s\n' "${need_apt[@]}"
  exit 0
fi

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
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
    || [ harness/analysis/_speedups.c -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
# Which summary path this install has, and why when it is the slower one.
.venv/bin/harness --version >&2
