"""Encoder batches: images that arrive close together share one encoder run.

A GPU encodes a batch in less time per image than one image at a time. An image takes a seat in the open
batch (or opens one), its preprocessing writes the seat's row of the batch's input, and the batch is encoded
once it is full or its window has passed since it opened; each image then reads its own row of the encoder's
outputs (`Rows` views: no copies). The rows of a batch are computed independently of each other, so an
image's features in a batch equal its features alone (bit for bit on the CPU provider; tested).

No thread of its own: the first seated image that finds its batch due runs it, and the others wait for it.
A batch is `open` (taking seats), `closed` (full, or its window passed: no more seats), `running` (one of its
images runs the encoder) and `done`. If the encoder run fails, each of its images gets an error of its own
(`BatchRunFailed`, caused by the engine's), raised in its own thread.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass

import numpy as np

from vreyesam.runtime.engines.graph import Graph, Rows, Value, rows_of
from vreyesam.runtime.manifest import ENCODER_INPUT
from vreyesam.runtime.model.timing import Clock
from vreyesam.runtime.settings import MAX_ENCODER_BATCH


@dataclass(frozen=True)
class BatchPolicy:
    """How many images may share an encoder run, and how long the first waits for others."""

    max_images: int = 1  # 1: every image is encoded alone
    window_ms: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.max_images > 1


UNBATCHED = BatchPolicy()


class BatchRunFailed(RuntimeError):
    """The encoder run of the image's batch failed (its cause is the engine's error); every image of the batch
    gets one of its own."""


class BatchState(enum.Enum):
    OPEN = "open"  # taking seats
    CLOSED = "closed"  # full, or its window passed: it runs once every seated row is settled
    RUNNING = "running"  # one of its images runs the encoder
    DONE = "done"  # outputs (or the failure) are there to read


class _Batch:
    def __init__(self, inputs: Value, capacity: int, deadline: float) -> None:
        self.inputs = inputs  # capacity x C x S x S, rows written by the seated images' preprocessing
        self.capacity = capacity
        self.deadline = deadline
        self.state = BatchState.OPEN
        self.seated = 0
        self.settled = 0  # seats whose preprocessing has ended (row written, or given up)
        self.outputs: dict[str, Value] = {}
        self.failure: str | None = None  # what the failed run's engine said
        self.cause: BaseException | None = None
        self.ran = (0.0, 0.0)  # perf_counter at the start and the end of its encoder run


@dataclass(frozen=True)
class Seat:
    """One image's place in a batch."""

    batch: _Batch
    row: int

    @property
    def input_row(self) -> Rows:
        return Rows(self.batch.inputs, self.row)

    @property
    def images(self) -> int:
        """Images seated in its batch (all of them, once the batch ran)."""
        return self.batch.seated


class EncoderBatches:
    """The open batch of one encoder; safe to use from any number of threads."""

    def __init__(self, preprocess: Graph, encoder: Graph, image_shape: tuple[int, ...], policy: BatchPolicy) -> None:
        if not 1 < policy.max_images <= MAX_ENCODER_BATCH:
            raise ValueError(f"a batch holds 2 to {MAX_ENCODER_BATCH} images")
        self._preprocess, self._encoder = preprocess, encoder
        self._image_shape = image_shape  # one image's encoder input, without the batch axis
        self._policy = policy
        self._changed = threading.Condition()
        self._open: _Batch | None = None
        self.runs = 0  # encoder runs so far, and the images they encoded
        self.images = 0

    def seat(self) -> Seat:
        """A seat in the open batch, or in a new one; `settle` it once its row is written (or given up)."""
        with self._changed:
            batch = self._open
            if batch is None:
                capacity = self._policy.max_images
                inputs = self._preprocess.allocate((capacity, *self._image_shape), np.dtype(np.float32))
                deadline = time.monotonic() + self._policy.window_ms / 1000.0
                batch = self._open = _Batch(inputs, capacity, deadline)
            seat = Seat(batch, batch.seated)
            batch.seated += 1
            if batch.seated == batch.capacity:
                self._close(batch)
            return seat

    def settle(self, seat: Seat) -> None:
        """The seat's preprocessing has ended; a row that was not written is encoded and never read."""
        with self._changed:
            seat.batch.settled += 1
            self._changed.notify_all()

    def features(self, seat: Seat, clock: Clock) -> dict[str, Value]:
        """The encoder's outputs for the seat's image (`Rows` of the batch's outputs), once its batch ran."""
        batch = seat.batch
        waiting_since = time.perf_counter()
        with self._changed:
            while not self._mine_to_run(batch):
                if batch.state is BatchState.DONE:
                    break
                open_for = max(0.0, batch.deadline - time.monotonic())
                self._changed.wait(open_for if batch.state is BatchState.OPEN else None)
        if batch.state is not BatchState.DONE:
            self._run(batch)
        # The part of the shared run this image waited through is its engine time (`host` stays host work).
        started, ended = batch.ran
        clock.add_engine_time(max(0.0, ended - max(started, waiting_since)) * 1000.0)
        if batch.failure is not None:
            raise BatchRunFailed(f"the encoder run of this image's batch failed: {batch.failure}") from batch.cause
        return {name: rows_of(value, seat.row) for name, value in batch.outputs.items()}

    def _close(self, batch: _Batch) -> None:
        batch.state = BatchState.CLOSED
        if self._open is batch:
            self._open = None

    def _mine_to_run(self, batch: _Batch) -> bool:
        """Under the lock: whether the caller is to run `batch` now (it is due, whole, and nobody runs it)."""
        if batch.state is BatchState.OPEN and time.monotonic() >= batch.deadline:
            self._close(batch)
        if batch.state is BatchState.CLOSED and batch.settled == batch.seated:
            batch.state = BatchState.RUNNING
            return True
        return False

    def _run(self, batch: _Batch) -> None:
        started = time.perf_counter()
        try:
            batch.outputs = self._encoder.run({ENCODER_INPUT: self._encoder_input(batch)})
        except Exception as exc:  # each seated image raises an error of its own (`features`)
            batch.failure, batch.cause = str(exc) or type(exc).__name__, exc
        except BaseException as exc:  # the runner's thread is ending: the others are told, it goes on ending
            batch.failure, batch.cause = type(exc).__name__, exc
            raise
        finally:
            batch.ran = (started, time.perf_counter())
            with self._changed:
                batch.state = BatchState.DONE
                self.runs += 1
                self.images += batch.seated
                self._changed.notify_all()

    def _encoder_input(self, batch: _Batch) -> Value:
        filled = Rows(batch.inputs, 0, batch.seated)
        if self._preprocess.engine == self._encoder.engine:
            return filled
        return self._preprocess.to_host(filled)
