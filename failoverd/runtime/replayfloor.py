"""The backup's memory of the newest master heartbeat, kept across restarts.

Without it, a restarted backup would accept any authenticated heartbeat ever
recorded from the master (same key, any old epoch): an attacker replaying
yesterday's capture could keep a dead master "alive". The file holds the
newest accepted (epoch, seq) for one master address; it is written atomically
(temporary file, fsync, rename) at most once per period, and at exit.
Frames sent in the last period before a crash may be replayed once after a
restart; they are from a master that was alive a moment ago, and the core's
delay guard bounds how long they can count.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "replay-floor.json"


class ReplayFloorFile:
    def __init__(self, state_dir: Path, master: str) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.master = master
        self._written: tuple[int, int] | None = None
        self._failing = False

    def load(self) -> tuple[int, int]:
        """The saved floor for this master, or (0, 0) if there is none (or it is unreadable)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return (0, 0)
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable replay floor %s: %s", self.path, error)
            return (0, 0)
        if not isinstance(data, dict) or data.get("master") != self.master:
            log.info("replay floor %s is for another master; starting afresh", self.path)
            return (0, 0)
        epoch, seq = data.get("epoch"), data.get("seq")
        if not (isinstance(epoch, int) and isinstance(seq, int) and epoch >= 0 and seq >= 0):
            log.warning("ignoring malformed replay floor %s", self.path)
            return (0, 0)
        self._written = (epoch, seq)
        return (epoch, seq)

    def save(self, floor: tuple[int, int]) -> None:
        """Write ``floor`` if it changed since the last write; failures are logged once, not raised."""
        if floor == self._written:
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            with open(temporary, "w") as handle:
                json.dump({"master": self.master, "epoch": floor[0], "seq": floor[1]}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            if not self._failing:
                self._failing = True
                log.error("cannot save the replay floor to %s: %s", self.path, error)
            return
        if self._failing:
            self._failing = False
            log.info("replay floor saved to %s again", self.path)
        self._written = floor
