"""spin's counterexample to "never two holders" under links up (issue 9's
acknowledgement rule as first written), played through the real cores.

The master crashes (its address goes with the host); the backup suspects it
and probes. A new master starts 2 s later; the backup's status answering its
first heartbeat (which the backup does not count) acknowledges the new epoch
and says "I hold nothing". The master's immediate answer to the backup's epoch
is lost, and its acquire is slow (a PreAcq hook). With the first rule the
master took that status as the failback handshake while the backup, still
counting silence from the old master, took over: both held the address. Now
only a status answering a heartbeat the backup counted starts the failback.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from _drive import KEY, VIPS

from failoverd.core.actions import Acquire, AcquireDone, Probe, ProbeDone, Release, ReleaseDone, Transmit
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing


def test_a_restarted_master_never_acquires_on_the_answer_to_its_uncounted_first_heartbeat() -> None:
    events: list[tuple[float, int, Callable[[float], None]]] = []
    order = itertools.count()
    holds = {"master": False, "backup": False}
    overlaps: list[float] = []
    lost = {"answer": False}

    def at(when: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(events, (when, next(order), fn))

    backup = Detector(DetectorSettings(VIPS, Timing(), master="m"), 0.0, key=KEY, epoch=100)
    masters: dict[str, Master | None] = {}

    def core_of(who: str) -> Detector | Master | None:
        return backup if who == "backup" else masters.get(who)

    def handle(who: str, actions: list, now: float) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                if who == "m2" and not lost["answer"] and now > 3.0:
                    lost["answer"] = True  # the new master's answer to the backup's epoch
                    continue
                if who == "backup":
                    for name in list(masters):
                        at(now + 0.001, lambda t, p=action.payload, n=name: (m := masters[n]) is not None
                           and handle(n, m.receive_datagram(t, p, "b", "priv"), t))
                else:
                    at(now + 0.001, lambda t, p=action.payload: handle("backup", backup.receive_datagram(t, p, "m", "priv"), t))
            elif isinstance(action, Probe):
                found = holds["master" if who == "backup" else "backup"]
                at(now + 0.3, lambda t, w=who, a=action, f=found: (c := core_of(w)) is not None and handle(
                    w, c.action_done(t, ProbeDone(answered=frozenset(a.addresses) if f else frozenset())), t))
            elif isinstance(action, Acquire):
                latency = 1.05 if who == "m2" else 0.1

                def acquired(t: float, w: str = who, a: Acquire = action) -> None:
                    core = core_of(w)
                    if core is None:
                        return
                    holds["backup" if w == "backup" else "master"] = True
                    if holds["master"] and holds["backup"]:
                        overlaps.append(t)
                    handle(w, core.action_done(t, AcquireDone(acquired=a.addresses)), t)

                at(now + latency, acquired)
            elif isinstance(action, Release):
                def released(t: float, w: str = who, a: Release = action) -> None:
                    holds["backup" if w == "backup" else "master"] = False
                    core = core_of(w)
                    if core is not None:
                        handle(w, core.action_done(t, ReleaseDone(released=a.addresses)), t)

                at(now + 0.1, released)

    def crash(t: float) -> None:
        masters["m1"] = None
        holds["master"] = False

    def restart(t: float) -> None:
        masters["m2"] = Master(MasterSettings(["b"], 1.0, managed=VIPS), t, key=KEY, epoch=2)

    masters["m1"] = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=1)
    at(1.0005, crash)
    at(3.0, restart)
    now = 0.0
    for _ in range(100_000):
        timers = [(c.next_deadline(), n) for n, c in [("backup", backup), *masters.items()] if c is not None]
        due = min((d, n) for d, n in timers if d is not None)
        if events and events[0][0] <= due[0]:
            now, _, fn = heapq.heappop(events)
            fn(now)
        else:
            now, name = due
            core = core_of(name)
            assert core is not None
            handle(name, core.handle_timer(now), now)
        if now > 8.0:
            break
    assert lost["answer"], "the scenario no longer loses the answer; the test proves nothing"
    assert overlaps == []
    assert holds == {"master": True, "backup": False}  # the failback completed, one round trip later
