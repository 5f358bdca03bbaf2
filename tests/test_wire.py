"""The heartbeat wire format: strict decoding, round trips, the replay guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failoverd.core import wire

KEY = b"0123456789abcdef-test-key"
u64 = st.integers(0, 2**64 - 1)

_common = {
    "holds": st.booleans(),
    "leaving": st.booleans(),
    "epoch": u64,
    "seq": st.integers(1, 2**64 - 1),
    "sent_ms": u64,
    "interval_ms": st.integers(0, 2**32 - 1),
    "ack_epoch": u64,
    "ack_seq": u64,
}
heartbeats = st.builds(
    wire.Heartbeat, role=st.just(wire.ROLE_MASTER), unfit=st.just(False), preempt=st.just(False), priority=st.just(0),
    witness_unreachable=st.booleans(), master_heard=st.just(False), **_common
) | st.builds(
    wire.Heartbeat,
    role=st.just(wire.ROLE_BACKUP),
    unfit=st.booleans(),
    preempt=st.booleans(),
    priority=st.integers(0, wire.MAX_PRIORITY),
    witness_unreachable=st.booleans(),
    master_heard=st.booleans(),
    **_common,
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


def _resigned(frame: wire.Heartbeat, offset: int, value: int) -> bytes:
    import hmac

    body = bytearray(wire.encode(frame, KEY)[:52])
    body[offset] = value
    return bytes(body) + hmac.digest(KEY, bytes(body), "sha256")


@pytest.mark.parametrize(
    ("role", "offset", "value"),
    [
        (wire.ROLE_MASTER, 6, wire.FLAG_UNFIT),  # a backup's flags from a master
        (wire.ROLE_MASTER, 6, wire.FLAG_PREEMPT),
        (wire.ROLE_MASTER, 7, 100),  # a master has no priority
        (wire.ROLE_BACKUP, 7, 255),  # beyond MAX_PRIORITY
        (wire.ROLE_MASTER, 6, wire.FLAG_MASTER_HEARD),  # a backup's "master heard" from a master
        (wire.ROLE_BACKUP, 6, 0x40),
        (wire.ROLE_MASTER, 6, 0x40),
    ],
)
def test_the_backups_fields_are_refused_where_they_do_not_belong(role: int, offset: int, value: int) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.decode(_resigned(wire.Heartbeat(role, False, False, 1, 1, 0, 1000), offset, value), KEY)
    assert info.value.reason == "flags"


def test_a_backup_says_its_priority_and_whether_it_is_unfit_or_preempts() -> None:
    frame = wire.Heartbeat(wire.ROLE_BACKUP, True, False, 7, 3, 10, 1000, 5, 2, unfit=True, preempt=True, priority=200)
    data = wire.encode(frame, KEY)
    assert data[6] == wire.FLAG_HOLDS | wire.FLAG_UNFIT | wire.FLAG_PREEMPT and data[7] == 200
    assert wire.decode(data, KEY) == frame
    with pytest.raises(ValueError, match="a backup's"):
        wire.encode(wire.Heartbeat(wire.ROLE_MASTER, True, False, 1, 1, 0, 1000, priority=1), KEY)
    with pytest.raises(ValueError, match="within 0 - 254"):
        wire.encode(frame._replace(priority=255), KEY)
    with pytest.raises(ValueError, match="a backup's"):
        wire.Sealer(KEY, wire.ROLE_MASTER, 1, 1.0, 0.0).seal(1.0, holds=True, priority=3)


def test_a_backup_of_a_pair_sends_the_bytes_of_a_version_without_several_backups() -> None:
    """Priority 0 and no new flags: an older heartbeatd (which refuses a non-zero byte 7) reads it."""
    sealed = wire.Sealer(KEY, wire.ROLE_BACKUP, 9, 1.0, 0.0).seal(2.5, holds=True, ack_epoch=4, ack_seq=8)
    assert sealed[6] == wire.FLAG_HOLDS and sealed[7] == 0
    peer = wire.Sealer(KEY, wire.ROLE_BACKUP, 9, 1.0, 0.0).seal(2.5, holds=False, priority=150, unfit=True)
    assert wire.decode(peer, KEY)[9:] == (True, False, 150, False, False)


def test_a_backup_says_it_hears_the_master_in_bit_5() -> None:
    """FLAG_MASTER_HEARD (spec/backups.md, "What the review found", 1): a backup's only, round trip."""
    sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, 9, 1.0, 0.0)
    sealed = sealer.seal(2.5, holds=False, ack_epoch=4, ack_seq=8, priority=150, master_heard=True)
    assert sealed[6] == wire.FLAG_MASTER_HEARD == 0x20
    frame = wire.decode(sealed, KEY)
    assert frame.master_heard and frame.priority == 150 and not frame.holds
    assert not wire.decode(sealer.seal(3.0, holds=False, priority=150), KEY).master_heard
    explicit = wire.Heartbeat(wire.ROLE_BACKUP, True, False, 7, 3, 10, 1000, 5, 2, priority=20, master_heard=True)
    assert wire.decode(wire.encode(explicit, KEY), KEY) == explicit
    with pytest.raises(ValueError, match="a backup's"):
        wire.encode(wire.Heartbeat(wire.ROLE_MASTER, True, False, 1, 1, 0, 1000, master_heard=True), KEY)
    with pytest.raises(ValueError, match="a backup's"):
        wire.Sealer(KEY, wire.ROLE_MASTER, 1, 1.0, 0.0).seal(1.0, holds=True, master_heard=True)


