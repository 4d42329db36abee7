"""`vreyesam serve --ray` on a real two-node Ray cluster: two replicas behind Ray Serve's proxy.

Started once for the module (one replica per node), as a user would: the command joins the cluster with
`--ray-address` and the test token. The same requests go to a plain `vreyesam serve` with the same
settings; the reliability suite's bad inputs go through the proxy; then overload, then a replica killed.
Through Ray's proxy every answer carries `server: uvicorn` (Ray's proxy does not let it be turned off; see
the README), so the clean-error checks here leave that one header out.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

pytest.importorskip("ray")

from tests import prometheus_harness
from tests.reliability import corpus
from tests.reliability.http_checks import assert_clean_error
from tests.reliability.test_bad_inputs import MULTIPART_CASES, RAW_CASES
from tests.runtime.cluster.ray_cluster import OBJECT_STORE_BYTES, TwoNodes, two_node_cluster
from tests.server_harness import SHARED_SERVER_LIMITS, ServerProcess, free_port, ready_server, vreyesam_env
from vreyesam.runtime.cluster.connect import CALLBACK_VARIABLE
from vreyesam.runtime.telemetry.metrics import route_of

pytestmark = pytest.mark.ray

# The same settings for the cluster's replicas and the plain server they are compared with; a short queue
# so that overload is cheap to reach.
SETTINGS = {
    **SHARED_SERVER_LIMITS,
    "VREYESAM_DEVICE": "cpu",
    "VREYESAM_PRECISION": "fp32",
    "VREYESAM_THREADS": "1",
    "VREYESAM_MAX_CONCURRENCY": "1",
    "VREYESAM_MAX_QUEUE": "2",
}
MAX_BODY = int(SHARED_SERVER_LIMITS["VREYESAM_MAX_BODY_BYTES"])
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with two_node_cluster(
        tmp_path_factory.mktemp("ray"), head_cpus=1, worker_cpus=1, max_body_bytes=MAX_BODY
    ) as cluster:
        yield cluster


def ready_replicas(nodes: TwoNodes) -> set[int]:
    """Pids of the replica processes that loaded and self-tested their model (from their own stderr)."""
    return {pid for pid, text in nodes.worker_logs().items() if '"message": "model ready' in text}


@pytest.fixture(scope="module")
def cluster_server(
    nodes: TwoNodes, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    port = free_port()
    command = [sys.executable, "-m", "vreyesam", "serve", "--ray", "--ray-address", nodes.address]
    command += ["--model", str(model_dir), "--port", str(port), "--replicas", "2", "--allow-random-weights"]
    env = {name: value for name, value in nodes.env.items() if name != "RAY_ADDRESS"}
    log = tmp_path_factory.mktemp("serve-ray") / "server.log"
    server = ServerProcess.start(command, f"http://127.0.0.1:{port}", log, vreyesam_env({**env, **SETTINGS}))
    try:
        started = time.monotonic()
        server.wait_until("/readyz", 200, timeout_s=300)
        while len(ready_replicas(nodes)) < 2 or "serving on Ray" not in server.log():
            assert time.monotonic() - started < 300, server.log()[-3000:]
            time.sleep(0.2)
        yield server
    finally:
        code = server.stop(timeout_s=90)
    assert code == 0, server.log()[-3000:]


def without_server_header(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() != "server"}


def test_two_replicas_answer_predict_like_the_plain_server(
    nodes: TwoNodes, cluster_server: ServerProcess, model_dir: Path, tmp_path: Path
) -> None:
    image = corpus.png(160, 120)
    params = {"points": 3, "seed": 7, "outputs": "mask,probability,uncertainty"}
    headers = {"content-type": "image/png"}
    with ready_server(model_dir, tmp_path / "plain.log", "--allow-random-weights", env=SETTINGS) as plain:
        expected = httpx.post(plain.base_url + "/predict", params=params, content=image, headers=headers, timeout=120)
    assert len(ready_replicas(nodes)) == 2  # both replicas loaded and self-tested their model
    for _ in range(2):  # the proxy may route each to either replica: both must answer the same
        got = httpx.post(
            cluster_server.base_url + "/predict", params=params, content=image, headers=headers, timeout=120
        )
        assert got.status_code == expected.status_code == 200, got.text[:300]
        answer, reference = got.json(), expected.json()
        assert set(answer) == set(reference) and set(answer["timings_ms"]) == set(reference["timings_ms"])
        for field in ("image", "model", "parameters", "statistics", "outputs"):
            assert answer[field] == reference[field], field  # the mask, as PNG and RLE, and every other output
        assert base64.b64decode(answer["outputs"]["mask"]["png_base64"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_replicas_metrics_reach_prometheus_as_the_plain_servers_do(
    nodes: TwoNodes, cluster_server: ServerProcess, tmp_path: Path
) -> None:
    """Through Ray's metrics export on each node and deploy/prometheus's Ray scrape job (its metric
    relabelling, on the nodes' export ports instead of Kubernetes' pods), a real Prometheus sees the replicas'
    figures under the plain server's names."""
    if not prometheus_harness.available():
        pytest.skip("Debian's prometheus is not installed")
    image = corpus.png(96, 72)
    for _ in range(2):
        answer = httpx.post(
            cluster_server.base_url + "/predict", params={"points": 2}, content=image,
            headers={"content-type": "image/png"}, timeout=120,
        )  # fmt: skip
        assert answer.status_code == 200
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "scrape-config.yaml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "vreyesam-ray")
    targets = [f"127.0.0.1:{port}" for port in nodes.cluster.metrics_ports]
    scrape = {
        "job_name": job["job_name"],
        "static_configs": [{"targets": targets, "labels": {"namespace": "vreyesam"}}],
        "metric_relabel_configs": job["metric_relabel_configs"],
    }
    with prometheus_harness.running_prometheus(
        tmp_path / "prometheus", config={"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape]}
    ) as prom:
        # Ray reports each process's metrics to its node every few seconds, each replica on its own clock: wait
        # until both requests and both replicas' readiness have arrived.
        answered, ready = 'sum(vreyesam_requests_total{route="predict",outcome="ok"})', "sum(vreyesam_model_ready)"
        deadline = time.monotonic() + 120
        while (prom.value(answered) or 0) < 2 or (prom.value(ready) or 0) < 2:
            names = sorted({row["metric"]["__name__"] for row in prom.query('{__name__=~"vreyesam_.+"}')})
            assert time.monotonic() < deadline, (prom.value(answered), prom.value(ready), names)
            time.sleep(1)
        assert prom.value(ready) == 2  # both replicas, and no more
        assert prom.value('sum(vreyesam_stage_duration_seconds_count{stage="encoder"})') >= 2
        assert not prom.query('{__name__=~"ray_vreyesam_.+"}')  # renamed, none left under Ray's prefix


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [pytest.param(build, ctype, status, code, id=name) for name, build, ctype, status, code in RAW_CASES],
)
def test_bad_raw_uploads_get_the_same_answers_through_the_proxy(
    cluster_server: ServerProcess, body, content_type: str, status: int, code: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(
        cluster_server.base_url + "/predict", params={"points": 1}, content=body(), headers=headers, timeout=120
    )
    if code is None:
        assert response.status_code == 200, response.text[:300]
        return
    assert_clean_error(response.status_code, without_server_header(response.headers), response.content, status, code)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [pytest.param(build, ctype, status, code, id=name) for name, build, ctype, status, code in MULTIPART_CASES],
)
def test_bad_multipart_uploads_get_the_same_answers_through_the_proxy(
    cluster_server: ServerProcess, body, content_type: str, status: int, code: str
) -> None:
    response = httpx.post(
        cluster_server.base_url + "/predict", content=body(), headers={"content-type": content_type}, timeout=120
    )
    assert_clean_error(response.status_code, without_server_header(response.headers), response.content, status, code)


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"\x89PNG" + b"x" * (min(size, total - start) - 4)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_cap_is_refused_by_the_proxy(
    nodes: TwoNodes, cluster_server: ServerProcess, declared: bool
) -> None:
    size = 3 * MAX_BODY
    content = b"\x89PNG" + b"x" * (size - 4) if declared else _chunks(size)
    replicas = {pid for pid in ready_replicas(nodes) if Path(f"/proc/{pid}").exists()}
    seen = {pid: len(text) for pid, text in nodes.worker_logs().items() if pid in replicas}
    assert len(seen) == 2, seen
    response = httpx.post(
        cluster_server.base_url + "/predict", content=content, headers={"content-type": "image/png"}, timeout=120
    )
    headers = without_server_header(response.headers)
    assert_clean_error(response.status_code, headers, response.content, 413, "body_too_large")
    # Refused in the proxy: no replica answered it. Each replica logs every request it answers on its own
    # stderr, after the answer: once each has logged a /healthz sent after the 413 came back, its log holds
    # anything it did with the oversized body. So /healthz until both replicas have answered one, then look.
    healthz = f'"route": "{route_of("/healthz")}"'  # as the access log names the route
    deadline = time.monotonic() + 120
    while True:
        fresh = {pid: text[seen[pid] :] for pid, text in nodes.worker_logs().items() if pid in seen}
        if all(healthz in text for text in fresh.values()):
            break
        assert time.monotonic() < deadline, f"not both replicas answered a /healthz: {fresh}"
        assert httpx.get(cluster_server.base_url + "/healthz", timeout=30).status_code == 200
    for pid, text in fresh.items():
        assert '"status": 413' not in text, (pid, text[-3000:])


