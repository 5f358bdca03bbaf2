"""Health checks with real processes: the runner, the periodic monitor, and both daemons in-process.

Charter: every check is a real program (coreutils, /bin/sh, scripts the test
writes); every async test runs under ``trio.fail_after`` and waits for
events, never for a time; the daemons run in-process on loopback with the
host's addresses replaced by the in-memory system of test_runtime_daemons
(the one port a test may not touch for real). Checks must be root's to run
(the trust rules), so the tests skip without root.
"""

from __future__ import annotations

import os
import signal
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import trio
from test_hooks import alive
from test_metrics import LISTEN, running, scrape_until
from test_runtime_daemons import LOOPBACK, VIP, backup_config, free_port

from failoverd.analysis.trace import HealthChanged, read_trace
from failoverd.cli.config import CheckCommand, HealthChecks, MasterConfig
from failoverd.core import wire
from failoverd.core.health import Verdict
from failoverd.runtime import backup, control, master
from failoverd.runtime.health import HealthMonitor
from failoverd.runtime.memory import MemorySystem
from failoverd.runtime.udp import HeartbeatSocket
from failoverd.system.checks import CheckRunner, locate, program_problem
from failoverd.system.keyfile import read_key
from failoverd.system.trustedrun import OUTPUT_LIMIT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="checks must be owned by root: run as root")

KEY = b"check-test-key-0123456789abcdef\n"


