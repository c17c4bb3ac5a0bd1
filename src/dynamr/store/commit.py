"""Group commit: the write operations submitted while one transaction runs share the next one.

Each :meth:`GroupCommitter.submit` enqueues an operation and waits for its result. One drain task runs at
a time: it takes everything queued, applies it in a single engine transaction (on a worker thread when
the engine may block on disk, so the event loop keeps serving), resolves the waiters, and repeats while
more arrived. Under load this turns thousands of small writes per second into a few hundred fsyncs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dynamr.store.engine import Engine, Operation


class GroupCommitter:
    def __init__(self, engine: Engine, on_storage_error: Callable[[BaseException], None] | None = None) -> None:
        self._engine = engine
        self._on_storage_error = on_storage_error
        self._queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._draining = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dynamr-commit") if engine.blocking else None
        self.batches = 0
        self.operations = 0

    async def submit(self, op: Operation) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._start_drain)
        return await future

    def _start_drain(self) -> None:
        task = asyncio.ensure_future(self._drain())
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                ops = [op for op, _ in batch]
                try:
                    if self._executor is not None:
                        results = await loop.run_in_executor(self._executor, self._engine.apply, ops)
                    else:
                        results = self._engine.apply(ops)
                except Exception as exc:  # the whole transaction failed (disk full, map full)
                    results = [exc] * len(batch)
                    if self._on_storage_error is not None:
                        self._on_storage_error(exc)
                self.batches += 1
                self.operations += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
