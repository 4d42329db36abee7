"""A lone image's networks replayed from CUDA graphs: sessions, buffers and a thread of their own.

A CUDA graph replays the kernels it recorded on the addresses it recorded, so the encoder's input and
outputs and the decoder's inputs and outputs must lie at the same device addresses on every run. `Capture`
owns those buffers, allocated once, and two sessions of its own, built with `SessionConfig.cuda_graph` and
fixed to one image and to the model's default prompt count: nothing else runs them, so nothing can replay
them on other addresses. The segmenter sends a lone image with that prompt count through them while it
holds the capture's turn (its buffers serve one image at a time), from the preprocessing's write into
`image` to the procedure's read of `logits`; every other request (another prompt count, a batch) takes the
ordinary sessions.

Two facts of onnxruntime's CUDA provider shape the rest: a session keeps its captured graph per calling
thread (a graph captured on one thread is not replayed on another), and a capture fails when another thread
calls into CUDA meanwhile. So every run of the captured sessions happens on one thread of the capture's
own, and the runs that capture (`warm_up_runs`) happen when it is built, while the model loads and nothing
else runs.

On the CPU provider the same sessions run without capture: the tests hold this path to the ordinary one
there, and the loader holds it to the ordinary one on the device before serving it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vreyesam.runtime.engines.graph import Graph, Rows, Value
from vreyesam.runtime.manifest import (
    DECODER_IMAGE_INPUTS,
    DECODER_LABELS,
    DECODER_LOGITS,
    DECODER_POINTS,
    DECODER_SCORES,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
)

# onnxruntime's CUDA provider runs a session twice as usual on a thread, then captures on the third run.
CUDA_WARM_UP_RUNS = 3


@dataclass(frozen=True)
class CaptureBuffers:
    """The fixed addresses of a captured lone image (each a whole value of the networks' engine)."""

    image: Rows  # 1x3xSxS normalised image: the preprocessing writes it, the encoder reads it
    features: dict[str, Rows]  # the encoder's outputs (ENCODER_OUTPUTS), 1 x ...
    point_coords: Rows  # Nx1x2 float32, written from the host before each decoder run
    point_labels: Rows  # Nx1 int32 (all 1: foreground), written once
    logits: Rows  # Nx256x256 float32, the decoder's first multimask logits
    scores: Rows  # N float32


class _OnOneThread:
    """A graph whose runs all happen on one thread (the capture's), behind the `Graph` protocol."""

    def __init__(self, graph: Graph, thread: ThreadPoolExecutor) -> None:
        self._graph, self._thread = graph, thread

    @property
    def engine(self) -> str:
        return self._graph.engine

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._graph.outputs

    def run(
        self, feeds: Mapping[str, Value], fetch: Sequence[str] | None = None, into: Mapping[str, Rows] | None = None
    ) -> dict[str, Value]:
        return self._thread.submit(self._graph.run, feeds, fetch, into).result()

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Value:
        return self._graph.allocate(shape, dtype)

    def to_host(self, value: Value) -> np.ndarray:
        return self._graph.to_host(value)

    def write(self, array: np.ndarray, into: Rows) -> None:
        self._graph.write(array, into)


def _whole(value: Value, rows: int) -> Rows:
    return Rows(value, 0, rows)


class Capture:
    """The captured encoder and decoder of one segmenter, with their buffers, thread and turn."""

    def __init__(self, *, encoder: Graph, decoder: Graph, prompts: int, image_size: int, warm_up_runs: int) -> None:
        if encoder.engine != decoder.engine:
            raise ValueError("the captured networks must share one engine (their buffers pass between them)")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vreyesam-capture")
        self.encoder, self.decoder = _OnOneThread(encoder, self._thread), _OnOneThread(decoder, self._thread)
        self.prompts = prompts
        self._turn = threading.Lock()
        shape = (1, 3, image_size, image_size)
        image = _whole(encoder.allocate(shape, np.dtype(np.float32)), 1)
        encoder.write(np.zeros(shape, np.float32), image)
        # The encoder's output shapes and types, from a first run (its outputs where onnxruntime puts them).
        first = {name: encoder.to_host(value) for name, value in self.encoder.run({ENCODER_INPUT: image}).items()}
        features = {name: _whole(encoder.allocate(first[name].shape, first[name].dtype), 1) for name in ENCODER_OUTPUTS}
        labels = _whole(decoder.allocate((prompts, 1), np.dtype(np.int32)), prompts)
        decoder.write(np.ones((prompts, 1), np.int32), labels)
        self.buffers = CaptureBuffers(
            image=image,
            features=features,
            point_coords=_whole(decoder.allocate((prompts, 1, 2), np.dtype(np.float32)), prompts),
            point_labels=labels,
            logits=_whole(decoder.allocate((prompts, 256, 256), np.dtype(np.float32)), prompts),
            scores=_whole(decoder.allocate((prompts,), np.dtype(np.float32)), prompts),
        )
        for _ in range(warm_up_runs):
            self.encoder.run(*self.encoder_run())
            self.decoder.run(*self.decoder_run(np.zeros((prompts, 1, 2), np.float32)))

    @property
    def engine(self) -> str:
        return self.encoder.engine

    def takes(self, prompts: int) -> bool:
        """Whether a lone image with this many prompts runs here."""
        return prompts == self.prompts

    def turn(self) -> threading.Lock:
        """Held by a prediction from its preprocessing to its procedure: the buffers serve one image."""
        return self._turn

    def encoder_run(self) -> tuple[dict[str, Value], None, dict[str, Rows]]:
        """The encoder's feeds, fetch and output places (its image written by the preprocessing)."""
        return {ENCODER_INPUT: self.buffers.image}, None, self.buffers.features

    def decoder_run(self, model_points: np.ndarray) -> tuple[dict[str, Value], None, dict[str, Rows]]:
        """The points written to their buffer, then the decoder's feeds, fetch and output places."""
        self.decoder.write(np.asarray(model_points, np.float32), self.buffers.point_coords)
        feeds: dict[str, Value] = {name: self.buffers.features[name] for name in DECODER_IMAGE_INPUTS}
        feeds.update({DECODER_POINTS: self.buffers.point_coords, DECODER_LABELS: self.buffers.point_labels})
        return feeds, None, {DECODER_LOGITS: self.buffers.logits, DECODER_SCORES: self.buffers.scores}

    def close(self) -> None:
        self._thread.shutdown(wait=True)
