"""Images per second of a server against the number of clients, for several workers x threads layouts.

    python -m benchmarks.throughput --model DIR [--layouts 1x2,2x1] [--encoder-batches 1] [--clients 1,2,4]
                                    [--requests 12] [--device cpu|cuda] [--cuda-graphs] [--json OUT]

Each layout `WxT` is `vreyesam serve` with VREYESAM_WORKERS=W and VREYESAM_THREADS=T (intra-op threads per
worker; 0 = onnxruntime's default), once per encoder batch B (VREYESAM_ENCODER_BATCH=B, with B admission
slots per worker so that B images can share an encoder run); each client sends a 400x300 eye image, waits
for the answer, and sends the next (closed loop), `--requests` in all per client count. images/s = answers /
wall time, after warm-up requests. The layouts are run one after the other in one invocation, so their
figures compare; a machine's best layout is what `docs/performance.md` recommends per core count.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server_harness import ready_server
from vreyesam.runtime.media import render
from vreyesam.runtime.tools import synth


def _eye() -> bytes:
    _, image, _ = synth.generate(seed=11, n=1, width=400, height=300)[0]
    return render.encode_png(image)


def images_per_s(url: str, body: bytes, clients: int, requests: int) -> float:
    """Closed-loop clients sharing `requests` predictions; answers per second of wall time (all must be 200)."""
    remaining = [requests]
    lock = threading.Lock()
    failures: list[int] = []

    def client() -> None:
        with httpx.Client(timeout=600) as session:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                answer = session.post(url, content=body, headers={"content-type": "image/png"})
                if answer.status_code != 200:
                    failures.append(answer.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests were not answered 200: {sorted(set(failures))}")
    return requests / elapsed


def _warm(url: str, body: bytes, workers: int, timeout_s: float = 600.0) -> None:
    """Until `workers` clients at once got 200 twice each: every worker loaded its model and ran once (a
    worker still loading answers 503 while another already serves /readyz)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            images_per_s(url, body, workers, workers * 2)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise


def measure_layout(
    model: Path,
    workers: int,
    threads: int,
    encoder_batch: int,
    clients: list[int],
    requests: int,
    log: Path,
    device: str,
    cuda_graphs: bool = False,
) -> dict:
    env = {
        "VREYESAM_DEVICE": device,
        "VREYESAM_CUDA_GRAPHS": "1" if cuda_graphs else "0",
        "VREYESAM_WORKERS": str(workers),
        "VREYESAM_THREADS": str(threads),
        "VREYESAM_ENCODER_BATCH": str(encoder_batch),
        "VREYESAM_MAX_CONCURRENCY": str(encoder_batch),
        "VREYESAM_MAX_QUEUE": str(max(clients) * 2),
    }
    body = _eye()
    with ready_server(model, log, "--allow-random-weights", env=env, timeout_s=600) as server:
        url = f"{server.base_url}/predict"
        _warm(url, body, workers)
        return {f"clients_{count}": round(images_per_s(url, body, count, requests), 3) for count in clients}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--layouts", default="1x2,2x1", help="workers x threads, comma-separated")
    parser.add_argument("--encoder-batches", default="1", help="most images per encoder run, comma-separated")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--requests", type=int, default=12, help="predictions per client count")
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="also run each unbatched layout with VREYESAM_CUDA_GRAPHS=1"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clients = [int(item) for item in args.clients.split(",")]
    report: dict[str, Any] = {"cpus": os.cpu_count(), "device": args.device, "requests": args.requests, "layouts": {}}
    with tempfile.TemporaryDirectory(prefix="vreyesam-throughput-") as folder:
        for layout in args.layouts.split(","):
            workers, threads = (int(part) for part in layout.split("x"))
            runs = [(int(item), False) for item in args.encoder_batches.split(",")]
            runs += [(1, True)] if args.cuda_graphs else []
            for batch, graphs in runs:
                name = (layout if batch == 1 else f"{layout} batch {batch}") + (" cuda graphs" if graphs else "")
                log = Path(folder) / f"{layout}-{batch}-{int(graphs)}.log"
                figures = measure_layout(
                    args.model, workers, threads, batch, clients, args.requests, log, args.device, graphs
                )
                report["layouts"][name] = figures
                print(name, figures, flush=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
