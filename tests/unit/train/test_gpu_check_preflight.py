"""scripts/gpu_check.py's preflight names each missing piece and exits non-zero; the wheelhouse
packer rebuilds an installed distribution as a wheel pip accepts."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check_driver", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preflight_lists_the_missing_acknowledgement_sdist_and_cuda(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ENVFARM_ALLOW_UNISOLATED"}
    env.update(ENVFARM_CACHE=str(tmp_path / "empty-cache"), PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--preflight", "--device", "cuda"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gpu_check: MISSING")]
    assert any("CUDA" in line for line in lines), proc.stderr
    assert any("ENVFARM_ALLOW_UNISOLATED=1" in line for line in lines), proc.stderr
    assert any("sdist cache" in line and "inflection==0.5.1" in line for line in lines), proc.stderr


def test_preflight_fills_the_sdist_cache_from_carried_sources(tmp_path: Path) -> None:
    from envfarm.sandbox.images import CACHE_DIR

    env = {**os.environ, "ENVFARM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT),
           "ENVFARM_ALLOW_UNISOLATED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--preflight", "--device", "cpu",
                           "--sources", str(CACHE_DIR / "sources")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "cache" / "sources" / "inflection-0.5.1").glob("*.tar.gz"))


def test_an_installed_distribution_becomes_a_wheel_with_its_record(tmp_path: Path) -> None:
    wheel = _driver().wheel_from_installed(metadata.distribution("unidiff"), tmp_path)
    assert wheel.name.startswith(f"unidiff-{metadata.version('unidiff')}-") and wheel.suffix == ".whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = zf.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    assert "unidiff/__init__.py" in names and "unidiff/__init__.py,sha256=" in record
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (target / "unidiff" / "__init__.py").is_file()
