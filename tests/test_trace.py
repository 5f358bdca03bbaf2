"""The native trace format: writer and strict reader (spec/trace.md)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from failoverd.analysis.trace import (
    MAGIC,
    ActionResult,
    Datagram,
    End,
    HealthChanged,
    Lost,
    TimerFired,
    TraceError,
    TraceHeader,
    format_event,
    header_for_backup,
    parse_trace,
    read_trace,
)
from failoverd.analysis.tracewriter import TraceWriter
from failoverd.cli.config import BackupConfig
from failoverd.core import wire
from failoverd.core.actions import AcquireDone, ProbeDone, ReleaseDone
from failoverd.core.addresses import parse_triplet
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

A = parse_triplet("eth0:192.0.2.10/24")
B = parse_triplet("eth1:198.51.100.7")
KEY = b"a-key-of-at-least-16-bytes"


def header(**changes) -> TraceHeader:
    settings = DetectorSettings((A, B), Timing(interval=0.5), master="10.0.0.1")
    values = dict(mode="legacy", settings=settings, start=10.0)
    values.update(changes)
    return TraceHeader(**values)


def lines_of(*events) -> list[bytes]:
    text = MAGIC + "header " + header().to_json() + "\n" + "".join(format_event(e) + "\n" for e in events)
    return text.encode().splitlines(keepends=True)


def test_written_events_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    clock = iter([1700000000.25, 1700000000.5])
    writer = TraceWriter(path, header(), wall_clock=lambda: next(clock))
    writer.datagram(10.5, b"heartbeat", "10.0.0.1", "eth2", "accepted")
    writer.datagram(10.75, b"", "10.0.0.9", "eth2", "message")
    writer.timer(11.2)
    writer.result(11.2, ProbeDone(frozenset({A})))
    writer.result(12.0, AcquireDone(acquired=frozenset({A}), failed=frozenset({B})))
    writer.result(13.0, ReleaseDone(released=frozenset({A}), refused=frozenset({B})))
    writer.close(14.0)
    trace = read_trace(path)
    assert trace.header == header()
    assert trace.events == [
        Datagram(10.5, "eth2", "10.0.0.1", b"heartbeat", "accepted", 1700000000.25),
        Datagram(10.75, "eth2", "10.0.0.9", b"", "message", 1700000000.5),
        TimerFired(11.2),
        ActionResult(11.2, ProbeDone(frozenset({A}))),
        ActionResult(12.0, AcquireDone(acquired=frozenset({A}), failed=frozenset({B}))),
        ActionResult(13.0, ReleaseDone(released=frozenset({A}), refused=frozenset({B}))),
        End(14.0),
    ]
    assert trace.end == 14.0 and trace.skipped == []


def test_times_are_exact_floats(tmp_path: Path) -> None:
    # Replay re-executes the core only if every `now` comes back bit for bit.
    path = tmp_path / "t.trace"
    times = [10.1 + i * 0.1 for i in range(50)]
    with TraceWriter(path, header(), wall_clock=None) as writer:
        for t in times:
            writer.timer(t)
    assert [e.time for e in read_trace(path).events if isinstance(e, TimerFired)] == times


def test_lines_are_the_documented_ones(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), wall_clock=None) as writer:
        writer.datagram(10.5, b"hb", "10.0.0.1", "eth2", "accepted")
        writer.result(11.0, AcquireDone(acquired=frozenset({B, A})))
    lines = path.read_text().splitlines()
    assert lines[0] == "failoverd-trace 1"
    assert lines[1].startswith('header {"addresses":["eth0:192.0.2.10/24","eth1:198.51.100.7"]')
    assert lines[2:] == [
        "d 10.5 - eth2 10.0.0.1 accepted 6862",
        "r 11.0 acquire acquired=eth0:192.0.2.10/24 acquired=eth1:198.51.100.7",
        "end 11.0",
    ]


def test_the_key_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    frame = wire.encode(wire.Heartbeat(1, False, False, 1, 1, 0, 1000), KEY)
    with TraceWriter(path, header(mode="authenticated")) as writer:
        writer.datagram(10.5, frame, "10.0.0.1", "eth2", "accepted")
    raw = path.read_bytes()
    assert KEY not in raw and KEY.hex().encode() not in raw
    assert read_trace(path).header.mode == "authenticated"


def test_flush_makes_lines_readable_before_close(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    writer = TraceWriter(path, header(), flush_interval=3600)
    try:
        writer.timer(11.0)
        writer.flush()
        assert path.read_text().splitlines()[-1] == "t 11.0"
    finally:
        writer.close()


def test_rotation_keeps_one_previous_file_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), max_bytes=4096, wall_clock=None) as writer:
        for i in range(400):
            writer.datagram(11.0 + i, b"heartbeat", "10.0.0.1", "eth2", "accepted")
    assert writer.rotations >= 1
    old, new = read_trace(tmp_path / "t.trace.1"), read_trace(path)
    assert path.stat().st_size <= 4096 and (tmp_path / "t.trace.1").stat().st_size <= 4096
    assert new.header.continued and new.header.settings.addresses == (A, B)
    times = [e.time for e in old.events + new.events if isinstance(e, Datagram)]
    assert times == sorted(times) and times[-1] == 11.0 + 399


def test_stop_at_max_bytes_marks_the_end(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), max_bytes=4096, rotate=False, wall_clock=None) as writer:
        for i in range(1000):
            writer.timer(11.0 + i)
    trace = read_trace(path)
    assert path.stat().st_size <= 4096
    end = trace.events[-1]
    # The end is the time of the first event that no longer fitted.
    assert end == End(trace.events[-2].time + 1, full=True)
    assert not (tmp_path / "t.trace.1").exists()


def test_overload_drops_are_counted_in_the_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), max_pending=5, wall_clock=None) as writer:
        for i in range(2000):
            writer.timer(11.0 + i / 1000)
    events = read_trace(path).events
    timers = sum(isinstance(e, TimerFired) for e in events)
    lost = sum(e.count for e in events if isinstance(e, Lost))
    assert timers + lost == 2000
    assert lost == writer.dropped


def test_a_line_longer_than_the_bound_is_lost_in_its_place(tmp_path: Path) -> None:
    # A datagram as large as UDP allows, recorded with a small bound: it fits in no file.
    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), max_bytes=4096, wall_clock=None) as writer:
        writer.timer(11.0)
        writer.datagram(12.0, b"x" * 3000, "10.0.0.1", "eth2", "length")
        writer.timer(13.0)
    assert path.stat().st_size <= 4096
    assert read_trace(path).events == [TimerFired(11.0), Lost(12.0, 1), TimerFired(13.0), End(13.0)]
    assert writer.dropped == 1


def test_writer_refuses_time_going_backwards_and_spaces(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "t.trace", header()) as writer:
        writer.timer(12.0)
        with pytest.raises(ValueError, match="backwards"):
            writer.timer(11.0)
        with pytest.raises(ValueError, match="path"):
            writer.datagram(12.0, b"x", "10.0.0.1", "eth 2", "accepted")


def test_header_for_backup_matches_the_daemons_detector_arguments() -> None:
    config = BackupConfig(master=ipaddress.IPv4Address("10.0.0.1"), triplets=(A,), timing=Timing(interval=0.2),
                          message=b"hello")
    h = header_for_backup(config, start=5.0, epoch=77, held=(A,))
    s = h.settings
    assert (h.mode, s.addresses, s.timing, s.master, s.legacy_message, h.start, h.epoch, h.held,
            s.peer) == ("legacy", (A,), Timing(interval=0.2), "10.0.0.1", b"hello", 5.0, 77, (A,), "10.0.0.1")


def test_the_header_holds_the_settings_the_detector_is_built_with_whole() -> None:
    # One settings object: failoverd builds its detector from it, writes it as the header, and a
    # replay rebuilds the detector from what it reads back; nothing is restated on the way.
    from failoverd.analysis.replay import Setup
    from failoverd.core.detector import Detector

    config = BackupConfig(master=ipaddress.IPv4Address("10.0.0.1"), triplets=(A, B), message=b"hello",
                          timing=Timing(interval=0.2), arp_probe=False)
    settings = config.detector_settings()
    assert Detector(settings, 5.0).settings is settings
    header = header_for_backup(config, start=5.0, epoch=77)
    assert header.settings == settings
    read_back = TraceHeader.from_json(header.to_json())
    assert read_back == header and Setup.from_header(read_back, None).detector().settings == settings


def test_a_header_written_with_a_replay_floor_still_reads() -> None:
    """Traces from before the backup stopped keeping a replay floor carry the field."""
    config = BackupConfig(master=ipaddress.IPv4Address("10.0.0.1"), triplets=(A,))
    data = json.loads(header_for_backup(config, start=5.0, epoch=77).to_json())
    assert TraceHeader.from_json(json.dumps(data | {"replay_floor": [3, 4]})) == header_for_backup(
        config, start=5.0, epoch=77
    )
    with pytest.raises(ValueError, match="replay_floor"):
        TraceHeader.from_json(json.dumps(data | {"replay_floor": [3]}))


# --- the trace file: private, regular, never waited on -----------------------


def test_trace_file_is_private_even_over_an_older_readable_one(tmp_path: Path) -> None:
    # A trace holds every heartbeat and the master's addresses: root's only, whatever the umask.
    fresh, old = tmp_path / "fresh.trace", tmp_path / "old.trace"
    old.write_text("an older trace, world-readable\n")
    old.chmod(0o644)
    previous = os.umask(0o022)
    try:
        for path in (fresh, old):
            TraceWriter(path, header()).close(11.0)
    finally:
        os.umask(previous)
    for path in (fresh, old):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert read_trace(path).events == [End(11.0)]


def test_rotated_trace_files_stay_private(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), max_bytes=4096, wall_clock=None) as writer:
        for i in range(1000):
            writer.timer(11.0 + i)
    assert writer.rotations >= 1
    for rotated in (path, tmp_path / "t.trace.1"):
        assert stat.S_IMODE(rotated.stat().st_mode) == 0o600, rotated


def test_a_symlink_at_the_trace_path_is_refused_and_what_it_points_to_is_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("precious\n")
    link = tmp_path / "t.trace"
    link.symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        TraceWriter(link, header())
    assert victim.read_text() == "precious\n"
    assert link.is_symlink()


_OPEN_A_TRACE = """
import sys
from failoverd.core.addresses import parse_triplet
from failoverd.analysis.trace import TraceHeader
from failoverd.analysis.tracewriter import TraceWriter
from failoverd.core.settings import DetectorSettings
try:
    TraceWriter(sys.argv[1], TraceHeader(mode="legacy", settings=DetectorSettings((parse_triplet("eth0:192.0.2.10/24"),))))
