"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from callgate import __version__
from callgate.api import (
    agents,
    calls,
    carriers,
    contacts,
    dashboard,
    demo,
    ops,
    phone_calls,
    problems,
    providers,
    recordings,
)
from callgate.api import analysis as analysis_api
from callgate.api import webhooks as webhooks_api
from callgate.api.dialects.oneinbox import routes as oneinbox
from callgate.api.dialects.verbex import routes as verbex
from callgate.api.dialects.vocode import routes as vocode
from callgate.api.dialects.voicehub import routes as voicehub
from callgate.api.dialects.voxworks import routes as voxworks
from callgate.api.middleware import BodyLimit, BrowserCORS, NodeHeader, PublicAssets, RejectNUL, RequestLog
from callgate.config import Environment, Settings
from callgate.realtime.sip_ws import endpoint as sip_endpoint
from callgate.realtime.twilio import routes as twilio_routes
from callgate.realtime.webrtc import endpoint as webrtc_endpoint
from callgate.realtime.websocket import endpoint as realtime
from callgate.runtime import Runtime

BROWSER_PATHS = ("/v1/web-calls/token", "/dialects/oneinbox/v1/web-calls/token")


def web_dir() -> Path | None:
    """The static browser assets: the SDK, the widget and the demo page."""
    for candidate in (Path(__file__).parent / "web", Path(__file__).resolve().parents[2] / "web"):
        if (candidate / "index.html").exists():
            return candidate
    return None


def _drain_on_sigterm(runtime: Runtime) -> Callable[[], None]:
    """When uvicorn serves this app, its SIGTERM handler stops the server at once (WebSocket calls are
    cut). Put a drain in front of it: the first SIGTERM drains the node (``Runtime.drain``), then hands
    the signal to uvicorn; a second one goes to uvicorn straight away. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    stop_server = signal.getsignal(signal.SIGTERM)
    if not isinstance(getattr(stop_server, "__self__", None), uvicorn.Server) or not callable(stop_server):
        return lambda: None  # not served by uvicorn (tests driving the app in-process)
    loop = asyncio.get_running_loop()
    drains: list[asyncio.Task[None]] = []
    signalled = False

    async def drain_then_stop(sig: int) -> None:
        try:
            await runtime.drain()
        finally:
            stop_server(sig, None)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        nonlocal signalled
        if signalled:
            stop_server(sig, frame)
            return
        signalled = True
        loop.call_soon_threadsafe(lambda: drains.append(loop.create_task(drain_then_stop(sig))))

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, stop_server)

    signal.signal(signal.SIGTERM, on_sigterm)
    return restore


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        restore = _drain_on_sigterm(runtime)
        try:
            yield
        finally:
            restore()
            await runtime.stop()

    app = FastAPI(
        title="callgate",
        version=__version__,
        summary="Self-hosted web calls for voice AI agents",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.call_starter = runtime.call_starter  # what the real-time endpoints use of the node
    app.state.twilio = runtime.twilio
    problems.install(app)
    webhooks_api.install(runtime)
    for router in (
        agents.router,
        calls.router,
        recordings.router,
        contacts.router,
        carriers.router,
        phone_calls.router,
        providers.router,
        ops.router,
        realtime.router,
        webhooks_api.router,
        analysis_api.router,
        webrtc_endpoint.router,
        sip_endpoint.router,
        twilio_routes.router,
        voxworks.router,
        voicehub.router,
        verbex.router,
        vocode.router,
        oneinbox.router,
    ):
        app.include_router(router)
    dashboard.install(app)
    if runtime.settings.env is Environment.DEVELOPMENT:
        app.include_router(demo.router)

    if (web := web_dir()) is not None:
        app.mount("/static", StaticFiles(directory=web), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(web / "index.html")

        @app.get("/widget.js", include_in_schema=False)
        async def widget() -> FileResponse:
            """The embeddable call widget (docs/clients.md)."""
            return FileResponse(
                web / "widget.js",
                media_type="text/javascript; charset=utf-8",
                headers={"Cache-Control": "public, max-age=300"},
            )

        app.add_middleware(PublicAssets, paths=lambda p: p == "/widget.js" or p.startswith("/static/"))

    app.add_middleware(
        BrowserCORS,
        paths=lambda p: p.startswith(BROWSER_PATHS) or p.endswith("/webrtc/offer"),
        origin_allowed=runtime.origins.allows,
    )
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(RejectNUL)
    app.add_middleware(RequestLog, metrics=runtime.metrics)
    app.add_middleware(NodeHeader, node_id=runtime.node_id)
    return app
