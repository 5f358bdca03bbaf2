"""Detection timing, its defaults and why they are what they are.

With the defaults (1 s heartbeats, as the original), a backup:

- suspects the master after one missed heartbeat plus the allowance (1.2 s of
  silence) and starts the ARP probe of the master's public addresses then, so
  that its answer is known before the failure deadline;
- declares the master failed after three heartbeat intervals of silence
  (3.0 s), which is keepalived's three adverts without its priority skew
  (3.6 s at priority 100), and ucarp's default ``deadratio`` 3.

A false suspicion costs an ARP probe, nothing more; a false takeover is
stopped by the probe (the master still answers for its address), not by a
longer timeout.
"""

from __future__ import annotations

from dataclasses import dataclass


class TimingError(ValueError):
    """A timing configuration that cannot work; the message says why."""


def default_probe_spacing(interval: float) -> float:
    """Seconds between ARP probes when not given: a tenth of the interval, clamped to 10..200 ms (both daemons)."""
    return min(0.2, max(0.01, interval / 10))


@dataclass(frozen=True)
class Timing:
    interval: float = 1.0
    """Seconds between heartbeats (must match the master's ``--interval``)."""
    suspect_misses: int = 1
    """Missed intervals after which the master is *suspect* (probing starts)."""
    fail_misses: int = 3
    """Intervals of silence after which the master has *failed*."""
    allowance: float | None = None
    """Slack for scheduling delay on the suspect deadline; default interval/5."""
    probe_count: int = 3
    """ARP probes sent per address before a takeover."""
    probe_spacing: float | None = None
    """Seconds between probes; default interval/10, clamped to 10..200 ms."""
    garp_count: int = 3
    """Gratuitous ARPs sent after a takeover."""
    garp_spacing: float = 0.2
    """Seconds between gratuitous ARPs."""
    garp_refresh: float | None = None
    """While holding, announce the addresses again every so many seconds (None:
    only after taking them). keepalived's ``vrrp_garp_master_refresh``: for
    switches and routers whose ARP caches outlive a takeover's announcements."""
    retry_interval: float | None = None
    """Seconds before retrying an address that failed to be acquired; default = interval."""
    max_delay: float | None = None
    """How late (beyond the best-seen one-way delay) an authenticated heartbeat
    may arrive and still count; default = fail timeout. Bounds how long an
    attacker who withholds heartbeats can keep a dead master alive."""

    def __post_init__(self) -> None:
        if not (0.01 <= self.interval <= 3600):
            raise TimingError(f"interval {self.interval!r} s is outside 0.01..3600 s")
        if self.suspect_misses < 1:
            raise TimingError("suspect misses must be at least 1")
        if self.fail_misses <= self.suspect_misses:
            raise TimingError(
                f"fail misses ({self.fail_misses}) must be greater than suspect misses ({self.suspect_misses})"
            )
        if self.garp_refresh is not None and not self.garp_refresh > 0:
            raise TimingError(f"gratuitous ARP refresh {self.garp_refresh!r} s must be positive")
        if self.probe_count < 0 or self.garp_count < 0:
            raise TimingError("probe and gratuitous ARP counts must not be negative")
        if self.suspect_after + self.probe_duration >= self.fail_after:
            raise TimingError(
                f"the ARP probe ({self.probe_duration:.3f} s from the suspect deadline "
                f"{self.suspect_after:.3f} s) would not finish before the failure deadline "
                f"{self.fail_after:.3f} s; lower --probe-count/--probe-spacing or raise --fail-misses"
            )

    @property
    def effective_allowance(self) -> float:
        return self.interval / 5 if self.allowance is None else self.allowance

    @property
    def effective_probe_spacing(self) -> float:
        return default_probe_spacing(self.interval) if self.probe_spacing is None else self.probe_spacing

    @property
    def effective_retry_interval(self) -> float:
        return self.interval if self.retry_interval is None else self.retry_interval

    @property
    def suspect_after(self) -> float:
        """Silence (s) after which the master is suspect."""
        return self.suspect_misses * self.interval + self.effective_allowance

    @property
    def fail_after(self) -> float:
        """Silence (s) after which the master has failed."""
        return self.fail_misses * self.interval

    @property
    def probe_duration(self) -> float:
        """How long one ARP probe round takes: probes, then one spacing to listen."""
        return self.probe_count * self.effective_probe_spacing

    @property
    def master_heard_window(self) -> float:
        """W (several backups): a backup's frames say "master heard" while a heartbeat counted within it.

        ``min(fail_after, 2 × interval + allowance)``: with the master alive and
        one heartbeat lost (what the design rides out) the next one counts
        within it, so the flag stays set; after the master's death it clears
        within W (spec/backups.md, "What the review found", 1).
        """
        return min(self.fail_after, 2 * self.interval + self.effective_allowance)

    @property
    def master_evidence_hold(self) -> float:
        """How long a backup that learnt from a peer that the master is alive (``master heard``) still
        defers once that evidence lapses (a peer's restart or silence, a lost or late frame).

        The master may be presuming us right then: no earlier than its release settle after the
        latest release of any backup (:func:`release_settle`). That release ended at most an
        acquire and a release after the last frame that gave the evidence (the peer heard the
        master, so it was releasing, or still acquiring and then releasing: ``4 × interval``
        covers both and the frame's delay under ``d + A ≤ 2 × interval``, even if the release's
        own frame never reaches us); then the master probes and adds (``2 × interval`` more for
        the add). Deferring that long after the evidence, our probe looks only once its address
        is up (contested), never beside its own probe (spec/backups.md, "What the review found",
        1, "The hold", which says what it does not cover). A counted heartbeat ends it at once.
        """
        return (release_settle(self.fail_after, self.effective_retry_interval, self.interval)
                + self.probe_duration + 6 * self.interval)

    @property
    def effective_max_delay(self) -> float:
        return self.fail_after if self.max_delay is None else self.max_delay


def release_settle(fail_after: float, retry_interval: float, interval: float) -> float:
    """How long after a backup's release a master presumes a silent backup at the earliest (several backups).

    A backup that waited on the releaser may still be taking over that long after:
    it counts the release up to d after it; deferring to the releaser it suspects
    at once, contested (it could not hear the releaser, only see its address) at
    its next retry; it probes (for less than a failure timeout less an interval:
    Timing requires the probe to end before the failure deadline), announces to
    its peers (the releaser answers at once, 2d, or an interval later when a frame
    is lost) and acquires (A): at most ``fail_after + retry + 3d + A``, which
    ``fail_after + retry + 3 × interval`` covers under the assumption ``d + A ≤ 2
    × interval`` (spec/backups.md) with ``2d ≤ interval``. The master's
    ``Master._release_settle`` and the backups' :attr:`Timing.master_evidence_hold`.
    """
    return fail_after + retry_interval + 3 * interval
