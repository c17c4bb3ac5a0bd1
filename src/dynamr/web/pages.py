"""The dashboard's pages as HTML: a layout, and the fragment of each page that live updates replace.

Every string that comes from a user or a node (job names, paths, errors, tracebacks, printed output) goes
through :func:`html.escape`; numbers are formatted here. No inline scripts or styles (the content security
policy forbids them): pictures are SVG with attributes (:mod:`dynamr.web.plots`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from dynamr.rpc import messages as m
from dynamr.store.membership import ClusterState
from dynamr.store.overview import NodeRow, anti_entropy, handoff
from dynamr.units import format_duration, format_size
from dynamr.web import plots

#: most failures and tasks one job page lists
FAILURES_SHOWN = 20
TASKS_SHOWN = 500


def layout(title: str, here: str, body: str, live: str = "") -> str:
    nav = "".join(f'<a href="{href}"{" class=here" if key == here else ""}>{label}</a>'
                  for key, href, label in (("cluster", "/", "Cluster"), ("jobs", "/jobs", "Jobs")))
    badge = '<span id="live-badge" class="badge">connecting</span>' if live else ""
    holder = f'<div id="live" data-live="{escape(live)}">{body}</div>' if live else body
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · dynamr</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="/static/style.css"></head><body>'
            f'<header><span class="brand">dynamr</span>{nav}<span class="muted">{badge}</span></header>'
            f'<main>{holder}</main><script src="/static/live.js"></script></body></html>')


def state_badge(state: str) -> str:
    return f'<span class="state {escape(state.replace(" ", "-"))}">{escape(state)}</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- the cluster ------------------------------------------------------------------------------------


def cluster(rows: list[NodeRow], state: ClusterState | None, shares: dict[str, float], n: int) -> str:
    up = sum(1 for row in rows if row.status is not None)
    keys = sum(row.status.keys for row in rows if row.status is not None)
    hints = sum(row.status.hints for row in rows if row.status is not None)
    cards = (f'<div class="cards"><div class="card"><div class="muted">nodes up</div><div class="big">{up} of '
             f'{len(rows)}</div></div><div class="card"><div class="muted">replication</div><div class="big">'
             f'N={n}</div></div><div class="card"><div class="muted">key copies</div><div class="big">{keys:,}'
             f'</div></div><div class="card"><div class="muted">hints waiting</div><div class="big">{hints:,}'
             f"</div></div></div>")
    table_rows = []
    for row in rows:
        st, report = row.status, row.report
        record = report.record if report else None
        state_text = row.state if row.state != "unreachable" else f"unreachable (up for {', '.join(row.up_for)})"
        table_rows.append([
            escape(row.node), escape(row.address), state_badge(state_text), escape(row.member),
            escape(st.epoch if st else record.epoch if record else ""),
            f"{st.keys:,}" if st else (f"{record.keys:,}" if record else ""),
            f"{st.chunks:,}" if st else "", f"{st.hints:,}" if st else (f"{record.hints:,}" if record else ""),
            format_size(record.disk_free) if record and record.disk_free else "",
            escape(", ".join(st.down if st else record.down if record else ())) or "-",
            f"{report.age:.1f}s ago" if report else "",
            escape(anti_entropy(st)) if st else "", escape(handoff(st)) if st else ""])
    nodes = _table(("node", "address", "state", "member", "epoch", "keys", "chunks", "hints", "disk free",
                    "sees down", "last report", "anti-entropy", "handoff"), table_rows, numeric=(5, 6, 7))
    membership = ""
    if state is not None and (state.moving or state.staged):
        staged = ", ".join(f"{c.action} {c.node_id}" for c in state.staged) or "none"
        membership = (f"<h2>Membership change</h2><p>phase <b>{escape(state.phase or 'staged')}</b>; "
                      f"staged: {escape(staged)}; acknowledged by {escape(', '.join(state.acks) or 'none yet')}"
                      "</p>")
    return (f"<h1>Cluster</h1>{cards}{nodes}{membership}<h2>Ring ownership</h2>"
            f"<p class=muted>Share of the key space each node holds as first owner ({n} copies of each key "
            f"in all).</p>{plots.ownership(shares)}")


# --- jobs -------------------------------------------------------------------------------------------


def _output_bytes(status: m.JobStatusView) -> int:
    return sum(v for g, name, v in status.counters if g == "dynamr" and name == "output bytes")


def jobs(statuses: Sequence[m.JobStatusView], older: int = 0) -> str:
    """The jobs page: ``statuses`` in full, and a line for the ``older`` finished jobs not shown."""
    if not statuses:
        return "<h1>Jobs</h1><p>No job yet. Run one with <code>dynamr run JOB.py INPUT -o OUTPUT --local-cluster" \
               "</code>.</p>"
    rows = []
    for st in sorted(statuses, key=lambda s: (s.started or float("inf"), s.name), reverse=True):
        done, total = st.maps_done + st.reduces_done, st.maps + st.reduces
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.started)) if st.started else "-"
        out = _output_bytes(st)
        rows.append([f'<a href="/jobs/{quote(st.name)}">{escape(st.name)}</a>', state_badge(st.state),
                     f"{plots.progress(done, total)} {done}/{total}", f"{st.step + 1}/{st.steps}",
                     str(st.running), format_duration(st.seconds),
                     format_size(st.input_bytes) if st.input_bytes else "-", format_size(out) if out else "-", started])
    more = (f"<p class=muted>and {older} older finished job(s): <code>dynamr jobs</code> lists them, "
            "<code>/jobs/NAME</code> shows one</p>") if older else ""
    return "<h1>Jobs</h1>" + _table(("job", "state", "tasks done", "step", "running", "duration", "input",
                                     "output", "started"), rows, numeric=(4, 5, 6, 7)) + more


def job(status: m.JobStatusView, bars: list[plots.Bar], logs: Sequence[m.AttemptLog],
        inputs: dict[str, tuple[m.SplitRef, ...]], now: float) -> str:
    st = status
    out = _output_bytes(st)
    cards = "".join(
        f'<div class="card"><div class="muted">{escape(label)}</div><div class="big">{value}</div></div>'
        for label, value in (
            ("state", state_badge(st.state)), ("duration", format_duration(st.seconds)),
            ("step", f"{st.step + 1} of {st.steps}"),
            ("maps", f"{plots.progress(st.maps_done, st.maps, 90)} {st.maps_done}/{st.maps}"),
            ("reduces", f"{plots.progress(st.reduces_done, st.reduces, 90)} {st.reduces_done}/{st.reduces}"),
            ("running", str(st.running)), ("input", format_size(st.input_bytes) if st.input_bytes else "-"),
            ("output", format_size(out) if out else "-"), ("backups", str(st.speculative_attempts))))
    parts = [f"<h1>Job {escape(st.name)}</h1><p class=muted>output: {escape(st.output)}</p>",
             f'<div class="cards">{cards}</div>']
    if st.phases:
        parts.append("<h2>Phases</h2>" + _table(("step", "phase", "tasks done", "running", "failed attempts",
                                                  "input read"), [
            [str(ph.step + 1), ph.kind, f"{plots.progress(ph.done, ph.tasks)} {ph.done}/{ph.tasks}", str(ph.running),
             str(ph.failed), f"{format_size(ph.bytes_read)} of {format_size(ph.bytes)}" if ph.bytes else "-"]
            for ph in st.phases], numeric=(3, 4)))
    if st.excluded_nodes:
        parts.append(f"<p>Nodes excluded after repeated failures: {escape(', '.join(st.excluded_nodes))}</p>")
    if st.error is not None:
        parts.append(_failure_box(st.error))
    parts.append("<h2>Task timeline</h2>")
    if bars:
        legend = "".join(f'<span><i class="{k}"></i>{label}</span>' for k, label in (
            ("ok", "succeeded"), ("failed", "failed"), ("lost", "lost or stopped"), ("running", "running"),
            ("backup", "backup attempt")))
        parts.append(f'<div class="legend">{legend}</div>'
                     f"{plots.timeline(bars, st.started or min(b.start for b in bars), now)}")
    else:
        parts.append("<p class=muted>No attempt has started yet.</p>")
    failures = [log for log in logs if not log.ok][-FAILURES_SHOWN:]
    if failures:
        parts.append(f"<h2>Failed attempts ({len([log for log in logs if not log.ok])})</h2>")
        parts.extend(_attempt_box(log) for log in failures)
    if st.counters:
        parts.append("<h2>Counters</h2>" + _table(("group", "counter", "value"), [
            [escape(g), escape(n), f"{v:,}"] for g, n, v in st.counters], numeric=(2,)))
    parts.append(_tasks(bars, inputs, logs))
    return "".join(parts)


def _failure_box(error: m.JobFailure) -> str:
    split = error.input
    where = f" on {split.path} bytes {split.start:,}-{split.end:,}" if split else ""
    text = f"<b>{escape(error.task or '?')}</b>{escape(where)}, attempt {escape(error.attempt or '?')} on node " \
           f"{escape(error.node or '?')}: {escape(error.error)}"
    return (f'<div class="failure"><p>{text}</p>'
            + (f"<pre>{escape(error.traceback)}</pre>" if error.traceback else "")
            + (f"<p>What it printed:</p><pre>{escape(error.output)}</pre>" if error.output else "") + "</div>")


def _attempt_box(log: m.AttemptLog) -> str:
    head = (f"<b>{escape(log.task.split('/', 1)[-1])}</b> attempt {escape(log.attempt.split('#', 1)[-1])} on "
            f"{escape(log.node)}, {log.ended - log.started:.1f}s: {escape(log.error)}")
    return (f'<div class="failure"><p>{head}</p>'
            + (f"<pre>{escape(log.traceback)}</pre>" if log.traceback else "")
            + (f"<p>What it printed:</p><pre>{escape(log.output)}</pre>" if log.output else "") + "</div>")


def _tasks(bars: list[plots.Bar], inputs: dict[str, tuple[m.SplitRef, ...]], logs: Sequence[m.AttemptLog]) -> str:
    by_task: dict[str, list[plots.Bar]] = {}
    for bar in bars:
        by_task.setdefault(bar.task, []).append(bar)
    printed = {log.task for log in logs if log.output}
    tasks = sorted(set(by_task) | set(inputs), key=_task_order)
    if not tasks:
        return ""
    rows = []
    for task in tasks[:TASKS_SHOWN]:
        attempts = by_task.get(task, [])
        outcomes = {b.outcome for b in attempts}
        state = "succeeded" if "ok" in outcomes else "running" if "running" in outcomes else \
            "failed" if "failed" in outcomes else "waiting" if not attempts else "lost"
        where = _where(inputs.get(task, ()))
        took = [b.end - b.start for b in attempts if b.outcome == "ok" and b.end is not None]
        rows.append([escape(task.split("/", 1)[-1]), state_badge(state), where, str(len(attempts)),
                     f"{min(took):.2f}s" if took else "-", escape(", ".join(sorted({b.node for b in attempts}))),
                     "yes" if task in printed else ""])
    more = f"<p class=muted>{len(tasks) - TASKS_SHOWN} more tasks not listed.</p>" if len(tasks) > TASKS_SHOWN else ""
    return "<h2>Tasks</h2>" + _table(("task", "state", "input split", "attempts", "took", "nodes", "printed"),
                                     rows, numeric=(3, 4)) + more


def _where(splits: tuple[m.SplitRef, ...]) -> str:
    """A map's input: its byte range, or how many small files it packs (the first named)."""
    if len(splits) == 1:
        return f"{escape(splits[0].path)} bytes {splits[0].start:,}-{splits[0].end:,}"
    if splits:
        size = sum(s.end - s.start for s in splits)
        return f"{len(splits):,} files, {size:,} bytes ({escape(splits[0].path)}, ...)"
    return "-"


def _task_order(task: str) -> tuple[int, str, int, str]:
    """Tasks in a job's order: by step, maps before reduces, by number (``s0-m10`` after ``s0-m9``)."""
    found = re.fullmatch(r"s(\d+)-([mr])(\d+)", task.rsplit("/", 1)[-1])
    return (int(found[1]), found[2], int(found[3]), "") if found else (0, "", 0, task)


def not_found(what: str) -> str:
    return layout("not found", "", f"<h1>Not found</h1><p>{escape(what)}</p><p><a href=/jobs>All jobs</a></p>")
