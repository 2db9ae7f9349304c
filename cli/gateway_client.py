"""The command line's HTTP client of the gateway: where it is, who we are, and every failure
worded for a person (exit codes: 0 done; 1 refused; 2 bad options or not logged in; 3 the
gateway or identity provider is not reachable).

Options are checked with the gateway's own request models before anything is sent, so a
mistake is named by its option.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx
import typer
from pydantic import BaseModel, ValidationError

from cli import credentials
from core.settings import Settings
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN

M = TypeVar("M", bound=BaseModel)

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# Updates wait for the workflow to accept them; a busy worker can take a few seconds.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
STACK_FILE = "stack.json"


class Failed(Exception):
    """A clear, already-worded error for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    raise Failed(message, code)


def report(error: Failed) -> NoReturn:
    # Plain echo, not rich: messages carry user text that must not be read as markup.
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(error.code)


# ---------------------------------------------------------------------------- where


def _stack(data_dir: Path) -> dict[str, Any]:
    marker = data_dir / STACK_FILE
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def gateway_url(explicit: str | None, data_dir: Path = Path(".data")) -> str:
    """--gateway-url / ACHIEVEMENTS_GATEWAY_URL, else the running stack's, else the default."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("ACHIEVEMENTS_GATEWAY_URL"):
        return Settings().gateway_url.rstrip("/")
    return str(_stack(data_dir).get("gateway_url") or Settings().gateway_url).rstrip("/")


def issuer_url(explicit: str | None = None, data_dir: Path = Path(".data")) -> str | None:
    """--issuer / ACHIEVEMENTS_OIDC_ISSUER, else the last login's, else the running stack's."""
    if explicit:
        return explicit.rstrip("/")
    configured = Settings().oidc_issuer or credentials.last_issuer()
    if configured:
        return configured.rstrip("/")
    found = _stack(data_dir).get("issuer_url")
    return str(found).rstrip("/") if found else None


# ---------------------------------------------------------------------------- local checks


def option_name(loc: Sequence[int | str], options: dict[str, str]) -> str:
    """A pydantic error location as the user typed it: the option, or the JSON path."""
    if not loc:
        return options.get("", "input")
    head, rest = str(loc[0]), [str(p) for p in loc[1:]]
    if head in options:
        # A list option (e.g. --mode) names which occurrence was wrong.
        return options[head] + (f" #{int(rest[0]) + 1}" if rest and rest[0].isdigit() else "")
    return ".".join([head, *rest])


def field_lines(errors: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"  {name}: {message}" for name, message in errors)


def _id_error(achievement_id: str) -> tuple[str, str] | None:
    if re.fullmatch(ACHIEVEMENT_ID_PATTERN, achievement_id):
        return None
    return (
        "ID",
        f"{achievement_id!r} is not an achievement id (3-63 capital letters, digits "
        "and dashes, e.g. UNI-2024-001)",
    )


def build(model: type[M], options: dict[str, str], achievement_id: str, **values: Any) -> M:
    """Validate the id and options with the gateway's own model; every bad one named at once."""
    errors = [e for e in [_id_error(achievement_id)] if e]
    try:
        built = model.model_validate(values)
    except ValidationError as exc:
        errors += [
            (option_name(e["loc"], options), e["msg"]) for e in exc.errors(include_input=False)
        ]
    if errors:
        fail("invalid options:\n" + field_lines(errors), EXIT_USAGE)
    return built


def check_id(achievement_id: str) -> None:
    error = _id_error(achievement_id)
    if error:
        fail(f"{error[0]}: {error[1]}", EXIT_USAGE)


# ---------------------------------------------------------------------------- HTTP


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: httpx.Response) -> Any:
    body = _json(response)
    if body is None:
        return response.text.strip() or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


def _refusal(
    base: str, response: httpx.Response, achievement_id: str | None, options: dict[str, str]
) -> NoReturn:
    status, detail = response.status_code, _detail(response)
    if status == 401:
        fail(f"the gateway refused the token ({detail}): run `achievements login`", EXIT_USAGE)
    if status == 403:
        fail(f"not allowed: {detail}")
    if status == 404:
        if achievement_id and isinstance(detail, str) and detail.startswith("no such"):
            fail(f"no achievement {achievement_id} (or not one you may see)")
        # A 404 without the gateway's wording: the URL is probably not the gateway.
        fail(f"{response.request.url.path} not found at {base} ({detail}); is it the gateway?")
    if status == 409:
        body = _json(response)
        field = body.get("field") if isinstance(body, dict) else None
        fail(f"refused: {detail}" + (f" (field {field})" if field else ""))
    if status == 422 and isinstance(detail, list):
        errors = [
            (option_name(str(e.get("field", "")).split("."), options), str(e.get("message")))
            for e in detail
            if isinstance(e, dict)
        ]
        fail("the gateway refused the input:\n" + field_lines(errors))
    fail(f"the gateway answered {status}: {detail}")


def authorization(data_dir: Path = Path(".data")) -> dict[str, str]:
    try:
        token = credentials.access_token(issuer_url(None, data_dir))
    except credentials.LoginRequired as exc:
        fail(str(exc), EXIT_USAGE)
    return {"Authorization": f"Bearer {token}"}


def call(
    gateway: str | None,
    method: str,
    path: str,
    *,
    achievement_id: str | None = None,
    body: BaseModel | None = None,
    raw: bytes | None = None,
    options: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, httpx.Response]:
    """One authenticated request to the gateway; any failure becomes a worded `Failed`."""
    base = gateway_url(gateway)
    content = raw if raw is not None else body.model_dump_json().encode() if body else None
    headers = authorization() | (extra_headers or {})
    if content is not None:
        headers["Content-Type"] = "application/json"
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT) as http:
            response = http.request(method, path, content=content, headers=headers, params=params)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        fail(f"--gateway-url: {base!r} is not an http(s) URL ({exc})", EXIT_USAGE)
    except httpx.ConnectError:
        fail(
            f"gateway not reachable at {base}; start the stack with `achievements dev`",
            EXIT_UNREACHABLE,
        )
    except httpx.TimeoutException:
        fail(f"the gateway at {base} did not answer in time", EXIT_UNREACHABLE)
    except httpx.TransportError as exc:
        fail(f"the gateway at {base} failed: {exc}", EXIT_UNREACHABLE)
    if response.status_code >= 300:
        _refusal(base, response, achievement_id, options or {})
    return response.status_code, response


def update(
    gateway: str | None,
    achievement_id: str,
    path: str,
    body: BaseModel,
    options: dict[str, str],
) -> Any:
    _, response = call(
        gateway,
        "POST",
        f"/achievements/{achievement_id}/{path}",
        achievement_id=achievement_id,
        body=body,
        options=options,
    )
    return response.json()["result"]
