"""The embedded OIDC issuer over real loopback HTTP, its tokens verified the way the gateway
will verify them: PyJWT against the issuer's discovery document and JWKS."""

from __future__ import annotations

import base64
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from pydantic import SecretStr, ValidationError

from cli.samples import INSTITUTIONS, scenario
from core.http_server import bind_socket, serving
from sandboxes.identity_directory import (
    CLI_CLIENT_ID,
    DEMO_PASSWORD,
    DEMO_SCRIPTS_SECRET,
    SCRIPTS_CLIENT_ID,
    SUBJECT_PATTERN,
    Directory,
    User,
    demo_directory,
)
from sandboxes.identity_provider import (
    KeyRing,
    TokenError,
    create_identity_provider_app,
    fetch_token,
)
from schemas.identity import Role

AUDIENCE = "achievements-gateway"
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}
DIRECTORY = demo_directory()


@dataclass
class Issuer:
    url: str
    http: httpx.AsyncClient

    async def jwks(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.url}/jwks")
        response.raise_for_status()
        return dict(response.json())

    async def verify(self, token: str, audience: str = AUDIENCE) -> dict[str, Any]:
        """As a resource server does: the kid's key from a freshly fetched JWKS."""
        kid = jwt.get_unverified_header(token)["kid"]
        key = jwt.PyJWKSet.from_dict(await self.jwks())[kid]
        claims: dict[str, Any] = jwt.decode(
            token, key=key, algorithms=["RS256"], audience=audience, issuer=self.url
        )
        return claims

    async def post(self, form: dict[str, str], **kwargs: Any) -> httpx.Response:
        return await self.http.post(f"{self.url}/token", data=form, **kwargs)


async def _start_issuer(keys: KeyRing) -> AsyncIterator[Issuer]:
    sock = bind_socket("127.0.0.1")
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_identity_provider_app(url, DIRECTORY, keys, audience=AUDIENCE)
    async with serving(app, sock), httpx.AsyncClient(timeout=10.0) as http:
        yield Issuer(url, http)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def issuer() -> AsyncIterator[Issuer]:
    async for running in _start_issuer(KeyRing()):
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def own_issuer(tmp_path: Path) -> AsyncIterator[tuple[Issuer, Path]]:
    """An issuer of its own (its keys rotate), keys persisted under tmp_path."""
    path = tmp_path / "issuer-keys.json"
    async for running in _start_issuer(KeyRing(path)):
        yield running, path


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def _password_login(issuer: Issuer, username: str, scope: str | None = None) -> Any:
    return await fetch_token(
        issuer.http,
        issuer.url,
        client_id=CLI_CLIENT_ID,
        username=username,
        password=DEMO_PASSWORD,
        scope=scope,
    )


# ---------------------------------------------------------------- discovery and keys


