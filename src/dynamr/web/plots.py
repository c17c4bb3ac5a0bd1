"""The dashboard's pictures as SVG drawn on the server: a job's task timeline, progress bars, the ring's
ownership per node. Shapes carry their sizes and colours as attributes (never inline styles, which the
page's content security policy forbids), and each bar has a ``<title>`` the browser shows on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLOURS = {"ok": "#2e9d57", "failed": "#d9534f", "lost": "#98a2b3", "running": "#3b82f6"}


@dataclass(frozen=True)
class Bar:
    """One attempt on the timeline."""

    node: str
    task: str
    attempt: str
    start: float
    #: None while it runs
    end: float | None
    #: ok, failed, lost (its node died, or it was killed) or running
    outcome: str
    backup: bool = False
    detail: str = ""


def progress(done: int, total: int, width: int = 140) -> str:
    share = done / total if total else 0.0
    return (f'<svg class="progress" width="{width}" height="10" role="img" aria-label="{done} of {total}">'
            f'<rect width="{width}" height="10" rx="5" fill="#e5e7eb"/>'
            f'<rect width="{share * width:.1f}" height="10" rx="5" fill="#2e9d57"/></svg>')


def lanes(bars: Sequence[Bar], now: float) -> list[tuple[str, list[Bar]]]:
    """Bars packed into rows, one per task slot as it shows itself: each node's attempts, in the order they
    started, go to its first row free by then."""
    rows: list[tuple[str, list[Bar], list[float]]] = []
    by_node: dict[str, list[int]] = {}
    for bar in sorted(bars, key=lambda b: (b.node, b.start, b.attempt)):
        end = bar.end if bar.end is not None else now
        for index in by_node.get(bar.node, []):
            if rows[index][2][0] <= bar.start + 1e-6:
                rows[index][1].append(bar)
                rows[index][2][0] = end
                break
        else:
            by_node.setdefault(bar.node, []).append(len(rows))
            rows.append((bar.node, [bar], [end]))
    return [(node, row) for node, row, _ in rows]


def _ticks(span: float) -> float:
    """A round step for about 8 ticks over ``span`` seconds."""
    raw = max(span / 8, 1e-3)
    power = 10 ** math.floor(math.log10(raw))
    return float(next(power * f for f in (1, 2, 5, 10) if power * f >= raw))


def timeline(bars: Sequence[Bar], origin: float, now: float, width: int = 1100) -> str:
    """Attempts as bars against time since ``origin``: one row per slot, coloured by outcome, backups
    outlined. Empty string when there is nothing to draw."""
    if not bars:
        return ""
    rows = lanes(bars, now)
    end = max([now if b.end is None else b.end for b in bars] + [origin + 1e-3])
    span = max(end - origin, 1e-3)
    left, top, row_h = 120, 22, 18
    plot_w = width - left - 12
    height = top + row_h * len(rows) + 8

    def x(t: float) -> float:
        return left + (t - origin) / span * plot_w

    out = [f'<svg class="timeline" width="{width}" height="{height}" role="img" '
           f'aria-label="task timeline: {len(bars)} attempts on {len(rows)} slots">']
    step = _ticks(span)
    tick = 0.0
    while tick <= span + 1e-9:
        px = x(origin + tick)
        out.append(f'<line x1="{px:.1f}" y1="{top - 4}" x2="{px:.1f}" y2="{height - 6}" stroke="#eef0f3"/>'
                   f'<text x="{px:.1f}" y="{top - 8}" text-anchor="middle">{tick:g}s</text>')
        tick += step
    previous = ""
    slot = 0
    for index, (node, row) in enumerate(rows):
        y = top + index * row_h
        slot = slot + 1 if node == previous else 1
        previous = node
        out.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{escape(node)} #{slot}</text>')
        for bar in row:
            x0 = x(bar.start)
            x1 = x(now if bar.end is None else bar.end)
            w = max(x1 - x0, 1.5)
            outline = ' stroke="#111827" stroke-width="1.5"' if bar.backup else ""
            took = (now if bar.end is None else bar.end) - bar.start
            title = (f"{bar.task} attempt {bar.attempt} on {bar.node}: {bar.outcome}"
                     f"{' (backup)' if bar.backup else ''}, {took:.2f}s{': ' + bar.detail if bar.detail else ''}")
            out.append(f'<rect class="attempt {bar.outcome}" x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" '
                       f'height="{row_h - 5}" rx="2" fill="{COLOURS.get(bar.outcome, "#98a2b3")}"{outline}>'
                       f'<title>{escape(title)}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def ownership(shares: dict[str, float], width: int = 520) -> str:
    """Each node's share of the ring (as first owner of the key space), as horizontal bars."""
    if not shares:
        return ""
    left, row_h = 70, 22
    plot_w = width - left - 60
    height = row_h * len(shares) + 6
    top = max(shares.values()) or 1.0
    out = [f'<svg class="ownership" width="{width}" height="{height}" role="img" aria-label="ring ownership">']
    for index, node in enumerate(sorted(shares)):
        y = index * row_h + 3
        w = shares[node] / top * plot_w
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{escape(node)}</text>'
                   f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row_h - 7}" rx="2" fill="#6366f1">'
                   f'<title>{escape(node)}: {shares[node]:.1%} of the key space</title></rect>'
                   f'<text x="{left + w + 6:.1f}" y="{y + 13}">{shares[node]:.1%}</text>')
    out.append("</svg>")
    return "".join(out)
