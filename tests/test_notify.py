"""NotifyFailover and the daemon-side notifier against a real SMTP server.

Testing charter: the SMTP server is aiosmtpd in this process, on 127.0.0.1
with a port the kernel chose; nothing leaves loopback. Every run of the
program has a timeout, every child process is accounted for.
"""

from __future__ import annotations

import email
import email.policy
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from aiosmtpd.controller import Controller

from failoverd.core.actions import Alarm, Notify
from failoverd.core.addresses import parse_triplet
from failoverd.programs import notifyfailover
from failoverd.system import mail

NOTIFY = [sys.executable, "-m", "failoverd.programs.notifyfailover"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what it is sent and can refuse recipients."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


class _DynamicPortController(Controller):
    # aiosmtpd connects to self.port to check the server is up; with port 0
    # we first learn the port the kernel picked.
    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    recorder: Recorder
    port: int


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    recorder = Recorder()
    controller = _DynamicPortController(recorder, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield SmtpServer(recorder, controller.port)
    finally:
        controller.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in (notifyfailover.ENV_RECIPIENT, notifyfailover.ENV_SMTP_HOST, notifyfailover.ENV_SMTP_PORT):
        monkeypatch.delenv(name, raising=False)
    return {k: v for k, v in os.environ.items()}


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the message ------------------------------------------------------------


def test_down_mail_reaches_each_recipient_with_subject_and_body(smtp_server, clean_env, monkeypatch):
    monkeypatch.setenv("FAILOVER_EMAIL_RECIPIENT", "ops@example.test, oncall@example.test  backup-admin")
    status = notifyfailover.run(
        ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port), "--peer", "10.0.0.1",
         "down", "192.0.2.10", "192.0.2.11"]
    )
    assert status == 0
    [got] = smtp_server.recorder.received
    host = socket.gethostname()
    assert got.rcpt_tos == ["ops@example.test", "oncall@example.test", "backup-admin"]
    assert got.mail_from == f"failoverd@{host}"
    msg = got.message
    assert msg["From"] == f"failoverd@{host}"
    assert msg["To"] == "ops@example.test, oncall@example.test, backup-admin"
    assert "DOWN" in msg["Subject"] and "192.0.2.10, 192.0.2.11" in msg["Subject"]
    assert msg["Date"] and msg["Message-ID"].endswith(f"@{host}>")
    body = msg.get_content()
    assert "has FAILED" in body
    assert "Peer:      10.0.0.1" in body
    assert "Addresses: 192.0.2.10, 192.0.2.11" in body
    assert f"Host:      {host}" in body
    assert "failoverctl status" in body
    assert msg["Date"].datetime is not None  # a parseable RFC 5322 date


def test_up_mail_goes_to_root_by_default(smtp_server, clean_env):
    status = notifyfailover.run(["--smtp-port", str(smtp_server.port), "--smtp-host", "127.0.0.1", "up", "192.0.2.10"])
    assert status == 0
    [got] = smtp_server.recorder.received
    assert got.rcpt_tos == ["root"]
    assert "UP" in got.message["Subject"]
    assert "AVAILABLE again" in got.message.get_content()


