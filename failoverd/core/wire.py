"""The heartbeat wire protocol: legacy datagrams and authenticated v1 frames.

Rules of this module: decoding is strict and bounded (one fixed length, every
field checked, the MAC checked before anything is believed); nothing here
reads a clock or a socket — times come in as arguments.

Authenticated v1 frame, 84 bytes, big-endian (spec/wire.md has the full story)::

    magic "FOHB" | version u8 = 1 | role u8 | flags u8 | reserved u8 = 0
    epoch u64 | seq u64 | sent_ms u64 | interval_ms u32
    ack_epoch u64 | ack_seq u64 | HMAC-SHA256 (32 bytes) over all of the above

Acceptance of a decoded frame is a separate step (:class:`ReplayGuard`): a
frame is accepted once, in order, from the newest epoch, and not later than a
bound after its peers' best-seen one-way delay.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import NamedTuple, Union

MAGIC = b"FOHB"
VERSION = 1
ROLE_MASTER = 1
ROLE_BACKUP = 2
ROLE_NAMES = {ROLE_MASTER: "master", ROLE_BACKUP: "backup"}
FLAG_HOLDS = 0x01
FLAG_LEAVING = 0x02
_KNOWN_FLAGS = FLAG_HOLDS | FLAG_LEAVING

_BODY = struct.Struct(">4sBBBBQQQIQQ")
MAC_LENGTH = 32
DATAGRAM_LENGTH = _BODY.size + MAC_LENGTH  # 84
MIN_KEY_LENGTH = 16
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


class WireError(ValueError):
    """A datagram that is not acted upon; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Heartbeat(NamedTuple):
    """One authenticated frame, from either role (the backup's is its status).

    A named tuple rather than a dataclass: one is built per received
    datagram, and tuple construction is several times cheaper.
    """

    role: int
    holds: bool
    leaving: bool
    epoch: int
    seq: int
    sent_ms: int
    interval_ms: int
    ack_epoch: int = 0
    ack_seq: int = 0

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, str(self.role))


