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