def command(*argv: str) -> CheckCommand:
    return CheckCommand(" ".join(argv), tuple(argv))


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def here(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


# --- one run ----------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_exit_zero_passes_and_anything_else_fails_with_what_it_said(here: Path) -> None:
    runner = CheckRunner("backup", timeout=10)
    with trio.fail_after(20):
        assert (await runner.run(command("true"))).passed
        failed = await runner.run(command("sh", "-c", "echo 'curl: (7) Failed to connect'; exit 7"))
        killed = await runner.run(command("sh", "-c", "kill -KILL $$"))
    assert not failed.passed and failed.detail == "exited 7: curl: (7) Failed to connect"
    assert not killed.passed and killed.detail == "killed by signal SIGKILL"


@pytest.mark.trio
async def test_a_check_that_cannot_run_is_a_failure_not_a_success(here: Path) -> None:
    """keepalived counts a script it cannot execute as a success (its issue #2126); we do not."""
    garbage = here / "not-a-program"
    garbage.write_bytes(b"\x7fELF but not really\x00\x01")
    garbage.chmod(0o755)
    plain = here / "not-executable"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    runner = CheckRunner("master", timeout=10)
    with trio.fail_after(20):
        missing = await runner.run(command("no-such-check-program-4f2a"))
        gone = await runner.run(command("/opt/no-such-dir-4f2a/check"))
        unexecutable = await runner.run(command(str(garbage)))
        not_executable = await runner.run(command(str(plain)))
    assert not missing.passed
    assert missing.detail.startswith("could not run: no-such-check-program-4f2a is not on the hooks' PATH (/usr/local/sbin:")
    assert not gone.passed and gone.detail.startswith("could not run: refused: cannot open /opt/no-such-dir-4f2a")
    assert not unexecutable.passed and "Exec format error" in unexecutable.detail
    assert not not_executable.passed and "not executable" in not_executable.detail


@pytest.mark.trio
async def test_a_check_in_a_directory_others_can_write_is_refused_and_fails(here: Path) -> None:
    shared = here / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    check = script(shared / "check-web", "exit 0")
    with trio.fail_after(20):
        result = await CheckRunner("backup", timeout=10).run(command(str(check)))
    assert not result.passed
    assert result.detail == f"could not run: refused: directory {shared} is writable by group or others (mode 0775)"
    assert program_problem(command(str(check))) == f"{check}: directory {shared} is writable by group or others (mode 0775)"


@pytest.mark.trio
async def test_a_hanging_check_is_killed_at_its_timeout_with_everything_it_started(here: Path) -> None:
    pids = here / "pids"
    hang = script(here / "hang", f"setsid sleep 600 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; exec sleep 600")
    with trio.fail_after(30):
        result = await CheckRunner("backup", timeout=0.5, kill_grace=0.5).run(command(str(hang)))
    assert not result.passed and result.detail == "timed out and was killed"
    grandchild = int(pids.read_text())
    assert not alive(grandchild), "the grandchild that left the session outlived its check"


@pytest.mark.trio
async def test_a_check_printing_without_end_is_capped_and_does_not_block(here: Path) -> None:
    loud = script(here / "loud", "head -c 5000000 /dev/zero | tr '\\0' x; echo; exit 1")
    with trio.fail_after(60):
        result = await CheckRunner("backup", timeout=30).run(command(str(loud)))
    assert not result.passed and len(result.run.output) == OUTPUT_LIMIT
    assert result.run.dropped == 5_000_001 - OUTPUT_LIMIT
    assert result.detail == "exited 1: " + "x" * 200 + "…"


@pytest.mark.trio
async def test_a_check_runs_with_a_clean_environment_in_the_root_directory(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FO_SECRET_FROM_PARENT", "leak")
    out = here / "env"
    dump = script(here / "dump-env", f"pwd > {out}.tmp; env | sort >> {out}.tmp; mv {out}.tmp {out}")
    check = CheckCommand(f"{dump}   --flag", (str(dump), "--flag"))
    with trio.fail_after(20):
        assert (await CheckRunner("master", timeout=10).run(check)).passed
    lines = out.read_text().splitlines()
    assert lines[0] == "/"
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["FAILOVER_ROLE"] == "master" and env["FAILOVER_CHECK"] == f"{dump}   --flag"
    assert env["PATH"].startswith("/usr/local/sbin:") and "FO_SECRET_FROM_PARENT" not in env


def test_a_program_is_found_on_the_hooks_path_not_the_daemons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nowhere")
    assert locate("true") in (Path("/usr/bin/true"), Path("/bin/true"))
    assert locate("/opt/x/check") == Path("/opt/x/check")
    assert program_problem(command("true")) is None
    assert "is not on the hooks' PATH" in str(program_problem(command("no-such-check-program-4f2a")))


# --- the monitor: hysteresis over real runs ---------------------------------------------------------


def results_script(here: Path, codes: list[int]) -> Path:
    """A check that exits with the next of ``codes`` at each run, then 0 for ever."""
    sequence = here / "sequence"
    sequence.write_text("".join(f"{code}\n" for code in codes))
    return script(here / "next-result", f"""
seq={sequence}
first=$(head -n 1 "$seq")
tail -n +2 "$seq" > "$seq.new" && mv "$seq.new" "$seq"
exit "${{first:-0}}"
""")


@pytest.mark.trio
async def test_a_flapping_check_changes_the_verdict_only_when_rise_and_fall_are_reached(here: Path) -> None:
    # First result 0: healthy. Then one failure (not enough), a pass, two failures (unhealthy:
    # the 5th run), one pass (not enough), a failure, two passes (healthy again: the 9th run).
    check = results_script(here, [0, 1, 0, 1, 1, 0, 1, 0, 0])
    reports: list[tuple[int, Verdict]] = []
    settings = HealthChecks(commands=(command(str(check)),), interval=0.02, timeout=10, rise=2, fall=2)
    monitor = HealthMonitor(settings, "master", lambda verdict: reports.append((monitor.runs[0], verdict)))
    with trio.fail_after(30):
        assert await monitor.first_round() == Verdict(True)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            while monitor.runs[0] < 12:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert reports == [(5, Verdict(False, f"check {str(check)!r} exited 1")), (9, Verdict(True))]


@pytest.mark.trio
async def test_at_most_one_run_of_a_check_exists_and_a_slow_one_delays_only_itself(here: Path) -> None:
    lock = here / "lock"
    # mkdir is atomic: a second concurrent run would fail it (and the check with it).
    slow = script(here / "slow", f"mkdir {lock} || exit 9; sleep 0.2; rmdir {lock}")
    settings = HealthChecks(commands=(command(str(slow)), command("true")), interval=0.02, timeout=5, rise=1, fall=1)
    reports: list[Verdict] = []
    monitor = HealthMonitor(settings, "backup", reports.append)
    with trio.fail_after(30):
        assert (await monitor.first_round()).healthy
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            while monitor.runs[0] < 4:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert reports == []  # with fall 1, one overlapping run would have been a failure
    assert monitor.runs[1] > 2 * monitor.runs[0]  # the quick check was not held up by the slow one


# --- the daemons ------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_an_unhealthy_backup_does_not_take_over_until_its_check_passes(here: Path) -> None:
    ok = here / "service-ok"
    checks = HealthChecks(commands=(command("test", "-e", str(ok)),), interval=0.05, timeout=10, rise=2, fall=2)
    config = backup_config(here, free_port(), checks=checks, trace_file=here / "trace")
    system = MemorySystem()
    result: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            # No master at all: silence, a probe, and at the deadline: not taking over.
            while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["state"] != "unfit":
                await trio.sleep(0.01)
            assert "acquire" not in system.kinds()
            dump = await trio.to_thread.run_sync(control.request, config.control_socket, "dump")
            assert dump["healthy"] is False and dump["runtime"]["checks"][0]["passing"] is False
            ok.touch()
            while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["held"] == []:
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    assert system.kinds()[:4] == ["probe", "probe", "acquire", "release"]  # a fresh probe once healthy
    health = [e for e in read_trace(config.trace_file).events if isinstance(e, HealthChanged)]
    assert [(h.healthy, h.reason) for h in health] == [(False, f"check 'test -e {ok}' exited 1"), (True, "")]


@pytest.mark.trio
async def test_a_master_whose_check_fails_at_start_says_leaving_in_its_first_heartbeat(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = here / "key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    ok = here / "service-ok"
    config = MasterConfig(
        targets=(IPv4Address(LOOPBACK),), port=free_port(), run_mode="debug", interval=0.05, key_file=key_file,
        managed=(VIP,), pid_file=here / "m.pid", control_socket=here / "m.sock", state_dir=here / "state",
        hook_dir=here / "hooks", notify_command="/bin/true",
        checks=HealthChecks(commands=(command("test", "-e", str(ok)),), interval=0.05, timeout=10, rise=1, fall=1),
    )
    key = read_key(key_file)
    # Every frame is still sent for real (to loopback, where heartbeatd hears itself); this only reads them.
    sent: list[wire.Heartbeat] = []
    send = HeartbeatSocket.send_nowait

    def reading(sock: HeartbeatSocket, payload: bytes, targets: tuple[str, ...]) -> None:
        sent.append(wire.decode(payload, key))
        send(sock, payload, targets)

    monkeypatch.setattr(HeartbeatSocket, "send_nowait", reading)
    result: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def run_master(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await master.serve(config, system=MemorySystem(), task_status=task_status))

            await nursery.start(run_master)
            while len(sent) < 3:
                await trio.sleep(0.01)
            status = await trio.to_thread.run_sync(control.request, config.control_socket, "status")
            assert status["state"] == "standing_down"
            ok.touch()
            # Healthy: waiting; nobody answers (no backup here), so presumed dead, probed, and taken.
            while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["state"] != "holding":
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    first_rejoined = next(i for i, f in enumerate(sent) if not f.leaving)
    assert first_rejoined >= 3 and sent[0].seq == 1  # the very first heartbeat already said it
    assert all(f.leaving and not f.holds for f in sent[:first_rejoined])


@pytest.mark.trio
async def test_metrics_show_the_checks_and_a_declined_takeover_is_not_a_detection(here: Path) -> None:
    ok = here / "service-ok"
    checks = HealthChecks(commands=(command("test", "-e", str(ok)),), interval=0.05, timeout=10, rise=1, fall=1)
    config = backup_config(here, free_port(), checks=checks, metrics_listen=LISTEN)
    with trio.fail_after(30):
        async with running(backup.serve, config, MemorySystem()) as started:
            port = started["metrics_port"]
            unfit = await scrape_until(port, lambda s: s.value("failoverd_state", role="backup", state="unfit") == 1)
            assert unfit.value("failoverd_health_checks_passing") == 0
            ok.touch()
            taken = await scrape_until(
                port, lambda s: s.value("failoverd_state", role="backup", state="failed_over") == 1
            )
            assert taken.value("failoverd_health_checks_passing") == 1
            assert taken.value("failoverd_become_master_total") == 1
            # It waited for its own check, not for the master: no detection latency to report.
            assert taken.value("failoverd_detection_latency_seconds_count") == 0
