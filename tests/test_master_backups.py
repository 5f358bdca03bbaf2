"""heartbeatd's core with several backups (spec/backups.md, "Failback to the master").

Each backup is a real :class:`~failoverd.core.wire.Sealer` of its own (its
epoch, its priority in byte 7) that answers the heartbeats the master sent to
its address, as failoverd does: a status acknowledging the newest heartbeat
it recorded. No network, no clock: the master is fed the frames at chosen times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from _drive import KEY, VIPS

from failoverd.core import wire
from failoverd.core.actions import Acquire, AcquireDone, Action, Alarm, Probe, ProbeDone, ReleaseDone, Transmit
from failoverd.core.master import Master
from failoverd.core.settings import MasterSettings

A_ADDR, B_ADDR = "10.9.1.2", "10.9.1.3"
FAIL_AFTER = 3.0
RELEASE_SETTLE = FAIL_AFTER + 1.0 + 3 * 1.0  # fail_after + retry interval + 3 × interval
"""A silent backup is presumed no earlier than this after the latest release of another (spec/backups.md,
"What the review found", 1): one that deferred to the releaser may be taking over on that release."""


@dataclass
class Backup:
    """One backup's wire half: its sealer, and the newest heartbeat it recorded (what it acknowledges)."""

    priority: int
    address: str
    epoch: int
    sealer: wire.Sealer = field(init=False)
    heard: wire.Heartbeat | None = None

    def __post_init__(self) -> None:
        self.sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, self.epoch, 1.0, 0.0)

    def hear(self, actions: list[Action]) -> list[wire.Heartbeat]:
        """The heartbeats among ``actions`` sent to this backup's address (recorded: the newest is answered)."""
        mine = [wire.decode(a.payload, KEY) for a in actions if isinstance(a, Transmit) and a.targets == (self.address,)]
        if mine:
            self.heard = mine[-1]
        return mine

    def status(self, now: float, *, holds: bool) -> bytes:
        assert self.heard is not None
        return self.sealer.seal(now, holds=holds, ack_epoch=self.heard.epoch, ack_seq=self.heard.seq,
                                priority=self.priority)


def _master(*, backups: int = 2, held: frozenset = frozenset(), epoch: int = 9, now: float = 0.0) -> Master:
    settings = MasterSettings([A_ADDR, B_ADDR], 1.0, managed=VIPS, backup_fail_after=FAIL_AFTER, backups=backups)
    return Master(settings, now, key=KEY, epoch=epoch, held=held)


def _tell(m: Master, backup: Backup, now: float, *, holds: bool, source: str | None = None) -> list[Action]:
    """The backup answers the newest heartbeat it heard; everything the master sent back, heard by it."""
    out = m.receive_datagram(now, backup.status(now, holds=holds), source or backup.address, "priv0")
    backup.hear(out)
    return out


def _round(m: Master, now: float, *talking: tuple[Backup, bool]) -> list[Action]:
    """A heartbeat round at ``now``, then each talking backup's answer (holds or not) a little later."""
    out = m.handle_timer(now)
    for backup, _ in talking:
        backup.hear(out)
    for k, (backup, holds) in enumerate(talking, 1):
        out += _tell(m, backup, now + 0.01 * k, holds=holds)
    return out


def _alarms(actions: list[Action]) -> list[str]:
    return [a.message for a in actions if isinstance(a, Alarm)]


def test_the_failback_waits_for_every_backup_to_release() -> None:
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, True))  # the handshake: neither status answers a heartbeat it counted
    out = _round(m, 1.0, (a, False), (b, True))
    assert m.state == "waiting"
    assert any("still waiting for backup (priority 50), which holds the addresses" in s for s in _alarms(out))
    out = _round(m, 2.0, (a, False), (b, True))
    assert m.state == "waiting" and _alarms(out) == []  # said once per change, not every round
    out = _round(m, 2.5, (a, False), (b, False))
    assert m.state == "acquiring" and any(isinstance(x, Acquire) for x in out)
    snapshot = m.snapshot(2.6)
    assert [(v["priority"], v["alive"], v["holds"], v["released"]) for v in snapshot["backups"]] == [
        (100, True, False, True), (50, True, False, True)]
    assert snapshot["backups_expected"] == 2 and snapshot["backup_holds"] is False


