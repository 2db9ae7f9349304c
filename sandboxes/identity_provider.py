"""An embedded OpenID Connect issuer on loopback, for `achievements dev`, the demo and the tests.

TEST MODE ONLY: production points the gateway at the institutions' own providers (Keycloak,
Azure AD...). It is still a standards issuer, not a mock: discovery, a JWKS with rotation, and
a token endpoint built on authlib's OAuth 2.0 server (RFC 6749 client_credentials, password and
rotated refresh_token grants and errors), issuing RS256 JWT access tokens (RFC 9068) signed
with joserfc, plus an OIDC id_token when the password grant asks for scope `openid`.

authlib has no Starlette integration: `_Server` is the thin adapter its Flask one is (build
an OAuth2Request from the HTTP request, turn (status, body, headers) into a response). The
form is read before authlib runs, so authlib's synchronous grants never touch the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import structlog
from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    AuthorizationServer,
    OAuth2Request,
)
from authlib.oauth2.rfc6749 import grants as rfc6749_grants
from authlib.oauth2.rfc6749.errors import (  # type: ignore[import-untyped]
    InsecureTransportError,
    InvalidGrantError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import BearerTokenGenerator  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pydantic import BaseModel, SecretStr

from sandboxes.identity_directory import (
    CLI_CLIENT_ID,
    DEMO_PASSWORD,
    Client,
    Directory,
    GrantType,
    User,
)

log = structlog.get_logger(__name__)

ALG = "RS256"
SCOPES = ("openid", "profile")
DEFAULT_SCOPE = "profile"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
MAX_FORM_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# ------------------------------------------------------------------------------------ keys


class KeyRing:
    """The current RS256 signing key first, then the previous ones, all published in the JWKS.

    Rotation keeps the last `retain` keys published, so tokens signed before a rotation still
    verify until they expire. With a `path`, keys are kept in that file (mode 0600) so a
    restart of `achievements dev` keeps cached tokens valid. Key material is never logged.
    """

    def __init__(self, path: Path | None = None, *, retain: int = 3) -> None:
        if retain < 2:
            raise ValueError("retain must keep at least the current and the previous key")
        self._path = path
        self._retain = retain
        self._keys: list[RSAKey] = self._load() if path and path.exists() else []
        if not self._keys:
            self._keys = [_new_key()]
            self._save()

    def __repr__(self) -> str:
        return f"KeyRing(kids={self.kids}, path={self._path})"

    @property
    def current(self) -> RSAKey:
        return self._keys[0]

    @property
    def kids(self) -> list[str]:
        return [str(k.kid) for k in self._keys]

    def rotate(self) -> str:
        """Make a new current key; keep the previous ones published. Returns the new kid."""
        self._keys = [_new_key(), *self._keys][: self._retain]
        self._save()
        log.info("idp.keys_rotated", kid=self.current.kid, published=self.kids)
        return str(self.current.kid)

    def public_jwks(self) -> dict[str, Any]:
        return dict(KeySet(list(self._keys)).as_dict(private=False))

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        key = self.current
        return jwt.encode({**header, "alg": ALG, "kid": key.kid}, claims, key, algorithms=[ALG])

    def _load(self) -> list[RSAKey]:
        assert self._path is not None
        try:
            data = json.loads(self._path.read_text())
            return [RSAKey.import_key(k) for k in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Name the file, never its content.
            raise ValueError(f"unreadable key file {self._path}: {type(exc).__name__}") from None

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(KeySet(list(self._keys)).as_dict(private=True))
        # Private keys: created 0600 and swapped in atomically, never half-written.
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".jwks-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _new_key() -> RSAKey:
    # kid = RFC 7638 thumbprint: stable across restarts and unique per key.
    return RSAKey.generate_key(2048, parameters={"alg": ALG, "use": "sig"}, auto_kid=True)


# ------------------------------------------------------------------- authlib's models


@dataclass(frozen=True)
class _OAuthClient:
    """A directory Client as authlib's ClientMixin."""

    client: Client

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or DEFAULT_SCOPE

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token":
            return False
        if self.client.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client.grant_types