def test_either_role_may_say_it_cannot_reach_the_witness() -> None:
    """FLAG_WITNESS_UNREACHABLE (--etcd-unreachable keep's confirmation, spec/witness.md) is bit 4, from either role."""
    for role in (wire.ROLE_MASTER, wire.ROLE_BACKUP):
        sealed = wire.Sealer(KEY, role, 9, 1.0, 0.0).seal(2.5, holds=False, ack_epoch=4, ack_seq=8, witness_unreachable=True)
        assert sealed[6] == wire.FLAG_WITNESS_UNREACHABLE == 0x10
        frame = wire.decode(sealed, KEY)
        assert frame.witness_unreachable and not frame.holds and frame.role == role


@pytest.mark.parametrize("role", [wire.ROLE_MASTER, wire.ROLE_BACKUP])
def test_a_pair_without_a_witness_sends_the_bytes_of_a_version_without_it(role: int) -> None:
    """The flag is off unless asked for: the frames are those an older failoverd reads (its bit 4 is unknown)."""
    sealed = wire.Sealer(KEY, role, 9, 1.0, 0.0).seal(2.5, holds=True, leaving=True, ack_epoch=4, ack_seq=8)
    assert sealed[6] == wire.FLAG_HOLDS | wire.FLAG_LEAVING
    old = wire.Heartbeat(role, True, False, 9, 1, 2500, 1000, 4, 8)
    assert wire.encode(old, KEY)[6] == wire.FLAG_HOLDS


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


def _accept(guard: wire.ReplayGuard, frame: wire.Heartbeat, now: float, acked_at: float | None = None) -> str:
    verdict = guard.admit(frame, now, acked_at)
    assert verdict in ("fresh", "overtaken"), verdict
    return verdict


