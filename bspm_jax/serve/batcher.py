"""Micro-batching: histories from concurrent requests scored together, in one call on the scoring thread.

The first request to arrive opens a batch; requests that arrive within ``max_wait`` seconds (or
until ``max_rows`` rows) join it. Requests join a batch only with others of the same model and
the same seen-items policy: a request admitted before a reload is scored by the model it was
admitted under.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .model import PAD_SIZES, ServedModel


@dataclasses.dataclass
class _Job:
    served: ServedModel
    histories: Sequence[np.ndarray]
    users: Sequence[int]
    k: int
    keep_seen: bool
    future: asyncio.Future


class MicroBatcher:
    """Scores :meth:`submit`-ted histories in batches of at most ``max_rows``, waiting at most ``max_wait`` seconds
    for a batch to fill; ``observe(rows)`` is told each batch's size."""

    def __init__(self, max_wait: float = 0.002, max_rows: int = PAD_SIZES[-1],
                 observe: Callable[[int], None] | None = None):
        self.max_wait, self.max_rows, self.observe = max_wait, max_rows, observe
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bspm-scoring")
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, served: ServedModel, histories: Sequence[np.ndarray], users: Sequence[int], k: int,
                     keep_seen: bool) -> list[list[tuple[Any, float]]]:
        """The top ``k`` of each history, scored in a batch with other requests'."""
        assert self.queue is not None, "the batcher is not started"
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(served, histories, users, k, keep_seen, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.queue is not None
        while True:
            jobs = [await self.queue.get()]
            rows = len(jobs[0].histories)
            deadline = loop.time() + self.max_wait
            while rows < self.max_rows:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                jobs.append(job)
                rows += len(job.histories)
            groups: dict[tuple[int, bool], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((id(job.served), job.keep_seen), []).append(job)
            for group in groups.values():
                await self._score(loop, group)

    async def _score(self, loop: asyncio.AbstractEventLoop, group: list[_Job]) -> None:
        histories = [h for job in group for h in job.histories]
        users = [u for job in group for u in job.users]
        k = max(job.k for job in group)
        if self.observe is not None:
            self.observe(len(histories))
        try:
            lists = await loop.run_in_executor(self.executor, group[0].served.score, histories, users, k,
                                               group[0].keep_seen)
        except Exception as err:  # noqa: BLE001 - handed to each waiting request, which answers for it
            for job in group:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        start = 0
        for job in group:
            part = lists[start:start + len(job.histories)]
            start += len(job.histories)
            if not job.future.done():
                job.future.set_result([p[: job.k] for p in part])
