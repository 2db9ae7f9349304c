"""Bearer tokens at the gateway: every way a token can be wrong is a 401, on the real stack.

The good tokens come from the session's real issuer; the bad ones are forged here the way an
attacker would (or, for claims only the issuer could sign, with the issuer's own key ring, as
a misconfigured or compromised issuer would).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from core.settings import Settings
from gateway.serve import refuse_sandbox_secrets
from gateway.tokens import InvalidToken, TokenVerifier, principal_from_claims
from sandboxes.identity_provider import KeyRing
from schemas.identity import Role

if TYPE_CHECKING:
    from conftest import Stack

ME = "/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(stack: Stack, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": stack.settings.oidc_issuer,
        "sub": "officer.syn-uni",
        "aud": stack.settings.oidc_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "roles": ["tto-officer"],
        "institution": "SYN-UNI",
        **overrides,
    }


async def answer(stack: Stack, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await stack.http.get(f"{stack.gateway_url}{ME}", headers=headers)


async def assert_refused(stack: Stack, token: str | None, reason: str) -> None:
    response = await answer(stack, token)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge
    assert reason in response.json()["detail"]


async def test_a_token_from_the_issuer_is_accepted(stack: Stack) -> None:
    response = await answer(stack, await stack.tokens.token("officer.syn-uni"))
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "officer.syn-uni"
    # Signed with the issuer's key and every claim right: accepted too (the forgery baseline).
    signed = stack.issuer_keys.sign({"typ": "at+jwt"}, claims(stack))
    assert (await answer(stack, signed)).status_code == 200


async def test_no_token_is_401_with_a_bearer_challenge(stack: Stack) -> None:
    response = await answer(stack, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="achievements"'
    for scheme in ("Basic b2ZmaWNlcjpwdw==", "Bearer", "Token abc"):
        response = await stack.http.get(
            f"{stack.gateway_url}{ME}", headers={"Authorization": scheme}
        )
        assert response.status_code == 401, scheme
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # Times relative to when the test runs (seconds from now), not to collection.
        ({"exp": -120}, "expired"),
        ({"nbf": 600}, "not valid yet"),
        ({"aud": "another-api"}, "another audience"),
        ({"iss": "http://127.0.0.1:1/realms/elsewhere"}, "another issuer"),
    ],
    ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer"],
)
async def test_claims_the_issuer_signed_but_do_not_fit_are_401(
    stack: Stack, overrides: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    timed = {k: now + v if k in ("exp", "nbf") else v for k, v in overrides.items()}
    token = stack.issuer_keys.sign({"typ": "at+jwt"}, claims(stack, **timed))
    await assert_refused(stack, token, reason)


async def test_missing_required_claims_are_401(stack: Stack) -> None:
    for missing in ("exp", "sub", "aud"):
        body = claims(stack)
        del body[missing]
        token = stack.issuer_keys.sign({"typ": "at+jwt"}, body)
        await assert_refused(stack, token, f"'{missing}'")


async def test_a_key_the_issuer_never_published_is_401(stack: Stack) -> None:
    stranger = KeyRing()
    await assert_refused(stack, stranger.sign({}, claims(stack)), "signing key")


async def test_a_second_issuer_reusing_the_kid_is_401(stack: Stack) -> None:
    impostor = KeyRing().current
    kid = stack.issuer_keys.current.kid
    pem = impostor.as_pem(private=True)
    token = jwt.encode(claims(stack), pem, algorithm="RS256", headers={"kid": kid})
    await assert_refused(stack, token, "signature")


async def test_alg_none_is_401(stack: Stack) -> None:
    kid = stack.issuer_keys.current.kid
    header = _b64(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims(stack)).encode())
    await assert_refused(stack, f"{header}.{payload}.", "algorithm is not accepted")


async def test_hs256_signed_with_the_issuers_public_key_is_401(stack: Stack) -> None:
    # The classic confusion attack: the public key, which anyone can fetch, as an HMAC secret.
    kid = stack.issuer_keys.current.kid
    jwks = (await stack.http.get(f"{stack.settings.oidc_issuer}/jwks")).json()
    public = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims(stack)).encode())
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    await assert_refused(stack, f"{header}.{payload}.{_b64(mac)}", "algorithm is not accepted")


async def test_a_tampered_payload_is_401(stack: Stack) -> None:
    token = await stack.tokens.token("officer.syn-other")
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    body = json.loads(base64.urlsafe_b64decode(padded))
    body["institution"], body["roles"] = "SYN-UNI", ["tto-officer", "approver"]
    forged = f"{header}.{_b64(json.dumps(body).encode())}.{signature}"
    await assert_refused(stack, forged, "signature")


async def test_garbage_is_401(stack: Stack) -> None:
    for token in ("not-a-jwt", "a.b.c", "x" * 5000):
        await assert_refused(stack, token, "")


async def test_a_key_rotation_at_the_issuer_needs_no_gateway_restart(stack: Stack) -> None:
    before = await stack.tokens.token("approver.syn-uni")
    assert (await answer(stack, before)).status_code == 200
    rotated = await stack.http.post(f"{stack.settings.oidc_issuer}/sandbox/rotate-keys")
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]
    fresh = await stack.http.post(
        f"{stack.settings.oidc_issuer}/token",
        data={
            "grant_type": "password",
            "client_id": "achievements-cli",
            "username": "approver.syn-uni",
            "password": "synthetic-demo-password",
        },
    )
    token = fresh.json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    # The gateway has never seen this key: it fetches the JWKS again and accepts the token.
    assert (await answer(stack, token)).status_code == 200
    # Tokens signed before the rotation stay valid until they expire (the old key is published).
    assert (await answer(stack, before)).status_code == 200


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(stack: Stack) -> None:
    fetched: list[str] = []

    async def count(request: httpx.Request) -> None:
        fetched.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        verifier = TokenVerifier(
            str(stack.settings.oidc_issuer),
            stack.settings.oidc_audience,
            refresh_interval_seconds=60,
            http=http,
        )
        good = await stack.tokens.token("officer.syn-uni")
        assert (await verifier.verify(good)).subject == "officer.syn-uni"
        for _ in range(5):
            with pytest.raises(InvalidToken):
                await verifier.verify(KeyRing().sign({}, claims(stack)))
    # Discovery and the first JWKS, then one refetch for the first unknown kid: not five.
    assert fetched.count("/jwks") == 2, fetched


def test_claim_paths_follow_the_provider() -> None:
    keycloak = {
        "sub": "f3a1c2d4-1111-4a2b-9c3d-0123456789ab",
        "realm_access": {"roles": ["tto-officer", "offline_access", "uma_authorization"]},
        "org": {"code": "FDU"},
        "preferred_username": "li.wei",
    }
    who = principal_from_claims(keycloak, "realm_access.roles", "org.code")
    assert who.roles == frozenset({Role.TTO_OFFICER}) and who.institution == "FDU"
    assert who.name == "li.wei"
    azure = {"sub": "x1", "roles": ["regulator"], "extension_institution": "SHSTC"}
    who = principal_from_claims(azure, "roles", "extension_institution")
    assert who.roles == frozenset({Role.REGULATOR}) and who.institution == "SHSTC"
    with pytest.raises(InvalidToken, match="subject"):
        principal_from_claims({"sub": "a\x00b", "roles": []}, "roles", "institution")


def test_outside_dev_the_gateway_refuses_sandbox_webhook_secrets() -> None:
    with pytest.raises(SystemExit, match=r"ACHIEVEMENTS_WEBHOOK_SECRETS.*sstec"):
        refuse_sandbox_secrets(Settings(environment="production"))
    refuse_sandbox_secrets(Settings(environment="dev"))  # the embedded stack: allowed
    own = {
        s: f"a-real-secret-of-{s}-0123456789"
        for s in ("sstec", "jstec", "zjtec", "ahtec", "registry", "incubator", "poc-fund")
    }
    refuse_sandbox_secrets(
        Settings.model_validate({"environment": "production", "webhook_secrets": own})
    )


async def test_the_token_is_checked_before_the_body_or_the_query(stack: Stack) -> None:
    """Without a valid token nothing about the request is answered, not even its validity."""
    url = f"{stack.gateway_url}/achievements"
    json = {"Content-Type": "application/json"}
    for body in (b"{not json", b'{"asking_price": 1.5}', b'{"disclosure": {}}'):
        response = await stack.http.post(url, content=body, headers=json)
        assert response.status_code == 401, (body, response.text)
    # Only a hostile body's shape (size, encoding, depth) is refused before the token: that
    # costs nothing to check and says nothing about what the gateway would accept.
    response = await stack.http.post(url, content=b"[" * 100, headers=json)
    assert response.status_code == 422
    response = await stack.http.get(url, params={"stagee": "evaluation"})
    assert response.status_code == 401
    # With a token, a misspelt filter is named rather than silently widening the list.
    officer = await stack.headers("officer.syn-uni")
    response = await stack.http.get(url, params={"stagee": "evaluation"}, headers=officer)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"field": "query.stagee", "message": "not a parameter of this operation"}
    ]


async def test_hostile_headers_and_claims_are_401_never_500(stack: Stack) -> None:
    """Found in review: an `alg` that is a list or not latin-1, roles that are objects, a
    subject longer than a command's identity field. Each is a 401, and nothing the caller
    wrote is echoed into the challenge header."""
    kid = stack.issuer_keys.current.kid
    payload = _b64(json.dumps(claims(stack)).encode())
    hostile: list[object] = [[], "中", 'RS256", error="x']
    for alg in hostile:
        header = _b64(json.dumps({"alg": alg, "kid": kid}).encode())
        response = await answer(stack, f"{header}.{payload}.c2ln")
        assert response.status_code == 401, (alg, response.text)
        assert "中" not in response.headers["www-authenticate"]
        # Three quoted values (realm, error, description): the caller's quote broke out of none.
        assert response.headers["www-authenticate"].count('"') == 6
    odd_roles = claims(stack, roles=[{"name": "tto-officer"}, "tto-officer"])
    response = await answer(stack, stack.issuer_keys.sign({}, odd_roles))
    assert response.status_code == 200 and response.json()["roles"] == ["tto-officer"]
    long_subject = stack.issuer_keys.sign({}, claims(stack, sub="s" * 101))
    await assert_refused(stack, long_subject, "longer than 100")


async def test_a_webhook_signature_that_is_not_ascii_is_401(stack: Stack) -> None:
    body = b'{"event_id": "x"}'
    headers = {
        b"Content-Type": b"application/json",
        b"X-Webhook-Timestamp": str(int(time.time())).encode(),
        b"X-Webhook-Signature": b"v1=\xe9",  # one latin-1 byte, as a raw client can send
    }
    response = await stack.http.post(
        f"{stack.gateway_url}/webhooks/registry", content=body, headers=headers
    )
    assert response.status_code == 401, response.text


ISSUER = "https://issuer.example"


def _issuer_http(keys: KeyRing) -> httpx.AsyncClient:
    """The discovery document and the JWKS of `keys`, as an issuer at ISSUER would serve them."""

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        return httpx.Response(200, json=keys.public_jwks())

    return httpx.AsyncClient(transport=httpx.MockTransport(serve))


def _signed(keys: KeyRing, **overrides: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "officer.syn-uni", "aud": "gw", "iat": now, "exp": now + 300}
    return keys.sign({}, {**body, **overrides})


async def test_a_verified_token_is_remembered_until_its_expiry_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = KeyRing()
    async with _issuer_http(keys) as http:
        verifier = TokenVerifier(ISSUER, "gw", leeway_seconds=30, http=http)
        exp = int(time.time()) - 10  # expired, but within the leeway
        token = _signed(keys, exp=exp)
        assert (await verifier.verify(token)).subject == "officer.syn-uni"
        verifier.leeway = 0  # a full verification would now refuse it...
        assert (await verifier.verify(token)).subject == "officer.syn-uni"  # ...a repeat is kept
        # Past exp + leeway the kept principal is dropped and the token verified again: refused.
        monkeypatch.setattr("gateway.tokens.time.time", lambda: exp + 31.0)
        with pytest.raises(InvalidToken, match="expired"):
            await verifier.verify(token)


async def test_only_tokens_that_verify_are_remembered() -> None:
    keys = KeyRing()
    async with _issuer_http(keys) as http:
        verifier = TokenVerifier(ISSUER, "gw", http=http)
        forged = _signed(KeyRing())  # another key under the same claims
        for _ in range(2):
            with pytest.raises(InvalidToken):
                await verifier.verify(forged)
        wrong_audience = _signed(keys, aud="another")
        for _ in range(2):
            with pytest.raises(InvalidToken, match="audience"):
                await verifier.verify(wrong_audience)


async def test_a_key_the_issuer_withdrew_takes_its_remembered_tokens_with_it() -> None:
    keys = KeyRing(retain=2)
    async with _issuer_http(keys) as http:
        verifier = TokenVerifier(ISSUER, "gw", refresh_interval_seconds=0, http=http)
        old = _signed(keys)
        assert (await verifier.verify(old)).subject == "officer.syn-uni"
        keys.rotate()
        keys.rotate()  # two keys kept: the one that signed `old` is no longer published
        # A token of the new key makes the gateway fetch the keys again...
        assert (await verifier.verify(_signed(keys))).subject == "officer.syn-uni"
        # ...and the old token, though verified before, is verified again: refused.
        with pytest.raises(InvalidToken, match="signing key"):
            await verifier.verify(old)
