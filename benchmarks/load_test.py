"""Load test: a real HTTP client against a real `vreyesam serve` process, at about twice its capacity.

    python -m benchmarks.load_test --model DIR [--requests 1000] [--factor 2] [--json OUT]
    python -m benchmarks.load_test --url http://HOST:PORT [--pid PID] ...      # a server already running
    python -m benchmarks.load_test --model DIR --report docs/load-run.png ...  # with Prometheus, drawn

(from the repository root: the server is started by tests/server_harness.py, as in the tests)

Steps:
1. Start the server (unless --url) with small admission limits: VREYESAM_MAX_CONCURRENCY=1,
   VREYESAM_MAX_QUEUE=2, VREYESAM_QUEUE_TIMEOUT_S=2, so excess requests are turned away (503) at once.
2. Warm up, then measure capacity: sequential predictions/s of a tiny synthetic image with --points.
3. Drive an open-loop load (requests sent on schedule, whatever the answers) at --factor x capacity (or
   --rate) for --requests requests, with /healthz probed every --health-interval seconds throughout.
4. Report: requests sent, status counts, 5xx other than 503 and transport errors (must both be 0),
   p50/p99 latency of accepted requests (and of the 503s), accepted requests/s held, healthz p50/p99 under
   load, and the server's RSS (/proc/PID/status VmRSS) when ready, after warm-up, at its maximum under load
   and after the load, plus its kernel peak (VmHWM).
5. With --report: a real Prometheus scraped the server's metrics port every second throughout; the Grafana
   dashboard's panels are drawn from its range queries over the run into one PNG (benchmarks/report.py).
Exit status 1 if a requirement fails: a status other than 200/503, a transport error, a 503 without
Retry-After, a /healthz answer other than 200, or a /healthz p99 over --health-p99-limit-ms.
A prediction costs seconds of CPU here, so capacity is well under 1 request/s and 1,000 requests at twice
capacity take about 1000 / (2 x capacity) seconds; --rate sets the offered rate directly (a short run).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.report import draw_dashboard
from tests.prometheus_harness import running_prometheus
from tests.server_harness import ServerProcess, free_port, rss_of, start_server, wait_for_status

MiB = 1024 * 1024
SERVER_ENV = {"VREYESAM_MAX_CONCURRENCY": "1", "VREYESAM_MAX_QUEUE": "2", "VREYESAM_QUEUE_TIMEOUT_S": "2"}


def tiny_png(width: int, height: int) -> bytes:
    import cv2

    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256], axis=-1)
    disc = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2
    image[disc] = (40, 40, 40)
    ok, encoded = cv2.imencode(".png", image.astype(np.uint8))
    if not ok:
        raise RuntimeError("cannot encode the test image")
    return encoded.tobytes()


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# --------------------------------------------------------------------------------------- the server


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def rss_bytes(pid: int | None, key: str = "VmRSS") -> int | None:
    return rss_of(pid, key) if pid is not None else None


class RssSampler(threading.Thread):
    """VmRSS of the server every `interval_s`; `mark()` starts a new phase and returns the last one's max."""

    def __init__(self, pid: int | None, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval_s = pid, interval_s
        self.phase_max: int | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            value = rss_bytes(self.pid)
            if value is not None:
                with self.lock:
                    self.phase_max = max(self.phase_max or 0, value)
            self.stopped.wait(self.interval_s)

    def mark(self) -> int | None:
        value = rss_bytes(self.pid)
        with self.lock:
            result = max(filter(None, [self.phase_max, value]), default=None)
            self.phase_max = None
        return result


# ------------------------------------------------------------------------------------------ the load


@dataclass
class Outcome:
    sent_at: float
    latency_s: float
    status: int | None  # None: transport error
    retry_after: str | None = None
    error: str | None = None


@dataclass
class HealthProbe:
    at: float
    latency_s: float
    status: int | None
    error: str | None = None


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    health: list[HealthProbe] = field(default_factory=list)
    duration_s: float = 0.0


_local = threading.local()


def _client(timeout_s: float) -> httpx.Client:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=timeout_s)
    return client


