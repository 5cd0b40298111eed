"""What every benchmark script shares: percentiles and the report (a table, then one JSON line)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank: no interpolation, so it is a value that was measured."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase_medians(splits: list[dict[str, float]], prefix: str) -> dict[str, float]:
    """Per-phase medians of several GradeResult.phases, as `<prefix>_<phase>_p50_s` figures."""
    names = dict.fromkeys(name for split in splits for name in split)
    return {f"{prefix}_{name}_p50_s": statistics.median(s[name] for s in splits if name in s) for name in names}


def report(figures: dict[str, Any], as_json: bool) -> None:
    """One figure a line; with `as_json`, one JSON object with every figure as the last line."""
    width = max(len(k) for k in figures) + 2
    for key, value in figures.items():
        print(f"{key:{width}s} {value:.3f}" if isinstance(value, float) else f"{key:{width}s} {value}")
    if as_json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


def machine_cpu_s() -> float:
    """CPU time the whole machine has spent busy (every process, the engine and the kernel)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
