"""A short run of benchmarks.load_test against a real server process: overload is refused, never a failure.

200 requests at a fixed 10 requests/s (on this 2-core CPU a prediction takes seconds, so that is well over
twice capacity; the full benchmark, `python -m benchmarks.load_test --model DIR`, drives 1,000 requests at
2x the measured capacity and takes about half an hour here). The server runs with one prediction at a
time, two waiting, a 2 s queue timeout: most requests are answered 503 at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
RSS_GROWTH_LIMIT_MB = 150


def test_short_load_run(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load_test",
            "--model",
            str(model_dir),
            "--requests",
            "200",
            "--rate",
            "10",
            "--warmup",
            "1",
            "--capacity-requests",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=120,  # the run takes ~30 s here (server start ~5 s, 2 predictions, 20 s of load)
        check=False,
    )
    assert out.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(out.read_text())
    report = result.stdout[-3000:]
    assert summary["requests_sent"] == 200, report
    assert set(summary["status_counts"]) <= {"200", "503"}, report
    assert summary["status_counts"].get("200", 0) >= 1, report
    assert summary["other_5xx"] == 0, report
    assert summary["transport_errors"] == {}, report
    assert summary["refused_without_retry_after"] == 0, report
    assert summary["health_probes"] > 0 and summary["health_statuses"] == {"200": summary["health_probes"]}, report
    assert summary["health_latency_ms_p99"] < 1000, report
    assert summary["rss_growth_after_load_mb"] < RSS_GROWTH_LIMIT_MB, report
    assert summary["rss_peak_growth_mb"] < RSS_GROWTH_LIMIT_MB, report
    assert summary["server_exit_code"] == 0, report
    assert summary["failures"] == [], report
    assert result.returncode == 0, report + result.stderr[-2000:]
