"""How fast a big run's report opens: `python scripts/bench_report.py [--episodes 2000] [--json]`.

Makes a synthetic run (groups of 4, several turns an episode with commands, outputs of a few KB,
patches, grades of 60 tests, some masked, failed and probing episodes, a 50-step train log),
writes its report as `python -m envfarm.rollout.summary` does, opens it in headless Chromium
(Debian's chromium and chromium-driver) several times and prints, in milliseconds from
navigation start: the load event's end, the episodes table painted, every plot drawn (medians),
plus the seconds to write the report and the file's size. A blank page is loaded in turn with the
report, so that a busy machine's share of the figures can be seen.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report  # noqa: E402

from envfarm.rollout.html import render_report  # noqa: E402
from envfarm.rollout.report_browser import browser, console_errors, open_report  # noqa: E402
from envfarm.rollout.summary import summarize  # noqa: E402
from envfarm.rollout.trajectory import FarmInfo, Timings, ToolCallRecord, Trajectory, Turn  # noqa: E402
from envfarm.tasks.grade_result import GradeResult  # noqa: E402

PROJECTS = ("inflection", "cachetools", "boltons", "toolz", "attrs", "more-itertools")
KINDS = ("dropped_return", "flipped_comparison", "off_by_one", "swapped_args")
SYSTEM = "You are a careful engineer. Fix the bug with the tools, then call submit.\n" * 8


def synthetic_episode(n: int, rng: random.Random) -> Trajectory:
    group, member = divmod(n, 4)
    project = PROJECTS[group % len(PROJECTS)]
    task = f"{project}__synth-{group % 300:04d}"
    turns = []
    for i in range(rng.randint(2, 12)):
        command = rng.choice(["pytest -q tests", f"grep -rn 'def f{i}' src", "git diff", "sed -n 1,80p src/m.py"])
        if member and i >= 2:
            command += f" # member {member}"
        output = "\n".join(f"line {k}: " + "x" * rng.randint(10, 90) for k in range(rng.randint(5, 60)))
        call = ToolCallRecord(id=f"c{i}", name="bash", arguments=json.dumps({"command": command}), output=output,
                              seconds=rng.random(), exit_code=rng.choice([0, 0, 1]))
        turns.append(Turn(index=i, completion=f"Let me look.\n<tool_call>{json.dumps({'name': 'bash'})}</tool_call>",
                          observation=output, tool_calls=[call], generation_seconds=rng.random() * 3,
                          tool_seconds=call.seconds, context_ids=list(range(rng.randint(50, 300))),
                          completion_ids=list(range(rng.randint(20, 200)))))
    roll = rng.random()
    masked, resolved = roll < 0.04, roll > 0.55
    tests = {f"tests/test_{project}.py::test_{k}": ("PASSED" if resolved or k % 5 else "FAILED") for k in range(60)}
    f2p = [t for k, t in enumerate(tests) if k % 5 == 0]
    report_ = {"FAIL_TO_PASS": {"success": f2p if resolved else [], "failure": [] if resolved else f2p},
               "PASS_TO_PASS": {"success": [t for t in tests if t not in f2p], "failure": []}}
    grade = None if masked else GradeResult(instance_id=task, resolved=resolved, tests=tests, report=report_,
                                            status="RESOLVED_FULL" if resolved else "RESOLVED_NO",
                                            fail_to_pass=1.0 if resolved else 0.0, pass_to_pass=1.0,
                                            log_tail="collected 60 items\n" * 100, seconds=rng.random() * 4)
    setup, grading = rng.random() * 3, 0.0 if masked else rng.random() * 5
    gen, tools = sum(t.generation_seconds for t in turns), sum(t.tool_seconds for t in turns)
    return Trajectory(
        episode_id=f"{task}#g{group}/e{member}", run="bench", instance_id=task, repo=project, policy="bench",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Fix {task}.\n" * 40}],
        turns=turns, reward=None if masked else float(resolved), resolved=resolved, terminated=True,
        end_reason="submit", error_kind="infrastructure" if masked else (None if resolved or roll < 0.5
                                                                         else "patch_failed"),
        grade=grade, patch="diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -1,3 +1,3 @@\n"
        + "-old line\n+new line\n" * rng.randint(1, 40),
        exploit_signals=["signals PID 1: kill -9 1"] if rng.random() < 0.02 else [],
        timings=Timings(setup=setup, generation=gen, tools=tools, grading=grading, total=setup + gen + tools + grading),
        group_id=f"{task}#g{group}", group_index=group, member=member, farm=FarmInfo(host="bench/host-0"))


def synthetic_train_log(steps: int, rng: random.Random) -> list[dict]:
    log = []
    for step in range(1, steps + 1):
        means = [min(1.0, max(0.0, rng.gauss(step / steps, 0.2))) for _ in range(4)]
        split = {"generation": rng.random() * 20, "sandbox": rng.random() * 10, "grading": rng.random() * 5,
                 "optimizer": rng.random() * 8}
        log.append({"step": step, "step_s": sum(split.values()), "episodes": 16, "masked": rng.choice([0, 0, 1]),
                    "groups": [{"mean": m, "std": 0.3} for m in means], "pass_rate": sum(means) / 4,
                    "time_s": split, "trainer": {"reward": sum(means) / 4, "reward_std": 0.3,
                                                 "loss": rng.random() * 0.1}})
    return log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5, help="page loads to take the medians of (default: 5)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", default=None, help="write the report here instead of a temporary folder")
    args = ap.parse_args()
    rng = random.Random(0)
    trajectories = [synthetic_episode(n, rng) for n in range(args.episodes)]
    t0 = time.perf_counter()
    page = render_report(trajectories, summarize(trajectories), {"run": "bench"}, "bench",
                         synthetic_train_log(50, rng))
    write_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or Path(tmp) / "report.html")
        path.write_text(page, encoding="utf-8")
        # a blank page that marks itself as the report does, loaded in turn with it: what the
        # machine (a busy one, often) costs any page, for reading the report's figures
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!doctype html><body><script>requestAnimationFrame(() => setTimeout(() => {"
                         "performance.mark('table-painted'); performance.mark('plots-drawn');"
                         "document.body.dataset.rows = '0'; document.body.dataset.plots = 'drawn'}, 0))</script>")
        loads, blanks = [], []
        with browser() as driver:
            for _ in range(args.repeats):
                blanks.append(open_report(driver, blank))
                loads.append(open_report(driver, path))
            errors = console_errors(driver)
    med = {k: statistics.median(x[k] for x in loads) for k in ("load_ms", "table_ms", "plots_ms")}
    figures = {"episodes": args.episodes, "file_mb": len(page.encode()) / 2**20, "write_report_s": write_s,
               "load_event_ms_p50": med["load_ms"], "table_painted_ms_p50": med["table_ms"],
               "first_view_ms_p50": max(med["load_ms"], med["table_ms"]), "plots_drawn_ms_p50": med["plots_ms"],
               "first_view_ms_max": max(max(x["load_ms"], x["table_ms"]) for x in loads),
               "blank_page_first_view_ms_p50": statistics.median(max(x["load_ms"], x["table_ms"]) for x in blanks),
               "repeats": args.repeats, "console_errors": len(errors)}
    report(figures, args.json)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