def test_a_rekey_forgets_every_backup_recorded_under_the_old_key() -> None:
    """SIGHUP with a new key: each backup's replay guard starts afresh, and frames under the old key are refused."""
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, False))
    _round(m, 1.0, (a, False), (b, False))
    assert {v.guard.epoch for v in m.views.values()} == {3, 4}
    new_key = b"a brand new shared key, rotated!"
    m.rekey(new_key)
    assert all(v.guard.newest == (0, 0) for v in m.views.values())
    assert _tell(m, a, 1.5, holds=True) == [] and m.counters.rejected.get("mac") == 1
    (heartbeat,) = [x for x in m.handle_timer(2.0) if isinstance(x, Transmit) and x.targets == (A_ADDR,)]
    assert wire.decode(heartbeat.payload, new_key).epoch == 9  # our own numbering carries on


def test_a_backup_that_says_it_holds_again_undoes_its_release() -> None:
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, True))
    _round(m, 1.0, (a, False), (b, True))
    _round(m, 2.0, (a, True), (b, True))  # a took over meanwhile (it no longer heard us, say)
    _round(m, 2.5, (b, False))
    assert m.state == "waiting"
    _round(m, 2.8, (a, False))
    assert m.state == "acquiring"


def test_each_target_acknowledges_the_backup_heard_from_its_address() -> None:
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    first = m.handle_timer(0.0)
    # Nobody heard yet: the frames acknowledge nothing.
    assert [(f.ack_epoch, f.ack_seq) for x in (a, b) for f in x.hear(first)] == [(0, 0), (0, 0)]
    out = _tell(m, a, 0.01, holds=False)
    # The handshake's answer goes to a alone and acknowledges it ...
    assert [x.targets for x in out if isinstance(x, Transmit)] == [(A_ADDR,)]
    assert (a.heard.ack_epoch, a.heard.ack_seq) == (3, 1)
    out = m.handle_timer(1.0)
    a.hear(out)
    (to_b,) = b.hear(out)
    # ... and the next round acknowledges a at its address, still nothing at b's.
    assert (a.heard.ack_epoch, a.heard.ack_seq) == (3, 1) and (to_b.ack_epoch, to_b.ack_seq) == (0, 0)
    _tell(m, b, 1.01, holds=True)
    (to_b,) = b.hear(m.handle_timer(2.0))
    assert (to_b.ack_epoch, to_b.ack_seq) == (4, 1)


def test_a_status_from_an_address_that_is_no_target_is_alarmed_once() -> None:
    m = _master()
    a = Backup(100, A_ADDR, epoch=3)
    a.hear(m.handle_timer(0.0))
    out = _tell(m, a, 0.01, holds=False, source="10.9.1.77")
    assert any("come from 10.9.1.77, which is not a target" in s for s in _alarms(out))
    a.hear(m.handle_timer(1.0))
    assert not any("not a target" in s for s in _alarms(_tell(m, a, 1.01, holds=False, source="10.9.1.77")))


def test_a_silent_backup_is_presumed_gone_only_with_a_silent_probe() -> None:
    """b is never heard: a's release is not enough; after b's failure timeout
    (from the start), and the release settle after a's release, the master
    probes, and a probe somebody answers keeps it off."""
    m = _master()
    a = Backup(100, A_ADDR, epoch=3)
    t = 0.0
    _round(m, t, (a, False))  # the handshake
    while t < FAIL_AFTER + 1.0:
        t += 0.5
        _round(m, t, (a, False))
    released = m.views[100].released_at
    assert released is not None
    while t + 0.5 < released + RELEASE_SETTLE - 0.01:
        t += 0.5
        _round(m, t, (a, False))
    assert m.state == "waiting"  # b silent its failure timeout, but a released lately
    t = released + RELEASE_SETTLE
    probes = [x for x in m.handle_timer(t) if isinstance(x, Probe)]
    assert m.state == "probing" and probes and probes[0].addresses == VIPS
    m.action_done(t + 0.3, ProbeDone(answered=frozenset(VIPS)))
    assert m.state == "waiting"
    assert m.next_deadline() > t + 0.3  # the next probe a retry interval later, not at once


