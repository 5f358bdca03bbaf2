"""What the cores ask the world to do, and what the world answers.

Actions are plain frozen values: the shell executes them in order, one at a
time, and reports each outcome back to the core with ``now``. Results carry
the exact sets of addresses that changed, so the core always knows precisely
which addresses this host holds, even after a partial failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from failoverd.core.addresses import Triplet

Addresses = frozenset[Triplet]


# --- actions (core → shell) -------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """ARP-probe each address (RFC 5227): does any other host answer for it?"""

    addresses: Addresses


@dataclass(frozen=True)
class Acquire:
    """Run Test/PreAcq hooks, add the addresses, announce them (gratuitous ARP), PostAcq."""

    addresses: Addresses


@dataclass(frozen=True)
class Release:
    """Run Test/PreRel hooks, remove the addresses, PostRel."""

    addresses: Addresses


@dataclass(frozen=True)
class Announce:
    """Send gratuitous ARP for addresses already held (heartbeatd's tickle)."""

    addresses: Addresses


@dataclass(frozen=True)
class Notify:
    """Tell the administrator (NotifyFailover): ``down`` = the peer failed, ``up`` = it is back."""

    direction: Literal["up", "down"]
    peer: str
    addresses: Addresses


AlarmLevel = Literal["info", "warning", "error", "critical"]


@dataclass(frozen=True)
class Alarm:
    """Something an operator must look at: logged at ``level`` and mailed when ``mail``."""

    level: AlarmLevel
    message: str
    mail: bool = False
    path: str | None = None
    """The heartbeat path the alarm is about, if any (for structured logs and metrics)."""
    addresses: Addresses | None = None
    """The addresses the alarm is about, if any."""


@dataclass(frozen=True)
class Transmit:
    """Send ``payload`` to each address in ``targets`` on the heartbeat port."""

    payload: bytes
    targets: tuple[str, ...]


@dataclass(frozen=True)
class StateChanged:
    """The core moved from ``source`` to ``dest`` on ``trigger`` (for logs and timelines)."""

    source: str
    dest: str
    trigger: str


@dataclass(frozen=True)
class Stopped:
    """The core's stop is complete (what it had to release is released, or could not be): the daemon may exit."""


@dataclass(frozen=True)
class Claim:
    """Ask the etcd witness for the address set's claim (spec/witness.md): taken when free, or
    taken over when its holder stopped renewing. Once granted, the shell renews it every
    renew period, one renewal in flight, and reports each as :class:`RenewDone`, until
    :class:`ReleaseClaim`."""


@dataclass(frozen=True)
class ReleaseClaim:
    """Stop renewing the claim and delete it if it is still ours (best effort: its lease expires anyway)."""


@dataclass(frozen=True)
class Reach:
    """Ask the etcd witness one cheap question (a read of the claim's key, one request's deadline)
    only to learn whether it answers us: ``--etcd-unreachable keep``'s non-holder does, while its
    peer holds, so that it confirms the peer's holding only while it cannot reach etcd either
    (spec/witness.md). Reported as :class:`ReachDone`."""


Action = (
    Probe | Acquire | Release | Announce | Notify | Alarm | Transmit | StateChanged | Stopped | Claim | ReleaseClaim | Reach
)


# --- results (shell → core) -------------------------------------------------


@dataclass(frozen=True)
class ProbeDone:
    """``answered``: addresses another host answered for; the rest were silent."""

    answered: Addresses = frozenset()


@dataclass(frozen=True)
class AcquireDone:
    """``acquired``: now on our interfaces; ``failed``: could not be added;
    ``refused``: the Test hook said notification only (nothing was changed)."""

    acquired: Addresses = frozenset()
    failed: Addresses = frozenset()
    refused: Addresses = frozenset()


@dataclass(frozen=True)
class ReleaseDone:
    """``released``: gone from our interfaces; ``failed``: still there;
    ``refused``: the Test hook said notification only (still there)."""

    released: Addresses = frozenset()
    failed: Addresses = frozenset()
    refused: Addresses = frozenset()


ClaimOutcome = Literal["granted", "refused", "unreachable"]


@dataclass(frozen=True)
class ClaimDone:
    """The witness's answer to :class:`Claim`. ``granted``: the claim is ours, a proof from
    ``sent_at`` (when its transaction was sent); the wait after the grant counts from
    ``answered_at`` (when its answer was read). ``refused``: another host holds it
    (``detail`` names it). ``unreachable``: no answer in time (``detail`` says why); the
    claim may still take effect, and its lease then removes it."""

    outcome: ClaimOutcome
    sent_at: float = 0.0
    answered_at: float = 0.0
    detail: str = ""


RenewOutcome = Literal["proved", "lost", "unreachable"]


@dataclass(frozen=True)
class RenewDone:
    """One renewal of the granted claim. ``proved``: still ours at an instant after ``sent_at``;
    ``lost``: the key holds another claim or none; ``unreachable``: no answer in time."""

    outcome: RenewOutcome
    sent_at: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class ReachDone:
    """The answer to :class:`Reach`: ``answered`` (etcd answered, whatever it said) or
    ``unreachable`` (no answer in time; ``detail`` says why); ``sent_at``: when it was sent."""

    outcome: Literal["answered", "unreachable"]
    sent_at: float = 0.0
    detail: str = ""


Result = ProbeDone | AcquireDone | ReleaseDone | ClaimDone | RenewDone | ReachDone


@dataclass
class Counters:
    """Monotonic counters a core keeps for status output and metrics."""

    accepted: int = 0
    overtaken: int = 0
    """Authentic, unseen frames older than the newest accepted (sent on another path): path health only."""
    unacknowledged: int = 0
    """Authentic, unseen frames that do not acknowledge our current epoch
    (made before the peer heard from us since our start): answered, not counted."""
    rejected: dict[str, int] = field(default_factory=dict)
    transitions: int = 0
    failovers: int = 0
    failbacks: int = 0
    false_suspicions: int = 0
    contested: int = 0
    deferrals: int = 0
    """Several backups: failure deadlines at which a peer held or outranked us, so we waited for it."""
    announcements: int = 0
    """Several backups: failure deadlines at which we announced (said holds, waited for the peers' answers)."""
    withdrawals: int = 0
    """Several backups: announcements withdrawn (a higher peer holds, the master is back, we turned unfit, or a
    peer did not answer within the announcement's limit)."""
    undeclared: int = 0
    """Inputs in a state where no row of the table holds (a bug: see :mod:`failoverd.core.machine`)."""

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def as_status(self) -> dict[str, Any]:
        """Every counter, as both cores' status (and so ``failoverctl status``/``watch``) lists them.

        All of them for both roles, so a counter added here shows everywhere;
        the rejection reasons sorted, so a status reads the same twice.
        """
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["rejected"] = dict(sorted(self.rejected.items()))
        return data
