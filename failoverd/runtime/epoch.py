"""A per-boot epoch that only ever grows, whatever the wall clock does.

The epoch in every authenticated frame is wall-clock nanoseconds at start, so
that a restarted daemon's frames are newer than anything it sent before. A
host that boots without a real-time clock, or whose clock NTP steps back,
would start with an older epoch and the peer would refuse all its frames as
replays until the peer restarts. Worse, an epoch used twice would let frames
recorded in its first life acknowledge its second: a peer counts a frame only
if it acknowledges the receiver's *current* epoch (spec/wire.md). So the last
epoch used is kept in the state directory, and the next one is never below it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from failoverd.system.trusted import Untrusted, open_state_file

log = logging.getLogger(__name__)

FILE_NAME = "epoch"
_TEMPORARY = FILE_NAME + ".tmp"


def next_epoch(state_dir: Path, *, now_ns: int | None = None) -> int:
    """An epoch above the last one recorded in ``state_dir``, recorded before it is returned.

    The file is opened with ``O_NOFOLLOW`` in a directory only root can
    write (:func:`failoverd.system.trusted.open_state_file`): the recorded
    epoch sets every later one, so nobody else may plant one.

    Error handling: a file that cannot be read or written is logged and the
    wall clock is used (a daemon must start even on a read-only state
    directory); a state directory or epoch file that cannot be trusted (a
    symbolic link, a directory others can write) is logged as an error and
    left as it is: nothing is read from it or written to it.
    """
    state_dir = Path(state_dir)
    path = state_dir / FILE_NAME
    epoch = time.time_ns() if now_ns is None else now_ns
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        last = _read_last(state_dir)
    except Untrusted as error:
        log.error("refusing the epoch file %s: %s; using the wall clock, recording nothing", path, error)
        return epoch
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable epoch file %s: %s", path, error)
        last = 0
    if epoch <= last:
        log.warning("the wall clock is behind the last epoch used (%d ns): continuing from it", last - epoch)
        epoch = last + 1
    try:
        _record(state_dir, epoch)
    except Untrusted as error:
        log.error("refusing the epoch file %s: %s; the epoch is not recorded", path, error)
    except OSError as error:
        log.error("cannot record the epoch in %s: %s", path, error)
    return epoch


def _read_last(state_dir: Path) -> int:
    try:
        fd = open_state_file(state_dir, FILE_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    with open(fd, closefd=True) as handle:
        return int(handle.read(64).strip())


def _record(state_dir: Path, epoch: int) -> None:
    """Write a temporary file and rename it over the old one, both in the trusted directory."""
    fd = open_state_file(state_dir, _TEMPORARY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", closefd=True) as handle:
        handle.write(f"{epoch}\n")
        handle.flush()
        os.fsync(handle.fileno())
    # By name, which is safe in a directory only root can write; rename(2) replaces the
    # name itself, never what a link there would point to.
    os.replace(state_dir / _TEMPORARY, state_dir / FILE_NAME)
