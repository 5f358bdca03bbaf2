"""What the two cores share: a ``transitions`` machine built from declared
tables, triggers fired only where the table allows them, state changes
recorded as actions, and the shared key.

Rules of a table
----------------
- Every state change is a row of ``TRANSITIONS``. A callback only emits
  actions and updates the core's bookkeeping; it never fires a trigger
  (one that tries raises :class:`NestedTrigger`, in every mode: the
  record of the outer row would be wrong, as it once was).
- The rows of one trigger from one state exclude each other (their
  ``conditions`` and ``unless`` never hold together; tests/test_core_table.py
  checks every truth assignment), so the order of the rows means nothing.
- Conditions are methods of the core, never flags (``transitions`` would
  also accept an attribute there, which it does not document).
- An *input* trigger (a heartbeat, a result, a verdict, a stop) fired in a
  state where no row of it holds is a bug: under :attr:`DeclaredMachine.strict`
  (the test suite) it raises :class:`UndeclaredTrigger`; a daemon counts it
  (``counters.undeclared``) and alarms, and the state does not move. What
  the network can cause in any state is therefore declared in every state,
  by rows that ignore it.
- *State-driven* triggers (``AUTOMATIC``: the passing of time, mostly) are
  tried after every input, in their declared order, until none holds, as
  h11 settles its state-triggered transitions: their conditions say when
  they fire (time guards are conditions such as ``_deadline_passed``), and
  one input's follow-on changes all happen in that one loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from transitions import Machine

from failoverd.core import wire
from failoverd.core.actions import Action, Alarm, Counters, StateChanged


class UndeclaredTrigger(RuntimeError):
    """A trigger reached a state where no row of the table holds for it (a bug, raised in strict mode)."""


class NestedTrigger(RuntimeError):
    """A row's callback fired a trigger (a bug in a core, raised always)."""


