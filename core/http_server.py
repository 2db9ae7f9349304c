"""Serving FastAPI apps inside our own processes' event loops (gateway, sandboxes, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from fastapi import FastAPI


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host.

    uvicorn 0.54 has no switch for this: Server.serve() wraps itself in capture_signals(),
    which replaces the process's SIGINT/SIGTERM handlers and re-raises captured signals on
    exit. Embedded in someone else's loop, the host decides when to stop (by cancelling).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        # Fail fast if startup (e.g. the database migration) fails instead of waiting forever.
        while not self.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.02)


def make_server(app: FastAPI, host: str, port: int) -> EmbeddedServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        http="httptools",
        # The apps log each request themselves with structlog, without bodies.
        access_log=False,
        log_config=None,
    )
    return EmbeddedServer(config)


def bind_socket(host: str, port: int = 0) -> socket.socket:
    """Bind now (port 0: any free one) and hand the socket to uvicorn: no race for the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serving(app: FastAPI, sock: socket.socket) -> AsyncIterator[EmbeddedServer]:
    """Serve `app` on a bound socket in this event loop for the length of the block.

    For the tests and the benchmarks, which run the gateway and the sandboxes beside their
    Temporal workers: the block starts once the server accepts connections (or raises why it
    could not start), and ends once it has stopped.
    """
    host, port = sock.getsockname()[:2]
    server = make_server(app, host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.wait_started(task)
    try:
        yield server
    finally:
        server.should_exit = True
        await task
