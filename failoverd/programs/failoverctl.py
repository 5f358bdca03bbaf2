"""failoverctl: ask a running failoverd or heartbeatd about itself (root only).

    failoverctl status [--json] [--socket PATH | --role backup|master]
    failoverctl dump   [--socket PATH | --role backup|master]
    failoverctl ping   [--socket PATH | --role backup|master]
    failoverctl watch  [--interval S] [--socket PATH | --role backup|master]

Each subcommand is one ``_add_<name>`` function that registers its parser
and the function that runs it; a new subcommand is one more such function
listed in :data:`SUBCOMMANDS`.

Without ``--socket`` it looks where the daemons put their sockets
(:data:`SOCKETS`) and talks to the one daemon whose socket it finds; if it
finds both failoverd's and heartbeatd's, it asks for ``--role`` (or
``--socket``) instead of guessing.

``watch`` polls ``status`` every ``--interval`` seconds and draws the
answer (see :mod:`failoverd.programs.watchview`) until Ctrl-C (or SIGTERM),
which exits 0.
On a terminal the picture is redrawn in place on the alternate screen, with
the keyboard's echo off, and both are restored on the way out; when the
output is not a terminal (a pipe, a file) or the terminal is ``TERM=dumb``,
one plain snapshot is printed per poll instead, one after another. The first
poll decides whether there is anything to watch: if it gets no answer,
``watch`` exits as ``status`` would; once watching, a daemon that stops
answering is said so on the screen and polled again at every interval.

Exit status (sysexits): 0 done; 64 usage, or more than one socket found;
69 no daemon answering at the socket; 70 the daemon failed to answer (an
internal error); 76 an answer or request that does not follow the protocol;
77 not root.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import stat
import sys
import termios
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from failoverd import __version__
from failoverd.cli.argparser import ArgumentParser, parse_or_exit
from failoverd.cli.config import DEFAULT_CONTROL_SOCKETS
from failoverd.programs.failoverctl_replay import add_replay, add_sweep
from failoverd.runtime.control import ControlError, request

if TYPE_CHECKING:
    from failoverd.programs.watchview import Watch

PROG = "failoverctl"

SOCKETS = {
    "backup": (DEFAULT_CONTROL_SOCKETS["failoverd"], Path("/run/failoverd.sock")),
    "master": (DEFAULT_CONTROL_SOCKETS["heartbeatd"], Path("/run/heartbeatd.sock")),
}
"""Where each daemon's control socket may be, in the order tried: where the
shipped units and the daemons' defaults put it, then the default of earlier
versions (so a daemon still running with it is found)."""
_PROGRAM = {"backup": "failoverd", "master": "heartbeatd"}
_ROLE_NAMES = {"backup": "backup", "failoverd": "backup", "master": "master", "heartbeatd": "master"}

_EXIT_FOR_REASON = {
    "unavailable": os.EX_UNAVAILABLE,
    "forbidden": os.EX_NOPERM,
    "internal": os.EX_SOFTWARE,
    "ambiguous": os.EX_USAGE,
}
_LABEL_WIDTH = 10


# --- rendering ----------------------------------------------------------------


def format_age(seconds: float) -> str:
    """A duration as an operator reads it: ``0.4 s``, ``3m07s``, ``2h05m10s``, ``3d 04h12m``."""
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as left-aligned columns, two spaces apart, no trailing blanks."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _section(label: str, lines: Sequence[str]) -> list[str]:
    first, *rest = list(lines) or ["none"]
    return [f"{label:<{_LABEL_WIDTH}}{first}", *(" " * _LABEL_WIDTH + line for line in rest)]


def flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested counters as ``(dotted.name, value)`` pairs; an empty group is one pair with 0."""
    flat: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.extend(flatten(value, f"{name}.") if value else [(name, 0)])
        else:
            flat.append((name, value))
    return flat