def test_a_backup_heard_then_silent_is_presumed_from_its_silence_while_the_other_talks() -> None:
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, True))
    _round(m, 1.0, (a, False), (b, True))  # b last heard at 1.02, saying it holds
    t = 1.5
    while m.state == "waiting" and t < 10.0:
        _round(m, t, (a, False))  # a keeps talking; its talk does not put off b's presumption
        t += 0.25
    assert m.state == "probing" and t - 0.25 >= 1.02 + FAIL_AFTER
    assert m.views[50].silent and not m.views[100].silent
    m.action_done(t, ProbeDone())
    assert m.state == "acquiring"


def test_a_release_goes_stale_when_its_backup_falls_silent() -> None:
    """a released at 1 s and fell silent; b's release at 5 s does not lean on a's old word."""
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, True))
    _round(m, 1.0, (a, False), (b, True))
    for t in (2.0, 3.0, 4.0):
        _round(m, t, (b, True))
    _round(m, 5.0, (b, False))
    assert m.state == "waiting"  # a is silent past its timeout, but b released just now (the release settle)
    m.handle_timer(5.01 + RELEASE_SETTLE - 0.01)
    assert m.state == "waiting"
    m.handle_timer(5.01 + RELEASE_SETTLE)
    assert m.state == "probing"  # a presumed, with the probe, not released


def test_a_frame_of_one_backup_sent_as_from_another_lands_in_its_own_view() -> None:
    """The priority is under the MAC: a's frame from b's address is a's (a replay there),
    and no byte of it can be changed to make it b's."""
    m = _master()
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, True))
    out = m.handle_timer(1.0)
    a.hear(out)
    b.hear(out)
    release = a.status(1.01, holds=False)
    m.receive_datagram(1.01, release, A_ADDR, "priv0")
    assert m.receive_datagram(1.02, release, B_ADDR, "priv0") == []
    assert m.counters.rejected == {"replay": 1} and m.views[50].holds is True
    relabelled = release[:7] + bytes([50]) + release[8:]
    assert m.receive_datagram(1.03, relabelled, B_ADDR, "priv0") == []
    assert m.counters.rejected == {"replay": 1, "mac": 1} and m.state == "waiting"


def test_a_release_recorded_under_an_earlier_master_epoch_does_not_count() -> None:
    previous = _master(epoch=8)
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(previous, 0.0, (a, False), (b, False))
    b.hear(previous.handle_timer(1.0))
    recorded = b.status(1.01, holds=False)  # b's genuine release, acknowledging epoch 8
    m = _master(epoch=9, now=10.0)  # the master restarted; b has died since (holding, perhaps)
    _round(m, 10.0, (a, False))
    _round(m, 11.0, (a, False))
    assert m.receive_datagram(11.5, recorded, B_ADDR, "priv0") == []
    assert m.state == "waiting" and m.counters.unacknowledged >= 1
    assert 50 not in m.views  # not news of a live b: it does not even take b's place


