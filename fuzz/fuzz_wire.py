"""Fuzz the heartbeat decoder (failoverd.core.wire).

Invariants:
- ``wire.decode(data, key)`` raises nothing but :class:`wire.WireError`;
- a datagram it accepts re-encodes to exactly the same bytes;
- decode∘encode round-trips: every frame built from fuzzed fields that
  ``encode`` accepts decodes back to an equal :class:`wire.Heartbeat`;
- the replay guard raises nothing but ``WireError`` for any sequence of
  frames, admits none twice, and never moves back.

Run: fuzz/run.sh fuzz_wire SECONDS
"""

import sys

import atheris

with atheris.instrument_imports():
    from failoverd.core import wire

KEY = b"fuzzing-key-0123456789abcdef"


def TestOneInput(data: bytes) -> None:
    try:
        frame = wire.decode(data, KEY)
    except wire.WireError:
        frame = None
    if frame is not None:
        assert wire.encode(frame, KEY) == data, "an accepted datagram does not re-encode identically"
        guard = wire.ReplayGuard(3.0)
        try:
            guard.admit(frame, 10.0, 9.9)
        except wire.WireError:
            pass
        else:
            try:
                guard.admit(frame, 10.5, 10.4)
            except wire.WireError as exc:
                assert exc.reason == "replay", f"a frame seen before refused as {exc.reason}"
            else:
                raise AssertionError("the same frame was accepted twice")

    _fuzz_guard(atheris.FuzzedDataProvider(data))
    fdp = atheris.FuzzedDataProvider(data)
    heartbeat = wire.Heartbeat(
        role=fdp.ConsumeIntInRange(0, 3),
        holds=fdp.ConsumeBool(),
        leaving=fdp.ConsumeBool(),
        epoch=fdp.ConsumeIntInRange(0, (1 << 64) - 1),
        seq=fdp.ConsumeIntInRange(0, (1 << 64) - 1),
        sent_ms=fdp.ConsumeIntInRange(0, (1 << 64) - 1),
        interval_ms=fdp.ConsumeIntInRange(0, (1 << 32) - 1),
        ack_epoch=fdp.ConsumeIntInRange(0, (1 << 64) - 1),
        ack_seq=fdp.ConsumeIntInRange(0, (1 << 64) - 1),
        unfit=fdp.ConsumeBool(),
        preempt=fdp.ConsumeBool(),
        priority=fdp.ConsumeIntInRange(0, 255),
        witness_unreachable=fdp.ConsumeBool(),
        master_heard=fdp.ConsumeBool(),
    )
    try:
        encoded = wire.encode(heartbeat, KEY)
    except ValueError:
        backup_fields = heartbeat.unfit or heartbeat.preempt or heartbeat.priority or heartbeat.master_heard
        assert (
            heartbeat.role not in wire.ROLE_NAMES
            or heartbeat.priority > wire.MAX_PRIORITY
            or (heartbeat.role != wire.ROLE_BACKUP and backup_fields)
        ), "encode refused a frame with a known role and fitting fields"
        return
    assert len(encoded) == wire.DATAGRAM_LENGTH
    try:
        decoded = wire.decode(encoded, KEY)
    except wire.WireError as exc:
        assert exc.reason == "seq" and heartbeat.seq == 0, f"own frame refused: {exc}"
        return
    assert decoded == heartbeat, "decode(encode(frame)) differs from frame"


def _fuzz_guard(fdp: "atheris.FuzzedDataProvider") -> None:
    """Any sequence of authentic frames (any epochs, seqs, times, acks) meets
    the guard: it raises nothing but WireError, never accepts a frame twice,
    and never lets its newest (epoch, seq) go back."""
    guard = wire.ReplayGuard(fdp.ConsumeIntInRange(1, 10_000) / 1000)
    counted: set[tuple[int, int]] = set()
    newest = guard.newest
    now = 0.0
    for _ in range(fdp.ConsumeIntInRange(0, 20)):
        now += fdp.ConsumeIntInRange(0, 10**7) / 1000
        epoch = fdp.ConsumeIntInRange(0, 4) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, (1 << 64) - 1)
        seq = fdp.ConsumeIntInRange(1, 70) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(1, (1 << 64) - 1)
        frame = wire.Heartbeat(wire.ROLE_MASTER, False, False, epoch, seq, fdp.ConsumeIntInRange(0, (1 << 64) - 1), 1000)
        acked_at = now - fdp.ConsumeIntInRange(0, 10**6) / 1000 if fdp.ConsumeBool() else None
        try:
            verdict = guard.admit(frame, now, acked_at)
        except wire.WireError:
            assert guard.newest == newest, "a refused frame moved the window"
            continue
        assert verdict in ("fresh", "overtaken", "delayed"), verdict
        assert (epoch, seq) not in counted, "a frame was admitted twice"
        counted.add((epoch, seq))
        assert guard.newest >= newest, "the window went back"
        newest = guard.newest


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
