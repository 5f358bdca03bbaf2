"""The cores' tables are the whole machine (issue 10).

Every state change a core records is a row of its ``TRANSITIONS``; the rows
of one trigger from one state exclude each other, so their order means
nothing; conditions are methods, never flags; an input the table does not
expect is a bug that raises under the test suite's strict mode; the state
diagrams in docs/ are the tables; both daemons stop through their tables.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _drive import KEY, VIPS, detector

from failoverd.core.actions import (
    AcquireDone,
    Alarm,
    Probe,
    ProbeDone,
    Release,
    ReleaseDone,
    StateChanged,
    Transmit,
)
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing

ROOT = Path(__file__).resolve().parent.parent
CORES = [("failoverd.core.detector", "Detector"), ("failoverd.core.master", "Master")]


def rows(module_name: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(trigger, source, dest, row) for each source of each row; dest None is the source."""
    module = importlib.import_module(module_name)
    out = []
    for row in module.TRANSITIONS:
        sources = [row["source"]] if isinstance(row["source"], str) else list(row["source"])
        for source in sources:
            out.append((row["trigger"], source, row["dest"] or source, row))
    return out


def declared(module_name: str) -> set[tuple[str, str, str]]:
    return {(trigger, source, dest) for trigger, source, dest, _ in rows(module_name)}


def changes(actions: list[object]) -> list[tuple[str, str, str]]:
    return [(a.trigger, a.source, a.dest) for a in actions if isinstance(a, StateChanged)]


# --- the records are rows ------------------------------------------------------


def test_a_master_that_does_not_probe_records_the_row_it_took() -> None:
    """Issue 10's wrong record: with --manage and no ARP probe the master reported
    ``waiting -> acquiring`` on ``presume``, and a ``probing -> acquiring`` it never
    entered, because the probe's callback fired ``probed`` inside ``presume``."""
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS, arp_probe=False), 0.0, key=KEY, epoch=9)
    recorded: list[tuple[str, str, str]] = []
    for t in (0.0, 1.0, 2.0, 3.0):
        out = m.handle_timer(t)
        recorded += changes(out)
    assert m.state == "acquiring"
    assert recorded == [("presume", "waiting", "acquiring")]
    assert set(recorded) <= declared("failoverd.core.master")
    assert not any(isinstance(a, Probe) for a in out)


def test_a_detector_that_does_not_probe_records_only_rows() -> None:
    d = detector(arp_probe=False)
    recorded = []
    for t in (1.5, 3.0):
        recorded += changes(d.handle_timer(t))
    recorded += changes(d.action_done(3.1, AcquireDone(acquired=VIPS)))
    assert recorded == [("silence", "monitoring", "suspect"), ("deadline", "suspect", "acquiring"),
                        ("acquired", "acquiring", "failed_over")]
    assert set(recorded) <= declared("failoverd.core.detector")


# --- the rows exclude each other -------------------------------------------------


