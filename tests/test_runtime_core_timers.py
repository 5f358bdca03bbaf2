"""The runtime's contract with the cores' timers.

The shell (failoverd.runtime.shell) runs one timer per core and calls
``handle_timer(now)`` at ``next_deadline()``. That only works if, after
``handle_timer(now)``, the next deadline lies after ``now`` and retries wait
their retry interval: otherwise the timer fires back to back. These tests
drive the cores with a virtual clock exactly as the shell does.
"""

from __future__ import annotations

import itertools

from failoverd.core.actions import Acquire, AcquireDone, Alarm, Probe, ProbeDone
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing

VIP = parse_triplet("pub0:10.9.2.100/24")
MASTER = "10.9.1.1"


def test_backup_with_two_silent_paths_does_not_ask_to_be_woken_in_the_past() -> None:
    detector = Detector(DetectorSettings([VIP], Timing(interval=0.1), master=MASTER, arp_probe=False), 0.0)
    detector.receive_datagram(0.05, b"heartbeat", MASTER, "priv0")
    detector.receive_datagram(0.06, b"heartbeat", MASTER, "pub0")
    now = 0.06
    for _ in range(20):
        deadline = detector.next_deadline()
        if deadline is None:
            break
        assert deadline > now, f"woken at {now}, asked again for {deadline} in state {detector.state}"
        now = deadline
        for action in detector.handle_timer(now):
            if isinstance(action, Acquire):
                detector.action_done(now, AcquireDone(acquired=action.addresses))
    assert detector.state == "failed_over"


def test_backup_still_reports_a_path_that_stayed_quiet_when_another_resumes() -> None:
    detector = Detector(DetectorSettings([VIP], Timing(interval=0.1), master=MASTER, arp_probe=False), 0.0)
    detector.receive_datagram(0.0, b"heartbeat", MASTER, "priv0")
    detector.receive_datagram(0.0, b"heartbeat", MASTER, "pub0")
    # Both silent past the failure timeout (nothing is marked quiet: no path delivers) ...
    detector.handle_timer(0.5)
    # ... then only pub0 comes back: priv0 must be reported at once.
    actions = detector.receive_datagram(0.6, b"heartbeat", MASTER, "pub0")
    alarms = [a for a in actions if isinstance(a, Alarm) and "priv0" in a.message]
    assert alarms and alarms[0].mail
    assert detector.snapshot(0.6)["paths"][0]["healthy"] is False


def test_master_whose_probe_is_answered_reprobes_after_its_retry_interval() -> None:
    master = Master(MasterSettings(["10.9.1.2"], 0.1, managed=[VIP], retry_interval=1.0), 0.0)
    probes: list[float] = []
    now = 0.0
    while now < 3.5:
        deadline = master.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        for action in master.handle_timer(now):
            if isinstance(action, Probe):
                probes.append(now)
                master.action_done(now + 0.03, ProbeDone(answered=action.addresses))
    assert probes[0] == 0.3 or abs(probes[0] - 0.3) < 1e-9  # the backup's failure timeout
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps and min(gaps) >= 1.0 - 1e-9, probes
    assert master.state == "waiting"
