"""The coordinator's dashboard: the cluster, the jobs, and each job's timeline, counters and failures.

Served by the coordinator process on its ``http_port`` (see :mod:`dynamr.web.http` for who may look), it
reads the coordinator's own state directly (job statuses, the attempt history and logs it keeps) and asks
the store's nodes for theirs. Each page is rendered whole on the server; while it is open, a server-sent
event stream (``/live/...``) pushes the page's fragment again whenever it changed, every
:data:`JOB_PERIOD` seconds for jobs and :data:`CLUSTER_PERIOD` for the cluster, and ends with a ``done``
event once a job has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from html import escape
from typing import TYPE_CHECKING

from aiohttp import web

from dynamr.errors import DeadlineExceededError, DynamrError, NotFoundError, UnavailableError
from dynamr.rpc import messages as m
from dynamr.store import membership
from dynamr.store.membership import ClusterState
from dynamr.store.overview import node_rows
from dynamr.web import pages
from dynamr.web.plots import Bar

if TYPE_CHECKING:
    from dynamr.mapreduce.coordinator import Coordinator
    from dynamr.mapreduce.jobstore import StoredAttempt

log = logging.getLogger(__name__)

JOB_PERIOD = 1.0
CLUSTER_PERIOD = 2.0
ENDED = ("succeeded", "failed", "killed")
#: phrases of an attempt that did not fail by itself (its node died, or it was stopped)
LOST = ("lost with node", "killed", "stopped", "superseded")


def bars_of(history: list[StoredAttempt], status: m.JobStatusView, now: float) -> list[Bar]:
    """The timeline's bars: every attempt the job started, with its outcome; an attempt that started while
    another of its task ran is a backup."""
    running = {a.attempt: a for a in status.running_attempts}
    bars: list[Bar] = []
    latest_end: dict[str, float] = {}
    for a in sorted(history, key=lambda a: (a.started, a.attempt)):
        if a.ok:
            outcome = "ok"
        elif a.ended is None:
            outcome = "running" if a.attempt in running else "lost"
        else:
            outcome = "lost" if any(p in a.error for p in LOST) else "failed"
        end = a.ended if a.ended is not None else (None if outcome == "running" else a.started)
        backup = (a.attempt in running and running[a.attempt].speculative) or \
            latest_end.get(a.task, -1.0) > a.started + 1e-6
        latest_end[a.task] = max(latest_end.get(a.task, -1.0), end if end is not None else now)
        bars.append(Bar(node=a.node, task=a.task, attempt=a.attempt.split("#", 1)[-1], start=a.started, end=end,
                        outcome=outcome, backup=backup, detail=a.error[:200]))
    return bars


class Dashboard:
    def __init__(self, coordinator: Coordinator, app: web.Application) -> None:
        self.coordinator = coordinator
        self.closing = False
        routes = app.router
        routes.add_get("/", self._page(self._cluster, "Cluster", "cluster", "/live/cluster"))
        routes.add_get("/jobs", self._page(self._jobs, "Jobs", "jobs", "/live/jobs"))
        routes.add_get("/jobs/{name}", self._job_page)
        routes.add_get("/live/cluster", lambda r: self._live(r, self._cluster, CLUSTER_PERIOD))
        routes.add_get("/live/jobs", lambda r: self._live(r, self._jobs, JOB_PERIOD))
        routes.add_get("/live/jobs/{name}", self._job_live)

    def close(self) -> None:
        """End the event streams (the server is stopping)."""
        self.closing = True

    # --- what each page shows --------------------------------------------------------------------------

    async def _cluster(self) -> str:
        client = self.coordinator.client
        try:
            view = await client.cluster()
            statuses = await client.node_status()
        except DynamrError as exc:
            return f"<h1>Cluster</h1><p>No node of the store answered: {escape(str(exc))}</p>"
        state = await self._membership(list(view.nodes.values()))
        html = pages.cluster(node_rows(view, statuses, state), state, view.ring.ownership(), view.n)
        refusal = self.coordinator.claims.refusal()
        if refusal is not None:  # the one thing an operator must act on comes first
            html = f'<p class="failure">{escape(refusal[:1].upper() + refusal[1:])}.</p>{html}'
        return html

    async def _membership(self, addresses: list[tuple[str, int]]) -> ClusterState | None:
        for address in addresses:
            with contextlib.suppress(UnavailableError, DeadlineExceededError):
                reply = await self.coordinator.client.call_node(address, m.ClusterAdmin(action="show"), 3.0)
                if isinstance(reply, m.ClusterStateReply):
                    return membership.from_record(reply.state)
        return None

    async def _jobs(self) -> str:
        return pages.jobs(self.coordinator.statuses(), older=len(self.coordinator.core.older))

    def _job(self, name: str) -> tuple[str, bool]:
        """The job's fragment, and whether the job has ended."""
        coordinator = self.coordinator
        status = coordinator.status_of(name)
        now = time.time()
        bars = bars_of(coordinator.store.history(name), status, now)
        html = pages.job(status, bars, coordinator.store.logs(name), coordinator.task_inputs(name), now)
        return html, status.state in ENDED

    # --- pages and streams -------------------------------------------------------------------------------

    def _page(self, render: Callable[[], Awaitable[str]], title: str, here: str,
              live: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=pages.layout(title, here, await render(), live), content_type="text/html")

        return handle

    async def _job_page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            html, _ = self._job(name)
        except NotFoundError:
            return web.Response(status=404, text=pages.not_found(f"No job named {name!r}."), content_type="text/html")
        return web.Response(text=pages.layout(f"job {name}", "jobs", html, f"/live/jobs/{name}"),
                            content_type="text/html")

    async def _job_live(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        ended = False

        async def render() -> str:
            nonlocal ended
            html, ended = self._job(name)
            return html

        return await self._live(request, render, JOB_PERIOD, lambda: ended)

    async def _live(self, request: web.Request, render: Callable[[], Awaitable[str]], period: float,
                    ended: Callable[[], bool] = lambda: False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        last = None
        try:
            while not self.closing:
                try:
                    html = await render()
                except NotFoundError as exc:
                    html = f"<p>{escape(str(exc))}</p>"
                if html != last:
                    await response.write(_event(html))
                    last = html
                if ended():
                    await response.write(b"event: done\ndata: ended\n\n")
                    break
                await asyncio.sleep(period)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


def _event(html: str) -> bytes:
    """One server-sent event carrying ``html`` (each line a ``data:`` field)."""
    return ("".join(f"data: {line}\n" for line in html.replace("\r", "").split("\n")) + "\n").encode()
