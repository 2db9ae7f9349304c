"""Bearer-token verification: the gateway as an OAuth 2.0 / OIDC resource server.

Keys come from the issuer's discovery document and JWKS, cached and fetched again when a token
names an unknown `kid` (so the issuer can rotate keys without a gateway restart), at most once
per `refresh_interval` so a flood of forged kids cannot turn the gateway against the issuer.
PyJWT does the cryptography and the registered-claim checks; this module only decides which
key and which algorithms are acceptable. Asymmetric algorithms only: never `none`, never an
HMAC algorithm (whose "secret" could be the issuer's public key).

A client sends the same token with every request until it expires, so a verified token's
principal is kept (by the token's exact text) until its `exp`: a repeat costs a lookup instead
of two base64 decodes, an RSA verification and the claims' checks. Only tokens that verified
are kept, a kept one is dropped at its expiry, and every refetch of the issuer's keys drops
them all, so a key the issuer withdrew takes its tokens with it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import structlog
from pydantic import ValidationError

from schemas.identity import Actor, Role

log = structlog.get_logger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
MAX_SUBJECT = 100
MAX_VERIFIED_TOKENS = 4096  # a few MB at most: one entry per signed-in person


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not from our issuer. Says why, safely."""


class IssuerUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, taken from verified claims only."""

    subject: str
    roles: frozenset[Role]
    institution: str | None
    name: str | None = None
    client_id: str | None = None

    def holds(self, role: Role) -> bool:
        return role in self.roles


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path, e.g. `realm_access.roles` (Keycloak) or `roles` (Azure AD).

    A claim whose own name holds the dots (Azure AD's `extn.institution`) is taken as it is.
    """
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def principal_from_claims(
    claims: dict[str, Any], roles_claim: str, institution_claim: str
) -> Principal:
    """Roles we do not know are ignored (a provider carries many); the subject is required."""
    raw_roles = claim_at(claims, roles_claim)
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()  # some providers send a space-separated string
    known = {r.value: r for r in Role}
    roles = frozenset(
        known[r]
        for r in (raw_roles if isinstance(raw_roles, list) else [])
        if isinstance(r, str) and r in known
    )
    institution = claim_at(claims, institution_claim)
    name = claims.get("name") or claims.get("preferred_username")
    principal = Principal(
        subject=str(claims["sub"]),
        roles=roles,
        institution=str(institution) if isinstance(institution, str | int) else None,
        name=str(name)[:200] if isinstance(name, str) else None,
        client_id=str(claims["client_id"]) if isinstance(claims.get("client_id"), str) else None,
    )
    if len(principal.subject) > MAX_SUBJECT:
        # The commands' identity fields (decided_by, approved_by, ...) hold 100 characters.
        raise InvalidToken(f"the token's subject is longer than {MAX_SUBJECT} characters")
    try:
        # What every event will record of the caller must be recordable: refuse it here (401)
        # rather than fail later when a command is built (500).
        Actor(
            subject=principal.subject,
            role=Role.REGULATOR,
            institution=principal.institution,
            name=principal.name,
            client_id=principal.client_id,
        )
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors(include_input=False)})
        raise InvalidToken(f"the token's {', '.join(fields)} claim is not usable") from None
    return principal


class TokenVerifier:
    """Verifies access tokens of one issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        roles_claim: str = "roles",
        institution_claim: str = "institution",
        leeway_seconds: float = 30.0,
        refresh_interval_seconds: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.roles_claim = roles_claim
        self.institution_claim = institution_claim
        self.leeway = leeway_seconds
        self.refresh_interval = refresh_interval_seconds
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        self._owns_http = http is None
        self._keys: jwt.PyJWKSet | None = None
        self._algorithms: frozenset[str] = frozenset({"RS256"})
        self._jwks_uri: str | None = None
        self._forced_at = float("-inf")
        self._lock = asyncio.Lock()
        # token → (its principal, the wall-clock time from which PyJWT would call it expired)
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailable(f"{url}: {type(exc).__name__}") from None
        if not isinstance(body, dict):
            raise IssuerUnavailable(f"{url}: not a JSON object")
        return body

    async def _discover(self) -> str:
        doc = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            # OIDC Discovery 4.3: the document must be for the issuer we were configured with.
            raise IssuerUnavailable("the discovery document names another issuer")
        advertised = doc.get("id_token_signing_alg_values_supported")
        if isinstance(advertised, list):
            usable = ASYMMETRIC_ALGORITHMS.intersection(a for a in advertised if isinstance(a, str))
            if usable:
                self._algorithms = frozenset(usable)
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or not uri:
            raise IssuerUnavailable("the discovery document has no jwks_uri")
        return uri

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            if self._keys is not None:
                # Refetched only for a kid we do not know, and at most once per interval.
                if not force or time.monotonic() - self._forced_at < self.refresh_interval:
                    return
                self._forced_at = time.monotonic()
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            try:
                keys = jwt.PyJWKSet.from_dict(await self._get_json(self._jwks_uri))
            except jwt.PyJWTError as exc:
                raise IssuerUnavailable(f"unusable JWKS: {exc}") from None
            self._keys = keys
            self._verified.clear()
            log.info("issuer keys fetched", issuer=self.issuer, kids=[k.key_id for k in keys])

    async def _key_for(self, kid: str) -> jwt.PyJWK:
        await self._refresh(force=False)
        for attempt in range(2):
            assert self._keys is not None
            for key in self._keys:
                if key.key_id == kid:
                    return key
            if attempt == 0:
                await self._refresh(force=True)  # a rotation at the issuer
        raise InvalidToken("the token's signing key is not the issuer's")

    # ------------------------------------------------------------------ tokens

    async def verify(self, token: str) -> Principal:
        kept = self._verified.get(token)
        if kept is not None:
            principal, expires_at = kept
            if time.time() < expires_at:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]  # expired: verified again below, which says so
        claims = await self.claims(token)
        principal = principal_from_claims(claims, self.roles_claim, self.institution_claim)
        # Required, and read by PyJWT as int(exp); it refuses the token once now - leeway >= exp.
        self._verified[token] = (principal, int(claims["exp"]) + self.leeway)
        while len(self._verified) > MAX_VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        # Never echo what the caller wrote: it would go into a header (and a log).
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise InvalidToken("the token's algorithm is not accepted")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no signing key (kid)")
        key = await self._key_for(kid)
        if key.algorithm_name not in self._algorithms or alg != key.algorithm_name:
            # The key decides the algorithm: a token cannot pick another one for it.
            raise InvalidToken("the token's algorithm does not match the issuer's key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token is invalid") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("the token's subject is empty")
        return claims
