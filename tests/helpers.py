"""Shared test helpers: waiting on a condition with a deadline (never a bare sleep), running the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may raise until the system settles
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], Awaitable[T]], timeout: float, what: str,
                           interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def dynamr(*args: str, cwd: Path, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the ``dynamr`` command line in a fresh process (wide console, so messages are not wrapped)."""
    result = subprocess.run([sys.executable, "-m", "dynamr", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "COLUMNS": "200"})
    if check:
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result
