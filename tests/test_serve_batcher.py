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


def test_calls_that_can_no_longer_make_it_are_shed_while_a_batch_runs():
    """A batch that runs long: the calls waiting behind it are asked about every shed_every_s, and those `shed`
    answers leave the queue at once with that answer; the rest run in the next batch."""
    sizes: list[int] = []
    asked: list[tuple[str, int]] = []

    async def run(items):
        sizes.append(len(items))
        await asyncio.sleep(0.3)
        return [f"answer {i}" for i in items]

    def shed(item, ahead):
        asked.append((item, ahead))
        return {"late": item} if item.startswith("tight") else None

    async def main():
        batcher = Batcher(run, max_batch_size=8, wait_s=0.01, shed=shed, shed_every_s=0.05)
        first = asyncio.create_task(batcher.submit("first"))
        await asyncio.sleep(0.03)  # the first batch is decoding
        waiting = [asyncio.create_task(batcher.submit(name)) for name in ("loose 1", "tight 1", "loose 2", "tight 2")]
        await asyncio.sleep(0.1)  # a check has run: the tight ones are answered while the batch still runs
        done_early = [t.done() for t in waiting]
        out = await asyncio.gather(first, *waiting)
        return out, done_early, batcher.shed_count

    out, done_early, shed_count = asyncio.run(main())
    assert out == ["answer first", "answer loose 1", {"late": "tight 1"}, "answer loose 2", {"late": "tight 2"}]
    assert done_early == [False, True, False, True] and shed_count == 2
    assert sizes == [1, 2]  # the next batch holds only the calls still waiting
    # each call is asked with the number of calls kept ahead of it
    assert ("loose 1", 0) in asked and ("tight 1", 1) in asked and ("loose 2", 1) in asked


def test_cancelled_calls_are_counted_by_where_they_were():
    """A caller that gives up on a call the replica never counted was still in Serve's queue to the replica."""
    release = asyncio.Event()

    async def run(items):
        await release.wait()  # a decode that lasts until the test lets it end
        return [i * 2 for i in items]

    async def main():
        batcher = Batcher(run, max_batch_size=32, wait_s=0.01)
        running = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.05)  # its batch is decoding
        waiting = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
        kept = asyncio.create_task(batcher.submit(4))
        await asyncio.sleep(0.01)
        running.cancel()
        for task in waiting:
            task.cancel()
        await asyncio.sleep(0.01)
        counts = (batcher.cancelled_waiting, batcher.cancelled_running)
        release.set()
        assert await kept == 8
        return counts, (batcher.cancelled_waiting, batcher.cancelled_running)

    during, after = asyncio.run(main())
    assert during == (2, 1) and after == (2, 1)  # counted when cancelled, once each