def post_image(server: ServerProcess, image: bytes, points: int) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict",
        params={"points": points},
        content=image,
        headers={"content-type": "image/png"},
        timeout=180,
    )


def test_a_full_cluster_answers_only_200_or_503_with_retry_after(cluster_server: ServerProcess) -> None:
    """16 at once, where 2 run and 2 wait: the rest are turned away at once. Rounds until both answers were
    seen (a round where the replicas kept pace with the arrivals proves nothing either way)."""
    image = corpus.png(64, 48)
    answers: list[httpx.Response] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        for _ in range(3):
            answers += pool.map(lambda _: post_image(cluster_server, image, 1), range(16))
            statuses = {response.status_code for response in answers}
            assert statuses <= {200, 503}, sorted(statuses)
            if statuses == {200, 503}:
                break
    assert statuses == {200, 503}, "no round of 16 filled the cluster"
    for response in answers:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
            headers = without_server_header(response.headers)
            assert_clean_error(503, headers, response.content, 503, "overloaded")


def test_killing_a_replica_loses_no_accepted_request_silently(nodes: TwoNodes, cluster_server: ServerProcess) -> None:
    image = corpus.png(320, 240)
    before = sorted(pid for pid in ready_replicas(nodes) if Path(f"/proc/{pid}").exists())

    def cpu_seconds(pid: int) -> float:  # the process's user + system time, from /proc/PID/stat
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    victim = before[-1]
    idle = cpu_seconds(victim)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        pending = [pool.submit(post_image, cluster_server, image, 30) for _ in range(4)]
        # Two run (one per replica), two wait in the proxy. Killed once it is inside a prediction: a second of
        # CPU time (an idle replica takes a few milliseconds a second; a 30-prompt prediction, seconds).
        deadline = time.monotonic() + 60
        while cpu_seconds(victim) - idle < 1.0:
            assert time.monotonic() < deadline, "the replica to kill never started a prediction"
            time.sleep(0.05)  # a poll interval
        os.kill(victim, signal.SIGKILL)  # a replica process of the cluster this module started
        answers = [future.result() for future in pending]  # no transport error: every request is answered
    for response in answers:
        if response.status_code == 200:
            assert response.json()["image"] == {"width": 320, "height": 240}
        else:  # a clear error the client may retry, in the API's shape: the replica died under the request
            # (`unavailable`), or, with one replica left, the queue in front of it was full (`overloaded`).
            assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
            code = response.json()["error"]["code"]
            assert code in {"unavailable", "overloaded"}, response.text
            assert_clean_error(503, without_server_header(response.headers), response.content, 503, code)
    assert any(response.status_code == 200 for response in answers)
    # The kill came under a request (not between two): that request was answered `unavailable`.
    codes = [response.json()["error"]["code"] for response in answers if response.status_code == 503]
    assert "unavailable" in codes, codes
    # Serve replaces the replica: a new one loads its model and the cluster serves two again.
    deadline = time.monotonic() + 180
    while len({pid for pid in ready_replicas(nodes) if Path(f"/proc/{pid}").exists()} - {victim}) < 2:
        assert time.monotonic() < deadline, cluster_server.log()[-3000:]
        time.sleep(0.5)
    again = httpx.post(
        cluster_server.base_url + "/predict",
        params={"points": 1},
        content=image,
        headers={"content-type": "image/png"},
        timeout=120,
    )
    assert again.status_code == 200


