"""Request-body limits, enforced before anything parses a body.

Size is checked from Content-Length up front and counted while a chunked body is read; a JSON
body must be UTF-8 and nested no deeper than a limit, measured without recursion (a recursive
parser given 600 nested arrays raised RecursionError: a 500 that also closed the connection).
The checked body is then replayed to the app, so the connection stays usable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 256 * 1024
DEFAULT_MAX_DEPTH = 32

# Brackets only, as "(" and ")": the rest of a body has no say in its depth.
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nested_deeper_than(body: bytes | bytearray, limit: int) -> bool:
    """True when JSON arrays/objects nest more than `limit` levels; brackets in strings do not
    count. No recursion and no loop per byte in Python: a hostile body costs milliseconds."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # Without escapes (escaped backslashes first), every quote opens or closes a string: keep
    # what lies between strings. An unterminated string runs to the end of the body.
    unescaped = bytes(body).replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    parens = outside.translate(_AS_PARENS, _NOT_BRACKETS)
    # Each round removes the innermost pairs: a balanced body takes as many rounds as it is deep.
    rounds = 0
    while b"()" in parens:
        parens = parens.replace(b"()", b"")
        rounds += 1
        if rounds > limit:
            return True
    # Left: unmatched brackets (")))((("); a parser goes that much deeper before it fails.
    return rounds + parens.count(b"(") > limit


def _is_json(content_type: str | None) -> bool:
    # FastAPI parses a body without a Content-Type as JSON too.
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"body larger than {limit} bytes"}, status_code=413)


class BodyLimits:
    """Plain ASGI middleware: Starlette's BaseHTTPMiddleware costs ~1 ms of CPU per request.

    `max_body`: bytes for any path not in `per_path`, a map of path prefix to bytes (the longest
    matching prefix wins), e.g. ``{"/webhooks/": 64 * 1024}``. `max_depth`: JSON nesting levels.
    Refusals: 413 and 400 as ``{"detail": "..."}``, too deep as the gateway's 422 shape.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body: int = DEFAULT_MAX_BODY,
        per_path: Mapping[str, int] | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        always_json: Sequence[str] = (),
    ) -> None:
        self.app = app
        # Path prefixes whose routes parse the raw body as JSON whatever its Content-Type
        # (signed webhooks): checked as JSON too.
        self.always_json = tuple(always_json)
        self.max_body = max_body
        self.per_path = sorted((per_path or {}).items(), key=lambda item: -len(item[0]))
        self.max_depth = max_depth

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.per_path:
            if path.startswith(prefix):
                return limit
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not chunked and (declared is None or declared == "0"):
            await self.app(scope, receive, send)  # no body: nothing to check
            return

        limit = self.limit_for(scope["path"])
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # Answer without reading: uvicorn discards the rest and keeps the connection.
            await _too_large(limit)(scope, receive, send)
            return
        body = bytearray()
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client has gone: there is nobody to answer
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(limit)(scope, receive, send)
                return
            more_body = message.get("more_body", False)

        if _is_json(headers.get("content-type")) or scope["path"].startswith(self.always_json):
            problem = self._json_problem(body)
            if problem is not None:
                await problem(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: http.disconnect, as the app expects

        await self.app(scope, replay, send)

    def _json_problem(self, body: bytearray) -> JSONResponse | None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"detail": "body is not UTF-8"}, status_code=400)
        if nested_deeper_than(body, self.max_depth):
            message = f"JSON nested deeper than {self.max_depth} levels"
            return JSONResponse(
                {"detail": [{"field": "body", "message": message}]}, status_code=422
            )
        return None
