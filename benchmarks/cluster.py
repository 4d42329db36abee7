"""The cluster paths against the one-machine ones, in one run: latency, memory, throughput, start-up, big bodies.

    .venv-ray/bin/python -m benchmarks.cluster --model DIR [--requests 10] [--images 12] [--json OUT]

(from the repository root, in an environment with the `ray` extra; servers start through tests/server_harness.py)

1. Online: `vreyesam serve` and `vreyesam serve --ray` (a private Ray cluster, one replica), the same
   sequential requests (a 400x300 synthetic eye, default parameters): p50 of each and their ratio (the Ray
   proxy's overhead); start-up to ready (/readyz 200 and the app deployed); resident memory of the plain
   server and of every process of the cluster path by role (replica, proxy, controller, the rest of Ray).
2. Big bodies: a 400 MB upload, with a declared length and chunked, to the cluster's proxy: its status,
   the time to it, and how much the peak memory of the proxy and the replica grew, with this project's
   proxy gate and, in a private cluster started here without it, with Ray's proxy alone.
3. Offline: `vreyesam predict` and `vreyesam predict --ray` (private cluster, as many actors as CPUs) over
   the same --images files: wall time including start-up, images/s, their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx

from tests.server_harness import ServerProcess, free_port, rss_of, start_server, vreyesam_env
from vreyesam.runtime.tools.synth import generate

MiB = 1024 * 1024
SETTINGS = {"VREYESAM_ALLOW_RANDOM_WEIGHTS": "1"}
ROLES = (("ray::ServeReplica", "replica"), ("ray::ProxyActor", "proxy"), ("ray::ServeController", "controller"))


def eye_png(width: int = 400, height: int = 300) -> bytes:
    ((_, image, _),) = generate(seed=5, n=1, width=width, height=height)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def session_processes(leader: int) -> dict[int, str]:
    """Every process of `leader`'s session (the cluster path starts Ray's processes in it) -> its command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == leader:  # fields after the name: state, ppid, pgrp, session
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def memory_by_role(leader: int, key: str = "VmRSS") -> dict[str, float]:
    """MB of resident memory per role among the session's processes."""
    totals: dict[str, float] = {}
    for pid, command in session_processes(leader).items():
        role = next(
            (name for marker, name in ROLES if command.startswith(marker)), "driver" if pid == leader else "ray"
        )
        totals[role] = totals.get(role, 0.0) + (rss_of(pid, key) or 0) / MiB
    return {role: round(value, 1) for role, value in sorted(totals.items())}


def p50_ms(url: str, body: bytes, requests: int) -> float:
    times = []
    with httpx.Client(timeout=300) as client:
        for index in range(requests + 1):
            started = time.perf_counter()
            answer = client.post(url + "/predict", content=body, headers={"content-type": "image/png"})
            answer.raise_for_status()
            if index:  # the first request warms caches and is not counted
                times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def ray_server(model: Path, workdir: Path, env: dict[str, str] | None = None) -> tuple[ServerProcess, float]:
    port = free_port()
    command = [sys.executable, "-m", "vreyesam", "serve", "--ray", "--model", str(model), "--port", str(port)]
    server = ServerProcess.start(
        command, f"http://127.0.0.1:{port}", workdir / f"ray-{port}.log", vreyesam_env(env or SETTINGS)
    )
    started = time.monotonic()
    server.wait_until("/readyz", 200, timeout_s=300)
    while "serving on Ray" not in server.log():
        time.sleep(0.1)
    return server, round(time.monotonic() - started, 1)


def big_body(size: int) -> Iterator[bytes]:
    """A PNG signature then zeros, streamed (the client holds 1 MiB at a time)."""
    yield b"\x89PNG\r\n\x1a\n"
    sent, chunk = 8, b"\0" * MiB
    while sent < size:
        piece = chunk[: min(MiB, size - sent)]
        sent += len(piece)
        yield piece


def oversized(server: ServerProcess, size: int, declared: bool) -> dict[str, Any]:
    """A `size`-byte upload, with a Content-Length or chunked: its status, the seconds to it, and how much the
    peak resident memory (VmHWM) of the proxy and of the replica grew."""
    before = memory_by_role(server.pid, "VmHWM")
    started = time.perf_counter()
    headers = {"content-type": "image/png", **({"content-length": str(size)} if declared else {})}
    try:
        answer = httpx.post(server.base_url + "/predict", content=big_body(size), headers=headers, timeout=600)
        status: int | str = answer.status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    seconds = round(time.perf_counter() - started, 2)
    time.sleep(5)  # what the proxy and the replica still read after the answer
    after = memory_by_role(server.pid, "VmHWM")
    growth = {role: round(after.get(role, 0.0) - before.get(role, 0.0), 1) for role in ("proxy", "replica")}
    return {"status": status, "seconds": seconds, "peak_growth_mb": growth, "proxy_rss_mb": after.get("proxy")}


