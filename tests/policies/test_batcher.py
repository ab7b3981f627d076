"""The Batcher that coalesces concurrent requests into batched back-end calls."""

from __future__ import annotations

import asyncio

import pytest

from agentgym.policies._batching import Batcher


async def double(key, items):
    await asyncio.sleep(0.01)
    return [2 * i for i in items]


async def test_concurrent_requests_with_one_key_share_a_call_in_order():
    batcher = Batcher(double, max_batch=4, max_wait=0.05)
    results = await asyncio.gather(*(batcher.submit("k", i) for i in range(6)), batcher.submit("other", 10))
    assert results == [0, 2, 4, 6, 8, 10, 20]
    assert sorted(batcher.batch_sizes) == [1, 2, 4]
    await batcher.aclose()


async def test_closing_before_a_batch_starts_cancels_its_requests():
    batcher = Batcher(double, max_batch=1, max_wait=0.0)
    request = asyncio.ensure_future(batcher.submit("k", 1))
    await asyncio.sleep(0)  # the request starts the worker
    await asyncio.sleep(0)  # the worker hands the batch to a task that has not run yet
    await batcher.aclose()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, 2)  # not left waiting for ever


async def test_a_running_call_is_cancelled_once_every_caller_of_its_batch_is_gone():
    started, outcomes = asyncio.Event(), []

    async def slow(key, items):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        return items

    batcher = Batcher(slow, max_batch=2, max_wait=0.0)
    first, second = (asyncio.ensure_future(batcher.submit("k", i)) for i in range(2))
    await started.wait()
    first.cancel()
    await asyncio.sleep(0.05)
    assert outcomes == []  # the second caller still waits for its result
    second.cancel()
    await asyncio.sleep(0.05)
    assert outcomes == ["cancelled"]
    await batcher.aclose()
