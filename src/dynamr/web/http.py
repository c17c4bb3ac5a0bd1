"""The HTTP shell of a node or the coordinator: who may ask, and how the server starts and stops.

Access needs the cluster's *web token*, an HMAC of the cluster secret (so a holder of the secret can
compute it, and the token reveals nothing of the secret). It is accepted as ``Authorization: Bearer``
(Prometheus' ``authorization`` setting, scripts), or once as ``?token=`` on a page, which sets an
HttpOnly, SameSite=Strict cookie and redirects to the same page without it (``dynamr dashboard`` prints
such a URL). Everything but the static style and script is checked before any handler runs. Responses
forbid framing, sniffing and referrers, and allow scripts and styles from the server only.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Middleware

from dynamr.config import NodeAddress, StoreSettings, check_listen
from dynamr.metrics import Metrics
from dynamr.web.token import web_token

log = logging.getLogger(__name__)

COOKIE = "dynamr_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _auth(token: str) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/static/"):
            return await handler(request)
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _refused()
            if request.method == "GET" and request.path != "/metrics":
                rest = {k: v for k, v in request.query.items() if k != "token"}
                found = web.HTTPFound(location=str(request.rel_url.with_query(rest)))
                found.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
                raise found
            return await handler(request)
        bearer = request.headers.get("Authorization", "")
        cookie = request.cookies.get(COOKIE, "")
        offered = bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else cookie
        if not offered or not hmac.compare_digest(offered.encode(), token.encode()):
            return _refused()
        return await handler(request)

    return check


def _refused() -> web.Response:
    return web.Response(status=401, content_type="text/html", text=(
        "<!doctype html><meta charset=utf-8><title>dynamr: sign in</title>"
        "<link rel=stylesheet href=/static/style.css><main><h1>dynamr</h1>"
        "<p>This page needs the cluster's access token. Run <code>dynamr dashboard</code> (with the "
        "<code>--cluster</code> and secret options you use for this cluster) and open the address it prints."
        "</p></main>"))


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kinds = {"style.css": "text/css", "live.js": "text/javascript"}
    if name not in kinds:
        raise web.HTTPNotFound()
    text = resources.files("dynamr.web").joinpath("static", name).read_text()
    return web.Response(text=text, content_type=kinds[name], headers={"Cache-Control": "max-age=300"})


def metrics_handler(metrics: Metrics) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4"})

    return handle


def make_app(secret: bytes, metrics: Metrics) -> web.Application:
    """An app that checks the token, with ``/metrics`` and the static files; callers add their pages."""
    app = web.Application(middlewares=[_headers, _auth(web_token(secret))], client_max_size=64 * 1024)
    app.router.add_get("/metrics", metrics_handler(metrics))
    app.router.add_get("/static/{name}", _static)
    return app


class HttpServer:
    """An app served on one address until closed."""

    def __init__(self, app: web.Application, on_close: Callable[[], None] | None = None) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        self._on_close = on_close
        self.port = 0

    async def start(self, address: NodeAddress, settings: StoreSettings) -> None:
        """Listen on the address's host and ``http_port`` (the same rule as RPC: no wildcard unless allowed)."""
        check_listen(address, settings)
        await self._runner.setup()
        await web.TCPSite(self._runner, address.host, address.http_port, reuse_address=True).start()
        self.port = address.http_port
        log.info("%s serves HTTP on %s:%d", address.node_id, address.host, self.port)

    async def close(self) -> None:
        if self._on_close is not None:
            self._on_close()  # long-lived responses (event streams) end
        await self._runner.cleanup()
