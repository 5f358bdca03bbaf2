"""The conflict feed between the ARP watcher and a live core, without a wire.

The watcher itself is tested on real namespaces in test_arpwatch.py and the
whole chain in test_e2e_conflict.py; here: what is watched follows the core's
state, a conflict reaches the core through the shell, and the trace records it
as a line that reads back to the same input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from failoverd.analysis.trace import (
    ConflictSeen,
    TraceError,
    TraceHeader,
    parse_trace,
    read_trace,
)
from failoverd.analysis.tracewriter import TraceWriter
from failoverd.core.actions import AcquireDone, ProbeDone, Release
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing
from failoverd.runtime.conflicts import ConflictFeed, conflict_feed
from failoverd.runtime.memory import MemorySystem, MemoryTransport
from failoverd.runtime.shell import CoreShell
from failoverd.system.arpwatch import ConflictWatcher

VIP = parse_triplet("pub0:10.64.0.100/24")
TIMING = Timing(interval=0.1)


class ScriptedSystem(MemorySystem):
    """The first probe is silent, later ones are answered (the master is back). No wire,
    so it offers no conflict watcher."""

    async def probe(self, addresses):  # type: ignore[no-untyped-def]
        answered = "probe" in self.kinds()
        self.log.append(("probe", frozenset(addresses)))
        return ProbeDone(answered=frozenset(addresses) if answered else frozenset())


def test_a_system_without_a_wire_gets_no_feed() -> None:
    assert conflict_feed(ScriptedSystem(), lambda addresses: None, claimed=frozenset) is None


@pytest.mark.trio
async def test_the_watched_set_follows_the_core_and_a_conflict_makes_the_backup_yield(
    caplog: pytest.LogCaptureFixture,
) -> None:
    system = ScriptedSystem()
    core = Detector(DetectorSettings([VIP], TIMING), trio.current_time())
    watcher = ConflictWatcher(lambda addresses: shell.conflict(addresses))
    feed = ConflictFeed(watcher, lambda: core.addresses if core.holds_any else frozenset())
    shell = CoreShell(core, system=system, transport=MemoryTransport(), notifier=None, on_action=feed.follow)
    assert watcher.watched == frozenset()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.executor.run)
            await nursery.start(shell.run_timer)
            # Silence and a silent probe: the backup takes over; the watch starts with the acquire.
            while core.state != "failed_over":
                await trio.sleep(0.01)
            assert watcher.watched == {VIP}
            shell.conflict(frozenset({VIP}))
            assert core.state == "recovering"
            # Released; the next probe is answered, so it stays contested.
            while core.state != "contested":
                await trio.sleep(0.01)
            assert system.kinds()[:4] == ["probe", "acquire", "release", "probe"]
            assert watcher.watched == frozenset(), "still watching after letting go"
            nursery.cancel_scope.cancel()
    # Back in monitoring with its silence long counted, the backup's deadline is
    # already due: the shell must not take that for a core that spins.
    assert "a bug in the core" not in caplog.text


def _header(tmp_path: Path) -> TraceHeader:
    return TraceHeader(mode="legacy", settings=DetectorSettings((VIP,), timing=TIMING, master="10.64.1.1"), start=1.0)


def test_a_conflict_is_recorded_and_reads_back_as_the_same_input(tmp_path: Path) -> None:
    other = parse_triplet("pub0:10.64.0.101/24")
    path = tmp_path / "trace"
    with TraceWriter(path, _header(tmp_path)) as writer:
        writer.conflict(2.5, frozenset({other, VIP}))
        writer.result(2.75, AcquireDone())
    events = read_trace(path).events
    assert events[0] == ConflictSeen(2.5, frozenset({VIP, other}))
    text = path.read_text().splitlines()
    assert text[2] == "c 2.5 pub0:10.64.0.100/24 pub0:10.64.0.101/24"


@pytest.mark.parametrize(
    "line",
    ["c 2.5", "c 2.5 pub0:10.64.0.101/24 pub0:10.64.0.100/24", "c 2.5 pub0:10.64.0.100/24 pub0:10.64.0.100/24",
     "c 2.50 pub0:10.64.0.100/24", "c 2.5 pub0:10.64.0.300/24"],
)
def test_a_bad_conflict_line_is_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "trace"
    with TraceWriter(path, _header(tmp_path)):
        pass
    head = path.read_bytes().splitlines(keepends=True)[:2]
    with pytest.raises(TraceError, match=":3:"):
        parse_trace([*head, (line + "\n").encode()])


def test_the_release_after_a_conflict_is_what_the_core_asks() -> None:
    core = Detector(DetectorSettings([VIP], TIMING), 0.0, held=[VIP])
    actions = core.conflict_seen(0.5, [VIP])
    assert Release(frozenset({VIP})) in actions
