"""A node's storage health: the last time its disk refused a write, and why.

When LMDB or the chunk directory fails (disk full, map full, an I/O error), the write that hit it fails
with :class:`~dynamr.errors.StorageError` and the caller routes it to other replicas; this records the
failure, logs it as a warning at most every :data:`LOG_EVERY` seconds, and tells ``dynamr cluster status``
for :data:`REPORT_FOR` seconds after the last one (so the state clears by itself once space returns).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LOG_EVERY = 30.0
REPORT_FOR = 60.0


class StorageHealth:
    def __init__(self, node_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = node_id
        self.clock = clock
        self.failures = 0
        self._last: tuple[float, str] | None = None
        self._logged = -float("inf")
        self._quiet = 0

    def failed(self, error: BaseException) -> None:
        now = self.clock()
        self.failures += 1
        self._last = (now, str(error))
        if now - self._logged >= LOG_EVERY:
            more = f" ({self._quiet} more since the last report)" if self._quiet else ""
            log.warning("node %s cannot write to its storage: %s; writes go to other replicas, and hints "
                        "bring them back once it can%s", self.node_id, error, more)
            self._logged, self._quiet = now, 0
        else:
            self._quiet += 1

    @property
    def problem(self) -> str:
        """The last storage error if it is recent, else ""."""
        if self._last is None or self.clock() - self._last[0] > REPORT_FOR:
            return ""
        return self._last[1]
