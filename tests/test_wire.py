"""The heartbeat wire format: strict decoding, round trips, the replay guard."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from failoverd.core import wire

KEY = b"0123456789abcdef-test-key"
u64 = st.integers(0, 2**64 - 1)

heartbeats = st.builds(
    wire.Heartbeat,
    role=st.sampled_from([wire.ROLE_MASTER, wire.ROLE_BACKUP]),
    holds=st.booleans(),
    leaving=st.booleans(),
    epoch=u64,
    seq=st.integers(1, 2**64 - 1),
    sent_ms=u64,
    interval_ms=st.integers(0, 2**32 - 1),
    ack_epoch=u64,
    ack_seq=u64,
)


@given(heartbeats)
def test_decode_inverts_encode(frame: wire.Heartbeat) -> None:
    data = wire.encode(frame, KEY)
    assert len(data) == wire.DATAGRAM_LENGTH
    assert wire.decode(data, KEY) == frame


@given(heartbeats, st.data())
def test_any_flipped_bit_is_rejected(frame: wire.Heartbeat, data: st.DataObject) -> None:
    raw = bytearray(wire.encode(frame, KEY))
    index = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    raw[index] ^= 1 << bit
    with pytest.raises(wire.WireError) as info:
        wire.decode(bytes(raw), KEY)
    assert info.value.reason in {"magic", "mac"}


@given(heartbeats, st.integers(0, wire.DATAGRAM_LENGTH - 1))
def test_truncated_frames_are_rejected(frame: wire.Heartbeat, length: int) -> None:
    with pytest.raises(wire.WireError, match="length"):
        wire.decode(wire.encode(frame, KEY)[:length], KEY)


@given(heartbeats, st.binary(min_size=1, max_size=64))
def test_oversized_frames_are_rejected(frame: wire.Heartbeat, tail: bytes) -> None:
    with pytest.raises(wire.WireError, match="length"):
        wire.decode(wire.encode(frame, KEY) + tail, KEY)


def test_wrong_key_is_rejected() -> None:
    data = wire.encode(wire.Heartbeat(wire.ROLE_MASTER, True, False, 1, 1, 0, 1000), KEY)
    with pytest.raises(wire.WireError, match="mac"):
        wire.decode(data, b"another key of sixteen+ bytes")


def test_signed_but_malformed_fields_are_rejected() -> None:
    """A peer with the right key and the wrong software is still refused."""
    import hmac

    good = wire.encode(wire.Heartbeat(wire.ROLE_MASTER, True, False, 1, 1, 0, 1000), KEY)
    body = bytearray(good[:52])
    for offset, value, reason in [(4, 2, "version"), (5, 9, "role"), (6, 0x80, "flags"), (7, 1, "flags")]:
        bad = bytearray(body)
        bad[offset] = value
        data = bytes(bad) + hmac.digest(KEY, bytes(bad), "sha256")
        with pytest.raises(wire.WireError) as info:
            wire.decode(data, KEY)
        assert info.value.reason == reason


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        wire.Sealer(b"short", wire.ROLE_MASTER, 1, 1.0, 0.0)


def test_sealer_numbers_frames_from_one() -> None:
    sealer = wire.Sealer(KEY, wire.ROLE_MASTER, 42, 0.5, 10.0)
    first = wire.decode(sealer.seal(10.0, holds=True), KEY)
    second = wire.decode(sealer.seal(10.25, holds=False, ack_epoch=7, ack_seq=3), KEY)
    assert (first.epoch, first.seq, first.sent_ms, first.interval_ms, first.holds) == (42, 1, 0, 500, True)
    assert (second.seq, second.sent_ms, second.ack_epoch, second.ack_seq, second.holds) == (2, 250, 7, 3, False)


def _frame(epoch: int, seq: int, sent_ms: int = 0) -> wire.Heartbeat:
    return wire.Heartbeat(wire.ROLE_MASTER, True, False, epoch, seq, sent_ms, 1000)


def _accept(guard: wire.ReplayGuard, frame: wire.Heartbeat, now: float) -> None:
    guard.check(frame, now)
    guard.record(frame, now)


def test_replay_guard_counts_each_frame_once_in_any_order_within_the_window() -> None:
    guard = wire.ReplayGuard(max_delay=3.0)
    _accept(guard, _frame(5, 1, 0), 100.0)
    _accept(guard, _frame(5, 3, 2000), 102.0)
    _accept(guard, _frame(5, 2, 1000), 102.001)  # overtaken on another path: still new
    for frame in [_frame(5, 3, 2000), _frame(5, 2, 1000), _frame(5, 1, 0), _frame(4, 99, 0)]:
        with pytest.raises(wire.WireError, match="replay"):
            guard.check(frame, 102.5)
    _accept(guard, _frame(5, 4 + wire.REPLAY_WINDOW, 2500), 102.6)  # window: 5 .. 68
    with pytest.raises(wire.WireError, match="replay"):  # unseen, but older than the window
        guard.check(_frame(5, 4, 2100), 102.6)
    guard.check(_frame(5, 4 + 1, 2100), 102.6)  # the oldest seq still inside the window
    _accept(guard, _frame(6, 1, 0), 103.0)  # the peer restarted: a newer epoch starts over
    assert guard.floor == (6, 1)


@given(st.permutations(list(range(1, 40))), st.lists(st.integers(1, 39), max_size=40))
def test_replay_guard_accepts_each_seq_exactly_once(order: list[int], replays: list[int]) -> None:
    guard = wire.ReplayGuard(max_delay=1e9)
    accepted = []
    for seq in order + replays:
        try:
            guard.check(_frame(1, seq), 0.0)
        except wire.WireError:
            continue
        guard.record(_frame(1, seq), 0.0)
        accepted.append(seq)
    assert sorted(accepted) == sorted(set(accepted))  # never twice
    assert set(accepted) == set(order)  # 39 < the window: none lost to reordering


def test_replay_guard_refuses_withheld_frames() -> None:
    guard = wire.ReplayGuard(max_delay=3.0)
    _accept(guard, _frame(1, 1, 0), 50.0)
    _accept(guard, _frame(1, 2, 1000), 51.0)
    guard.check(_frame(1, 3, 2000), 54.9)  # 2.9 s late: still believed
    with pytest.raises(wire.WireError, match="delayed"):
        guard.check(_frame(1, 3, 2000), 55.1)


def test_replay_guard_floor_survives_a_restart() -> None:
    guard = wire.ReplayGuard(max_delay=3.0, floor=(9, 100))
    with pytest.raises(wire.WireError, match="replay"):
        guard.check(_frame(9, 100), 0.0)
    guard.check(_frame(9, 101), 0.0)