def _timing_value(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if name.endswith("count"):
        return str(value)
    return f"{value:g} s"


def format_status(status: Mapping[str, Any], now: float) -> str:
    """The ``status`` answer as aligned text; ``now`` is the Unix time to measure ages from."""
    since = status.get("since")
    state = str(status.get("state", "?"))
    if isinstance(since, (int, float)):
        entered = _dt.datetime.fromtimestamp(since).astimezone()
        state += f" for {format_age(now - since)} (since {entered:%Y-%m-%d %H:%M:%S %Z})"
    lines = [
        *_section("role", [str(status.get("role", "?"))]),
        *_section("state", [state]),
        *_section("master", [str(status.get("master") or "unknown")]),
    ]

    paths = status.get("paths") or []
    path_rows = [["NAME", "LAST HEARD", "HEALTH"]]
    for path in paths:
        age = path.get("last_heard_age")
        heard = "never" if age is None else f"{format_age(age)} ago"
        health = "ok" if path.get("healthy") else "QUIET"
        path_rows.append([str(path.get("name", "?")), heard, health])
    lines += _section("paths", _table(path_rows) if paths else [])

    if status.get("role") == "master":
        lines += _master_backups(status)
    lines += _section("held", [str(t) for t in status.get("held") or []])
    witness = status.get("witness")
    if isinstance(witness, Mapping):
        left = witness.get("proof_left")
        confirmed = witness.get("confirmation_left")
        lines += _section("witness", [
            ("etcd reachable" if witness.get("reachable") else "etcd UNREACHABLE") + "; "
            + ("claim held" if witness.get("claim") else "no claim")
            + ("" if not isinstance(left, (int, float))
               else f", proof valid {left:g} s more" if left > 0 else ", proof ran out")
            + ("" if not isinstance(confirmed, (int, float))
               else f", kept on confirmations {confirmed:g} s more"),
        ])
    lines += _backup_peers(status)
    counters = flatten(status.get("counters") or {})
    lines += _section("counters", _table([[name, str(value)] for name, value in counters]))
    timing = status.get("timing") or {}
    lines += _section("timing", _table([[name, _timing_value(name, v)] for name, v in timing.items()]))
    lines += _section("version", [str(status.get("version", "?"))])
    return "\n".join(lines) + "\n"


def _backup_peers(status: Mapping[str, Any]) -> list[str]:
    """A backup with peers (several backups, spec/backups.md): its priority, then one row per peer."""
    backups = status.get("backups")
    if status.get("role") != "backup" or not isinstance(backups, Mapping):
        return []
    delay = backups.get("rank_delay")
    own = [
        f"{backups.get('priority', '?')}" + (", preempts" if backups.get("preempt") else "")
        + (f"; rank {backups.get('rank')}, deadline later by {delay:g} s" if isinstance(delay, (int, float)) else "")
        + ("; says master heard" if backups.get("master_heard") else "")
    ]
    unheard = backups.get("master_unheard")
    if isinstance(unheard, Mapping):
        # A peer hears the master we cannot (spec/backups.md, "What the review found", 1, "The hold").
        own.append(
            f"master not heard here, but peer {unheard.get('priority', '?')} ({unheard.get('address', '?')}) heard it "
            f"{format_age(unheard.get('heard_age') or 0)} ago: taking nothing over while it does, and for "
            f"at most {format_age(unheard.get('hold_left') or 0)} more")
    rows = [["PRIORITY", "ADDRESS", "ALIVE", "FIT", "HOLDS", "MASTER", "LAST HEARD"]]
    for peer in backups.get("peers") or []:
        age = peer.get("last_heard_age")
        priority = peer.get("priority")
        rows.append([
            "?" if priority is None else str(priority),
            str(peer.get("source", "?")),
            "yes" if peer.get("alive") else "NO",
            "?" if peer.get("fit") is None else "yes" if peer.get("fit") else "UNFIT",
            "?" if peer.get("holds") is None else "HOLDS" if peer.get("holds") else "no",
            # Its last counted frame says it hears the master (spec/backups.md, "What the review found", 1).
            "?" if peer.get("master_heard") is None else "heard" if peer.get("master_heard") else "-",
            "never" if age is None else f"{format_age(age)} ago",
        ])
    announce: list[str] = []
    awaiting = backups.get("awaiting")
    if isinstance(awaiting, list):
        # Announcing (spec/backups.md): whom the takeover still waits for, each at most until it falls silent.
        announce = ["announcing; waiting for " + (", ".join(
            f"{a.get('priority', '?')} ({a.get('address', '?')}, at most {format_age(a.get('silent_in') or 0)} more)"
            for a in awaiting) or "nobody: acquiring next")]
    return (_section("priority", own) + (_section("announce", announce) if announce else [])
            + _section("peers", _table(rows) if len(rows) > 1 else []))


def _master_backups(status: Mapping[str, Any]) -> list[str]:
    """A master's backups, highest priority first: whether each is alive and holds, when last heard."""
    backups = status.get("backups")
    if not isinstance(backups, list):
        return []
    rows = [["PRIORITY", "LAST HEARD", "STATUS"]]
    for backup in backups:
        age = backup.get("last_heard_age")
        heard = "never" if age is None else f"{format_age(age)} ago"
        said = "holds" if backup.get("holds") else "released" if backup.get("released") else "holds nothing"
        rows.append([str(backup.get("priority", "?")), heard, said if backup.get("alive") else "SILENT"])
    expected = status.get("backups_expected")
    unheard = expected - len(backups) if isinstance(expected, int) else 0
    lines = _table(rows) if backups else []
    if unheard > 0:
        lines.append(f"{unheard} of {expected} not heard yet")
    return _section("backups", lines)


# --- subcommands ----------------------------------------------------------------


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except PermissionError:
        raise ControlError(f"permission denied looking for {path}: run as root", "forbidden") from None
    except OSError:
        return False


def find_socket(role: str | None = None) -> Path:
    """The control socket to talk to: the only one of :data:`SOCKETS` (of ``role``, if given) there is.

    Raises :class:`ControlError`: ``"unavailable"`` naming every path tried if
    there is none, ``"ambiguous"`` naming those found if there is more than one.
    """
    roles = [role] if role is not None else list(SOCKETS)
    tried = [(r, path) for r in roles for path in SOCKETS[r]]
    found = [(r, path) for r, path in tried if _is_socket(path)]
    if len(found) == 1:
        return found[0][1]
    if not found:
        programs = " or ".join(_PROGRAM[r] for r in roles)
        paths = ", ".join(str(path) for _, path in tried)
        raise ControlError(f"no control socket at {paths}: is {programs} running? (or give --socket PATH)", "unavailable")
    paths = " and ".join(str(path) for _, path in found)
    if len({r for r, _ in found}) > 1:
        raise ControlError(
            f"both failoverd and heartbeatd have a control socket here ({paths}); "
            "choose one with --role backup (failoverd) or --role master (heartbeatd), or --socket PATH",
            "ambiguous",
        )
    raise ControlError(
        f"more than one {_PROGRAM[found[0][0]]} control socket: {paths} (one may be left by a daemon "
        "that died, or started with an older default); choose one with --socket PATH",
        "ambiguous",
    )


def _socket(args: argparse.Namespace) -> Path:
    return args.socket if args.socket is not None else find_socket(args.role)


def _run_status(args: argparse.Namespace) -> int:
    result = request(_socket(args), "status", timeout=args.timeout)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(format_status(result, time.time()))
    return os.EX_OK


def _run_dump(args: argparse.Namespace) -> int:
    result = request(_socket(args), "dump", timeout=args.timeout)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return os.EX_OK


def _run_ping(args: argparse.Namespace) -> int:
    started = time.monotonic()
    result = request(_socket(args), "ping", timeout=args.timeout)
    elapsed = time.monotonic() - started
    sys.stdout.write(f"pong from pid {result.get('pid', '?')} (version {result.get('version', '?')}) in {elapsed * 1000:.1f} ms\n")
    return os.EX_OK


def _run_watch(args: argparse.Namespace) -> int:
    # rich is imported by the one command that draws with it.
    from rich.console import Console
    from rich.live import Live

    from failoverd.programs.watchview import Watch, render

    path = _socket(args)
    watch = Watch(socket=path, interval=args.interval)
    # kill(1) ends the view as Ctrl-C does, so the terminal is restored all the same.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # The first poll decides whether there is anything to watch: a wrong
        # --socket or a stopped daemon exits now, with status's message and code.
        watch.answered(request(path, "status", timeout=args.timeout), time.time())
        console = Console(highlight=False)
        if console.is_terminal and not console.is_dumb_terminal:
            # Redrawn in place, as top(1) is: on the alternate screen, so
            # the shell's screen comes back as it was when the view ends.
            with _keys_not_echoed(sys.stdin), Live(console=console, screen=True, auto_refresh=False) as live:
                for _ in _polls(args, watch):
                    live.update(render(watch, time.time()), refresh=True)
        else:
            # A pipe, a file or a terminal that cannot move its cursor: one
            # snapshot after another, each a block ending in a blank line,
            # long lines left whole (a log is read with grep, not at 80 columns).
            for _ in _polls(args, watch):
                with console.capture() as drawn:
                    console.print(render(watch, time.time()), soft_wrap=True)
                # rich pads a table's lines to its width; a log is better without the blanks.
                sys.stdout.write("".join(line.rstrip() + "\n" for line in drawn.get().splitlines()) + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass  # the way to stop watching; the with-blocks above have restored the terminal
    finally:
        signal.signal(signal.SIGTERM, previous)
    return os.EX_OK


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def _polls(args: argparse.Namespace, watch: Watch) -> Iterator[None]:
    """Yields at once (for the answer in hand), then after each further poll, polls ``--interval`` s apart."""
    next_poll = time.monotonic() + args.interval
    yield
    while True:
        time.sleep(max(0.0, next_poll - time.monotonic()))
        next_poll = time.monotonic() + args.interval
        try:
            watch.answered(request(watch.socket, "status", timeout=args.timeout), time.time())
        except ControlError as exc:
            # Gone, restarting, stopped, refusing: the view says so and keeps polling.
            watch.unanswered(str(exc), time.time())
        yield


@contextmanager
def _keys_not_echoed(stream: Any) -> Iterator[None]:
    """Keys typed while the view is up are not echoed over it.

    Resource handling: the terminal's settings are restored on the way out,
    however it is left, and what was typed meanwhile is discarded rather than
    handed to the shell. Nothing is done if ``stream`` is not a terminal.
    """
    try:
        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except (AttributeError, OSError, ValueError, termios.error):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO  # the local modes; Ctrl-C (ISIG) still interrupts
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def _add_status(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "status", parents=[common], help="state, heartbeat paths, held addresses, counters",
        description="Print the daemon's state, each path's last heartbeat age, the addresses it holds and its counters.",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(run=_run_status)


def _add_dump(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "dump", parents=[common], help="the daemon's full internal state, as JSON",
        description="Print the daemon's full internal state as JSON (for bug reports).",
    )
    parser.set_defaults(run=_run_dump)


def _add_ping(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "ping", parents=[common], help="check that the daemon answers",
        description="Check that the daemon answers on its control socket.",
    )
    parser.set_defaults(run=_run_ping)


def _add_watch(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "watch", parents=[common], help="a live view of the status, redrawn until Ctrl-C",
        description="Poll the daemon's status and show it live: state and for how long, each path's last "
        "heartbeat, the addresses held, the counters and the last state changes; Ctrl-C quits. "
        "When the output is not a terminal, print one plain snapshot per poll instead.",
    )
    parser.add_argument(
        "--interval", metavar="SECONDS", type=_watch_interval, default=1.0,
        help=f"seconds between polls, {MIN_WATCH_INTERVAL:g} to 3600 (default 1)",
    )
    parser.set_defaults(run=_run_watch)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None], ...] = (
    _add_status,
    _add_dump,
    _add_ping,
    _add_watch,
    add_replay,
    add_sweep,
)


def _role(text: str) -> str:
    try:
        return _ROLE_NAMES[text]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not backup, master, failoverd or heartbeatd") from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s is outside 0..3600 s")
    return value