class Key:
    """A shared heartbeat key with its HMAC-SHA256 pads precomputed.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) (RFC 2104). Hashing the
    two padded key blocks once and copying those states per message gives
    the same MAC as :func:`hmac.digest` at about half its cost, which matters
    when every datagram is verified and every reply signed.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        secret = check_key(secret)
        if len(secret) > 64:
            secret = hashlib.sha256(secret).digest()
        block = secret.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def mac(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


KeyLike = Union[Key, bytes]


def as_key(key: KeyLike) -> Key:
    return key if isinstance(key, Key) else Key(key)


def check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"a heartbeat key must be at least {MIN_KEY_LENGTH} bytes")
    return bytes(key)


def encode(heartbeat: Heartbeat, key: KeyLike) -> bytes:
    """Serialise and sign; raises ValueError for fields out of range."""
    h = heartbeat
    if h.role not in ROLE_NAMES:
        raise ValueError(f"unknown role {h.role}")
    for name in ("epoch", "seq", "sent_ms", "ack_epoch", "ack_seq"):
        value = getattr(h, name)
        if not 0 <= value <= _U64:
            raise ValueError(f"{name} {value} does not fit in 64 bits")
    if not 0 <= h.interval_ms <= _U32:
        raise ValueError(f"interval_ms {h.interval_ms} does not fit in 32 bits")
    flags = (FLAG_HOLDS if h.holds else 0) | (FLAG_LEAVING if h.leaving else 0)
    body = _BODY.pack(
        MAGIC, VERSION, h.role, flags, 0, h.epoch, h.seq, h.sent_ms, h.interval_ms, h.ack_epoch, h.ack_seq
    )
    return body + as_key(key).mac(body)


_BODY_LENGTH = _BODY.size
_unpack = _BODY.unpack
_compare = hmac.compare_digest


def decode(data: bytes, key: KeyLike) -> Heartbeat:
    """Verify and parse one datagram or raise :class:`WireError`.

    The MAC is checked before any field is trusted, so a forger learns only
    "rejected"; the structural checks after it catch a peer with the right key
    and the wrong software.
    """
    if len(data) != DATAGRAM_LENGTH:
        raise WireError("length", f"{len(data)} bytes, expected {DATAGRAM_LENGTH}")
    body = data[:_BODY_LENGTH]
    if body[:4] != MAGIC:
        raise WireError("magic", "not a failoverd heartbeat")
    mac = key.mac(body) if isinstance(key, Key) else Key(key).mac(body)
    if not _compare(mac, data[_BODY_LENGTH:]):
        raise WireError("mac", "authentication failed (wrong key or forged)")
    _, version, role, flags, reserved, epoch, seq, sent_ms, interval_ms, ack_epoch, ack_seq = _unpack(body)
    if version != VERSION:
        raise WireError("version", f"version {version}, this is {VERSION}")
    if role not in ROLE_NAMES:
        raise WireError("role", f"unknown role {role}")
    if flags & ~_KNOWN_FLAGS or reserved:
        raise WireError("flags", f"unknown flags {flags:#x}/{reserved:#x}")
    if seq == 0:
        raise WireError("seq", "sequence numbers start at 1")
    return Heartbeat(
        role, bool(flags & FLAG_HOLDS), bool(flags & FLAG_LEAVING), epoch, seq, sent_ms, interval_ms, ack_epoch, ack_seq
    )


class Sealer:
    """The sending half of one host: its key, role and epoch, and the next seq.

    ``epoch`` is chosen by the shell (wall-clock nanoseconds at start), so a
    restarted host's frames are newer than anything it sent before; ``now`` is
    the caller's monotonic clock and only its differences matter.
    """

    def __init__(self, key: KeyLike, role: int, epoch: int, interval: float, started: float) -> None:
        self._key = as_key(key)
        self._role = role
        self.epoch = epoch
        self._interval_ms = max(1, round(interval * 1000))
        self._started = started
        self.seq = 0

    def rekey(self, key: KeyLike) -> None:
        self._key = as_key(key)

    def seal(self, now: float, *, holds: bool, leaving: bool = False, ack_epoch: int = 0, ack_seq: int = 0) -> bytes:
        self.seq += 1
        sent_ms = max(0, int((now - self._started) * 1000))
        flags = (FLAG_HOLDS if holds else 0) | (FLAG_LEAVING if leaving else 0)
        # Packed directly (not through encode()): every field is in range by
        # construction, and this runs once per heartbeat on both hosts.
        body = _BODY.pack(
            MAGIC, VERSION, self._role, flags, 0, self.epoch, self.seq, sent_ms, self._interval_ms, ack_epoch, ack_seq
        )
        return body + self._key.mac(body)


REPLAY_WINDOW = 64
"""How far behind the newest seq a frame may be and still count (as IPsec's
anti-replay window): each frame is sealed once per target, so copies on
several paths carry different seqs and may arrive in any order."""
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


class ReplayGuard:
    """Accepts each peer frame at most once, and not too late.

    - A frame from an older epoch than the newest seen is a replay.
    - Within an epoch, each seq counts once: a seq above the highest seen is
      new; one up to ``REPLAY_WINDOW - 1`` below it is new if not seen yet
      (frames sent on several paths may overtake one another); anything
      older, or seen, is a replay.
    - Delay bound: ``arrival - sent_ms`` is the one-way delay plus a constant
      clock offset; its minimum over the epoch estimates that offset. A frame
      later than ``max_delay`` beyond it was withheld: refusing it bounds how
      long an on-path attacker can make a dead peer look alive.

    ``floor`` lets the shell restore the newest (epoch, seq) across restarts;
    everything up to it counts as seen, so replays of an earlier capture are
    refused after a restart too.
    """

    def __init__(self, max_delay: float, floor: tuple[int, int] = (0, 0)) -> None:
        self.max_delay_ms = max_delay * 1000
        self.epoch, self.seq = floor
        self._seen = _WINDOW_MASK if floor != (0, 0) else 0  # bit i: seq - i was accepted
        self._min_offset: float | None = None

    def check(self, frame: Heartbeat, now: float) -> None:
        """Raise :class:`WireError` unless ``frame`` is new; does not record it."""
        if frame.epoch < self.epoch:
            raise WireError("replay", f"epoch {frame.epoch} older than {self.epoch}")
        if frame.epoch == self.epoch:
            if frame.seq <= self.seq:
                behind = self.seq - frame.seq
                if behind >= REPLAY_WINDOW or (self._seen >> behind) & 1:
                    raise WireError("replay", f"seq {frame.seq} already seen or too old (newest {self.seq})")
            if self._min_offset is not None:
                late = now * 1000 - frame.sent_ms - self._min_offset
                if late > self.max_delay_ms:
                    raise WireError("delayed", f"{late:.0f} ms later than the best-seen delay")

    def record(self, frame: Heartbeat, now: float) -> bool:
        """Note ``frame`` as seen; True if it is the newest yet (False: overtaken by a newer one)."""
        offset = now * 1000 - frame.sent_ms
        if frame.epoch != self.epoch:
            self.epoch, self.seq, self._seen = frame.epoch, frame.seq, 1
            self._min_offset = offset
            return True
        if self._min_offset is None or offset < self._min_offset:
            self._min_offset = offset
        if frame.seq > self.seq:
            self._seen = ((self._seen << (frame.seq - self.seq)) | 1) & _WINDOW_MASK
            self.seq = frame.seq
            return True
        self._seen |= 1 << (self.seq - frame.seq)
        return False

    @property
    def floor(self) -> tuple[int, int]:
        return self.epoch, self.seq
