"""The README keeps up with the command line: every command, one example each, and a
disclosure request that the gateway would accept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from cli.main import app
from schemas.gateway_api import DisclosureRequest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def visible_commands() -> list[str]:
    """What `achievements --help` lists (hidden commands left out)."""
    group = typer.main.get_command(app)
    commands: dict[str, Any] = getattr(group, "commands", {})
    return sorted(name for name, command in commands.items() if not command.hidden)


def test_every_command_of_the_help_has_a_row_with_an_example() -> None:
    commands = visible_commands()
    assert {"dev", "demo", "stop", "disclose", "list", "schedule"} <= set(commands)
    section = README.split("## Every command", 1)[1].split("\n## ", 1)[0]
    for name in commands:
        row = re.search(
            rf"^\| `{re.escape(name)}` \| `achievements {re.escape(name)}\b", section, re.M
        )
        assert row, f"README has no example row for `achievements {name}`"


def test_the_disclosure_to_copy_is_a_valid_request() -> None:
    section = README.split("## Every command", 1)[1]
    body = section.split("```json\n", 1)[1].split("```", 1)[0]
    request = DisclosureRequest.model_validate_json(body)
    assert request.disclosure.synthetic


def test_temporal_is_written_where_it_is_installed() -> None:
    assert ".venv/bin/temporal workflow" in README
    assert not re.search(r"^temporal ", README, re.M)
