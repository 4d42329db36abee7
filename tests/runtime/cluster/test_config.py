"""The Serve config file and the deployment's options: Ray Serve's own schema, and every option from the settings.

`deploy/ray/serve-config.yaml` (also KubeRay's serveConfigV2, see tests/deploy/) is validated with the
`ServeDeploySchema` of the pinned Ray; its application builder is imported from the path it names and
builds the application from the file's variables. Needs the ray extra, starts no cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")
import yaml
from ray import serve
from ray._common.utils import import_attr
from ray.serve.schema import ServeDeploySchema

from vreyesam.runtime.cluster.deployment import build, deployment_options
from vreyesam.runtime.settings import load_settings

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "ray" / "serve-config.yaml"


def config_env() -> dict[str, str]:
    (application,) = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text())).applications
    return application.runtime_env["env_vars"]


def test_the_config_file_is_a_valid_serve_config_whose_builder_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (application,) = config.applications
    assert (application.name, application.route_prefix) == ("vreyesam", "/")
    assert config.http_options.port == 8000
    builder = import_attr(application.import_path)
    assert builder is build
    for name, value in config_env().items():
        monkeypatch.setenv(name, value)
    assert isinstance(builder({}), serve.Application)
    with pytest.raises(ValueError, match=r"runtime_env\.env_vars"):
        builder({"replicas": 3})


def test_the_config_files_settings_become_the_deployments_options() -> None:
    options = deployment_options(load_settings(config_env()))
    assert options["max_ongoing_requests"] == 1 and options["max_queued_requests"] == 8
    assert (options["backpressure_config"].status_code, options["backpressure_config"].retry_after_s) == (503, 1)
    assert options["autoscaling_config"] == {
        "min_replicas": 2,
        "initial_replicas": 2,
        "max_replicas": 8,
        "target_ongoing_requests": 1,
    }
    assert "num_replicas" not in options
    assert options["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.0}


def test_gpu_replicas_reserve_their_share_of_a_gpu_and_fixed_replicas_do_not_autoscale() -> None:
    settings = load_settings({"VREYESAM_DEVICE": "cuda", "VREYESAM_RAY_GPUS": "0.5", "VREYESAM_RAY_REPLICAS": "3"})
    options = deployment_options(settings)
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    # The same admission settings as one server's.
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (1, 8)


def test_the_proxy_callback_the_nodes_are_started_with_is_the_gate() -> None:
    """The import path every node gets (connect.NODE_ENVIRONMENT) names the proxy gate's middlewares."""
    from vreyesam.runtime.cluster import connect, proxy

    assert connect.NODE_ENVIRONMENT[connect.CALLBACK_VARIABLE] == connect.CALLBACK
    assert import_attr(connect.CALLBACK.replace(":", ".")) is proxy.middlewares
