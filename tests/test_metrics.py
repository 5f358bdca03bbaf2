"""Prometheus metrics, scraped over real TCP from daemons running in-process.

Testing charter: as test_runtime_daemons (loopback only, a random high port,
the host's addresses replaced by its in-memory system, the real clock under a
hard ``fail_after``); every scrape is a real HTTP request to the daemon's own
listener, and its text is parsed by prometheus_client's own parser. Hooks are
real scripts run by the real hook runner; the bad-option diagnostics come
from the real programs.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from test_options import netns, run  # noqa: F401 - netns is a fixture
from test_runtime_daemons import LOOPBACK, VIP, backup_config, free_port

from failoverd.cli.config import ListenAddress, MasterConfig
from failoverd.cli.exitcodes import EX_CONFIG, EX_USAGE, ProgramError
from failoverd.cli.options import parse_backup, parse_master
from failoverd.core import wire
from failoverd.core.actions import Acquire, AcquireDone
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing
from failoverd.runtime import backup, master, metrics
from failoverd.runtime.memory import MemorySystem
from failoverd.runtime.shell import CoreShell
from failoverd.runtime.udp import HeartbeatSocket
from failoverd.system.arp import Announcer
from failoverd.system.hooks import HookRunner
from failoverd.system.namespace import in_netns
from failoverd.system.netlink import AddressManager
from failoverd.system.takeover import Takeover

LISTEN = ListenAddress(IPv4Address(LOOPBACK), 0)  # port 0: the kernel picks; the daemon says which
KEY = b"0123456789abcdef0123"


# --- scraping ------------------------------------------------------------------------------------


async def request(port: int, raw: bytes) -> bytes:
    """Send ``raw`` to the metrics port and read the whole answer (the server closes)."""
    stream = await trio.open_tcp_stream(LOOPBACK, port)
    async with stream:
        await stream.send_all(raw)
        answer = bytearray()
        while chunk := await stream.receive_some(65536):
            answer += chunk
    return bytes(answer)


def split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


class Scrape:
    """One parsed scrape: ``value(name, **labels)`` is a sample's value (None if absent)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float | None:
        for family in self.families.values():
            for s in family.samples:
                if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return None


