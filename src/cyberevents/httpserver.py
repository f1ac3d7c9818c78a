"""Serve an aiohttp application on this event loop (the health server, the reference agent)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application, host: str, port: int, backlog: int = 128) -> AsyncIterator[str]:
    """Run `app` until exit; yields its base URL (port 0 picks a free port). `backlog`: connections the kernel
    holds before they are accepted (capped by net.core.somaxconn)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
