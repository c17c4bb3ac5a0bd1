"""Which files a job's inputs name: files as they are, directories walked, glob patterns matched.

The same rules on the local disk (:func:`expand_inputs`) and on the store (:func:`store_inputs`), as
Hadoop's input paths have them:

- a directory stands for every file under it, sorted, except *hidden* ones: names starting with ``.`` or
  ``_`` (``_SUCCESS``, ``.crc`` files, editors' swap files), so a job's output directory reads as its parts;
- a path with ``*``, ``?`` or ``[...]`` in it (quoted, so the shell leaves it alone, or on the store) is a
  pattern, matched one path component at a time (``*`` never crosses a ``/``); it does not match hidden
  files (``out/*`` is the parts, not ``_SUCCESS``) unless its last component starts as they do, and a
  directory it matches stands for its files as above. A pattern that matches nothing is an error, as a
  missing path is;
- a file named explicitly is read even if its name is hidden.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from dynamr.errors import BadRequestError, NotFoundError
from dynamr.files.client import FileSystem

#: the first characters of hidden file names
HIDDEN = (".", "_")
_MAGIC = frozenset("*?[")


def is_pattern(path: str) -> bool:
    return not _MAGIC.isdisjoint(path)


def hidden(name: str) -> bool:
    return name.startswith(HIDDEN)


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files named, every file under directories named, and what patterns match (see the module);
    refuses missing inputs and anything that is not a regular file."""
    files: list[Path] = []
    for item in inputs:
        if not item.exists() and is_pattern(str(item)):
            matched = sorted(Path(p) for p in glob.glob(str(item)) if hidden(item.name) or not hidden(Path(p).name))
            if not matched:
                raise NotFoundError(f"no input matches {item}")
            files.extend(expand_inputs(matched))
        elif item.is_dir():
            found = sorted(p for p in item.rglob("*") if not hidden(p.name) and not p.is_dir())
            odd = [p for p in found if not p.is_file()]
            if odd:  # a broken symlink, a pipe, a socket: never skipped in silence
                raise BadRequestError(f"input {odd[0]} is not a regular file (a broken symlink, a pipe?); "
                                      "remove it or name the files to read")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise NotFoundError(f"input {item} does not exist")
    if not files:
        raise NotFoundError(f"no input files in {', '.join(map(str, inputs))}")
    return files


def matches(path: str, pattern: str) -> bool:
    """Whether a store path is matched by a pattern, or lies under a directory it matches (component by
    component; both absolute and normalized)."""
    parts, wanted = path.strip("/").split("/"), pattern.strip("/").split("/")
    if len(parts) < len(wanted) or not all(fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=False)):
        return False
    return not hidden(parts[-1]) or (len(parts) == len(wanted) and hidden(wanted[-1]))


async def store_inputs(fs: FileSystem, paths: Sequence[str]) -> list[tuple[str, int]]:
    """(path, size) of every file the store paths name (see the module)."""
    out: list[tuple[str, int]] = []
    for path in paths:
        if is_pattern(path):
            pattern = "/" + path.strip("/")
            parts = pattern.split("/")
            fixed = next(i for i, part in enumerate(parts) if is_pattern(part))
            root = "/".join(parts[:fixed]) or "/"
            try:
                found = [(p, mf.size) async for p, mf in fs.walk_manifests(root) if matches(p, pattern)]
            except NotFoundError:
                found = []
            if not found:
                raise NotFoundError(f"no input matches {path} on the store")
            out.extend(found)
            continue
        stat = await fs.stat(path)
        if stat.kind == "file":
            out.append((stat.path, stat.size))
        else:
            out.extend([(p, mf.size) async for p, mf in fs.walk_manifests(stat.path)
                        if not hidden(p.rsplit("/", 1)[1])])
    if not out:
        raise NotFoundError(f"no input files in {', '.join(paths)}")
    return out
