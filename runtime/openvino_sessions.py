"""OpenVINO compiled models for the bf16 CPU variant, behind the same two calls as an onnxruntime session.

onnxruntime's CPU provider has no bf16 kernels on x86; OpenVINO's CPU plugin runs the same ONNX graphs
in bf16 on CPUs with native bf16 units (AVX512_BF16 or AMX). It is used only where the CPU reports bf16
support: elsewhere OpenVINO would quietly compute in fp32 and the variant's label would be false.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

BF16_PROVIDER = "OpenVINO-CPU-bf16"


class OpenVinoUnavailable(Exception):
    """OpenVINO is not installed, or this CPU has no native bf16."""


def _core() -> Any:
    try:
        import openvino
    except ImportError:
        raise OpenVinoUnavailable("the bf16 variant needs OpenVINO (install the [openvino] extra)") from None
    return openvino.Core()


def bf16_supported() -> bool:
    """True when OpenVINO is importable and its CPU plugin reports native bf16."""
    try:
        core = _core()
    except OpenVinoUnavailable:
        return False
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoGraph:
    """A graph compiled for bf16 on the CPU; `run` is safe to call from several threads at once."""

    def __init__(self, model: bytes, threads: int) -> None:
        core = _core()
        if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise OpenVinoUnavailable("this CPU has no native bf16 support (AVX512_BF16 or AMX)")
        import openvino

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        # ONNX bytes are read in memory (an encrypted model is never written out in clear).
        self._compiled = core.compile_model(
            core.read_model(model, openvino.Tensor(np.empty(0, np.uint8))), "CPU", config
        )
        self._outputs = list(self._compiled.outputs)
        self._local = threading.local()

    def _request(self) -> Any:
        # One infer request per thread: a request holds its own buffers and is not re-entrant.
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def run(self, output_names: None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self._request().infer(feeds)
        return [np.array(results[output], copy=True) for output in self._outputs]

    def get_providers(self) -> list[str]:
        return [BF16_PROVIDER]