def test_replay_guard_counts_each_frame_once_in_any_order_within_the_window() -> None:
    guard = wire.ReplayGuard(max_delay=3.0)
    assert _accept(guard, _frame(5, 1, 0), 100.0, acked_at=99.9) == "fresh"
    assert _accept(guard, _frame(5, 3, 2000), 102.0) == "fresh"
    assert _accept(guard, _frame(5, 2, 1000), 102.001) == "overtaken"  # on another path: still new
    for frame in [_frame(5, 3, 2000), _frame(5, 2, 1000), _frame(5, 1, 0), _frame(4, 99, 0)]:
        with pytest.raises(wire.WireError, match="replay"):
            guard.admit(frame, 102.5)
    _accept(guard, _frame(5, 4 + wire.REPLAY_WINDOW, 2500), 102.6)  # window: 5 .. 68
    with pytest.raises(wire.WireError, match="replay"):  # unseen, but older than the window
        guard.admit(_frame(5, 4, 2100), 102.6)
    _accept(guard, _frame(5, 4 + 1, 2100), 102.6)  # the oldest seq still inside the window
    assert guard.admit(_frame(6, 1, 0), 103.0) == "delayed"  # the peer restarted: its age is unproven yet
    assert guard.newest == (6, 1)  # ... but it is recorded: our next frame acknowledges it


@given(st.permutations(list(range(1, 40))), st.lists(st.integers(1, 39), max_size=40))
def test_replay_guard_accepts_each_seq_exactly_once(order: list[int], replays: list[int]) -> None:
    guard = wire.ReplayGuard(max_delay=1e9)
    accepted = []
    for seq in order + replays:
        try:
            guard.admit(_frame(1, seq), 0.0, acked_at=0.0)
        except wire.WireError:
            continue
        accepted.append(seq)
    assert sorted(accepted) == sorted(set(accepted))  # never twice
    assert set(accepted) == set(order)  # 39 < the window: none lost to reordering


def test_replay_guard_bounds_a_withheld_frame_by_the_reference_proof() -> None:
    guard = wire.ReplayGuard(max_delay=3.0)
    _accept(guard, _frame(1, 1, 0), 50.0, acked_at=49.99)  # pins the offset: 50 s, give or take 10 ms
    _accept(guard, _frame(1, 2, 1000), 51.0)
    assert guard.admit(_frame(1, 3, 2000), 54.9) == "fresh"  # sent at 51.99 at the latest: 2.91 s old at most
    assert guard.admit(_frame(1, 4, 3000), 56.1) == "delayed"  # 3.11 s: may have been withheld
    assert guard.newest == (1, 4)  # recorded all the same: it is authentic and unseen


def test_replay_guard_direct_proof_overrides_a_stale_reference() -> None:
    """The peer's clock jumped (a paused VM): its offsets no longer match the
    reference, but a frame acknowledging our frame of 0.2 s ago is 0.2 s old at most."""
    guard = wire.ReplayGuard(max_delay=3.0)
    _accept(guard, _frame(1, 1, 0), 10.0, acked_at=9.9)
    assert guard.admit(_frame(1, 2, 1000), 70.0) == "delayed"  # paused a minute: looks 59 s late
    assert guard.admit(_frame(1, 3, 2000), 71.0, acked_at=70.8) == "fresh"
    assert guard.admit(_frame(1, 4, 3000), 72.0) == "fresh"  # the reference moved with it


def test_replay_guard_refuses_frames_proven_old_and_unproven_ones() -> None:
    guard = wire.ReplayGuard(max_delay=3.0)
    assert guard.admit(_frame(1, 1, 0), 10.0, acked_at=6.9) == "delayed"  # acknowledges a frame 3.1 s old
    assert guard.admit(_frame(1, 2, 1000), 11.0) == "delayed"  # no proof at all


def test_replay_guard_never_refuses_a_healthy_peer_whatever_the_drift() -> None:
    """Two days of heartbeats at 1 s, the peer's clock 500 ppm slow or fast;
    each acknowledges our status of about a second before, except that every
    third acknowledges one too old to remember (our statuses were lost), so
    only the reference proof vouches for it: nothing is ever delayed."""
    for rate in (1 - wire.DRIFT_ALLOWANCE, 1 + wire.DRIFT_ALLOWANCE):
        guard = wire.ReplayGuard(max_delay=3.0)
        for seq in range(1, 2 * 24 * 3600):
            arrival = seq + 0.002
            acked_at = None if seq % 3 == 0 else arrival - 1.01
            frame = _frame(1, seq, int(seq * rate * 1000))
            assert guard.admit(frame, arrival, acked_at) == "fresh", (rate, seq)


