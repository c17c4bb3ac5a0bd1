"""Byte counts and durations as people read them (the command line and the dashboard share these)."""

from __future__ import annotations


def format_size(n: float) -> str:
    """1,234,567 -> "1.2 MB" (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def format_duration(seconds: float) -> str:
    """12.34 -> "12.3s", 754 -> "12m34s", 7384 -> "2h03m"."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