except ValueError as error:
    print(error)
    sys.exit(3)
"""


def test_a_fifo_at_the_trace_path_is_refused_without_waiting_for_a_reader(tmp_path: Path) -> None:
    # Opening a FIFO for writing waits for a reader: the daemon would never start.
    fifo = tmp_path / "t.trace"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-c", _OPEN_A_TRACE, str(fifo)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "FIFO" in done.stdout and "not a regular file" in done.stdout
    assert stat.S_ISFIFO(fifo.stat().st_mode)


_FILL_THE_DISK = """
import errno, json, os, subprocess, sys
from failoverd.core.addresses import parse_triplet
from failoverd.analysis.trace import TraceHeader
from failoverd.analysis.tracewriter import TraceWriter
from failoverd.core.settings import DetectorSettings

mount_point, copy = sys.argv[1], sys.argv[2]
# Only in this process's own mount namespace (unshare --mount): the host never sees it.
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "failoverd-test", mount_point], check=True)
path = os.path.join(mount_point, "t.trace")
writer = TraceWriter(path, TraceHeader(mode="legacy", settings=DetectorSettings((parse_triplet("eth0:192.0.2.10/24"),)), start=10.0),
                     wall_clock=None, flush_interval=3600)
filler = os.open(os.path.join(mount_point, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
try:
    for _ in range(100):
        os.write(filler, b"f" * 4096)
except OSError as exc:
    assert exc.errno == errno.ENOSPC, exc
else:
    raise AssertionError("the tmpfs never filled up")
os.close(filler)
for n in range(500):
    writer.timer(11.0 + n / 1000)
writer.flush()
full_error = repr(writer.error)
os.unlink(os.path.join(mount_point, "filler"))
for n in range(500, 600):
    writer.timer(11.0 + n / 1000)
writer.close(20.0)
with open(path, "rb") as trace, open(copy, "wb") as out:
    out.write(trace.read())
print(json.dumps({"dropped": writer.dropped, "error_when_full": full_error}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a private mount namespace")
def test_a_full_disk_costs_counted_lines_and_recording_resumes_when_space_returns(tmp_path: Path) -> None:
    mount_point, copy = tmp_path / "small", tmp_path / "copy.trace"
    mount_point.mkdir()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _FILL_THE_DISK,
         str(mount_point), str(copy)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "No space left" in report["error_when_full"]
    trace = read_trace(copy)  # strict: no half line was left where the disk filled up
    timers = [e for e in trace.events if isinstance(e, TimerFired)]
    lost = [e for e in trace.events if isinstance(e, Lost)]
    assert lost and trace.lost == report["dropped"] > 0
    assert len(timers) + trace.lost == 600
    # Recording went on after the disk had room again, and the trace says where lines are missing.
    assert timers[-1].time == 11.0 + 599 / 1000
    assert trace.events.index(lost[-1]) < trace.events.index(timers[-1])
    assert trace.events[-1] == End(20.0)


# --- bad traces ----------------------------------------------------------------


def error_of(lines: list[bytes]) -> TraceError:
    with pytest.raises(TraceError) as info:
        parse_trace(lines, name="x.trace")
    return info.value


def test_wrong_version_is_named() -> None:
    err = error_of([b"failoverd-trace 2\n", b"header {}\n"])
    assert err.line == 1 and "unsupported trace format version '2'" in str(err) and "reads version 1" in str(err)


def test_not_a_trace() -> None:
    assert "not a failoverd trace" in str(error_of([b"\x89PNG\r\n"]))
    assert error_of([]).line == 0


def test_missing_header_line_is_reported_on_the_last_line() -> None:
    # Found by fuzz/fuzz_trace.py: the error named line 2 of a one-line file.
    err = error_of([MAGIC.encode()])
    assert err.line == 1 and "header line is missing" in err.message


def test_bad_header_is_never_skipped() -> None:
    bad = [MAGIC.encode(), b'header {"mode": "legacy"}\n']
    with pytest.raises(TraceError, match=r"x.trace:2: bad header: header fields: missing"):
        parse_trace(bad, name="x.trace", skip_bad=True)


@pytest.mark.parametrize(
    "line, message",
    [
        (b"d 11.0 - eth2 10.0.0.1 accepted 6862", "truncated line"),
        (b"t 11.0 12.0\n", "2 fields"),
        (b"t 11.00\n", "canonical"),
        (b"t nan\n", "not finite"),
        (b"d 11.0 - eth2 10.0.0.1 accepted 68G2\n", "not hex"),
        (b"d 11.0 - eth2 10.0.0.1 accepted 6A\n", "lower-case"),
        (b"r 11.0 acquire acquired=eth0:10.0.0.300\n", "invalid IP address"),
        (b"r 11.0 acquire failed=eth1:198.51.100.7 acquired=eth0:192.0.2.10/24\n", "canonical order"),
        (b"zap 11.0\n", "unknown event 'zap'"),
        (b"t 9.0\n", "time goes backwards"),
        (b"\xff\xfe\n", "not ASCII"),
    ],
)
def test_bad_event_lines_name_their_line(line: bytes, message: str) -> None:
    lines = lines_of(TimerFired(10.5)) + [line]
    err = error_of(lines)
    assert err.line == 4 and message in err.message, err


def test_skip_bad_counts_and_keeps_the_rest() -> None:
    lines = lines_of(TimerFired(10.5)) + [b"garbage\n", b"t 10.25\n", b"t 11.5\n", b"t 12"]
    trace = parse_trace(lines, name="x.trace", skip_bad=True)
    assert trace.events == [TimerFired(10.5), TimerFired(11.5)]
    assert [n for n, _ in trace.skipped] == [4, 5, 7]


def test_event_after_the_end_is_bad() -> None:
    err = error_of(lines_of(End(11.0)) + [b"t 12.0\n"])
    assert err.line == 4 and "after the end" in err.message


def test_comments_are_ignored() -> None:
    assert parse_trace(lines_of(TimerFired(10.5)) + [b"# operator note\n"]).events == [TimerFired(10.5)]


@pytest.mark.parametrize(
    "line, message",
    [
        (b"d 11.50 - eth2 10.0.0.1 accepted 6862\n", "canonical"),
        (b"d 1_1.5 - eth2 10.0.0.1 accepted 6862\n", "canonical"),
        (b"d inf - eth2 10.0.0.1 accepted 6862\n", "not finite"),
        (b"d 10.75 - eth2 10.0.0.1 accepted 6862\n", "time goes backwards"),
        (b"d 11.5 1.70e9 eth2 10.0.0.1 accepted 6862\n", "wall time '1.70e9' is not in canonical form"),
        (b"d 11.5 - eth2 10.0.0.1 accepted 6862", "truncated line"),
        (b"d 11.5  eth2 10.0.0.1 accepted 6862\n", "wall time '' is not a number"),
    ],
)
def test_a_repeated_datagram_line_is_checked_as_strictly_as_the_first(line: bytes, message: str) -> None:
    # The reader remembers a datagram line's path, source, verdict and payload
    # after the first; only the times differ on the following lines.
    first = Datagram(11.0, "eth2", "10.0.0.1", b"hb", "accepted")
    err = error_of(lines_of(first) + [line])
    assert err.line == 4 and message in err.message, err


def test_repeated_datagram_lines_read_back_as_written() -> None:
    events = [Datagram(10.0 + i / 10, "veth-b1", "10.0.0.1", b"hb", "accepted", 1.7e9 + i / 10) for i in range(5)]
    events.insert(2, Datagram(10.15, "veth-b1", "10.0.0.9", b"", "source"))
    assert parse_trace(lines_of(*events)).events == events


def test_health_changes_are_recorded_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    reason = "check 'curl -fsS http://café.example/' exited 7: curl: (7) Failed to connect"
    with TraceWriter(path, header(), wall_clock=None) as writer:
        writer.health(10.5, False, reason)
        writer.health(12.0, True, "")
    lines = path.read_text().splitlines()
    assert lines[2:] == [f"h 10.5 unhealthy {reason.encode().hex()}", "h 12.0 healthy -", "end 12.0"]
    assert read_trace(path).events == [HealthChanged(10.5, False, reason), HealthChanged(12.0, True, ""), End(12.0)]
    assert format_event(HealthChanged(10.5, False, reason)) == lines[2]


@pytest.mark.parametrize(
    "line, message",
    [
        (b"h 11.0 sick -\n", "healthy|unhealthy"),
        (b"h 11.0 healthy\n", "healthy|unhealthy"),
        (b"h 11.0 unhealthy 6A\n", "lower-case"),
        (b"h 11.0 unhealthy ff\n", "not UTF-8"),
        (b"h 11.00 healthy -\n", "canonical"),
    ],
)
def test_bad_health_lines_name_their_line(line: bytes, message: str) -> None:
    err = error_of(lines_of(TimerFired(10.5)) + [line])
    assert err.line == 4 and message in err.message, err


def test_link_changes_are_recorded_and_read_back(tmp_path: Path) -> None:
    from failoverd.analysis.trace import LinkChanged

    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), wall_clock=None) as writer:
        writer.link(10.5, "pub0", False)
        writer.link(11.0, "eth0.100", True)
    lines = path.read_text().splitlines()
    assert lines[2:] == ["l 10.5 pub0 down", "l 11.0 eth0.100 up", "end 11.0"]
    assert read_trace(path).events == [LinkChanged(10.5, "pub0", False), LinkChanged(11.0, "eth0.100", True), End(11.0)]
    with pytest.raises(ValueError, match="not an interface name"):
        format_event(LinkChanged(12.0, "has space", True))


@pytest.mark.parametrize(
    "line",
    [b"l 11.0 pub0 sideways\n", b"l 11.0 pub0\n", b"l 11.0 a/b up\n", b"l 11.0 waytoolonginterface up\n",
     b"l 11.00 pub0 up\n"],
)
def test_bad_link_lines_name_their_line(line: bytes) -> None:
    err = error_of(lines_of(TimerFired(10.5)) + [line])
    assert err.line == 4, err


def test_the_stop_is_recorded_and_read_back(tmp_path: Path) -> None:
    from failoverd.analysis.trace import StopRequested

    path = tmp_path / "t.trace"
    with TraceWriter(path, header(), wall_clock=None) as writer:
        writer.stop(10.5, True)
        writer.stop(11.0, False)
    lines = path.read_text().splitlines()
    assert lines[2:] == ["s 10.5", "s 11.0 keep", "end 11.0"]
    assert read_trace(path).events == [StopRequested(10.5), StopRequested(11.0, False), End(11.0)]
    assert format_event(StopRequested(11.0, False)) == lines[3]


@pytest.mark.parametrize("line", [b"s 11.0 release\n", b"s\n", b"s 11.0 keep now\n"])
def test_bad_stop_lines_name_their_line(line: bytes) -> None:
    err = error_of(lines_of(TimerFired(10.5)) + [line])
    assert err.line == 4 and "a stop line is 's TIME' or 's TIME keep'" in err.message, err


# --- witness mode (spec/witness.md) ----------------------------------------------


def test_a_witness_modes_header_and_answers_read_back_equal(tmp_path: Path) -> None:
    from failoverd.core.actions import ClaimDone, ReachDone, RenewDone
    from failoverd.core.witness import WitnessTiming

    witness = WitnessTiming(renew_period=0.2, validity=0.8, release_margin=0.1, lease_ttl=3, keep_on_outage=True)
    with_witness = header(settings=DetectorSettings((A,), Timing(interval=0.2), master="10.0.0.1", witness=witness))
    answers = [
        ClaimDone("granted", sent_at=10.25, answered_at=10.2625),
        ClaimDone("refused", sent_at=11.0, answered_at=11.01, detail="held by heartbeatd@mäster 1790000000"),
        ClaimDone("unreachable", sent_at=11.5, answered_at=11.75, detail="timed out"),
        RenewDone("proved", sent_at=12.0),
        RenewDone("lost", sent_at=12.2, detail="the key holds another claim"),
        RenewDone("unreachable", sent_at=12.4),
        ReachDone("answered", sent_at=12.6),
        ReachDone("unreachable", sent_at=12.8, detail="no endpoint answered"),
    ]
    path = tmp_path / "w.trace"
    with TraceWriter(path, with_witness, wall_clock=None) as writer:
        for i, answer in enumerate(answers):
            writer.result(13.0 + i, answer)
    trace = read_trace(path)
    assert trace.header == with_witness and trace.header.settings.witness == witness
    assert [e.result for e in trace.events if isinstance(e, ActionResult)] == answers
    lines = path.read_text().splitlines()
    assert lines[2] == "r 13.0 claim granted 10.25 10.2625 -"
    assert lines[5] == "r 16.0 renew proved 12.0 -"
    assert lines[8] == "r 19.0 reach answered 12.6 -"
    assert '"keep_on_outage":true' in lines[1]
    # Without a witness the header has no such field: what earlier readers read, byte for byte.
    assert "witness" not in header().to_json()


@pytest.mark.parametrize(
    "line, message",
    [
        (b"r 11.0 claim granted 10.5 10.6\n", "claim result is"),
        (b"r 11.0 claim maybe 10.5 10.6 -\n", "claim result is"),
        (b"r 11.0 claim granted 10.50 10.6 -\n", "canonical"),
        (b"r 11.0 renew proved 10.5 - extra\n", "renew result is"),
        (b"r 11.0 renew gone 10.5 -\n", "renew result is"),
        (b"r 11.0 renew lost 10.5 ff\n", "not UTF-8"),
        (b"r 11.0 renew lost nan -\n", "not finite"),
        (b"r 11.0 reach proved 10.5 -\n", "reach result is"),
        (b"r 11.0 reach answered 10.5\n", "reach result is"),
        (b"r 11.0 lease 10.5\n", "expected probe, acquire, release, claim, renew or reach"),
    ],
)
def test_bad_witness_answers_name_their_line(line: bytes, message: str) -> None:
    err = error_of(lines_of(TimerFired(10.5)) + [line])
    assert err.line == 4 and message in err.message, err


def test_a_witness_header_written_before_keep_was_coded_reads_as_drop() -> None:
    """Those daemons dropped under either value of --etcd-unreachable: the replay is theirs."""
    old = '{"renew_period":0.1,"validity":0.4,"release_margin":0.05,"drift":0.001,"lease_ttl":2}'
    text = header().to_json()[:-1] + f',"witness":{old}}}'
    witness = TraceHeader.from_json(text).settings.witness
    assert witness is not None and witness.keep_on_outage is False and witness.validity == 0.4


@pytest.mark.parametrize(
    "witness, message",
    [
        ('"fast"', "witness must be a dict"),
        ('{"renew_period":0.1}', "witness fields: expected"),
        ('{"renew_period":0.1,"validity":0.1,"release_margin":0.05,"drift":0.001,"lease_ttl":2}', "must exceed"),
        ('{"renew_period":true,"validity":0.4,"release_margin":0.05,"drift":0.001,"lease_ttl":2}', "must be a number"),
        ('{"renew_period":0.1,"validity":0.4,"release_margin":0.05,"drift":0.001,"lease_ttl":2,"keep_on_outage":1}',
         "keep_on_outage must be true or false"),
        ('{"renew_period":0.1,"validity":0.4,"release_margin":0.05,"drift":0.001,"lease_ttl":2,"keep":true}',
         "witness fields: expected"),
    ],
)
def test_a_bad_witness_header_is_named(witness: str, message: str) -> None:
    text = header().to_json()[:-1] + f',"witness":{witness}}}'
    err = error_of([MAGIC.encode(), f"header {text}\n".encode()])
    assert err.line == 2 and message in err.message, err


# --- several backups (spec/backups.md) ---------------------------------------------


def test_a_header_with_peers_reads_back_equal_and_a_pairs_header_has_no_such_field() -> None:
    settings = DetectorSettings(
        (A,), Timing(interval=0.5), master="10.0.0.1", peers=("10.0.0.3", "fe80::3%eth1"), peer_priorities=(200, 50),
        priority=150, preempt=True,
    )
    with_peers = header(mode="authenticated", settings=settings)
    text = with_peers.to_json()
    assert json.loads(text)["backups"] == {
        "peers": [["10.0.0.3", 200], ["fe80::3%eth1", 50]], "priority": 150, "preempt": True
    }
    assert TraceHeader.from_json(text) == with_peers
    # Without peers: what earlier readers read, byte for byte (priority and preempt are not written).
    assert "backups" not in header(settings=DetectorSettings((A, B), Timing(interval=0.5), master="10.0.0.1",
                                                             priority=7)).to_json()


@pytest.mark.parametrize(
    "backups, message",
    [
        ('"x"', "backups must be a dict"),
        ('{"peers": [], "priority": 100, "preempt": false}', "backups.peers must name at least one peer"),
        ('{"peers": [["10.0.0.3", 50]], "priority": 0, "preempt": false}', "backups.priority must be an integer 1..254"),
        ('{"peers": [["nope", 50]], "priority": 100, "preempt": false}', "backups.peers"),
        ('{"peers": ["10.0.0.3"], "priority": 100, "preempt": false}', r"each peer must be \[address, priority\]"),
        ('{"peers": [["10.0.0.3", 255]], "priority": 100, "preempt": false}', "backups.peers priority must be"),
        ('{"peers": [["10.0.0.3", 100]], "priority": 100, "preempt": false}', "priority 100 is ours too"),
        ('{"peers": [["10.0.0.3", 50]], "priority": 100}', "backups fields: expected peers, preempt, priority"),
    ],
)
def test_a_bad_backups_field_is_named(backups: str, message: str) -> None:
    data = json.loads(header().to_json())
    data["backups"] = json.loads(backups)
    with pytest.raises(ValueError, match=message):
        TraceHeader.from_json(json.dumps(data))
