"""Batching for the model replica: concurrent calls decoded together, each batch formed when the engine is free.

Ray Serve's `@serve.batch` forms the next batch from what arrived within `batch_wait_timeout_s` as soon as the
previous batch was *formed*, and only then waits for the running one to end (`ray/serve/batching.py`:
`_process_batches` takes a batch and the task it starts waits on the `max_concurrent_batches` semaphore). Under
load the engine then decodes a queue of small batches, formed while it was busy, instead of everything that is
waiting: at 32 clients the median batch held 4 conversations (bench/serve_load.py, docs/serve.md). Here the next
batch is taken when the previous one has ended: everything waiting, up to `max_batch_size`, so the batch grows with
the load. A call cancelled while it waits (its deadline, or its client gone) is left out of the batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable


class Batcher:
    """`await batcher.submit(item)` -> this item's result of `run(items)`, an async function answering a list of
    items with a list of results in order. One batch runs at a time."""

    def __init__(self, run: Callable[[list], Awaitable[list]], max_batch_size: int = 32,
                 wait_s: float = 0.01):
        self.run, self.max_batch_size, self.wait_s = run, max_batch_size, wait_s
        self._waiting: deque[tuple[Any, asyncio.Future]] = deque()
        self._loop_task: asyncio.Task | None = None
        self.batches = 0  # batches run so far

    async def submit(self, item) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run_batches())
        return await future  # a cancelled caller cancels the future: its item is skipped below

    def waiting(self) -> int:
        """Calls waiting for a batch (a cancelled one among them until the next batch is taken)."""
        return len(self._waiting)

    def _take(self) -> list[tuple[Any, asyncio.Future]]:
        batch = []
        while self._waiting and len(batch) < self.max_batch_size:
            item, future = self._waiting.popleft()
            if not future.cancelled():
                batch.append((item, future))
        return batch

    async def _run_batches(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.wait_s)  # calls arriving together (one request's conversations) share a batch
            batch = self._take()
            if not batch:
                continue
            self.batches += 1
            try:
                results = await self.run([item for item, _ in batch])
            except Exception as e:  # this batch's callers get the error; the next batch still runs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():  # one cancelled while its batch ran has its result dropped
                    future.set_result(result)
