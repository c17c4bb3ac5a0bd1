"""What a task attempt printed: one file per task process, kept bounded in the attempt's report.

The worker makes a private file for each task process it starts and names it in ``DYNAMR_TASK_OUTPUT``;
the process points its stdout and stderr there (user code's prints, a child process's, a crash's last
words), empties it before each attempt and sends back what the attempt wrote: all of it up to
:data:`KEEP_HEAD` + :data:`KEEP_TAIL` bytes, else its first and last parts with the size of what was left
out between them. When a process dies without a report, the worker reads the same file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

OUTPUT_ENV = "DYNAMR_TASK_OUTPUT"
#: the names of output files (a glob)
OUTPUT_FILES = "dynamr-output-*.log"
#: bytes kept of the start and of the end of an attempt's output
KEEP_HEAD = 4 * 1024
KEEP_TAIL = 60 * 1024


def make_output_file(directory: str | None) -> str:
    """A new empty file only the owner can read, for one task process's output."""
    fd, path = tempfile.mkstemp(prefix="dynamr-output-", suffix=".log", dir=directory or None)
    os.close(fd)
    return path


def read_output(path: str) -> str:
    """The output in ``path``, bounded (see the module's docstring); "" when the file is gone."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= KEEP_HEAD + KEEP_TAIL:
                data = f.read(size)
                return data.decode(errors="replace")
            head = f.read(KEEP_HEAD)
            f.seek(size - KEEP_TAIL)
            tail = f.read(KEEP_TAIL)
    except OSError:
        return ""
    skipped = size - KEEP_HEAD - KEEP_TAIL
    return (head.decode(errors="replace") + f"\n[... {skipped:,} bytes of output not kept ...]\n"
            + tail.decode(errors="replace"))


def remove_output_file(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
