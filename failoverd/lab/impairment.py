"""What one direction of one link does to the frames offered to it: a seeded, sans-IO model.

A :class:`Link` is told "a frame was offered at ``now``" and answers with the delivery times of the
copies to send (none if the frame is lost, two if it is duplicated). It never sleeps or sends;
the emulator does that. Each directed link owns its own random generator, seeded from the lab's
seed and the link's name, so a link's decisions depend only on the seed and on the frames offered
to *that* link — not on unrelated traffic elsewhere in the lab.

Semantics (per frame, in this order):

* partitioned link: dropped, counted as ``blocked``;
* ``loss``: dropped with this probability, counted as ``lost``;
* delay: ``delay`` plus a uniform draw from ``[-jitter, +jitter]``, never below zero;
* order: the link is FIFO — a frame never overtakes an earlier one, whatever its jitter — except
  that with probability ``reorder`` a frame is held back ``reorder_gap`` seconds more, letting the
  frames behind it overtake it (counted as ``reordered``);
* ``duplicate``: with this probability a second copy is delivered right behind the first.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_REORDER_GAP = 0.05
MAX_DELAY = 60.0


class ImpairmentError(ValueError):
    """An impairment setting out of range or of the wrong type."""


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImpairmentError(f"{name} must be a number between 0 and 1, not {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ImpairmentError(f"{name} must be between 0 and 1, not {value}")
    return float(value)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImpairmentError(f"{name} must be a number of seconds, not {value!r}")
    if not 0.0 <= value <= MAX_DELAY:
        raise ImpairmentError(f"{name} must be between 0 and {MAX_DELAY:g} seconds, not {value}")
    return float(value)


@dataclass(frozen=True)
class Impairment:
    """The settings of one directed link. All zero: a perfect wire."""

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_gap: float = DEFAULT_REORDER_GAP

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            object.__setattr__(self, name, _probability(name, getattr(self, name)))
        for name in ("delay", "jitter", "reorder_gap"):
            object.__setattr__(self, name, _seconds(name, getattr(self, name)))

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> Impairment:
        if not isinstance(settings, dict):
            raise ImpairmentError(f"impairment settings must be an object, not {settings!r}")
        unknown = set(settings) - set(cls.__dataclass_fields__)
        if unknown:
            raise ImpairmentError(
                f"unknown impairment setting(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**settings)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def perfect(self) -> bool:
        return self == Impairment()


@dataclass
class Counters:
    offered: int = 0
    delivered: int = 0
    lost: int = 0
    blocked: int = 0
    duplicated: int = 0
    reordered: int = 0
    send_errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What happens to one offered frame: the delivery times of its copies, and why."""

    deliveries: tuple[float, ...]
    outcome: str  # "delivered", "lost", "partitioned", "duplicated", "reordered"


@dataclass
class Link:
    """One direction of one link (``src`` → ``dst`` on ``lan``)."""

    lan: str
    src: str
    dst: str
    seed: int
    impairment: Impairment = field(default_factory=Impairment)
    partitioned: bool = False
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        # A string seed is hashed deterministically by random.Random (unlike hash()).
        self._rng = random.Random(f"{self.seed}:{self.lan}:{self.src}>{self.dst}")
        self._last_due = float("-inf")

    @property
    def name(self) -> str:
        return f"{self.lan}:{self.src}>{self.dst}"

    def offer(self, now: float) -> Verdict:
        imp = self.impairment
        self.counters.offered += 1
        if self.partitioned:
            self.counters.blocked += 1
            return Verdict((), "partitioned")
        if imp.loss and self._rng.random() < imp.loss:
            self.counters.lost += 1
            return Verdict((), "lost")
        delay = imp.delay
        if imp.jitter:
            delay += self._rng.uniform(-imp.jitter, imp.jitter)
        due = max(now + max(delay, 0.0), self._last_due)
        outcome = "delivered"
        if imp.reorder and self._rng.random() < imp.reorder:
            # Held back without advancing _last_due, so later frames may pass it.
            due += imp.reorder_gap
            self.counters.reordered += 1
            outcome = "reordered"
        else:
            self._last_due = due
        copies: tuple[float, ...] = (due,)
        if imp.duplicate and self._rng.random() < imp.duplicate:
            copies = (due, due)
            self.counters.duplicated += 1
            outcome = "duplicated" if outcome == "delivered" else outcome
        return Verdict(copies, outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lan": self.lan,
            "src": self.src,
            "dst": self.dst,
            "partitioned": self.partitioned,
            "impairment": self.impairment.to_dict(),
            **self.counters.to_dict(),
        }
