"""Progress of device programs: a ticker the compiled scoring advances once per finished batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Int


class BatchTicker:
    """Advances a progress iterator from inside a device program, one step per finished batch.

    The compiled program holds only an integer ticket; the host looks the iterator up by
    it, so one compiled program serves every progress bar.
    """

    _live: ClassVar[dict[int, Iterator[Any]]] = {}

    def __init__(self, steps: Iterable[Any]):
        self.steps = iter(steps)

    def __enter__(self) -> Int[Array, ""]:
        self.ticket = max(self._live, default=0) + 1
        self._live[self.ticket] = self.steps
        next(self.steps, None)
        return jnp.asarray(self.ticket, dtype=jnp.int32)

    def __exit__(self, *exc: object) -> None:
        self._live.pop(self.ticket, None)
        for _ in self.steps:  # finish (and close) the progress bar
            pass

    @classmethod
    def tick(cls, ticket: Array, _done: Array) -> None:
        steps = cls._live.get(int(ticket))
        if steps is not None:
            next(steps, None)


Progress = Callable[..., Iterable[Any]]
"""A wrapper of iterables that shows progress, e.g. ``tqdm``: ``progress(iterable, desc=..., unit=...)``."""


def no_progress(iterable: Iterable[Any], **_: Any) -> Iterable[Any]:
    return iterable
