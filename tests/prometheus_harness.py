"""A real Prometheus server (Debian's `prometheus` package) for the tests and the load report: it scrapes the
given targets every `interval_s`, keeps its data in a folder of the caller's, and answers PromQL over HTTP.

    with running_prometheus(tmp, {"127.0.0.1:9464": {"namespace": "vreyesam"}}) as prom:
        prom.wait_for_scrape_after(time.time())
        prom.query('sum(vreyesam_requests_total)')
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.server_harness import free_port, http_status

BINARY = "prometheus"


def available() -> bool:
    return shutil.which(BINARY) is not None


@dataclass
class Prometheus:
    base_url: str
    process: subprocess.Popen[bytes]
    interval_s: float

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as answer:  # loopback, our own server
            body = json.loads(answer.read())
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector (or a scalar as one sample without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step_s))["result"]

    def wait_for_scrape_after(self, moment: float, timeout_s: float = 60.0) -> None:
        """Until every target has been scraped at or after `moment` (a time.time())."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            targets = self.api("targets")["activeTargets"]
            if targets and all(_scraped_at(target) >= moment and target["health"] == "up" for target in targets):
                return
            time.sleep(self.interval_s / 4)
        raise AssertionError(f"no scrape after {moment} within {timeout_s} s: {self.api('targets')}")


def _scraped_at(target: dict[str, Any]) -> float:
    from datetime import datetime

    stamp = target.get("lastScrape", "")
    if not stamp or stamp.startswith("0001"):
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def duration(seconds: float) -> str:
    """A Prometheus duration ("500ms"): whole numbers with a unit only."""
    return f"{round(seconds * 1000)}ms"


def static_config(targets: Mapping[str, Mapping[str, str]], interval_s: float) -> dict[str, Any]:
    """One job, `vreyesam`, over static targets with the labels Kubernetes' pod discovery would give."""
    return {
        "global": {"scrape_interval": duration(interval_s), "evaluation_interval": duration(interval_s)},
        "scrape_configs": [
            {
                "job_name": "vreyesam",
                "static_configs": [
                    {"targets": [address], "labels": dict(labels)} for address, labels in targets.items()
                ],
            }
        ],
    }


@contextmanager
def running_prometheus(
    folder: Path,
    targets: Mapping[str, Mapping[str, str]] | None = None,
    interval_s: float = 0.5,
    config: Mapping[str, Any] | None = None,
) -> Iterator[Prometheus]:
    """Prometheus over `targets` (static, with their labels), or with a whole `config` of the caller's."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(json.dumps(config or static_config(targets or {}, interval_s)))  # JSON is YAML
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(  # Debian's prometheus, our own arguments
        [
            BINARY,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}", process, interval_s)
    try:
        deadline = time.monotonic() + 60
        while http_status(f"{prom.base_url}/-/ready") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield prom
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
