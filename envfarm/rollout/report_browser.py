"""Open a run report in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
selenium): what the report's tests and `scripts/bench_report.py` check a page with.

`python -m envfarm.rollout.report_browser report.html --screenshot out.png` prints the page's
timings and console errors as JSON. Needs the `test` extra (selenium) and the two Debian
packages (`scripts/browser-up.sh` installs them); selenium is never let fetch a browser or a
driver of its own: the paths are given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from envfarm.errors import EnvfarmError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
# the page sets these when the episodes table is complete and every plot is drawn (report.js)
READY = "const b = document.body; return !!b && b.dataset.plots === 'drawn' && !!b.dataset.rows"


class BrowserMissing(EnvfarmError):
    """No headless Chromium or no driver for it on this machine."""


def _find(names: tuple[str, ...], what: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").is_file()
                                       else None)
        if found:
            return found
    raise BrowserMissing(f"no {what} on this machine: install Debian's chromium and chromium-driver "
                         "(bash scripts/browser-up.sh, or apt-get install -y chromium chromium-driver)")


@contextmanager
def browser(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium WebDriver that keeps the page's console log."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserMissing("selenium is not installed: install envfarm's test extra (pip install -e '.[test]')") \
            from exc
    options = webdriver.ChromeOptions()
    options.binary_location = _find(BROWSERS, "Chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_find(DRIVERS, "chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def open_report(driver: Any, path: str | Path, timeout: float = 120.0) -> dict[str, float | None]:
    """Load the page from disk, wait for its plots, and return its timings in milliseconds from
    navigation start: `load_ms` (the load event's end), `table_ms` (the episodes table painted),
    `plots_ms` (every plot drawn)."""
    driver.get(Path(path).resolve().as_uri())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(READY):
            break
        time.sleep(0.05)
    else:
        raise TimeoutError(f"the report's plots were not drawn within {timeout:.0f} s: {path}")
    return driver.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const mark = (n) => { const m = performance.getEntriesByName(n); return m.length ? m[0].startTime : null; };
        return {load_ms: nav ? nav.loadEventEnd : null, table_ms: mark('table-painted'), plots_ms: mark('plots-drawn')};
    """)


def console_errors(driver: Any) -> list[str]:
    """Messages the page logged at error level (script errors included) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m envfarm.rollout.report_browser", description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="a report.html")
    ap.add_argument("--screenshot", default=None, help="save a PNG of the page here")
    args = ap.parse_args(argv)
    with browser() as driver:
        result: dict[str, Any] = open_report(driver, args.report)
        result["console_errors"] = console_errors(driver)
        if args.screenshot:
            driver.save_screenshot(args.screenshot)
    print(json.dumps(result))
    return 1 if result["console_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
