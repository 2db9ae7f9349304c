"""The running embedded stack seen from outside: its lock file and its stack.json.

`achievements dev` holds `<data dir>/stack.lock` (its pid) from the moment it starts until it
has stopped, and publishes `stack.json` once it is up. So a second `dev` or demo can tell
"starting" (lock only) from "up" (both) from "none" (neither, or a dead pid in the lock),
and `achievements stop` knows whom to ask.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import ValidationError

from schemas.stack import RunningStack

LOCK_FILE = "stack.lock"
STACK_FILE = "stack.json"


class StackBusy(Exception):
    """Another live process already owns the stack of this data folder."""

    def __init__(self, pid: int, data_dir: Path) -> None:
        super().__init__(
            f"a stack (pid {pid}) already runs from {data_dir}; "
            "stop it with `achievements stop`, or use another --data-dir"
        )
        self.pid = pid


def pid_alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    with contextlib.suppress(OSError, IndexError):
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, so split after ')'.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def owner(data_dir: Path) -> int | None:
    """The pid of the live `dev` that owns this data folder, if any."""
    try:
        pid = int((data_dir / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def take_lock(data_dir: Path) -> None:
    """Own the data folder for this process, or raise StackBusy naming the live owner.

    A lock held by this process's parent is handed over: the demo takes the lock before it
    starts `dev`, so a second demo never starts a second stack in the meantime.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = owner(data_dir)
            if pid is not None and pid not in (os.getpid(), os.getppid()):
                raise StackBusy(pid, data_dir) from None
            path.unlink(missing_ok=True)  # left by a stack that died without cleaning up
            continue
        with os.fdopen(fd, "w") as out:
            out.write(f"{os.getpid()}\n")
        return
    raise StackBusy(owner(data_dir) or 0, data_dir)


def release_lock(data_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if int((data_dir / LOCK_FILE).read_text().strip()) == os.getpid():
            (data_dir / LOCK_FILE).unlink()


def publish(data_dir: Path, stack: RunningStack) -> None:
    """Write stack.json atomically (readers never see half a file), owner-readable only."""
    path = data_dir / STACK_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(stack.model_dump_json(indent=2))
    os.replace(tmp, path)


def withdraw(data_dir: Path) -> None:
    (data_dir / STACK_FILE).unlink(missing_ok=True)


def running(data_dir: Path) -> RunningStack | None:
    """The stack published in this data folder, if its `dev` process is still alive."""
    try:
        stack = RunningStack.model_validate_json((data_dir / STACK_FILE).read_bytes())
    except (OSError, ValidationError):
        return None
    return stack if pid_alive(stack.pid) else None


NO_STACK = (
    "no stack is running from {data_dir}: start one with `achievements dev` (or `./run demo`)"
)


def no_stack(data_dir: Path) -> str:
    return NO_STACK.format(data_dir=data_dir)
