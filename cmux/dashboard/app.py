"""The dashboard's ASGI app: ``create_app(cfg, token)``.

Routes (docs/DASHBOARD.md): the pages (GET, HTML), their data as JSON
(GET /api/...), the live stream (GET /api/stream, SSE) and the actions
(POST /api/send, /api/approve/NAME, /api/deny/NAME, /api/kill/NAME).

Invariants:

- Every request without the run's token gets 403, static files and the
  stream included. The token is accepted as ``?token=``, the header
  ``X-Cmux-Token`` or the cookie ``cmux_token`` (set HttpOnly,
  SameSite=Strict by a page loaded with the query token).
- An action is a POST with the header: a cookie alone never acts (no CSRF),
  nor does a query token (it may sit in a history or a log).
- An action calls the same core function as the CLI's command, as the
  person (``human``), and adds an ``action`` event (by human, via dashboard).
- Names from a request are checked before anything is read (views.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cmux import events
from cmux.config import Config
from cmux.dashboard import pages, views
from cmux.dashboard.live import Hub
from cmux.errors import CmuxError, UnknownAgent

STATIC = Path(__file__).parent / "static"
COOKIE = "cmux_token"
HEADER = "x-cmux-token"
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream


class TokenGate:
    """ASGI middleware: 403 unless the request carries the token (see above)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    def _ok(self, given: str | None) -> bool:
        return bool(given) and secrets.compare_digest(str(given), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req = Request(scope)
        header = req.headers.get(HEADER)
        if req.method not in ("GET", "HEAD"):
            allowed = self._ok(header)
            hint = "actions need a POST with the header X-Cmux-Token (a cookie is not enough)"
        else:
            allowed = any(
                self._ok(v)
                for v in (req.query_params.get("token"), header, req.cookies.get(COOKIE))
            )
            hint = "open the URL `cmux dashboard --url` prints (it carries the token)"
        if not allowed:
            resp: Response = JSONResponse({"error": "forbidden: no valid token", "hint": hint}, 403)
            await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(cfg: Config, token: str) -> Starlette:
    """The dashboard of the project ``cfg``, guarded by ``token``."""
    hub = Hub(cfg)

    def page(request: Request, name: str, title: str, body: str) -> HTMLResponse:
        resp = HTMLResponse(pages.layout(name, title, body, token=token))
        if request.query_params.get("token") == token:
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    async def run(fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    # -- pages ------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        # The URL printed is /?token=T: the team page gets the query on (and sets the cookie).
        query = "?" + request.url.query if request.url.query else ""
        return RedirectResponse("/team" + query, 307)

    async def team_page(request: Request) -> Response:
        from cmux.status import status_header

        def build() -> str:
            # The monitor reconciles the registry with tmux; the page shows it as it is.
            rows = views.status(cfg, reconcile=False, feed=hub.feed)
            return pages.team(rows, views.previews(cfg, rows, hub.tmux), status_header(cfg))

        return page(request, "team", "team", await run(build))

    async def agent_page(request: Request) -> Response:
        name = request.path_params["name"]

        def build() -> str:
            views.check_name(name)
            rows = views.status(cfg, names=[name], reconcile=False, feed=hub.feed)
            if not rows:
                raise UnknownAgent(f"no agent named {name!r}", "see /team")
            try:
                ctx = views.context(cfg, name)
            except views.Outside:
                ctx = "(the context file is outside the data root: not shown)"
            try:
                scr = views.screen(cfg, name, hub.tmux)
            except views.Outside:
                scr = "(the saved screen is outside the data root: not shown)"
            return pages.agent(name, rows[0], scr, ctx, views.history(cfg, name))

        return page(request, "team", name, await run(build))

    async def mail_page(request: Request) -> Response:
        agent = request.query_params.get("agent") or None
        kind = request.query_params.get("kind") or None

        def build() -> str:
            return pages.mail(
                views.mail(cfg, agent=agent, kind=kind),
                views.deadletters(cfg),
                views.mail_names(cfg),
                agent,
                kind,
            )

        return page(request, "mail", "mail", await run(build))

    async def journal_page(request: Request) -> Response:
        q = request.query_params.get("q", "")
        return page(request, "journal", "journal", pages.journal(await run(views.journal, cfg, q)))

    async def health_page(request: Request) -> Response:
        return page(request, "health", "health", pages.health(await run(views.health, cfg)))

    async def cost_page(request: Request) -> Response:
        return page(request, "cost", "cost", pages.cost(await run(views.cost, cfg)))

    async def events_page(request: Request) -> Response:
        return page(request, "events", "events", pages.events_page(views.recent_events(cfg)))

    # -- JSON -------------------------------------------------------------------------

    async def api_status(request: Request) -> Response:
        return JSONResponse(await run(views.status, cfg))

    async def api_mail(request: Request) -> Response:
        agent = request.query_params.get("agent") or None
        kind = request.query_params.get("kind") or None
        msgs = await run(views.mail, cfg, agent=agent, kind=kind)
        return JSONResponse({"messages": msgs, "deadletter": views.deadletters(cfg)})

    async def api_events(request: Request) -> Response:
        return JSONResponse(views.recent_events(cfg))

    async def api_journal(request: Request) -> Response:
        return JSONResponse(await run(views.journal, cfg, request.query_params.get("q", "")))

    async def api_health(request: Request) -> Response:
        return JSONResponse(await run(views.health, cfg))

    async def api_cost(request: Request) -> Response:
        return JSONResponse(await run(views.cost, cfg))

    async def api_screen(request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse({"name": name, "screen": await run(views.screen, cfg, name, hub.tmux)})

    async def api_context(request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse({"name": name, "context": await run(views.context, cfg, name)})

    # -- actions ----------------------------------------------------------------------

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def acted(action: str, name: str, **fields: Any) -> None:
        events.record(
            cfg.data, "action", name, action=action, by="human", via="dashboard", **fields
        )

    async def api_send(request: Request) -> Response:
        from cmux.ops import agents, mail

        body = await body_of(request)
        to, text = body.get("to"), body.get("body")
        if not isinstance(to, str) or not isinstance(text, str) or not text.strip():
            return JSONResponse(
                {
                    "error": "a send needs a recipient and a body",
                    "hint": '{"to": "w1", "body": "..."}',
                },
                400,
            )

        def act() -> dict[str, Any]:
            msg = mail.send(cfg, to=to, body=text, sender="human")
            acted("send", to, id=msg.id)
            with contextlib.suppress(CmuxError):
                agents.check(cfg)
            return {"ok": True, "id": msg.id, "to": to}

        return JSONResponse(await run(act))

    async def api_answer(request: Request) -> Response:
        from cmux.errors import UsageError
        from cmux.ops import agents

        name = views.check_name(request.path_params["name"])
        yes = request.url.path.startswith("/api/approve/")

        def act() -> dict[str, Any]:
            host = views.elsewhere(cfg, name)
            if host:  # its pane is there: never a pane id of this host's tmux
                verb = "approve" if yes else "deny"
                raise UsageError(
                    f"{name} lives on host {host}: its dialog is answered there",
                    f"`cmux {verb} {name}` on {host} (or `cmux attach {name}` there)",
                )
            done = agents.answer(cfg, name, yes=yes, by="human")
            acted("approve" if yes else "deny", name, dialog=done.screen.value)
            return {"ok": True, "name": name, "dialog": done.screen.value, "state": done.state}

        return JSONResponse(await run(act))

    async def api_kill(request: Request) -> Response:
        from cmux.agents import registry
        from cmux.errors import UsageError
        from cmux.ops import agents

        name = views.check_name(request.path_params["name"])

        def act() -> dict[str, Any]:
            host = views.elsewhere(cfg, name)
            if host and not registry.exists(cfg.data, name):
                # Not placed from here: this host has no record to end it by
                # (one placed from here is killed there over ssh, as `cmux kill`).
                raise UsageError(
                    f"{name} lives on host {host} and was not started from this host",
                    f"`cmux kill {name}` on {host}",
                )
            if registry.get(cfg.data, name).role == "supervisor":
                raise UsageError(
                    "the dashboard does not kill the supervisor",
                    f"`cmux kill {name} --force` if you mean it; `cmux stop` ends everything",
                )
            r = agents.kill(cfg, name, caller="human")
            acted("kill", name)
            return {"ok": True, **vars(r)}

        return JSONResponse(await run(act))

    # -- live -------------------------------------------------------------------------

    async def api_stream(request: Request) -> Response:
        q = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n: cmux live\n\n"
                while True:
                    try:
                        batch = await asyncio.wait_for(q.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if batch is None:
                        return
                    yield "".join(
                        f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
                        for kind, data in batch
                    )
            finally:
                hub.unsubscribe(q)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- errors -----------------------------------------------------------------------

    async def on_cmux_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CmuxError)
        if isinstance(exc, views.BadName):
            code = 400
        elif isinstance(exc, (views.Outside, UnknownAgent)):
            code = 404
        else:
            code = 409 if request.method == "POST" else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message, "hint": exc.hint}, code)
        return PlainTextResponse(f"{exc.message}\n{exc.hint or ''}", code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(hub.close)

    routes = [
        Route("/", index),
        Route("/team", team_page),
        Route("/agent/{name}", agent_page),
        Route("/mail", mail_page),
        Route("/journal", journal_page),
        Route("/health", health_page),
        Route("/cost", cost_page),
        Route("/events", events_page),
        Route("/api/status", api_status),
        Route("/api/mail", api_mail),
        Route("/api/events", api_events),
        Route("/api/journal", api_journal),
        Route("/api/health", api_health),
        Route("/api/cost", api_cost),
        Route("/api/agent/{name}/screen", api_screen),
        Route("/api/agent/{name}/context", api_context),
        Route("/api/stream", api_stream),
        Route("/api/send", api_send, methods=["POST"]),
        Route("/api/approve/{name}", api_answer, methods=["POST"]),
        Route("/api/deny/{name}", api_answer, methods=["POST"]),
        Route("/api/kill/{name}", api_kill, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={CmuxError: on_cmux_error},
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.add_middleware(TokenGate, token=token)
    return app
