"""`achievements login`, `logout` and `whoami`: a person's session with the identity provider."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli import credentials
from cli.gateway_client import EXIT_USAGE, Failed, call, fail, issuer_url, report

Issuer = Annotated[
    str | None,
    typer.Option(
        help="OIDC issuer URL (default: ACHIEVEMENTS_OIDC_ISSUER, else the running stack's)",
        show_default=False,
    ),
]


def login(
    username: Annotated[str | None, typer.Option(help="Your username at the issuer")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    client_credentials: Annotated[
        bool,
        typer.Option(
            "--client-credentials",
            help="Log in as a script: ACHIEVEMENTS_OIDC_CLIENT_ID and _SECRET",
        ),
    ] = False,
    issuer: Issuer = None,
) -> None:
    """Sign in at your institution's identity provider; later commands use the token."""
    try:
        where = issuer_url(issuer)
        if where is None:
            fail(
                "no identity provider known: pass --issuer, set ACHIEVEMENTS_OIDC_ISSUER, "
                "or start the stack with `achievements dev`",
                EXIT_USAGE,
            )
        client_id = os.environ.get("ACHIEVEMENTS_OIDC_CLIENT_ID", credentials.DEFAULT_CLIENT_ID)
        if client_credentials:
            secret = os.environ.get("ACHIEVEMENTS_OIDC_CLIENT_SECRET")
            if not secret:
                fail("ACHIEVEMENTS_OIDC_CLIENT_SECRET is not set", EXIT_USAGE)
            credentials.login_client_credentials(where, client_id, secret)
            typer.echo(f"logged in at {where} as client {client_id}")
            return
        name = username or typer.prompt("username")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("password", hide_input=True)
        credentials.login_password(where, name, password, client_id)
    except credentials.LoginRequired as exc:
        report(Failed(str(exc), EXIT_USAGE))
    except Failed as exc:
        report(exc)
    typer.echo(f"logged in at {where} as {name}")


def logout(issuer: Issuer = None) -> None:
    """Forget the cached tokens of this issuer."""
    where = issuer_url(issuer)
    if where is not None and credentials.logout(where):
        typer.echo(f"logged out of {where}")
    else:
        typer.echo("not logged in")


def whoami(gateway_url: Annotated[str | None, typer.Option()] = None) -> None:
    """Who the gateway takes you for, your roles and what they allow."""
    try:
        _, response = call(gateway_url, "GET", "/me")
    except Failed as exc:
        report(exc)
    me = response.json()
    typer.echo(f"{me['subject']} ({me.get('name') or '-'}) of {me.get('institution') or '-'}")
    typer.echo(f"roles: {', '.join(me['roles']) or 'none'}")
    for operation, scope in me["may"].items():
        typer.echo(f"  {operation}: {scope}")


def register(app: typer.Typer) -> None:
    for command in (login, logout, whoami):
        app.command()(command)
