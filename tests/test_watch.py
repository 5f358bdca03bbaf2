"""failoverctl watch: the picture drawn from status answers, the daemons' recent state changes,
and the real program under a real pseudo-terminal.

Testing charter: the renderer is tested on snapshot dicts with ``now`` given
(no clock, no socket); the runtime's record of state changes on a real
backup in-process (loopback, the in-memory system of test_runtime_daemons);
the program as a real process on a real pty (pexpect) or a real pipe,
watching a real heartbeatd started here on loopback with its control socket
in the test's directory, and stopped here. Every wait is bounded (pexpect's
timeout, ``fail_after``, a deadline); no test asserts how fast anything is.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest
import trio
from pexpect.popen_spawn import PopenSpawn
from rich.console import Console
from test_runtime_daemons import LOOPBACK, backup_config, free_port

from failoverd.core.actions import Alarm, StateChanged
from failoverd.programs import failoverctl
from failoverd.programs.watchview import Watch, render
from failoverd.runtime import backup, control
from failoverd.runtime.lifecycle import TRANSITIONS_KEPT, RecentTransitions
from failoverd.runtime.memory import MemorySystem

WAIT = 30.0
"""Bound on each wait for the program or the daemon (generous: the machine is shared)."""
T0 = 1_800_000_000.0  # the moment the snapshots below were answered, Unix time


def clock(moment: float) -> str:
    return f"{_dt.datetime.fromtimestamp(moment).astimezone():%H:%M:%S}"


def drawn(watch: Watch, now: float, width: int = 100) -> list[str]:
    """What ``render`` draws, as plain lines without trailing blanks."""
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(render(watch, now))
    return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]


def line_of(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, f"expected one line starting {start!r} in:\n" + "\n".join(lines)
    return found[0]


def backup_status(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "role": "backup",
        "state": "failed_over",
        "since": T0 - 65.0,
        "master": "10.0.0.1",
        "paths": [
            {"name": "eth1", "last_heard_age": 125.25, "healthy": False},
            {"name": "eth2", "last_heard_age": 0.4, "healthy": True},
            {"name": "eth3", "last_heard_age": None, "healthy": False},
        ],
        "held": ["eth0:10.0.0.100/24", "eth0:10.0.0.101/24"],
        "counters": {
            "accepted": 1234, "overtaken": 0, "unacknowledged": 2, "rejected": {"mac": 3, "replay": 0},
            "transitions": 3, "failovers": 1, "failbacks": 0, "false_suspicions": 0, "contested": 0,
        },
        "timing": {"interval": 1.0},
        "transitions": [
            {"at": T0 - 70.0, "source": "monitoring", "dest": "suspect", "trigger": "silence"},
            {"at": T0 - 67.5, "source": "suspect", "dest": "acquiring", "trigger": "probed"},
            {"at": T0 - 65.0, "source": "acquiring", "dest": "failed_over", "trigger": "acquired"},
        ],
        "version": "0.1.0",
    }
    status.update(changes)
    return status


# --- the renderer, on snapshot dicts -----------------------------------------------------------


def test_a_backups_answer_shows_state_paths_held_counters_and_last_changes_newest_first() -> None:
    watch = Watch(socket=Path("/run/failoverd/failoverd.sock"), interval=1.0)
    watch.answered(backup_status(), T0)
    lines = drawn(watch, now=T0 + 0.2)

    assert lines[0] == f"failoverd at /run/failoverd/failoverd.sock, answered at {clock(T0)}; polled every 1 s"
    assert line_of(lines, "role").split() == ["role", "backup", "(failoverd", "0.1.0)"]
    assert line_of(lines, "state").split() == ["state", "failed_over", "for", "65.0", "s", "(since", f"{clock(T0 - 65)})"]
    assert line_of(lines, "master").split() == ["master", "10.0.0.1"]
    paths = lines.index(line_of(lines, "paths"))
    assert [line.split() for line in lines[paths:paths + 4]] == [
        ["paths", "NAME", "LAST", "HEARD", "HEALTH"],
        ["eth1", "2m05s", "ago", "QUIET"],
        ["eth2", "0.4", "s", "ago", "ok"],
        ["eth3", "never", "QUIET"],
    ]
    held = lines.index(line_of(lines, "held"))
    assert lines[held].split() == ["held", "eth0:10.0.0.100/24"] and lines[held + 1].split() == ["eth0:10.0.0.101/24"]
    counters = " ".join(lines[lines.index(line_of(lines, "counters")):lines.index(line_of(lines, "last changes"))])
    pairs = re.findall(r"([a-z_.]+)\s+(\d+)", counters.removeprefix("counters"))
    assert dict(pairs) == {
        "accepted": "1234", "overtaken": "0", "unacknowledged": "2", "rejected.mac": "3", "rejected.replay": "0",
        "transitions": "3", "failovers": "1", "failbacks": "0", "false_suspicions": "0", "contested": "0",
    }
    changes = lines.index(line_of(lines, "last changes"))
    assert [line.split() for line in lines[changes:changes + 3]] == [
        ["last", "changes", clock(T0 - 65), "65.0", "s", "ago", "acquiring", "->", "failed_over", "on", "acquired"],
        [clock(T0 - 67.5), "67.5", "s", "ago", "suspect", "->", "acquiring", "on", "probed"],
        [clock(T0 - 70), "70.0", "s", "ago", "monitoring", "->", "suspect", "on", "silence"],
    ]
    assert not any("NOT ANSWERING" in line for line in lines)


def test_a_master_has_no_master_line_and_says_when_there_are_no_paths_or_changes() -> None:
    watch = Watch(socket=Path("/tmp/m.sock"), interval=0.5)
    watch.answered(backup_status(role="master", state="holding", since=T0 - 3.2, master=None, paths=[], held=[],
                                 counters={"accepted": 0, "rejected": {}}, transitions=[]), T0)
    lines = drawn(watch, now=T0)
    assert lines[0].startswith("heartbeatd at /tmp/m.sock,") and lines[0].endswith("polled every 0.5 s")
    assert not any(line.startswith("master") for line in lines)
    assert line_of(lines, "paths").split() == ["paths", "none"]
    assert line_of(lines, "held").split() == ["held", "nothing"]
    assert line_of(lines, "counters").split() == ["counters", "accepted", "0", "rejected", "0"]
    assert line_of(lines, "last changes").split() == ["last", "changes", "none", "since", "the", "daemon", "started"]


def test_a_daemon_that_stops_answering_gets_a_banner_over_its_last_answer_kept_as_it_was() -> None:
    watch = Watch(socket=Path("/tmp/b.sock"), interval=2.0)
    watch.answered(backup_status(), T0)
    watch.unanswered("no control socket at /tmp/b.sock: is the daemon running?", T0 + 2)
    watch.unanswered("nobody is listening on /tmp/b.sock (a stale socket?)", T0 + 4)
    lines = drawn(watch, now=T0 + 6.5, width=200)

    # Since the first unanswered poll; the reason is the latest one.
    assert lines[1] == (f"NOT ANSWERING since {clock(T0 + 2)} (for 4.5 s): "
                        "nobody is listening on /tmp/b.sock (a stale socket?)")
    assert lines[2] == f"retrying every 2 s; below is its last answer, from {clock(T0)}"
    # The last answer's ages are those it had when it came, not older by the silence.
    assert line_of(lines, "state").split()[:5] == ["state", "failed_over", "for", "65.0", "s"]
    assert ["eth2", "0.4", "s", "ago", "ok"] in [line.split() for line in lines]

    watch.answered(backup_status(state="monitoring", since=T0 + 7), T0 + 8)
    lines = drawn(watch, now=T0 + 8)
    assert not any("NOT ANSWERING" in line for line in lines)
    assert line_of(lines, "state").split()[:4] == ["state", "monitoring", "for", "1.0"]


def test_an_answer_without_transitions_or_with_odd_fields_is_drawn_not_raised_on() -> None:
    watch = Watch(socket=Path("/tmp/b.sock"), interval=1.0)
    older = backup_status()
    del older["transitions"]
    watch.answered(older, T0)
    assert line_of(drawn(watch, T0), "last changes").endswith("not reported by this daemon (an older version)")

    watch.answered({"role": 7, "state": None, "since": "yesterday", "paths": "eth1", "held": {"a": 1},
                    "counters": [1, 2], "transitions": [None, {"at": "x"}, {}]}, T0)
    lines = drawn(watch, T0)
    assert line_of(lines, "state").split() == ["state", "None"]
    assert line_of(lines, "paths").split() == ["paths", "none"]
    assert line_of(lines, "counters").split() == ["counters", "none"]
    changes = lines.index(line_of(lines, "last changes"))
    assert [line.split() for line in lines[changes:changes + 2]] == [
        ["last", "changes", "?", "?", "->", "?", "on", "?"], ["?", "?", "->", "?", "on", "?"],
    ]

    # What the daemon sent is text, never rich markup (a "[/]" alone would raise).
    watch.answered(backup_status(master="[/]", paths=[{"name": "[/] [red]eth9", "healthy": True}], held=["[b]x"],
                                 counters={"[/]": 1}, transitions=[{"source": "[/]", "dest": "[i]", "trigger": "[/]"}]), T0)
    lines = drawn(watch, T0)
    assert line_of(lines, "master").split() == ["master", "[/]"]
    assert ["[/]", "[red]eth9", "never", "ok"] in [line.split() for line in lines]
    assert line_of(lines, "held").split() == ["held", "[b]x"]
    assert line_of(lines, "counters").split() == ["counters", "[/]", "1"]
    assert line_of(lines, "last changes").split()[-5:] == ["[/]", "->", "[i]", "on", "[/]"]


def test_colour_only_repeats_the_words_and_is_left_out_without_a_colour_terminal() -> None:
    watch = Watch(socket=Path("/tmp/b.sock"), interval=1.0)
    watch.answered(backup_status(), T0)
    watch.unanswered("gone", T0 + 1)
    coloured = Console(file=io.StringIO(), width=100, color_system="truecolor", force_terminal=True)
    coloured.print(render(watch, T0 + 1))
    out = coloured.file.getvalue()  # type: ignore[attr-defined]
    assert colour_codes(out), "a colour terminal gets colour"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert [line.rstrip() for line in plain.splitlines()] == drawn(watch, T0 + 1)


# --- the runtime's record of state changes ------------------------------------------------------


def test_recent_transitions_keep_the_last_few_state_changes_with_their_wall_clock_time() -> None:
    recent = RecentTransitions()
    before = time.time()
    for n in range(TRANSITIONS_KEPT + 3):
        recent.follow(float(n), StateChanged(f"s{n}", f"s{n + 1}", "silence"))
        recent.follow(float(n), Alarm("info", "not a state change"))
    after = time.time()
    kept = recent.recent()
    assert [c["source"] for c in kept] == [f"s{n}" for n in range(3, TRANSITIONS_KEPT + 3)]
    assert kept[-1] == {"at": kept[-1]["at"], "source": f"s{TRANSITIONS_KEPT + 2}",
                        "dest": f"s{TRANSITIONS_KEPT + 3}", "trigger": "silence"}
    assert all(round(before, 3) <= c["at"] <= round(after, 3) for c in kept)
    kept[0]["source"] = "changed by a caller"
    assert recent.recent()[0]["source"] == "s3"


@pytest.mark.trio
async def test_a_backups_status_answer_carries_its_takeover_as_state_changes(tmp_path: Path) -> None:
    port = free_port()
    config = backup_config(tmp_path, port)
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            before = time.time()
            await nursery.start(functools.partial(backup.serve, config, system=MemorySystem()))
            first = await trio.to_thread.run_sync(control.request, config.control_socket, "status")
            status = first
            while status["state"] != "failed_over":  # silence: suspect, probe, acquire
                await trio.sleep(0.02)
                status = await trio.to_thread.run_sync(control.request, config.control_socket, "status")
            nursery.cancel_scope.cancel()
    assert first["transitions"] == []
    changes = status["transitions"]
    assert [(c["source"], c["dest"]) for c in changes] == [
        ("monitoring", "suspect"), ("suspect", "acquiring"), ("acquiring", "failed_over"),
    ]
    assert changes[0]["trigger"] == "silence" and changes[-1]["trigger"] == "acquired"
    times = [c["at"] for c in changes]
    assert round(before, 3) <= times[0] and times == sorted(times)
    # The state's own "since" is the last change's moment (the same event, seen twice).
    assert abs(status["since"] - times[-1]) < 1.0


# --- the program: options and the first poll ----------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ("0", "0 s is outside 0..3600 s"),
    ("0.05", "0.05 s is shorter than 0.1 s"),
    ("soon", "not a number of seconds: 'soon'"),
    ("7200", "7200 s is outside 0..3600 s"),
])
def test_a_bad_interval_is_a_usage_error(value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        failoverctl.main(["watch", "--interval", value, "--socket", "/nonexistent.sock"])
    assert exited.value.code == os.EX_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == f"failoverctl watch: argument --interval: {message}"


def test_nothing_to_watch_at_the_start_exits_as_status_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.sock"
    assert failoverctl.main(["watch", "--socket", str(missing)]) == os.EX_UNAVAILABLE
    assert capsys.readouterr().err == f"failoverctl: no control socket at {missing}: is the daemon running?\n"


# --- the program under a real terminal, watching a real heartbeatd ------------------------------


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=WAIT) == 0, self.log.read_text()


@pytest.fixture
def heartbeatd(tmp_path: Path) -> Iterator[Daemon]:
    """A real heartbeatd on loopback (it sends to itself), its control socket in ``tmp_path``."""
    sock = tmp_path / "m.sock"
    command = [sys.executable, "-m", "failoverd.programs.heartbeatd", "-d", "-p", str(free_port()),
               "--control-socket", str(sock), "--pid-file", str(tmp_path / "m.pid"),
               "--state-dir", str(tmp_path / "state"), LOOPBACK]
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    log = tmp_path / "heartbeatd.stderr"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, env=env, stderr=stderr)
    daemon = Daemon(process, sock, log)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert process.poll() is None, f"heartbeatd exited {process.returncode}: {log.read_text()}"
            try:
                control.request(sock, "ping", timeout=1.0)
                break
            except control.ControlError:
                assert time.monotonic() < deadline, f"heartbeatd did not answer within {WAIT} s: {log.read_text()}"
                time.sleep(0.05)
        yield daemon
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)


def watch_command(sock: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "failoverd.programs.failoverctl", "watch", "--socket", str(sock),
            "--interval", "0.2", *options]


def terminal_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env.update({"TERM": "xterm-256color", **changes})
    return env


def spawn_in_shell(command: list[str], env: dict[str, str]) -> tuple[pexpect.spawn, io.BytesIO]:
    """``command`` run by sh on a new 40x120 pty, and everything the pty shows.

    After it, the shell prints its exit status and the terminal's settings (``stty -a``).
    """
    # The shell catches SIGINT (a trap, so the program starts with the default
    # handler, not with it ignored) to live on after Ctrl-C and report.
    script = "trap : INT; " + shlex.join(command) + '; echo "watch exited $?"; stty -a'
    child = pexpect.spawn("/bin/sh", ["-c", script], env=env, dimensions=(40, 120), timeout=WAIT)
    shown = io.BytesIO()
    child.logfile_read = shown
    return child, shown


def changing(child: pexpect.spawn | PopenSpawn, pattern: bytes, first: bytes) -> bytes:
    """Read on until ``pattern``'s group differs from ``first``; each read bounded by the child's timeout."""
    for _ in range(1000):
        child.expect(pattern)
        if child.match.group(1) != first:
            return child.match.group(1)
    raise AssertionError(f"{pattern!r} stayed at {first!r} for 1000 screens")


_SGR = re.compile(rb"\x1b\[([0-9;]*)m")


def colour_codes(out: str | bytes) -> list[int]:
    """The SGR parameters in ``out`` that set a colour (foreground, background, 256 or true colour)."""
    raw = out.encode() if isinstance(out, str) else out
    found = []
    for match in _SGR.finditer(raw):
        for param in filter(None, match.group(1).split(b";")):
            n = int(param)
            if 30 <= n <= 49 or 90 <= n <= 107:
                found.append(n)
    return found


STATE_AGE = rb"holding for (\d+\.\d) s"
SILENT_FOR = rb"NOT ANSWERING since \d\d:\d\d:\d\d \(for (\d+\.\d) s\)"
ENTER_ALTERNATE_SCREEN, LEAVE_ALTERNATE_SCREEN, SHOW_CURSOR = b"\x1b[?1049h", b"\x1b[?1049l", b"\x1b[?25h"


def test_the_live_view_refreshes_says_when_the_daemon_is_gone_and_ctrl_c_restores_the_terminal(
    heartbeatd: Daemon,
) -> None:
    child, shown = spawn_in_shell(watch_command(heartbeatd.socket), terminal_env())
    try:
        child.expect(re.escape(ENTER_ALTERNATE_SCREEN))
        child.expect(re.escape(f"heartbeatd at {heartbeatd.socket}".encode()))
        child.expect(STATE_AGE)
        age = child.match.group(1)
        # Keys typed over the view are not echoed onto it.
        assert child.getecho() is False
        # It refreshes: the state's age moves on from one screen to a later one.
        assert float(changing(child, STATE_AGE, age)) > float(age)
        child.expect(rb"last changes")
        assert re.search(rb"paths\s+none", _SGR.sub(b"", shown.getvalue())), "a master has no paths"

        heartbeatd.stop()
        # Once it has exited (its socket removed with it), every screen says so ...
        child.expect(rb"no control socket at")
        child.expect(SILENT_FOR)
        silent = child.match.group(1)
        # ... and it keeps polling: later screens still say so, for longer.
        assert float(changing(child, SILENT_FOR, silent)) > float(silent)
        assert b"Traceback" not in shown.getvalue()

        child.sendintr()
        exits_0_with_the_terminal_restored(child)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_sigterm_ends_the_live_view_as_ctrl_c_does(heartbeatd: Daemon) -> None:
    child, _ = spawn_in_shell(watch_command(heartbeatd.socket), terminal_env())
    try:
        child.expect(STATE_AGE)
        assert child.getecho() is False
        (watcher,) = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
        os.kill(int(watcher), signal.SIGTERM)
        exits_0_with_the_terminal_restored(child)
    finally:
        child.close(force=True)


def exits_0_with_the_terminal_restored(child: pexpect.spawn) -> None:
    child.expect(rb"watch exited (\d+)")
    assert child.match.group(1) == b"0"
    leaving = child.before
    assert LEAVE_ALTERNATE_SCREEN in leaving, "the alternate screen is left (the shell's screen is back)"
    assert SHOW_CURSOR in leaving, "the cursor is shown again"
    assert b"Traceback" not in leaving
    child.expect(pexpect.EOF)
    settings = child.before.decode()
    assert re.search(r"(?<![-\w])echo(?!\w)", settings), f"echo is back on: {settings}"
    assert re.search(r"(?<![-\w])icanon(?!\w)", settings), f"line editing is still on: {settings}"


def test_no_color_is_obeyed_on_a_terminal(heartbeatd: Daemon) -> None:
    child, shown = spawn_in_shell(watch_command(heartbeatd.socket), terminal_env(NO_COLOR="1"))
    try:
        child.expect(STATE_AGE)
        changing(child, STATE_AGE, child.match.group(1))
        child.sendintr()
        child.expect(rb"watch exited 0")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    seen = shown.getvalue()
    assert ENTER_ALTERNATE_SCREEN in seen and LEAVE_ALTERNATE_SCREEN in seen, "still the live view"
    assert colour_codes(seen) == []


def test_a_dumb_terminal_gets_plain_snapshots_one_after_another(heartbeatd: Daemon) -> None:
    child, shown = spawn_in_shell(watch_command(heartbeatd.socket), terminal_env(TERM="dumb"))
    try:
        child.expect(STATE_AGE)
        changing(child, STATE_AGE, child.match.group(1))
        child.sendintr()
        child.expect(rb"watch exited 0")
        seen = shown.getvalue()[: -len(child.after)]
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert b"\x1b" not in seen, "no cursor movement, no alternate screen, no styles"
    assert seen.count(f"heartbeatd at {heartbeatd.socket}, answered at ".encode()) >= 2, "one snapshot after another"


def test_piped_output_gets_one_plain_snapshot_per_poll_and_sigint_exits_0(heartbeatd: Daemon) -> None:
    child = PopenSpawn(watch_command(heartbeatd.socket), env=terminal_env(), timeout=WAIT)
    try:
        snapshots = []
        for _ in range(3):
            child.expect(b"\n\n")  # each snapshot ends in a blank line
            snapshots.append(child.before.decode().splitlines())
        child.kill(signal.SIGINT)
        child.expect(pexpect.EOF)
        rest = child.before
        status = child.proc.wait(timeout=WAIT)
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(timeout=WAIT)
        child.proc.stdin.close()
        child.proc.stdout.close()
    assert status == 0
    for snapshot in snapshots:
        assert snapshot[0].startswith(f"heartbeatd at {heartbeatd.socket}, answered at "), snapshot
        assert re.fullmatch(r"state\s+holding for \d+\.\d s \(since \d\d:\d\d:\d\d\)", line_of(snapshot, "state"))
        assert all(line == line.rstrip() and "\x1b" not in line for line in snapshot)
    assert len({line_of(s, "state") for s in snapshots}) > 1, "each snapshot is a new answer"
    assert b"Traceback" not in rest
