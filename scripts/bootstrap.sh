#!/usr/bin/env bash
# Everything envfarm needs on a fresh machine, idempotently: a running Docker engine, a project
# virtual environment (.venv) with envfarm editable and its test tools, and the images (built
# offline if need be). Each step is skipped when already done, so running it again takes seconds.
#
# The system interpreter is never installed into: Debian and Ubuntu mark theirs
# EXTERNALLY-MANAGED (PEP 668), and a project's packages do not belong there anyway.
#   PYTHON=/usr/bin/python3.12 bash scripts/bootstrap.sh   # the interpreter the venv is made from
#   ENVFARM_VENV=/path/to/venv                              # where the venv lives (default .venv)
#   ENVFARM_EXTRAS=test,train                               # which extras to install (default both)
#   ENVFARM_SKIP_IMAGES=1                                   # no Docker engine, no images (sim only)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[bootstrap] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

BASE_PY=${PYTHON:-python3}
VENV=${ENVFARM_VENV:-.venv}
EXTRAS=${ENVFARM_EXTRAS:-test,train}
PY="$VENV/bin/python"

if [ "${ENVFARM_SKIP_IMAGES:-0}" != 1 ]; then
  bash scripts/docker-up.sh
fi

command -v "$BASE_PY" >/dev/null 2>&1 || die "no interpreter '$BASE_PY': install Python 3.11 to 3.13, or set PYTHON=/path/to/python3"
base_version=$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$base_version" in
  3.11|3.12|3.13) ;;
  *) die "$BASE_PY is Python $base_version; envfarm supports 3.11, 3.12 and 3.13 (set PYTHON=/path/to/python3.X)" ;;
esac

# the venv, made anew when it is missing, broken, or from another Python version
venv_version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
if [ "$venv_version" != "$base_version" ]; then
  [ -z "$venv_version" ] || say "$VENV is Python $venv_version, $BASE_PY is $base_version: making it anew"
  rm -rf "$VENV"
  say "creating the virtual environment $VENV from $BASE_PY (Python $base_version)"
  if ! "$BASE_PY" -m venv "$VENV" 2>/tmp/envfarm-venv.err; then
    rm -rf "$VENV"
    # Debian and Ubuntu ship venv's pip bootstrap separately (python3-venv / python3.X-venv)
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      say "the venv module cannot bootstrap pip here; installing Debian's python3-venv"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null || die "apt-get update failed: is the package index reachable?"
      apt-get install -y -qq "python$base_version-venv" >/dev/null 2>&1 \
        || apt-get install -y -qq python3-venv >/dev/null \
        || die "apt-get install python3-venv failed"
      "$BASE_PY" -m venv "$VENV" || die "python -m venv failed even with python3-venv installed"
    else
      die "$BASE_PY -m venv failed: $(tail -n 3 /tmp/envfarm-venv.err)
  On Debian/Ubuntu: sudo apt-get install python$base_version-venv; elsewhere install Python's venv module"
    fi
  fi
  rm -f .bootstrap-stamp
fi

# what the extras need to import, to tell a complete install from a partial one
imports="envfarm, ray, docker, gymnasium, swebench, pydantic"
case ",$EXTRAS," in *,train,*) imports="$imports, trl, transformers, torch" ;; esac
case ",$EXTRAS," in *,test,*) imports="$imports, pytest, pytest_timeout" ;; esac
# envfarm as installed, seen from outside the checkout: an editable install of another checkout
# would make the scripts/ entry points import that one
installed=$(cd / && "$OLDPWD/$PY" -c "import envfarm; print(envfarm.__file__)" 2>/dev/null || true)
stamp_extras=$(cat .bootstrap-stamp 2>/dev/null || true)
if ! "$PY" -c "import $imports" 2>/dev/null || [ "$installed" != "$PWD/envfarm/__init__.py" ] \
   || [ pyproject.toml -nt .bootstrap-stamp ] || [ "$stamp_extras" != "$EXTRAS" ]; then
  say "installing Python packages into $VENV (about two minutes on a fresh machine)"
  pip_log=$(mktemp)
  pip_install() {
    if ! "$PY" -m pip install -q --disable-pip-version-check "$@" >"$pip_log" 2>&1; then
      cat "$pip_log" >&2
      if grep -qiE "connection|resolve|timed out|proxy|certificate" "$pip_log"; then
        die "pip could not reach the package index (see above): check the network, proxy or PIP_INDEX_URL"
      fi
      if grep -qiE "gcc|compiler|Python.h|failed building wheel" "$pip_log"; then
        die "a package needed compiling and failed (see above): no wheel for Python $base_version on $(uname -m)?"
      fi
      die "pip install $* failed (see above)"
    fi
  }
  case ",$EXTRAS," in
    *,train,*)
      # the CPU wheel first where one lies on this machine: a plain `torch` requirement fetches
      # a multi-GB CUDA build from the package index
      if "$PY" -m pip download --no-deps -q -d /tmp/envfarm-torch-probe "torch==2.13.0" --no-index \
           ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} >/dev/null 2>&1; then
        say "torch: the CPU wheel on this machine"
        pip_install "torch==2.13.0" ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"}
      elif ! "$PY" -c "import torch" 2>/dev/null; then
        say "torch: no CPU wheel on this machine; the package index's build for Python $base_version (large: CUDA)"
      fi ;;
  esac
  pip_install -e ".[$EXTRAS]"
  "$PY" -c "import $imports" || die "Python packages did not install; see pip's messages above"
  rm -f "$pip_log"
  echo "$EXTRAS" > .bootstrap-stamp
fi

if [ "${ENVFARM_SKIP_IMAGES:-0}" != 1 ]; then
  say "building images (cached: seconds when nothing changed)"
  "$PY" -m envfarm.sandbox.images build >/dev/null
fi
say "ready: $PY (activate with: source $VENV/bin/activate)"