async def scrape(port: int) -> Scrape:
    status, headers, body = split(await request(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    assert status == 200, body
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(headers["content-length"]) == len(body)
    return Scrape(body.decode())


async def scrape_until(port: int, done: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until ``done`` holds (the test's own deadline bounds the wait)."""
    while True:
        result = await scrape(port)
        if done(result):
            return result
        await trio.sleep(0.02)


@asynccontextmanager
async def running(serve: Callable[..., Awaitable[int]], config: Any, system: Any) -> AsyncIterator[dict[str, Any]]:
    """A daemon in-process; yields what it reports as started; SIGTERM and a 0 exit at the end."""
    result: list[int] = []
    async with trio.open_nursery() as nursery:

        async def daemon(task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED) -> None:
            result.append(await serve(config, system=system, task_status=task_status))

        started = await nursery.start(daemon)
        yield started
        os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    os.chmod(path, 0o600)
    return path


def master_config(tmp_path: Path, **overrides: Any) -> MasterConfig:
    values: dict[str, Any] = dict(
        targets=(IPv4Address(LOOPBACK),), port=free_port(), run_mode="debug", interval=0.05,
        pid_file=tmp_path / "m.pid", control_socket=tmp_path / "m.sock", state_dir=tmp_path / "state",
        hook_dir=tmp_path / "hooks", notify_command="/bin/true", metrics_listen=LISTEN,
    )
    values.update(overrides)
    return MasterConfig(**values)


# --- the backup ----------------------------------------------------------------------------------


@pytest.mark.trio
async def test_backup_metrics_follow_heartbeats_a_takeover_and_the_release(tmp_path: Path) -> None:
    config = backup_config(tmp_path, free_port(), metrics_listen=LISTEN)
    system = MemorySystem()
    with trio.fail_after(20):
        async with running(backup.serve, config, system) as started:
            port = started["metrics_port"]
            first = await scrape(port)
            assert first.value("failoverd_info", role="backup", mode="legacy") == 1
            assert first.value("failoverd_state", role="backup", state="monitoring") == 1
            assert first.value("failoverd_state", role="backup", state="failed_over") == 0
            assert first.value("failoverd_become_master_total") == 0
            assert first.value("failoverd_detection_latency_seconds_count") == 0
            assert first.value("failoverd_datagrams_rejected_total", reason="message") == 0
            assert first.value("failoverd_advertisements_received_total", path="lo") is None
            sender = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sender:
                for _ in range(3):
                    await sender.sendto(b"heartbeat", (LOOPBACK, config.port))
                await sender.sendto(b"not a heartbeat", (LOOPBACK, config.port))
                heard = await scrape_until(
                    port, lambda s: s.value("failoverd_datagrams_rejected_total", reason="message") == 1
                )
                assert heard.value("failoverd_advertisements_received_total", path="lo") == 3
                assert heard.value("failoverd_path_healthy", path="lo") == 1
                assert heard.value("failoverd_path_last_heard_age_seconds", path="lo") >= 0
                # Silence: suspect, a silent probe, the takeover.
                taken = await scrape_until(
                    port, lambda s: s.value("failoverd_state", role="backup", state="failed_over") == 1
                )
                assert taken.value("failoverd_become_master_total") == 1
                assert taken.value("failoverd_state_transitions_total", **{"from": "suspect", "to": "acquiring"}) == 1
                assert taken.value("failoverd_addresses_held") == 1
                assert taken.value("failoverd_probes_total", result="silent") == 1
                assert taken.value("failoverd_address_changes_total", action="acquire", result="done") == 1
                assert taken.value("failoverd_action_duration_seconds_count", action="probe") == 1
                assert taken.value("failoverd_action_duration_seconds_count", action="acquire") == 1
                # One detection, counted from the last heartbeat: never sooner than the failure timeout.
                assert taken.value("failoverd_detection_latency_seconds_count") == 1
                assert taken.value("failoverd_detection_latency_seconds_sum") >= config.timing.fail_after
                assert taken.value("failoverd_release_master_total") == 0
                # The master is back: released at once.
                await sender.sendto(b"heartbeat", (LOOPBACK, config.port))
                back = await scrape_until(port, lambda s: s.value("failoverd_release_master_total") == 1)
                assert back.value("failoverd_advertisements_received_total", path="lo") == 4
                released = await scrape_until(
                    port, lambda s: s.value("failoverd_address_changes_total", action="release", result="done") == 1
                )
                assert released.value("failoverd_action_duration_seconds_count", action="release") == 1


@pytest.mark.trio
async def test_a_forged_heartbeat_is_counted_as_a_bad_mac(tmp_path: Path) -> None:
    config = backup_config(tmp_path, free_port(), metrics_listen=LISTEN, key_file=key_file(tmp_path),
                           timing=Timing(interval=5.0))  # no takeover while the test runs
    forger = wire.Sealer(wire.Key(b"not-the-shared-key-0123"), wire.ROLE_MASTER, 1, 5.0, trio.current_time())
    with trio.fail_after(15):
        async with running(backup.serve, config, MemorySystem()) as started:
            port = started["metrics_port"]
            before = await scrape(port)
            assert before.value("failoverd_info", role="backup", mode="authenticated") == 1
            assert before.value("failoverd_datagrams_rejected_total", reason="mac") == 0
            sender = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sender:
                await sender.sendto(forger.seal(trio.current_time(), holds=True), (LOOPBACK, config.port))
            after = await scrape_until(port, lambda s: s.value("failoverd_datagrams_rejected_total", reason="mac") == 1)
            assert after.value("failoverd_datagrams_rejected_total", reason="replay") == 0
            assert after.value("failoverd_advertisements_received_total", path="lo") is None
            assert after.value("failoverd_state", role="backup", state="monitoring") == 1


# --- the master ----------------------------------------------------------------------------------


@pytest.mark.trio
async def test_heartbeatd_metrics_count_what_it_sends_and_what_it_refuses(tmp_path: Path) -> None:
    config = master_config(tmp_path)
    with trio.fail_after(15):
        async with running(master.serve, config, MemorySystem()) as started:
            port = started["metrics_port"]
            first = await scrape(port)
            assert first.value("failoverd_info", role="master", mode="legacy") == 1
            assert first.value("failoverd_state", role="master", state="holding") == 1
            assert first.value("failoverd_peer_last_heard_age_seconds") is None  # never heard a backup
            sent = first.value("failoverd_advertisements_sent_total", target=LOOPBACK) or 0
            # Its heartbeats to loopback come back to its own port: a legacy
            # master expects nothing there, so each is refused as unexpected.
            later = await scrape_until(
                port, lambda s: s.value("failoverd_advertisements_sent_total", target=LOOPBACK) >= sent + 3
                and s.value("failoverd_datagrams_rejected_total", reason="unexpected") >= 1
            )
            assert later.value("failoverd_become_master_total") == 0
            assert later.value("failoverd_peer_silent") == 0
            assert later.value("failoverd_undeclared_inputs_total") == 0  # no input found the table wanting


def feed(meter: metrics.Meter, now: float, actions: list) -> list:
    """Play the shell's part: the meter sees each action as the executor would dispatch it."""
    for action in actions:
        meter.follow(now, action)
    return actions


def transmitted(actions: list) -> bytes:
    return next(a.payload for a in actions if type(a).__name__ == "Transmit")


@pytest.mark.trio
async def test_a_managing_master_measures_its_failback_gap_from_the_backups_release() -> None:
    vip = parse_triplet("eth0:10.9.2.100/24")
    core = Master(MasterSettings(["10.9.1.2"], 0.1, managed=[vip]), 0.0, key=KEY, epoch=1)
    peer = Detector(DetectorSettings([vip], Timing(interval=0.1), master="10.9.1.1"), 0.0, key=KEY, epoch=1)
    meter = metrics.Meter("master", core)
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:  # not used to send: the test carries the frames
        render = meter.collector(CoreShell(core, system=MemorySystem(), transport=sock, notifier=None), sock)
        # The handshake of a restarted master: heartbeat, the backup's status (it
        # holds nothing), and the master, hearing that, acquires.
        # The backup counts the second heartbeat only (the first acknowledged
        # none of its epoch), and only a status answering a counted one starts
        # the failback.
        heartbeat = transmitted(feed(meter, 0.0, core.handle_timer(0.0)))
        status = transmitted(peer.receive_datagram(0.01, heartbeat, "10.9.1.1", "eth1"))
        answer = transmitted(feed(meter, 0.015, core.receive_datagram(0.015, status, "10.9.1.2", "eth1")))
        status = transmitted(peer.receive_datagram(0.018, answer, "10.9.1.1", "eth1"))
        actions = feed(meter, 0.02, core.receive_datagram(0.02, status, "10.9.1.2", "eth1"))
        assert any(isinstance(a, Acquire) for a in actions) and core.state == "acquiring"
        meter.result(0.27, AcquireDone(acquired=frozenset({vip})))
        feed(meter, 0.27, core.action_done(0.27, AcquireDone(acquired=frozenset({vip}))))
        assert core.state == "holding"
        result = Scrape(render().decode())
        assert result.value("failoverd_failback_gap_seconds_count") == 1
        assert result.value("failoverd_failback_gap_seconds_sum") == pytest.approx(0.25)
        assert result.value("failoverd_action_duration_seconds_sum", action="acquire") == pytest.approx(0.25)
        assert result.value("failoverd_become_master_total") == 1
        assert result.value("failoverd_advertisements_received_total", path="eth1") == 2  # both statuses
        assert result.value("failoverd_peer_last_heard_age_seconds") is not None
        # (The collector reads the real clock, this test's core a made-up one: only what it said is compared.)
        assert result.value("failoverd_backup_holds", priority="0") == 0
        assert result.value("failoverd_backup_alive", priority="0") is not None
        assert result.value("failoverd_backup_released", priority="0") is not None


@pytest.mark.trio
async def test_an_arp_conflict_is_counted_and_the_backups_yield_is_a_release() -> None:
    core = Detector(DetectorSettings([VIP], Timing(interval=0.1)), trio.current_time(), held=[VIP])  # adopted: failed_over
    meter = metrics.Meter("backup", core)
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        shell = CoreShell(core, system=MemorySystem(), transport=sock, notifier=None,
                          on_action=meter.follow, on_result=meter.result)
        render = meter.collector(shell, sock)
        before = Scrape(render().decode())
        assert (before.value("failoverd_conflicts_total"), before.value("failoverd_release_master_total")) == (0, 0)
        shell.conflict(frozenset({VIP}))  # what the ARP watcher reports: another host claims it
        after = Scrape(render().decode())
    assert after.value("failoverd_conflicts_total") == 1
    assert after.value("failoverd_release_master_total") == 1
    assert after.value("failoverd_state", role="backup", state="recovering") == 1
    assert after.value("failoverd_state_transitions_total", **{"from": "failed_over", "to": "recovering"}) == 1


# --- hooks ---------------------------------------------------------------------------------------


def hook(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(stat.S_IRWXU)


@pytest.mark.trio
async def test_hook_results_and_durations_are_recorded_from_the_real_hook_runner(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    address = hooks / str(VIP.address)
    address.mkdir(parents=True, mode=0o755)
    hooks.chmod(0o755)
    hook(address, "PreAcq", "exit 0")
    hook(address, "PostAcq1", "exit 3")
    hook(address, "PostAcq2", "sleep 30")
    hook(address, "Test", "exit 1")

    # The host's real System port: its hooks report to whoever observes them (the meter).
    host = Takeover(AddressManager(), HookRunner(hooks, timeout=0.5, kill_grace=0.5), Announcer())
    core = Detector(DetectorSettings([VIP], Timing(interval=0.1)), trio.current_time())
    meter = metrics.Meter("backup", core, host)
    runner = host.hooks
    with trio.fail_after(15), HeartbeatSocket.bind(0, LOOPBACK) as sock:
        render = meter.collector(CoreShell(core, system=MemorySystem(), transport=sock, notifier=None), sock)
        assert await runner.test("acquire", VIP, [VIP]) is False
        assert [r.succeeded for r in await runner.run_phase("PreAcq", "acquire", VIP, [VIP])] == [True]
        post = await runner.run_phase("PostAcq", "acquire", VIP, [VIP])
        assert [r.timed_out for r in post] == [False, True]
        assert await runner.run_phase("PreRel", "release", VIP, [VIP]) == []
        result = Scrape(render().decode())
    assert result.value("failoverd_hooks_total", phase="Test", result="refused") == 1
    assert result.value("failoverd_hooks_total", phase="PreAcq", result="ok") == 1
    assert result.value("failoverd_hooks_total", phase="PostAcq", result="failed") == 1
    assert result.value("failoverd_hooks_total", phase="PostAcq", result="timeout") == 1
    assert result.value("failoverd_hook_duration_seconds_count", phase="PostAcq") == 1
    assert result.value("failoverd_hook_duration_seconds_sum", phase="PostAcq") >= 0.5  # the timeout
    assert result.value("failoverd_hook_duration_seconds_count", phase="PreRel") == 0  # no hook, nothing ran


# --- the HTTP side -------------------------------------------------------------------------------


@asynccontextmanager
async def endpoint(text: bytes = b"# a scrape\n") -> AsyncIterator[metrics.MetricsEndpoint]:
    with metrics.bind(LISTEN) as listening:
        assert listening is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(listening.serve, lambda: text)
            yield listening
            nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GET /metrics HTTP/1.0\r\n\r\n", 200),
        (b"GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", 200),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 404),
        (b"GET /metrics/extra HTTP/1.1\r\nHost: a\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 405),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /metrics\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost a\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: \x01\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: \xff\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /metrics HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431),
    ],
)
async def test_only_a_get_of_metrics_is_answered_and_everything_else_gets_its_status(raw: bytes, status: int) -> None:
    with trio.fail_after(10):
        async with endpoint() as listening:
            got, headers, body = split(await request(listening.port, raw))
    assert got == status
    assert headers["connection"] == "close" and int(headers["content-length"]) == len(body)
    if status == 200:
        assert body == b"# a scrape\n"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


@pytest.mark.trio
async def test_head_gets_the_headers_without_the_body() -> None:
    with trio.fail_after(10):
        async with endpoint() as listening:
            got, headers, body = split(await request(listening.port, b"HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n"))
            assert (got, headers["content-length"], body) == (200, str(len(b"# a scrape\n")), b"")
            got, headers, body = split(await request(listening.port, b"HEAD /other HTTP/1.1\r\nHost: a\r\n\r\n"))
            assert (got, body) == (404, b"") and int(headers["content-length"]) > 0


@pytest.mark.trio
async def test_an_ipv6_loopback_address_is_served() -> None:
    try:
        listening_cm = metrics.bind(ListenAddress(IPv6Address("::1"), 0))
    except ProgramError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    with trio.fail_after(10), listening_cm as listening:
        assert listening is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(listening.serve, lambda: b"# six\n")
            stream = await trio.open_tcp_stream("::1", listening.port)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n")
                answer = bytearray()
                while chunk := await stream.receive_some(4096):
                    answer += chunk
            nursery.cancel_scope.cancel()
    assert split(bytes(answer))[0] == 200 and split(bytes(answer))[2] == b"# six\n"


@pytest.mark.netns
def test_a_non_loopback_address_is_served_with_a_warning_and_a_missing_one_is_refused(
    netns: str,  # noqa: F811 - the fixture imported from test_options
    caplog: pytest.LogCaptureFixture
) -> None:
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, timeout=30)
    subprocess.run(["ip", "-n", netns, "addr", "add", "10.9.0.2/24", "dev", "lo"], check=True, timeout=30)
    caplog.set_level("INFO", logger="failoverd")
    wide = ListenAddress(IPv4Address("10.9.0.2"), 9694)
    with in_netns(netns, lambda: metrics.bind(wide)) as listening:
        assert listening is not None and listening.port == 9694
    assert any(r.levelname == "WARNING" and "10.9.0.2:9694/metrics, which is not a loopback address" in r.getMessage()
               for r in caplog.records)
    elsewhere = ListenAddress(IPv4Address("10.9.1.3"), 9694)
    with pytest.raises(ProgramError) as caught:
        in_netns(netns, lambda: metrics.bind(elsewhere))
    assert caught.value.status == EX_CONFIG
    assert str(caught.value) == (
        "cannot listen for metrics on 10.9.1.3:9694: Cannot assign requested address "
        "(no interface of this host has that address)"
    )


@pytest.mark.trio
async def test_a_slowloris_client_neither_holds_the_daemon_nor_stops_a_real_scrape(tmp_path: Path) -> None:
    config = master_config(tmp_path)
    with trio.fail_after(20):
        async with running(master.serve, config, MemorySystem()) as started:
            port = started["metrics_port"]
            slow = await trio.open_tcp_stream(LOOPBACK, port)
            answer = bytearray()
            sent = 0
            async with slow, trio.open_nursery() as nursery:

                async def dribble() -> None:
                    # A header that never ends, one byte at a time.
                    nonlocal sent
                    await slow.send_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                    while True:
                        try:
                            await slow.send_all(b"y")
                        except trio.BrokenResourceError:
                            return
                        sent += 1
                        await trio.sleep(0.05)

                async def listen() -> None:
                    try:
                        while chunk := await slow.receive_some(4096):
                            answer.extend(chunk)
                    except trio.BrokenResourceError:
                        pass  # reset after the answer: it kept sending to a closed connection
                    nursery.cancel_scope.cancel()

                nursery.start_soon(dribble)
                nursery.start_soon(listen)
                while sent < 3:
                    await trio.sleep(0.01)
                real = await scrape(port)
                assert real.value("failoverd_state", role="master", state="holding") == 1
                assert not answer, "the slow client was answered before it sent its request"
    # The server gave up on it: a 408 and a closed connection, while it still dribbled.
    assert split(bytes(answer))[0] == 408


@pytest.mark.trio
async def test_a_flood_of_idle_connections_does_not_stop_a_real_scrape(tmp_path: Path) -> None:
    config = master_config(tmp_path)
    with trio.fail_after(20):
        async with running(master.serve, config, MemorySystem()) as started:
            port = started["metrics_port"]
            flood = [await trio.open_tcp_stream(LOOPBACK, port) for _ in range(3 * metrics.MAX_CONNECTIONS)]
            try:
                real = await scrape(port)
                assert real.value("failoverd_state", role="master", state="holding") == 1
                # The oldest were closed to make room, without an answer.
                assert await flood[0].receive_some(4096) == b""
            finally:
                for stream in flood:
                    await stream.aclose()


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.trio
async def test_an_address_that_cannot_be_listened_on_stops_the_daemon_before_it_starts(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        busy = ListenAddress(IPv4Address(LOOPBACK), taken.getsockname()[1])
        config = backup_config(tmp_path, free_port(), metrics_listen=busy)
        system = MemorySystem()
        with trio.fail_after(10), pytest.raises(ProgramError) as caught:
            await backup.serve(config, system=system)
    assert caught.value.status == EX_CONFIG
    assert str(caught.value) == f"cannot listen for metrics on {busy}: Address already in use (another program listens there)"
    assert system.log == [] and not config.control_socket.exists()


@pytest.mark.parametrize(
    "program, value, diagnostic",
    [
        ("failoverd", "::1:9694", "an IPv6 address goes in brackets: [::1]:9694"),
        ("failoverd", "localhost:9694", "'localhost' is not an IPv4 or IPv6 address (host names are not looked up)"),
        ("heartbeatd", "127.0.0.1:0", "port '0' is not a number from 1 to 65535"),
        ("heartbeatd", "[127.0.0.1]:9694", "brackets are for IPv6 addresses only: 127.0.0.1:9694"),
        ("heartbeatd", "224.0.0.1:9694", "224.0.0.1 is not an address this host can listen on"),
    ],
)
def test_a_bad_metrics_listen_value_gets_its_specific_diagnostic(program: str, value: str, diagnostic: str) -> None:
    positional = ["10.100.0.10", "en0:192.13.2.2"] if program == "failoverd" else ["10.0.0.255"]
    done = run(program, ["--metrics-listen", value, *positional])
    assert done.returncode == EX_USAGE
    assert done.stderr.startswith(f"{program}: argument --metrics-listen: invalid value {value!r}: {diagnostic}\n")


def test_the_configuration_as_understood_says_where_metrics_are_served() -> None:
    served = parse_master(["--metrics-listen", "[::1]:9694", "10.0.0.255"])
    assert "metrics: http://[::1]:9694/metrics" in served.describe()
    assert "metrics: off (no --metrics-listen)" in parse_master(["10.0.0.255"]).describe()
    short = parse_backup(["--metrics-listen", "9694", "10.100.0.10", "en0:192.13.2.2"])
    assert short.metrics_listen == ListenAddress(IPv4Address("127.0.0.1"), 9694)
    wide = parse_backup(["--metrics-listen", "0.0.0.0:9694", "10.100.0.10", "en0:192.13.2.2"])
    assert any("not loopback" in line for line in wide.describe())


@pytest.mark.trio
async def test_a_backup_kept_from_taking_over_by_its_peers_master_heard_says_so(mock_clock: Any) -> None:
    """failoverd_master_unheard (several backups): 1 while a peer's "master heard" keeps the backup back
    (the master's heartbeats to it lost one way on the simulated network), 0 once it hears the master.
    Trio's clock is moved with the simulated network's, which is what the core's times are in."""
    from _backups_sim import MASTER as SIM_MASTER
    from test_core_backups import steady

    net = steady()
    high = net.backups["high"]
    core = high.core
    assert core is not None

    async def unheard() -> float | None:
        mock_clock.jump(net.now - trio.current_time())
        meter = metrics.Meter("backup", core)
        with HeartbeatSocket.bind(0, LOOPBACK) as sock:
            shell = CoreShell(core, system=MemorySystem(), transport=sock, notifier=None)
            scraped = Scrape(meter.collector(shell, sock)().decode())
        return scraped.value("failoverd_master_unheard")

    assert await unheard() == 0
    net.drop = lambda source, destination, payload: (source, destination) == (SIM_MASTER, high.address)
    net.run_until(net.now + 10)
    assert net.state("high") in {"deferring", "contested"} and await unheard() == 1
    net.drop = lambda source, destination, payload: False
    net.run_until(net.now + 2)
    assert net.state("high") == "monitoring" and await unheard() == 0
