"""The master's side (heartbeatd): heartbeats, the backup's health, and
overlap-free failback of the addresses the master manages itself.

Rules of this file are those of :mod:`failoverd.core.detector`: states and
transitions as data, callbacks only emit actions, every entry point takes
``now``.

Theory of operation
-------------------
heartbeatd sends a heartbeat to every target each interval. Without managed
addresses (the original's setup: the master's addresses are configured by
the system) it starts in ``holding`` and that is all.

With managed addresses (``--manage``), a (re)started master starts in
``waiting`` and holds nothing; its heartbeats say so. It adds its addresses
only when

(a) the backup's authenticated status frame, acknowledging a heartbeat of
    this master's current epoch, says the backup holds nothing — the backup
    sends one the moment its release completes; or
(b) nothing valid was heard from the backup for the backup's own failure
    timeout (``fail_misses * interval``) since we started or last heard it,
    *and* an ARP probe of the addresses is silent (a backup we cannot hear
    may still hold them: the probe is what protects us then). Without an
    ARP probe (``arp_probe=False``) the presumption alone acquires. A probe
    somebody answered is tried again a retry interval later, or later still
    if the backup is heard meanwhile (it is alive: its release is what we wait for).

Several backups (``--backups N``, spec/backups.md): one
:class:`~failoverd.core.backup_views.BackupView` per backup, by the priority
byte of its frames, each judged as the one backup of a pair is. (a) needs
every backup's "I hold nothing", each while it is alive; (b) needs every
backup not known released silent that long, and the release settle
(``fail_after + retry + 3 × interval``) passed since the latest release of
any backup: a silent backup may be one that cannot hear us and waited on the
one that just released, and takes over on that release. A heartbeat is sealed per
target and acknowledges the backup heard from that target's address.

On shutdown a managing master releases first and only then sends a
``leaving`` heartbeat, so the backup's takeover probe finds the addresses
free.

Health checks (docs/checks.md): the runtime says when this host's checks
turn unhealthy or healthy again (:meth:`Master.health_changed`, after their
rise/fall hysteresis). An unhealthy master steps down the same way it stops,
without stopping: a managing one releases its addresses (``releasing``),
then stays ``standing_down``, every heartbeat saying ``leaving`` so that the
backup takes over at once (still after its ARP probe). Healthy again, it
goes back to ``waiting`` and takes its addresses through the managed
failback above: the backup releases when it sees heartbeats without
``leaving``. Without ``--manage`` there is nothing to release: heartbeats say
``leaving`` while unhealthy and stop saying it when healthy. Legacy
heartbeats cannot say ``leaving``, so a legacy master standing down sends
none: the backup takes over after its failure timeout.

Links (:meth:`Master.link_changed`): the runtime says when the interface of
a managed address loses its link (not admin-up, or no carrier) or gets it
back. A master whose link is down is unfit exactly as one whose check fails:
one verdict, ``_healthy`` = checks pass AND every managed address's link is
up, and the step-down above is what it does (``link_down``/``link_up`` rows,
twins of the health rows, fired only when that verdict changes). The release
comes first, at once: the kernel keeps an IPv4 address on a down link, and
an address still configured when the link returns answers beside the
backup's (keepalived's FAULT state). The ``leaving`` heartbeats reach the
backup if the private link is up; if not, its failure timeout does. When
every link is up again (and the checks pass) the master rejoins through the
managed failback: it never adds before the backup has released. Without
``--manage`` the master holds nothing through us, so no link is watched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Action,
    Addresses,
    Alarm,
    Announce,
    Claim,
    ClaimDone,
    Counters,
    Probe,
    ProbeDone,
    ReachDone,
    Release,
    ReleaseDone,
    RenewDone,
    Result,
    Stopped,
    Transmit,
)
from failoverd.core.addresses import Triplet, names
from failoverd.core.backup_views import BackupView
from failoverd.core.health import links_reason, unfit_besides
from failoverd.core.machine import DeclaredMachine
from failoverd.core.settings import MasterSettings
from failoverd.core.timing import release_settle
from failoverd.core.witness import HolderProofs, OutageConfirmer
from failoverd.core.witness_member import WitnessMember

STATES: tuple[str, ...] = (
    "waiting", "probing", "acquiring", "holding", "releasing", "standing_down", "stopped",
    "claiming", "granted",  # the etcd witness (spec/witness.md)
)

# State-driven triggers (see failoverd.core.machine): tried after every input,
# in this order, while their conditions hold. The time guards are conditions.
AUTOMATIC: tuple[str, ...] = ("presume", "retry", "wait_over", "proof_expiring")

# The rows of one trigger from one state exclude each other
# (tests/test_core_table.py checks it): their order means nothing.
# docs/state-machines.md draws this table.
TRANSITIONS: tuple[dict[str, Any], ...] = (
    # --- failback: the backup's "I hold nothing", or its long silence and a silent probe ---
    {"trigger": "backup_released", "source": ["waiting", "probing"], "dest": "acquiring", "unless": ["_witnessed"],
     "after": "_acquire"},
    # Heard in any other state: nothing to take back (or already taking it).
    {"trigger": "backup_released", "source": [s for s in STATES if s not in ("waiting", "probing")], "dest": None},
    {"trigger": "presume", "source": "waiting", "dest": "probing",
     "conditions": ["_presume_due", "_probes_first"], "after": "_probe"},
    {"trigger": "presume", "source": "waiting", "dest": "acquiring",
     "conditions": ["_presume_due"], "unless": ["_probes_first", "_witnessed"], "after": "_acquire"},
    {"trigger": "probed", "source": "probing", "dest": "acquiring", "unless": ["_probe_answered", "_witnessed"],
     "after": "_acquire"},
    {"trigger": "probed", "source": "probing", "dest": "waiting", "conditions": ["_probe_answered"], "after": "_contested"},
    # A probe that outlived its probing (the handshake, a stop or a step-down came first).
    {"trigger": "probed", "source": [s for s in STATES if s != "probing"], "dest": None},
    {"trigger": "acquired", "source": "acquiring", "dest": "releasing", "conditions": ["_stopping"], "after": "_release"},
    # Our check fell while the acquire was in flight: let go of what it added.
    {"trigger": "acquired", "source": "acquiring", "dest": "releasing",
     "unless": ["_stopping", "_healthy"], "after": "_release"},
    {"trigger": "acquired", "source": "acquiring", "dest": "holding",
     "conditions": ["_healthy", "_proof_valid"], "unless": ["_stopping"], "after": "_now_holding"},
    {"trigger": "retry", "source": "holding", "dest": "acquiring",
     "conditions": ["_retry_due", "_some_missing", "_proof_valid"], "after": ["_retry_taken", "_acquire"]},
    # --- stop (SIGTERM): release first, then the leaving heartbeat ---
    {"trigger": "stop", "source": ["waiting", "probing"], "dest": "stopped", "after": ["_leave", "_stopped"]},
    {"trigger": "stop", "source": "acquiring", "dest": None, "after": "_mark_stopping"},
    {"trigger": "stop", "source": "holding", "dest": "releasing", "conditions": ["_managing"],
     "after": ["_mark_stopping", "_release"]},
    {"trigger": "stop", "source": "holding", "dest": "stopped", "unless": ["_managing"], "after": "_stopped"},
    # A stop during a step-down's release: the release finishes, then we stop.
    {"trigger": "stop", "source": "releasing", "dest": None, "after": "_mark_stopping"},
    {"trigger": "released", "source": "releasing", "dest": "waiting", "conditions": ["_healthy"],
     "unless": ["_stopping"], "after": ["_give_claim_back", "_rejoin"]},
    {"trigger": "released", "source": "releasing", "dest": "standing_down", "unless": ["_stopping", "_healthy"],
     "after": ["_give_claim_back", "_stood_down"]},
    {"trigger": "released", "source": "releasing", "dest": "stopped", "conditions": ["_stopping"],
     "unless": ["_some_held"], "after": ["_give_claim_back", "_leave", "_stopped"]},
    {"trigger": "released", "source": "releasing", "dest": "stopped", "conditions": ["_stopping", "_some_held"],
     "after": ["_give_claim_back", "_release_incomplete", "_stopped"]},
    # Health: an unhealthy master lets go of what it holds and says "leaving"
    # until it is healthy again (see the module's docstring).
    {"trigger": "checks_fail", "source": ["waiting", "probing", "holding"], "dest": "releasing",
     "conditions": ["_some_held"], "after": "_release"},
    {"trigger": "checks_fail", "source": ["waiting", "probing", "holding"], "dest": "standing_down",
     "unless": ["_some_held"], "after": "_stood_down"},
    # Acquiring: the acquired rows read the verdict. Releasing, standing
    # down or stopped: already letting go.
    {"trigger": "checks_fail", "source": ["acquiring", "releasing", "standing_down", "stopped", "claiming"],
     "dest": None},
    {"trigger": "retry", "source": "standing_down", "dest": "releasing",
     "conditions": ["_retry_due", "_some_held"], "after": ["_retry_taken", "_release"]},
    {"trigger": "checks_pass", "source": "standing_down", "dest": "waiting", "conditions": ["_managing"],
     "after": "_rejoin"},
    {"trigger": "checks_pass", "source": "standing_down", "dest": "holding", "unless": ["_managing"],
     "after": "_rejoin"},
    # Acquiring or releasing: the acquired and released rows read the verdict.
    {"trigger": "checks_pass", "source": [s for s in STATES if s != "standing_down"], "dest": None},
    {"trigger": "stop", "source": "standing_down", "dest": "releasing", "conditions": ["_some_held"],
     "after": ["_mark_stopping", "_release"]},
    {"trigger": "stop", "source": "standing_down", "dest": "stopped", "unless": ["_some_held"],
     "after": ["_leave", "_stopped"]},
    # --- witness: the etcd witness (spec/witness.md, "Integration plan"), only with one
    # (_witnessed): where the master would acquire it claims; granted, it waits W, then
    # acquires, and holds only while its newest proof is valid; it gives the claim back
    # once its addresses are gone. _proof_valid is true without a witness. ---
    {"trigger": "backup_released", "source": ["waiting", "probing"], "dest": "claiming", "conditions": ["_witnessed"],
     "after": "_claim"},
    {"trigger": "presume", "source": "waiting", "dest": "claiming",
     "conditions": ["_presume_due", "_witnessed"], "unless": ["_probes_first"], "after": "_claim"},
    {"trigger": "probed", "source": "probing", "dest": "claiming", "conditions": ["_witnessed"],
     "unless": ["_probe_answered"], "after": "_claim"},
    # A claim refused or unanswered is tried again a retry interval later.
    # Not while a backup holds on our confirmations (--etcd-unreachable keep, etcd answering
    # nobody): a claim cannot succeed, and while claiming we would stop confirming and take the
    # address from it. Our questions to etcd (Reach) go on; its first answer lets the claim go.
    {"trigger": "retry", "source": "waiting", "dest": "claiming", "conditions": ["_retry_due", "_witnessed"],
     "unless": ["_claim_futile"], "after": ["_retry_taken", "_claim"]},
    {"trigger": "claimed", "source": "claiming", "dest": "granted", "conditions": ["_claim_granted", "_healthy"],
     "unless": ["_stopping"], "after": "_granted"},
    {"trigger": "claimed", "source": "claiming", "dest": "standing_down", "conditions": ["_claim_granted"],
     "unless": ["_stopping", "_healthy"], "after": ["_take_grant", "_give_claim_back", "_stood_down"]},
    {"trigger": "claimed", "source": "claiming", "dest": "stopped", "conditions": ["_claim_granted", "_stopping"],
     "after": ["_take_grant", "_give_claim_back", "_leave", "_stopped"]},
    {"trigger": "claimed", "source": "claiming", "dest": "waiting", "conditions": ["_healthy"],
     "unless": ["_claim_granted", "_stopping"], "after": "_claim_failed"},
    {"trigger": "claimed", "source": "claiming", "dest": "standing_down",
     "unless": ["_claim_granted", "_stopping", "_healthy"], "after": "_stood_down"},
    {"trigger": "claimed", "source": "claiming", "dest": "stopped", "conditions": ["_stopping"],
     "unless": ["_claim_granted"], "after": ["_leave", "_stopped"]},
    {"trigger": "stop", "source": "claiming", "dest": None, "after": "_mark_stopping"},
    {"trigger": "stop", "source": "granted", "dest": "stopped", "after": ["_give_claim_back", "_leave", "_stopped"]},
    {"trigger": "checks_fail", "source": "granted", "dest": "standing_down",
     "after": ["_give_claim_back", "_stood_down"]},
    {"trigger": "wait_over", "source": "granted", "dest": "acquiring", "conditions": ["_wait_passed", "_proof_valid"],
     "after": "_acquire"},
    {"trigger": "proof_expiring", "source": "granted", "dest": "waiting", "unless": ["_proof_valid"],
     "after": ["_give_claim_back", "_proof_ran_out_waiting"]},
    # Held, the addresses stay while a proof runs or (--etcd-unreachable keep) the backup's
    # confirmation that it cannot reach etcd either (_kept); configuring needs a proof.
    {"trigger": "proof_expiring", "source": "holding", "dest": "releasing", "conditions": ["_witnessed"],
     "unless": ["_kept"], "after": ["_proof_ran_out", "_release"]},
    # An acquire finished after the proof ran out: let go at once (A3's margin covers a quick one).
    {"trigger": "acquired", "source": "acquiring", "dest": "releasing", "conditions": ["_healthy"],
     "unless": ["_stopping", "_proof_valid"], "after": ["_proof_ran_out", "_release"]},
    {"trigger": "renewed", "source": list(STATES), "dest": None, "after": "_take_renewal"},
    # --- links: a managed address's link lost (or back). The health rows' twins:
    # link_changed fires them only when the one verdict (checks AND links) changes. ---
    {"trigger": "link_down", "source": ["waiting", "probing", "holding"], "dest": "releasing",
     "conditions": ["_some_held"], "after": "_release"},
    {"trigger": "link_down", "source": ["waiting", "probing", "holding"], "dest": "standing_down",
     "unless": ["_some_held"], "after": "_stood_down"},
    # Acquiring: the acquired rows read the verdict. Releasing, standing down, stopped: letting go already.
    {"trigger": "link_down", "source": ["acquiring", "releasing", "standing_down", "stopped", "claiming"], "dest": None},
    # Granted (witness), not yet adding: give the claim back and stand down, as a failing check does.
    {"trigger": "link_down", "source": "granted", "dest": "standing_down", "after": ["_give_claim_back", "_stood_down"]},
    {"trigger": "link_up", "source": "standing_down", "dest": "waiting", "after": "_rejoin"},
    # Acquiring or releasing: the acquired and released rows read the verdict.
    {"trigger": "link_up", "source": [s for s in STATES if s != "standing_down"], "dest": None},
)

CLAIMING_STATES = frozenset({"acquiring", "holding", "releasing"})


class Master(DeclaredMachine):
    """heartbeatd's core.

    ``settings``: the configuration, whole (:class:`~failoverd.core.settings.MasterSettings`:
    the targets, the interval, the managed addresses — empty: the original's
    behaviour —, the backup's failure timeout, after which a silent backup is
    presumed dead ...). ``held``: managed addresses already on our interfaces at start.
    """

    STATES = STATES
    TRANSITIONS = TRANSITIONS
    AUTOMATIC = AUTOMATIC

    def __init__(
        self,
        settings: MasterSettings,
        now: float,
        *,
        key: bytes | None = None,
        epoch: int = 1,
        held: Iterable[Triplet] = (),
    ) -> None:
        self.settings = settings
        """What this core was built with (all but the key and the run's own values)."""
        self.targets = settings.targets
        interval = self.interval = settings.interval
        self.managed: Addresses = frozenset(settings.managed)
        self.held: Addresses = frozenset(held) & self.managed
        self.backup_fail_after = settings.effective_backup_fail_after
        self.retry_interval = settings.effective_retry_interval
        self.legacy_message = settings.legacy_message
        self.arp_probe = settings.arp_probe
        self.counters = Counters()
        self.started = now
        self.state_since = now
        self.backups = settings.backups
        """How many backups the managed failback waits for (``--backups``)."""
        self.views: dict[int, BackupView] = {}
        """What each backup heard in this run told us, by its priority byte (spec/backups.md)."""
        self._view_of_source: dict[str, int] = {}
        """The backup (priority) whose status frames come from an address: a heartbeat to it acknowledges that one."""
        self._latest_view: BackupView | None = None
        """The view that recorded the newest frame: with one backup, every heartbeat acknowledges it."""
        self._reported_strays: set[tuple[int, str]] = set()
        self._waiting_for_reported: tuple[str, ...] = ()
        self.received_by_path: dict[str, int] = {}
        """Authentic, unseen status frames of the backups, by the path (interface) they arrived on."""
        self._key = wire.Key(key) if key is not None else None
        self._sealer = wire.Sealer(
            self._key, wire.ROLE_MASTER, epoch, interval, now,
            memory=wire.sent_memory(len(self.targets), self.backup_fail_after, interval),
        ) if self._key else None
        self._next_send = now
        self._now = now
        self._out: list[Action] = []
        self._answered: Addresses = frozenset()
        self._failed: Addresses = frozenset()
        self._retry_at: float | None = None
        self._stop_requested = False
        self.healthy = True
        """This host's health checks pass (or there are none); see :meth:`health_changed`."""
        self.health_reason = ""
        """Which checks fail, while unhealthy."""
        self.link_interfaces = frozenset(t.interface for t in self.managed)
        """The interfaces whose links count (those of the managed addresses)."""
        self.links_down: frozenset[str] = frozenset()
        """Those of :attr:`link_interfaces` that are down now; see :meth:`link_changed`."""
        self._presume_from = now
        self._release_floor = 0
        """The oldest heartbeat of ours (seq) a backup's "I hold nothing" must acknowledge to count."""
        self._reclaim_due = float("-inf")
        self._garp_refresh = settings.garp_refresh
        self._garp_due: float | None = None
        witness = self.witness = settings.witness
        """The etcd witness's timing, or None: no witness (spec/witness.md)."""
        if witness is not None and not self.managed:
            raise ValueError("a witness needs managed addresses: without them heartbeatd holds nothing to claim")
        # Keeping on confirmations needs one from every backup (spec/witness.md, "With several
        # backups"): --backups of them, more if more are heard (_take_confirmation).
        self._proofs = HolderProofs(witness, confirmers=self.backups) if witness is not None else None
        self.witness_answered = False
        """etcd answered a request of ours since we started, rejoined, or last got no answer from it.
        Until it has, our heartbeats say ``leaving`` to a backup that holds: without it, they would
        make the backup fail back to a master that may be unable to claim (spec/witness.md, "A
        master that returns")."""
        self._keep_on_outage = witness is not None and witness.keep_on_outage
        self._confirmer = OutageConfirmer(witness) if witness is not None else None
        """Our questions to etcd (Reach) while a backup holds: with --etcd-unreachable keep, whether we
        confirm its holding (core/witness.py); either way, whether etcd answers us, so that a failback
        waits for that answer."""
        self._witness = WitnessMember(
            self._proofs, self._confirmer,
            confirmers_named="the backup's confirmation" if self.backups == 1 else "the confirmations of every backup",
            they="it" if self.backups == 1 else "they",
            emit=lambda action: self._out.append(action),  # the list of the input being handled (_begin)
            after_reach=self._etcd_reached,
        ) if self._proofs is not None else None
        """The claim, the proofs that keep what we hold and our questions to etcd, with their alarms
        (core/witness_member.py); None: no witness."""
        self._unprioritised_reported = False
        """The alarm "a backup sends no priority" (--backups above 1) was raised."""
        if not self.managed:
            initial = "holding"
        elif self.held == self.managed:
            initial = "holding"  # restarted while holding: adopt, do not re-add
        else:
            initial = "waiting"
        self._build_machine(initial)
        if self.held:
            self._schedule_refresh(now)

    # --- entry points ------------------------------------------------------

    def _forget_recorded(self) -> None:
        # One replay guard per backup (backup_views), not one for the core: each starts afresh.
        for view in self.views.values():
            view.guard = view.guard.restarted()

    def handle_timer(self, now: float) -> list[Action]:
        out = self._begin(now)
        self._settle()
        for view in self.views.values():
            if view.last_heard is not None and not view.silent and now >= view.last_heard + self.backup_fail_after:
                view.silent = True
                out.append(
                    Alarm(
                        "warning",
                        f"{view.name} silent for {now - view.last_heard:.1f} s: "
                        + ("no failover is possible until it returns" if self.backups == 1
                           else "it cannot take over until it returns"),
                        True,
                    )
                )
        if self.state == "holding" and self._garp_due is not None and now >= self._garp_due:
            # Not a state change: the periodic gratuitous ARP of what we hold.
            self._schedule_refresh(now)
            if self.held:
                out.append(Announce(self.held))
        if self._witness is not None:
            self._witness.timers(now, asking=self._wants_reach(), holding=self.state == "holding", held=self.held)
        if now >= self._next_send and self.state != "stopped":
            self._send_heartbeat(now)
            self._next_send += self.interval
            if self._next_send <= now:
                self._next_send = now + self.interval
        return out

    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        """A datagram arrived (the backup's status, in authenticated mode)."""
        out = self._begin(now)
        if self._key is None:
            self.counters.reject("unexpected")
            return out
        try:
            frame = wire.decode(data, self._key)
        except wire.WireError as exc:
            self.counters.reject(exc.reason)
            return out
        if frame.role != wire.ROLE_BACKUP:
            self.counters.reject("role")
            return out
        assert self._sealer is not None
        # A view per priority byte, whatever --backups says: a pair's backup
        # (priority 0 on the wire) has the one view it always had, and a backup
        # run with --peer never shares a view (and its replay guard) with
        # another one, so --backups left at 1 with two of them raises the
        # "more than --backups" alarm instead of silently refusing one backup's
        # frames as replays. Every view but a pair's first gets its place from
        # a status made for this epoch of ours (a recording of an earlier run
        # cannot take a place, nor be answered: where it came from says nothing
        # of where that backup is now).
        priority = frame.priority
        if priority == 0 and self.backups > 1:
            self.counters.reject("priority")
            if not self._unprioritised_reported:
                self._unprioritised_reported = True
                if self._proofs is not None and self._keep_on_outage:
                    self._proofs.claimer_uncounted()  # it could claim, and nothing counts its confirmation
                out.append(Alarm("critical", f"a backup at {source} sends no priority (it runs without --peer "
                                 f"and --priority): it cannot be one of --backups {self.backups}; give each "
                                 "backup --priority and the others as --peer", True))
            return out
        view = self.views.get(priority)
        if view is None:
            if (self.backups > 1 or self.views) and not self._sealer.acknowledges_us(frame):
                self.counters.unacknowledged += 1
                return out
            view = self.views[priority] = BackupView(priority, wire.ReplayGuard(self.backup_fail_after))
            if self._proofs is not None:
                # A backup beyond --backups could claim too: keeping needs its confirmation as well.
                self._proofs.confirmers = max(self.backups, len(self.views))
            if len(self.views) > self.backups:
                # With --backups 1 every heartbeat acknowledges the backup heard last, so the
                # others cannot count them (they may take over): say so, not just "more".
                one = ("; with --backups 1 each heartbeat acknowledges only the backup heard last, so the "
                       "others cannot count ours: set --backups to the number of backups") if self.backups == 1 else ""
                out.append(Alarm("critical", f"{view.name} heard besides {self._names_besides(view)}: more than "
                                 f"--backups {self.backups}; the failback waits for every backup heard{one}", True))
        known_epoch = view.guard.epoch
        try:
            age = view.guard.admit(
                frame, now, self._sealer.acked_at(frame), acknowledges=self._sealer.acknowledges_us(frame)
            )
        except wire.WireError as exc:
            self.counters.reject(exc.reason)
            return out
        self._latest_view = view
        if self._sealer.acknowledges_us(frame) and age != "delayed":
            # A status sealed for us that counts (not a frame of a backup's for its
            # peers, replayed, nor one perhaps withheld): its source is where this
            # backup hears our heartbeats.
            self._learn_source(view, source)
        handshake = view.guard.epoch != known_epoch and now >= view.answer_due and self.state != "stopped"
        if handshake:
            # A backup we have not heard in this epoch of its (it restarted,
            # or we did): it counts our heartbeats only once they acknowledge
            # it, so acknowledge it now rather than at the next interval.
            view.answer_due = now + self.interval / 2
            if not self._sealer.acknowledges_us(frame) or age == "delayed":
                # Its frame tells us nothing we may keep, but with a witness not yet answered,
                # an answer to a frame saying it holds says `leaving`: it may be the one it
                # sends now (or a replay of it), and a plain heartbeat acknowledging it would
                # make the backup fail back to a master perhaps unable to claim (review).
                hint = self._proofs is not None and not self.witness_answered and frame.holds and not self.held
                self._send_heartbeat(now, leaving=True if hint else None, only=self._targets_of(view))
                handshake = False
            # Else once its frame counted: what it says it holds decides what our answer says
            # (with a witness, `leaving` to a holder until etcd answers us: _unanswered_failback).
        if not self._sealer.acknowledges_us(frame):
            # Made before the backup heard from this epoch of ours, or a replay
            # of such a frame (a recording from before we restarted): it says
            # nothing about the backup now, so it neither keeps it "alive" nor
            # tells us what it holds.
            self.counters.unacknowledged += 1
            return out
        if age == "delayed":
            self.counters.reject("delayed")  # not provably young: perhaps withheld
            return out
        self.counters.accepted += 1
        self.received_by_path[path] = self.received_by_path.get(path, 0) + 1
        # Pushes the presume row's deadline on (only a release can make it due: see below).
        view.last_heard = now
        if age == "overtaken":
            # Overtaken (on another path, or reordered: a backup seals its status to
            # us and then its frames to its peers, and an attacker may deliver one of
            # those first): the backup lives, and its view is older than what we know,
            # except that "I hold" is believed from any counted frame. Believing a
            # claim to hold is always safe; only a release must be the newest word.
            if frame.holds and view.holds is not True:
                view.holds = True
                view.release_counted = False
            if handshake:
                self._send_heartbeat(now, only=self._targets_of(view))
            return out
        view.holds = frame.holds
        if frame.witness_unreachable:
            self._take_confirmation(frame, view)
        if handshake:
            self._send_heartbeat(now, only=self._targets_of(view))
        if view.silent:
            view.silent = False
            out.append(Alarm("info", f"{view.name} heard again"))
        # "I hold nothing" counts only from a backup that had counted the
        # heartbeat it answers: its answer to the handshake's first (uncounted)
        # heartbeat may have been made while it was still about to take over
        # from our previous life (spin found the two holders this allowed).
        was_released = view.release_counted
        view.release_counted = (
            not frame.holds
            and frame.ack_seq >= self._release_floor
            and self._sealer.answers_a_frame_that_acknowledged_it(frame)
        )
        if view.release_counted and not was_released:
            view.released_at = now  # puts the presumption of a silent backup off (_presume_at)
        if view.release_counted:
            waiting_for = self._not_released()
            if not waiting_for:
                self._waiting_for_reported = ()
                self._fire("backup_released")
                self._settle()
            else:
                if self.state in ("waiting", "probing") and waiting_for != self._waiting_for_reported:
                    # Once per change: every backup answers every heartbeat.
                    self._waiting_for_reported = waiting_for
                    out.append(Alarm("info", f"{view.name} holds nothing; still waiting for "
                                     f"{'; '.join(waiting_for)}"))
                # This release may leave only silent backups unreleased: the presumption's turn.
                self._settle()
        elif frame.holds and self.state == "holding" and self.managed and not view.overlap_reported:
            # Once per episode: the backup answers every heartbeat, and a
            # release held up by a slow hook would otherwise mail twice a second.
            view.overlap_reported = True
            out.append(
                Alarm("critical", f"{view.name} reports it holds our addresses while we hold them: "
                      "it should release now", True)
            )
        if not frame.holds:
            view.overlap_reported = False
        return out

    def action_done(self, now: float, result: Result) -> list[Action]:
        out = self._begin(now)
        if isinstance(result, ProbeDone):
            self._answered = frozenset(result.answered) & self.managed
            self._fire("probed")
        elif isinstance(result, AcquireDone):
            self.held = (self.held | frozenset(result.acquired)) & self.managed
            self._failed = frozenset(result.failed) & self.managed
            if result.failed:
                out.append(Alarm("error", f"could not acquire {names(result.failed)}", True))
            self._fire("acquired")
        elif isinstance(result, ReleaseDone):
            self.held = self.held - frozenset(result.released) - frozenset(result.refused)
            if result.failed:
                out.append(Alarm("error", f"could not release {names(result.failed)}", True))
            self._fire("released")
        elif isinstance(result, ClaimDone):
            if self._witness is not None:
                self._witness.claim_done(result)
            self._fire("claimed")
        elif isinstance(result, RenewDone):
            if self._witness is not None:
                self._witness.renewal_done(result)
            self._fire("renewed")
        elif isinstance(result, ReachDone):
            if self._witness is not None:
                self._witness.reach_done(result)  # what our next heartbeat says (and, held back, the failback's go)
        else:
            raise TypeError(f"unknown result {result!r}")
        self._settle()
        return out

    def conflict_seen(self, now: float, addresses: Iterable[Triplet]) -> list[Action]:
        """Another host's ARP claims ``addresses`` we hold: we are the owner, so
        alarm and announce them again (at most once per interval); the backup,
        seeing our announcement as a conflict of its own, lets go."""
        out = self._begin(now)
        contested = frozenset(addresses) & self.held
        if contested and self.state == "holding" and now >= self._reclaim_due:
            self._reclaim_due = now + self.interval
            out.append(
                Alarm("critical", f"another host answers for {names(contested)} on the wire: announcing ours again", True)
            )
            out.append(Announce(contested))
        return out

    def health_changed(self, now: float, healthy: bool, reason: str = "") -> list[Action]:
        """This host's health checks turned unhealthy (``reason``: which fail, how) or healthy again.

        Fed after the checks' rise/fall hysteresis (:mod:`failoverd.core.health`),
        only when the combined verdict changes; a repeat changes nothing.
        """
        out = self._begin(now)
        if healthy == self.healthy:
            return out
        self.healthy = healthy
        self.health_reason = "" if healthy else reason
        # Stopping anyway, the stop already lets the backup take over: no
        # alarm (the verdict's rows in the states of a stop ignore it).
        quiet = self.state == "stopped" or self._stop_requested
        if self.links_down:
            # A down link already made us step down: the one verdict stays "unfit".
            if not quiet:
                then = "pass again" if healthy else f"fail too ({reason})"
                out.append(Alarm("info" if healthy else "warning",
                                 f"health checks {then}; {self._links_reason()}: still standing down"))
            return out
        if healthy:
            then = (
                "taking our addresses back once the backup has released them" if self.managed
                else "heartbeats no longer say leaving"
            )
            if not quiet:
                out.append(Alarm("info", f"health checks pass again: {then}", True))
            self._fire("checks_pass")
        else:
            first = f"releasing {names(self.held)}, then " if self.managed and self.held else ""
            if not quiet:
                out.append(
                    Alarm("critical", f"health check fails ({reason}): stepping down: {first}"
                          "heartbeats tell the backup to take over", True)
                )
            self._fire("checks_fail")
        self._settle()
        return out

    def link_changed(self, now: float, interface: str, up: bool) -> list[Action]:
        """The link of ``interface`` went down (not admin-up, or no carrier) or came up again.

        Only the interfaces of managed addresses count; a repeat changes
        nothing. Down, with the checks passing, the master steps down as an
        unhealthy one does; up again, with every link up and the checks
        passing, it rejoins through the managed failback (see the module).
        """
        out = self._begin(now)
        if interface not in self.link_interfaces or (interface in self.links_down) == (not up):
            return out
        was_fit = self._healthy()
        self.links_down = self.links_down - {interface} if up else self.links_down | {interface}
        quiet = self.state == "stopped" or self._stop_requested
        if up and self._healthy():
            if not quiet:
                out.append(Alarm("info", f"link {interface} up again: taking our addresses back once the "
                                 "backup has released them", True))
            self._fire("link_up")
        elif not up and was_fit:
            first = f"releasing {names(self.held)}, then " if self.held else ""
            if not quiet:
                out.append(Alarm("critical", f"link {interface} down: stepping down: {first}"
                                 "heartbeats tell the backup to take over", True))
            self._fire("link_down")
        elif not quiet:
            out.append(Alarm("info", f"link {interface} {'up again' if up else 'down'}; "
                             f"{self._unfit_besides(interface)}: still standing down"))
        self._settle()
        return out

    def shutdown(self, now: float, *, release: bool = True) -> list[Action]:
        """Begin an orderly stop; :class:`~failoverd.core.actions.Stopped` says when it is done.

        A managing master always releases its addresses before the leaving
        heartbeat (``release=False`` is refused: heartbeatd has no option to keep them).
        """
        if not release:
            raise ValueError("heartbeatd always releases the addresses it manages when it stops")
        out = self._begin(now)
        self._fire("stop")
        self._settle()
        return out

    def next_deadline(self) -> float | None:
        # Asked after every input (three times per interval when idle): the
        # earliest of the candidates kept as it goes, no list built, and the
        # witness' candidates looked at only with a witness.
        if self.state == "stopped":
            return None
        state = self.state
        earliest = self._next_send
        if state == "waiting":
            earliest = min(earliest, self._presume_at())
        if (self._retry_at is not None and self._retry_at < earliest and not self._retry_awaits_proof()
                and not (state == "waiting" and self._claim_futile())):  # an input lifts either: no spin
            earliest = self._retry_at
        fail_after = self.backup_fail_after
        for v in self.views.values():
            if v.last_heard is not None and not v.silent and v.last_heard + fail_after < earliest:
                earliest = v.last_heard + fail_after
        if state == "holding" and self._garp_due is not None and self._garp_due < earliest:
            earliest = self._garp_due
        if self._witness is not None:
            witness_due = self._witness.next_deadline(
                self._now, granted=state == "granted", holding=state == "holding", asking=self._wants_reach())
            if witness_due is not None:
                earliest = min(earliest, witness_due)
        return earliest

    # --- status --------------------------------------------------------------

    @property
    def backup_last_heard(self) -> float | None:
        """When a frame of a backup last counted (the newest of them); None: none heard in this run."""
        heard = [v.last_heard for v in self.views.values() if v.last_heard is not None]
        return max(heard) if heard else None

    @property
    def backup_holds(self) -> bool | None:
        """Does a backup say it holds (any of them)? None: none said anything yet."""
        said = [v.holds for v in self.views.values() if v.holds is not None]
        return any(said) if said else None

    @property
    def backup_silent(self) -> bool:
        """A backup once heard has been silent past its failure timeout (alarmed)."""
        return any(v.silent for v in self.views.values())

    @property
    def claims(self) -> bool:
        """What our heartbeats say: do we (or may we, mid-acquire) hold our addresses?"""
        if not self.managed:
            return self.state != "stopped"
        return self.state in CLAIMING_STATES or bool(self.held)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "role": "master",
            "state": self.state,
            "since": round(now - self.state_since, 3),
            "targets": list(self.targets),
            "mode": "authenticated" if self._key is not None else "legacy",
            "backup_last_heard_age": None if self.backup_last_heard is None else round(now - self.backup_last_heard, 3),
            "backup_holds": self.backup_holds,
            "backups_expected": self.backups,
            "backups": [v.snapshot(now, self.backup_fail_after)
                        for v in sorted(self.views.values(), key=lambda v: -v.priority)],
            "paths": [],
            "held": sorted(str(t) for t in self.held),
            "managed": sorted(str(t) for t in self.managed),
            "counters": self.counters.as_status(),
            "timing": {"interval": self.interval, "backup_fail_after": self.backup_fail_after},
            "healthy": self.healthy,
            "health_reason": self.health_reason,
            "links_down": sorted(self.links_down),
            "witness": None if self._witness is None else self._witness.snapshot(now),
        }

    @property
    def witness_reachable(self) -> bool:
        """The last claim, renewal or question to etcd was answered (True without a witness)."""
        return self._witness is None or self._witness.reachable

    # --- internals -----------------------------------------------------------

    def _links_reason(self) -> str:
        return links_reason(self.links_down)

    def _unfit_besides(self, interface: str) -> str:
        return unfit_besides(self.healthy, self.health_reason, self.links_down, interface)

    def _begin(self, now: float) -> list[Action]:
        self._now = now
        self._out = []
        return self._out

    def _send_heartbeat(self, now: float, *, leaving: bool | None = None, only: Iterable[str] | None = None) -> None:
        """Seal and send a heartbeat (to ``only`` those targets, if given); ``leaving`` by default while standing down."""
        standing_down = self.state == "standing_down"
        if leaving is None:
            # A master that cannot reach the witness cannot hold: holding nothing, it lets
            # a backup that can take over at once (spec/witness.md, "The cuts"). One that has
            # not heard etcd since it started or rejoined may be unable to claim: it keeps a
            # backup that holds from failing back ("leaving" only moves a holder's deadline)
            # until etcd answers it ("A master that returns").
            leaving = standing_down or (not self.held and (not self.witness_reachable or self._unanswered_failback()))
        if self._sealer is None:
            if standing_down:
                return  # a legacy heartbeat cannot say "leaving": our silence says it
            self._out.append(Transmit(self.legacy_message, self.targets))
            return
        # Sealed once per target: each frame is valid once, on one path, so a
        # copy captured on one network cannot be replayed on another. And a
        # frame acknowledges one backup (spec/wire.md, rule 6): the one heard
        # from that target's address.
        confirms = self._confirms(now)
        for target in self.targets if only is None else only:
            view = self._view_of_target(target)
            epoch, seq = (0, 0) if view is None else view.guard.newest
            payload = self._sealer.seal(now, holds=self.claims, leaving=leaving, ack_epoch=epoch, ack_seq=seq,
                                        witness_unreachable=confirms)
            self._out.append(Transmit(payload, (target,)))

    def _view_of_target(self, target: str) -> BackupView | None:
        """The backup a heartbeat to ``target`` acknowledges: with one, it; with several, the one heard from there."""
        if self.backups == 1:
            return self._latest_view
        priority = self._view_of_source.get(target)
        return None if priority is None else self.views[priority]

    def _targets_of(self, view: BackupView) -> tuple[str, ...]:
        """The targets whose heartbeats acknowledge ``view`` (with one backup: all)."""
        return tuple(t for t in self.targets if self._view_of_target(t) is view)

    def _learn_source(self, view: BackupView, source: str) -> None:
        if self._view_of_source.get(source) == view.priority:
            return
        self._view_of_source[source] = view.priority
        if self.backups > 1 and source not in self.targets and (view.priority, source) not in self._reported_strays:
            # Its heartbeats would acknowledge nothing of it: it never counts
            # one, and takes over as if we were dead (after its ARP probe).
            self._reported_strays.add((view.priority, source))
            self._out.append(Alarm("critical", f"{view.name}'s status frames come from {source}, which is not a "
                                   "target: no heartbeat acknowledges it; name its address as a target", True))

    def _not_released(self) -> tuple[str, ...]:
        """Who the failback still waits for: each backup whose "I hold nothing" does not count now."""
        now, fail_after = self._now, self.backup_fail_after
        pending = [v for v in self.views.values() if not v.released(now, fail_after)]
        missing = max(0, self.backups - len(self.views))
        if not pending and not missing:
            return ()  # the common case, at every status of a holding master's backups
        pending.sort(key=lambda v: -v.priority)
        waiting = tuple(f"{v.name}, which {self._why_pending(v)}" for v in pending)
        if missing:
            waiting += (f"{missing} backup{'s' if missing > 1 else ''} not heard yet",)
        return waiting

    def _why_pending(self, view: BackupView) -> str:
        if view.last_heard is None:
            return "has not been heard yet"
        if not view.alive(self._now, self.backup_fail_after):
            return "is silent"
        if view.holds:
            return "holds the addresses"
        return "has not yet answered a heartbeat it counted since we rejoined"

    def _names_besides(self, view: BackupView) -> str:
        return ", ".join(v.name for v in self.views.values() if v is not view)

    def _presume_at(self) -> float:
        """When the presumption becomes due: every backup not known released silent for its failure timeout.

        Backups never heard are silent since the floor (start, or as the
        failback last put it off). With every backup released (a failback
        put off by the witness) it is when the first of them falls silent.
        With several backups, and one not known released, no earlier than
        :meth:`_release_settle` after the latest release of any backup: a
        backup that cannot hear us may be deferring to the one that just
        released, and that release ends its deferral too; it probes and takes
        over at once, and our probe must come after its address is up, not
        overlap its probe (spec/backups.md, "What the review found", 1).
        """
        now, fail_after = self._now, self.backup_fail_after
        floor = self._presume_from + fail_after
        views = list(self.views.values())
        unreleased = [v for v in views if not v.released(now, fail_after)]
        heard = [v for v in views if v.last_heard is not None]
        if unreleased or len(heard) < self.backups:
            starts = [floor] + [v.last_heard + fail_after for v in unreleased if v.last_heard is not None]
            if self.backups > 1:
                starts += [v.released_at + self._release_settle() for v in views if v.released_at is not None]
            return max(starts)
        return max(floor, min(v.last_heard + fail_after for v in heard if v.last_heard is not None))

    def _release_settle(self) -> float:
        """How long after a backup's release a backup that waited on it may still be taking over
        (:func:`~failoverd.core.timing.release_settle`, its retry taken as ours)."""
        return release_settle(self.backup_fail_after, self.retry_interval, self.interval)

    # conditions (time guards compare exactly as next_deadline() computes
    # the deadlines, float rounding included)

    def _presume_due(self) -> bool:
        return self._now >= self._presume_at()

    def _retry_due(self) -> bool:
        return self._retry_at is not None and self._now >= self._retry_at

    def _claim_futile(self) -> bool:
        """etcd does not answer us while a backup says it holds: our questions (Reach) tell when it
        does, and only then can the failback begin (with keep, claiming would also stop our
        confirmations)."""
        return self._proofs is not None and not self.witness_reachable and self.backup_holds is True

    def _unanswered_failback(self) -> bool:
        """A backup holds and etcd has not answered us since we started or rejoined: our heartbeats
        must not make it fail back yet."""
        return self._proofs is not None and not self.witness_answered and self.backup_holds is True

    def _retry_awaits_proof(self) -> bool:
        """Held on a confirmation alone (--etcd-unreachable keep), a retry to add what is missing
        waits for a valid proof, which only an input brings (a renewal's answer): offered as a
        deadline meanwhile it would be past at once, and the timer would wake for nothing, forever."""
        return self.state == "holding" and not self._proof_valid()

    def _probes_first(self) -> bool:
        return self.arp_probe

    def _probe_answered(self) -> bool:
        return bool(self._answered)

    def _stopping(self) -> bool:
        return self._stop_requested

    def _some_missing(self) -> bool:
        return bool(self._failed)

    def _managing(self) -> bool:
        return bool(self.managed)

    def _some_held(self) -> bool:
        return bool(self.held)

    def _healthy(self) -> bool:
        """The one verdict: the checks pass and every managed address's link is up."""
        return self.healthy and not self.links_down

    def _witnessed(self) -> bool:
        return self._proofs is not None

    def _proof_valid(self) -> bool:
        """No witness, or the newest proof lets us hold the addresses now (spec/witness.md, "The rule")."""
        return self._proofs is None or self._proofs.may_hold(self._now)

    def _kept(self) -> bool:
        """No witness, or a proof or (keep-and-refuse-new) every backup's confirmation keeps what we hold."""
        return self._proofs is None or self._proofs.may_keep(self._now)

    def _claim_granted(self) -> bool:
        return self._witness is not None and self._witness.claim_result.outcome == "granted"

    def _wait_passed(self) -> bool:
        return self._witness is not None and self._now >= self._witness.wait_until

    # actions

    def _probe(self) -> None:
        self._out.append(Probe(self.managed - self.held))

    def _contested(self) -> None:
        # Back in ``waiting`` the presumption would hold at once and re-probe
        # immediately: make it due one retry interval from now (later, if
        # the backup is heard meanwhile: then it is alive, and its
        # "I hold nothing" is what we wait for).
        self._presume_from = self._now + self.retry_interval - self.backup_fail_after
        self._out.append(
            Alarm(
                "critical",
                f"backup silent but {names(self._answered)} still answer(s) on the wire: not adding them",
                True,
            )
        )

    def _acquire(self) -> None:
        wanted = self.managed - self.held
        self._failed = frozenset()
        self._out.append(Acquire(wanted))

    def _retry_taken(self) -> None:
        self._retry_at = None

    def _schedule_refresh(self, now: float) -> None:
        self._garp_due = None if self._garp_refresh is None else now + self._garp_refresh

    def _now_holding(self) -> None:
        self._schedule_refresh(self._now)
        # Tell the backup at once that we hold our addresses again.
        self._send_heartbeat(self._now)
        self._next_send = self._now + self.interval
        if self._failed:
            self._retry_at = self._now + self.retry_interval

    def _mark_stopping(self) -> None:
        self._stop_requested = True

    def _release(self) -> None:
        self._retry_at = None
        self._out.append(Release(self.held))

    def _release_incomplete(self) -> None:
        self._out.append(Alarm("error", f"stopping with {names(self.held)} still configured", True))
        self._leave()

    def _stood_down(self) -> None:
        # Nothing of ours is left to find (or we never managed any): tell the
        # backup at once, not at the next interval. A release that left
        # something behind is tried again.
        self._retry_at = self._now + self.retry_interval if self.held else None
        self._send_heartbeat(self._now)
        self._next_send = self._now + self.interval

    def _rejoin(self) -> None:
        # Heartbeats without "leaving" from now on, the first at once: a backup
        # holding our addresses releases them on it, and its "I hold nothing"
        # status starts the managed failback. Only a status answering one of
        # these counts: one made while we said "leaving" (still in flight, or
        # replayed) may come from a backup that has since begun its takeover.
        # With a witness that did not answer (our heartbeats say `leaving` until it
        # does), claim again a retry interval from now: nothing else would, as a
        # backup holding our addresses sends no "I hold nothing".
        unanswered = self._proofs is not None and not self.witness_reachable
        self._retry_at = self._now + self.retry_interval if unanswered else None
        if self._confirmer is not None:
            # Standing down or releasing we asked etcd nothing that says we could claim now: a
            # backup that holds fails back only once an answer of etcd arrives from now on.
            self.witness_answered = False
            self._confirmer.ask_now(self._now)
        if self._sealer is not None:
            self._release_floor = self._sealer.seq + 1
        for view in self.views.values():
            view.release_counted = False  # said before this heartbeat: perhaps before a takeover since
        # A backup may be taking over on the `leaving` heartbeats we sent until
        # now: presume it dead no earlier than a failure timeout from here, not
        # from when we last heard it (spin found two holders otherwise).
        self._presume_from = max(self._presume_from, self._now)
        self._send_heartbeat(self._now)
        self._next_send = self._now + self.interval

    def _leave(self) -> None:
        # Our addresses are gone: let the backup take over now, not after its timeout.
        if self.managed:
            self._send_heartbeat(self._now, leaving=True)

    def _stopped(self) -> None:
        self._out.append(Stopped())

    # the witness (spec/witness.md)

    def _claim(self) -> None:
        self._retry_at = None
        self._out.append(Claim())

    def _granted(self) -> None:
        assert self._witness is not None
        self._witness.granted()

    def _take_grant(self) -> None:
        """The grant is ours (to wait on, or to give back at once)."""
        assert self._witness is not None
        self._witness.take_grant()

    def _claim_failed(self) -> None:
        assert self._witness is not None
        result = self._witness.claim_result
        # Tried again a retry interval from now, or at the backup's next "I hold nothing";
        # not at once by the presumption (an etcd that refuses connections answers at once).
        self._retry_at = self._now + self.retry_interval
        self._presume_from = max(self._presume_from, self._now + self.retry_interval - self.backup_fail_after)
        if result.outcome == "refused":
            self._witness.note_reachable(True)
            self._out.append(Alarm("warning", f"the etcd witness refused our claim ({result.detail}): "
                                   f"not adding {names(self.managed)} yet"))
        else:
            self._witness.note_reachable(False, result.detail)

    def _take_renewal(self) -> None:
        """A renewal's answer: a newer proof, the claim lost, or no answer (the proof runs on)."""
        assert self._witness is not None
        self._witness.take_renewal(self._now, self.held)

    def _proof_ran_out_waiting(self) -> None:
        self._retry_at = self._now + self.retry_interval
        self._out.append(Alarm("critical", "the witness's claim could not be renewed during the wait after "
                               f"its grant: not adding {names(self.managed)}", True))

    def _proof_ran_out(self) -> None:
        assert self._witness is not None
        self._witness.proof_ran_out(self.held, give_claim_back=False)  # given back once the release is done

    # --etcd-unreachable keep (spec/witness.md, "When etcd is unreachable from every host")

    def _take_confirmation(self, frame: wire.Heartbeat, view: BackupView) -> None:
        """A backup says it cannot reach etcd: a proof from the heartbeat it answers, against that
        backup, for what we hold now (it never lets us configure an address; core/witness.py).

        Only the confirmations of every backup together keep an address: ``--backups`` of them,
        and every one heard if more are. With ``--backups 1`` only a pair's backup (priority 0)
        confirms: one with a priority has peers, so ``--backups 1`` undercounts the hosts that
        could claim, and its confirmation alone must not keep us (we drop instead)."""
        assert self._sealer is not None
        if self._witness is None or (self.backups == 1 and frame.priority != 0):
            return
        self._witness.take_confirmation(self._sealer.acked_at(frame), view.priority,
                                        holding=self.state == "holding", held=self.held)

    def _confirms(self, now: float) -> bool:
        """Do our heartbeats say "witness unreachable"? Never once we read a grant of our claim,
        nor while we hold, may hold or are claiming the addresses (core/witness.py)."""
        return self._witness is not None and self._witness.confirms(
            now, may_hold=self.claims or self.state in ("claiming", "granted"))

    def _wants_reach(self) -> bool:
        """Ask etcd whether it answers us, while a backup holds: with keep, always (to know whether
        to confirm); with drop, only until it answers (a failback waits for that answer)."""
        return (self._witness is not None and self.state not in ("stopped", "claiming", "granted")
                and not self._witness.claim_held and not self.claims and self.backup_holds is True
                and (self._keep_on_outage or not (self.witness_answered and self.witness_reachable)))

    def _etcd_reached(self, reachable: bool) -> None:
        """After each claim, renewal or question that found etcd answering or not (WitnessMember's
        ``after_reach``, after its alarm): :attr:`witness_answered`, and the failback held back for it."""
        held_back = self._unanswered_failback()
        self.witness_answered = reachable
        if held_back and reachable and self.state == "waiting" and self._sealer is not None:
            # The failback waited for this answer: tell the backup now, not at the next interval.
            # And no claim until it has released: its "I hold nothing" starts ours, as after a
            # restart; a retry left from standing down or a failed claim would claim the key
            # while the backup still holds it (review: the claim is spoiled, 0.15 s more gap).
            self._retry_at = None
            self._send_heartbeat(self._now)
            self._next_send = self._now + self.interval

    def _give_claim_back(self) -> None:
        if self._witness is not None:
            self._witness.give_claim_back()
