"""Remote paths: absolute, slash-separated, normalised; and the store keys that hold them."""

from __future__ import annotations

from dynamr.errors import BadRequestError

ROOT = "/"
#: keys are limited to 400 bytes (see StoreSettings.max_key_bytes); leave room for the prefix
MAX_PATH_BYTES = 380


def normalize(path: str) -> str:
    """``/a//b/`` -> ``/a/b``; rejects relative paths and ``.``/``..`` components."""
    if not path.startswith("/"):
        raise BadRequestError(f"remote paths are absolute: {path!r} should start with '/'")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise BadRequestError(f"remote path {path!r} must not contain '.' or '..'")
    if any("\x00" in p for p in parts):
        raise BadRequestError("remote paths must not contain NUL characters")
    normal = "/" + "/".join(parts)
    if len(normal.encode()) > MAX_PATH_BYTES:
        raise BadRequestError(f"remote path is {len(normal.encode())} bytes; the limit is {MAX_PATH_BYTES}")
    return normal


def parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name(path: str) -> str:
    return path.rsplit("/", 1)[1]


def join(directory: str, child: str) -> str:
    return directory.rstrip("/") + "/" + child


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/", "/a", "/a/b"]``."""
    out = [ROOT]
    parts = [p for p in path.split("/") if p][:-1]
    for i in range(len(parts)):
        out.append("/" + "/".join(parts[: i + 1]))
    return out


MANIFEST_PREFIX = b"f:"


def manifest_key(path: str) -> bytes:
    return MANIFEST_PREFIX + path.encode()


def directory_key(path: str) -> bytes:
    return b"d:" + path.encode()
