"""The heartbeat wire protocol: legacy datagrams and authenticated v1 frames.

Rules of this module: decoding is strict and bounded (one fixed length, every
field checked, the MAC checked before anything is believed); nothing here
reads a clock or a socket — times come in as arguments.

Authenticated v1 frame, 84 bytes, big-endian (spec/wire.md has the full story)::

    magic "FOHB" | version u8 = 1 | role u8 | flags u8 | priority u8 (backup; 0 from a master)
    epoch u64 | seq u64 | sent_ms u64 | interval_ms u32
    ack_epoch u64 | ack_seq u64 | HMAC-SHA256 (32 bytes) over all of the above

Acceptance of a decoded frame is a separate step (:class:`ReplayGuard`): a
frame is accepted once, from the newest epoch, and only while it is provably
younger than a bound — proved by the acknowledgement it carries of one of our
own frames, not by comparing clocks, so no drift or clock step makes a
healthy peer's frames look old.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from typing import NamedTuple

MAGIC = b"FOHB"
VERSION = 1
ROLE_MASTER = 1
ROLE_BACKUP = 2
ROLE_NAMES = {ROLE_MASTER: "master", ROLE_BACKUP: "backup"}
FLAG_HOLDS = 0x01
FLAG_LEAVING = 0x02
FLAG_UNFIT = 0x04
"""Backup only: "my checks or links fail: I will not take over" (several backups, spec/backups.md)."""
FLAG_PREEMPT = 0x08
"""Backup only: "I take the addresses from a lower-priority backup that holds them" (``--preempt``)."""
FLAG_WITNESS_UNREACHABLE = 0x10
"""Either role, witness mode only: "I cannot reach etcd and have read no grant of a claim of mine"
(``--etcd-unreachable keep``). A frame with it that acknowledges the holder's frame sent at ``h``
is the holder's *confirmation*: it may keep its addresses until ``h + V`` (spec/witness.md)."""
FLAG_MASTER_HEARD = 0x20
"""Backup only (several backups): "a heartbeat of the master counted here within the last W",
``W = min(fail_after, 2 × interval + allowance)`` (spec/backups.md, "What the review found", 1).
A peer that cannot hear the master learns from it that the master is alive. An older version
refuses the bit (``flags``): every backup of one master is upgraded together."""
_KNOWN_FLAGS = {
    ROLE_MASTER: FLAG_HOLDS | FLAG_LEAVING | FLAG_WITNESS_UNREACHABLE,
    ROLE_BACKUP: FLAG_HOLDS | FLAG_LEAVING | FLAG_UNFIT | FLAG_PREEMPT | FLAG_WITNESS_UNREACHABLE | FLAG_MASTER_HEARD,
}
MAX_PRIORITY = 254
"""Priorities a backup may have (1 - 254, ``failoverd --priority``); 0 is a backup with no
peers (a pair), which sends exactly the frames of a version without several backups."""

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
    unfit: bool = False
    """Backup only (``FLAG_UNFIT``)."""
    preempt: bool = False
    """Backup only (``FLAG_PREEMPT``)."""
    priority: int = 0
    """Backup only: its ``--priority``, and so its name among several backups; 0 in a pair."""
    witness_unreachable: bool = False
    """Either role, witness mode only (``FLAG_WITNESS_UNREACHABLE``)."""
    master_heard: bool = False
    """Backup only, several backups (``FLAG_MASTER_HEARD``)."""


def _flags(
    holds: bool, leaving: bool, unfit: bool, preempt: bool, witness_unreachable: bool, master_heard: bool = False,
) -> int:
    return (
        (FLAG_HOLDS if holds else 0)
        | (FLAG_LEAVING if leaving else 0)
        | (FLAG_UNFIT if unfit else 0)
        | (FLAG_PREEMPT if preempt else 0)
        | (FLAG_WITNESS_UNREACHABLE if witness_unreachable else 0)
        | (FLAG_MASTER_HEARD if master_heard else 0)
    )


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


KeyLike = Key | bytes


def as_key(key: KeyLike) -> Key:
    return key if isinstance(key, Key) else Key(key)


def check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"a heartbeat key must be at least {MIN_KEY_LENGTH} bytes")
    return bytes(key)