def test_a_cluster_with_a_node_whose_proxy_would_buffer_any_body_is_refused(
    nodes: TwoNodes, model_dir: Path, tmp_path: Path
) -> None:
    saved = os.environ.pop(CALLBACK_VARIABLE)
    try:  # a node started without the proxy gate's variable, as an operator might forget to
        bare = nodes.cluster.add_node(num_cpus=0, object_store_memory=OBJECT_STORE_BYTES)
    finally:
        os.environ[CALLBACK_VARIABLE] = saved
    try:
        nodes.cluster.wait_for_nodes()
        command = [sys.executable, "-m", "vreyesam", "serve", "--ray", "--ray-address", nodes.address]
        command += ["--model", str(model_dir), "--port", str(free_port()), "--allow-random-weights"]
        env = {name: value for name, value in nodes.env.items() if name != "RAY_ADDRESS"}
        result = subprocess.run(
            command, env=vreyesam_env(env), capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        nodes.cluster.remove_node(bare)
    assert result.returncode == 1, result.stderr[-2000:]
    refusal = [line for line in result.stderr.splitlines() if line.startswith("vreyesam serve --ray: error:")]
    assert len(refusal) == 1 and f"was started without {CALLBACK_VARIABLE}" in refusal[0], result.stderr[-2000:]
