"""The public blocking client: the store's :class:`~dynamr.store.client.Client` with the file system on it.

It lives above both ``store/`` and ``files/`` so that the store never imports the file layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynamr.files.client import FileSystem
from dynamr.store import client as store_client


class Client(store_client.Client):
    def files(self, **options: Any) -> SyncFileSystem:
        """The file system on this cluster, with blocking methods (see :class:`dynamr.files.FileSystem`)."""
        return SyncFileSystem(self, FileSystem(self._async, **options))


class SyncFileSystem:
    """Blocking wrapper of :class:`dynamr.files.FileSystem`; each method runs on the client's loop."""

    def __init__(self, client: store_client.Client, fs: FileSystem) -> None:
        self._client = client
        self.fs = fs

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.fs, name)
        if name in ("read", "walk_manifests"):
            raise AttributeError(f"{name} streams; use dynamr.files.FileSystem with AsyncClient for it")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._client._run(method(*args, **kwargs))

        return call
