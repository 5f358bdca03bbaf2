"""Where labs are recorded, so that another process can find, control, or sweep them.

Each lab has a directory ``$FAILOVERD_LAB_DIR/<lab id>/`` (default ``/run/failoverd-lab``, a tmpfs
that a reboot empties along with the namespaces) holding ``lab.json`` (its description, owner and
emulator), the emulator's configuration, control socket and log. Subnet allocation happens under
an exclusive lock on the directory so that labs created at the same time never share a subnet.

A lab's *owner* is the process that will destroy it (a test run); a lab started with
``failoverd-lab up`` has none and lives until ``failoverd-lab down``. A process is identified by
its PID *and* its start time, so a recycled PID is never mistaken for the owner.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failoverd.lab.topology import LAB_ID_RE, SUBNET_RANGE, check_lab_id

ENV_DIR = "FAILOVERD_LAB_DIR"
DEFAULT_DIR = "/run/failoverd-lab"


def state_dir() -> Path:
    path = Path(os.environ.get(ENV_DIR, DEFAULT_DIR))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def lab_dir(lab_id: str) -> Path:
    return state_dir() / check_lab_id(lab_id)


@contextmanager
def locked() -> Iterator[None]:
    with open(state_dir() / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start: int  # clock ticks after boot, /proc/PID/stat field 22

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        start = _start_time(pid)
        return None if start is None else cls(pid, start)

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start

    def to_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_dict(cls, raw: Any) -> ProcessId | None:
        if not isinstance(raw, dict):
            return None
        return cls(int(raw["pid"]), int(raw["start"]))


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def read_record(lab_id: str) -> dict[str, Any] | None:
    try:
        with open(lab_dir(lab_id) / "lab.json", encoding="utf-8") as f:
            record = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(lab_id: str, record: dict[str, Any]) -> None:
    directory = lab_dir(lab_id)
    directory.mkdir(mode=0o700, exist_ok=True)
    temporary = directory / "lab.json.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(temporary, directory / "lab.json")


def remove_record(lab_id: str) -> None:
    shutil.rmtree(lab_dir(lab_id), ignore_errors=True)


def recorded_labs() -> list[str]:
    return sorted(p.name for p in state_dir().iterdir() if p.is_dir() and LAB_ID_RE.match(p.name))


def allocate_subnet(lab_id: str, taken: set[int]) -> int:
    """The first free second octet, starting from one derived from the id (call under ``locked``)."""
    for record_id in recorded_labs():
        record = read_record(record_id)
        if record and isinstance(record.get("subnet"), int):
            taken.add(record["subnet"])
    size = len(SUBNET_RANGE)
    start = int(lab_id[2:], 16) % size
    for step in range(size):
        candidate = SUBNET_RANGE[(start + step) % size]
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"all {size} lab subnets are in use; run 'failoverd-lab sweep'")
