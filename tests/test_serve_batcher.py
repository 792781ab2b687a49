"""serve.batcher: the next batch is formed when the running one ends, so it holds everything that waited."""

from __future__ import annotations

import asyncio

import pytest

from serve.batcher import Batcher


def test_batches_hold_what_waited_while_the_engine_was_busy():
    sizes: list[int] = []

    async def run(items):
        sizes.append(len(items))
        await asyncio.sleep(0.2)  # a decode
        return [f"answer {i}" for i in items]

    async def main():
        batcher = Batcher(run, max_batch_size=8, wait_s=0.01)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first batch (of 1) is decoding
        rest = []
        for i in range(1, 12):  # 11 arrive one by one while it runs
            rest.append(asyncio.create_task(batcher.submit(i)))
            await asyncio.sleep(0.01)
        out = await asyncio.gather(first, *rest)
        return out, batcher.batches

    out, batches = asyncio.run(main())
    assert out == [f"answer {i}" for i in range(12)]  # each caller gets its own item's result, in order
    # Serve's @serve.batch would have formed ~10 batches of 1-2 while the first ran; here: 1, then 8, then 3
    assert sizes == [1, 8, 3] and batches == 3


def test_cancelled_callers_are_left_out_and_errors_reach_their_batch_only():
    seen: list[list] = []

    async def run(items):
        seen.append(list(items))
        await asyncio.sleep(0.1)
        if "boom" in items:
            raise RuntimeError("engine failed")
        return [i * 2 for i in items]

    async def main():
        batcher = Batcher(run, max_batch_size=32, wait_s=0.01)
        busy = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.03)
        gone = asyncio.create_task(batcher.submit(2))
        kept = asyncio.create_task(batcher.submit(3))
        await asyncio.sleep(0.01)
        gone.cancel()  # its client went away while it waited
        assert await busy == 2 and await kept == 6
        with pytest.raises(asyncio.CancelledError):
            await gone
        boom = asyncio.create_task(batcher.submit("boom"))
        with pytest.raises(RuntimeError, match="engine failed"):
            await boom
        assert await batcher.submit(5) == 10  # the next batch still runs

    asyncio.run(main())
    assert seen == [[1], [3], ["boom"], [5]]