def predict_once(url: str, body: bytes, points: int, timeout_s: float = 120.0) -> Outcome:
    started = time.perf_counter()
    try:
        response = _client(timeout_s).post(
            url + "/predict", params={"points": points, "seed": 0}, content=body, headers={"content-type": "image/png"}
        )
        return Outcome(
            started, time.perf_counter() - started, response.status_code, response.headers.get("retry-after")
        )
    except httpx.HTTPError as exc:
        return Outcome(started, time.perf_counter() - started, None, error=type(exc).__name__)


def measure_capacity(url: str, body: bytes, points: int, warmup: int, requests: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        outcome = predict_once(url, body, points)
        if outcome.status != 200:
            raise RuntimeError(f"warm-up prediction failed: {outcome}")
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        outcome = predict_once(url, body, points)
        if outcome.status != 200:
            raise RuntimeError(f"capacity prediction failed: {outcome}")
        latencies.append(outcome.latency_s)
    return requests / (time.perf_counter() - started), latencies


def _probe_health(url: str, interval_s: float, stop: threading.Event, out: list[HealthProbe]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status: int | None = client.get(url + "/healthz").status_code
                error = None
            except httpx.HTTPError as exc:
                status, error = None, type(exc).__name__
            out.append(HealthProbe(started, time.perf_counter() - started, status, error))
            stop.wait(interval_s)


def drive_load(url: str, body: bytes, points: int, rate: float, requests: int, health_interval_s: float) -> LoadResult:
    """Open loop: request i is sent at t0 + i / rate, whether or not earlier ones were answered."""
    result = LoadResult()
    stop = threading.Event()
    prober = threading.Thread(
        target=_probe_health, args=(url, health_interval_s, stop, result.health), daemon=True, name="health"
    )
    prober.start()
    futures: list[Future[Outcome]] = []
    # In flight at once: 1 running + 2 queued (at most 2 s) + 503s answered in milliseconds; 64 is ample.
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="load") as pool:
        t0 = time.perf_counter()
        for i in range(requests):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(predict_once, url, body, points))
        result.outcomes = [future.result() for future in futures]
        result.duration_s = time.perf_counter() - t0
    stop.set()
    prober.join(timeout=15)
    return result


# ---------------------------------------------------------------------------------------- reporting


def summarize(
    args: argparse.Namespace,
    capacity_rps: float,
    capacity_latencies: list[float],
    rate: float,
    load: LoadResult,
    rss: dict[str, int | None],
) -> dict[str, Any]:
    statuses = Counter(o.status for o in load.outcomes if o.status is not None)
    accepted = [o.latency_s * 1000 for o in load.outcomes if o.status == 200]
    refused = [o.latency_s * 1000 for o in load.outcomes if o.status == 503]
    errors = Counter(o.error for o in load.outcomes if o.status is None)
    health_ok = [h.latency_s * 1000 for h in load.health if h.status == 200]
    health_statuses = Counter(str(h.status if h.status is not None else h.error) for h in load.health)
    mb = {name: (round(value / MiB, 1) if value is not None else None) for name, value in rss.items()}
    growth_after = rss["after"] - rss["warm"] if rss["after"] and rss["warm"] else None
    growth_peak = rss["load_max"] - rss["warm_max"] if rss["load_max"] and rss["warm_max"] else None
    summary: dict[str, Any] = {
        "points": args.points,
        "image": f"{args.width}x{args.height}",
        "capacity_rps": round(capacity_rps, 4),
        "capacity_latency_ms_p50": percentile([v * 1000 for v in capacity_latencies], 50),
        "offered_rps": round(rate, 4),
        "offered_factor": round(rate / capacity_rps, 2) if capacity_rps else None,
        "requests_sent": len(load.outcomes),
        "load_duration_s": round(load.duration_s, 2),
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "other_5xx": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
        "unexpected_statuses": sum(v for k, v in statuses.items() if k not in (200, 503)),
        "transport_errors": dict(errors),
        "refused_without_retry_after": sum(1 for o in load.outcomes if o.status == 503 and not o.retry_after),
        "accepted_latency_ms_p50": percentile(accepted, 50),
        "accepted_latency_ms_p99": percentile(accepted, 99),
        "refused_latency_ms_p50": percentile(refused, 50),
        "refused_latency_ms_p99": percentile(refused, 99),
        "accepted_rps": round(len(accepted) / load.duration_s, 4) if load.duration_s else None,
        "health_probes": len(load.health),
        "health_statuses": dict(health_statuses),
        "health_latency_ms_p50": percentile(health_ok, 50),
        "health_latency_ms_p99": percentile(health_ok, 99),
        "health_latency_ms_max": max(health_ok) if health_ok else None,
        "rss_mb": mb,
        "rss_growth_after_load_mb": round(growth_after / MiB, 1) if growth_after is not None else None,
        "rss_peak_growth_mb": round(growth_peak / MiB, 1) if growth_peak is not None else None,
    }
    failures = []
    if summary["unexpected_statuses"]:
        failures.append(f"statuses other than 200/503: {summary['status_counts']}")
    if errors:
        failures.append(f"transport errors: {dict(errors)}")
    if summary["refused_without_retry_after"]:
        failures.append("503 without Retry-After")
    if not load.health or set(health_statuses) != {"200"}:
        failures.append(f"/healthz answers: {dict(health_statuses)}")
    p99 = summary["health_latency_ms_p99"]
    if p99 is not None and p99 > args.health_p99_limit_ms:
        failures.append(f"/healthz p99 {p99:.0f} ms over {args.health_p99_limit_ms:.0f} ms")
    if not accepted:
        failures.append("no request was accepted under load")
    summary["failures"] = failures
    return summary


