"""How HTTP outcomes of the external systems map to Temporal retry behaviour.

A rejection (the request itself is wrong) must not be retried: retrying cannot fix it and
would hide the bug. Unavailability (overload, outage, timeouts) is retried by Temporal with
the activity's retry policy. Network errors are left to propagate for the same reason: Temporal
retries any exception that is not marked non-retryable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from activities.http_client import Reply
from schemas.registry_api import ApiError

M = TypeVar("M", bound=BaseModel)

REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# Statuses that say "try again later", not "your request is wrong".
RETRYABLE_4XX = frozenset({408, 425, 429})
# Longest server-requested back-off we honour; beyond it the retry policy decides.
MAX_RETRY_AFTER = timedelta(minutes=5)


def _label(system: str) -> str:
    # "registry" -> "Registry", "poc-fund" -> "PocFund": error types are CamelCase names.
    return "".join(part.capitalize() for part in system.replace("_", "-").split("-"))


def is_replay(response: Reply) -> bool:
    """A 409 that carries the original result of the same idempotency key is a success."""
    return (
        response.status == 409
        and response.headers.get(REPLAYED_HEADER, "").strip().lower() == "true"
    )


def _api_error(response: Reply) -> ApiError:
    try:
        return ApiError.model_validate_json(response.content)
    except ValidationError:
        # Not our error format (e.g. a proxy page): keep a short excerpt for the operator.
        excerpt = response.text[:200].strip() or response.reason
        return ApiError(type=f"http_{response.status}", message=excerpt)


def _retry_after(response: Reply) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: rare here, let the retry policy pace it
    if seconds < 0:
        return None
    return min(timedelta(seconds=seconds), MAX_RETRY_AFTER)


def raise_for_status(system: str, response: Reply) -> None:
    """Return on success (2xx or a same-key replay), raise an ApplicationError otherwise."""
    status = response.status
    if 200 <= status < 300 or is_replay(response):
        return
    label = _label(system)
    if status in RETRYABLE_4XX or status >= 500:
        error = _api_error(response)
        raise ApplicationError(
            f"{system} unavailable (HTTP {status}, {error.type}): {error.message}",
            {"status": status, **error.model_dump()},
            type=f"{label}Unavailable",
            next_retry_delay=_retry_after(response),
        )
    if 400 <= status < 500:
        error = _api_error(response)
        fields = f" [fields: {', '.join(error.fields)}]" if error.fields else ""
        # The ApiError goes into the details so a workflow can branch on its type.
        raise ApplicationError(
            f"{system} rejected the request (HTTP {status}, {error.type}): {error.message}{fields}",
            {"status": status, **error.model_dump()},
            type=f"{label}Rejected",
            non_retryable=True,
        )
    # 1xx/3xx: we never ask for redirects, so this is a contract mismatch, not an outage.
    raise ApplicationError(
        f"{system} answered with unexpected HTTP {status}",
        {"status": status},
        type=f"{label}ProtocolError",
        non_retryable=True,
    )


def parse_body(system: str, response: Reply, model: type[M]) -> M:
    """Parse a successful body; a malformed one is a contract break that retries cannot fix."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "body" for err in exc.errors()})
        raise ApplicationError(
            f"{system} sent a malformed {model.__name__} (HTTP {response.status}); "
            f"bad fields: {', '.join(fields)}",
            {"status": response.status, "fields": fields},
            type=f"{_label(system)}ProtocolError",
            non_retryable=True,
        ) from None


def checked(system: str, response: Reply, model: type[M]) -> M:
    """raise_for_status then parse_body: the usual path of a client call."""
    raise_for_status(system, response)
    return parse_body(system, response, model)
