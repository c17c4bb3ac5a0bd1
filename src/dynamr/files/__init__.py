"""Files on the store: chunked, checksummed, listable, locatable (see :mod:`dynamr.files.client`)."""

from dynamr.files.client import FileStat, FileSystem, ListEntry

__all__ = ["FileStat", "FileSystem", "ListEntry"]