def test_replay_guard_survives_a_sequence_jump_to_the_end_of_the_range() -> None:
    guard = wire.ReplayGuard(max_delay=3.0)
    _accept(guard, _frame(1, 1, 0), 10.0, acked_at=9.9)
    with pytest.raises(wire.WireError, match="seq"):  # a forger's jump, unproven: refused, nothing moves
        guard.admit(_frame(1, 2**64 - 1, 100), 10.1)
    assert guard.newest == (1, 1)
    # Proven fresh (the peer really did send that much): accepted without
    # building a 2**64-bit window (this raised MemoryError).
    assert guard.admit(_frame(1, 2**64 - 1, 100), 10.1, acked_at=10.0) == "fresh"
    for seen_or_old in (2**64 - 1, 2, 2**64 - 1 - wire.REPLAY_WINDOW):
        with pytest.raises(wire.WireError, match="replay"):
            guard.admit(_frame(1, seen_or_old, 100), 10.1, acked_at=10.0)


def test_replay_guard_refuses_an_implausibly_far_epoch_unless_it_proves_itself() -> None:
    epoch = 1_790_000_000 * 10**9
    guard = wire.ReplayGuard(max_delay=3.0)
    _accept(guard, _frame(epoch, 1, 5000), 10.0, acked_at=9.9)
    restart = epoch + 3600 * 10**9  # the peer restarted an hour later: plausible
    far = epoch + 2 * wire.EPOCH_LEAD_NS
    with pytest.raises(wire.WireError, match="epoch"):
        guard.admit(_frame(far, 1, 0), 20.0)
    assert guard.newest == (epoch, 1)  # nothing moved: the real peer's frames still count
    assert guard.admit(_frame(restart, 1, 0), 20.0) == "delayed"  # recorded, its age not proven yet
    # A real peer whose clock leapt, now acknowledging our answer: let in.
    assert guard.admit(_frame(far, 1, 0), 30.0, acked_at=29.95, acknowledges=True) == "fresh"


def test_replay_guard_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        wire.ReplayGuard(max_delay=0)
    with pytest.raises(ValueError):
        wire.ReplayGuard(max_delay=1, drift=0.5)


def test_sealer_remembers_when_it_sent_what_a_peer_acknowledges() -> None:
    sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, 42, 1.0, 0.0)
    for n in range(1, 301):
        sealer.seal(float(n), holds=False)
    ack = wire.Heartbeat(wire.ROLE_MASTER, True, False, 7, 1, 0, 1000, ack_epoch=42, ack_seq=299)
    assert sealer.acknowledges_us(ack) and sealer.acked_at(ack) == 299.0
    old = ack._replace(ack_seq=10)  # ours, but too old to remember when
    assert sealer.acknowledges_us(old) and sealer.acked_at(old) is None
    for bogus in (ack._replace(ack_epoch=41), ack._replace(ack_seq=301), ack._replace(ack_seq=0)):
        assert not sealer.acknowledges_us(bogus) and sealer.acked_at(bogus) is None


def test_an_old_pin_does_not_stretch_the_bound_when_clocks_drift_beyond_the_allowance() -> None:
    """Two hours of heartbeats from a peer whose clock runs 2000 ppm fast (twice
    the allowance), then one withheld for 3.5 s that acknowledges nothing we
    remember: refused. Keeping the largest pin for ever would let it count (the
    first pin would overstate the offset by the excess drift times two hours, 7 s)."""
    guard = wire.ReplayGuard(max_delay=3.0)
    rate = 1 + 2 * wire.DRIFT_ALLOWANCE
    for seq in range(1, 2 * 3600):
        assert guard.admit(_frame(1, seq, int(seq * rate * 1000)), seq + 0.002, seq + 0.002 - 1.01) == "fresh"
    sent = 2 * 3600
    assert guard.admit(_frame(1, sent, int(sent * rate * 1000)), sent + 3.5) == "delayed"