def test_after_a_step_down_only_releases_answering_the_rejoin_count() -> None:
    m = _master(held=VIPS)
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, False))
    _round(m, 1.0, (a, False), (b, False))
    m.health_changed(1.5, False, "check x")
    m.action_done(1.6, ReleaseDone(released=VIPS))
    assert m.state == "standing_down"
    _round(m, 2.0, (a, False), (b, False))
    # Releases said before the rejoin's heartbeat (still in flight then) do not count ...
    stale_a, stale_b = a.status(2.49, holds=False), b.status(2.49, holds=False)
    out = m.health_changed(2.5, True)
    assert m.state == "waiting"
    a.hear(out)
    b.hear(out)
    m.receive_datagram(2.52, stale_a, A_ADDR, "priv0")
    m.receive_datagram(2.52, stale_b, B_ADDR, "priv0")
    assert m.state == "waiting"
    # ... answers to heartbeats since, from both, do.
    _round(m, 3.0, (a, False))
    assert m.state == "waiting"
    _round(m, 3.5, (b, False))
    assert m.state == "acquiring"
    m.action_done(3.6, AcquireDone(acquired=VIPS))
    assert m.state == "holding"


def test_the_overlap_alarm_names_the_backup() -> None:
    m = _master(held=VIPS)
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    out = _round(m, 0.0, (a, False), (b, True)) + _round(m, 1.0, (a, False), (b, True))
    assert [s for s in _alarms(out) if "holds our addresses" in s] == [
        "backup (priority 50) reports it holds our addresses while we hold them: it should release now"]


def test_more_backups_heard_than_configured_is_alarmed_and_waited_for() -> None:
    m = _master(backups=2)
    a, b, c = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4), Backup(20, B_ADDR, epoch=5)
    _round(m, 0.0, (a, False), (b, False))
    out = m.handle_timer(1.0)
    a.hear(out)
    b.hear(out)
    c.heard = b.heard
    out = m.receive_datagram(1.005, c.status(1.005, holds=True), B_ADDR, "priv0")
    assert any("more than --backups 2" in s for s in _alarms(out))
    _tell(m, a, 1.01, holds=False)
    _tell(m, b, 1.02, holds=False)
    assert m.state == "waiting"  # c has not released


@pytest.mark.parametrize("backups", [0, 255])
def test_the_number_of_backups_is_checked(backups: int) -> None:
    with pytest.raises(ValueError, match=f"backups {backups} is outside 1..254"):
        MasterSettings([A_ADDR], backups=backups)


