"""Background asyncio tasks of a long-running process, kept referenced and never failing silently; and
:func:`each_bounded`, many calls with a few in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Background:
    """Tasks spawned by ``owner`` (named in the log); one that fails is logged with its traceback."""

    def __init__(self, owner: str, log: logging.Logger) -> None:
        self.owner = owner
        self.log = log
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("%s: a background task failed", self.owner, exc_info=task.exception())


async def each_bounded(items: Sequence[T], call: Callable[[T], Awaitable[R]], at_once: int) -> list[R]:
    """``call`` on every item, at most ``at_once`` in flight; the results in the items' order (the first
    failure is raised; the calls still running are cancelled)."""
    gate = asyncio.Semaphore(at_once)

    async def one(item: T) -> R:
        async with gate:
            return await call(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
