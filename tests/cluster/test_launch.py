"""The launch CLI: documented flags, clear errors, and a sim run end to end (real Ray, no Docker)."""

from __future__ import annotations

import json
import subprocess
import sys


def _launch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envfarm.launch", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_documents_the_flags():
    proc = _launch("--help")
    assert proc.returncode == 0
    for flag in ("--envs", "--address", "--tasks", "--policy", "--group-size", "--episodes", "--out",
                 "--backend", "--registry", "--train", "--model"):
        assert flag in proc.stdout
    assert "Examples:" in proc.stdout


def test_bad_arguments_are_named():
    proc = _launch("--envs", "0")
    assert proc.returncode != 0 and "--envs must be at least 1" in proc.stderr
    proc = _launch("--tasks", "./no/such/tasks.jsonl", "--backend", "sim")
    assert proc.returncode == 2 and "no tasks at" in proc.stderr


def test_malformed_task_file_is_one_line_not_a_traceback(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instance_id": "x__y-1", "repo": "x/y", "base_commit": "abc"}\n')
    proc = _launch("--tasks", str(rows), "--backend", "sim")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envfarm: error:") and "rows.jsonl:1" in lines[0]
    assert "problem_statement" in lines[0]  # names the missing field


def test_policy_spec_that_does_not_import_fails_before_the_farm_starts():
    proc = _launch("--policy", "no_such_pkg.agent:Policy", "--backend", "sim", timeout=60)
    assert proc.returncode == 2 and "cannot import module 'no_such_pkg.agent'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sim_run_writes_every_episode_once(tmp_path):
    proc = _launch("--envs", "50", "--backend", "sim", "--episodes", "120", "--group-size", "4",
                   "--policy-arg", "think_s=0.05", "--policy-arg", "turns=3", "--out", str(tmp_path),
                   "--run", "sim-test", "--no-live")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "sim-test"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes_finished"] == 120 and summary["groups_done"] == 30
    records = [json.loads(line) for f in run_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len({r["episode_id"] for r in records}) == 120 == len(records)
    assert all(r["group_id"] for r in records)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["policy"] == "sim" and manifest["task_source"] == "builtin"