@dataclass
class _RefreshToken:
    """What a refresh token stands for; the store keys it by the token's hash, not the token."""

    client_id: str
    username: str
    scope: str
    family: str
    expires_at: float
    used: bool = False

    def check_client(self, client: _OAuthClient) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope


@dataclass
class _RefreshStore:
    ttl_seconds: int
    tokens: dict[str, _RefreshToken] = field(default_factory=dict)

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def add(self, token: str, record: _RefreshToken) -> None:
        now = time.time()
        self.tokens = {h: r for h, r in self.tokens.items() if r.expires_at > now}
        self.tokens[self._hash(token)] = record

    def redeemable(self, token: str) -> _RefreshToken | None:
        record = self.tokens.get(self._hash(token))
        if record is None or record.expires_at <= time.time():
            return None
        if record.used:
            # A rotated token came back: it leaked (RFC 9700 4.14.2). End its whole family.
            for other in self.tokens.values():
                if other.family == record.family:
                    other.used = True
            log.warning("idp.refresh_token_reused", client_id=record.client_id)
            return None
        return record


# ---------------------------------------------------------------------------- grants


class _ClientCredentialsGrant(rfc6749_grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _PasswordGrant(rfc6749_grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def authenticate_user(self, username: str, password: str) -> User:
        directory: Directory = self.server.directory
        user = directory.authenticate(username, password)
        if user is None:
            # RFC 6749 5.2: invalid resource owner credentials are invalid_grant.
            raise InvalidGrantError("Invalid username or password.")
        return user


class _RefreshTokenGrant(rfc6749_grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh token is good for one use

    def authenticate_refresh_token(self, refresh_token: str) -> _RefreshToken | None:
        store: _RefreshStore = self.server.refresh_tokens
        return store.redeemable(refresh_token)

    def authenticate_user(self, refresh_token: _RefreshToken) -> User:
        user: User | None = self.server.directory.user(refresh_token.username)
        if user is None:
            raise InvalidGrantError("The user of this refresh token no longer exists.")
        return user

    def revoke_old_credential(self, refresh_token: _RefreshToken) -> None:
        refresh_token.used = True


# ---------------------------------------------------------------------------- tokens


class _TokenGenerator(BearerTokenGenerator):  # type: ignore[misc]
    """authlib's bearer token generator with RFC 9068 JWT access tokens and OIDC id_tokens."""

    def __init__(self, issuer: str, audience: str, keys: KeyRing, access_ttl: int) -> None:
        super().__init__(
            self._access_token,
            lambda **_: secrets.token_urlsafe(32),  # opaque; only its hash is kept
            lambda client, grant_type: access_ttl,
        )
        self.issuer, self.audience, self.keys, self.access_ttl = issuer, audience, keys, access_ttl

    def generate(
        self,
        grant_type: str,
        client: _OAuthClient,
        user: User | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        # Refresh tokens only for people, and only to clients allowed to redeem them.
        include_refresh_token = (
            include_refresh_token
            and user is not None
            and client.check_grant_type(GrantType.REFRESH_TOKEN)
        )
        token: dict[str, Any] = super().generate(
            grant_type, client, user, scope, expires_in, include_refresh_token
        )
        if user is not None and "openid" in token.get("scope", "").split():
            token["id_token"] = self._id_token(client, user)
        return token

    def _times(self) -> dict[str, int]:
        now = int(time.time())
        return {"iat": now, "nbf": now, "exp": now + self.access_ttl}

    def _access_token(
        self, client: _OAuthClient, grant_type: str, user: User | None, scope: str
    ) -> str:
        c = client.client
        # No person: the client acts as its own service account (validated in the directory).
        subject = user.subject if user else str(c.subject)
        institution = user.institution if user else c.institution
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            **self._times(),
            "jti": str(uuid.uuid4()),
            "client_id": c.client_id,
            "scope": scope,
            "name": user.name if user else (c.name or subject),
            "preferred_username": user.username if user else subject,
            "roles": [r.value for r in (user.roles if user else c.roles)],
        }
        if institution is not None:
            claims["institution"] = institution
        log.info(
            "idp.token_issued",
            grant_type=grant_type,
            client_id=c.client_id,
            sub=subject,
            kid=self.keys.current.kid,
            jti=claims["jti"],
        )
        return self.keys.sign({"typ": "at+jwt"}, claims)

    def _id_token(self, client: _OAuthClient, user: User) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.subject,
            "aud": client.get_client_id(),
            **self._times(),
            "name": user.name,
            "preferred_username": user.username,
        }
        return self.keys.sign({"typ": "JWT"}, claims)


# --------------------------------------------------------------------- the server


class _FormRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth2Request from an already-read form body (the adapter's create_oauth2_request)."""

    def __init__(self, request: Request, form: dict[str, str]) -> None:
        # Raises InsecureTransportError unless https or loopback http.
        super().__init__(method=request.method, uri=str(request.url), headers=request.headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, directory: Directory, refresh_tokens: _RefreshStore) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.directory = directory
        self.refresh_tokens = refresh_tokens

    def query_client(self, client_id: str) -> _OAuthClient | None:
        client = self.directory.client(client_id)
        return _OAuthClient(client) if client else None

    def save_token(self, token: dict[str, Any], request: _FormRequest) -> None:
        if "refresh_token" not in token:
            return
        previous: _RefreshToken | None = request.refresh_token
        self.refresh_tokens.add(
            token["refresh_token"],
            _RefreshToken(
                client_id=request.client.get_client_id(),
                username=request.user.username,
                scope=token.get("scope", DEFAULT_SCOPE),
                family=previous.family if previous else str(uuid.uuid4()),
                expires_at=time.time() + self.refresh_tokens.ttl_seconds,
            ),
        )

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # no listeners: authlib calls this after client authentication

    def create_oauth2_request(self, request: _FormRequest) -> _FormRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def handle_error_response(self, request: _FormRequest, error: OAuth2Error) -> JSONResponse:
        client_id = str(request.payload.data.get("client_id") or "")[:64]
        log.info(
            "idp.token_refused",
            error=error.error,
            grant_type=str(request.payload.grant_type)[:64],
            client_id=client_id or None,
        )
        response: JSONResponse = super().handle_error_response(request, error)
        return response


def _error(status: int, error: str, description: str) -> JSONResponse:
    log.info("idp.token_refused", error=error, description=description)
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def _parse_form(request: Request, body: bytes) -> dict[str, str] | JSONResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return _error(400, "invalid_request", "Use application/x-www-form-urlencoded.")
    if len(body) > MAX_FORM_BYTES:
        return _error(400, "invalid_request", "The request body is too large.")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=False, max_num_fields=32)
    except ValueError:  # not UTF-8, or too many fields
        return _error(400, "invalid_request", "The form body cannot be parsed.")
    form = dict(pairs)
    if len(form) != len(pairs):
        # RFC 6749 3.2: request parameters MUST NOT be included more than once.
        return _error(400, "invalid_request", "A parameter is repeated.")
    if "grant_type" not in form:
        return _error(400, "invalid_request", "Missing 'grant_type' in request.")
    return form


def create_identity_provider_app(
    issuer: str,
    directory: Directory,
    keys: KeyRing,
    *,
    audience: str,
    access_token_ttl_seconds: int = 15 * 60,
    refresh_token_ttl_seconds: int = 12 * 3600,
) -> FastAPI:
    """The issuer's app. `issuer` is the base URL it is served at (loopback http or https)."""
    issuer = issuer.rstrip("/")
    server = _Server(directory, _RefreshStore(refresh_token_ttl_seconds))
    server.register_token_generator(
        "default",
        _TokenGenerator(issuer, audience, keys, access_token_ttl_seconds),
    )
    for grant in (_ClientCredentialsGrant, _PasswordGrant, _RefreshTokenGrant):
        server.register_grant(grant)

    app = FastAPI(
        title="OpenID Connect issuer (sandbox)",
        description="Test mode only: a local issuer of RS256 JWT access tokens for the "
        "gateway, with synthetic people. /sandbox routes are test mode only.",
    )

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "token_endpoint": f"{issuer}/token",
            # No authorization endpoint: no browser flows in test mode.
            "response_types_supported": [],
            "grant_types_supported": [g.value for g in GrantType],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": list(SCOPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALG],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "nbf",
                "jti",
                "client_id",
                "scope",
                "name",
                "preferred_username",
                "roles",
                "institution",
            ],
        }

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        return keys.public_jwks()

    @app.post("/token")
    async def token(request: Request) -> Response:
        form = _parse_form(request, await request.body())
        if isinstance(form, JSONResponse):
            return form
        try:
            oauth_request = _FormRequest(request, form)
        except InsecureTransportError as exc:
            status, body, headers = exc()
            return JSONResponse(body, status_code=status, headers=dict(headers))
        try:
            response: JSONResponse = server.create_token_response(oauth_request)
        except ValueError:  # e.g. a Basic header that is not UTF-8
            return _error(400, "invalid_request", "Malformed client credentials.")
        return response

    @app.post("/sandbox/rotate-keys")
    async def rotate_keys() -> dict[str, Any]:
        kid = keys.rotate()
        return {"kid": kid, "published": keys.kids}

    return app


