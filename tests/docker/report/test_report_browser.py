"""The run report of a real run, read in headless Chromium: two Docker episodes of one GRPO group,
one solving the task and one probing the farm; no console error, plots drawn, a filter that
changes the rows, an episode's patch as a coloured diff, a group side by side. A screenshot goes to
tests/artifacts/report.png (and the page to tests/artifacts/report.html)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envfarm.rollout.report_browser import browser, console_errors, open_report
from envfarm.tasks.loading import BUILTIN_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parents[1] / "artifacts"
RUN = "pytest-report"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, inflection_image):
    out = tmp_path_factory.mktemp("report")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1].parent), str(HERE),
                                                        str(HERE.parents[1] / "cluster"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "envfarm.launch", "--envs", "2", "--episodes", "2", "--group-size", "2",
         "--policy", "mixed_policy:SolveOrProbe", "--policy-arg", f"claims={out / 'claims'}",
         "--tasks", str(BUILTIN_DIR / "fixtures.jsonl"),
         "--limit-tasks", "1", "--out", str(out), "--run", RUN, "--no-live"],
        capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = subprocess.run([sys.executable, "-m", "envfarm.rollout.summary", str(out / RUN)],
                             capture_output=True, text=True, timeout=120, env=env)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "report" in summary.stdout and (out / RUN / "report.html").is_file()
    return out / RUN


def _wait(driver, script: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _rows(driver) -> int:
    return int(_wait(driver, "return document.body.dataset.rows"))


def test_report_of_a_real_run_in_chromium(run_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = run_dir / "report.html"
    with browser() as driver:
        timings = open_report(driver, page)
        assert timings["table_ms"] is not None and timings["plots_ms"] is not None
        plots = driver.find_elements(By.CSS_SELECTOR, "#plots .plot .main-svg")
        assert len(plots) >= 6  # pass rate, turns, time (2), scatter, groups: drawn by plotly
        assert driver.find_element(By.ID, "fig-exploits").is_displayed()  # the probes were caught
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "report.png"))
        shutil.copy(page, ARTIFACTS / "report.html")

        everything = _rows(driver)
        assert everything == 2
        Select(driver.find_element(By.ID, "f-status")).select_by_value("resolved")
        resolved = _rows(driver)
        assert 0 < resolved < everything
        assert all("resolved" in r.text for r in driver.find_elements(By.CSS_SELECTOR, "#ep-body tr"))
        Select(driver.find_element(By.ID, "f-status")).select_by_value("")
        driver.find_element(By.ID, "search").send_keys("kill -TERM 1")
        probes = _wait(driver, "const n = +document.body.dataset.rows; return n && n < 2 ? n : 0")
        assert probes == everything - resolved

        # the search left the probes; open a resolved episode from its row instead
        driver.find_element(By.ID, "f-clear").click()
        _wait(driver, "return document.body.dataset.rows === '2'")
        Select(driver.find_element(By.ID, "f-status")).select_by_value("resolved")
        _rows(driver)
        driver.find_element(By.CSS_SELECTOR, "#ep-body tr a").click()
        _wait(driver, "return !document.getElementById('view').hidden")
        adds = driver.find_elements(By.CSS_SELECTOR, "#view pre.diff .add")
        dels = driver.find_elements(By.CSS_SELECTOR, "#view pre.diff .del")
        assert adds and dels and adds[0].value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
        statuses = driver.find_element(By.CSS_SELECTOR, "#view table.tests").text
        assert "F2P" in statuses and "P2P" in statuses and "PASSED" in statuses
        assert len(driver.find_elements(By.CSS_SELECTOR, "#view .turn")) >= 3
        driver.save_screenshot(str(ARTIFACTS / "report-episode.png"))

        driver.get(page.resolve().as_uri() + "#group=0")
        view = _wait(driver, "const v = document.getElementById('view'); return v.hidden ? '' : v.innerText")
        assert "group" in view and "member 0" in view and "member 1" in view

        # a plot point opens its episode, as a click on it does (plotly's click event)
        driver.execute_script("document.getElementById('fig-episodes-scatter')"
                              ".emit('plotly_click', {points: [{customdata: 1}]})")
        assert _wait(driver, "return location.hash === '#ep=1' && !document.getElementById('view').hidden")
        assert console_errors(driver) == []
