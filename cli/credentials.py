"""The command line's credentials: tokens from the institution's OIDC issuer, cached and refreshed.

A person runs `achievements login` once (the password grant of the public `achievements-cli`
client, as Keycloak offers it to command lines); later commands reuse the cached access token
and refresh it when it nears its end. Scripts either pass a token in ACHIEVEMENTS_ACCESS_TOKEN
or log in with client credentials (ACHIEVEMENTS_OIDC_CLIENT_ID and _SECRET). The cache file is
private to its owner (0600); no token is ever printed or logged.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_CLIENT_ID = "achievements-cli"
LAST_ISSUER = "last_issuer"
# Refresh this long before expiry, so a token never dies in the middle of a command.
EXPIRY_MARGIN_SECONDS = 30
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class LoginRequired(Exception):
    """No usable credentials: the message says what to run."""


@dataclass
class Cached:
    issuer: str
    client_id: str
    username: str | None
    access_token: str
    expires_at: float
    refresh_token: str | None = None

    def fresh(self) -> bool:
        return time.time() < self.expires_at - EXPIRY_MARGIN_SECONDS


def cache_file() -> Path:
    explicit = os.environ.get("ACHIEVEMENTS_CREDENTIALS_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "achievements" / "credentials.json"


def _load() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(entries: dict[str, Any]) -> None:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    # Created 0600 before anything is written: a token is never readable by others.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(entries, fh)
    os.replace(tmp, path)


_ENDPOINTS: dict[str, str] = {}


def token_endpoint(issuer: str) -> str:
    """The issuer's token endpoint, from its discovery document (Keycloak's is not /token)."""
    if issuer not in _ENDPOINTS:
        url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            with httpx.Client(timeout=TIMEOUT) as http:
                document = http.get(url).raise_for_status().json()
            _ENDPOINTS[issuer] = str(document["token_endpoint"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise LoginRequired(
                f"no usable discovery document at {url} ({type(exc).__name__}): "
                "is it the issuer URL?"
            ) from None
    return _ENDPOINTS[issuer]


def _token_request(issuer: str, form: dict[str, str], auth: httpx.BasicAuth | None) -> Any:
    url = token_endpoint(issuer)
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            response = http.post(url, data=form, auth=auth) if auth else http.post(url, data=form)
    except httpx.HTTPError as exc:
        raise LoginRequired(f"the identity provider at {issuer} is not reachable ({exc})") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        reason = body.get("error_description") or body.get("error") or response.reason_phrase
        raise LoginRequired(f"the identity provider refused: {reason}")
    return body


def _remember(issuer: str, client_id: str, username: str | None, body: Any) -> Cached:
    cached = Cached(
        issuer=issuer,
        client_id=client_id,
        username=username,
        access_token=str(body["access_token"]),
        expires_at=time.time() + float(body.get("expires_in", 300)),
        refresh_token=body.get("refresh_token"),
    )
    entries = _load()
    entries[issuer] = asdict(cached)
    # Later commands use the issuer of the last login unless one is configured.
    entries[LAST_ISSUER] = issuer
    _store(entries)
    return cached


def login_password(issuer: str, username: str, password: str, client_id: str) -> Cached:
    form = {
        "grant_type": "password",
        "client_id": client_id,
        "username": username,
        "password": password,
        "scope": "openid profile",
    }
    return _remember(issuer, client_id, username, _token_request(issuer, form, None))


def login_client_credentials(issuer: str, client_id: str, secret: str) -> Cached:
    body = _token_request(
        issuer, {"grant_type": "client_credentials"}, httpx.BasicAuth(client_id, secret)
    )
    return _remember(issuer, client_id, None, body)


def last_issuer() -> str | None:
    value = _load().get(LAST_ISSUER)
    return value if isinstance(value, str) else None


def logout(issuer: str) -> bool:
    entries = _load()
    if entries.pop(issuer, None) is None:
        return False
    _store(entries)
    return True


def cached(issuer: str) -> Cached | None:
    entry = _load().get(issuer)
    if not isinstance(entry, dict):
        return None
    try:
        return Cached(**entry)
    except TypeError:
        return None


def access_token(issuer: str | None) -> str:
    """A token to send: ACHIEVEMENTS_ACCESS_TOKEN, else the cached one (refreshed if due)."""
    explicit = os.environ.get("ACHIEVEMENTS_ACCESS_TOKEN")
    if explicit:
        return explicit
    if issuer is None:
        raise LoginRequired(
            "no identity provider known: start the stack (`achievements dev`), or set "
            "ACHIEVEMENTS_OIDC_ISSUER, then run `achievements login`"
        )
    entry = cached(issuer)
    if entry is None:
        raise LoginRequired(f"not logged in at {issuer}: run `achievements login`")
    if entry.fresh():
        return entry.access_token
    secret = os.environ.get("ACHIEVEMENTS_OIDC_CLIENT_SECRET")
    if entry.username is None and secret:
        # A script's service account has no refresh token: it logs in again.
        return login_client_credentials(issuer, entry.client_id, secret).access_token
    if entry.refresh_token:
        form = {
            "grant_type": "refresh_token",
            "client_id": entry.client_id,
            "refresh_token": entry.refresh_token,
        }
        try:
            body = _token_request(issuer, form, None)
        except LoginRequired:
            pass
        else:
            return _remember(issuer, entry.client_id, entry.username, body).access_token
    raise LoginRequired(f"the session at {issuer} has ended: run `achievements login` again")
