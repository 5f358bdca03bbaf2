"""A per-boot epoch that only ever grows, whatever the wall clock does.

The epoch in every authenticated frame is wall-clock nanoseconds at start, so
that a restarted daemon's frames are newer than anything it sent before. A
host that boots without a real-time clock, or whose clock NTP steps back,
would start with an older epoch and the peer would refuse all its frames as
replays (for good, since the backup keeps its replay floor on disk). So the
last epoch used is kept in the state directory, and the next one is never
below it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "epoch"


def next_epoch(state_dir: Path, *, now_ns: int | None = None) -> int:
    """An epoch above the last one recorded in ``state_dir``, recorded before it is returned.

    Failures to read or write the file are logged and the wall clock is used:
    a daemon must start even on a read-only state directory.
    """
    path = Path(state_dir) / FILE_NAME
    epoch = time.time_ns() if now_ns is None else now_ns
    try:
        last = int(path.read_text().strip())
    except FileNotFoundError:
        last = 0
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable epoch file %s: %s", path, error)
        last = 0
    if epoch <= last:
        log.warning("the wall clock is behind the last epoch used (%d ns): continuing from it", last - epoch)
        epoch = last + 1
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(FILE_NAME + ".tmp")
        with open(temporary, "w") as handle:
            handle.write(f"{epoch}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        log.error("cannot record the epoch in %s: %s", path, error)
    return epoch