def online(model: Path, workdir: Path, requests: int) -> dict[str, Any]:
    body = eye_png()
    plain = start_server(model, workdir / "plain.log", env=SETTINGS)
    try:
        plain_start = round(plain.wait_until("/readyz", 200, timeout_s=300), 1)
        plain_p50 = p50_ms(plain.base_url, body, requests)
        plain_mb = round((rss_of(plain.pid) or 0) / MiB, 1)
    finally:
        plain.stop()
    server, ray_start = ray_server(model, workdir)
    try:
        ray_p50 = p50_ms(server.base_url, body, requests)
        memory = memory_by_role(server.pid)
    finally:
        server.stop(timeout_s=120)
    return {
        "plain_p50_ms": plain_p50,
        "ray_p50_ms": ray_p50,
        "ray_over_plain_p50": round(ray_p50 / plain_p50, 3),
        "plain_start_s": plain_start,
        "ray_start_s": ray_start,
        "plain_rss_mb": plain_mb,
        "ray_rss_mb_by_role": memory,
    }


def big_bodies(model: Path, workdir: Path) -> dict[str, Any]:
    """Each case on a fresh private cluster, so that one upload's peak does not hide the next one's."""
    report: dict[str, Any] = {}
    for gate in ("with_gate", "without_gate"):
        for kind in ("declared", "chunked"):
            server = ray_server(model, workdir)[0] if gate == "with_gate" else ungated_server(model, workdir)
            try:
                report[f"{gate}_{kind}"] = oversized(server, 400 * MiB, declared=kind == "declared")
            finally:
                server.stop(timeout_s=120)
    return report


UNGATED = """
import os, sys, time
os.environ.pop("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", None)
import vreyesam.runtime.cluster
import ray
from ray import serve
from vreyesam.runtime.cluster.deployment import APP_NAME, application
from vreyesam.runtime.settings import load_settings
ray.init(address="local", include_dashboard=False, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
serve.run(application(load_settings()), name=APP_NAME, route_prefix="/")
print("serving on Ray", flush=True)
time.sleep(3600)
"""


def ungated_server(model: Path, workdir: Path) -> ServerProcess:
    """Ray's proxy without the gate (benchmark only: the commands always install it), same application."""
    port = free_port()
    env = vreyesam_env({**SETTINGS, "VREYESAM_MODEL_DIR": str(model)})
    command = [sys.executable, "-c", UNGATED, str(port)]
    server = ServerProcess.start(command, f"http://127.0.0.1:{port}", workdir / f"ungated-{port}.log", env)
    server.wait_until("/readyz", 200, timeout_s=300)
    return server


def offline(model: Path, workdir: Path, count: int) -> dict[str, Any]:
    folder = workdir / "images"
    folder.mkdir()
    for index, (_, image, _) in enumerate(generate(seed=9, n=count, width=400, height=300)):
        cv2.imwrite(str(folder / f"eye{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    result = {}
    for name, extra in (("local", []), ("ray", ["--ray"])):
        started = time.monotonic()
        command = [sys.executable, "-m", "vreyesam", "predict", str(folder), "--out", str(workdir / name)]
        done = subprocess.run(  # noqa: S603 (our own command line, built here)
            [*command, "--model", str(model), *extra],
            env=vreyesam_env(SETTINGS),
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-2000:]
        result[name] = {"seconds": round(seconds, 1), "images_per_s": round(count / seconds, 3)}
    result["ray_over_local_images_per_s"] = round(result["ray"]["images_per_s"] / result["local"]["images_per_s"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--parts", default="online,big,offline", help="which of online,big,offline to run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vreyesam-cluster-bench-") as temp:
        workdir = Path(temp)
        if "online" in parts:
            report["online"] = online(args.model, workdir, args.requests)
        if "big" in parts:
            report["oversized_400mb"] = big_bodies(args.model, workdir)
        if "offline" in parts:
            report["offline"] = offline(args.model, workdir, args.images)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