def triggers_by_state(states: Iterable[str], transitions: Iterable[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """For each state, the triggers the table declares from it."""
    table = list(transitions)
    return {state: frozenset(t["trigger"] for t in table if state in sources(t)) for state in states}


def sources(row: dict[str, Any]) -> tuple[str, ...]:
    """The source states of one row (a name or a list of names)."""
    source = row["source"]
    return (source,) if isinstance(source, str) else tuple(source)


def quiet_row(rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` (one trigger's from one state) are one row that always holds, runs nothing and stays."""
    return len(rows) == 1 and rows[0]["dest"] is None and set(rows[0]) == {"trigger", "source", "dest"}


def names_in(row: dict[str, Any], key: str) -> tuple[str, ...]:
    """The callback or condition names under ``key`` of one row (absent, a name, or a list)."""
    value = row.get(key, ())
    return (value,) if isinstance(value, str) else tuple(value)


class DeclaredMachine:
    """Base of a core whose states and transitions are data (``STATES``, ``TRANSITIONS``, ``AUTOMATIC``).

    Subclasses set ``_out`` (the list actions go to), ``_now``, ``counters``,
    ``_key`` and ``_sealer`` before firing anything; each entry point fires at
    most one input trigger with :meth:`_fire` and ends with :meth:`_settle`.
    """

    STATES: ClassVar[tuple[str, ...]] = ()
    TRANSITIONS: ClassVar[tuple[dict[str, Any], ...]] = ()
    AUTOMATIC: ClassVar[tuple[str, ...]] = ()
    """State-driven triggers, tried after every input in this order (see the module)."""
    strict: bool = False
    """Raise :class:`UndeclaredTrigger` instead of counting it (tests/conftest.py turns it on for
    the class; a replay of a recording that may have diverged turns it off for its core)."""
    _triggers: ClassVar[dict[str, frozenset[str]]] = {}
    _automatic: ClassVar[dict[str, tuple[tuple[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]], ...]]] = {}
    """Per state: each state-driven trigger declared from it, with its rows' (conditions, unless)."""
    _quiet: ClassVar[frozenset[tuple[str, str]]] = frozenset()
    """(state, trigger) whose one row from that state has no guard, no callback and no destination."""

    state: str  # set by transitions.Machine
    state_since: float
    counters: Counters
    _out: list[Action]
    _now: float
    _key: wire.Key | None
    _sealer: wire.Sealer | None
    _guard: wire.ReplayGuard

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._triggers = triggers_by_state(cls.STATES, cls.TRANSITIONS)
        cls._automatic = {
            state: tuple(
                (trigger, tuple(
                    (names_in(row, "conditions"), names_in(row, "unless"))
                    for row in cls.TRANSITIONS if row["trigger"] == trigger and state in sources(row)
                ))
                for trigger in cls.AUTOMATIC if trigger in cls._triggers[state]
            )
            for state in cls.STATES
        }
        cls._quiet = frozenset(
            (state, trigger)
            for state in cls.STATES for trigger in cls._triggers[state]
            if quiet_row([row for row in cls.TRANSITIONS if row["trigger"] == trigger and state in sources(row)])
        )

    def _build_machine(self, initial: str) -> None:
        for row in self.TRANSITIONS:
            for key in ("conditions", "unless", "before", "after"):
                for name in names_in(row, key):
                    # A method of the class, not shadowed by an instance attribute.
                    if not callable(getattr(type(self), name, None)) or name in vars(self):
                        raise TypeError(f"{type(self).__name__}.{name} ({key} of {row['trigger']}) is not a method")
        self._row_running: str | None = None
        self.machine = Machine(
            model=self,
            states=list(self.STATES),
            transitions=[dict(t) for t in self.TRANSITIONS],
            initial=initial,
            auto_transitions=False,
        )

    def _fire(self, trigger: str) -> None:
        """Run one input trigger; a state where none of its rows holds is a bug (see the module)."""
        self._not_nested(trigger)
        before = self.state
        if trigger not in self._triggers[before] or not self._run_row(trigger):
            self._undeclared(trigger, before)

    def _settle(self) -> None:
        """Fire the state-driven triggers whose conditions hold until none does."""
        self._not_nested("settle")
        # Each pass fires at most one row; a row's callbacks make its own
        # conditions false (a deadline consumed, a state left), so the loop
        # ends after a few passes. The bound only guards against a table bug.
        # Plain loops, not any() over generators: this runs after every
        # input, mostly to find nothing due, and a generator is a function
        # object made and run per call (a sizeable part of an idle master's
        # frame, run cold once per interval).
        for _ in range(len(self.TRANSITIONS) + 1):
            for trigger, guards in self._automatic[self.state]:
                if self._due(guards) and self._run_row(trigger):
                    break
            else:
                return
        self._undeclared("settle", self.state, what="never settles")

    def _due(self, guards: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]) -> bool:
        """Whether one of a state-driven trigger's rows holds (the same test ``transitions`` makes).

        Asked after every input, and mostly false: reading the conditions
        directly costs a microsecond where a ``transitions`` trigger that
        runs no row costs some thirty. The conditions are read in the row's
        order, each list stopping at its first that fails, as ``transitions`` does.
        """
        for conditions, unless in guards:
            for condition in conditions:
                if not getattr(self, condition)():
                    break
            else:
                for exception in unless:
                    if getattr(self, exception)():
                        break
                else:
                    return True
        return False

    def _run_row(self, trigger: str) -> bool:
        """Fire ``trigger``; True if one of its rows held (and ran), recording any state change."""
        before = self.state
        if (before, trigger) in self._quiet:
            # Its row holds, runs nothing and stays: what ``transitions`` would
            # do, without its dispatch (22 calls of its own and six debug-log
            # calls, run cold at every status frame a holding master gets).
            return True
        mark = len(self._out)
        self._row_running = trigger
        try:
            ran = bool(getattr(self, trigger)())
        finally:
            self._row_running = None
        if self.state != before:
            # Listed before the actions the transition emitted, so a timeline
            # reads "entered acquiring, then acquire".
            self.counters.transitions += 1
            self.state_since = self._now
            self._out.insert(mark, StateChanged(before, self.state, trigger))
        return ran

    def _not_nested(self, trigger: str) -> None:
        if self._row_running is not None:
            raise NestedTrigger(f"a callback of a {self._row_running} row fired {trigger}")

    def _undeclared(self, trigger: str, state: str, what: str = "matches no row of the table") -> None:
        message = f"bug: {trigger} in state {state} {what}; ignored"
        if self.strict:
            raise UndeclaredTrigger(message)
        self.counters.undeclared += 1
        self._out.append(Alarm("error", message))

    def rekey(self, key: bytes) -> None:
        """Use a new shared key from now on (SIGHUP after the key file changed).

        Only switches an authenticated core to another key: turning
        authentication on or off changes the protocol and needs a restart.
        Our sequence numbers and epoch carry on, so the peer's replay window
        is not disturbed; frames under the old key are refused from now on.
        What we recorded of the peer under the old key is forgotten: no frame
        under the new key can predate it, and a window pushed far ahead by
        a forger who held the old key must not outlive the rotation.
        """
        if self._key is None or self._sealer is None:
            raise ValueError("legacy mode has no key; restart with --key-file to authenticate")
        self._key = wire.Key(key)
        self._sealer.rekey(self._key)
        self._forget_recorded()

    def _forget_recorded(self) -> None:
        """After a rekey: nothing recorded of the peer under the old key counts (one replay guard)."""
        self._guard = self._guard.restarted()
