"""Run an ASGI app under a real uvicorn server on 127.0.0.1 (a free port) inside the test's event loop.

Tests that must speak real HTTP (the provider sandbox, a webhook receiver, adapters with their real
transport) use this instead of an in-process transport: the bytes go over a socket, as in production.

    async with serve_http(app) as base_url:
        ...  # "http://127.0.0.1:54321"
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (pytest owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@asynccontextmanager
async def serve_http(
    app: ASGIApp, *, lifespan: str = "on", startup_timeout_s: float = 10.0
) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL (no trailing slash)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        loop="none",  # the running loop: the test's own
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(startup_timeout_s):
            while not server.started:
                if task.done():
                    task.result()  # re-raises the startup failure
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["serve_http"]