def print_table(summary: dict[str, Any]) -> None:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
        if isinstance(value, dict):
            return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) or "-"
        return "-" if value is None else str(value)

    rows = [
        ("workload", f"{summary['image']} PNG, points={summary['points']}"),
        (
            "capacity (sequential)",
            f"{fmt(summary['capacity_rps'])} req/s (p50 {fmt(summary['capacity_latency_ms_p50'])} ms)",
        ),
        ("offered", f"{fmt(summary['offered_rps'])} req/s = {fmt(summary['offered_factor'])} x capacity"),
        ("requests sent", f"{summary['requests_sent']} in {fmt(summary['load_duration_s'])} s"),
        ("status counts", fmt(summary["status_counts"])),
        ("5xx other than 503", str(summary["other_5xx"])),
        ("transport errors", fmt(summary["transport_errors"])),
        ("503 without Retry-After", str(summary["refused_without_retry_after"])),
        (
            "accepted latency p50 / p99",
            f"{fmt(summary['accepted_latency_ms_p50'])} / {fmt(summary['accepted_latency_ms_p99'])} ms",
        ),
        (
            "refused (503) latency p50 / p99",
            f"{fmt(summary['refused_latency_ms_p50'])} / {fmt(summary['refused_latency_ms_p99'])} ms",
        ),
        ("accepted requests/s held", fmt(summary["accepted_rps"])),
        ("healthz probes", f"{summary['health_probes']} ({fmt(summary['health_statuses'])})"),
        (
            "healthz p50 / p99 / max under load",
            f"{fmt(summary['health_latency_ms_p50'])} / {fmt(summary['health_latency_ms_p99'])}"
            f" / {fmt(summary['health_latency_ms_max'])} ms",
        ),
        ("server RSS MB", fmt(summary["rss_mb"])),
        (
            "RSS growth after load / peak growth",
            f"{fmt(summary['rss_growth_after_load_mb'])} / {fmt(summary['rss_peak_growth_mb'])} MB",
        ),
        ("result", "PASS" if not summary["failures"] else "FAIL: " + "; ".join(summary["failures"])),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--model", type=Path, help="model directory: start `vreyesam serve` on it (random weights allowed)"
    )
    where.add_argument("--url", help="a server already running, e.g. http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for RSS (same machine)")
    parser.add_argument("--requests", type=int, default=1000, help="requests under load (default 1000)")
    parser.add_argument("--factor", type=float, default=2.0, help="offered rate as a multiple of capacity (default 2)")
    parser.add_argument("--rate", type=float, help="offered requests/s (overrides --factor)")
    parser.add_argument("--points", type=int, default=1, help="prompts per prediction (default 1)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=1, help="predictions before measuring (default 1)")
    parser.add_argument("--capacity-requests", type=int, default=5, help="sequential predictions timed (default 5)")
    parser.add_argument("--health-interval", type=float, default=0.25, help="seconds between /healthz probes")
    parser.add_argument("--health-p99-limit-ms", type=float, default=1000.0)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the started server (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="write the summary here as JSON")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="PNG",
        help="with --model: a real Prometheus scrapes the server during the run, and the dashboard's panels are "
        "drawn from its range queries into this PNG (needs Debian's prometheus and matplotlib)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM, and SIGINT even when started in the background (where the shell ignores it), end the run
    # through the `finally` below, which stops the server it started.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    body = tiny_png(args.width, args.height)
    workdir = Path(tempfile.mkdtemp(prefix="vreyesam-load-"))
    server: ServerProcess | None = None
    metrics_port = free_port() if args.report else 0
    if args.model is not None:
        extra = {
            **SERVER_ENV,
            "VREYESAM_METRICS_PORT": str(metrics_port),
            **dict(item.split("=", 1) for item in args.server_env),
        }
        server = start_server(args.model, workdir / "server.log", "--allow-random-weights", env=extra)
        url, pid = server.base_url, server.pid
    elif args.report:
        raise SystemExit("--report needs --model: the run starts the server it scrapes")
    else:
        url, pid = args.url.rstrip("/"), args.pid
    scraping = ExitStack()
    sampler = RssSampler(pid)
    sampler.start()
    exit_code: int | None = None
    report: Path | None = None
    try:
        prometheus = None
        if args.report:
            targets = {f"127.0.0.1:{metrics_port}": {"namespace": "vreyesam", "app_kubernetes_io_component": "server"}}
            prometheus = scraping.enter_context(running_prometheus(workdir / "prometheus", targets, interval_s=1.0))
        if server is not None:
            server.wait_until("/readyz", 200, args.ready_timeout)
        else:
            wait_for_status(url + "/readyz", 200, args.ready_timeout)
        rss: dict[str, int | None] = {"ready": rss_bytes(pid)}
        sampler.mark()
        capacity, capacity_latencies = measure_capacity(url, body, args.points, args.warmup, args.capacity_requests)
        rss["warm_max"] = sampler.mark()
        time.sleep(0.5)
        rss["warm"] = rss_bytes(pid)
        rate = args.rate if args.rate else args.factor * capacity
        print(
            f"capacity {capacity:.3f} req/s; driving {args.requests} requests at {rate:.3f} req/s "
            f"(~{args.requests / rate:.0f} s)",
            flush=True,
        )
        load_started = time.time()
        load = drive_load(url, body, args.points, rate, args.requests, args.health_interval)
        rss["load_max"] = sampler.mark()
        time.sleep(2.5)  # the queue timeout is 2 s: let the last accepted request finish
        rss["after"] = rss_bytes(pid)
        rss["peak_vmhwm"] = rss_bytes(pid, "VmHWM")
        if prometheus is not None:
            prometheus.wait_for_scrape_after(time.time())
            title = f"load run: {args.requests} requests at {rate:.2f}/s (capacity {capacity:.2f}/s)"
            report = draw_dashboard(prometheus, load_started - 5, time.time(), args.report, title=title)
    finally:
        sampler.stopped.set()
        scraping.close()
        exit_code = server.stop() if server is not None else None
    summary = summarize(args, capacity, capacity_latencies, rate, load, rss)
    summary["server_exit_code"] = exit_code
    if exit_code not in (None, 0):
        summary["failures"].append(f"server exited with {exit_code}")
    print_table(summary)
    if server is not None:
        print(f"server log: {server.log_path}")
    if report is not None:
        print(f"dashboard panels over the run: {report}")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the server it started was stopped", file=sys.stderr)
        sys.exit(130)
