"""Coalescing concurrent single requests into batched back-end calls (rollout engine and server)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Groups concurrent :meth:`submit` calls with equal keys into one ``call(key, items)``.

    A batch is sent when it holds ``max_batch`` items or ``max_wait`` seconds after its first item
    arrived, whichever comes first; at most ``max_inflight`` batches run at once. While the back
    end is busy, requests keep accumulating, so a slow back end gets fuller batches. ``call`` must
    return one result per item, in order; if it raises, every request of that batch raises the
    same exception. A request whose caller was cancelled is dropped before its batch is sent, and a
    running call is cancelled once every caller of its batch has been (a client that hung up, an
    episode past its time limit): the back end stops instead of finishing work nobody will read.
    Bound to the event loop of its first ``submit``.
    """

    def __init__(self, call: Callable[[Hashable, list[Item]], Awaitable[list[Result]]], *, max_batch: int = 8,
                 max_wait: float = 0.005, max_inflight: int = 1) -> None:
        if max_batch <= 0 or max_inflight <= 0:
            raise ValueError(f"max_batch and max_inflight must be positive, got {max_batch} and {max_inflight}")
        self._call = call
        self.max_batch, self.max_wait = max_batch, max_wait
        self._max_inflight = max_inflight
        self._pending: dict[Hashable, list[tuple[Item, asyncio.Future]]] = {}
        self._first: dict[Hashable, float] = {}
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self.batch_sizes: list[int] = []  # one entry per call, for tests and benchmarks

    async def submit(self, key: Hashable, item: Item) -> Result:
        """Queue ``item`` under ``key`` and wait for its result."""
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wakeup, self._slots = asyncio.Event(), asyncio.Semaphore(self._max_inflight)
            self._worker = loop.create_task(self._work())
        fut: asyncio.Future = loop.create_future()
        if key not in self._pending:
            self._pending[key], self._first[key] = [], loop.time()
        self._pending[key].append((item, fut))
        assert self._wakeup is not None
        self._wakeup.set()
        return await fut

    async def _work(self) -> None:
        assert self._wakeup is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            key = min(self._first, key=self._first.__getitem__)
            while len(self._pending[key]) < self.max_batch:
                remaining = self._first[key] + self.max_wait - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            await self._slots.acquire()
            queue = [(item, fut) for item, fut in self._pending.pop(key) if not fut.done()]
            del self._first[key]
            batch, rest = queue[:self.max_batch], queue[self.max_batch:]
            if rest:
                self._pending[key], self._first[key] = rest, loop.time() - self.max_wait  # overdue: send next
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._send(key, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _, batch=batch: _cancel_waiting(batch))  # cancelled before it started

    async def _send(self, key: Hashable, batch: list[tuple[Item, asyncio.Future]]) -> None:
        assert self._slots is not None
        this = asyncio.current_task()

        def abandoned(_: asyncio.Future) -> None:
            if this is not None and all(fut.cancelled() for _, fut in batch):
                this.cancel()

        for _, fut in batch:
            fut.add_done_callback(abandoned)
        try:
            self.batch_sizes.append(len(batch))
            results = await self._call(key, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batched call returned {len(results)} results for {len(batch)} requests")
        except asyncio.CancelledError:
            for _, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:  # hand the error to every waiting caller
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        """Stop the worker and cancel queued and running requests."""
        tasks = [t for t in [self._worker, *self._running] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in self._pending.values():
            for _, fut in queue:
                if not fut.done():
                    fut.cancel()
        self._pending.clear()
        self._first.clear()
        self._worker = None


def _cancel_waiting(batch: list[tuple[object, asyncio.Future]]) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.cancel()
