"""The benchmark and the load test run end to end (their figures go in the README, not in asserts)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_bench_quick_mode_reports_every_stage(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "faceaging", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    (photo,) = report["photos"].values()
    assert set(photo["stages_ms"]) == {
        "load",
        "detect",
        "align",
        "encode",
        "optimize",
        "region",
        "render",
        "paste",
        "gif",
    }
    assert all(v > 0 for k, v in photo["stages_ms"].items() if k not in ("load", "align"))
    assert photo["optimisation_ratio"] > 0 and photo["slider_ms"] > 0
    cold = report["cold_start"]
    assert cold["first_request_s"] >= cold["server_ready_s"] > 0 and cold["served_age_all_s"] > 0
    assert report["peak_rss_mb"] > 0 and report["environment"]["threads"] >= 1
    assert "end to end" in proc.stdout


def test_concurrent_clients_all_succeed(tmp_path):
    """A short run of the load test (the full 4 x 50 is `python -m faceaging loadtest`)."""
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, "-m", "faceaging", "loadtest", "--clients", "4", "--requests", "4", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    report = json.loads(out.read_text())
    assert proc.returncode == 0 and report["failures"] == 0, report["failure_examples"]
    assert report["completed"] == 16
    assert report["latency_p95_s"] >= report["latency_p50_s"] > 0