# --------------------------------------------------------------------------- callers


class TokenResponse(BaseModel):
    access_token: SecretStr
    token_type: str
    expires_in: int
    scope: str | None = None
    refresh_token: SecretStr | None = None
    id_token: SecretStr | None = None


class TokenError(Exception):
    """The token endpoint refused: the RFC 6749 error code and its description."""

    def __init__(self, status: int, error: str, description: str | None) -> None:
        super().__init__(f"{status} {error}: {description or ''}")
        self.status, self.error, self.description = status, error, description


async def fetch_token(
    http: httpx.AsyncClient,
    issuer: str,
    *,
    client_id: str,
    client_secret: str | None = None,
    username: str | None = None,
    password: str | None = None,
    refresh_token: str | None = None,
    scope: str | None = None,
) -> TokenResponse:
    """One token request: password grant with a username, refresh with a refresh token, else
    client credentials. A confidential client authenticates with HTTP Basic."""
    form: dict[str, str] = {}
    if refresh_token is not None:
        form.update(grant_type="refresh_token", refresh_token=refresh_token)
    elif username is not None:
        form.update(grant_type="password", username=username, password=password or "")
    else:
        form["grant_type"] = "client_credentials"
    if scope:
        form["scope"] = scope
    url = f"{issuer.rstrip('/')}/token"
    if client_secret is None:
        form["client_id"] = client_id
        response = await http.post(url, data=form)
    else:
        # RFC 6749 2.3.1: both are form-urlencoded before Basic encoding.
        auth = httpx.BasicAuth(quote(client_id, safe=""), quote(client_secret, safe=""))
        response = await http.post(url, data=form, auth=auth)
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error", "http_error") if isinstance(body, dict) else "http_error"
        description = body.get("error_description") if isinstance(body, dict) else None
        raise TokenError(response.status_code, error, description)
    return TokenResponse.model_validate(response.json())


class SyntheticSignIn:
    """The synthetic people of a test-mode issuer signing in (the demo's parties, the tests'
    personas): one access token per username, fetched with the password grant of the public
    CLI client and fetched again shortly before it expires."""

    # Sign in again when the cached token has less than this left.
    MARGIN_SECONDS = 120.0

    def __init__(self, http: httpx.AsyncClient, issuer: str) -> None:
        self.http = http
        self.issuer = issuer.rstrip("/")
        self._tokens: dict[str, tuple[str, float]] = {}

    async def token(self, username: str) -> str:
        cached = self._tokens.get(username)
        if cached is None or cached[1] - time.monotonic() < self.MARGIN_SECONDS:
            answer = await fetch_token(
                self.http,
                self.issuer,
                client_id=CLI_CLIENT_ID,
                username=username,
                password=DEMO_PASSWORD,
            )
            expires = time.monotonic() + answer.expires_in
            cached = self._tokens[username] = (answer.access_token.get_secret_value(), expires)
        return cached[0]

    async def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(username)}"}
