"""One graph as several sessions, each specialised to one size of the batch axis, behind the `Graph` protocol.

A session specialised to a fixed size has no shape arithmetic left (`SessionConfig.fixed_dims`), which on a
GPU is what keeps every node on the device and lets a CUDA graph be captured; on the CPU it was measured
faster too. A run goes to the session of its size. A size without one goes to the next larger fixed size,
padded, when padding is allowed (`Rows` of a larger batch value: the rows past the caller's are computed
and not read), else to the general session, which keeps every size working (custom prompt counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vreyesam.runtime.engines.graph import Graph, Rows, Value, rows_of


def leading_size(value: Value) -> int:
    """The size of a value's first axis: rows of a `Rows`, else the array's or OrtValue's first dimension."""
    if isinstance(value, Rows):
        return value.count
    shape = value.shape() if callable(getattr(value, "shape", None)) else np.shape(value)
    return int(shape[0])


class ShapedGraph:
    """Sessions of one graph by the size of `axis_input`'s first axis, and an optional general session.

    `fixed` maps sizes to sessions built with that size fixed; `general` takes every other size (None: the
    sizes served are all fixed, and another size is an error). With `pad`, a size between fixed sizes is run
    by the next larger one when the input is `Rows` of a value with room for the extra rows.
    """

    def __init__(
        self, *, axis_input: str, fixed: Mapping[int, Graph], general: Graph | None = None, pad: bool = False
    ) -> None:
        members = [*fixed.values(), *([general] if general is not None else [])]
        if not members:
            raise ValueError("a shaped graph needs at least one session")
        if len({member.engine for member in members}) != 1 or len({member.outputs for member in members}) != 1:
            raise ValueError("the sessions of a shaped graph must be one graph on one engine")
        self._axis_input = axis_input
        self._fixed = dict(sorted(fixed.items()))
        self._general = general
        self._pad = pad
        self._any = members[0]

    @property
    def engine(self) -> str:
        return self._any.engine

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._any.outputs

    @property
    def fixed_sizes(self) -> tuple[int, ...]:
        return tuple(self._fixed)

    def session_for(self, feeds: Mapping[str, Value]) -> tuple[Graph, int]:
        """The session a run with these feeds goes to, and the size it runs at."""
        size = leading_size(feeds[self._axis_input])
        if size in self._fixed:
            return self._fixed[size], size
        if self._pad and isinstance(feeds[self._axis_input], Rows):
            rows = feeds[self._axis_input]
            room = leading_size(rows.base) - rows.start
            larger = [fixed for fixed in self._fixed if size < fixed <= room]
            if larger:
                return self._fixed[larger[0]], larger[0]
        if self._general is None:
            raise ValueError(f"no session for {size} along {self._axis_input!r} (fixed: {self.fixed_sizes})")
        return self._general, size

    def run(
        self,
        feeds: Mapping[str, Value],
        fetch: Sequence[str] | None = None,
        into: Mapping[str, Rows] | None = None,
    ) -> dict[str, Value]:
        session, size = self.session_for(feeds)
        asked = leading_size(feeds[self._axis_input])
        if size == asked:
            return session.run(feeds, fetch, into)
        if into:
            raise ValueError("a padded run cannot write into caller rows")
        rows = feeds[self._axis_input]
        padded = {**feeds, self._axis_input: Rows(rows.base, rows.start, size)}
        outputs = session.run(padded, fetch)
        return {name: rows_of(value, 0, asked) for name, value in outputs.items()}

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Value:
        return self._any.allocate(shape, dtype)

    def to_host(self, value: Value) -> np.ndarray:
        return self._any.to_host(value)

    def write(self, array: np.ndarray, into: Rows) -> None:
        self._any.write(array, into)
