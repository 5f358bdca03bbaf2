"""failoverctl watch's picture: what the polling learned, drawn as one rich renderable.

Drawing only. :class:`Watch` records what the polls learned (the last
``status`` answer and when it came, or why the latest poll got none) and
:func:`render` draws it; neither does I/O or reads a clock (``now`` is
given), so a test renders a snapshot dict and reads the text. The polling
loop, the terminal and Ctrl-C belong to :mod:`failoverd.programs.failoverctl`.

Every age in the daemon's part of the picture is measured at the moment of
its answer, not at the moment of drawing: once the daemon stops answering,
its last answer stays on the screen as it was, under a banner that says
since when (and so for how long until now) nothing has answered, so nothing
there pretends to be newer than it is.

Colour only ever repeats what the words say (``QUIET``, ``NOT ANSWERING``,
the state's name), so the picture reads the same without it: rich's console
leaves colour out when ``NO_COLOR`` is set, on ``TERM=dumb`` and when the
output is not a terminal.

Error handling: an answer that lacks a field, or has one of another type
(an older or newer daemon), is drawn with ``?`` or ``none`` in its place;
whatever a daemon sent is drawn as text, never read as rich markup (in which
a ``[/]`` would raise). Drawing never raises on what a daemon sent.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from failoverd.programs.failoverctl import flatten, format_age

PROGRAMS = {"backup": "failoverd", "master": "heartbeatd"}
COUNTER_COLUMNS = 2
"""Counters are laid out this many name/value pairs to a row: the screen stays short, and 80 columns hold it."""

_STATE_STYLES = {
    "monitoring": "green",
    "holding": "green",
    "suspect": "yellow",
    "contested": "yellow",
    "waiting": "yellow",
    "probing": "yellow",
    "acquiring": "bold red",
    "failed_over": "bold red",
    "recovering": "red",
    "releasing": "red",
    "stopped": "dim",
}
_LABEL = "bold"


@dataclass
class Watch:
    """What the polls of one daemon have learned so far."""

    socket: Path
    interval: float
    """Seconds between polls (shown, so the operator knows how fresh the picture is)."""
    status: Mapping[str, Any] | None = None
    """The last ``status`` answer; kept when later polls get none."""
    answered_at: float | None = None
    """When :attr:`status` came, Unix time."""
    problem: str | None = None
    """Why the latest poll got no answer; ``None`` while the daemon answers."""
    silent_since: float | None = None
    """When the polls began to go unanswered (the first that did), Unix time."""

    def answered(self, status: Mapping[str, Any], at: float) -> None:
        self.status, self.answered_at = status, at
        self.problem = self.silent_since = None

    def unanswered(self, problem: str, at: float) -> None:
        self.problem = problem
        if self.silent_since is None:
            self.silent_since = at


def render(watch: Watch, now: float) -> RenderableType:
    """The whole picture: a header, a banner while the daemon does not answer, then its last answer."""
    parts: list[RenderableType] = [_header(watch)]
    if watch.problem is not None:
        parts.append(_banner(watch, now))
    if watch.status is None or watch.answered_at is None:
        parts.append(Text("no answer yet", style="dim"))
    else:
        parts.append(_body(watch.status, watch.answered_at))
    return Group(*parts)


# --- the parts --------------------------------------------------------------------------------


def _header(watch: Watch) -> Text:
    status = watch.status or {}
    program = PROGRAMS.get(str(status.get("role")), "daemon")
    header = Text.assemble((f"{program} at {watch.socket}", "bold"))
    if watch.answered_at is not None:
        header.append(f", answered at {_clock(watch.answered_at)}")
    header.append(f"; polled every {watch.interval:g} s")
    return header


def _banner(watch: Watch, now: float) -> Text:
    since = watch.silent_since if watch.silent_since is not None else now
    banner = Text.assemble(
        (f"NOT ANSWERING since {_clock(since)} (for {format_age(now - since)})", "bold reverse red"),
        f": {watch.problem}\nretrying every {watch.interval:g} s",
    )
    if watch.answered_at is not None:
        banner.append(f"; below is its last answer, from {_clock(watch.answered_at)}")
    return banner


def _body(status: Mapping[str, Any], at: float) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style=_LABEL, no_wrap=True)
    grid.add_column()
    version = status.get("version")
    role = str(status.get("role", "?"))
    grid.add_row("role", Text(f"{role} ({PROGRAMS.get(role, '?')} {version})" if version else role))
    grid.add_row("state", _state(status, at))
    if status.get("role") != "master":
        grid.add_row("master", Text(str(status.get("master") or "unknown")))
    grid.add_row("paths", _paths(_list(status.get("paths"))))
    grid.add_row("held", Text("\n".join(str(t) for t in _list(status.get("held"))) or "nothing"))
    grid.add_row("counters", _counters(status.get("counters")))
    transitions = status.get("transitions")
    grid.add_row("last changes", _transitions(transitions, at) if transitions is not None
                 else Text("not reported by this daemon (an older version)", style="dim"))
    return grid


def _state(status: Mapping[str, Any], at: float) -> Text:
    name = str(status.get("state", "?"))
    text = Text(name, style=_STATE_STYLES.get(name, ""))
    since = status.get("since")
    if _is_number(since):
        text.append(f" for {format_age(at - since)} (since {_clock(since, at)})")
    return text


def _paths(paths: Sequence[Any]) -> RenderableType:
    if not paths:
        return "none"
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style=_LABEL)
    for heading in ("NAME", "LAST HEARD", "HEALTH"):
        table.add_column(heading, no_wrap=True)
    for path in paths:
        path = path if isinstance(path, Mapping) else {}
        age = path.get("last_heard_age")
        heard = f"{format_age(age)} ago" if _is_number(age) else "never"
        health = Text("ok", style="green") if path.get("healthy") else Text("QUIET", style="bold red")
        table.add_row(Text(str(path.get("name", "?"))), heard, health)
    return table


def _counters(counters: Any) -> RenderableType:
    pairs = flatten(counters) if isinstance(counters, Mapping) else []
    if not pairs:
        return "none"
    grid = Table.grid(padding=(0, 1, 0, 0))
    for _ in range(COUNTER_COLUMNS):
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True, min_width=4)
        grid.add_column(min_width=2)  # the gutter between pairs
    for start in range(0, len(pairs), COUNTER_COLUMNS):
        row: list[RenderableType] = []
        for name, value in pairs[start:start + COUNTER_COLUMNS]:
            # A rejected frame is worth a glance (a wrong key, an attack, a clock).
            warn = name.startswith("rejected.") and _is_number(value) and value > 0
            row += [Text(name), Text(str(value), style="yellow" if warn else ""), ""]
        grid.add_row(*row)
    return grid


def _transitions(transitions: Any, at: float) -> RenderableType:
    changes = [c for c in _list(transitions) if isinstance(c, Mapping)]
    if not changes:
        return "none since the daemon started"
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, show_header=False)
    for _ in range(4):
        table.add_column(no_wrap=True)
    for change in reversed(changes):  # newest first: the one that matters is on top
        when = change.get("at")
        dest = str(change.get("dest", "?"))
        table.add_row(
            _clock(when, at) if _is_number(when) else "?",
            f"{format_age(at - when)} ago" if _is_number(when) else "",
            Text.assemble(f"{change.get('source', '?')} -> ", (dest, _STATE_STYLES.get(dest, ""))),
            Text(f"on {change.get('trigger', '?')}"),
        )
    return table


# --- helpers --------------------------------------------------------------------------------


def _clock(moment: float, today: float | None = None) -> str:
    """Local time of day; with the date too if ``moment`` falls on another day than ``today``."""
    when = _dt.datetime.fromtimestamp(moment).astimezone()
    if today is not None and when.date() != _dt.datetime.fromtimestamp(today).astimezone().date():
        return f"{when:%Y-%m-%d %H:%M:%S}"
    return f"{when:%H:%M:%S}"


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []
