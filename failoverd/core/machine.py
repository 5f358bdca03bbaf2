"""What the two cores share: a ``transitions`` machine built from declared
tables, triggers fired only where the table allows them, state changes
recorded as actions, and the shared key.
"""

from __future__ import annotations

from typing import Any, Iterable

from transitions import Machine

from failoverd.core import wire
from failoverd.core.actions import Action, Counters, StateChanged


def triggers_by_state(states: Iterable[str], transitions: Iterable[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """For each state, the triggers the table declares from it."""
    table = list(transitions)
    return {
        state: frozenset(
            t["trigger"] for t in table if t["source"] == state or (isinstance(t["source"], list) and state in t["source"])
        )
        for state in states
    }


class DeclaredMachine:
    """Base of a core whose states and transitions are data (``STATES``, ``TRANSITIONS``).

    Subclasses set ``_out`` (the list actions go to), ``_now``, ``counters``,
    ``_key`` and ``_sealer`` before firing anything.
    """

    STATES: tuple[str, ...] = ()
    TRANSITIONS: tuple[dict[str, Any], ...] = ()
    _triggers: dict[str, frozenset[str]] = {}

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

    def _build_machine(self, initial: str) -> None:
        self._trigger_name = ""
        self.machine = Machine(
            model=self,
            states=list(self.STATES),
            transitions=[dict(t) for t in self.TRANSITIONS],
            initial=initial,
            auto_transitions=False,
        )

    def _fire(self, trigger: str) -> None:
        """Run one declared trigger and record the state change it made, if any."""
        before = self.state
        if trigger not in self._triggers[before]:
            return  # e.g. a late timer in a state that no longer waits for it
        mark = len(self._out)
        self._trigger_name = trigger
        getattr(self, trigger)()
        if self.state != before:
            # Listed before the actions the transition emitted, so a timeline
            # reads "entered acquiring, then acquire".
            self.counters.transitions += 1
            self.state_since = self._now
            self._out.insert(mark, StateChanged(before, self.state, trigger))

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
        self._guard = self._guard.restarted()
