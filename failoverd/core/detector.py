"""The backup's failure detector: a pure state machine.

Rules of this file
------------------
- Every state and transition is data (``STATES``, ``TRANSITIONS``), declared
  for ``transitions.Machine`` under the rules of :mod:`failoverd.core.machine`:
  every state change is a row, guards (time guards too) are conditions, the
  rows of one trigger from one state exclude each other, the passing of time
  is the state-driven triggers of ``AUTOMATIC``, and callbacks only *emit*
  actions into a list the caller receives, never fire a trigger. Nothing here
  reads a clock, a socket or a file: each entry point takes ``now`` (seconds,
  monotonic). docs/state-machines.md draws the table.
- Entry points: :meth:`Detector.receive_datagram`, :meth:`Detector.handle_timer`,
  :meth:`Detector.action_done`, :meth:`Detector.conflict_seen`,
  :meth:`Detector.health_changed`, :meth:`Detector.link_changed`, :meth:`Detector.shutdown`. Each returns the actions to run, in order
  (our peer frames last, when due: ``_then_tell_peers``);
  :meth:`Detector.next_deadline` says when the caller must call
  ``handle_timer`` next. Same inputs, same outputs.
- The common case — a valid heartbeat while all is well — changes no state
  and costs no machine trigger.

Theory of operation
-------------------
The master is *suspect* after ``Timing.suspect_after`` of silence. While it
is suspect, the ARP probe of its public addresses is timed to end exactly at
the failure deadline (``Timing.fail_after`` of silence): the answer is in when
the deadline comes, so probing costs no detection time, and it is as fresh as
it can be (a probe only sees addresses already configured; see spec/README.md
on the race it closes). At that deadline the addresses
are acquired only if nobody answered for them; otherwise the backup is
*contested* (the master is probably alive and only the heartbeat path died)
and keeps probing. A valid heartbeat while holding releases everything at
once: the master is the rightful owner. The status frames the backup sends
(authenticated mode) tell the master whether it still holds anything, which
is what lets a returning master take its addresses without overlap.

Health checks (docs/checks.md): the runtime says when this host's checks
turn unhealthy or healthy again (:meth:`Detector.health_changed`, after their
rise/fall hysteresis). An unhealthy backup does not take over: where it
would acquire, it goes to *unfit* instead and alarms, and it takes over
(after a fresh ARP probe) only once its checks pass again, unless the master
is heard first. A backup already holding the addresses when its checks fail
keeps them: it took them because the master failed or stepped down, so
releasing would leave nobody holding them, and a host that still answers
on them (ARP, the services that work, a quick refusal) serves clients
better than none (keepalived releases in its FAULT state; docs/checks.md
says why we do not).

Links (:meth:`Detector.link_changed`): the runtime says when the interface
of one of our addresses loses its link (not admin-up, or no carrier) or gets
it back. A down link makes the backup unfit as a failing check does (one
verdict, ``_healthy`` = checks pass AND links up): it does not take over
while the link is down. Once it is up again (``link_up``, fired only when
that verdict changes) the backup listens afresh: the master's silence while
our link was down says nothing about the master, so it counts from the
return, and a takeover needs a full failure timeout of silence then (a backup
taking over the instant its link returns races a master that presumes it
dead at the same moment: spin found both holding). Unlike a failing check,
a down link makes a holding backup release at once (``link_lost``, a
state-driven row, so an acquire that completes or an adoption at start on a
down link releases too): an address on a down link serves nobody, and it
returns into a conflict with a master that took it back meanwhile.

Several backups (spec/backups.md; only with ``settings.peers``, and only
authenticated): the other backups are :mod:`failoverd.core.peers`, one
replay guard per peer priority, so a peer frame (role backup) counts exactly
as a heartbeat does (rules 1-7 of spec/wire.md, acknowledged through our own
sealer). We send each peer a frame once per interval, at once when what we
say (holds, unfit = not ``_healthy``, master heard: a master frame counted
within ``Timing.master_heard_window``) changes, and in answer to an
unacknowledged one (the handshake, at most once per half interval per peer);
each acknowledges that peer's newest frame. At the failure deadline, an
alive peer that holds, or a present fit peer of a higher priority (one
counted within ``fail_after + rank × step``, not just the failure timeout:
cut off from us while announcing, it may acquire a failure timeout after its
last counted frame of us), or an alive peer whose last counted frame says it hears the master and
counted more than ``W + 2 × allowance`` after our own last counted heartbeat (the master is alive and
its heartbeats do not reach us, ``_peer_hears_master``; and for ``Timing.master_evidence_hold`` after
that, lest our probe meet the returning master's; alarmed after a failure timeout of it),
makes us *defer* instead of acquiring (``_deferred``): *deferring* listens to the
master (a heartbeat ends it) and, when the condition lapses with the master
still silent, suspects afresh, so a new probe decides. Where we would
acquire, and some peer is alive or in its handshake after a restart (the
wait set W, ``_must_announce``), we *announce* first: *announcing* says
holds to the peers and the master, adds nothing, and acquires only once
every peer of W answered with a counted frame that acknowledges the
announcement's first frame to it and says it holds nothing, or was silent
a failure timeout (``announced``); a higher peer saying holds, the master's
heartbeat, a peer hearing the master, or our own unfitness withdraws it (spec/backups.md, "Who takes
over": two backups that both acquire cannot both have waited for the
other's "holds nothing"), and so does its limit, ``fail_after + 2 ×
interval`` (``unanswered``: a peer heard but not answering does not hear us),
after which a fresh probe decides. Holding while an alive
higher peer holds too, or while an alive fit higher one says ``preempt``, we
yield (``peer_yield``): the lower releases, and the higher (deferring to it
as the holder) takes over only when a counted frame of it says it holds
nothing, through its own probe. The failure deadline is later by our rank
(configured peers of a higher priority: static, ``--peer ADDR=PRIORITY``)
times ``fail_after`` plus the probe duration plus two intervals, and the
probe is timed to end at that delayed deadline: with the link between the
backups cut, the lower one's probe then sees the higher one's addresses.
A peer frame whose priority no configured peer has is refused (``priority``).
Without peers, a backup frame is refused as ``role`` and our frames are
byte for byte a pair's. With a witness and peers (spec/witness.md, "With
several backups") the claim keeps two backups apart: we claim where we would
announce, defer only to a peer that says it holds (or claims), not to a
higher one merely present, yield only to ``--preempt``, and keep on an
outage only while the master and every peer confirm (their peer frames
carry the flag, as ours do).

States: monitoring, suspect, contested, unfit, acquiring, failed_over,
recovering, deferring and announcing (several backups), claiming and granted (the witness);
see spec/properties.md and docs for each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Action,
    Addresses,
    Alarm,
    AlarmLevel,
    Announce,
    Claim,
    ClaimDone,
    Counters,
    Notify,
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
from failoverd.core.health import links_reason, unfit_besides
from failoverd.core.machine import DeclaredMachine
from failoverd.core.peers import Awaited, PeerEntry, Peers
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing
from failoverd.core.witness import HolderProofs, OutageConfirmer
from failoverd.core.witness_member import WitnessMember

STATES: tuple[str, ...] = (
    "monitoring", "suspect", "contested", "unfit", "acquiring", "failed_over", "recovering",
    "claiming", "granted",  # the etcd witness (spec/witness.md)
    "deferring", "announcing",  # several backups (spec/backups.md)
)

SEVERAL_BACKUPS_STATES: frozenset[str] = frozenset({"deferring", "announcing"})
"""States only a backup with peers enters (spec/backups.md): a pair never does, so the pair
model (spec/failover.pml) has none of them and spec/backups.pml models them."""
SEVERAL_BACKUPS_TRIGGERS: frozenset[str] = frozenset({"peer_yield", "undeferred", "announced", "unanswered"})
"""Triggers whose rows hold only with peers (their conditions read the peers), whatever their states.
The several-backups rows are these and every row from or to one of :data:`SEVERAL_BACKUPS_STATES`."""

_ANY = list(STATES)

# State-driven triggers (see failoverd.core.machine): tried after every input,
# in this order, while their conditions hold. The time guards are conditions.
AUTOMATIC: tuple[str, ...] = (
    "link_lost", "peer_yield", "silence", "probe_due", "deadline", "announced", "unanswered", "undeferred", "retry",
    "wait_over", "proof_expiring",
)

# (trigger, source, dest, conditions, unless, before, after). dest None =
# internal transition (no state change). The rows of one trigger from one
# state exclude each other (tests/test_core_table.py checks it): their order
# means nothing. docs/state-machines.md draws this table.
TRANSITIONS: tuple[dict[str, Any], ...] = (
    # --- time: nothing is state-driven once the backup stops ---
    {"trigger": "silence", "source": "monitoring", "dest": "suspect",
     "conditions": ["_silence_long"], "unless": ["_stopping"], "after": "_schedule_probe"},
    {"trigger": "probe_due", "source": "suspect", "dest": None,
     "conditions": ["_probe_time"], "unless": ["_stopping"], "after": "_start_probe"},
    # At the failure deadline, with the probe's answer in. An unhealthy
    # backup declines where it would acquire (or be contested).
    {"trigger": "deadline", "source": "suspect", "dest": "unfit",
     "conditions": ["_deadline_passed", "_probe_finished"], "unless": ["_healthy", "_stopping"], "after": "_decline"},
    {"trigger": "deadline", "source": "suspect", "dest": "acquiring",
     "conditions": ["_deadline_passed", "_probe_finished", "_healthy"],
     "unless": ["_probe_answered", "_stopping", "_witnessed", "_deferred", "_must_announce"],
     "after": "_acquire_all"},
    {"trigger": "deadline", "source": "suspect", "dest": "contested",
     "conditions": ["_deadline_passed", "_probe_finished", "_healthy", "_probe_answered"],
     "unless": ["_stopping", "_deferred"], "after": "_contest"},
    # Several backups (spec/backups.md): an alive peer holds, or an alive fit
    # one outranks us: it is (or will be) the holder, so we wait for it.
    {"trigger": "deadline", "source": "suspect", "dest": "deferring",
     "conditions": ["_deadline_passed", "_probe_finished", "_healthy", "_deferred"], "unless": ["_stopping"],
     "after": "_defer"},
    {"trigger": "retry", "source": "contested", "dest": None,
     "conditions": ["_retry_due"], "unless": ["_stopping"], "after": ["_retry_taken", "_start_probe"]},
    {"trigger": "retry", "source": "failed_over", "dest": "acquiring",
     "conditions": ["_retry_due", "_some_missing", "_proof_valid"], "unless": ["_stopping"], "after": ["_retry_taken", "_acquire_missing"]},
    {"trigger": "retry", "source": "recovering", "dest": None,
     "conditions": ["_retry_due"], "unless": ["_stopping"], "after": "_release_held"},
    # --- the master's valid heartbeats (not "leaving": that one only moves the deadline) ---
    {"trigger": "heartbeat", "source": "monitoring", "dest": None},  # all is well (see _heard)
    {"trigger": "heartbeat", "source": "suspect", "dest": "monitoring", "after": "_false_suspicion"},
    {"trigger": "heartbeat", "source": "contested", "dest": "monitoring", "after": "_contest_over"},
    {"trigger": "heartbeat", "source": "unfit", "dest": "monitoring", "after": "_unfit_over"},
    {"trigger": "heartbeat", "source": "acquiring", "dest": None, "after": "_note_master_back"},
    {"trigger": "heartbeat", "source": "failed_over", "dest": "recovering", "unless": ["_outage_kept"],
     "after": ["_fail_back", "_release_held"]},
    # --etcd-unreachable keep, held on confirmations alone (etcd answers nobody): the master
    # could not claim what we let go, so the failback waits for our next proof (spec/witness.md).
    {"trigger": "heartbeat", "source": "failed_over", "dest": None, "conditions": ["_outage_kept"],
     "after": "_failback_put_off"},
    {"trigger": "heartbeat", "source": "recovering", "dest": None},  # already letting go
    # --- the ARP probe's answer. One with no probe pending is from a
    # suspicion that has since ended (or from before a stop): dropped. ---
    {"trigger": "probed", "source": _ANY, "dest": None, "unless": ["_probe_pending"]},
    {"trigger": "probed", "source": "suspect", "dest": None,
     "conditions": ["_probe_pending"], "unless": ["_deadline_passed"], "before": "_take_probe"},  # the deadline decides
    {"trigger": "probed", "source": "suspect", "dest": "unfit",
     "conditions": ["_probe_pending", "_deadline_passed"], "unless": ["_healthy"],
     "before": "_take_probe", "after": "_decline"},
    {"trigger": "probed", "source": "suspect", "dest": "acquiring",
     "conditions": ["_probe_pending", "_deadline_passed", "_healthy"],
     "unless": ["_result_answered", "_witnessed", "_deferred", "_must_announce"],
     "before": "_take_probe", "after": "_acquire_all"},
    {"trigger": "probed", "source": "suspect", "dest": "contested",
     "conditions": ["_probe_pending", "_deadline_passed", "_healthy", "_result_answered"], "unless": ["_deferred"],
     "before": "_take_probe", "after": "_contest"},
    {"trigger": "probed", "source": "suspect", "dest": "deferring",
     "conditions": ["_probe_pending", "_deadline_passed", "_healthy", "_deferred"],
     "before": "_take_probe", "after": "_defer"},
    {"trigger": "probed", "source": "contested", "dest": "unfit",
     "conditions": ["_probe_pending"], "unless": ["_healthy", "_result_answered"],
     "before": "_take_probe", "after": "_decline"},
    {"trigger": "probed", "source": "contested", "dest": "acquiring",
     "conditions": ["_probe_pending", "_healthy"],
     "unless": ["_result_answered", "_witnessed", "_deferred", "_must_announce"],
     "before": "_take_probe", "after": "_acquire_all"},
    {"trigger": "probed", "source": "contested", "dest": None,
     "conditions": ["_probe_pending", "_result_answered"], "unless": ["_healthy"],
     "before": "_take_probe", "after": "_still_contested"},
    {"trigger": "probed", "source": "contested", "dest": None,
     "conditions": ["_probe_pending", "_result_answered", "_healthy"], "unless": ["_deferred"],
     "before": "_take_probe", "after": "_still_contested"},
    # The one answering is (or may be) a peer that holds: wait for it as at the deadline.
    {"trigger": "probed", "source": "contested", "dest": "deferring",
     "conditions": ["_probe_pending", "_healthy", "_deferred"], "before": "_take_probe", "after": "_defer"},
    # --- our own address changes ---
    {"trigger": "acquired", "source": "acquiring", "dest": "recovering",
     "conditions": ["_master_back"], "after": ["_fail_back", "_release_held"]},
    {"trigger": "acquired", "source": "acquiring", "dest": "failed_over", "conditions": ["_proof_valid"],
     "unless": ["_master_back"], "after": "_took_over"},
    {"trigger": "released", "source": "recovering", "dest": "monitoring",
     "unless": ["_some_held", "_stopping"], "after": "_recovered"},
    {"trigger": "released", "source": "recovering", "dest": None,
     "conditions": ["_some_held"], "unless": ["_stopping"], "after": "_release_incomplete"},
    # Another host answers on the wire for an address we hold or are adding
    # (RFC 5227 conflict detection): the master is the rightful owner, so the
    # backup yields at once instead of holding on until a heartbeat gets through.
    {"trigger": "conflict", "source": "failed_over", "dest": "recovering", "after": ["_yield_alarm", "_release_held"]},
    {"trigger": "conflict", "source": "acquiring", "dest": None, "after": "_note_master_back"},
    # Nothing of ours to yield (a late ARP reply), or already yielding.
    {"trigger": "conflict", "source": ["monitoring", "suspect", "contested", "unfit", "recovering", "deferring",
                                       "announcing"],
     "dest": None},
    # --- health: healthy again with the master still gone, suspect it
    # afresh, so a new probe (the last one may be long stale) decides as at
    # any deadline. Elsewhere a passing verdict changes no state. ---
    {"trigger": "checks_pass", "source": "unfit", "dest": "suspect", "after": "_schedule_probe"},
    {"trigger": "checks_pass", "source": [s for s in STATES if s != "unfit"], "dest": None},
    # --- stop (SIGTERM), after the address change in progress finished: release
    # what we hold (unless told to keep it), then say the stop is complete. ---
    {"trigger": "stop", "source": _ANY, "dest": None,
     "conditions": ["_release_at_stop"], "after": ["_mark_stopping", "_release_to_stop"]},
    {"trigger": "stop", "source": _ANY, "dest": None, "unless": ["_release_at_stop"], "after": ["_mark_stopping", "_stop_now"]},
    {"trigger": "released", "source": _ANY, "dest": None, "conditions": ["_stopping"], "after": "_stop_released"},
    # --- witness: the etcd witness (spec/witness.md, "Integration plan"), only with one (_witnessed):
    # where the backup would acquire, it claims; granted, it waits W, then acquires, and
    # holds only while its newest proof is valid. _proof_valid is true without a witness. ---
    {"trigger": "deadline", "source": "suspect", "dest": "claiming",
     "conditions": ["_deadline_passed", "_probe_finished", "_healthy", "_witnessed"],
     "unless": ["_probe_answered", "_stopping", "_deferred"], "after": "_claim"},
    {"trigger": "probed", "source": "suspect", "dest": "claiming",
     "conditions": ["_probe_pending", "_deadline_passed", "_healthy", "_witnessed"],
     "unless": ["_result_answered", "_deferred"], "before": "_take_probe", "after": "_claim"},
    {"trigger": "probed", "source": "contested", "dest": "claiming",
     "conditions": ["_probe_pending", "_healthy", "_witnessed"], "unless": ["_result_answered", "_deferred"],
     "before": "_take_probe", "after": "_claim"},
    {"trigger": "claimed", "source": "claiming", "dest": "granted",
     "conditions": ["_claim_granted"], "unless": ["_master_back", "_stopping"], "after": "_granted"},
    {"trigger": "claimed", "source": "claiming", "dest": "monitoring",
     "conditions": ["_claim_granted", "_master_back"], "unless": ["_stopping"], "after": "_grant_unneeded"},
    {"trigger": "claimed", "source": "claiming", "dest": "contested",
     "unless": ["_claim_granted", "_stopping"], "after": "_claim_failed"},
    # An answer after the stop: a grant is given back at once.
    {"trigger": "claimed", "source": _ANY, "dest": None, "conditions": ["_stopping"], "after": "_late_claim"},
    {"trigger": "heartbeat", "source": "claiming", "dest": None, "after": "_note_master_back"},
    {"trigger": "heartbeat", "source": "granted", "dest": "monitoring", "after": "_grant_unneeded"},
    {"trigger": "wait_over", "source": "granted", "dest": "acquiring",
     "conditions": ["_wait_passed", "_proof_valid"], "unless": ["_stopping"], "after": "_acquire_all"},
    {"trigger": "proof_expiring", "source": "granted", "dest": "contested",
     "unless": ["_proof_valid", "_stopping"], "after": "_proof_ran_out_waiting"},
    # Held, the addresses stay while a proof runs or (--etcd-unreachable keep) the master's
    # confirmation that it cannot reach etcd either (_kept); configuring needs a proof.
    {"trigger": "proof_expiring", "source": "failed_over", "dest": "recovering",
     "unless": ["_kept", "_stopping"], "after": ["_proof_ran_out", "_release_held"]},
    # An acquire finished after the proof ran out: let go at once (A3's margin covers a quick one).
    {"trigger": "acquired", "source": "acquiring", "dest": "recovering",
     "unless": ["_master_back", "_proof_valid"], "after": ["_proof_ran_out", "_release_held"]},
    {"trigger": "renewed", "source": _ANY, "dest": None, "after": "_take_renewal"},
    {"trigger": "conflict", "source": ["claiming", "granted"], "dest": None},  # nothing of ours on the wire yet
    # --- links: holding on a down link, release (state-driven: tried before the
    # retry row, and after an acquire or an adoption that ends on a down link).
    # Up again (link_changed fires link_up only when the one verdict, checks AND
    # links, turns fit): the master's silence restarts from now, so a backup that
    # suspected or declined listens afresh (see the module). ---
    {"trigger": "link_lost", "source": "failed_over", "dest": "recovering",
     "conditions": ["_link_down"], "unless": ["_stopping"], "after": ["_link_lost_alarm", "_release_held"]},
    {"trigger": "link_up", "source": ["suspect", "contested", "unfit", "deferring"], "dest": "monitoring",
     "after": "_listen_afresh"},
    {"trigger": "link_up", "source": ["monitoring", "acquiring", "failed_over", "recovering", "claiming", "granted",
                                      "announcing"],
     "dest": None},
    # --- several backups (spec/backups.md). Deferring, the master still silent:
    # its heartbeat ends the wait; when the deferral lapses (the higher peer fell
    # silent or says unfit, the holder released), suspect afresh: a new probe
    # decides, so a holder we can no longer hear is still found on the wire.
    # Holding while an alive higher peer holds too, or while an alive fit higher
    # one says preempt: the lower yields (it releases before the higher probes). ---
    {"trigger": "heartbeat", "source": "deferring", "dest": "monitoring", "after": "_deferral_over"},
    {"trigger": "undeferred", "source": "deferring", "dest": "suspect",
     "unless": ["_deferred", "_stopping"], "after": ["_suspect_afresh", "_schedule_probe"]},
    {"trigger": "peer_yield", "source": "failed_over", "dest": "recovering",
     "conditions": ["_must_yield"], "unless": ["_stopping"], "after": ["_yield_to_peer", "_release_held"]},
    # --- announce, then acquire (spec/backups.md, "Who takes over"). Where a backup
    # with peers would acquire and some peer is alive or in its handshake (the wait
    # set W), it first says holds to everyone and adds nothing until each peer of W
    # has answered our announcement with a counted "holds nothing" or has been silent
    # for a failure timeout. A higher peer saying holds, the master's heartbeat, or
    # our own checks or links failing withdraw the announcement; a lower peer saying
    # holds does not (it yields to us). ---
    {"trigger": "deadline", "source": "suspect", "dest": "announcing",
     "conditions": ["_deadline_passed", "_probe_finished", "_healthy", "_must_announce"],
     "unless": ["_probe_answered", "_stopping", "_witnessed", "_deferred"], "after": "_announce"},
    {"trigger": "probed", "source": "suspect", "dest": "announcing",
     "conditions": ["_probe_pending", "_deadline_passed", "_healthy", "_must_announce"],
     "unless": ["_result_answered", "_witnessed", "_deferred"], "before": "_take_probe", "after": "_announce"},
    {"trigger": "probed", "source": "contested", "dest": "announcing",
     "conditions": ["_probe_pending", "_healthy", "_must_announce"],
     "unless": ["_result_answered", "_witnessed", "_deferred"], "before": "_take_probe", "after": "_announce"},
    {"trigger": "announced", "source": "announcing", "dest": "acquiring",
     "conditions": ["_healthy"], "unless": ["_awaiting_peers", "_higher_holds", "_peer_hears_master", "_stopping"],
     "after": ["_announcement_answered", "_acquire_all"]},
    {"trigger": "peer_yield", "source": "announcing", "dest": "deferring",
     "conditions": ["_higher_holds"], "unless": ["_stopping"], "after": ["_withdraw", "_defer"]},
    # A peer hears the master we cannot hear (spec/backups.md, "What the review found", 1): the
    # master is alive, withdraw and wait, as deferring does on it, until it no longer says so.
    {"trigger": "peer_yield", "source": "announcing", "dest": "deferring",
     "conditions": ["_peer_hears_master"], "unless": ["_higher_holds", "_stopping"], "after": ["_withdraw", "_defer"]},
    {"trigger": "heartbeat", "source": "announcing", "dest": "monitoring", "after": ["_withdraw", "_deferral_over"]},
    # An announcement lasts at most fail_after + 2 × interval (spec/backups.md, "What the review
    # found", 2): an awaited peer alive at its start has answered or fallen silent by then, unless
    # its frames count here while ours do not reach it (a one-way loss), and then it may take over
    # on its own. Withdraw, and let a fresh probe decide (it sees the peer's address if it added
    # any: contested), never acquire on the old one.
    {"trigger": "unanswered", "source": "announcing", "dest": "suspect",
     "conditions": ["_announcement_overdue", "_awaiting_peers"], "unless": ["_stopping"],
     "after": ["_unanswered_alarm", "_withdraw", "_schedule_probe"]},
    {"trigger": "deadline", "source": "announcing", "dest": "unfit",
     "unless": ["_healthy", "_stopping"], "after": ["_withdraw", "_decline"]},
)

# States in which the backup tells the master "I may hold your addresses":
# an acquire in flight counts, so the master never adds an address that is
# about to appear here; so does an announcement (its "holds" is what the
# peers wait on, and the master's failback waits on it too).
HOLDING_STATES = frozenset({"acquiring", "failed_over", "recovering", "claiming", "granted", "announcing"})


@dataclass
class PathHealth:
    name: str
    source: str
    last_heard: float
    quiet: bool = False
    received: int = 0
    """Authentic, unseen master frames that arrived on this path (accepted or overtaken)."""


_P = ParamSpec("_P")


def _then_tell_peers(
    entry: Callable[Concatenate[Detector, _P], list[Action]],
) -> Callable[Concatenate[Detector, _P], list[Action]]:
    """An entry point after which our peer frames go out if due or changed (one place, not seven)."""

    def wrapped(self: Detector, /, *args: _P.args, **kwargs: _P.kwargs) -> list[Action]:
        out = entry(self, *args, **kwargs)
        self._watch_hearing_peer()
        self._tell_peers()
        return out

    functools.update_wrapper(wrapped, entry)  # its name and docstring stay the entry point's
    return wrapped


class Detector(DeclaredMachine):
    """The backup's view of one master.

    Parameters
    ----------
    settings: the configuration, whole (:class:`~failoverd.core.settings.DetectorSettings`:
        the addresses to take over, the timing, the master, the legacy
        message, whether to ARP-probe, the peer's name); a trace's header.
    now: the caller's monotonic time at start; the master gets a full
        ``suspect_after`` of grace from it.
    key: shared heartbeat key (authenticated mode) or ``None`` (legacy mode:
        a datagram equal to the settings' ``legacy_message`` from their ``master``).
    epoch: this backup's per-boot epoch for its status frames.
    held: addresses already on our interfaces at start (adopted, not re-added).
    offline: analysing a recording in what-if replay, not watching a live
        master: the acknowledgements in a recorded heartbeat are of another
        run's status frames, so they prove nothing here, and the recording's
        times are the truth. Every authentic, unseen frame counts.
    """

    STATES = STATES
    TRANSITIONS = TRANSITIONS
    AUTOMATIC = AUTOMATIC

    def __init__(
        self,
        settings: DetectorSettings,
        now: float,
        *,
        key: bytes | None = None,
        epoch: int = 1,
        held: Iterable[Triplet] = (),
        offline: bool = False,
    ) -> None:
        self.settings = settings
        """What this detector was built with (all but the key and the run's own values): a trace's header."""
        timing = self.timing = settings.timing
        self.addresses: Addresses = frozenset(settings.addresses)
        # Timing is frozen; its derived values are read on every heartbeat and
        # every deadline query, so compute them once.
        self._suspect_after = timing.suspect_after
        self._fail_after = timing.fail_after
        self.peer = settings.peer
        self.master_address = settings.master
        self.legacy_message = settings.legacy_message
        self.arp_probe = settings.arp_probe
        self.counters = Counters()
        self.held: Addresses = frozenset(held) & self.addresses
        self.last_heard = now
        self._master_counted_at = float("-inf")
        """When a master frame (not ``leaving``) last counted: unlike :attr:`last_heard`, never the start's
        or a link's return's grace. What our "master heard" says, and what a peer's is compared with."""
        self._master_heard_window = timing.master_heard_window
        self.state_since = now
        self.paths: dict[str, PathHealth] = {}
        self.master_holds: bool | None = None
        self._key = wire.Key(key) if key is not None else None
        self._sealer = (
            wire.Sealer(
                self._key, wire.ROLE_BACKUP, epoch, timing.interval, now,
                memory=wire.sent_memory(1 + len(settings.peers), timing.effective_max_delay, timing.interval),
            ) if self._key is not None else None
        )
        self._guard = wire.ReplayGuard(timing.effective_max_delay, judge_age=not offline)
        if settings.peers and self._sealer is None:
            raise ValueError("peers need authenticated mode: legacy heartbeats carry no status")
        self._peers = (
            Peers(
                settings.peer_table,
                settings.priority,
                self._sealer,
                fail_after=timing.fail_after,
                rank_step=rank_step(timing),
                max_delay=timing.effective_max_delay,
                master_heard_window=timing.master_heard_window,
                master_heard_margin=2 * timing.effective_allowance,
                offline=offline,
            )
            if settings.peers and self._sealer is not None
            else None
        )
        """The other backups (spec/backups.md), or None: one backup of a pair."""
        self._wire_priority = settings.wire_priority
        self._preempt = settings.preempt
        self._peer_due = now
        """When our next periodic peer frames are due (the first at once: it starts the handshake)."""
        self._peer_said: tuple[bool, bool, bool] | None = None
        """(holds, unfit, master heard) as our last peer frames said it: a change is told at once."""
        self._master_evidence_at: float | None = None
        """When the last peer frame that showed us, in its "master heard", that the master is alive while its
        heartbeats do not reach us counted (None: none since our last counted heartbeat): we defer until
        ``Timing.master_evidence_hold`` after it, not just while it lasts (_peer_hears_master)."""
        self._master_evidence_from: PeerEntry | None = None
        """The peer that showed it, for the alarm."""
        self._evidence_hold = timing.master_evidence_hold
        self._hears_master_since: float | None = None
        """Since when we defer only because a peer hears the master we cannot (None: we do not)."""
        self._hears_master_alarmed = False
        """The alarm "a peer hears the master; its heartbeats do not reach us" was raised this episode."""
        self._priority_alarmed: set[int] = set()
        """Each priority whose peer frames were refused and alarmed (once each: the priority is under
        the MAC, the source is not, so a replayed frame from spoofed sources alarms once)."""
        self._foreign_backup_alarmed = False
        """The alarm "another backup runs with --peer, this one has none" was raised."""
        self._awaited: dict[int, Awaited] = {}
        """Announcing: the peers of the wait set W that have not answered yet, by priority (spec/backups.md)."""
        self._announced_at = float("-inf")
        """When the announcement began: it is withdrawn :meth:`_announcement_limit` later if still unanswered."""
        self._offline = offline
        self._now = now
        self._out: list[Action] = []
        self._leaving_at: float | None = None
        self._probe_in_flight = False
        self._probe_scheduled = False
        self._answered: Addresses = frozenset()
        self._probe_result: Addresses = frozenset()
        """The answer of the probe result being handled (committed to ``_answered`` by its row)."""
        self._master_returned = False
        """The master was heard (or answered on the wire) while our acquire was in flight."""
        self._stop_requested = False
        self._stop_releases = True
        """Whether the stop releases what we hold (``--keep-addresses-on-exit`` says not)."""
        self._failed: Addresses = frozenset()
        self._retry_at: float | None = None
        self._claim_retry_after = timing.effective_retry_interval
        """How long after a refused or unanswered claim the contested retry comes: doubled at each
        one, up to the failure timeout, and back to the retry interval with every new suspicion
        and every grant (spec/witness.md, "The contested retry")."""
        self._conflicting: Addresses = frozenset()
        self._garp_refresh = timing.garp_refresh
        self._garp_due: float | None = None
        self._status_due = float("-inf")
        self._status_holds = False
        self._status_epoch = -1
        self._counted_epoch = -1
        self.healthy = True
        """This host's health checks pass (or there are none); see :meth:`health_changed`."""
        self.health_reason = ""
        """Which checks fail, while unhealthy."""
        self.link_interfaces = frozenset(t.interface for t in self.addresses)
        """The interfaces whose links count (those of the addresses we take over)."""
        self.links_down: frozenset[str] = frozenset()
        """Those of :attr:`link_interfaces` that are down now; see :meth:`link_changed`."""
        self.last_verdict = ""
        """``accepted`` or the reason the last datagram was rejected (for traces)."""
        witness = self.witness = settings.witness
        """The etcd witness's timing, or None: no witness (spec/witness.md)."""
        # Keeping on confirmations needs one from every other host that could claim: the master
        # and each peer backup (spec/witness.md, "With several backups").
        self._proofs = HolderProofs(witness, confirmers=1 + len(settings.peers)) if witness is not None else None
        self._keep_on_outage = witness is not None and witness.keep_on_outage
        self._failback_put_off_reported = False
        """The alarm "the master is back, but etcd answers neither of us" was raised for this outage."""
        self._confirmer = OutageConfirmer(witness) if witness is not None and witness.keep_on_outage else None
        """--etcd-unreachable keep: whether we confirm the holding of the master or a peer (core/witness.py)."""
        self._witness = WitnessMember(
            self._proofs, self._confirmer,
            confirmers_named=f"{self.peer}'s confirmation" if self._peers is None
            else f"the confirmations of {self.peer} and of every peer backup",
            they="it" if self._peers is None else "they",
            emit=lambda action: self._out.append(action),  # the list of the input being handled (_begin)
        ) if self._proofs is not None else None
        """The claim, the proofs that keep what we hold and our questions to etcd, with their alarms
        (core/witness_member.py); None: no witness."""
        initial = "failed_over" if self.held else "monitoring"
        self._build_machine(initial)
        if self.held:
            # Adopted after a restart: we do not know whether the master is
            # alive, so behave as after a takeover; its first heartbeat
            # releases them.
            self._failed = self.addresses - self.held
            self._retry_at = now + timing.effective_retry_interval if self._failed else None
            self._schedule_refresh(now)

    # --- entry points ------------------------------------------------------

    @_then_tell_peers
    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        """A datagram arrived on the heartbeat port from ``source`` via ``path``."""
        out = self._begin(now)
        self._receive(now, data, source, path)
        return out

    def _receive(self, now: float, data: bytes, source: str, path: str) -> None:
        """Judge one datagram and fire what it means.

        Only a counted frame changes what the conditions read, so only it is
        followed by a settle (see :meth:`_heard`), before we answer it, so the
        status says what we hold after it. Any other frame needs none: a row
        due by time fires at the deadline the timer keeps, not earlier
        because a frame came in (a flood of forgeries costs no machine call).
        """
        self.last_verdict = "accepted"
        if self._key is None:
            if data != self.legacy_message:
                self._reject("message")
                return
            if self.master_address is not None and source != self.master_address:
                self._reject("source")
                return
            self._heard(now, source, path, leaving=False)
            return
        try:
            frame = wire.decode(data, self._key)
        except wire.WireError as exc:
            self._reject(exc.reason)
            return
        if frame.role != wire.ROLE_MASTER and (self._peers is None or frame.role != wire.ROLE_BACKUP):
            # A backup's frame with no peers configured: a pair, as before several backups.
            self._reject("role")
            if frame.role == wire.ROLE_BACKUP and frame.priority and not self._foreign_backup_alarmed:
                # Authentic, from a backup run with --peer (a pair's own frames carry no
                # priority, so a replay of ours is not taken for one): it counts on us as
                # its peer, and we, knowing of no other backup, would take over beside it.
                self._foreign_backup_alarmed = True
                self._uncounted_claimer()
                self._emit_alarm(
                    "critical", f"another backup of this master, at {source} with priority {frame.priority}, "
                    "runs with --peer, and this one has none: both would take over; give this backup "
                    "--priority and the other backups as --peer ADDR=PRIORITY", mail=True)
            return
        if frame.role == wire.ROLE_BACKUP:
            self._receive_peer(now, frame, source)
            return
        assert self._sealer is not None
        try:
            age = self._guard.admit(
                frame, now, self._sealer.acked_at(frame), acknowledges=self._sealer.acknowledges_us(frame)
            )
        except wire.WireError as exc:
            self._reject(exc.reason)
            if exc.reason == "epoch" and now >= self._status_due:
                # Perhaps a real master whose clock leapt: our answer (at the
                # status rate, never at once: the epoch is not recorded) tells
                # it our epoch, and its next heartbeat, acknowledging that, is let in.
                self._status(now, also=source)
            return
        if not (self._offline or self._sealer.acknowledges_us(frame)):
            # Authentic and unseen, but made before the master heard from this
            # epoch of ours (we restarted, or it did and does not know us
            # yet), or a replay of such a frame: it proves nothing about the
            # master now. Answer it, so the master's next heartbeat
            # acknowledges us and counts; ignore it otherwise. Not when a newer
            # frame came first: an attacker replaying a lost heartbeat would
            # otherwise make us send a fresh status whenever it liked (spin
            # found the private-link race that reopened).
            self.last_verdict = "unacknowledged"
            self.counters.unacknowledged += 1
            if self._guard.newest_admitted:
                self._answer(now, frame, source)
            return
        if age == "delayed":
            # Not provably young: it may have been withheld. Answering it lets
            # the master's next heartbeat prove its age directly (the newest only, as above).
            self._reject("delayed")
            if self._guard.newest_admitted:
                self._answer(now, frame, source)
            return
        if age == "overtaken":
            # Overtaken by a newer frame on another path: it says that path
            # works, and nothing newer about the master (its holds or leaving
            # flags are older than what we already know).
            self.last_verdict = "overtaken"
            self.counters.overtaken += 1
            self._path_heard(now, source, path)
            return
        self.master_holds = frame.holds
        if frame.witness_unreachable:
            self._take_confirmation(frame, "master")
        self._heard(now, source, path, leaving=frame.leaving)
        # The first heartbeat of a master epoch that counts is answered at
        # once too: only a status answering a heartbeat we counted tells a
        # managing master that we released (see Master.receive_datagram).
        self._answer(now, frame, source, urgent=self._counted_epoch != frame.epoch)
        self._counted_epoch = frame.epoch

    def _answer(self, now: float, frame: wire.Heartbeat, source: str, *, urgent: bool = False) -> None:
        """Send our status in reply to an authentic master frame, at the protocol's rate.

        At most one status per half interval: heartbeats arriving together on
        several paths get one status (sent on all of them), and no input rate
        makes the backup transmit faster. A new master epoch or a change in
        what we hold is answered at once: that is the handshake after a
        restart and the failback handshake.
        """
        holds = self.holds_any
        if urgent or now >= self._status_due or holds != self._status_holds or frame.epoch != self._status_epoch:
            self._status(now, also=source)

    def _receive_peer(self, now: float, frame: wire.Heartbeat, source: str) -> None:
        """Judge one peer backup's frame as a heartbeat is judged (spec/backups.md, "Peer frames").

        Verdicts (``last_verdict``, for traces): ``peer`` (it counted),
        ``peer_overtaken``, or a refusal counted as ``peer_<reason>``;
        ``priority`` (our own) is refused and alarmed once. A counted frame
        may end a deferral or make us yield: the settle after it decides.
        """
        assert self._peers is not None
        known = self._peers.entries.get(frame.priority)
        held_before = known is not None and known.holds
        try:
            verdict, entry = self._peers.judge(frame, now, source)
        except wire.WireError as exc:
            if exc.reason == "priority":
                self._reject("priority")
                if frame.priority not in self._priority_alarmed:
                    self._priority_alarmed.add(frame.priority)
                    if frame.priority != self._peers.priority:  # not our own frames, replayed to us
                        self._uncounted_claimer()
                    own = self._peers.priority
                    why = (
                        "ours too" if frame.priority == own
                        else "none (a backup without --peer)" if frame.priority == 0
                        else "one no --peer of ours is configured with"
                    )
                    self._emit_alarm(
                        "critical",
                        f"a peer backup at {source} has priority {frame.priority}, {why}: its frames are refused; "
                        f"give each backup of one master its own --priority, and list each other one as "
                        f"--peer ADDR=PRIORITY (ours: {own}; configured peers: "
                        + ", ".join(f"{e.address}={e.priority}" for e in self._peers.entries.values()) + ")",
                        mail=True,
                    )
            else:
                self._reject(f"peer_{exc.reason}")
            return
        if verdict == "counted":
            self.last_verdict = "peer"
            entry.unacknowledged_since = None
            entry.unacknowledged_alarmed = False
            awaited = self._awaited.get(entry.priority)
            if awaited is not None and self._peers.answered(entry, awaited, self._sealer_epoch()):
                del self._awaited[entry.priority]  # it answered our announcement: it leaves W for good
            if frame.witness_unreachable:
                self._take_confirmation(frame, entry.priority)
            self._settle()
            if entry.answered_epoch != entry.guard.epoch or entry.holds != held_before:
                # The handshake's last step: our answer acknowledges the frame that counted,
                # so our next frame counts there too, one round trip after the restart. And a
                # peer that now says holds (it announces) gets our answer at once, not an
                # interval later: it waits for it before it acquires.
                self._answer_peer(now, entry, source, urgent=True)
            return
        if verdict == "overtaken":
            self.last_verdict = "peer_overtaken"
            return
        self._reject(f"peer_{verdict}")
        if verdict == "unacknowledged":
            self._unacknowledged_peer(now, entry, source)
        if entry.guard.newest_admitted:
            # Unacknowledged (the handshake) or delayed: our answer lets its next frame count.
            self._answer_peer(now, entry, source)

    def _uncounted_claimer(self) -> None:
        """An authentic frame of a backup that no confirmation of ours counts (no --peer names it):
        it could claim the addresses, so --etcd-unreachable keep must never keep on the others'
        confirmations alone. From now on we drop at our proof's end, as with drop (review)."""
        if self._proofs is not None and self._keep_on_outage and not self._proofs.uncounted_claimer:
            self._proofs.claimer_uncounted()
            self._emit_alarm("critical", "a backup no --peer of ours names could claim the addresses: "
                             "--etcd-unreachable keep is off for this run (a proof alone keeps them)", mail=True)

    def _unacknowledged_peer(self, now: float, entry: PeerEntry, source: str) -> None:
        """A peer whose frames have never acknowledged ours for a failure timeout, though we answer them
        (a handshake takes one round trip): it refuses ours, so its --peer for us is missing or names
        another priority, and it will take over as if we did not exist. Alarmed once per episode; an
        episode starts afresh with a new epoch of the peer or after a failure timeout without its frames."""
        stale = entry.unacknowledged_last is not None and now - entry.unacknowledged_last > self._fail_after
        if entry.unacknowledged_since is None or stale or entry.unacknowledged_epoch != entry.guard.epoch:
            entry.unacknowledged_since = now
            entry.unacknowledged_epoch = entry.guard.epoch
            entry.unacknowledged_alarmed = False
        entry.unacknowledged_last = now
        if now - entry.unacknowledged_since > self._fail_after and not entry.unacknowledged_alarmed:
            entry.unacknowledged_alarmed = True
            assert self._peers is not None
            self._emit_alarm(
                "critical", f"peer backup at {source} (priority {entry.priority}) has not acknowledged our frames "
                f"for {now - entry.unacknowledged_since:.1f} s: it refuses them; check that its --peer for this "
                f"backup names our priority ({self._peers.priority})", mail=True)

    def _answer_peer(self, now: float, entry: PeerEntry, source: str, *, urgent: bool = False) -> None:
        """One frame to ``source``, at most once per half interval per peer (no input rate makes us send faster)."""
        if self._stop_requested or (not urgent and now < entry.answer_due):
            return
        entry.answer_due = now + self.timing.interval / 2
        entry.answered_epoch = entry.guard.epoch
        self._seal_peer(now, source, entry.guard.newest)

    def _seal_peer(self, now: float, address: str, ack: tuple[int, int], *, leaving: bool = False) -> None:
        assert self._sealer is not None
        holds = bool(self.held) if leaving else self.holds_any
        frame = self._sealer.seal(
            now,
            holds=holds,
            leaving=leaving,
            ack_epoch=ack[0],
            ack_seq=ack[1],
            unfit=not self._healthy(),
            preempt=self._preempt,
            priority=self._wire_priority,
            master_heard=not leaving and self._master_heard(now),
            # A peer holding on confirmations needs ours too (spec/witness.md, "With several
            # backups"): it acknowledges the peer's frame, so it counts from that frame's sending.
            witness_unreachable=not leaving and self._confirms(now),
        )
        self._out.append(Transmit(frame, (address,)))

    def _tell_peers(self) -> None:
        """After every input: our peer frames, when due (once per interval) or when what they say changed."""
        peers = self._peers
        if peers is None or self._stop_requested:
            return
        now = self._now
        said = self._peer_says(now)
        if now < self._peer_due and said == self._peer_said:
            return
        if now >= self._peer_due or self._peer_said is None or said[:2] != self._peer_said[:2]:
            self._peer_due = now + self.timing.interval
        # else only "master heard" changed: told at once, an extra frame; the periodic ones keep their phase.
        self._peer_said = said
        for address in peers.addresses:
            self._seal_peer(now, address, peers.newest_from(address))

    def _peer_says(self, now: float) -> tuple[bool, bool, bool]:
        """What our peer frames say: holds, unfit, master heard (a change is told at once)."""
        return (self.holds_any, not self._healthy(), self._master_heard(now))

    def _master_heard(self, now: float) -> bool:
        """Our frames say "master heard": a master frame counted within W (spec/backups.md)."""
        return now < self._master_counted_at + self._master_heard_window

    def _watch_hearing_peer(self) -> None:
        """After every input (not a state change): when a peer last showed us the master alive (the hold
        counts from then), and the alarm that we defer only because a peer hears the master we cannot
        hear, once per episode, after ``fail_after`` of it."""
        now = self._now
        peers = self._peers
        if peers is None or self._proofs is not None:
            return
        showing = peers.hearing_masters(now, self._master_counted_at)
        if showing:
            # From the counting of the latest frame that shows it, of any peer that does (never
            # earlier than before): the master's presumption counts its settle from a release that
            # ends at most an acquire and a release after it.
            latest = max(e.last_counted for e in showing if e.last_counted is not None)
            if self._master_evidence_at is None or latest > self._master_evidence_at:
                self._master_evidence_at = latest
            self._master_evidence_from = max(showing, key=lambda e: e.priority)
        alone = (
            self.state == "deferring" and not self._stop_requested and peers.holder(now) is None
            and peers.higher_fit(now) is None and self._peer_hears_master()
        )
        if not alone:
            self._hears_master_since = None
            self._hears_master_alarmed = False
            return
        if self._hears_master_since is None:
            self._hears_master_since = now
        if self._hears_master_alarmed or now < self._hears_master_since + self._fail_after:
            return
        peer = self._master_evidence_from
        assert peer is not None
        self._hears_master_alarmed = True
        never = self._master_counted_at == float("-inf")
        since = "none counted since our start" if never else f"none counted for {now - self._master_counted_at:.1f} s"
        self._emit_alarm(
            "critical", f"peer backup {peer.priority} at {peer.source} hears {self.peer}; its heartbeats do not "
            f"reach this backup (deferring on it for {now - self._hears_master_since:.1f} s; {since}): not taking over "
            f"{names(self.addresses)} while it does (a one-way loss, a firewall, a wrong target of heartbeatd?)",
            mail=True)

    def _farewell_to_peers(self) -> None:
        """At the stop, once nothing is held: ``leaving``, so the peers need not wait a failure timeout for us."""
        peers = self._peers
        if peers is None or self.held:
            return
        for address in peers.addresses:
            self._seal_peer(self._now, address, peers.newest_from(address), leaving=True)

    def _reject(self, reason: str) -> None:
        self.counters.reject(reason)
        self.last_verdict = reason

    @_then_tell_peers
    def handle_timer(self, now: float) -> list[Action]:
        """The caller's clock reached :meth:`next_deadline` (or later)."""
        out = self._begin(now)
        self._settle()
        if self._stop_requested:
            return out  # a stopped backup has no timers (next_deadline is None)
        if self.state == "failed_over" and self._garp_due is not None and now >= self._garp_due:
            # Not a state change: the periodic gratuitous ARP of what we hold.
            self._schedule_refresh(now)
            if self.held:
                self._out.append(Announce(self.held))
        if self._witness is not None:
            self._witness.timers(now, asking=self._wants_reach(), holding=self.state == "failed_over", held=self.held)
        self._check_paths(now)
        return out

    @_then_tell_peers
    def action_done(self, now: float, result: Result) -> list[Action]:
        """An action emitted earlier finished with ``result``."""
        out = self._begin(now)
        if isinstance(result, ProbeDone):
            self._probe_result = frozenset(result.answered) & self.addresses
            self._fire("probed")
        elif isinstance(result, AcquireDone):
            self.held = (self.held | frozenset(result.acquired)) & self.addresses
            self._failed = frozenset(result.failed) & self.addresses
            if result.failed:
                self._emit_alarm("error", f"could not acquire {names(result.failed)}", mail=True)
            if result.refused:
                self._emit_alarm("warning", f"Test hook refused to acquire {names(result.refused)}: notification only")
            self._fire("acquired")
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
                self._witness.reach_done(result)  # bookkeeping only: what our next status says
        elif isinstance(result, ReleaseDone):
            self.held = self.held - frozenset(result.released)
            if result.failed:
                self._emit_alarm("error", f"could not release {names(result.failed)}", mail=True)
            if result.refused:
                # Notification-only mode: the administrator's Test hook keeps
                # the address; we stop tracking it so the master can proceed.
                self._emit_alarm("warning", f"Test hook refused to release {names(result.refused)}")
                self.held = self.held - frozenset(result.refused)
            self._fire("released")
        else:
            raise TypeError(f"unknown result {result!r}")
        self._settle()
        return out

    @_then_tell_peers
    def conflict_seen(self, now: float, addresses: Iterable[Triplet]) -> list[Action]:
        """Another host's ARP claims ``addresses`` (the shell watches while we hold any)."""
        out = self._begin(now)
        contested = frozenset(addresses) & self.addresses
        if contested:
            self._conflicting = contested
            self._fire("conflict")
        self._settle()
        return out

    @_then_tell_peers
    def shutdown(self, now: float, *, release: bool = True) -> list[Action]:
        """Stop (SIGTERM), once the address change in progress has finished.

        What we hold is released (``release``; False: kept, for
        ``--keep-addresses-on-exit``); :class:`~failoverd.core.actions.Stopped`
        follows when that is done, or at once when there is nothing to do.
        From then on time moves nothing (:meth:`next_deadline` is None) and a
        late probe answer is dropped.
        """
        out = self._begin(now)
        self._stop_releases = release
        self._fire("stop")
        self._settle()
        return out

    @_then_tell_peers
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
        if self.links_down:
            # A down link already makes this backup unfit: the one verdict stays so.
            then = "pass again" if healthy else f"fail too ({reason})"
            self._emit_alarm("info" if healthy else "warning", f"health checks {then}; {self._links_reason()}: "
                             f"this backup will not take over if {self.peer} fails until it is up again")
            return out
        if healthy:
            then = f": taking over from {self.peer} after a fresh ARP probe" if self.state == "unfit" else ""
            self._emit_alarm("info", f"health checks pass again{then}", mail=True)
            # Back in suspect past the failure deadline, the settle below
            # decides at once (or the probe it starts does).
            self._fire("checks_pass")
        elif self.state in {"acquiring", "failed_over"}:
            self._emit_alarm(
                "critical",
                f"health check fails ({reason}) while we hold {names(self.addresses)} for {self.peer}: "
                "keeping them (the master is not there to take them; releasing would leave nobody holding them)",
                mail=True,
            )
        else:
            self._emit_alarm(
                "warning",
                f"health check fails ({reason}): this backup will not take over if {self.peer} fails "
                "until its checks pass again",
                mail=True,
            )
        self._settle()
        return out

    @_then_tell_peers
    def link_changed(self, now: float, interface: str, up: bool) -> list[Action]:
        """The link of ``interface`` went down (not admin-up, or no carrier) or came up again.

        Only the interfaces of our addresses count; a repeat changes nothing.
        Down: what we hold is released at once, and we do not take over until
        it is up again; up, with every link up and the checks passing, the
        master's silence counts afresh from now (see the module).
        """
        out = self._begin(now)
        if interface not in self.link_interfaces or (interface in self.links_down) == (not up):
            return out
        was_fit = self._healthy()
        self.links_down = self.links_down - {interface} if up else self.links_down | {interface}
        if up and self._healthy():
            self._emit_alarm("info", f"link {interface} up again: listening for {self.peer} afresh "
                             "(a takeover needs a full failure timeout of silence from now)", mail=True)
            # What we did not hear while the link was down says nothing about the
            # master: its silence (and a `leaving` heard before) counts from now.
            self.last_heard = max(self.last_heard, now)
            self._leaving_at = None
            self._fire("link_up")
        elif not up and self.holds_any and not self._stop_requested:
            pass  # the link_lost row (or, mid-acquire, the one after it) releases and says so
        elif not up and was_fit:
            self._emit_alarm("warning", f"link {interface} down: this backup will not take over if {self.peer} "
                             "fails until it is up again", mail=True)
        else:
            self._emit_alarm("info", f"link {interface} {'up again' if up else 'down'}; "
                             f"{self._unfit_besides(interface)}: this backup will not take over yet")
        self._settle()
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called next (``None``: only on input)."""
        if self._stop_requested:
            return None
        if (
            self.state == "monitoring"
            and self._leaving_at is None
            and self._retry_at is None
            and len(self.paths) < 2
            and self._peers is None
            and self._confirmer is None
        ):
            return self.last_heard + self._suspect_after  # the common case, asked after every heartbeat
        candidates: list[float] = []
        if self.state == "monitoring":
            if self._leaving_at is not None:
                candidates.append(self._leaving_at)
            candidates.append(self.last_heard + self._suspect_after)
        elif self.state == "suspect":
            if self._probe_scheduled:
                candidates.append(self._probe_due())
            if not self._deadline_passed():
                candidates.append(self._fail_deadline())
        elif self.state == "deferring" and self._peers is not None:
            # The deferral lapses when the peer we wait for falls silent: a holder after a
            # failure timeout, a higher peer after fail_after + rank × step (Peers.higher_wait).
            expiry = self._peers.next_expiry(self._now)
            if expiry is not None:
                candidates.append(expiry)
        elif self.state == "announcing":
            # An awaited peer that stays silent a failure timeout leaves W then; one
            # that keeps talking without answering is given up on at the limit.
            candidates += [silent for _, silent in self._still_awaited()]
            candidates.append(self._announced_at + self._announcement_limit())
        if self._peers is not None:
            candidates.append(self._peer_due)
            heard_ends = self._master_counted_at + self._master_heard_window
            if heard_ends > self._now:
                candidates.append(heard_ends)  # our "master heard" clears then: told at once (_tell_peers)
            if self._hears_master_since is not None and not self._hears_master_alarmed:
                candidates.append(self._hears_master_since + self._fail_after)  # _watch_hearing_peer's alarm
            if self._master_evidence_at is not None and self._master_evidence_at + self._evidence_hold > self._now:
                candidates.append(self._master_evidence_at + self._evidence_hold)  # the hold ends: undeferred
        if self._retry_at is not None and not self._retry_awaits_proof():
            candidates.append(self._retry_at)
        if self.state == "failed_over" and self._garp_due is not None:
            candidates.append(self._garp_due)
        if self._witness is not None:
            witness_due = self._witness.next_deadline(
                self._now, granted=self.state == "granted", holding=self.state == "failed_over",
                asking=self._wants_reach())
            if witness_due is not None:
                candidates.append(witness_due)
        if len(self.paths) > 1:
            for p in self.paths.values():
                # A path whose deadline has passed but was not marked quiet
                # (every path went silent together) is re-checked when another
                # path delivers (see _heard); waking for it again would spin.
                if not p.quiet and p.last_heard + self._fail_after > self._now:
                    candidates.append(p.last_heard + self._fail_after)
        return min(candidates) if candidates else None

    # --- status --------------------------------------------------------------

    @property
    def holds_any(self) -> bool:
        return self.state in HOLDING_STATES or bool(self.held)

    @property
    def master_epoch(self) -> int:
        """The newest master epoch recorded (0: none yet)."""
        return self._guard.epoch

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "role": "backup",
            "state": self.state,
            "since": round(now - self.state_since, 3),
            "master": self.peer,
            "mode": "authenticated" if self._key is not None else "legacy",
            "last_heard_age": round(now - self.last_heard, 3),
            "master_holds": self.master_holds,
            "paths": [
                {"name": p.name, "source": p.source, "last_heard_age": round(now - p.last_heard, 3), "healthy": not p.quiet}
                for p in sorted(self.paths.values(), key=lambda p: p.name)
            ],
            "held": sorted(str(t) for t in self.held),
            "addresses": sorted(str(t) for t in self.addresses),
            "counters": self.counters.as_status(),
            "timing": {
                "interval": self.timing.interval,
                "suspect_after": self._suspect_after,
                "fail_after": self._fail_after,
            },
            "healthy": self.healthy,
            "health_reason": self.health_reason,
            "links_down": sorted(self.links_down),
            "witness": None if self._witness is None else self._witness.snapshot(now),
            "backups": self._backups_snapshot(now),
        }

    def _backups_snapshot(self, now: float) -> dict[str, Any] | None:
        """Several backups: our priority and what each peer said; None in a pair."""
        if self._peers is None:
            return None
        return {
            "priority": self._peers.priority,
            "preempt": self._preempt,
            "rank": self._peers.rank(),
            "rank_delay": round(self._rank_delay(), 3),
            "peers": self._peers.snapshot(now),
            "master_heard": self._master_heard(now),
            "master_unheard": self._master_unheard_snapshot(now),
            "awaiting": None if self.state != "announcing" else [
                {"priority": entry.priority, "address": entry.address, "silent_in": round(max(0.0, silent - now), 3)}
                for entry, silent in self._still_awaited()
            ],
        }

    def _master_unheard_snapshot(self, now: float) -> dict[str, Any] | None:
        """A peer's "master heard" keeps us from taking over (_peer_hears_master): which peer, how long ago
        its last such frame counted, and at most how much longer the hold lasts; None when nothing does."""
        at, peer = self._master_evidence_at, self._master_evidence_from
        if at is None or peer is None or not self._kept_back_by_peer(now):
            return None
        return {"priority": peer.priority, "address": peer.source, "heard_age": round(now - at, 3),
                "hold_left": round(max(0.0, at + self._evidence_hold - now), 3)}

    def rekey(self, key: bytes) -> None:
        super().rekey(key)
        if self._peers is not None and self._sealer is not None:
            self._peers.restarted(self._sealer)

    # --- internals -----------------------------------------------------------

    def _links_reason(self) -> str:
        return links_reason(self.links_down)

    def _unfit_besides(self, interface: str) -> str:
        return unfit_besides(self.healthy, self.health_reason, self.links_down, interface)

    def _begin(self, now: float) -> list[Action]:
        self._now = now
        self._out = []
        return self._out

    def _heard(self, now: float, source: str, path: str, *, leaving: bool) -> None:
        """A counted master frame: the heartbeat's row, and the settle after it."""
        self.counters.accepted += 1
        self._path_heard(now, source, path)
        if leaving:
            # The master says it is going away: the failure deadline is now
            # (the settle fails over, still after the ARP probe).
            if self._leaving_at is None:
                self._leaving_at = now
                self._settle()
            return
        self.last_heard = now
        self._master_counted_at = now
        self._master_evidence_at = None  # we hear it ourselves: no peer's word is needed
        self._leaving_at = None
        if self.state == "monitoring":
            # The common case, a heartbeat while all is well: its row changes
            # nothing, and no state-driven row can hold right after it (the
            # silence just ended), so neither the row nor the settle is run.
            return
        self._fire("heartbeat")
        self._settle()

    def _path_heard(self, now: float, source: str, path: str) -> None:
        health = self.paths.get(path)
        if health is None:
            self.paths[path] = PathHealth(path, source, now, received=1)
        else:
            health.received += 1
            health.last_heard = now
            health.source = source
            if health.quiet:
                health.quiet = False
                self._emit_alarm("info", f"heartbeat path {path} delivers again", path=path)
        self._check_paths(now)

    def _status(self, now: float, also: str | None = None) -> None:
        """Seal and send our status to the master on every path we know it by (and to ``also``)."""
        assert self._sealer is not None
        holds = self.holds_any
        self._status_due = now + self.timing.interval / 2
        self._status_holds = holds
        self._status_epoch = self._guard.epoch
        # Sealed once per target: a frame is valid once, on one path (see
        # wire.REPLAY_WINDOW), so a copy replayed on another path is refused.
        # ``also``: the source of a frame that does not count yet (the
        # handshake after a restart), whose path we do not know as working.
        epoch, seq = self._guard.newest
        confirms = self._confirms(now)
        targets = {p.source for p in self.paths.values()}
        if also is not None:
            targets.add(also)
        for target in sorted(targets):
            if self._peers is None:
                frame = self._sealer.seal(  # a pair: as ever
                    now, holds=holds, ack_epoch=epoch, ack_seq=seq, witness_unreachable=confirms)
            else:  # several backups: the priority fields, and the confirmation as in a pair
                # Never "master heard": only peers read it, and a master of the version before it
                # would refuse the whole status (unknown flag), so the master may be upgraded apart.
                frame = self._sealer.seal(
                    now, holds=holds, ack_epoch=epoch, ack_seq=seq,
                    unfit=not self._healthy(), preempt=self._preempt, priority=self._wire_priority,
                    witness_unreachable=confirms,
                )
            self._out.append(Transmit(frame, (target,)))

    def _check_paths(self, now: float) -> None:
        if len(self.paths) < 2:
            return
        for p in self.paths.values():
            if p.quiet or now < p.last_heard + self._fail_after:
                continue
            others = [q.name for q in self.paths.values() if q is not p and now < q.last_heard + self._fail_after]
            if others:
                p.quiet = True
                self._emit_alarm(
                    "warning",
                    f"heartbeat path {p.name} quiet for {now - p.last_heard:.1f} s while {', '.join(sorted(others))} "
                    "still delivers: one more failure and the backup cannot tell a dead master from a cut link",
                    mail=True,
                    path=p.name,
                )

    def _fail_deadline(self) -> float:
        deadline = self.last_heard + self._fail_after
        if self._leaving_at is not None:
            deadline = min(deadline, self._leaving_at)
        return deadline + self._rank_delay()

    def _rank_delay(self) -> float:
        """Several backups: later by our rank, so a lower backup probes after a higher one acquired and announced.

        ``rank × (fail_after + probe duration + 2 × interval)`` (spec/backups.md,
        "The rank delay"; :func:`rank_step`): with the link between the backups
        cut, the two backups' last counted heartbeats may be up to
        ``fail_after + d`` apart, and the lower one's probe must still end after
        the higher one's address is up. The rank is static (configured
        priorities higher than ours), so the deadline never depends on whom we heard.
        """
        if self._peers is None:
            return 0.0
        return self._peers.rank_delay()

    def _still_awaited(self) -> list[tuple[PeerEntry, float]]:
        """The peers of W not yet answered and not yet silent a failure timeout, each with when it would be."""
        peers = self._peers
        if peers is None:
            return []
        out = []
        for priority, awaited in self._awaited.items():
            entry = peers.entries[priority]
            silent = peers.silent_at(entry, awaited)
            if self._now < silent:
                out.append((entry, silent))
        return out

    def _sealer_epoch(self) -> int:
        assert self._sealer is not None
        return self._sealer.epoch

    def _emit_alarm(self, level: AlarmLevel, message: str, mail: bool = False, *, path: str | None = None) -> None:
        self._out.append(Alarm(level, message, mail, path=path))

    # conditions (time guards compare exactly as next_deadline() computes
    # the deadlines: a float difference may round below the bound and leave
    # a timer that fires forever without effect)

    def _silence_long(self) -> bool:
        return self._leaving_at is not None or self._now >= self.last_heard + self._suspect_after

    def _probe_time(self) -> bool:
        return self._probe_scheduled and self._now >= self._probe_due()

    def _deadline_passed(self) -> bool:
        return self._now >= self._fail_deadline()

    def _retry_due(self) -> bool:
        return self._retry_at is not None and self._now >= self._retry_at

    def _retry_awaits_proof(self) -> bool:
        """Held on a confirmation alone (--etcd-unreachable keep), a retry to add what is missing
        waits for a valid proof, which only an input brings (a renewal's answer): offered as a
        deadline meanwhile it would be past at once, and the timer would wake for nothing, forever."""
        return self.state == "failed_over" and not self._proof_valid()

    def _probe_pending(self) -> bool:
        return self._probe_in_flight

    def _probe_finished(self) -> bool:
        return not self._probe_in_flight and not self._probe_scheduled

    def _probe_answered(self) -> bool:
        """The last probe's answer (committed): somebody answered for one of the addresses."""
        return bool(self._answered)

    def _result_answered(self) -> bool:
        """The probe answer being handled: somebody answered for one of the addresses."""
        return bool(self._probe_result)

    def _master_back(self) -> bool:
        return self._master_returned

    def _some_missing(self) -> bool:
        return bool(self._failed)

    def _some_held(self) -> bool:
        return bool(self.held)

    def _healthy(self) -> bool:
        """The one verdict: the checks pass and every link of our addresses is up."""
        return self.healthy and not self.links_down

    def _link_down(self) -> bool:
        return bool(self.links_down)

    def _stopping(self) -> bool:
        return self._stop_requested

    def _release_at_stop(self) -> bool:
        return bool(self.held) and self._stop_releases

    def _witnessed(self) -> bool:
        return self._proofs is not None

    def _deferred(self) -> bool:
        """Several backups: an alive peer says it holds, or a present fit peer outranks us (it takes first).

        Present: counted within ``fail_after + rank × step``, not just the
        failure timeout (:meth:`Peers.higher_fit`, spec/backups.md fix 2).
        With a witness only an alive holder (or claimant) is deferred to: the claim keeps two
        backups from both holding, the rank delay alone lets the higher claim first, and
        deferring to a higher peer that cannot reach etcd would leave the addresses to nobody
        (spec/witness.md, "With several backups").
        """
        peers = self._peers
        if peers is None:
            return False
        if peers.holder(self._now) is not None:
            return True
        return self._proofs is None and (peers.higher_fit(self._now) is not None or self._peer_hears_master())

    def _peer_hears_master(self) -> bool:
        """Several backups, no witness: an alive peer's last counted frame says it hears the master, and
        counted more than ``W + M`` after our own last counted heartbeat (:meth:`Peers.hearing_master`):
        the master is alive and its heartbeats do not reach us; or that was so less than
        ``Timing.master_evidence_hold`` ago (and we have counted no heartbeat since). We do not take
        over meanwhile (spec/backups.md, "What the review found", 1): the master's failback presumes
        us, and our own probe, when the hold ends, comes after its add, never beside its probe."""
        return self._kept_back_by_peer(self._now)

    def _kept_back_by_peer(self, now: float) -> bool:
        """:meth:`_peer_hears_master` at ``now`` (the status asks it at its own time)."""
        peers = self._peers
        if peers is None or self._proofs is not None:
            return False
        if peers.hearing_master(now, self._master_counted_at) is not None:
            return True
        return self._master_evidence_at is not None and now < self._master_evidence_at + self._evidence_hold

    def _must_announce(self) -> bool:
        """Several backups, where we would acquire: some peer is alive or in its handshake (W is not empty)."""
        return self._peers is not None and bool(self._peers.wait_set(self._now))

    def _announcement_overdue(self) -> bool:
        return self._now >= self._announced_at + self._announcement_limit()

    def _announcement_limit(self) -> float:
        """How long an announcement may wait: ``fail_after + 2 × interval`` from its start.

        A peer of W leaves it by silence at most a failure timeout after the
        start (its silence counts from before it); one whose frames keep
        counting has, with our frames reaching it, counted one of our
        announcing frames within a failure timeout and answered at once, or
        yielded first (its delete, A) and then answered: ``d + A ≤ 2 ×
        interval`` (the stated assumption) after that. No answer by then: our
        frames do not reach it.
        """
        return self._fail_after + 2 * self.timing.interval

    def _awaiting_peers(self) -> bool:
        """Announcing: a peer of W has neither answered that it holds nothing nor been silent a failure timeout."""
        return bool(self._still_awaited())

    def _higher_holds(self) -> bool:
        """An alive peer of a higher priority says it holds (or announces): we withdraw, it takes first."""
        return self._peers is not None and self._peers.higher_holder(self._now) is not None

    def _must_yield(self) -> bool:
        """Holding: an alive higher peer holds too, or an alive fit higher one says preempt (the lower yields).

        With a witness only ``--preempt`` moves us: a higher peer saying it holds while our proofs
        run can only be claiming, and its claim is refused while we renew; yielding to it would
        hand the addresses to a claim that may never be granted (spec/witness.md, "With several
        backups")."""
        peers = self._peers
        if peers is None:
            return False
        if peers.preempting(self._now) is not None:
            return True
        return self._proofs is None and peers.higher_holder(self._now) is not None

    def _proof_valid(self) -> bool:
        """No witness, or the newest proof lets us hold the address now (spec/witness.md, "The rule")."""
        return self._proofs is None or self._proofs.may_hold(self._now)

    def _outage_kept(self) -> bool:
        """Held past our proof on confirmations (keep-and-refuse-new): etcd answers neither us nor them."""
        return self._keep_on_outage and not self._proof_valid() and self._kept()

    def _kept(self) -> bool:
        """No witness, or a proof or (keep-and-refuse-new) the confirmations of the master and of
        every peer backup keep what we hold."""
        return self._proofs is None or self._proofs.may_keep(self._now)

    def _claim_granted(self) -> bool:
        return self._witness is not None and self._witness.claim_result.outcome == "granted"

    def _wait_passed(self) -> bool:
        return self._witness is not None and self._now >= self._witness.wait_until

    # actions

    def _probe_due(self) -> float:
        """The suspect-time probe ends exactly at the failure deadline.

        A probe only sees an address that is already configured. Probing as
        late as possible leaves the peer the longest time to finish an
        acquire it had started (the managed-failback handshake) before we
        look, so a stale "silent" answer cannot outlive the deadline.
        """
        return max(self._fail_deadline() - self.timing.probe_duration, self.last_heard)

    def _schedule_probe(self) -> None:
        # Every way into `suspect` comes here: a new suspicion, so a contest that follows
        # starts its claim retries from the retry interval again.
        self._claim_retry_after = self.timing.effective_retry_interval
        # The probe_due row starts it when it is due (at once, if it already is).
        if self.arp_probe:
            self._probe_scheduled = True
        else:
            self._answered = frozenset()

    def _start_probe(self) -> None:
        self._probe_scheduled = False
        self._answered = frozenset()
        self._probe_in_flight = True
        self._out.append(Probe(self.addresses))

    def _take_probe(self) -> None:
        self._probe_in_flight = False
        self._answered = self._probe_result

    def _retry_taken(self) -> None:
        self._retry_at = None

    def _false_suspicion(self) -> None:
        self.counters.false_suspicions += 1
        self._probe_in_flight = False
        self._probe_scheduled = False

    def _contest(self) -> None:
        self.counters.contested += 1
        self._retry_at = self._now + self.timing.effective_retry_interval
        self._out.append(
            Alarm(
                "critical",
                f"{self.peer} silent for {self._now - self.last_heard:.1f} s but "
                f"{names(self._answered)} still answer(s) on the wire: not taking over "
                "(is only the heartbeat path down?)",
                True,
                addresses=self._answered,
            )
        )

    def _decline(self) -> None:
        self._retry_at = None
        self._probe_in_flight = False
        why = "says it is leaving" if self._leaving_at is not None else f"silent for {self._now - self.last_heard:.1f} s"
        unfit = []
        if not self.healthy:
            unfit.append(f"our own health check fails ({self.health_reason})")
        if self.links_down:
            unfit.append(f"our {self._links_reason()}")
        until = "it passes again" if not self.links_down else "it is up again" if self.healthy else "both are well again"
        self._out.append(
            Alarm(
                "critical",
                f"{self.peer} {why} but {' and '.join(unfit)}: not taking over {names(self.addresses)} until {until}",
                True,
            )
        )

    def _listen_afresh(self) -> None:
        # A suspicion (or a decline) that began while our link was down ends:
        # a probe scheduled or in flight and a contested retry are dropped.
        self._probe_in_flight = False
        self._probe_scheduled = False
        self._retry_at = None

    def _link_lost_alarm(self) -> None:
        self._out.append(
            Alarm(
                "critical",
                f"{self._links_reason()} while we hold {names(self.held)} for {self.peer}: releasing them "
                "(an address on a down link serves nobody, and would answer beside the master's when the link returns)",
                True,
            )
        )

    def _defer(self) -> None:
        assert self._peers is not None
        self._retry_at = None
        self._probe_in_flight = False
        self.counters.deferrals += 1
        holder = self._peers.holder(self._now)
        higher = None if holder is not None else self._peers.higher_fit(self._now)
        hearing = self._peers.hearing_master(self._now, self._master_counted_at)
        if holder is not None:
            why = f"peer backup {holder.priority} ({holder.source}) holds them"
        elif higher is None and hearing is not None:
            why = (f"peer backup {hearing.priority} ({hearing.source}) hears it (its heartbeats do not reach us): "
                   "waiting until it does not")
        elif higher is None:
            shown = self._master_evidence_from
            assert shown is not None and self._master_evidence_at is not None
            why = (f"peer backup {shown.priority} ({shown.source}) heard it {self._now - self._master_evidence_at:.1f} s "
                   f"ago (its heartbeats do not reach us): waiting {self._evidence_hold:.1f} s from then, as long as "
                   "the master may still be taking back its addresses")
        else:
            why = f"peer backup {higher.priority} ({higher.source}) outranks us (priority {self._peers.priority})"
            if not higher.alive(self._now, self._peers.fail_after) and higher.last_counted is not None:
                # Silent, but it may be acquiring on a probe made before we fell silent to it.
                until = higher.last_counted + self._peers.higher_wait
                why += (f", silent {self._now - higher.last_counted:.1f} s but possibly taking over: waiting "
                        f"until it has been silent {self._peers.higher_wait:.1f} s (in {until - self._now:.1f} s)")
        self._out.append(Alarm("warning", f"{self.peer} silent but {why}: not taking over {names(self.addresses)}"))

    def _announce(self) -> None:
        """Say holds to every peer at once, and wait for an answer of each one of W (spec/backups.md)."""
        peers = self._peers
        assert peers is not None and self._sealer is not None
        now = self._now
        self._retry_at = None
        self.counters.announcements += 1
        self._announced_at = now
        wait = {e.priority for e in peers.wait_set(now)}
        self._awaited = {}
        # Our frames say holds from now on (announcing is a holding state): sent here, not by
        # _tell_peers, so that we know which frame each awaited peer must acknowledge.
        self._peer_said = self._peer_says(now)
        self._peer_due = now + self.timing.interval
        for address in peers.addresses:
            self._seal_peer(now, address, peers.newest_from(address))
            entry = peers.at(address)
            if entry.priority in wait:
                self._awaited[entry.priority] = peers.awaited(entry, self._sealer.seq, now)
        waiting = ", ".join(f"{e.priority} ({e.address})" for e, _ in self._still_awaited())
        self._out.append(Alarm("info", f"{self.peer} silent; announcing to peer backup(s) {waiting}: taking over "
                               f"{names(self.addresses)} once each answers that it holds nothing"))

    def _unanswered_alarm(self) -> None:
        # Stable words (no seconds that change): it repeats each time the fresh probe finds nothing
        # and we announce again, and the executor mails one text once per MAIL_REPEAT.
        silent = ", ".join(f"{e.priority} ({e.address})" for e, _ in self._still_awaited())
        self._out.append(Alarm(
            "critical",
            f"peer backup(s) {silent} did not answer our announcement within {self._announcement_limit():.1f} s "
            "though their frames count here: ours do not reach them (a one-way loss, a firewall, a wrong --peer "
            f"address?); withdrawing, and probing {names(self.addresses)} afresh before taking over", True))

    def _withdraw(self) -> None:
        """Leave announcing without acquiring: our frames say holds nothing again (_tell_peers sends them at once)."""
        self._awaited = {}
        self.counters.withdrawals += 1

    def _announcement_answered(self) -> None:
        self._awaited = {}

    def _deferral_over(self) -> None:
        self._out.append(Alarm("info", f"{self.peer} heard again; no takeover was needed"))

    def _suspect_afresh(self) -> None:
        # The probe_due row starts the new probe at once: the deadline has passed.
        self._out.append(Alarm("info", f"{self.peer} still silent and no peer backup holds or outranks us: "
                               "probing afresh before taking over"))

    def _yield_to_peer(self) -> None:
        assert self._peers is not None
        now = self._now
        holder = self._peers.higher_holder(now) if self._proofs is None else None
        peer = holder or self._peers.preempting(now)
        assert peer is not None
        why = "holds them too" if peer is holder else "takes them over (--preempt)"
        self._out.append(
            Alarm(
                "critical" if peer is holder else "warning",
                f"peer backup {peer.priority} ({peer.source}), of a higher priority, {why}: releasing "
                f"{names(self.held)}",
                peer is holder,
            )
        )

    def _unfit_over(self) -> None:
        self._out.append(Alarm("info", f"{self.peer} heard again; no takeover was needed"))

    def _still_contested(self) -> None:
        self._retry_at = self._now + self.timing.effective_retry_interval

    def _contest_over(self) -> None:
        self._retry_at = None
        self._probe_in_flight = False
        self._out.append(Alarm("info", f"{self.peer} heard again; no longer contested"))

    def _note_master_back(self) -> None:
        self._master_returned = True

    def _acquire_all(self) -> None:
        self._master_returned = False
        self.counters.failovers += 1
        wanted = self.addresses - self.held
        self._out.append(Notify("down", self.peer, self.addresses))
        self._out.append(Acquire(wanted))

    def _acquire_missing(self) -> None:
        self._master_returned = False
        missing = self._failed
        self._failed = frozenset()
        self._out.append(Acquire(missing))

    def _schedule_refresh(self, now: float) -> None:
        self._garp_due = None if self._garp_refresh is None else now + self._garp_refresh

    def _took_over(self) -> None:
        self._schedule_refresh(self._now)
        if self._failed:
            self._retry_at = self._now + self.timing.effective_retry_interval

    def _failback_put_off(self) -> None:
        if not self._failback_put_off_reported:
            self._failback_put_off_reported = True
            self._emit_alarm("warning", f"{self.peer} is back, but etcd answers neither of us: keeping "
                             f"{_listed(self.held)} until our claim is proved again (the master could not claim it)")

    def _fail_back(self) -> None:
        """The master is back: a failback (its rows release what we hold next)."""
        self.counters.failbacks += 1
        self._out.append(Notify("up", self.peer, self.addresses))

    def _release_held(self) -> None:
        self._master_returned = False
        self._retry_at = None
        self._failed = frozenset()
        self._out.append(Release(self.held))

    def _yield_alarm(self) -> None:
        self._out.append(
            Alarm(
                "critical",
                f"another host answers for {names(self._conflicting)} on the wire: releasing "
                f"{names(self.held)} (the master must be alive; only the heartbeat path is down?)",
                True,
            )
        )

    def _release_incomplete(self) -> None:
        self._retry_at = self._now + self.timing.effective_retry_interval

    def _recovered(self) -> None:
        self._retry_at = None
        self._give_claim_back()
        if self._sealer is not None and self.paths:
            # Tell the master at once that we hold nothing, so its managed
            # failback does not wait for its next heartbeat.
            self._status(self._now)

    def _mark_stopping(self) -> None:
        # No timer from here on: a probe in flight is from before the stop
        # (its answer is dropped), and nothing is retried.
        self._stop_requested = True
        self._probe_in_flight = False
        self._probe_scheduled = False
        self._retry_at = None

    def _release_to_stop(self) -> None:
        self._out.append(Alarm("info", f"stopping; releasing {_listed(self.held)} first"))
        self._out.append(Release(self.held))

    def _stop_now(self) -> None:
        self._give_claim_back()
        if self.held:
            self._out.append(Alarm("warning", f"stopping; keeping {_listed(self.held)} as configured"))
        else:
            self._out.append(Alarm("info", "stopping; holding nothing"))
        self._farewell_to_peers()
        self._out.append(Stopped())

    def _stop_released(self) -> None:
        self._give_claim_back()
        if self.held:
            self._out.append(Alarm("error", f"stopped still holding {_listed(self.held)}"))
        self._farewell_to_peers()
        self._out.append(Stopped())

    # the witness (spec/witness.md)

    def _claim(self) -> None:
        self._master_returned = False
        self._retry_at = None
        self._out.append(Claim())

    def _granted(self) -> None:
        assert self._witness is not None
        self._claim_retry_after = self.timing.effective_retry_interval  # the contest, if any, is over
        self._witness.granted()

    def _grant_unneeded(self) -> None:
        """The master was heard while we claimed or waited: give the claim back."""
        assert self._witness is not None
        self._witness.take_grant()  # granted: by the claimed row just now, or waiting since
        self._give_claim_back()
        self._out.append(Alarm("info", f"{self.peer} heard again; the witness's claim is given back"))

    def _late_claim(self) -> None:
        if self._witness is not None and self._claim_granted():
            self._witness.take_grant()
            self._give_claim_back()

    def _claim_failed(self) -> None:
        assert self._witness is not None
        result = self._witness.claim_result
        # A bounded backoff: a holder we cannot hear (the backups cut from each other) renews, so
        # every claim is refused until it dies; retrying each interval only loads etcd. The cap,
        # the failure timeout, is what a backup that hears the holder waits to notice its death.
        self._retry_at = self._now + self._claim_retry_after
        self._claim_retry_after = min(2 * self._claim_retry_after,
                                      max(self.timing.effective_retry_interval, self._fail_after))
        # Stable words (no silence in seconds): the executor mails one text once per
        # MAIL_REPEAT, and a refused claim is tried again and again.
        if result.outcome == "refused":
            self._witness.note_reachable(True)
            self._out.append(Alarm(
                "critical", f"{self.peer} is silent but the etcd witness refused our claim ({result.detail}): "
                f"not taking over {names(self.addresses)}", True))
        else:
            self._witness.note_reachable(False, result.detail)
            self._out.append(Alarm(
                "critical", f"{self.peer} is silent but the etcd witness is unreachable: cannot take over "
                f"{names(self.addresses)}", True))

    def _take_renewal(self) -> None:
        """A renewal's answer: a newer proof, the claim lost, or no answer (the proof runs on)."""
        assert self._witness is not None
        if self._witness.take_renewal(self._now, self.held):
            self._failback_put_off_reported = False  # this outage is over: the next one's is alarmed afresh

    def _proof_ran_out_waiting(self) -> None:
        self._give_claim_back()
        self._retry_at = self._now + self.timing.effective_retry_interval
        self._out.append(Alarm("critical", "the witness's claim could not be renewed during the wait after "
                               f"its grant: not taking over {names(self.addresses)}", True))

    def _proof_ran_out(self) -> None:
        assert self._witness is not None
        self._witness.proof_ran_out(self.held, give_claim_back=True)

    # --etcd-unreachable keep (spec/witness.md, "When etcd is unreachable from every host")

    def _take_confirmation(self, frame: wire.Heartbeat, host: object) -> None:
        """The master or a peer backup (``host``: "master" or its priority) says, in a counted
        frame, that it cannot reach etcd: a proof from the frame of ours it answers, against that
        host, for what we hold now (it never lets us configure an address; core/witness.py).
        Only all of them together keep an address (HolderProofs.confirmers)."""
        assert self._sealer is not None
        if self._witness is not None:
            self._witness.take_confirmation(self._sealer.acked_at(frame), host,
                                            holding=self.state == "failed_over", held=self.held)

    def _confirms(self, now: float) -> bool:
        """Do our frames say "witness unreachable"? Never once we read a grant of our claim, nor
        while we hold or may hold the addresses (core/witness.py)."""
        return self._witness is not None and self._witness.confirms(now, may_hold=self.holds_any)

    def _wants_reach(self) -> bool:
        """Ask etcd whether it answers us: only to know whether to confirm, while the master or
        an alive peer backup says it holds."""
        if (self._witness is None or self._confirmer is None or self._stop_requested or self._witness.claim_held
                or self.holds_any):
            return False
        return self.master_holds is True or (self._peers is not None and self._peers.holder(self._now) is not None)

    def _give_claim_back(self) -> None:
        if self._witness is not None:
            self._witness.give_claim_back()


def rank_step(timing: Timing) -> float:
    """How much later each higher configured peer makes a backup's failure deadline (spec/backups.md).

    ``fail_after + probe duration + 2 × interval`` (spec/backups.md, "What
    spin found", fix 1): with the link between the backups cut, the lower may
    have counted its last heartbeat almost a failure timeout before the
    master's last one, which the higher counts up to d later; the lower's
    probe must still look after the higher's address is up, which holds when
    ``d + A ≤ 2 × interval`` (A: an acquire).
    """
    return timing.fail_after + timing.probe_duration + 2 * timing.interval


def _listed(addresses: Addresses) -> str:
    """Triplets for the stop's log lines, as the command line spells them."""
    return ", ".join(sorted(str(t) for t in addresses))
