"""Codec server for the Temporal Web UI (and `temporal ... --codec-endpoint`): /codec/*.

The UI POSTs {"payloads": [...]} in protobuf JSON form (metadata values and data in base64)
to /codec/decode to show encrypted payloads, and to /codec/encode when it sends input (e.g.
a signal). The codec is the one of the gateway's client, so it is exactly the deployment's.

Guarded three ways: 404 when payload encryption is off; from a browser, only the configured UI
origin (CORS); and a bearer token on every POST (outside the embedded stack, whose UI has no
sign-in, or whenever ACHIEVEMENTS_CODEC_AUTH_TOKEN is set): either that static token (for the
`temporal` CLI) or a person's access token from the issuer (the Web UI forwards the signed-in
user's), of a role that may read payloads (an institution officer, an approver or the
regulator). Not part of the published API
(left out of the OpenAPI document).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from core.codec import PayloadDecryptionError
from core.settings import Settings
from gateway.tokens import InvalidToken, IssuerUnavailable, TokenVerifier
from schemas.identity import Role

log = structlog.get_logger(__name__)

# The UI batches the payloads of a history page; Temporal caps one payload at 2 MiB.
MAX_CODEC_BODY = 8 * 1024 * 1024
ALLOWED_HEADERS = "authorization, content-type, x-namespace"


def _problem(status: int, field: str | None, message: str) -> dict[str, Any]:
    # The gateway's shapes: 422 lists field errors, everything else is {detail, field}.
    if status == 422:
        return {"detail": [{"field": field or "body", "message": message}]}
    return {"detail": message, "field": field}


# Who may see decrypted payloads through the UI: the people who read whole lifecycles.
CODEC_ROLES = frozenset({Role.TTO_OFFICER, Role.APPROVER, Role.REGULATOR})


def allowed_origins(settings: Settings) -> frozenset[str]:
    """The configured UI origin; in dev also its loopback twin (localhost <-> 127.0.0.1).

    The embedded stack's UI answers at both, and a browser sends whichever the person typed:
    without the twin the UI at 127.0.0.1 got no answer and showed payloads as blank.
    """
    origin = settings.codec_ui_origin
    if settings.environment != "dev":
        return frozenset({origin})
    twins = {"//localhost:": "//127.0.0.1:", "//127.0.0.1:": "//localhost:"}
    for host, twin in twins.items():
        if host in origin:
            return frozenset({origin, origin.replace(host, twin)})
    return frozenset({origin})


def codec_router(
    codec: PayloadCodec | None, settings: Settings, verifier: TokenVerifier | None = None
) -> APIRouter:
    router = APIRouter(prefix="/codec", include_in_schema=False)
    origins = allowed_origins(settings)
    token = settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else ""

    def cors(request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin not in origins:
            return {"Vary": "Origin"}
        return {
            "Access-Control-Allow-Origin": origin,
            # The UI may send its cookies or access token along (includeCredentials).
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    async def bearer_refusal(request: Request, headers: dict[str, str]) -> JSONResponse | None:
        """None when the bearer is the static token or a reading person's access token."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.strip()
        if (
            scheme.lower() == "bearer"
            and token
            and hmac.compare_digest(given.encode(), token.encode())
        ):
            return None
        if scheme.lower() == "bearer" and given and verifier is not None:
            try:
                principal = await verifier.verify(given)
            except (InvalidToken, IssuerUnavailable) as exc:
                log.info("codec token refused", reason=str(exc))
            else:
                if principal.roles & CODEC_ROLES:
                    return None
                roles = ", ".join(sorted(r.value for r in CODEC_ROLES))
                detail = f"decoding payloads requires the role {roles}"
                return JSONResponse(_problem(403, "Authorization", detail), 403, headers=headers)
        return JSONResponse(
            _problem(401, "Authorization", "a valid bearer token is required"),
            401,
            headers={**headers, "WWW-Authenticate": "Bearer"},
        )

    async def refusal(request: Request) -> JSONResponse | None:
        """404 when off, 403 from a foreign page, 401 without the token; None: go ahead."""
        headers = cors(request)
        if codec is None:
            detail = "payload encryption is off (ACHIEVEMENTS_CODEC_KEYS is not set)"
            return JSONResponse(_problem(404, None, detail), 404, headers=headers)
        origin = request.headers.get("origin")
        # No Origin header: not a browser (the temporal CLI, curl); CORS does not apply.
        if origin is not None and origin not in origins:
            log.info("codec request from a foreign origin refused", origin=origin)
            detail = f"origin {origin!r} is not allowed (ACHIEVEMENTS_CODEC_UI_ORIGIN)"
            return JSONResponse(_problem(403, "Origin", detail), 403, headers=headers)
        # The embedded stack's UI has no sign-in: there the origin check guards the codec,
        # unless a static token is set. Everywhere else a bearer is required.
        required = bool(token) or (verifier is not None and settings.environment != "dev")
        if required and request.method != "OPTIONS":
            return await bearer_refusal(request, headers)
        return None

    async def read_payloads(request: Request) -> list[Payload] | JSONResponse:
        headers = cors(request)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_CODEC_BODY:
                detail = f"body larger than {MAX_CODEC_BODY} bytes"
                return JSONResponse(_problem(413, None, detail), 413, headers=headers)
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except ValueError:
            return JSONResponse(
                _problem(422, "body", 'must be JSON: {"payloads": [...]}'), 422, headers=headers
            )
        if not isinstance(body, dict) or not isinstance(body.get("payloads", []), list):
            return JSONResponse(
                _problem(422, "payloads", "must be a list of payloads"), 422, headers=headers
            )
        try:
            message = json_format.ParseDict(body, Payloads(), ignore_unknown_fields=False)
        except json_format.ParseError as exc:
            return JSONResponse(_problem(422, "payloads", str(exc)), 422, headers=headers)
        return list(message.payloads)

    async def apply(request: Request, action: Literal["encode", "decode"]) -> Response:
        refused = await refusal(request)
        if refused is not None:
            return refused
        assert codec is not None  # refusal() answered 404 otherwise
        transform = codec.encode if action == "encode" else codec.decode
        payloads = await read_payloads(request)
        if isinstance(payloads, JSONResponse):
            return payloads
        out: list[Payload] = []
        # One at a time, so an error names the payload it is about.
        for index, payload in enumerate(payloads):
            try:
                out.extend(await transform([payload]))
            except PayloadDecryptionError as exc:
                return JSONResponse(
                    _problem(422, f"payloads[{index}]", str(exc)), 422, headers=cors(request)
                )
        log.debug("codec request served", action=action, payloads=len(out))
        # Always a "payloads" key, even for none (MessageToDict would drop an empty list).
        content = {"payloads": [json_format.MessageToDict(p) for p in out]}
        return JSONResponse(content, headers=cors(request))

    async def preflight(request: Request) -> Response:
        refused = await refusal(request)
        if refused is not None:
            return refused
        headers = {
            **cors(request),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        }
        return Response(status_code=204, headers=headers)

    @router.post("/encode")
    async def encode(request: Request) -> Response:
        return await apply(request, "encode")

    @router.post("/decode")
    async def decode(request: Request) -> Response:
        return await apply(request, "decode")

    router.add_api_route("/encode", preflight, methods=["OPTIONS"])
    router.add_api_route("/decode", preflight, methods=["OPTIONS"])
    return router