MIN_WATCH_INTERVAL = 0.1
"""Polls closer than this would only load the daemon: the screen does not change that fast."""


def _watch_interval(text: str) -> float:
    value = _positive_seconds(text)
    if value < MIN_WATCH_INTERVAL:
        raise argparse.ArgumentTypeError(f"{text} s is shorter than {MIN_WATCH_INTERVAL:g} s")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    which = common.add_mutually_exclusive_group()
    which.add_argument(
        "--socket", metavar="PATH", type=Path, default=None,
        help="the daemon's control socket (default: the one socket found of "
        + ", ".join(str(path) for paths in SOCKETS.values() for path in paths) + ")",
    )
    which.add_argument(
        "--role", metavar="ROLE", type=_role, default=None,
        help="which daemon to ask when both run here: backup (or failoverd) or master (or heartbeatd)",
    )
    common.add_argument(
        "--timeout", metavar="SECONDS", type=_positive_seconds, default=5.0,
        help="how long to wait for the daemon (default 5)",
    )
    parser = ArgumentParser(
        prog=PROG,
        description="Ask a running failoverd or heartbeatd about itself through its control socket (root only).",
        epilog="Exit status: 0 done, 64 usage (or more than one socket found), 69 no daemon answering, "
        "70 daemon error, 76 protocol error, 77 not root.",
    )
    parser.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True,
                                     parser_class=ArgumentParser)
    for add in SUBCOMMANDS:
        add(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_or_exit(build_parser(), argv)
    try:
        return args.run(args)
    except ControlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return _EXIT_FOR_REASON.get(exc.reason, os.EX_PROTOCOL)
    except BrokenPipeError:
        # `failoverctl status | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return os.EX_OK


if __name__ == "__main__":
    sys.exit(main())
