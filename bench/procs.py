"""What the benchmarks read from /proc: CPU time of a process, of PostgreSQL and of the machine,
and the dev server's pid."""

from __future__ import annotations

import os
import pathlib

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + sys of the process (all its threads)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stat(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()


def _children(ppid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(entry.name)[1]) == ppid:
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return found


def postgres_cpu_seconds(pgdata: pathlib.Path) -> float:
    """The PostgreSQL serving `pgdata`: its postmaster, its live backends and the ones it has
    reaped (cutime/cstime), so a connection that closed mid-run still counts."""
    marker = str(pgdata).encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            # The postmaster: `postgres -D <pgdata> ...` (pg_ctl is gone once it has started).
            if marker not in cmdline or not cmdline.split(b"\0")[0].endswith(b"/postgres"):
                continue
            pid = int(entry.name)
            fields = _stat(pid)
            total = sum(int(f) for f in fields[11:15]) / CLK_TCK
            return total + sum(_safe_cpu(c) for c in _children(pid))
        except OSError:
            continue
    raise RuntimeError(f"no PostgreSQL serving {pgdata}")


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0  # exited between the listing and the read


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def dev_server_pid(tmp: pathlib.Path) -> int:
    """The Temporal dev server of the stack in `tmp` (WorkflowEnvironment.start_local spawns it
    as our child and does not expose its pid): the child whose command line says start-dev and
    names the stack's database file. Under pytest the test session's own dev server is a
    child too."""
    me, database = os.getpid(), str(tmp / "temporal.db").encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"start-dev" in cmdline and database in cmdline:
            return int(entry.name)
    raise RuntimeError(f"no Temporal dev server of {tmp} among this process's children")
