"""Health checks' verdicts: rise/fall hysteresis over their results, a pure state machine.

One result of a check is noise: a web server slow to answer once is not
dead. A check's *verdict* therefore changes only after ``fall`` failures in
a row (while it passes) or ``rise`` passes in a row (while it fails), as
keepalived's ``vrrp_script`` and HAProxy's server checks do. The very first
result decides at once: before it nothing is known, and a service that is
down when the daemon starts must not be trusted for ``rise`` intervals
(nor a healthy one doubted for ``fall``).

A host is healthy when every one of its checks' verdicts is: :class:`Health`
combines them and says when the combination changes, which is the only
thing the cores learn (``health_changed``).

Rules of this file are those of :mod:`failoverd.core.detector`: nothing here
reads a clock, a socket or a file; every entry point takes ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The combined verdict of a host's checks: ``reason`` says which fail and how (empty when healthy)."""

    healthy: bool
    reason: str = ""


class Hysteresis:
    """The verdict of one check from its results, with rise/fall hysteresis."""

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1, not {rise} and {fall}")
        self.rise = rise
        self.fall = fall
        self.verdict: bool | None = None
        """True: passing; False: failing; None: no result yet."""
        self.streak = 0
        """Results in a row that disagree with the verdict."""
        self.since: float | None = None
        """When the verdict was last set."""
        self.last_detail = ""
        """What the last failed result said."""

    def record(self, now: float, passed: bool, detail: str = "") -> bool:
        """One result (``detail``: what a failure said); True if the verdict changed."""
        if not passed:
            self.last_detail = detail
        if self.verdict is None or self.verdict == passed:
            changed = self.verdict is None
            self.streak = 0
        else:
            self.streak += 1
            changed = self.streak >= (self.rise if passed else self.fall)
        if changed:
            self.verdict = passed
            self.streak = 0
            self.since = now
        return changed


class Health:
    """The combined verdict of checks named ``names``, each with its own :class:`Hysteresis`.

    :meth:`record` returns the new :class:`Verdict` when the combination
    changes: the first time every check has a verdict, and whenever "all
    pass" turns false or true after that. A failing check failing in a new
    way changes nothing (the host is still unhealthy).
    """

    def __init__(self, names: Sequence[str], rise: int, fall: int) -> None:
        if not names:
            raise ValueError("health needs at least one check")
        self.names = tuple(names)
        self.checks = [Hysteresis(rise, fall) for _ in self.names]
        self.verdict: Verdict | None = None

    def record(self, now: float, index: int, passed: bool, detail: str = "") -> Verdict | None:
        """Check ``index`` gave a result; the new combined verdict if it changed, else None."""
        self.checks[index].record(now, passed, detail)
        if any(check.verdict is None for check in self.checks):
            return None
        healthy = all(check.verdict for check in self.checks)
        if self.verdict is not None and self.verdict.healthy == healthy:
            return None
        self.verdict = Verdict(healthy, "" if healthy else self.reason())
        return self.verdict

    def reason(self) -> str:
        """Which checks fail, and the last thing each failure said."""
        return "; ".join(
            f"check {name!r} {check.last_detail}".rstrip()
            for name, check in zip(self.names, self.checks)
            if check.verdict is False
        )

    def snapshot(self, now: float) -> list[dict[str, object]]:
        return [
            {
                "check": name,
                "passing": check.verdict,
                "since": None if check.since is None else round(now - check.since, 3),
                "against": check.streak,
                "last_failure": check.last_detail,
            }
            for name, check in zip(self.names, self.checks)
        ]


def links_reason(links_down: frozenset[str]) -> str:
    """The down links in words, for a core's alarms: ``link pub0, pub1 down``."""
    return f"link {', '.join(sorted(links_down))} down"


def unfit_besides(healthy: bool, health_reason: str, links_down: frozenset[str], interface: str) -> str:
    """Why a core is unfit apart from ``interface``'s link (a change of which changed nothing)."""
    why = [] if healthy else [f"health check fails ({health_reason})"]
    others = links_down - {interface}
    if others:
        why.append(links_reason(others))
    return " and ".join(why)
