#!/usr/bin/env bash
# Install-and-smoke check of envfarm on other Pythons. For each interpreter given (a path, or a
# version such as 3.12, looked up as python3.12 on PATH), all at once:
#   bootstrap   a throwaway venv ${ENVFARM_SMOKE_DIR:-/tmp}/envfarm-smoke-<version> made through
#               scripts/bootstrap.sh (the test extra: no torch; no Docker, no images), from a copy of
#               this checkout beside it (<venv>.src: concurrent editable installs of one checkout
#               would write its envfarm.egg-info at the same time)
#   import      envfarm and envfarm.launch import (from outside the checkout)
#   help        python -m envfarm.launch --help
#   episode     one sim episode on a Ray of its own: --envs 1 --episodes 1 --backend sim --policy sim
# Each step is timed; a failure names the interpreter and the step, and the script exits non-zero.
# The venvs are kept: a second run only checks them (seconds) before the smoke steps.
#
#   bash scripts/smoke_python.sh 3.12 /root/.pyenv/versions/3.13.0/bin/python3
set -uo pipefail
cd "$(dirname "$0")/.."

[ $# -gt 0 ] || { echo "usage: $0 VERSION_OR_PATH..." >&2; exit 2; }
DIR=${ENVFARM_SMOKE_DIR:-/tmp}
unset RAY_ADDRESS   # never a Ray cluster this machine belongs to
START=$SECONDS
say() { echo "[smoke] $*" >&2; }

# smoke ARG RESULT_FILE: the four steps for one interpreter; its verdict goes to RESULT_FILE
smoke() {
  local arg=$1 result=$2 py version venv src out t_all=$SECONDS
  case "$arg" in
    */*) py=$arg ;;
    3.*) py=$(command -v "python$arg" || true) ;;
    *)   py=$(command -v "$arg" || true) ;;
  esac
  if [ -z "$py" ] || [ ! -x "$py" ]; then
    say "FAILED $arg: no such interpreter"; echo "$arg: FAILED (no such interpreter)" >"$result"; return 1
  fi
  if ! version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
    say "FAILED $arg: $py does not run"; echo "$arg: FAILED ($py does not run)" >"$result"; return 1
  fi
  venv="$DIR/envfarm-smoke-$version" src="$DIR/envfarm-smoke-$version.src"
  out=$(mktemp -d /tmp/envfarm-smoke-logs.XXXXXX)
  say "Python $version ($py): venv $venv"

  step() {  # step NAME TIMEOUT COMMAND...: runs it, timed (its log in $out), the log's tail shown on failure
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
      sed "s/^/[smoke $version $name] /" <(tail -n 30 "$out/$name.log") >&2
      if [ $rc -eq 124 ]; then say "FAILED Python $version, step '$name': timed out after $limit s"
      else say "FAILED Python $version, step '$name' (exit $rc; logs: $out)"; fi
      return 1
    fi
    say "Python $version: $name ok ($((SECONDS - t0)) s)"
  }

  # the checkout's files, with their times (an unchanged pyproject.toml: no reinstall)
  rm -rf "$src" && mkdir -p "$src" && git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$src" \
    || { say "FAILED Python $version: copying the checkout to $src"; echo "Python $version: FAILED (copy)" >"$result"; return 1; }
  local vpy="$venv/bin/python"
  if step bootstrap 900 env PYTHON="$py" ENVFARM_VENV="$venv" ENVFARM_EXTRAS=test ENVFARM_SKIP_IMAGES=1 ENVFARM_SKIP_BROWSER=1 \
         bash "$src/scripts/bootstrap.sh" \
     && step import 120 bash -c 'cd / && "$1" -c "import envfarm, envfarm.launch, sys; print(sys.version, envfarm.__file__)"' \
             _ "$vpy" \
     && step help 120 "$vpy" -m envfarm.launch --help \
     && step episode 300 "$vpy" -m envfarm.launch --envs 1 --episodes 1 --backend sim --policy sim --no-live \
             --out "$out/rollouts" \
     && step summary 30 "$vpy" -c '
import glob, json, sys
[path] = glob.glob(sys.argv[1] + "/*/summary.json")
s = json.load(open(path))
assert s["episodes_finished"] == 1 and s["failed_infrastructure"] == 0, s
print("episodes_finished", s["episodes_finished"], "resolved", s["resolved"])' "$out/rollouts"; then
    echo "Python $version ($py): ok in $((SECONDS - t_all)) s" >"$result"
    rm -rf "$out"
  else
    echo "Python $version ($py): FAILED (logs: $out)" >"$result"
    return 1
  fi
}

results=$(mktemp -d /tmp/envfarm-smoke-results.XXXXXX)
pids=()
i=0
for arg in "$@"; do
  i=$((i + 1))
  smoke "$arg" "$results/$i" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done

say "summary ($((SECONDS - START)) s in all):"
for f in $(seq 1 $i); do say "  $(cat "$results/$f" 2>/dev/null || echo "interpreter $f: no verdict")"; done
rm -rf "$results"
exit $failed
