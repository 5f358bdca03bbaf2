"""Replay of traces through the detector: exact reproduction and what-if.

The exact-replay tests drive a Detector the way the backup daemon's shell does
(late timers, actions finishing after a delay, results in completion order),
record every input through TraceWriter, and require the replay to return
exactly the same actions at exactly the same times — status frames included.
"""

from __future__ import annotations

import heapq
import json
import random
from pathlib import Path

import pytest

from failoverd.analysis.replay import ActionModel, Setup, replay_exact, replay_what_if
from failoverd.analysis.trace import ActionResult, TraceHeader, read_trace
from failoverd.analysis.tracewriter import TraceWriter
from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Claim,
    ClaimDone,
    Probe,
    ProbeDone,
    Release,
    ReleaseClaim,
    ReleaseDone,
    RenewDone,
    StateChanged,
)
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing
from failoverd.core.witness import WitnessTiming
from failoverd.programs import failoverctl_replay

A = parse_triplet("eth0:192.0.2.10/24")
B = parse_triplet("eth0:192.0.2.11/24")
KEY = b"replay-test-key-0123456789"
MASTER = "10.0.0.1"


# --- a daemon-like driver ---------------------------------------------------------


class DaemonLike:
    """Runs a Detector as the runtime does and records every input to a trace."""

    def __init__(self, header: TraceHeader, key: bytes | None, path: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.det = Detector(header.settings, header.start, key=key, epoch=header.epoch)
        self.writer = TraceWriter(path, header, wall_clock=None)
        self.calls: list[tuple[float, list]] = []
        self.pending: list[tuple[float, int, object]] = []
        self.order = 0
        self.probe_answered_until = -1.0
        self.fail_next_acquire: frozenset = frozenset()

    def _do(self, now: float, actions: list) -> None:
        self.calls.append((now, actions))
        for action in actions:
            latency = self.rng.uniform(0.001, 0.05)
            if isinstance(action, Probe):
                answered = action.addresses if now < self.probe_answered_until else frozenset()
                self._later(now + 0.3, ProbeDone(answered))
            elif isinstance(action, Acquire):
                failed = action.addresses & self.fail_next_acquire
                self.fail_next_acquire = frozenset()
                self._later(now + latency, AcquireDone(acquired=action.addresses - failed, failed=failed))
            elif isinstance(action, Release):
                self._later(now + latency, ReleaseDone(released=action.addresses))

    def _later(self, when: float, result: object) -> None:
        self.order += 1
        heapq.heappush(self.pending, (when, self.order, result))

    def run(self, arrivals: list[tuple[float, bytes, str, str]], until: float,
            conflicts: list[tuple[float, frozenset]] = (),
            health: list[tuple[float, bool, str]] = ()) -> None:
        arrivals = sorted(arrivals, key=lambda a: a[0])
        conflicts = sorted(conflicts, key=lambda c: c[0])
        health = sorted(health, key=lambda h: h[0])
        i = j = k = 0
        last = self.det.state_since
        for _ in range(1_000_000):
            deadline = self.det.next_deadline()
            # The real timer fires a little late, as trio's does, and never in
            # the past (a deadline can be, e.g. after yielding to a conflict).
            timer_at = None if deadline is None else max(last, deadline + self.rng.uniform(0, 0.004))
            options = []
            if i < len(arrivals):
                options.append((arrivals[i][0], 2))
            if timer_at is not None:
                options.append((timer_at, 1))
            if self.pending:
                options.append((self.pending[0][0], 0))
            if j < len(conflicts):
                options.append((conflicts[j][0], 3))
            if k < len(health):
                options.append((health[k][0], 4))
            if not options:
                break
            now, kind = min(options)
            if now > until:
                break
            last = now
            if kind == 2:
                _, data, source, path = arrivals[i]
                i += 1
                if callable(data):
                    data = data(self.det)
                actions = self.det.receive_datagram(now, data, source, path)
                self.writer.datagram(now, data, source, path, self.det.last_verdict)
            elif kind == 3:
                addresses = conflicts[j][1]
                j += 1
                actions = self.det.conflict_seen(now, addresses)
                self.writer.conflict(now, addresses)
            elif kind == 4:
                _, healthy, reason = health[k]
                k += 1
                actions = self.det.health_changed(now, healthy, reason)
                self.writer.health(now, healthy, reason)
            elif kind == 1:
                actions = self.det.handle_timer(now)
                self.writer.timer(now)
            else:
                _, _, result = heapq.heappop(self.pending)
                actions = self.det.action_done(now, result)
                self.writer.result(now, result)
            self._do(now, actions)
        self.writer.close(until)

    def transitions(self) -> list[tuple[float, str, str, str]]:
        return [(now, a.source, a.dest, a.trigger) for now, actions in self.calls for a in actions
                if isinstance(a, StateChanged)]


class MasterFrame:
    """A heartbeat sealed when it is first delivered, acknowledging the newest
    status the detector has sent by then (as a master that received it does);
    later deliveries (the copy on another path, a replay) are the same bytes."""

    def __init__(self, sealer: wire.Sealer, t: float, **flags) -> None:
        self.sealer, self.t, self.flags = sealer, t, flags
        self.data: bytes | None = None

    def __call__(self, det: Detector) -> bytes:
        if self.data is None:
            status = det._sealer
            ack = (status.epoch, status.seq) if status is not None and status.seq else (0, 0)
            self.data = self.sealer.seal(self.t, holds=False, ack_epoch=ack[0], ack_seq=ack[1], **self.flags)
        return self.data


def master_frames(sealer: wire.Sealer, times: list[float], paths: dict[str, str], **flags) -> list:
    """heartbeatd sends one sealed frame to every target; which path delivers first varies."""
    rng = random.Random(len(times))
    out = []
    for t in times:
        frame = MasterFrame(sealer, t, **flags)
        for path, source in paths.items():
            out.append((t + rng.uniform(0, 0.001), frame, source, path))
    return out


def authenticated_scenario(tmp_path: Path) -> tuple[DaemonLike, Path]:
    timing = Timing(interval=0.1, probe_spacing=0.01)
    header = TraceHeader(mode="authenticated", settings=DetectorSettings((A, B), timing=timing, master=MASTER, peer=MASTER), start=1000.0, epoch=424242)
    path = tmp_path / "auth.trace"
    daemon = DaemonLike(header, KEY, path, seed=7)
    both = {"eth1": MASTER, "eth2": "10.0.1.1"}
    rng = random.Random(3)
    arrivals: list = []
    first_boot = wire.Sealer(KEY, wire.ROLE_MASTER, 1, 0.1, 1000.0)
    # 0-10 s: normal, jittered, a few single losses (false suspicions when two in a row).
    beats = [1000.0 + 0.1 * k + rng.uniform(0, 0.01) for k in range(1, 100) if k not in (30, 31, 50)]
    arrivals += master_frames(first_boot, beats, both)
    # 10-12 s silence with the master still answering ARP: contested, then heartbeats return.
    daemon.probe_answered_until = 1012.0
    arrivals += master_frames(first_boot, [1012.0 + 0.1 * k for k in range(1, 40)], both)
    # Path eth2 dies for good at 16 s; eth1 goes on until 20 s.
    arrivals += master_frames(first_boot, [1016.0 + 0.1 * k for k in range(1, 40)], {"eth1": MASTER})
    # 20-25 s: real silence; one address fails to come up at first (retry), then master returns (same epoch).
    daemon.fail_next_acquire = frozenset({B})
    arrivals += master_frames(first_boot, [1025.0 + 0.1 * k for k in range(1, 30)], {"eth1": MASTER})
    # Noise: a forged frame, a replayed frame, a backup-role frame, garbage.
    def forged(det: Detector, genuine: MasterFrame = arrivals[5][1]) -> bytes:
        return genuine(det)[:-1] + bytes([genuine(det)[-1] ^ 1])

    arrivals += [(1003.05, forged, MASTER, "eth1"), (1004.05, arrivals[3][1], MASTER, "eth1"),
                 (1005.05, wire.Sealer(KEY, wire.ROLE_BACKUP, 9, 0.1, 1000.0).seal(1005.05, holds=True), MASTER,
                  "eth1"), (1006.05, b"heartbeat", "10.0.0.66", "eth1")]
    # 28-31: master leaves (leaving flag), restarts with a new epoch 3 s later.
    arrivals += master_frames(first_boot, [1028.05], {"eth1": MASTER}, leaving=True)
    second_boot = wire.Sealer(KEY, wire.ROLE_MASTER, 2, 0.1, 1031.0)
    arrivals += master_frames(second_boot, [1031.0 + 0.1 * k for k in range(1, 30)], {"eth1": MASTER})
    daemon.run(arrivals, until=1035.0)
    return daemon, path


def test_exact_replay_reproduces_every_action_of_a_recorded_run(tmp_path: Path) -> None:
    daemon, path = authenticated_scenario(tmp_path)
    states = {dest for _, _, dest, _ in daemon.transitions()}
    # The scenario must exercise the whole machine, or this test proves little.
    assert states == {"monitoring", "suspect", "contested", "acquiring", "failed_over", "recovering"}
    trace = read_trace(path)
    replayed: list[tuple[float, list]] = []
    result = replay_exact(Setup.from_header(trace.header, KEY), trace.events,
                          observe=lambda now, actions: replayed.append((now, actions)))
    assert replayed == daemon.calls
    assert result.transitions == daemon.transitions()
    assert result.divergences == []
    assert result.final_state == daemon.det.state
    assert result.rejected == daemon.det.counters.rejected and set(result.rejected) >= {"mac", "replay", "role"}
    assert result.false_suspicions == daemon.det.counters.false_suspicions >= 1
    assert len(result.failovers) == daemon.det.counters.failovers == 3
    same_epoch, restarted, at_the_end = result.failovers
    assert same_epoch.false and "same epoch" in same_epoch.why
    assert not restarted.false and "new epoch" in restarted.why
    assert not at_the_end.false and at_the_end.master_back_at is None
    alarms = [e.text for e in result.timeline if e.kind == "alarm"]
    assert any("heartbeat path eth2 quiet" in a for a in alarms)


def test_exact_replay_reproduces_a_yield_to_an_arp_conflict(tmp_path: Path) -> None:
    timing = Timing(interval=0.1, probe_spacing=0.01)
    header = TraceHeader(mode="authenticated", settings=DetectorSettings((A, B), timing=timing, master=MASTER, peer=MASTER), start=1000.0, epoch=424242)
    path = tmp_path / "conflict.trace"
    daemon = DaemonLike(header, KEY, path, seed=11)
    boot = wire.Sealer(KEY, wire.ROLE_MASTER, 1, 0.1, 1000.0)
    arrivals = master_frames(boot, [1000.0 + 0.1 * k for k in range(1, 20)], {"eth1": MASTER})
    # Silence: takeover at ~1002.2; the master's ARP claims A at 1003 (only the private link is down).
    daemon.probe_answered_until = 1000.0
    daemon.run(arrivals, until=1004.0, conflicts=[(1003.0, frozenset({A}))])
    assert ("failed_over", "recovering", "conflict") in [t[1:] for t in daemon.transitions()]
    trace = read_trace(path)
    replayed: list[tuple[float, list]] = []
    result = replay_exact(Setup.from_header(trace.header, KEY), trace.events,
                          observe=lambda now, actions: replayed.append((now, actions)))
    assert replayed == daemon.calls and result.transitions == daemon.transitions()


def test_exact_replay_reproduces_a_takeover_declined_while_unhealthy(tmp_path: Path) -> None:
    timing = Timing(interval=0.1, probe_spacing=0.01)
    header = TraceHeader(mode="authenticated", settings=DetectorSettings((A, B), timing=timing, master=MASTER, peer=MASTER), start=1000.0, epoch=424242)
    path = tmp_path / "health.trace"
    daemon = DaemonLike(header, KEY, path, seed=13)
    boot = wire.Sealer(KEY, wire.ROLE_MASTER, 1, 0.1, 1000.0)
    arrivals = master_frames(boot, [1000.0 + 0.1 * k for k in range(1, 20)], {"eth1": MASTER})
    # The backup's check fails at 1001 (the service is "caf\u00e9"'s: a reason beyond ASCII);
    # the master falls silent at ~1002; the check passes again at 1004.
    reason = "check 'curl -fsS http://caf\u00e9/' exited 7"
    daemon.probe_answered_until = 1000.0
    daemon.run(arrivals, until=1005.0, health=[(1001.0, False, reason), (1004.0, True, "")])
    changes = [t[1:] for t in daemon.transitions()]
    assert ("suspect", "unfit", "probed") in changes and ("unfit", "suspect", "checks_pass") in changes
    assert changes[-2:] == [("suspect", "acquiring", "probed"), ("acquiring", "failed_over", "acquired")]
    trace = read_trace(path)
    replayed: list[tuple[float, list]] = []
    result = replay_exact(Setup.from_header(trace.header, KEY), trace.events,
                          observe=lambda now, actions: replayed.append((now, actions)))
    assert replayed == daemon.calls and result.transitions == daemon.transitions()
    assert [e.text for e in result.timeline if e.kind == "health"] == [f"unhealthy: {reason}", "healthy"]
    # What-if replays the datagrams alone, as a healthy backup: it takes over at the deadline.
    what_if = replay_what_if(Setup.from_header(trace.header, KEY), trace.arrivals(), end=1005.0)
    assert "unfit" not in {dest for _, _, dest, _ in what_if.transitions}
    assert len(what_if.failovers) == 1 and what_if.failovers[0].decided_at < 1004.0


def test_exact_replay_detects_a_different_core(tmp_path: Path) -> None:
    _, path = authenticated_scenario(tmp_path)
    trace = read_trace(path)
    other_key = b"not-the-recording-key-000"
    result = replay_exact(Setup.from_header(trace.header, other_key), trace.events)
    # The first heartbeat was the handshake (it acknowledged nothing yet).
    assert result.divergences and result.divergences[0].recorded == "unacknowledged"
    assert result.divergences[0].replayed == "mac"


# --- what-if -----------------------------------------------------------------------


def legacy_arrivals(times: list[float]) -> list:
    return [(t, "eth1", MASTER, b"heartbeat", None) for t in times]


def legacy_setup(**timing) -> Setup:
    return Setup(DetectorSettings((A,), Timing(**timing), master=MASTER), 0.0)


def test_what_if_fires_timers_exactly_at_the_deadlines() -> None:
    arrivals = legacy_arrivals([1.0, 2.0, 3.0, 9.0, 10.0])
    result = replay_what_if(legacy_setup(), arrivals, end=12.0)
    assert [(t, src, dst, trig) for t, src, dst, trig in result.transitions] == [
        (3.0 + 1.2, "monitoring", "suspect", "silence"),
        (3.0 + 3.0, "suspect", "acquiring", "deadline"),
        (6.0, "acquiring", "failed_over", "acquired"),
        (9.0, "failed_over", "recovering", "heartbeat"),
        (9.0, "recovering", "monitoring", "released"),
        (10.0 + 1.2, "monitoring", "suspect", "silence"),
    ]
    (failover,) = result.failovers
    assert failover.detection == 3.0 and failover.takeover == 3.0
    assert failover.false  # heard again after 6 s < the 30 s outage threshold
    assert result.longest_silence == (3.0, 9.0)


def test_what_if_latency_and_answered_probe() -> None:
    arrivals = legacy_arrivals([1.0, 2.0, 3.0, 9.0])
    slow = replay_what_if(legacy_setup(), arrivals, end=12.0, model=ActionModel(acquire_latency=0.5))
    assert slow.failovers[0].takeover == pytest.approx(3.5)
    contested = replay_what_if(legacy_setup(), arrivals, end=12.0, model=ActionModel(probe_answers=True))
    assert contested.failovers == []
    assert [(t, s, d) for t, s, d, _ in contested.transitions][:3] == [
        (4.2, "monitoring", "suspect"), (6.0, "suspect", "contested"), (9.0, "contested", "monitoring")]


def test_longer_timeout_turns_a_failover_into_a_false_suspicion() -> None:
    arrivals = legacy_arrivals([1.0, 2.0, 3.0, 6.5, 7.5])
    assert len(replay_what_if(legacy_setup(), arrivals, end=9.0).failovers) == 1
    patient = replay_what_if(legacy_setup(fail_misses=4), arrivals, end=9.0)
    assert patient.failovers == [] and patient.false_suspicions == 1


def test_a_master_silent_to_the_end_is_detected_before_the_trace_ends() -> None:
    result = replay_what_if(legacy_setup(), legacy_arrivals([1.0, 2.0]), end=10.0)
    (failover,) = result.failovers
    assert not failover.false and failover.detection == 3.0
    assert result.longest_silence == (2.0, 10.0)


def test_outage_threshold_decides_false_failovers_in_legacy_mode() -> None:
    arrivals = legacy_arrivals([1.0, 2.0, 12.0])
    assert replay_what_if(legacy_setup(), arrivals, end=13.0, outage=5.0).failovers[0].false is False
    assert replay_what_if(legacy_setup(), arrivals, end=13.0, outage=30.0).failovers[0].false is True


def test_jitter_per_path_ignores_outages() -> None:
    times = [1.0, 2.1, 2.9, 4.0, 20.0, 21.0]
    arrivals = [(t, "eth1", MASTER, b"heartbeat", None) for t in times]
    arrivals += [(t + 0.5, "eth2", "10.0.1.1", b"heartbeat", None) for t in (1.0, 2.0)]
    arrivals.sort()
    setup = Setup(DetectorSettings((A,), Timing()), 0.0)
    result = replay_what_if(setup, arrivals)
    eth1, eth2 = result.paths
    assert (eth1.name, eth1.count, eth1.gaps, eth1.n) == ("eth1", 6, 1, 4)
    assert eth1.mean == pytest.approx((1.1 + 0.8 + 1.1 + 1.0) / 4)
    assert (eth1.low, eth1.high) == (pytest.approx(0.8), pytest.approx(1.1))
    assert (eth2.name, eth2.count) == ("eth2", 2)


# --- the failoverctl subcommands ---------------------------------------------------------


def write_legacy_trace(path: Path, times: list[float], end: float) -> None:
    header = TraceHeader(mode="legacy", settings=DetectorSettings((A,), master=MASTER), start=0.0)
    det = Detector(DetectorSettings((A,), Timing(), master=MASTER), 0.0)
    with TraceWriter(path, header, wall_clock=None) as writer:
        for t in times:
            det.receive_datagram(t, b"heartbeat", MASTER, "eth1")
            writer.datagram(t, b"heartbeat", MASTER, "eth1", det.last_verdict)
        writer.close(end)


def test_cli_replay_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.trace"
    write_legacy_trace(trace, [1.0, 2.0, 3.0, 9.0, 10.0], 12.0)
    # The recording holds no timers: the daemon died with the master? No — this
    # trace has datagrams only, so exact replay shows no failover while what-if does.
    assert failoverctl_replay.main(["replay", str(trace), "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert exact["summary"]["mode"] == "exact" and exact["summary"]["failovers"] == 0
    assert failoverctl_replay.main(["replay", str(trace), "--json", "--what-if"]) == 0
    what_if = json.loads(capsys.readouterr().out)
    assert what_if["summary"]["failovers"] == 1 and what_if["summary"]["false_failovers"] == 1
    assert what_if["failovers"][0]["detection_s"] == 3.0
    assert [e["kind"] for e in what_if["timeline"]][:3] == ["state", "probe", "probed"]


def test_cli_replay_text_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.trace"
    write_legacy_trace(trace, [1.0, 2.0, 3.0, 9.0], 12.0)
    assert failoverctl_replay.main(["replay", str(trace), "--fail-misses", "4"]) == 0
    out = capsys.readouterr().out
    assert "what-if replay" in out and "failed after 4 s" in out
    assert "+7.000 s  state     suspect -> acquiring (deadline)" in out
    assert "failovers         1 (1 false)" in out


def test_cli_sweep_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.trace"
    # A 3.5 s glitch at 3 s and a real death at 40 s.
    write_legacy_trace(trace, [float(t) for t in range(1, 4)] + [6.5 + t for t in range(34)], 60.0)
    plot = tmp_path / "sweep.png"
    assert failoverctl_replay.main(["sweep", str(trace), "--misses", "2-5", "--plot", str(plot), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["fail_misses"], r["failovers"], r["false_failovers"], r["detection_mean_s"]) for r in rows] == [
        (2, 2, 1, 2.0), (3, 2, 1, 3.0), (4, 1, 0, 4.0), (5, 1, 0, 5.0)]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert failoverctl_replay.main(["sweep", str(trace), "--misses", "2-3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["timeout", "misses", "failovers", "false", "failovers", "detection", "mean",
                              "detection", "max", "false", "suspicions"]
    assert out[2].split() == ["2", "s", "2", "2", "1", "2.000", "s", "2.000", "s", "0"]


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    auth = tmp_path / "auth.trace"
    header = TraceHeader(mode="authenticated", settings=DetectorSettings((A,)), start=0.0)
    TraceWriter(auth, header).close()
    assert failoverctl_replay.main(["replay", str(auth)]) == 64
    assert "replay needs the same key: --key-file FILE" in capsys.readouterr().err

    bad = tmp_path / "bad.trace"
    write_legacy_trace(bad, [1.0, 2.0], 5.0)
    text = bad.read_text().splitlines(keepends=True)
    bad.write_text("".join(text[:3] + ["t 0.5\n"] + text[3:]))
    assert failoverctl_replay.main(["replay", str(bad)]) == 65
    assert f"{bad}:4: time goes backwards" in capsys.readouterr().err
    assert failoverctl_replay.main(["replay", str(bad), "--skip-bad"]) == 0
    assert "note: skipped 1 bad line(s), first at line 4" in capsys.readouterr().out

    assert failoverctl_replay.main(["replay", str(tmp_path / "missing")]) == 66
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01garbage")
    assert failoverctl_replay.main(["replay", str(garbage)]) == 65
    assert "neither a failoverd trace nor a pcap" in capsys.readouterr().err
    assert failoverctl_replay.main(["replay", str(bad), "--skip-bad", "--master", "10.0.0.9"]) == 64
    assert "--master applies to captures" in capsys.readouterr().err


def test_failoverctl_registers_replay_and_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from failoverd.programs import failoverctl

    trace = tmp_path / "t.trace"
    write_legacy_trace(trace, [1.0, 2.0], 6.0)
    assert failoverctl.main(["replay", str(trace), "--what-if", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["failovers"] == 1
    assert failoverctl.main(["sweep", str(trace), "--misses", "2-3", "--json"]) == 0
    assert [r["fail_misses"] for r in json.loads(capsys.readouterr().out)["rows"]] == [2, 3]


# --- witness mode (spec/witness.md): the etcd answers are inputs like any other ----------------


class WitnessDaemonLike(DaemonLike):
    """DaemonLike with an etcd that grants the claim and proves each renewal, as the shell's
    claims port reports them (runtime/claims.py): renewals every renew period from the grant,
    one in flight, until the claim is given back."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.claim = 0  # which claim renewals belong to (0: none held)
        self.claims = 0

    def _do(self, now: float, actions: list) -> None:
        super()._do(now, actions)
        witness = self.det.witness
        assert witness is not None
        for action in actions:
            if isinstance(action, Claim):
                self.claims += 1
                answered = now + 0.004
                self._later(answered, ClaimDone("granted", sent_at=now, answered_at=answered))
            elif isinstance(action, ReleaseClaim):
                self.claim = 0

    def run(self, *args, **kwargs) -> None:
        # Renewals are results the core did not ask for one by one: schedule the next one
        # whenever a grant or a renewal is delivered (wrapping action_done, as the shell's port does).
        det, witness = self.det, self.det.witness
        assert witness is not None
        action_done = det.action_done

        def delivered(now: float, result: object) -> list:
            actions = action_done(now, result)
            if isinstance(result, ClaimDone) and result.outcome == "granted":
                self.claim = self.claims
            if isinstance(result, (ClaimDone, RenewDone)) and self.claim == self.claims:
                sent = now + witness.renew_period
                self._later(sent + 0.004, RenewDone("proved", sent_at=sent))
            return actions

        det.action_done = delivered  # type: ignore[method-assign]
        super().run(*args, **kwargs)


def witness_header() -> TraceHeader:
    timing = Timing(interval=0.1, probe_spacing=0.01)
    settings = DetectorSettings((A,), timing=timing, master=MASTER, witness=WitnessTiming(renew_period=0.1))
    return TraceHeader(mode="legacy", settings=settings, start=0.0, epoch=77)


def test_a_witness_mode_run_replays_exactly_claims_renewals_and_all(tmp_path: Path) -> None:
    path = tmp_path / "witness.trace"
    daemon = WitnessDaemonLike(witness_header(), None, path, seed=5)
    # Heartbeats to 2 s, silence (the takeover: claim, grant, wait, acquire, renewals), back at 4 s.
    times = [0.1 * k for k in range(1, 20)] + [4.0 + 0.1 * k for k in range(10)]
    daemon.run([(t, b"heartbeat", MASTER, "eth1") for t in times], until=5.5)
    states = [dest for _, _, dest, _ in daemon.transitions()]
    assert "claiming" in states and "granted" in states and "failed_over" in states, states
    trace = read_trace(path)
    assert trace.header.settings.witness == WitnessTiming(renew_period=0.1)
    assert any(isinstance(e, ActionResult) and isinstance(e.result, RenewDone) for e in trace.events)
    replayed: list[tuple[float, list]] = []
    result = replay_exact(Setup.from_header(trace.header, None), trace.events,
                          observe=lambda now, actions: replayed.append((now, actions)))
    assert replayed == daemon.calls
    assert result.divergences == [] and result.final_state == daemon.det.state


def test_what_if_of_a_witness_trace_claims_before_it_takes_over() -> None:
    setup = Setup(witness_header().settings, 0.0)
    arrivals = [(0.1 * k, "eth1", MASTER, b"heartbeat", None) for k in range(1, 20)]
    result = replay_what_if(setup, arrivals, end=3.0, model=ActionModel(witness_latency=0.01))
    kinds = [e.kind for e in result.timeline]
    assert kinds.index("claim") < kinds.index("claimed") < kinds.index("acquire"), kinds
    (failover,) = result.failovers
    witness = setup.settings.witness
    assert witness is not None
    at = {e.kind: e.time for e in reversed(result.timeline)}  # the first of each kind
    # Claimed at the failure deadline, granted a latency later; the acquire waits the wait
    # after the grant (longer than a proof's validity) ...
    assert at["claim"] == pytest.approx(1.9 + 0.3) and at["claimed"] == pytest.approx(at["claim"] + 0.01)
    assert at["acquire"] >= at["claimed"] + witness.wait_after_grant
    assert failover.took_over_at == at["acquire"]
    # ... and the simulated renewals keep it held to the end: no "proof ran out".
    assert result.final_state == "failed_over"
    assert not [e for e in result.timeline if e.kind == "alarm" and "proof" in e.text]
