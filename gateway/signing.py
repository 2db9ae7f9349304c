"""HMAC-SHA256 webhook signatures over timestamp and body, with a replay window.

Header format, as sent by the sandboxes and expected by the gateway:
    X-Webhook-Timestamp: <unix seconds>
    X-Webhook-Signature: v1=<hex hmac_sha256(secret, f"{timestamp}.{body}")>
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"


class SignatureError(Exception):
    """The webhook is not authentic or is outside the replay window."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: f"v1={digest}"}


def verify(
    secret: str | list[str],
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    if not timestamp or not signature:
        raise SignatureError("missing signature headers")
    try:
        ts = int(timestamp)
    except ValueError as exc:
        raise SignatureError("timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise SignatureError("timestamp outside the replay window")
    # During a rotation two secrets are valid: the new one first, the old until senders move.
    secrets = [secret] if isinstance(secret, str) else secret
    # As bytes: a header with a non-ASCII character must be a mismatch, not a TypeError.
    given = signature.encode("utf-8", "surrogateescape")
    matches = [
        hmac.compare_digest(sign(s, body, ts)[SIGNATURE_HEADER].encode(), given) for s in secrets
    ]
    if not any(matches):
        raise SignatureError("signature does not match")
