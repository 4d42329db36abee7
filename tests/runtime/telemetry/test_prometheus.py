"""The metrics as an operator reads them: a real Prometheus scrapes a real `vreyesam serve`.

After a known sequence of good, refused and bad requests (and a burst that fills the one slot and the one
queue place), PromQL over the scraped series gives the counts the clients saw; the per-stage histograms are filled;
the KEDA trigger's query (read from deploy/kubernetes/vreyesam.yaml) saw the burst's queue depth; and every
query of the Grafana dashboard parses and returns data. The metrics port is not the API's, needs no API key,
and adds up several workers. Needs Debian's `prometheus` (the Makefile installs it).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import prometheus_harness
from tests.prometheus_harness import Prometheus, running_prometheus
from tests.server_harness import ServerProcess, free_port, ready_server, smoke_png

pytestmark = pytest.mark.skipif(not prometheus_harness.available(), reason="Debian's prometheus is not installed")

ROOT = Path(__file__).resolve().parents[3]
API_KEY = "test-key-0123456789abcdef"
LABELS = {"namespace": "vreyesam", "app_kubernetes_io_component": "server"}  # as the scrape job would give


def keda_query() -> str:
    manifest = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "vreyesam.yaml").read_text())
    scaled = next(doc for doc in manifest if doc and doc["kind"] == "ScaledObject")
    return str(scaled["spec"]["triggers"][0]["metadata"]["query"])


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "vreyesam.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    # Grafana's variables, as the dashboard's defaults and a Grafana would fill them in.
    return [query.replace("$namespace", "vreyesam").replace("$__rate_interval", "1m") for query in queries]


@pytest.fixture(scope="module")
def metered(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    folder = tmp_path_factory.mktemp("metered")
    keys = folder / "keys"
    keys.write_text(API_KEY + "\n")
    port = free_port()
    env = {
        "VREYESAM_METRICS_PORT": str(port),
        "VREYESAM_MAX_CONCURRENCY": "1",
        "VREYESAM_MAX_QUEUE": "1",
        "VREYESAM_API_KEYS_FILE": str(keys),
    }
    with ready_server(model_dir, folder / "server.log", "--allow-random-weights", env=env) as server:
        yield server, port


def _predict(server: ServerProcess, body: bytes, key: str | None = API_KEY, **params: str) -> int:
    headers = {"content-type": "image/png", **({"authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(
        f"{server.base_url}/predict", params=params, content=body, headers=headers, timeout=300
    ).status_code


def _sum(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`, as the metrics port serves them."""
    text = httpx.get(metrics_url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@dataclass
class Scraped:
    prom: Prometheus
    statuses: Counter[int]  # of every POST /predict, as its client saw it


def _run_sequence(server: ServerProcess, metrics_url: str, prom: Prometheus) -> Counter[int]:
    """2 good, 1 unauthorized, 1 unsupported, 1 invalid; then bursts until one was seen full and turned a
    request away. The statuses, as the clients saw them."""
    png = smoke_png()
    statuses = Counter([_predict(server, png), _predict(server, png, outputs="mask,probability")])
    statuses.update([_predict(server, png, key=None), _predict(server, b"GIF89a"), _predict(server, png, points="0")])
    assert statuses == {200: 2, 401: 1, 415: 1, 422: 1}
    for _ in range(5):
        if _burst(server, metrics_url, prom, statuses):
            return statuses
    raise AssertionError(f"no burst was seen full by Prometheus and turned a request away: {statuses}")


def _burst(server: ServerProcess, metrics_url: str, prom: Prometheus, statuses: Counter[int]) -> bool:
    """Two requests fill the one slot and the one queue place (seen so in the gauges), then a third comes.
    The third is turned away unless the first finished in between; Prometheus sees the queue full unless the
    burst ended between two scrapes. True when both happened (each outcome is counted either way)."""
    png = smoke_png()
    started = time.time()
    filling: list[int] = []
    threads = [threading.Thread(target=lambda: filling.append(_predict(server, png))) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while _sum(metrics_url, "vreyesam_inflight_requests") + _sum(metrics_url, "vreyesam_queued_requests") < 2:
        assert time.monotonic() < deadline, "the burst never filled the slot and the queue"
        time.sleep(0.02)
    turned_away = _predict(server, png)
    for thread in threads:
        thread.join()
    statuses.update([*filling, turned_away])
    prom.wait_for_scrape_after(time.time())
    window = prometheus_harness.duration(time.time() - started + prom.interval_s)
    resolution = prometheus_harness.duration(prom.interval_s)
    queued = prom.value(f"max_over_time(sum(vreyesam_queued_requests)[{window}:{resolution}])")
    return turned_away == 503 and queued == 1


@pytest.fixture(scope="module")
def scraped(metered: tuple[ServerProcess, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    server, port = metered
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), {f"127.0.0.1:{port}": LABELS}) as prom:
        prom.wait_for_scrape_after(time.time())
        statuses = _run_sequence(server, f"http://127.0.0.1:{port}/metrics", prom)
        prom.wait_for_scrape_after(time.time())
        yield Scraped(prom, statuses)


def test_counts_by_outcome_and_rejections_match_the_sequence(scraped: Scraped) -> None:
    result = scraped.prom.query('sum by (outcome, status) (vreyesam_requests_total{route="predict"})')
    counts = {(row["metric"]["outcome"], row["metric"]["status"]): float(row["value"][1]) for row in result}
    seen = scraped.statuses
    assert set(seen) == {200, 401, 415, 422, 503}, seen
    assert counts == {
        ("ok", "200"): seen[200],
        ("unauthorized", "401"): 1,
        ("unsupported", "415"): 1,
        ("invalid_input", "422"): 1,
        ("overloaded", "503"): seen[503],
    }
    assert scraped.prom.value('vreyesam_admission_rejections_total{reason="queue_full"}') == seen[503]
    assert scraped.prom.value('vreyesam_admission_rejections_total{reason="queue_timeout"}') == 0


def test_every_stage_histogram_holds_every_prediction(scraped: Scraped) -> None:
    predictions = scraped.statuses[200]
    result = scraped.prom.query("vreyesam_stage_duration_seconds_count")
    counts = {row["metric"]["stage"]: float(row["value"][1]) for row in result}
    stages = ("queue", "decode", "preprocess", "encoder", "decoder", "procedure", "geometry", "render")
    assert counts == dict.fromkeys(stages, predictions)
    total = scraped.statuses.total()
    assert scraped.prom.value('vreyesam_request_duration_seconds_count{route="predict"}') == total
    # Encoder batching is off: each prediction was an encoder run of its own.
    assert scraped.prom.value("vreyesam_encoder_batch_images_count") == predictions
    assert scraped.prom.value("vreyesam_encoder_batch_images_sum") == predictions
    assert scraped.prom.value("vreyesam_model_ready") == 1
    (info,) = scraped.prom.query("vreyesam_model_info")
    assert info["metric"]["name"] == "vreyesam-sam2-hiera-s" and info["metric"]["precision"]


def test_the_keda_trigger_saw_the_bursts_queue_depth(scraped: Scraped) -> None:
    query = keda_query()
    resolution = prometheus_harness.duration(scraped.prom.interval_s)
    assert scraped.prom.value(f"max_over_time(({query})[10m:{resolution}])") == 2  # 1 running + 1 queued
    assert scraped.prom.value(query) == 0  # and nothing now


def test_every_dashboard_query_parses_and_returns_data(scraped: Scraped) -> None:
    for query in dashboard_queries():
        assert scraped.prom.query(query), query  # a parse error fails in `query`; empty means no data


def test_the_dashboard_decodes_with_grafanas_foundation_sdk() -> None:
    plugins = pytest.importorskip("grafana_foundation_sdk.cog.plugins")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import prometheus
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    data = json.loads((ROOT / "deploy" / "grafana" / "vreyesam.json").read_text())
    dashboard = Dashboard.from_json(data)
    # Every field written is one the schema knows (a typo or an unknown field would be dropped), with its value.
    assert _kept(data, json.loads(json.dumps(dashboard, cls=JSONEncoder)))
    assert all(isinstance(target, prometheus.Dataquery) for panel in dashboard.panels for target in panel.targets)


def test_the_scrape_job_finds_a_pod_by_its_annotations(metered: tuple[ServerProcess, int], tmp_path: Path) -> None:
    """deploy/prometheus/scrape-config.yaml's relabelling, run by a real Prometheus on a target that carries the
    labels Kubernetes' pod discovery gives the Deployment's pods (Debian's Prometheus is built without that
    discovery, so a file lists the pod instead): scraped on the annotated port, labelled as the KEDA query
    and the dashboard expect."""
    _, port = metered
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "scrape-config.yaml").read_text())
    # The pods' job alone (the Ray job's discovery is another test's: tests/runtime/cluster).
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "vreyesam"]
    config["scrape_configs"] = [job]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod", "namespaces": {"names": ["vreyesam"]}}]
    template = deployment_template()
    annotations = {**template["metadata"]["annotations"], "prometheus.io/port": str(port)}  # the test server's
    pod = {
        "__meta_kubernetes_namespace": "vreyesam",
        "__meta_kubernetes_pod_name": "vreyesam-0",
        **{f"__meta_kubernetes_pod_annotation_{_label(k)}": v for k, v in annotations.items()},
        **{f"__meta_kubernetes_pod_label_{_label(k)}": v for k, v in template["metadata"]["labels"].items()},
    }
    # The pod's address as discovery gives it (the API port); the annotation must move it to the metrics port.
    (tmp_path / "pods.json").write_text(json.dumps([{"targets": ["127.0.0.1:7860"], "labels": pod}]))
    job["file_sd_configs"] = [{"files": [str(tmp_path / "pods.json")], "refresh_interval": "1s"}]
    config["global"] = {"scrape_interval": "500ms"}
    with running_prometheus(tmp_path / "prometheus", config=config) as prom:
        prom.wait_for_scrape_after(time.time())
        (target,) = prom.api("targets")["activeTargets"]
        assert target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics"
        assert {"namespace": "vreyesam", "pod": "vreyesam-0", **LABELS}.items() <= target["labels"].items()
        assert prom.value(keda_query()) == 0  # the KEDA query finds the pod's series


