"""What the master knows of each of its backups (spec/backups.md, "Failback to the master").

One :class:`BackupView` per backup, keyed by the priority byte of its status
frames (0: the backup of a pair; 1–254: one of several, spec/wire.md). The
priority is under the MAC, so a frame of one backup replayed as another's
lands in its own sender's view, where its replay guard refuses it. Each view
judges its backup exactly as a pair's master judges its only one: its own
:class:`~failoverd.core.wire.ReplayGuard`, when a frame of it last counted,
what it last said it holds, whether its silence was alarmed.

A view's "I hold nothing" *counts for the failback* (:attr:`BackupView.release_counted`)
when its newest counted word says it holds nothing, answers a heartbeat the
backup had counted, and acknowledges a heartbeat at or above the release
floor (sent since the master last rejoined). It stays counted only while the
backup is alive (heard within its failure timeout): a backup silent longer
may have taken over since, and only the presumption (its silence and a
silent ARP probe) lets the master past it then.

Nothing here reads a clock: times come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from failoverd.core import wire


def backup_name(priority: int) -> str:
    """How alarms name a backup: a pair's only one is "backup", one of several says its priority."""
    return "backup" if priority == 0 else f"backup (priority {priority})"


@dataclass(eq=False)
class BackupView:
    """One backup, as its status frames told us."""

    priority: int
    """Its ``--priority``: byte 7 of its frames (0: the backup of a pair)."""
    guard: wire.ReplayGuard
    last_heard: float | None = None
    """When a frame of it last counted (None: never in this run)."""
    holds: bool | None = None
    """What its newest counted frame said it holds (None: nothing counted yet)."""
    silent: bool = False
    """Its silence past the failure timeout was alarmed (and it was not heard since)."""
    release_counted: bool = False
    """Its newest counted word is an "I hold nothing" that counts for the failback (see the module)."""
    released_at: float | None = None
    """When its "I hold nothing" last began to count (a release, as far as we can tell): another backup
    that deferred to it may take over from then on (spec/backups.md, "Failback to the master")."""
    answer_due: float = float("-inf")
    """No handshake answer to a new epoch of it before this time (at most two per interval)."""
    overlap_reported: bool = False
    """It said it holds while we hold: alarmed once per episode."""

    @property
    def name(self) -> str:
        return backup_name(self.priority)

    def alive(self, now: float, fail_after: float) -> bool:
        """A frame of it counted within its failure timeout."""
        return self.last_heard is not None and now < self.last_heard + fail_after

    def released(self, now: float, fail_after: float) -> bool:
        """Its "I hold nothing" counts for the failback now."""
        return self.release_counted and self.alive(now, fail_after)

    def snapshot(self, now: float, fail_after: float) -> dict[str, object]:
        return {
            "priority": self.priority,
            "alive": self.alive(now, fail_after),
            "holds": self.holds,
            "released": self.released(now, fail_after),
            "last_heard_age": None if self.last_heard is None else round(now - self.last_heard, 3),
        }