def test_blank_recipient_variable_means_root(smtp_server, clean_env, monkeypatch):
    monkeypatch.setenv("FAILOVER_EMAIL_RECIPIENT", "  ,  ")
    assert notifyfailover.run(["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port), "up", "192.0.2.1"]) == 0
    assert smtp_server.recorder.received[0].rcpt_tos == ["root"]


def test_relay_from_environment(smtp_server, clean_env, monkeypatch):
    monkeypatch.setenv("FAILOVER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("FAILOVER_SMTP_PORT", str(smtp_server.port))
    assert notifyfailover.run(["down", "192.0.2.10"]) == 0
    assert len(smtp_server.recorder.received) == 1


def test_alarm_mode(smtp_server, clean_env):
    status = notifyfailover.run(
        ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port),
         "--alarm", "192.0.2.10 is contested:\nanswered by 52:54:00:12:34:56", "--level", "critical", "192.0.2.10"]
    )
    assert status == 0
    msg = smtp_server.recorder.received[0].message
    assert msg["Subject"].startswith("[failoverd] ALARM (critical) on ")
    assert "192.0.2.10 is contested: answered by 52:54:00:12:34:56" in msg["Subject"]
    body = msg.get_content()
    assert "answered by 52:54:00:12:34:56" in body and "Addresses: 192.0.2.10" in body


def test_dry_run_prints_and_sends_nothing(smtp_server, clean_env, capsys):
    assert notifyfailover.run(["--smtp-port", str(smtp_server.port), "--dry-run", "down", "192.0.2.10"]) == 0
    out = capsys.readouterr().out
    assert "envelope recipients: root" in out and "Subject: [failoverd] peer DOWN: 192.0.2.10" in out
    assert smtp_server.recorder.received == []


def test_ipv6_addresses_are_mailed_in_their_canonical_form(smtp_server, clean_env, capsys):
    argv = ["--smtp-port", str(smtp_server.port), "--dry-run", "--peer", "fe80::1%priv0",
            "down", "2001:db8::10", "192.0.2.10", "2001:DB8:0::9"]
    assert notifyfailover.run(argv) == 0
    out = capsys.readouterr().out
    assert "Addresses: 2001:db8::10, 192.0.2.10, 2001:db8::9" in out
    assert "Peer:      fe80::1%priv0" in out


def test_the_daemon_lists_ipv4_then_ipv6_each_in_numeric_order() -> None:
    from failoverd.core.addresses import parse_triplet
    from failoverd.system.mail import _address_args

    given = [parse_triplet("eth0:2001:db8::10/64"), parse_triplet("eth0:192.0.2.10"), "2001:db8::9", "10.0.0.1"]
    assert _address_args(given) == ["10.0.0.1", "192.0.2.10", "2001:db8::9", "2001:db8::10"]


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["down", "10.1"], "CNode: invalid IP address: '10.1'"),
        (["up", "192.0.2.1", "1.2.3.256"], "CNode: invalid IP address: '1.2.3.256'"),
        (["down", "2001:db8:::1"], "CNode: invalid IP address: '2001:db8:::1'"),
        (["sideways", "192.0.2.1"], "expected 'up' or 'down'"),
        (["down"], "at least one ip_address"),
        ([], "expected 'up' or 'down'"),
        (["--smtp-port", "0", "down", "192.0.2.1"], "invalid SMTP port '0'"),
        (["--smtp-port", "smtp", "down", "192.0.2.1"], "invalid SMTP port 'smtp'"),
        (["--level", "critical", "down", "192.0.2.1"], "--level is only for --alarm"),
        (["--timeout", "0", "down", "192.0.2.1"], "--timeout"),
        (["--bogus", "down", "192.0.2.1"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_64_with_a_specific_message(argv, fragment, clean_env, capsys):
    try:
        status = notifyfailover.run(argv)
    except SystemExit as exc:  # argparse's own errors leave through exit()
        status = exc.code
    assert status == os.EX_USAGE
    assert fragment in capsys.readouterr().err


def test_bad_recipient_in_environment_is_a_configuration_error(clean_env, monkeypatch, capsys):
    monkeypatch.setenv("FAILOVER_EMAIL_RECIPIENT", "ops@example.test <evil>")
    assert notifyfailover.run(["--dry-run", "down", "192.0.2.1"]) == os.EX_CONFIG
    assert "FAILOVER_EMAIL_RECIPIENT: '<evil>'" in capsys.readouterr().err


def test_relay_down_fails_fast_with_status_69(clean_env):
    port = _closed_port()
    done = subprocess.run(
        [*NOTIFY, "--smtp-host", "127.0.0.1", "--smtp-port", str(port), "down", "192.0.2.10"],
        capture_output=True, text=True, timeout=60, env=clean_env,
    )
    assert done.returncode == os.EX_UNAVAILABLE
    assert f"relay 127.0.0.1:{port} refused the connection" in done.stderr


def test_silent_relay_times_out_with_status_75(clean_env):
    # Accepts connections (the kernel's backlog) but never sends a greeting.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        done = subprocess.run(
            [*NOTIFY, "--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--timeout", "0.5", "up", "192.0.2.10"],
            capture_output=True, text=True, timeout=60, env=clean_env,
        )
    assert done.returncode == os.EX_TEMPFAIL
    assert "did not answer within 0.5 s" in done.stderr


@pytest.mark.parametrize(
    ("reply", "status"),
    [("550 5.1.1 no such user", os.EX_UNAVAILABLE), ("451 4.3.0 try again later", os.EX_TEMPFAIL)],
)
def test_refused_recipients_map_to_sysexits(smtp_server, clean_env, monkeypatch, capsys, reply, status):
    smtp_server.recorder.refuse["root"] = reply
    assert notifyfailover.run(["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port), "down", "192.0.2.1"]) == status
    assert f"root: {reply}" in capsys.readouterr().err


def test_partly_refused_recipients_still_fail(smtp_server, clean_env, monkeypatch, capsys):
    monkeypatch.setenv("FAILOVER_EMAIL_RECIPIENT", "ops@example.test gone@example.test")
    smtp_server.recorder.refuse["gone@example.test"] = "550 5.1.1 no such user"
    status = notifyfailover.run(["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port), "down", "192.0.2.1"])
    assert status == os.EX_UNAVAILABLE
    assert smtp_server.recorder.received[0].rcpt_tos == ["ops@example.test"]
    assert "gone@example.test: 550" in capsys.readouterr().err


# --- the daemon-side notifier ------------------------------------------------


@pytest.mark.trio
async def test_notifier_sends_the_core_actions_through_notifyfailover(smtp_server, clean_env):
    env = dict(clean_env, FAILOVER_SMTP_HOST="127.0.0.1", FAILOVER_SMTP_PORT=str(smtp_server.port),
               FAILOVER_EMAIL_RECIPIENT="ops@example.test")
    notifier = mail.Notifier(command=NOTIFY, env=env, timeout=30)
    addresses = frozenset({parse_triplet("eth0:192.0.2.11/24"), parse_triplet("eth0:192.0.2.10")})
    down = await notifier.send(Notify("down", "10.0.0.1", addresses))
    assert down.ok, down.detail
    alarm = await notifier.send(Alarm("critical", "split-brain: the backup holds 192.0.2.10", mail=True))
    assert alarm.ok, alarm.detail
    first, second = smtp_server.recorder.received
    assert first.rcpt_tos == ["ops@example.test"]
    assert "Addresses: 192.0.2.10, 192.0.2.11" in first.message.get_content()
    assert "Peer:      10.0.0.1" in first.message.get_content()
    assert "ALARM (critical)" in second.message["Subject"]


@pytest.mark.trio
async def test_notifier_start_soon_returns_before_the_mail_is_sent(smtp_server, clean_env):
    env = dict(clean_env, FAILOVER_SMTP_HOST="127.0.0.1", FAILOVER_SMTP_PORT=str(smtp_server.port))
    notifier = mail.Notifier(command=NOTIFY, env=env)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            notifier.start_soon(nursery, Notify("up", "10.0.0.1", frozenset({parse_triplet("eth0:192.0.2.10")})))
            # The caller goes on at once: nothing has been delivered yet.
            assert smtp_server.recorder.received == []
    assert len(smtp_server.recorder.received) == 1


@pytest.mark.trio
async def test_notifier_reports_a_relay_that_is_down_without_raising(clean_env, caplog):
    env = dict(clean_env, FAILOVER_SMTP_HOST="127.0.0.1", FAILOVER_SMTP_PORT=str(_closed_port()))
    with trio.fail_after(60):
        outcome = await mail.notify("down", ["192.0.2.10"], command=NOTIFY, env=env)
    assert not outcome.ok and outcome.returncode == os.EX_UNAVAILABLE
    assert "refused the connection" in outcome.detail
    assert any("notification failed" in r.getMessage() for r in caplog.records)


@pytest.mark.trio
async def test_notifier_with_a_missing_command_logs_and_returns(tmp_path):
    outcome = await mail.notify("down", ["192.0.2.10"], command=str(tmp_path / "no-such-program"))
    assert not outcome.ok and outcome.returncode is None
    assert "cannot run" in outcome.detail


class StalledRelay:
    """A relay that accepts every connection and never says a word (no greeting, nothing).

    It counts the connections, and how many were open at once: at each
    accept it first looks for end-of-file on those it has (a client killed
    before the next one connected has closed its socket by then).
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.most_open = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StalledRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self._open:
            conn.close()
        self.listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.1)
            if not ready:
                continue
            conn, _ = self.listener.accept()
            self._open = [c for c in self._open if not self._closed_by_client(c)]
            self._open.append(conn)
            self.accepted += 1
            self.most_open = max(self.most_open, len(self._open))

    @staticmethod
    def _closed_by_client(conn: socket.socket) -> bool:
        try:
            closed = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            closed = True
        if closed:
            conn.close()
        return closed


@pytest.mark.trio
async def test_a_relay_that_stalls_holds_up_one_mail_at_a_time_and_the_overflow_is_dropped_and_counted(
    clean_env, caplog
):
    with StalledRelay() as relay:
        env = dict(clean_env, FAILOVER_SMTP_HOST="127.0.0.1", FAILOVER_SMTP_PORT=str(relay.port))
        notifier = mail.Notifier(command=NOTIFY, env=env, timeout=2.0, max_queued=2)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for n in range(10):
                    notifier.start_soon(nursery, Alarm("error", f"address contested, try {n}", mail=True))
                # Everything beyond the one being sent and the two queued is refused at once.
                assert notifier.dropped == 7
    # One NotifyFailover at a time, each killed at the timeout; never a crowd of them.
    assert relay.accepted == 3
    assert relay.most_open == 1
    assert notifier.dropped == 7
    full = [r.getMessage() for r in caplog.records if "mail queue full" in r.getMessage()]
    assert len(full) == 7 and full[-1].endswith("(7 dropped so far)")


def _alive(pid: int) -> bool:
    """True if ``pid`` is a process that is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.trio
async def test_hanging_command_and_its_children_are_killed_at_the_timeout(tmp_path):
    pids = tmp_path / "pids"
    # The command starts a grandchild that also holds stderr, then hangs.
    script = tmp_path / "hang"
    script.write_text(f"#!/bin/sh\necho $$ > {pids}\nsleep 300 &\necho $! >> {pids}\nwait\n")
    script.chmod(0o755)
    with trio.fail_after(30):
        outcome = await mail.notify("down", ["192.0.2.10"], command=str(script), timeout=1.0)
    assert outcome.timed_out and not outcome.ok
    assert "did not finish within 1 s" in outcome.detail
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    # SIGKILL is delivered at once, but the orphan is reaped by init: allow it a moment.
    for _ in range(100):
        if not any(_alive(pid) for pid in started):
            break
        await trio.sleep(0.05)
    assert [pid for pid in started if _alive(pid)] == []


@pytest.mark.trio
async def test_cancelling_the_caller_kills_the_command(tmp_path):
    pids = tmp_path / "pids"
    script = tmp_path / "hang"
    script.write_text(f"#!/bin/sh\necho $$ > {pids}\nexec sleep 300\n")
    script.chmod(0o755)
    with trio.fail_after(30):
        with trio.move_on_after(1.0):
            await mail.alarm("path quiet", command=str(script), timeout=300)
    pid = int(pids.read_text())
    assert not _alive(pid)


def test_notify_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        trio.run(mail.notify, "sideways", ["192.0.2.1"])


def test_resolve_command():
    assert mail.resolve_command("/opt/site/notify me") == ["/opt/site/notify me"]
    assert mail.resolve_command(["mailer", "--quiet"]) == ["mailer", "--quiet"]
    default = mail.default_notify_command()
    assert Path(default[0]).name in ("NotifyFailover", Path(sys.executable).name)
    with pytest.raises(ValueError):
        mail.resolve_command("")


def test_notify_rejects_a_timeout_that_is_not_positive():
    with pytest.raises(ValueError, match="timeout"):
        trio.run(lambda: mail.notify("down", ["192.0.2.1"], command=["true"], timeout=0))
    with pytest.raises(ValueError, match="timeout"):
        mail.Notifier(timeout=-1)


@pytest.mark.trio
async def test_a_notification_never_starts_before_the_address_change_dispatched_with_it() -> None:
    # The failback: the backup's core asks, in one batch, to notify and to
    # release. The notify command's fork and exec must not come between the
    # heartbeat and the release (docs/benchmarks.md); Trio runs the tasks woken
    # together in a random order, so try it many times and both ways round.
    from failoverd.core.actions import Release, ReleaseDone
    from failoverd.runtime.executor import Executor

    order: list[str] = []

    class Host:
        async def release(self, addresses, on_removed=None):  # type: ignore[no-untyped-def]
            order.append("release")
            return ReleaseDone(released=frozenset(addresses))

    class Recorded(mail.Notifier):
        async def send(self, action):  # type: ignore[no-untyped-def]
            order.append("notify")  # where the command would be started

    addresses = frozenset({parse_triplet("eth0:10.0.0.5/24")})
    for attempt in range(40):
        order.clear()
        executor = Executor(Host(), None, Recorded(), lambda result: None)  # type: ignore[arg-type]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(executor.run)
                notify = Notify("up", "10.0.0.1", addresses)
                actions = [notify, Release(addresses)] if attempt % 2 else [Release(addresses), notify]
                executor.submit(actions)
                while len(order) < 2:
                    await trio.sleep(0.001)
                nursery.cancel_scope.cancel()
        assert order == ["release", "notify"], (attempt, order)