def test_one_backup_sends_what_a_pair_always_sent() -> None:
    """--backups 1 (the default): every target acknowledges the one backup, whatever address
    its status comes from (a broadcast target, a second path) — the frames of before."""
    m = Master(MasterSettings(["10.9.1.255", "10.9.3.255"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    backup = Backup(0, "10.9.1.2", epoch=3)
    backup.heard = wire.decode(m.handle_timer(0.0)[0].payload, KEY)
    out = m.receive_datagram(0.01, backup.status(0.01, holds=False), "10.9.1.2", "priv0")
    frames = [(x.targets, wire.decode(x.payload, KEY)) for x in out if isinstance(x, Transmit)]
    assert [(t, (f.ack_epoch, f.ack_seq)) for t, f in frames] == [(("10.9.1.255",), (3, 1)), (("10.9.3.255",), (3, 1))]
    snapshot = m.snapshot(0.02)
    assert snapshot["backups"] == [{"priority": 0, "alive": True, "holds": False, "released": False,
                                    "last_heard_age": 0.01}]


def test_failoverctl_status_of_a_master_lists_its_backups() -> None:
    from failoverd.programs.failoverctl import format_status

    m = _master(backups=3)
    a, b = Backup(100, A_ADDR, epoch=3), Backup(50, B_ADDR, epoch=4)
    _round(m, 0.0, (a, False), (b, True))
    _round(m, 1.0, (a, False), (b, True))
    lines = format_status(m.snapshot(1.5), 0.0).splitlines()
    at = lines.index("backups   PRIORITY  LAST HEARD  STATUS")
    assert lines[at + 1:at + 4] == [
        "          100       0.5 s ago   released",
        "          50        0.5 s ago   holds",
        "          1 of 3 not heard yet",
    ]
    lines = format_status(m.snapshot(9.0), 0.0).splitlines()
    assert lines[lines.index("backups   PRIORITY  LAST HEARD  STATUS") + 1] == "          100       8.0 s ago   SILENT"


def test_a_backups_claim_to_hold_counts_even_when_overtaken() -> None:
    """A backup seals its status to us and then its frame to its peers; an attacker who delivers the
    peer frame first makes the status "overtaken". Its "I hold" must still undo the backup's earlier
    release (found in review: the master added its addresses while that backup said it held them)."""
    m = _master(backups=2)
    a, b = Backup(200, A_ADDR, epoch=3), Backup(100, B_ADDR, epoch=4)
    for t in (0.0, 1.0, 2.0):
        _round(m, t, (a, False), (b, True))  # the master is back and waits: b holds, a has released
    assert m.views[200].released(2.0, FAIL_AFTER)
    out = m.handle_timer(3.0)
    a.hear(out)
    b.hear(out)
    status = a.status(3.01, holds=True)  # a takes over after all (it announces)
    peer_frame = a.sealer.seal(3.01, holds=True, ack_epoch=4, ack_seq=1, priority=200)  # sealed for b, after
    m.receive_datagram(3.02, peer_frame, A_ADDR, "priv0")  # delivered to us first
    m.receive_datagram(3.03, status, A_ADDR, "priv0")  # then a's status: overtaken
    view = m.views[200]
    assert view.holds is True and not view.released(3.03, FAIL_AFTER)
    out = _tell(m, b, 3.05, holds=False)
    assert m.state == "waiting" and not any(isinstance(x, Acquire) for x in out)


def test_backups_with_peers_get_a_view_each_even_under_backups_1_and_the_alarm_says_so() -> None:
    """Two backups run with --peer, heartbeatd left at --backups 1: before, both shared one view
    and one replay guard, so one backup's frames were refused as replays and the master added
    its addresses while that backup held them, with no alarm (found in review)."""
    m = _master(backups=1)
    a, b = Backup(200, A_ADDR, epoch=3), Backup(100, B_ADDR, epoch=4)
    out: list[Action] = []
    for t in range(8):
        out += _round(m, float(t), (a, True), (b, False))
    assert sorted(m.views) == [100, 200] and "replay" not in m.counters.rejected
    assert any("more than --backups 1" in s for s in _alarms(out))
    assert m.state == "waiting" and not any(isinstance(x, (Acquire, Probe)) for x in out)


def test_with_several_backups_a_status_without_a_priority_is_refused_and_alarmed_once() -> None:
    """--backups 2 and a backup run without --peer (priority 0 on the wire): it cannot be told
    apart from another such backup, so its frames are refused, with one critical alarm."""
    m = _master(backups=2)
    a, b = Backup(0, A_ADDR, epoch=3), Backup(0, B_ADDR, epoch=4)
    out: list[Action] = []
    for t in range(3):
        out += _round(m, float(t), (a, True), (b, False))
    assert m.views == {} and m.counters.rejected["priority"] == 6
    alarms = [s for s in _alarms(out) if "sends no priority" in s]
    assert alarms == [f"a backup at {A_ADDR} sends no priority (it runs without --peer and --priority): it cannot "
                      "be one of --backups 2; give each backup --priority and the others as --peer"]


def test_with_many_backups_the_master_remembers_a_heartbeat_until_its_answer_can_come_back() -> None:
    """254 targets: a round of heartbeats is 254 frames, so a memory of 256 forgot the first target's
    heartbeat after one round and its backup's answer never counted (found in review)."""
    targets = [f"10.9.{1 + n // 200}.{2 + n % 200}" for n in range(254)]
    m = Master(MasterSettings(targets, 1.0, managed=VIPS, backup_fail_after=FAIL_AFTER, backups=254), 0.0,
               key=KEY, epoch=9)
    first = Backup(254, targets[0], epoch=3)
    first.hear(m.handle_timer(0.0))
    assert first.heard is not None
    for t in (1.0, 2.0):
        m.handle_timer(t)  # two more rounds the first backup does not hear (lost)
    m.receive_datagram(2.5, first.status(2.5, holds=False), targets[0], "priv0")
    assert m.counters.accepted == 1 and m.views[254].last_heard == 2.5