async def test_discovery_names_the_endpoints_and_what_is_supported(issuer: Issuer) -> None:
    response = await issuer.http.get(f"{issuer.url}/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == issuer.url
    assert doc["jwks_uri"] == f"{issuer.url}/jwks"
    assert doc["token_endpoint"] == f"{issuer.url}/token"
    assert set(doc["grant_types_supported"]) == {"client_credentials", "password", "refresh_token"}
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert "openid" in doc["scopes_supported"]
    # The advertised JWKS is what a verifier fetches.
    assert (await issuer.http.get(doc["jwks_uri"])).status_code == 200


async def test_jwks_publishes_public_signing_keys_only(issuer: Issuer) -> None:
    keys = (await issuer.jwks())["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert key["kid"]
        assert not PRIVATE_JWK_MEMBERS & key.keys()


# ---------------------------------------------------------------- client credentials


async def test_client_credentials_with_basic_auth_gives_a_service_account_token(
    issuer: Issuer,
) -> None:
    response = await issuer.post(
        {"grant_type": "client_credentials"}, headers=_basic(SCRIPTS_CLIENT_ID, DEMO_SCRIPTS_SECRET)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    # RFC 6749 4.4.3: no refresh token for client credentials.
    assert "refresh_token" not in body and "id_token" not in body

    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = await issuer.verify(body["access_token"])
    assert claims["sub"] == "svc.achievements-scripts"
    assert claims["client_id"] == SCRIPTS_CLIENT_ID
    assert claims["roles"] == [Role.REGULATOR.value]
    assert claims["institution"] == "SHSTC"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["nbf"] <= claims["iat"]
    assert claims["jti"]


async def test_client_credentials_with_post_auth(issuer: Issuer) -> None:
    response = await issuer.post(
        {
            "grant_type": "client_credentials",
            "client_id": SCRIPTS_CLIENT_ID,
            "client_secret": DEMO_SCRIPTS_SECRET,
            "scope": "profile",
        }
    )
    assert response.status_code == 200, response.text
    claims = await issuer.verify(response.json()["access_token"])
    assert claims["sub"] == "svc.achievements-scripts"
    assert claims["scope"] == "profile"


@pytest.mark.parametrize(
    "auth",
    [
        {"headers": _basic(SCRIPTS_CLIENT_ID, "wrong-secret")},
        {"headers": _basic("no-such-client", "whatever")},
        {"form": {"client_id": SCRIPTS_CLIENT_ID, "client_secret": "wrong-secret"}},
        # A confidential client that presents no secret at all.
        {"form": {"client_id": SCRIPTS_CLIENT_ID}},
        # A public client cannot use client credentials.
        {"form": {"client_id": CLI_CLIENT_ID}},
    ],
    ids=["basic-wrong-secret", "basic-unknown-client", "post-wrong-secret", "no-secret", "public"],
)
async def test_failed_client_authentication_is_invalid_client(
    issuer: Issuer, auth: dict[str, dict[str, str]]
) -> None:
    response = await issuer.post(
        {"grant_type": "client_credentials", **auth.get("form", {})}, headers=auth.get("headers")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"
    assert "access_token" not in response.json()


# ------------------------------------------------------------------------- password


async def test_password_grant_token_carries_the_persons_roles_and_institution(
    issuer: Issuer,
) -> None:
    token = await _password_login(issuer, "officer.syn-univ-a", scope="openid profile")
    claims = await issuer.verify(token.access_token.get_secret_value())
    assert claims["sub"] == "officer.syn-univ-a"
    assert claims["preferred_username"] == "officer.syn-univ-a"
    assert claims["roles"] == ["tto-officer"]
    assert claims["institution"] == "SYN-UNIV-A"
    assert claims["client_id"] == CLI_CLIENT_ID
    assert claims["scope"] == "openid profile"
    assert "synthetic" in claims["name"]

    # scope openid: an OIDC id_token for the client itself.
    assert token.id_token is not None and token.refresh_token is not None
    id_claims = await issuer.verify(token.id_token.get_secret_value(), audience=CLI_CLIENT_ID)
    assert id_claims["sub"] == "officer.syn-univ-a"
    assert id_claims["aud"] == CLI_CLIENT_ID


async def test_an_experts_subject_is_the_reviewer_id_the_demo_assigns(issuer: Issuer) -> None:
    reviewer = scenario(7, "TEST", date.today()).reviewers[1]
    token = await _password_login(issuer, reviewer)
    assert token.id_token is None  # no openid scope asked
    claims = await issuer.verify(token.access_token.get_secret_value())
    assert claims["sub"] == reviewer
    assert claims["roles"] == ["expert"]
    assert "institution" not in claims  # None is omitted, never null


@pytest.mark.parametrize("username", ["officer.syn-univ-a", "nobody.at-all"])
async def test_wrong_password_or_unknown_user_is_invalid_grant(
    issuer: Issuer, username: str
) -> None:
    response = await issuer.post(
        {
            "grant_type": "password",
            "client_id": CLI_CLIENT_ID,
            "username": username,
            "password": "not-the-password",
        }
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.headers["cache-control"] == "no-store"


async def test_a_confidential_client_signs_people_in_with_basic_auth(issuer: Issuer) -> None:
    token = await fetch_token(
        issuer.http,
        issuer.url,
        client_id=SCRIPTS_CLIENT_ID,
        client_secret=DEMO_SCRIPTS_SECRET,
        username="approver.syn-hosp-c",
        password=DEMO_PASSWORD,
    )
    claims = await issuer.verify(token.access_token.get_secret_value())
    assert (claims["sub"], claims["roles"], claims["institution"]) == (
        "approver.syn-hosp-c",
        ["approver"],
        "SYN-HOSP-C",
    )
    assert claims["client_id"] == SCRIPTS_CLIENT_ID


# -------------------------------------------------------------------------- refresh


async def test_refresh_tokens_rotate_and_a_replayed_one_ends_the_family(issuer: Issuer) -> None:
    first = await _password_login(issuer, "regulator.shstc", scope="openid")
    assert first.refresh_token is not None
    rt1 = first.refresh_token.get_secret_value()

    async def refresh(rt: str) -> httpx.Response:
        return await issuer.post(
            {"grant_type": "refresh_token", "refresh_token": rt, "client_id": CLI_CLIENT_ID}
        )

    second = await refresh(rt1)
    assert second.status_code == 200, second.text
    rt2 = second.json()["refresh_token"]
    assert rt2 != rt1
    claims = await issuer.verify(second.json()["access_token"])
    assert (claims["sub"], claims["institution"]) == ("regulator.shstc", "SHSTC")
    assert claims["scope"] == "openid"

    third = await refresh(rt2)  # the new one works
    assert third.status_code == 200, third.text
    rt3 = third.json()["refresh_token"]

    replay = await refresh(rt1)  # the old one is refused
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # RFC 9700: a replayed refresh token leaked; its whole family stops working.
    assert (await refresh(rt3)).json()["error"] == "invalid_grant"


async def test_a_refresh_token_is_bound_to_its_client(issuer: Issuer) -> None:
    first = await _password_login(issuer, "officer.syn-inst-b")
    assert first.refresh_token is not None
    with pytest.raises(TokenError) as refused:
        await fetch_token(
            issuer.http,
            issuer.url,
            client_id=SCRIPTS_CLIENT_ID,
            client_secret=DEMO_SCRIPTS_SECRET,
            refresh_token=first.refresh_token.get_secret_value(),
        )
    assert (refused.value.status, refused.value.error) == (400, "invalid_grant")


# ------------------------------------------------------------------- key rotation


async def test_rotation_keeps_old_tokens_verifiable_and_signs_new_ones_with_the_new_key(
    own_issuer: tuple[Issuer, Path],
) -> None:
    issuer, key_file = own_issuer
    before = await _password_login(issuer, "officer.syn-soe-d")
    old_token = before.access_token.get_secret_value()
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    rotated = await issuer.http.post(f"{issuer.url}/sandbox/rotate-keys")
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid

    published = {k["kid"] for k in (await issuer.jwks())["keys"]}
    assert {old_kid, new_kid} <= published
    assert (await issuer.verify(old_token))["sub"] == "officer.syn-soe-d"

    after = await _password_login(issuer, "officer.syn-soe-d")
    new_token = after.access_token.get_secret_value()
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert (await issuer.verify(new_token))["sub"] == "officer.syn-soe-d"

    # Persisted, private to its owner: a restart signs with the same current key.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    reloaded = KeyRing(key_file)
    assert reloaded.current.kid == new_kid
    assert reloaded.kids[:2] == [new_kid, old_kid]


def test_a_key_ring_retains_only_the_last_keys(tmp_path: Path) -> None:
    ring = KeyRing(retain=2)
    first = ring.current.kid
    ring.rotate()
    ring.rotate()
    assert first not in ring.kids and len(ring.kids) == 2
    assert "RSA" not in repr(ring) and str(ring.current.kid) in repr(ring)

    bad = tmp_path / "keys.json"
    bad.write_text("not json")
    with pytest.raises(ValueError, match="unreadable key file"):
        KeyRing(bad)


# ------------------------------------------------------------------ malformed requests


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            {"grant_type": "authorization_code", "code": "x", "client_id": CLI_CLIENT_ID},
            "unsupported_grant_type",
        ),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}, "unsupported_grant_type"),
        ({"client_id": CLI_CLIENT_ID}, "invalid_request"),
        (
            {
                "grant_type": "password",
                "client_id": CLI_CLIENT_ID,
                "username": "officer.syn-univ-a",
            },
            "invalid_request",
        ),
        (
            {
                "grant_type": "password",
                "client_id": CLI_CLIENT_ID,
                "username": "officer.syn-univ-a",
                "password": DEMO_PASSWORD,
                "scope": "admin",
            },
            "invalid_scope",
        ),
        ({"grant_type": "refresh_token", "client_id": CLI_CLIENT_ID}, "invalid_request"),
        (
            {"grant_type": "refresh_token", "client_id": CLI_CLIENT_ID, "refresh_token": "forged"},
            "invalid_grant",
        ),
    ],
    ids=[
        "authorization-code",
        "device-code",
        "no-grant-type",
        "no-password",
        "unknown-scope",
        "no-refresh-token",
        "forged-refresh-token",
    ],
)
async def test_rfc6749_errors(issuer: Issuer, form: dict[str, str], error: str) -> None:
    response = await issuer.post(form)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"grant_type": "client_credentials"}', {"Content-Type": "application/json"}),
        (
            b"grant_type=password&grant_type=client_credentials",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        (b"grant_type=\xff\xfe", {"Content-Type": "application/x-www-form-urlencoded"}),
        (
            b"grant_type=client_credentials",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
            },
        ),
        (b"a=" + b"x" * 20_000, {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
    ids=["json", "repeated-parameter", "not-utf8", "basic-not-utf8", "too-large"],
)
async def test_hostile_bodies_get_a_clear_4xx(
    issuer: Issuer, content: bytes, headers: dict[str, str]
) -> None:
    response = await issuer.http.post(f"{issuer.url}/token", content=content, headers=headers)
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")


# ------------------------------------------------------------------------ directory


def test_demo_directory_seeds_the_demo_people() -> None:
    directory = DIRECTORY
    for inst in INSTITUTIONS:
        code = inst.code.lower()
        officer, approver = directory.user(f"officer.{code}"), directory.user(f"approver.{code}")
        assert officer is not None and officer.roles == [Role.TTO_OFFICER]
        assert approver is not None and approver.roles == [Role.APPROVER]
        assert officer.institution == approver.institution == inst.code
    today = date.today()
    # Every reviewer the demo puts on a panel can log in, as that reviewer id.
    reviewers = {r for index in range(60) for r in scenario(index, "T", today).reviewers}
    assert reviewers
    for reviewer in reviewers:
        user = directory.user(reviewer)
        assert user is not None and user.subject == reviewer
        assert user.roles == [Role.EXPERT]
    fund, regulator = directory.user("officer.poc-fund"), directory.user("regulator.shstc")
    assert fund is not None and fund.roles == [Role.POC_FUND_OFFICER]
    assert regulator is not None and regulator.roles == [Role.REGULATOR]
    assert regulator.institution == "SHSTC"
    assert directory.authenticate("officer.syn-corp-e", DEMO_PASSWORD) is not None
    assert directory.authenticate("officer.syn-corp-e", DEMO_PASSWORD + "x") is None
    cli = directory.client(CLI_CLIENT_ID)
    assert cli is not None and cli.secret is None


def test_directory_refuses_ambiguous_or_malformed_principals() -> None:
    def user(username: str, subject: str) -> User:
        return User(
            username=username,
            password=SecretStr("x"),
            subject=subject,
            name="n",
            roles=[Role.EXPERT],
        )

    with pytest.raises(ValidationError, match="duplicate subject"):
        Directory(users=[user("a.one", "same"), user("a.two", "same")])
    with pytest.raises(ValidationError, match="pattern"):
        user("Not Valid", "x1")
    assert SUBJECT_PATTERN.startswith("^")