def _check_backup_fields(role: int, unfit: bool, preempt: bool, priority: int, master_heard: bool = False) -> None:
    if role != ROLE_BACKUP and (unfit or preempt or priority or master_heard):
        raise ValueError("unfit, preempt, priority and master heard are a backup's")
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority {priority} is not within 0 - {MAX_PRIORITY}")


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
    _check_backup_fields(h.role, h.unfit, h.preempt, h.priority, h.master_heard)
    flags = _flags(h.holds, h.leaving, h.unfit, h.preempt, h.witness_unreachable, h.master_heard)
    body = _BODY.pack(
        MAGIC, VERSION, h.role, flags, h.priority, h.epoch, h.seq, h.sent_ms, h.interval_ms, h.ack_epoch, h.ack_seq
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
    _, version, role, flags, priority, epoch, seq, sent_ms, interval_ms, ack_epoch, ack_seq = _unpack(body)
    if version != VERSION:
        raise WireError("version", f"version {version}, this is {VERSION}")
    known = _KNOWN_FLAGS.get(role)
    if known is None:
        raise WireError("role", f"unknown role {role}")
    # A master's priority byte is reserved (0); a backup's is at most MAX_PRIORITY.
    if flags & ~known or priority > (MAX_PRIORITY if role == ROLE_BACKUP else 0):
        raise WireError("flags", f"unknown flags {flags:#x}/{priority:#x}")
    if seq == 0:
        raise WireError("seq", "sequence numbers start at 1")
    return Heartbeat(
        role,
        bool(flags & FLAG_HOLDS),
        bool(flags & FLAG_LEAVING),
        epoch,
        seq,
        sent_ms,
        interval_ms,
        ack_epoch,
        ack_seq,
        bool(flags & FLAG_UNFIT),
        bool(flags & FLAG_PREEMPT),
        priority,
        bool(flags & FLAG_WITNESS_UNREACHABLE),
        bool(flags & FLAG_MASTER_HEARD),
    )


class Sealer:
    """The sending half of one host: its key, role and epoch, and the next seq.

    ``epoch`` is chosen by the shell (wall-clock nanoseconds at start, never
    below the last one used), so a restarted host's frames are newer than
    anything it sent before; ``now`` is the caller's monotonic clock and only
    its differences matter.

    The sealer remembers when it sent each of its last :data:`SENT_MEMORY`
    frames: a peer frame that acknowledges one of them was made after that
    moment, which proves its age without comparing the two hosts' clocks
    (:meth:`acked_at`).
    """

    def __init__(
        self, key: KeyLike, role: int, epoch: int, interval: float, started: float, *, memory: int = 0
    ) -> None:
        self._key = as_key(key)
        self._role = role
        self.epoch = epoch
        self._interval_ms = max(1, round(interval * 1000))
        self._started = started
        self.seq = 0
        self.memory = max(SENT_MEMORY, memory)
        """How many of its frames' send times it remembers (:func:`sent_memory`)."""
        self._sent: list[tuple[int, float, int]] = [(0, 0.0, 0)] * self.memory  # (seq, when, its ack_epoch)

    def rekey(self, key: KeyLike) -> None:
        self._key = as_key(key)

    def seal(
        self,
        now: float,
        *,
        holds: bool,
        leaving: bool = False,
        ack_epoch: int = 0,
        ack_seq: int = 0,
        unfit: bool = False,
        preempt: bool = False,
        priority: int = 0,
        witness_unreachable: bool = False,
        master_heard: bool = False,
    ) -> bytes:
        if unfit or preempt or priority or master_heard:
            _check_backup_fields(self._role, unfit, preempt, priority, master_heard)
        self.seq += 1
        self._sent[self.seq % self.memory] = (self.seq, now, ack_epoch)
        sent_ms = max(0, int((now - self._started) * 1000))
        flags = _flags(holds, leaving, unfit, preempt, witness_unreachable, master_heard)
        # Packed directly (not through encode()): every field is in range by
        # construction, and this runs once per heartbeat on both hosts.
        body = _BODY.pack(
            MAGIC, VERSION, self._role, flags, priority, self.epoch, self.seq, sent_ms, self._interval_ms, ack_epoch, ack_seq
        )
        return body + self._key.mac(body)

    def acknowledges_us(self, frame: Heartbeat) -> bool:
        """Does ``frame`` acknowledge a frame of our current epoch (one we really sent)?"""
        return frame.ack_epoch == self.epoch and 1 <= frame.ack_seq <= self.seq

    def _acked(self, frame: Heartbeat) -> tuple[int, float, int] | None:
        """Our record (seq, when, its ack_epoch) of the frame ``frame`` acknowledges, if ours and remembered."""
        if not self.acknowledges_us(frame):
            return None
        entry = self._sent[frame.ack_seq % self.memory]
        return entry if entry[0] == frame.ack_seq else None

    def acked_at(self, frame: Heartbeat) -> float | None:
        """When we sent the frame ``frame`` acknowledges, if it is of our epoch and still remembered."""
        entry = self._acked(frame)
        return None if entry is None else entry[1]

    def answers_a_frame_that_acknowledged_it(self, frame: Heartbeat) -> bool:
        """Does ``frame`` acknowledge a frame of ours that itself acknowledged ``frame``'s epoch?

        That is: the peer had counted the frame of ours it answers (a frame
        counts only if it acknowledges the receiver's current epoch). A
        status answering an uncounted heartbeat (the handshake's first) says
        what the backup held while it still listened to an older master.
        """
        entry = self._acked(frame)
        return entry is not None and entry[2] == frame.epoch


SENT_MEMORY = 256
"""The fewest of its own frames' send times a sealer remembers (a pair needs a
handful: the peer acknowledges the newest frame it recorded)."""


def sent_memory(destinations: int, max_age: float, interval: float) -> int:
    """How many send times a sealer must remember so that an answer to any frame it sent within
    ``max_age`` (older ones cannot count anyway) is still found: one frame per destination per
    interval, twice over for the frames sent between (handshake answers, changes said at once).
    heartbeatd with 254 backups seals 254 frames an interval: 256 alone would forget a heartbeat
    before its answer came back. At most 65536 (a few MiB when full): beyond, an answer to a
    forgotten frame only fails to count, which is safe."""
    return min(1 << 16, max(SENT_MEMORY, 2 * destinations * (math.ceil(max_age / interval) + 1)))

REPLAY_WINDOW = 64
"""How far behind the newest seq a frame may be and still count (as IPsec's
anti-replay window): each frame is sealed once per target, so copies on
several paths carry different seqs and may arrive in any order."""
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1

DRIFT_ALLOWANCE = 1000e-6
"""How fast (s per s) the two hosts' monotonic clocks may drift apart and the
delay bound still hold exactly: 500 ppm is the most NTP will ever slew one
clock (and ten times a typical undisciplined crystal), so two clocks slewed
opposite ways drift apart by up to 1000 ppm. See :class:`ReplayGuard`."""

PIN_LIFETIME = 16
"""A reference pin is replaced by the newest direct proof once it is older than
this many ``max_delay``s, even if the newer pin is looser: were the clocks to
drift apart faster than the allowance, an old pin would overstate the offset
by the excess times its age, so its age is kept short."""

EPOCH_LEAD_NS = 24 * 3600 * 10**9
"""How far a new peer epoch may lead the newest known one beyond the time that
has passed (an NTP step of the peer's wall clock between two of its starts),
unless the frame acknowledges our current epoch."""

SEQ_LEAD = 1 << 32
"""The largest sequence jump accepted from a frame that does not acknowledge
our current epoch: a genuine peer seals a few frames per interval, so only a
forger (under a leaked key) jumps by billions, and a jump to near 2**64 would
freeze the window for good."""


class ReplayGuard:
    """Accepts each peer frame at most once, and only while it is provably young.

    - A frame from an older epoch than the newest seen is a replay; so is a seq
      already seen, or one ``REPLAY_WINDOW`` or more behind the newest (frames
      sent on several paths may overtake one another within the window).
    - Age, without synchronised clocks: a frame that acknowledges one of our
      own frames was made after we sent that one, so its age is at most
      ``now - acked_at`` (*direct proof*). Such a frame also pins the peer's
      clock: its offset ``arrival - sent_ms`` minus that age is a lower bound
      ``L`` on the clock offset between the hosts, valid later too if ``L`` is
      lowered by :data:`DRIFT_ALLOWANCE` for every second since. Any later
      frame of the epoch is then at most ``offset - L(now)`` old (*reference
      proof*), so frames that acknowledge an older frame of ours (our status
      to the master was lost) still prove their age. A frame is *timely* if
      either proof says it is at most ``max_delay`` old; one that is not is
      ``delayed``: it may have been withheld by an attacker, and it does not
      count. So no frame counts more than ``max_delay`` after it was sent,
      whatever the clocks do, as long as they drift apart by at most the
      allowance; faster drift adds only its excess times the age of the pin,
      which :data:`PIN_LIFETIME` keeps short (spec/wire.md states the bound).
    - Implausible moves are refused unless the frame acknowledges our current
      epoch: a new epoch far ahead of the current one (:data:`EPOCH_LEAD_NS`),
      a seq jump of :data:`SEQ_LEAD` or more. Under a leaked key that stops a
      forger who does not see our frames from freezing the window; a genuine
      peer whose clock leapt gets our answer and acknowledges it in its next
      frame. After the key is rotated the core starts a new guard (nothing is
      persisted).

    :meth:`admit` raises :class:`WireError` for a frame that changes nothing
    (``replay``, ``epoch``, ``seq``), and otherwise records it (seen, and the
    newest frame our next one acknowledges) and says whether it is timely.

    ``judge_age=False`` (what-if replay of a recording, where the
    acknowledgements are of another run's frames) calls every frame timely.
    """

    __slots__ = (
        "_drift",
        "_judge_age",
        "_last_arrival",
        "_last_sent_ms",
        "_pinned_at",
        "_reference",
        "_seen",
        "epoch",
        "max_delay_ms",
        "newest_admitted",
        "seq",
    )

    def __init__(self, max_delay: float, drift: float = DRIFT_ALLOWANCE, *, judge_age: bool = True) -> None:
        if max_delay <= 0:
            raise ValueError(f"max_delay must be positive, not {max_delay}")
        if not 0 <= drift < 0.01:
            raise ValueError(f"drift allowance {drift} is outside 0..0.01")
        self.max_delay_ms = max_delay * 1000
        self._drift = drift
        self._judge_age = judge_age
        self.newest_admitted = False
        """Whether the frame :meth:`admit` last recorded was the newest yet (not overtaken)."""
        self.epoch = 0
        self.seq = 0
        self._seen = 0  # bit i: seq - i was recorded
        # max over direct proofs of (offset - age + drift * arrival), in ms;
        # L(now) = _reference - drift * now. None: no proof in this epoch yet.
        self._reference: float | None = None
        self._pinned_at = 0.0
        self._last_sent_ms = 0
        self._last_arrival = 0.0

    def admit(self, frame: Heartbeat, now: float, acked_at: float | None = None, *, acknowledges: bool = False) -> str:
        """Record ``frame`` and return ``fresh``, ``overtaken`` or ``delayed``, or raise :class:`WireError`.

        ``acked_at``: when we sent the frame of ours that ``frame``
        acknowledges (``Sealer.acked_at``), or None; ``acknowledges``: it
        acknowledges our current epoch (``Sealer.acknowledges_us``; implied
        by ``acked_at``). ``fresh``: timely and the
        newest yet; ``overtaken``: timely, but a newer one was recorded first
        (it arrived on another path); ``delayed``: recorded (it is authentic
        and unseen) but not provably young, so it must not count.
        """
        now_ms = now * 1000
        direct = None if acked_at is None else now_ms - acked_at * 1000
        proven = direct is not None and direct <= self.max_delay_ms
        vouched = acknowledges or acked_at is not None
        if frame.epoch < self.epoch:
            raise WireError("replay", f"epoch {frame.epoch} older than {self.epoch}")
        new_epoch = frame.epoch > self.epoch
        if new_epoch:
            if self.epoch and not vouched:
                elapsed_ns = int((self._last_sent_ms + (now - self._last_arrival) * 1000 * (1 + self._drift)) * 10**6)
                if frame.epoch - self.epoch > elapsed_ns + EPOCH_LEAD_NS:
                    raise WireError("epoch", f"epoch {frame.epoch} implausibly far ahead of {self.epoch}")
        elif frame.seq <= self.seq:
            behind = self.seq - frame.seq
            if behind >= REPLAY_WINDOW or (self._seen >> behind) & 1:
                raise WireError("replay", f"seq {frame.seq} already seen or too old (newest {self.seq})")
        elif frame.seq - self.seq >= SEQ_LEAD and not vouched:
            raise WireError("seq", f"seq {frame.seq} implausibly far ahead of {self.seq}")
        offset = now_ms - frame.sent_ms
        if new_epoch:
            self.epoch, self.seq, self._seen, self._reference = frame.epoch, frame.seq, 1, None
            newest = True
        elif frame.seq > self.seq:
            shift = frame.seq - self.seq
            self._seen = ((self._seen << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
            self.seq = frame.seq
            newest = True
        else:
            self._seen |= 1 << (self.seq - frame.seq)
            newest = False
        self.newest_admitted = newest
        if newest:
            self._last_sent_ms, self._last_arrival = frame.sent_ms, now
        age = direct
        if self._reference is not None:
            by_reference = offset - (self._reference - self._drift * now_ms)
            age = by_reference if age is None else min(age, by_reference)
        if proven:
            assert direct is not None
            pinned = offset - direct + self._drift * now_ms
            if (
                self._reference is None
                or pinned > self._reference
                or now_ms - self._pinned_at > PIN_LIFETIME * self.max_delay_ms
            ):
                self._reference, self._pinned_at = pinned, now_ms
        if self._judge_age and (age is None or age > self.max_delay_ms):
            return "delayed"
        return "fresh" if newest else "overtaken"

    def restarted(self) -> ReplayGuard:
        """A guard with the same bounds and nothing recorded (after a rekey)."""
        return ReplayGuard(self.max_delay_ms / 1000, self._drift, judge_age=self._judge_age)

    @property
    def newest(self) -> tuple[int, int]:
        """The newest (epoch, seq) recorded: what our next frame acknowledges."""
        return self.epoch, self.seq
