"""Batching for the model replica: concurrent calls decoded together, each batch formed when the engine is free.

Ray Serve's `@serve.batch` forms the next batch from what arrived within `batch_wait_timeout_s` as soon as the
previous batch was *formed*, and only then waits for the running one to end (`ray/serve/batching.py`:
`_process_batches` takes a batch and the task it starts waits on the `max_concurrent_batches` semaphore). Under
load the engine then decodes a queue of small batches, formed while it was busy, instead of everything that is
waiting: at 32 clients the median batch held 4 conversations (bench/serve_load.py, docs/serve.md). Here the next
batch is taken when the previous one has ended: everything waiting, up to `max_batch_size`, so the batch grows with
the load. A call cancelled while it waits (its deadline, or its client gone) is left out of the batch.

While a batch runs, `shed` (when given) is asked every `shed_every_s` about each call still waiting, with how many
wait ahead of it: a result it returns answers that call at once and takes it out of the queue. The model replica
uses it to refuse (503) a call that can no longer be answered before its deadline because the running batch has
run long, instead of leaving it to expire in the queue (504).

Cancelled calls are counted by where they were (`cancelled_waiting`, `cancelled_running`): a caller that gave up on
a call the replica never counted (a 504 "unanswered" at the ingress) was still in Serve's queue to the replica.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable


class Batcher:
    """`await batcher.submit(item)` -> this item's result of `run(items)`, an async function answering a list of
    items with a list of results in order. One batch runs at a time."""

    def __init__(self, run: Callable[[list], Awaitable[list]], max_batch_size: int = 32,
                 wait_s: float = 0.01, shed: Callable[[Any, int], Any] | None = None, shed_every_s: float = 0.25):
        self.run, self.max_batch_size, self.wait_s = run, max_batch_size, wait_s
        self.shed, self.shed_every_s = shed, shed_every_s
        self.shed_count = 0  # calls answered by `shed` so far
        self.cancelled_waiting = 0  # calls cancelled by their caller while they waited for a batch
        self.cancelled_running = 0  # ... while their batch was decoding (the result is dropped)
        self._waiting: deque[tuple[Any, asyncio.Future]] = deque()
        self._running: set[asyncio.Future] = set()
        self._loop_task: asyncio.Task | None = None
        self.batches = 0  # batches run so far

    async def submit(self, item) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._count_cancelled)
        self._waiting.append((item, future))
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run_batches())
        return await future  # a cancelled caller cancels the future: its item is skipped below

    def _count_cancelled(self, future: asyncio.Future) -> None:
        if future.cancelled():
            if future in self._running:
                self.cancelled_running += 1
            else:
                self.cancelled_waiting += 1

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
            self._running = {future for _, future in batch}
            watch = asyncio.create_task(self._shed_while_running()) if self.shed is not None else None
            try:
                results = await self.run([item for item, _ in batch])
            except Exception as e:  # this batch's callers get the error; the next batch still runs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            finally:
                self._running = set()
                if watch is not None:
                    watch.cancel()
            for (_, future), result in zip(batch, results):
                if not future.done():  # one cancelled while its batch ran has its result dropped
                    future.set_result(result)

    async def _shed_while_running(self) -> None:
        while True:
            await asyncio.sleep(self.shed_every_s)
            self.shed_waiting()

    def shed_waiting(self) -> int:
        """Ask `shed` about every call waiting (skipping cancelled ones); answer and drop those it has a result for.
        Returns how many were shed."""
        kept: deque[tuple[Any, asyncio.Future]] = deque()
        shed = 0
        for item, future in self._waiting:
            if future.cancelled():
                continue
            result = self.shed(item, len(kept))
            if result is None:
                kept.append((item, future))
            else:
                future.set_result(result)
                shed += 1
        self._waiting = kept
        self.shed_count += shed
        return shed
