"""What a backup knows of the other backups of its master (several backups, spec/backups.md).

One :class:`PeerEntry` per peer priority (the priority is a backup's name on
the wire, under the MAC): its own :class:`~failoverd.core.wire.ReplayGuard`,
so a peer frame is judged by spec/wire.md's rules 1-7 exactly as the backup
judges a heartbeat (once, from the newest epoch, only while provably young,
and only if it acknowledges our current epoch, using the detector's own
:class:`~failoverd.core.wire.Sealer` for the acknowledgements); when it last
counted; and what its last counted frame said (holds, unfit, preempt, master heard).

A peer is *alive* while a frame of it counted within the failure timeout,
*fit* when that frame did not say unfit, *holding* when it said holds (or announces: spec/backups.md, "Who takes over"),
*hearing the master* when it said master heard and counted more than ``W + 2 × allowance`` after our
own last counted heartbeat (:meth:`Peers.hearing_master`).
A higher peer is *present* longer: while a frame of it counted within
``fail_after + rank × step`` (our own rank; spec/backups.md, "What spin
found", fix 2): cut off from us while it announces, it may acquire up to a
failure timeout after its last counted frame of us, so we defer to it that
much longer than we would count it alive.
Every peer is configured with its priority (``--peer ADDR=PRIORITY``): our
rank is static, and a frame with any other priority is refused.

Pure: nothing here reads a clock or a socket; every question takes ``now``.
Error handling: :meth:`Peers.judge` raises :class:`~failoverd.core.wire.WireError`
for a frame that changes nothing (``priority``, ``replay``, ``epoch``,
``seq``); the detector counts and alarms.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from failoverd.core import wire


@dataclass
class PeerEntry:
    """One peer backup: its configured address and priority, and what its frames told us."""

    priority: int
    guard: wire.ReplayGuard
    address: str
    """Its configured ``--peer`` address: where our frames to it go."""
    source: str
    """The address its last counted frame came from (its configured address until then)."""
    last_counted: float | None = None
    """When a frame of it last counted (None: never)."""
    counted_epoch: int = -1
    """The epoch of its last counted frame: a newer recorded epoch is a life not yet counted (a restart)."""
    last_recorded: float | None = None
    """When an authentic, unseen frame of it was last recorded (counted or not: the handshake's too)."""
    acked: tuple[int, int] = (0, 0)
    """What its last counted frame acknowledged of ours (ack_epoch, ack_seq)."""
    holds: bool = False
    unfit: bool = False
    preempt: bool = False
    master_heard: bool = False
    """Its last counted frame said it counted a heartbeat of the master within W (``FLAG_MASTER_HEARD``)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Its frames that did not count, by reason (``unacknowledged``, ``delayed``, ``replay``...)."""
    counted: int = 0
    answer_due: float = float("-inf")
    """Not before then is an unacknowledged frame of it answered again (the handshake's rate)."""
    answered_epoch: int = -1
    """Its epoch whose first counted frame we answered at once (the handshake's last step)."""
    unacknowledged_since: float | None = None
    """Since when its frames have been recorded without one counting (None: the last one counted)."""
    unacknowledged_last: float | None = None
    """When its last unacknowledged frame came (a failure timeout without one ends the episode)."""
    unacknowledged_epoch: int = -1
    """Its epoch when the episode began (a restart begins a new one)."""
    unacknowledged_alarmed: bool = False
    """The alarm "its frames never acknowledge ours" was raised for this episode."""

    def alive(self, now: float, fail_after: float) -> bool:
        return self.last_counted is not None and now < self.last_counted + fail_after

    def restarting(self, now: float, fail_after: float) -> bool:
        """An authentic frame of it recorded within the failure timeout, of a life not yet counted (its handshake)."""
        return (
            self.last_recorded is not None
            and now < self.last_recorded + fail_after
            and self.guard.epoch != self.counted_epoch
        )

    def alive_until(self, fail_after: float) -> float | None:
        return None if self.last_counted is None else self.last_counted + fail_after


@dataclass
class Awaited:
    """A peer an announcement waits for (spec/backups.md, "Who takes over": the wait set W)."""

    seq: int
    """Our first frame to it that said holds (``announce_seq``): its answer must acknowledge that one or a later."""
    heard: float
    """When it was last heard at the announcement: its last counted frame, or, in its handshake, its last recorded."""
    counted: int
    """How many of its frames had counted then (offline, a later counted frame is the answer)."""


class Peers:
    """The other backups, as configured: an address and a priority each (``--peer ADDR=PRIORITY``).

    ``configured``: each peer's address and priority (where our peer frames
    go, and the only priorities a peer frame may carry); ``priority``: ours (a
    frame that claims it is refused: two backups must not share one).
    ``offline``: what-if replay, where acknowledgements are another run's
    (every authentic, unseen frame counts, as for heartbeats).
    """

    def __init__(
        self,
        configured: dict[str, int],
        priority: int,
        sealer: wire.Sealer,
        *,
        fail_after: float,
        rank_step: float,
        max_delay: float,
        master_heard_window: float,
        master_heard_margin: float,
        offline: bool = False,
    ) -> None:
        self.addresses = tuple(configured)
        self.priority = priority
        self._sealer = sealer
        self.fail_after = fail_after
        self.rank_step = rank_step
        """How much later each higher configured peer makes our failure deadline (spec/backups.md, "The rank delay")."""
        self._max_delay = max_delay
        self.master_heard_window = master_heard_window
        """W: a peer's "master heard" says it counted a heartbeat within that much before its frame."""
        self.master_heard_margin = master_heard_margin
        """M: the two delays (the master's heartbeat to the peer, the peer's frame to us) that an ordinary
        master death may put between the peer's last "heard" and ours (the detector gives 2 × allowance)."""
        self._offline = offline
        self.entries: dict[int, PeerEntry] = {
            p: PeerEntry(p, wire.ReplayGuard(max_delay, judge_age=not offline), address, address)
            for address, p in configured.items()
        }
        self._by_address = {e.address: e for e in self.entries.values()}

    def restarted(self, sealer: wire.Sealer) -> None:
        """After a rekey: a new sealer, and every guard starts afresh (nothing recorded counts for the new key)."""
        self._sealer = sealer
        for entry in self.entries.values():
            entry.guard = entry.guard.restarted()

    def judge(self, frame: wire.Heartbeat, now: float, source: str) -> tuple[str, PeerEntry]:
        """Record one authentic backup frame: ``counted``, ``overtaken``, ``unacknowledged`` or ``delayed``.

        Raises WireError (``priority``: it claims ours, none, or one no
        configured peer has; or the guard's ``replay``/``epoch``/``seq``).
        """
        if frame.priority == self.priority:
            raise wire.WireError("priority", f"a peer frame claims our own priority {frame.priority}")
        if frame.priority == 0:
            # A backup of a pair (no --peer) talking to us: it says nothing we could rank.
            raise wire.WireError("priority", "a backup frame without a priority (a backup configured without --peer)")
        entry = self.entries.get(frame.priority)
        if entry is None:
            raise wire.WireError("priority", f"a peer frame with priority {frame.priority}, which no --peer has")
        sealer = self._sealer
        try:
            age = entry.guard.admit(frame, now, sealer.acked_at(frame), acknowledges=sealer.acknowledges_us(frame))
        except wire.WireError as exc:
            entry.rejected[exc.reason] += 1
            raise
        entry.last_recorded = now
        if not (self._offline or sealer.acknowledges_us(frame)):
            verdict = "unacknowledged"
        elif age == "delayed":
            verdict = "delayed"
        elif age == "overtaken":
            verdict = "overtaken"
        else:
            verdict = "counted"
            # Only a counted frame says where the peer is: an attacker re-sending a
            # withheld frame from elsewhere does not redirect our frames' acknowledgements.
            entry.source = source
            entry.last_counted = now
            entry.counted_epoch = frame.epoch
            entry.acked = (frame.ack_epoch, frame.ack_seq)
            entry.holds, entry.unfit, entry.preempt = frame.holds, frame.unfit, frame.preempt
            entry.master_heard = frame.master_heard
            entry.counted += 1
            if frame.leaving and not frame.holds:
                # It stopped, holding nothing: no need to wait a failure timeout for its silence.
                entry.last_counted = None
                entry.last_recorded = None
        if verdict != "counted":
            entry.rejected[verdict] += 1
        return verdict, entry

    # --- what the detector's conditions ask ------------------------------------

    def alive(self, now: float) -> list[PeerEntry]:
        return [e for e in self.entries.values() if e.alive(now, self.fail_after)]

    def holder(self, now: float) -> PeerEntry | None:
        """An alive peer that says it holds (the highest, if several do)."""
        holding = [e for e in self.alive(now) if e.holds]
        return max(holding, key=lambda e: e.priority) if holding else None

    def higher_fit(self, now: float) -> PeerEntry | None:
        """The highest present, fit peer that outranks us: it takes first (or may be taking over right now).

        Present, not just alive (:attr:`higher_wait`): a higher peer that
        announced while the link between us was cut acquires only once we
        have been silent to it a failure timeout, after our own failure
        deadline has come and gone if we deferred only while it was alive.
        """
        higher = [
            e for e in self.entries.values()
            if not e.unfit and e.priority > self.priority and e.alive(now, self.higher_wait)
        ]
        return max(higher, key=lambda e: e.priority) if higher else None

    def higher_holder(self, now: float) -> PeerEntry | None:
        """An alive peer of a higher priority that says it holds too: the lower (we) yields."""
        holding = [e for e in self.alive(now) if e.holds and e.priority > self.priority]
        return max(holding, key=lambda e: e.priority) if holding else None

    def preempting(self, now: float) -> PeerEntry | None:
        """An alive, fit, higher peer that says ``preempt``: a lower holder releases to it."""
        wanting = [e for e in self.alive(now) if e.preempt and not e.unfit and e.priority > self.priority]
        return max(wanting, key=lambda e: e.priority) if wanting else None

    def hearing_master(self, now: float, our_last: float) -> PeerEntry | None:
        """The highest alive peer whose last counted frame says it hears the master, newer than our own
        last counted heartbeat (``our_last``): the master is alive and its heartbeats do not reach us.

        Newer by more than ``W + M`` (:attr:`master_heard_window`, :attr:`master_heard_margin`):
        its frame, counted here at ``c``, says the peer counted a heartbeat after about ``c − W −
        M`` (``M``: that heartbeat's delay to the peer and the peer's frame's to us, each within
        the allowance); with ``c − W − M > our_last`` the master sent one after the last we
        counted. In an ordinary master death both backups count the same last heartbeat, so this
        does not hold and the takeover is not delayed, unless the two paths' delays differ by more
        than ``M`` (spec/backups.md, "What the review found", 1).
        """
        hearing = self.hearing_masters(now, our_last)
        return max(hearing, key=lambda e: e.priority) if hearing else None

    def hearing_masters(self, now: float, our_last: float) -> list[PeerEntry]:
        """Every peer :meth:`hearing_master` could name."""
        margin = self.master_heard_window + self.master_heard_margin
        return [
            e for e in self.alive(now)
            if e.master_heard and e.last_counted is not None and e.last_counted - margin > our_last
        ]

    def rank(self) -> int:
        """How many configured peers outrank us: static, whether or not we heard them (spec/backups.md)."""
        return sum(1 for p in self.entries if p > self.priority)

    def rank_delay(self) -> float:
        """How much later our failure deadline is than a pair's: ``rank × step``."""
        return self.rank() * self.rank_step

    @property
    def higher_wait(self) -> float:
        """How long after its last counted frame a higher peer is still present to us: ``fail_after + rank × step``."""
        return self.fail_after + self.rank_delay()

    def next_expiry(self, now: float) -> float | None:
        """When the next peer's silence changes what a deferral asks: an alive peer turns silent,
        or a higher one stops being present (what a deferral waits for, besides frames)."""
        ends = []
        for e in self.entries.values():
            if e.last_counted is None:
                continue
            ends.append(e.last_counted + self.fail_after)
            if e.priority > self.priority:
                ends.append(e.last_counted + self.higher_wait)
        later = [end for end in ends if end > now]
        return min(later) if later else None

    def newest_from(self, address: str) -> tuple[int, int]:
        """What our next frame to ``address`` acknowledges: the newest recorded of the peer configured there."""
        entry = self._by_address.get(address)
        return (0, 0) if entry is None else entry.guard.newest

    # --- the announcement (spec/backups.md, "Who takes over") ----------------------

    def wait_set(self, now: float) -> list[PeerEntry]:
        """Whom an announcement waits for: the peers alive now, and those in their handshake after a restart."""
        return [
            e for e in self.entries.values()
            if e.alive(now, self.fail_after) or e.restarting(now, self.fail_after)
        ]

    def at(self, address: str) -> PeerEntry:
        """The peer configured at ``address``."""
        return self._by_address[address]

    def awaited(self, entry: PeerEntry, seq: int, now: float) -> Awaited:
        """What an announcement whose first frame to ``entry`` (one of :meth:`wait_set`) was ``seq`` waits for."""
        if entry.alive(now, self.fail_after) and entry.last_counted is not None:
            heard = entry.last_counted
        else:
            # In its handshake: its silence counts from its last recorded frame, fixed now, so
            # frames withheld and delivered later (recorded, never counted) cannot prolong the wait.
            assert entry.last_recorded is not None
            heard = entry.last_recorded
        return Awaited(seq, heard, entry.counted)

    def answered(self, entry: PeerEntry, awaited: Awaited, epoch: int) -> bool:
        """Its last counted frame answers the announcement: it acknowledges our current ``epoch`` at or after
        the announcement's first frame, and says it holds nothing (offline: a later counted frame says so)."""
        if entry.holds:
            return False
        if self._offline:
            return entry.counted > awaited.counted
        return entry.acked[0] == epoch and entry.acked[1] >= awaited.seq

    def silent_at(self, entry: PeerEntry, awaited: Awaited) -> float:
        """When an awaited peer has been silent a failure timeout (it is dead or cut: it leaves W)."""
        heard = awaited.heard if entry.last_counted is None else max(awaited.heard, entry.last_counted)
        return heard + self.fail_after

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        out = []
        for e in sorted(self.entries.values(), key=lambda e: -e.priority):
            out.append({
                "priority": e.priority,
                "address": e.address,
                "source": e.source,
                "alive": e.alive(now, self.fail_after),
                "fit": None if e.counted == 0 else not e.unfit,
                "holds": None if e.counted == 0 else e.holds,
                "preempt": e.preempt,
                "master_heard": None if e.counted == 0 else e.master_heard,
                "last_heard_age": None if e.last_counted is None else round(now - e.last_counted, 3),
                "counted": e.counted,
                "rejected": dict(sorted(e.rejected.items())),
            })
        return out
