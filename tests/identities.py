"""The people of the tests, signed in at the session's real local issuer.

Tokens come from the issuer's token endpoint (password grant), exactly as the CLI gets them;
nothing here signs a token itself (tests/test_tokens.py forges hostile ones on purpose).
"""

from __future__ import annotations

import time

import httpx
from pydantic import SecretStr

from sandboxes.identity_directory import (
    CLI_CLIENT_ID,
    DEMO_PASSWORD,
    Directory,
    User,
    demo_directory,
)
from schemas.identity import Role

# The institution of tests/gateway_requests.py and another one whose ids must not leak.
OWN, OTHER = "SYN-UNI", "SYN-OTHER"
PANEL = ["expert-a", "expert-b", "expert-c"]


def _user(username: str, role: Role, institution: str | None = None) -> User:
    return User(
        username=username,
        password=SecretStr(DEMO_PASSWORD),
        subject=username,
        name=f"{username} (synthetic)",
        roles=[role],
        institution=institution,
    )


def test_directory() -> Directory:
    """The demo's people plus the tests' own institutions and panel."""
    demo = demo_directory()
    users = [
        _user("officer.syn-uni", Role.TTO_OFFICER, OWN),
        _user("approver.syn-uni", Role.APPROVER, OWN),
        _user("officer.syn-other", Role.TTO_OFFICER, OTHER),
        _user("approver.syn-other", Role.APPROVER, OTHER),
        *(_user(e, Role.EXPERT) for e in [*PANEL, "expert-x"]),
    ]
    return Directory(users=[*demo.users, *users], clients=demo.clients)


class Tokens:
    """Access tokens per username, fetched from the issuer and reused until shortly before
    they expire (a whole session outlives the issuer's 15-minute access tokens)."""

    # Fetch a new token when the cached one has less than this left.
    MARGIN_SECONDS = 120.0

    def __init__(self, http: httpx.AsyncClient, issuer: str) -> None:
        self.http = http
        self.issuer = issuer.rstrip("/")
        self._cache: dict[str, tuple[str, float]] = {}

    async def token(self, username: str) -> str:
        cached = self._cache.get(username)
        if cached is None or cached[1] - time.monotonic() < self.MARGIN_SECONDS:
            response = await self.http.post(
                f"{self.issuer}/token",
                data={
                    "grant_type": "password",
                    "client_id": CLI_CLIENT_ID,
                    "username": username,
                    "password": DEMO_PASSWORD,
                },
            )
            response.raise_for_status()
            body = response.json()
            expires = time.monotonic() + float(body.get("expires_in", 0))
            cached = self._cache[username] = (str(body["access_token"]), expires)
        return cached[0]

    async def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(username)}"}
