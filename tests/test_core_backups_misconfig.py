"""Several backups configured inconsistently (found in review): a backup with --peer beside one
without, and two backups that disagree on a priority. Neither can be made safe by the protocol
(each side believes a different world), so each must be *said*, loudly and once, before the
master dies: a critical alarm on the side that can see the mistake.
"""

from __future__ import annotations

from typing import Any

import _backups_sim as sim
from _drive import KEY, VIPS

from failoverd.core.actions import Alarm
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings

HIGH, LOW = "10.9.1.2", "10.9.1.3"


class Misconfigured(sim.Network):
    """Each backup with the peers *it* is configured with: {name: (address, priority, {peer: priority})}."""

    def __init__(self, conf: dict[str, tuple[str, int, dict[str, int]]]) -> None:
        super().__init__({n: (a, p) for n, (a, p, _) in conf.items()})
        self.conf = conf
        self.alarms: dict[str, list[tuple[str, str]]] = {n: [] for n in conf}

    def start_backup(self, name: str) -> Detector:
        b = self.backups[name]
        peers = self.conf[name][2]
        settings = DetectorSettings(
            VIPS,
            self.timing,
            master=sim.MASTER,
            peers=tuple(peers),
            peer_priorities=tuple(peers.values()),
            priority=b.priority,
        )
        b.core = Detector(settings, self.now, key=KEY, epoch=next(b.epochs) * 10 + b.priority, held=b.configured)
        self._after(name, [])
        return b.core

    def _after(self, host: str, actions: list[Any]) -> None:
        if host in self.alarms:
            self.alarms[host] += [(a.level, a.message) for a in actions if isinstance(a, Alarm)]
        super()._after(host, actions)


def running(conf: dict[str, tuple[str, int, dict[str, int]]]) -> Misconfigured:
    net = Misconfigured(conf)
    net.start_master()
    for name in conf:
        net.start_backup(name)
    net.run_until(10.0)
    return net


def critical(net: Misconfigured, name: str, words: str) -> list[str]:
    return [m for level, m in net.alarms[name] if level == "critical" and words in m]


def test_a_backup_without_peer_beside_one_with_it_raises_a_critical_alarm_once() -> None:
    net = running({"high": (HIGH, 200, {LOW: 100}), "low": (LOW, 100, {})})
    assert critical(net, "low", "another backup of this master") == [
        f"another backup of this master, at {HIGH} with priority 200, runs with --peer, and this one has none: "
        "both would take over; give this backup --priority and the other backups as --peer ADDR=PRIORITY"
    ]
    low = net.backups["low"].core
    assert low is not None and low.counters.rejected["role"] > 5  # refused, as a pair always did, and said once


def test_a_peer_that_never_acknowledges_our_frames_is_alarmed_after_a_failure_timeout() -> None:
    """low believes high's priority is 50: it refuses high's frames, so its own never acknowledge high's."""
    net = running({"high": (HIGH, 200, {LOW: 100}), "low": (LOW, 100, {HIGH: 50})})
    (alarm,) = critical(net, "high", "has not acknowledged our frames")
    assert alarm.startswith(f"peer backup at {LOW} (priority 100) has not acknowledged our frames for ")
    assert alarm.endswith("check that its --peer for this backup names our priority (200)")
    assert critical(net, "low", f"a peer backup at {HIGH} has priority 200, one no --peer of ours is configured with")


def test_a_correct_configuration_raises_neither_alarm() -> None:
    net = running({"high": (HIGH, 200, {LOW: 100}), "low": (LOW, 100, {HIGH: 200})})
    assert [(n, m) for n, alarms in net.alarms.items() for level, m in alarms if level == "critical"] == []


def test_a_captured_frame_replayed_from_many_sources_alarms_once_per_priority() -> None:
    """The priority is under the MAC, the source is not: one alarm per priority, not per source
    (review: 2000 spoofed sources gave 2000 critical mails and a set that grew without bound)."""
    net = sim.Network()
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(5.0)
    high = net.backups["high"]
    assert high.core is not None
    own = next(p for t, s, d, p in net.wire if s == high.address and d == net.backups["low"].address)
    mailed = 0
    for i in range(300):
        actions = high.core.receive_datagram(net.now, own, f"10.{i >> 8}.{i & 255}.7", "eth1")
        mailed += sum(1 for a in actions if isinstance(a, Alarm) and a.level == "critical" and a.mail)
    assert mailed == 1 and high.core.counters.rejected["priority"] == 300


def test_a_plain_outage_between_the_backups_is_not_taken_for_a_misconfiguration() -> None:
    """The unacknowledged-episode starts afresh after a failure timeout without the peer's frames
    or with its new epoch: a handshake cut by a link flap is not "its --peer names another priority"."""
    net = Misconfigured({"high": (HIGH, 200, {LOW: 100}), "low": (LOW, 100, {HIGH: 200})})
    net.start_master()
    for name in ("high", "low"):
        net.start_backup(name)
    net.run_until(9.9)
    # low restarts as the link between the backups flaps: high → low lost from the restart, low → high
    # lost just after low's first frame, both back 10 s later
    net.drop = lambda s, d, p: (s, d) == (HIGH, LOW) or ((s, d) == (LOW, HIGH) and net.now > 10.005)
    net.run_until(10.0)
    net.kill_backup("low")
    net.start_backup("low")
    net.run_until(20.0)
    net.drop = lambda s, d, p: False
    net.run_until(25.0)
    assert not critical(net, "high", "has not acknowledged our frames")
    high = net.backups["high"].core
    assert high is not None and high._peers is not None and high._peers.entries[100].counted > 0


def test_under_keep_a_backup_no_peer_of_ours_names_turns_keep_off() -> None:
    """--etcd-unreachable keep keeps on the confirmations of every host that could claim; a backup
    heard that none of ours counts could claim meanwhile (review), so a proof alone keeps from then."""
    from failoverd.core import wire
    from failoverd.core.timing import Timing
    from failoverd.core.witness import WitnessTiming

    settings = DetectorSettings(VIPS, Timing(interval=0.1), master=sim.MASTER, peers=(LOW,), peer_priorities=(100,),
                                priority=200, witness=WitnessTiming(keep_on_outage=True), arp_probe=False)
    core = Detector(settings, 0.0, key=KEY, epoch=5)
    stranger = wire.Sealer(KEY, wire.ROLE_BACKUP, 77, 0.1, 0.0).seal(0.5, holds=False, priority=50)
    out = core.receive_datagram(0.5, stranger, "10.9.1.9", "eth1")
    assert core._proofs is not None and core._proofs.uncounted_claimer
    assert any(isinstance(a, Alarm) and "--etcd-unreachable keep is off for this run" in a.message for a in out)
    own = wire.Sealer(KEY, wire.ROLE_BACKUP, 78, 0.1, 0.0).seal(0.6, holds=False, priority=200)
    other = Detector(settings, 0.0, key=KEY, epoch=6)
    other.receive_datagram(0.6, own, "10.9.1.9", "eth1")  # our own priority (a replay of ours): refused only
    assert other._proofs is not None and not other._proofs.uncounted_claimer
