"""The report page as a file: self-contained, escaped, under its size cap, and written by the summary
command (the browser checks are in tests/docker/report)."""

from __future__ import annotations

import json
import re

import pytest

from envfarm.rollout import TrajectoryStore
from envfarm.rollout.html import render_report
from envfarm.rollout.summary import main as summary_main
from envfarm.rollout.summary import summarize
from envfarm.rollout.trajectory import Timings, ToolCallRecord, Trajectory, Turn


def big_episode(n: int, output_chars: int) -> Trajectory:
    calls = [ToolCallRecord(id="c", name="bash", arguments='{"command": "cat log"}',
                            output=f"</script><script>alert({n})</script>" + "y" * output_chars)]
    return Trajectory(episode_id=f"e{n}", instance_id=f"p__t-{n % 3}", repo="p", reward=float(n % 2),
                      resolved=bool(n % 2), turns=[Turn(index=0, completion="c", observation="o", tool_calls=calls)],
                      patch="diff --git a/x b/x\n+new\n", timings=Timings(total=1.0), group_id=f"g{n // 2}",
                      member=n % 2)


def data_of(page: str, element: str) -> dict:
    found = re.search(f'<script type="application/json" id="{element}">(.*?)</script>', page, re.S)
    assert found, element
    return json.loads(found.group(1))


def test_page_is_self_contained_and_no_output_closes_its_script():
    run = [big_episode(n, 100) for n in range(4)]
    page = render_report(run, summarize(run), {"run": "r"}, "r")
    assert page.count("<script") == page.count("</script>") == 4  # data, details, plotly (as text), the page's
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing fetched from anywhere
    details = data_of(page, "report-details")
    assert details["eps"][0]["turns"][0]["calls"][0]["out"]["t"].startswith("</script><script>alert(0)")
    data = data_of(page, "report-data")
    assert [r["status"] for r in data["rows"]] == ["failed", "resolved", "failed", "resolved"]
    assert {f["id"] for f in data["figs"]} >= {"pass-project", "turns", "time-project", "time-slowest",
                                               "episodes-scatter", "errors", "exploits", "groups"}
    assert len(data["groups"]) == 2 and data["train_figs"] == []


def test_page_stays_under_its_cap_by_clipping_outputs_with_a_note():
    run = [big_episode(n, 200_000) for n in range(40)]  # 8 MB of outputs
    cap = 6 * 2**20  # plotly alone is about 4.6 MB
    page = render_report(run, summarize(run), {}, "r", max_bytes=cap)
    assert len(page.encode()) <= cap
    out = data_of(page, "report-details")["eps"][0]["turns"][0]["calls"][0]["out"]
    assert out["cut"] > 150_000 and out["t"].endswith("y")  # the tail is kept
    empty = len(render_report([], summarize([]), {}, "r").encode())
    with pytest.raises(ValueError, match="too large for a report"):  # room for the page, not for 40 episodes
        render_report(run, summarize(run), {}, "r", max_bytes=empty + 2000)


def test_summary_writes_report_html_with_the_training_curves(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with TrajectoryStore(run_dir, manifest={"task_source": "builtin:cachetools"}) as store:
        for n in range(3):
            store.write(big_episode(n, 10))
    (run_dir / "train_log.jsonl").write_text(json.dumps({"step": 1, "episodes": 2, "masked": 0, "groups": [],
                                                         "trainer": {"reward": 0.5, "loss": 0.1}}) + "\n")
    assert summary_main([str(run_dir)]) == 0
    assert "1 training steps" in capsys.readouterr().out
    data = data_of((run_dir / "report.html").read_text(), "report-data")
    assert {f["id"] for f in data["train_figs"]} == {"train-reward", "train-masked", "train-loss"}
    assert summary_main([str(run_dir), "--train-log", str(tmp_path / "nope.jsonl")]) == 2
    assert "--train-log" in capsys.readouterr().err
    assert summary_main([str(run_dir), "--tasks", str(tmp_path / "nope.jsonl")]) == 2
    assert "--tasks" in capsys.readouterr().err
