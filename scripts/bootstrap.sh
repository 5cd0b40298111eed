#!/usr/bin/env bash
# Everything envfarm needs on a fresh machine, idempotently: a running Docker engine, a project
# virtual environment (.venv) with envfarm editable and its extras, and the images (built offline
# if need be). Each step is skipped when already done, so running it again takes seconds.
#
# The system interpreter is never installed into: Debian and Ubuntu mark theirs
# EXTERNALLY-MANAGED (PEP 668), and a project's packages do not belong there anyway.
#   PYTHON=/usr/bin/python3.12   the interpreter the venv is made from (default: python3). An existing
#                                venv is kept when PYTHON is unset, and made anew when PYTHON names
#                                another interpreter than the one it was made from
#   ENVFARM_VENV=/path/to/venv   where the venv lives (default: .venv in the checkout)
#   ENVFARM_EXTRAS=test,train    which extras to install (default: both; 'test' alone: no torch)
#   ENVFARM_SKIP_IMAGES=1        no Docker engine, no images (the sim backend only)
#   ENVFARM_SKIP_BROWSER=1       no headless Chromium (installed with the 'test' extra, for the run report's tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
START=$SECONDS

say() { echo "[bootstrap] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

SHOWN=${ENVFARM_VENV:-.venv}
case "$SHOWN" in /*) VENV=$SHOWN ;; *) VENV="$ROOT/$SHOWN" ;; esac
EXTRAS=${ENVFARM_EXTRAS:-test,train}
PY="$VENV/bin/python"
STAMP="$VENV/.envfarm-installed"   # the extras last installed; older than pyproject.toml: reinstall

# "<base prefix> <version>" of an interpreter: which Python a venv was made from
py_id() { "$1" -c 'import os, sys; print(os.path.realpath(sys.base_prefix), "%d.%d.%d" % sys.version_info[:3])'; }
supported() { case "$1" in 3.11.*|3.12.*|3.13.*) return 0 ;; *) return 1 ;; esac; }

# --- the interpreter -------------------------------------------------------------------------
venv_id=$(py_id "$PY" 2>/dev/null || true)
# a venv that works, has pip and is of a supported version is kept unless PYTHON asks for another
if [ -n "$venv_id" ] && { ! supported "${venv_id##* }" || ! "$PY" -c 'import pip' 2>/dev/null; }; then
  say "$SHOWN is unusable (Python ${venv_id##* }, or no pip in it): making it anew"
  venv_id=""
fi
if [ -z "${PYTHON:-}" ] && [ -n "$venv_id" ]; then
  BASE_PY="" base_id=$venv_id
else
  BASE_PY=${PYTHON:-python3}
  command -v "$BASE_PY" >/dev/null 2>&1 \
    || die "no interpreter '$BASE_PY': install Python 3.11, 3.12 or 3.13, or set PYTHON=/path/to/python3.X"
  base_id=$(py_id "$BASE_PY") || die "$BASE_PY does not run"
  supported "${base_id##* }" \
    || die "$BASE_PY is Python ${base_id##* }; envfarm supports 3.11, 3.12 and 3.13 (set PYTHON=/path/to/python3.X)"
fi
version=${base_id##* }; minor=${version%.*}

# --- Docker ----------------------------------------------------------------------------------
if [ "${ENVFARM_SKIP_IMAGES:-0}" != 1 ]; then
  bash scripts/docker-up.sh
  # Debian's registry, for the tests that serve images to a cold engine from one (tests/cluster)
  case ",$EXTRAS," in *,test,*)
    if ! command -v docker-registry >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      say "installing Debian's docker-registry (the registry test)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq docker-registry >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq docker-registry >/dev/null; } \
        || die "apt-get install docker-registry failed"
    fi ;;
  esac
fi

# --- headless Chromium (the run report's browser tests) -------------------------------------
case ",$EXTRAS," in
  *,test,*) [ "${ENVFARM_SKIP_BROWSER:-0}" = 1 ] || bash scripts/browser-up.sh ;;
esac

# --- the venv --------------------------------------------------------------------------------
if [ "$venv_id" != "$base_id" ]; then
  [ -z "$venv_id" ] || say "$SHOWN was made from Python ${venv_id##* } (${venv_id% *}), PYTHON is $BASE_PY: making it anew"
  base_exe=$("$BASE_PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')
  if ! "$BASE_PY" -c 'import venv, ensurepip' 2>/dev/null; then
    # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) separately, as python3.X-venv
    case "$base_exe" in
      /usr/bin/*)
        command -v apt-get >/dev/null 2>&1 || die "$BASE_PY has no venv/ensurepip module and there is no apt-get to install it"
        [ "$(id -u)" = 0 ] || die "$BASE_PY has no ensurepip module: run 'sudo apt-get install python$minor-venv', then this again"
        say "$BASE_PY has no ensurepip module (Debian ships it apart): installing python$minor-venv with apt-get"
        bash scripts/apt-install.sh bootstrap "python$minor-venv" || exit 1 ;;
      *) die "$BASE_PY ($base_exe) has no venv/ensurepip module: use a Python built with it (PYTHON=...)" ;;
    esac
  fi
  rm -rf "$VENV"
  say "creating the virtual environment $SHOWN from $BASE_PY (Python $version, $base_exe)"
  venv_err=$(mktemp /tmp/envfarm-venv.XXXXXX)
  if ! "$BASE_PY" -m venv "$VENV" >"$venv_err" 2>&1; then
    rm -rf "$VENV"
    die "$BASE_PY -m venv $SHOWN failed: $(tail -n 5 "$venv_err")"
  fi
  rm -f "$venv_err"
fi

# --- the packages ----------------------------------------------------------------------------
# what the extras need to import, to tell a complete install from a partial one
imports="ray, docker, gymnasium, swebench, datasets, pydantic, rich"
case ",$EXTRAS," in *,train,*) imports="$imports, trl, transformers, torch" ;; esac
case ",$EXTRAS," in *,test,*) imports="$imports, pytest, pytest_timeout" ;; esac
# envfarm as installed, seen from outside the checkout: an editable install of another checkout
# would make the scripts/ entry points import that one
check="import os, $imports, envfarm; print(os.path.realpath(envfarm.__file__))"
installed=$(cd / && "$PY" -c "$check" 2>/dev/null || true)
if [ "$installed" != "$ROOT/envfarm/__init__.py" ] || [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] \
   || [ "$(cat "$STAMP")" != "$EXTRAS" ]; then
  pip_log=$(mktemp /tmp/envfarm-pip.XXXXXX)
  say "installing envfarm[$EXTRAS] into $SHOWN (a few minutes on a fresh machine; pip's log: $pip_log)"
  pip_install() {
    "$PY" -m pip install --disable-pip-version-check "$@" >>"$pip_log" 2>&1 && return 0
    tail -n 25 "$pip_log" >&2
    if grep -qE "NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|ConnectTimeoutError|Read timed out|ProxyError|SSLError|CERTIFICATE_VERIFY_FAILED|Network is unreachable|Connection refused" "$pip_log"; then
      die "pip could not reach the package index: check the network, the proxy (HTTPS_PROXY) or PIP_INDEX_URL (pip's log: $pip_log)"
    fi
    if grep -qiE "error: command '[^']*' failed|unable to execute|Python\.h: No such file|Failed building wheel|Failed to build|metadata-generation-failed|Rust compiler|cargo" "$pip_log"; then
      die "a package has no wheel for Python $minor on $(uname -m) and building it from source failed: a compiler and Python's headers are needed (Debian: apt-get install build-essential python$minor-dev), or choose another Python (pip's log: $pip_log)"
    fi
    if grep -qE "No matching distribution found|Could not find a version that satisfies" "$pip_log"; then
      die "no release of a requirement fits Python $minor here (see above; pip's log: $pip_log)"
    fi
    die "pip install $* failed (see above; pip's log: $pip_log)"
  }
  case ",$EXTRAS," in
    *,train,*)
      # torch's CPU build first when pip's find-links (PIP_FIND_LINKS, pip.conf) hold one for this
      # Python: a plain `torch` requirement fetches the index's multi-GB CUDA build
      if ! "$PY" -c "import torch" 2>/dev/null; then
        torch_local=$("$PY" -m pip install --disable-pip-version-check --dry-run --no-deps --no-index -q \
                        --report - "torch>=2.6,<2.14" 2>/dev/null \
                      | "$PY" -c 'import json, sys; r = json.load(sys.stdin)["install"]; print(r[0]["metadata"]["version"] if r else "")' \
                      2>/dev/null || true)
        if [ -n "$torch_local" ]; then
          say "torch: the wheel on this machine ($torch_local)"
          pip_install "torch==$torch_local"
        else
          say "torch: no wheel on this machine for Python $minor; the package index's build (a CUDA build on Linux: several GB)"
        fi
      fi ;;
  esac
  pip_install -e ".[$EXTRAS]"
  installed=$(cd / && "$PY" -c "$check") || die "the packages do not import after installing them (pip's log: $pip_log)"
  [ "$installed" = "$ROOT/envfarm/__init__.py" ] || die "$SHOWN imports envfarm from $installed, not from this checkout"
  rm -f "$pip_log"
  echo "$EXTRAS" >"$STAMP"
  say "packages installed"
fi

# --- the images ------------------------------------------------------------------------------
if [ "${ENVFARM_SKIP_IMAGES:-0}" != 1 ]; then
  # the core projects only; the others are built when a task first needs them (or: build --all)
  say "building images (cached: seconds when nothing changed)"
  "$PY" -m envfarm.sandbox.images build >/dev/null || die "building the images failed (see above)"
fi
say "ready in $((SECONDS - START)) s: $SHOWN/bin/python (Python $version); for interactive work: source $SHOWN/bin/activate"