@pytest.mark.parametrize("module_name", [name for name, _ in CORES])
def test_rows_of_one_trigger_from_one_state_exclude_each_other(module_name: str) -> None:
    """For every truth assignment of the conditions a (trigger, state) group uses, at
    most one of its rows holds: which row is first cannot matter."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for trigger, source, _, row in rows(module_name):
        groups.setdefault((trigger, source), []).append(row)
    for (trigger, source), group in groups.items():
        names = sorted({n for row in group for n in (*_names(row, "conditions"), *_names(row, "unless"))})
        for values in itertools.product((False, True), repeat=len(names)):
            truth = dict(zip(names, values))
            holding = [
                row for row in group
                if all(truth[n] for n in _names(row, "conditions")) and not any(truth[n] for n in _names(row, "unless"))
            ]
            assert len(holding) <= 1, f"{module_name}: {trigger} from {source} under {truth}: {holding}"


def _names(row: dict[str, Any], key: str) -> list[str]:
    value = row.get(key, [])
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize(("module_name", "class_name"), CORES)
def test_conditions_and_callbacks_are_methods_not_flags(module_name: str, class_name: str) -> None:
    """A flag of the same name as a condition used to shadow it (``_master_back``,
    ``_stopping``), and ``transitions`` then read the attribute, which it does not document."""
    core = _instance(class_name)
    for _, _, _, row in rows(module_name):
        for key in ("conditions", "unless", "before", "after"):
            for name in _names(row, key):
                assert inspect.ismethod(getattr(core, name)), f"{class_name}.{name} ({key}) is not a method"


def _instance(class_name: str) -> Any:
    if class_name == "Detector":
        return detector()
    return Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)


# --- strict mode -----------------------------------------------------------------


@pytest.mark.parametrize(("module_name", "class_name"), CORES)
def test_a_quiet_row_answered_without_transitions_is_what_transitions_does(module_name: str, class_name: str) -> None:
    """A trigger whose one row from a state has no guard, callback or destination skips the
    dispatch (core/machine.py): asked the same, ``transitions`` holds it, stays and emits nothing."""
    cls = getattr(importlib.import_module(module_name), class_name)
    assert ("holding", "backup_released") in Master._quiet and ("monitoring", "heartbeat") in Detector._quiet
    for state, trigger in sorted(cls._quiet):
        for through_transitions in (True, False):
            core = detector() if cls is Detector else Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY,
                                                              epoch=9)
            core.machine.set_state(state)
            core._now, core._out = 5.0, []
            held = getattr(core, trigger)() if through_transitions else core._run_row(trigger)
            assert (held, core.state, core._out) == (True, state, []), (state, trigger, through_transitions)


def test_an_input_the_table_does_not_expect_raises_in_the_test_suite() -> None:
    from failoverd.core.machine import UndeclaredTrigger

    d = detector()
    with pytest.raises(UndeclaredTrigger, match=r"acquired.*monitoring"):
        d.action_done(1.0, AcquireDone(acquired=VIPS))  # nobody asked for an acquire
    # The state does not move; what we hold stays exact (the addresses are there).
    assert d.state == "monitoring" and d.held == VIPS


def test_outside_strict_mode_an_unexpected_input_is_counted_and_alarmed(monkeypatch: pytest.MonkeyPatch) -> None:
    from failoverd.core.machine import DeclaredMachine

    monkeypatch.setattr(DeclaredMachine, "strict", False)
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    out = m.action_done(0.5, ReleaseDone(released=VIPS))  # nothing was being released
    assert m.state == "waiting" and m.counters.undeclared == 1
    (alarm,) = [a for a in out if isinstance(a, Alarm)]
    assert alarm.level == "error" and "released" in alarm.message and "waiting" in alarm.message
    assert m.snapshot(0.5)["counters"]["undeclared"] == 1


def test_what_can_arrive_in_any_state_has_a_row_in_every_state() -> None:
    """Heartbeats, ARP conflicts, health verdicts, late probe answers and the stop arrive in any state."""
    for trigger in ("heartbeat", "conflict", "checks_pass", "probed", "stop"):
        assert {s for t, s, _, _ in rows("failoverd.core.detector") if t == trigger} == set(Detector.STATES), trigger
    for trigger in ("backup_released", "checks_pass", "checks_fail", "probed"):
        assert {s for t, s, _, _ in rows("failoverd.core.master") if t == trigger} == set(Master.STATES), trigger


def test_a_conflict_while_watching_is_ignored_by_a_row() -> None:
    d = detector()
    (a, *_) = sorted(VIPS)
    assert d.conflict_seen(0.5, {a}) == [] and d.state == "monitoring"


# --- the backup's stop goes through its core ---------------------------------------


def test_the_backup_stop_releases_through_its_core() -> None:
    from failoverd.core.actions import Stopped

    d = Detector(DetectorSettings(VIPS, Timing()), 0.0, key=KEY, held=VIPS)
    out = d.shutdown(1.0)
    assert [a for a in out if isinstance(a, Release)] == [Release(VIPS)]
    assert not any(isinstance(a, Stopped) for a in out)
    out = d.action_done(1.2, ReleaseDone(released=VIPS))
    assert any(isinstance(a, Stopped) for a in out) and d.held == frozenset()
    # Stopped: time no longer moves it (no takeover, no retry).
    assert d.handle_timer(100.0) == [] and d.next_deadline() is None


def test_a_backup_told_to_keep_its_addresses_stops_at_once() -> None:
    from failoverd.core.actions import Stopped

    d = Detector(DetectorSettings(VIPS, Timing()), 0.0, key=KEY, held=VIPS)
    out = d.shutdown(1.0, release=False)
    assert not any(isinstance(a, Release) for a in out) and any(isinstance(a, Stopped) for a in out)
    assert d.held == VIPS


def test_a_backup_whose_stop_release_fails_says_what_it_still_holds() -> None:
    from failoverd.core.actions import Stopped

    a, b = sorted(VIPS)
    d = Detector(DetectorSettings(VIPS, Timing()), 0.0, key=KEY, held=VIPS)
    d.shutdown(1.0)
    out = d.action_done(1.2, ReleaseDone(released=frozenset({a}), failed=frozenset({b})))
    assert any(isinstance(x, Stopped) for x in out) and d.held == {b}
    assert any(isinstance(x, Alarm) and x.level == "error" and str(b.address) in x.message for x in out)


def test_a_watching_backup_stops_at_once_and_a_late_probe_changes_nothing() -> None:
    from failoverd.core.actions import Stopped

    d = detector()
    d.handle_timer(1.5)
    out = d.handle_timer(2.7)  # suspect: the probe runs
    assert any(isinstance(a, Probe) for a in out)
    out = d.shutdown(2.8)
    assert any(isinstance(a, Stopped) for a in out)
    assert d.action_done(3.0, ProbeDone()) == [] and d.handle_timer(3.1) == [] and d.state == "suspect"


def test_the_master_says_when_its_stop_is_complete() -> None:
    from failoverd.core.actions import Stopped

    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held=VIPS, key=KEY, epoch=9)
    assert not any(isinstance(a, Stopped) for a in m.shutdown(5.0))
    out = m.action_done(5.1, ReleaseDone(released=VIPS))
    assert m.state == "stopped" and isinstance(out[-1], Stopped)
    assert any(isinstance(a, Transmit) for a in out[:-1])  # the leaving heartbeat goes first


# --- diagrams and typing -----------------------------------------------------------


def test_the_committed_state_diagrams_are_the_tables() -> None:
    from failoverd.core import diagrams

    committed = (ROOT / "docs" / "state-machines.md").read_text()
    assert committed == diagrams.document(), (
        "docs/state-machines.md differs from the tables: run python -m failoverd.core.diagrams > docs/state-machines.md"
    )


def test_a_diagram_names_each_row_with_its_conditions() -> None:
    from failoverd.core import diagrams

    text = diagrams.document()
    assert "waiting --> acquiring: presume [presume due, not probes first, not witnessed]" in text
    assert "suspect --> contested: deadline [deadline passed, probe finished, healthy, probe answered, not stopping, not deferred]" in text


@pytest.mark.slow
def test_the_core_is_strictly_typed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "failoverd/core"], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_callback_that_fires_a_trigger_is_refused() -> None:
    """What produced the wrong record: a callback firing a trigger inside another row."""
    from failoverd.core.actions import Counters
    from failoverd.core.machine import DeclaredMachine, NestedTrigger

    class Nesting(DeclaredMachine):
        STATES = ("a", "b", "c")
        TRANSITIONS = (
            {"trigger": "go", "source": "a", "dest": "b", "after": "_go_on"},
            {"trigger": "on", "source": "b", "dest": "c"},
        )

        def __init__(self) -> None:
            self.counters, self._out, self._now, self.state_since = Counters(), [], 0.0, 0.0
            self._build_machine("a")

        def _go_on(self) -> None:
            self._fire("on")

    core = Nesting()
    with pytest.raises(NestedTrigger, match="a callback of a go row fired on"):
        core._fire("go")
    assert core.state == "b"  # transitions had moved; the nested row did not run
