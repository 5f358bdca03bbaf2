"""Fuzz the heartbeat decoder (failoverd.core.wire).

Invariants:
- ``wire.decode(data, key)`` raises nothing but :class:`wire.WireError`;
- a datagram it accepts re-encodes to exactly the same bytes;
- decode∘encode round-trips: every frame built from fuzzed fields that
  ``encode`` accepts decodes back to an equal :class:`wire.Heartbeat`;
- the replay guard raises nothing but ``WireError`` for any decoded frame.

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
            guard.check(frame, 10.0)
            guard.record(frame, 10.0)
            guard.check(frame, 10.5)
        except wire.WireError:
            pass
        else:
            raise AssertionError("the same frame was accepted twice")

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
    )
    try:
        encoded = wire.encode(heartbeat, KEY)
    except ValueError:
        assert heartbeat.role not in wire.ROLE_NAMES, "encode refused a frame with a known role and fitting fields"
        return
    assert len(encoded) == wire.DATAGRAM_LENGTH
    try:
        decoded = wire.decode(encoded, KEY)
    except wire.WireError as exc:
        assert exc.reason == "seq" and heartbeat.seq == 0, f"own frame refused: {exc}"
        return
    assert decoded == heartbeat, "decode(encode(frame)) differs from frame"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