def _label(name: str) -> str:
    """A Kubernetes label or annotation name as pod discovery turns it into a Prometheus label name."""
    return "".join(c if c.isalnum() else "_" for c in name)


def deployment_template() -> dict:
    manifest = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "vreyesam.yaml").read_text())
    return next(doc for doc in manifest if doc and doc["kind"] == "Deployment")["spec"]["template"]


def test_the_metrics_are_on_their_own_port_only_and_need_no_key(metered: tuple[ServerProcess, int]) -> None:
    server, port = metered
    assert httpx.get(f"{server.base_url}/metrics", timeout=10).status_code == 404
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200 and "vreyesam_requests_total" in answer.text


def test_two_workers_are_added_up(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {"VREYESAM_METRICS_PORT": str(port), "VREYESAM_WORKERS": "2"}
    with ready_server(model_dir, tmp_path / "server.log", "--allow-random-weights", env=env) as server:
        metrics = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 300
        while _sum(metrics, "vreyesam_model_ready") < 2:  # both workers loaded (each reports its own)
            assert time.monotonic() < deadline
            time.sleep(0.2)
        png = smoke_png()
        for _ in range(4):
            assert (
                httpx.post(
                    f"{server.base_url}/predict", content=png, headers={"content-type": "image/png"}, timeout=300
                ).status_code
                == 200
            )
        assert _sum(metrics, "vreyesam_requests_total", outcome="ok", route="predict", status="200") == 4
        assert _sum(metrics, "vreyesam_inflight_requests") == 0


def _kept(ours: object, decoded: object) -> bool:
    """Whether `decoded` holds every field of `ours` with the same value (it may add the schema's defaults)."""
    if isinstance(ours, dict):
        return isinstance(decoded, dict) and all(key in decoded and _kept(ours[key], decoded[key]) for key in ours)
    if isinstance(ours, list):
        return isinstance(decoded, list) and len(ours) == len(decoded) and all(map(_kept, ours, decoded))
    return ours == decoded


def test_every_metric_of_the_table_is_exported_with_its_help() -> None:
    """One declaration per metric (telemetry.metrics.METRICS): the Prometheus recorder builds all of them, with
    the table's help text (the Ray recorder builds the same table: tests/runtime/cluster)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from vreyesam.runtime.telemetry.metrics import METRICS, PREFIX, PrometheusRecorder

    registry = CollectorRegistry()
    PrometheusRecorder(registry)
    exposition = generate_latest(registry).decode()
    for metric in METRICS.values():
        assert f"# HELP {PREFIX}_{metric.name} {metric.help}" in exposition.replace("_total ", " "), metric.name
