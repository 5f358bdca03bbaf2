"""What a replay or a sweep found, as an operator reads it (``failoverctl replay``, ``failoverctl sweep``).

Text only: the program (:mod:`failoverd.programs.failoverctl_replay`) decides
what to replay and prints; JSON is each result's own ``to_json``; the sweep's
figure is :mod:`failoverd.analysis.sweepplot`.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from failoverd.analysis.replay import ActionModel, ReplayResult
from failoverd.core.timing import Timing


def _wall_text(wall: float | None) -> str:
    if wall is None:
        return ""
    return _dt.datetime.fromtimestamp(wall).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _describe_mode(result: ReplayResult, model: ActionModel) -> str:
    if result.mode == "exact":
        return "exact replay of the recording (its timers and action results)"
    probe = "probes answered" if model.probe_answers else "probes silent"
    return (f"what-if replay (timers at each deadline; {probe} after {model.probe_latency:g} s; "
            f"addresses change after {model.acquire_latency:g} s)")


def render_replay(result: ReplayResult, *, source: str, kind: str, model: ActionModel) -> list[str]:
    """The replay as an operator reads it: what was replayed how, the timeline, the summary.

    ``source`` names the input (its path), ``kind`` is ``trace``, ``pcap`` or
    ``pcapng``, ``model`` the what-if model the replay ran under (exact replay: not used).
    """
    t = result.timing
    kinds = {"trace": "native trace", "pcap": "pcap capture", "pcapng": "pcapng capture"}
    lines = [
        f"{source}: {kinds[kind]}; {_describe_mode(result, model)}",
        f"timing: interval {t.interval:g} s; suspect after {t.suspect_after:g} s, failed after {t.fail_after:g} s of silence",
    ]
    lines += [f"note: {n}" for n in result.notes]
    lines += ["", "timeline"]
    if not result.timeline:
        lines.append("  (no state changes or actions)")
    for e in result.timeline:
        wall = _wall_text(e.wall)
        lines.append(f"  {'+' + format(e.time - result.start, '.3f') + ' s':>14}  {wall + '  ' if wall else ''}"
                     f"{e.kind:<9} {e.text}")
    s = result
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(s.rejected.items())) or "none"
    lines += [
        "",
        "summary",
        f"  duration          {s.end - s.start:.3f} s; {s.datagrams} datagrams, {s.accepted} accepted, rejected: {rejected}",
        f"  failovers         {len(s.failovers)} ({s.false_failovers} false)",
    ]
    for i, f in enumerate(s.failovers, 1):
        takeover = "not completed" if f.takeover is None else f"addresses taken {f.takeover:.3f} s after the last heartbeat"
        verdict = "FALSE" if f.false else "real"
        lines.append(f"    {i}. +{f.decided_at - s.start:.3f} s: decided {f.detection:.3f} s after the last heartbeat, "
                     f"{takeover}; {verdict}: {f.why}")
    silence_from, silence_to = s.longest_silence
    lines += [
        f"  false suspicions  {s.false_suspicions}",
        f"  longest silence   {silence_to - silence_from:.3f} s, from +{silence_from - s.start:.3f} s",
    ]
    for p in s.paths:
        if p.n:
            lines.append(
                f"  path {p.name:<12} {p.count} heartbeats; interval mean {p.mean:.3f} s, jitter (stdev) "
                f"{(p.m2 / p.n) ** 0.5 * 1000:.1f} ms, min {p.low:.3f} s, max {p.high:.3f} s; "
                f"{p.gaps} silence(s) longer than the timeout"
            )
        else:
            lines.append(f"  path {p.name:<12} {p.count} heartbeat(s)")
    if s.lost:
        lines.append(f"  lost events       {s.lost} (the recorder could not keep up; replay is not exact past them)")
    lines.append(f"  final state       {s.final_state}")
    return lines


# --- sweep ----------------------------------------------------------------------------


@dataclass
class SweepRow:
    """One failure timeout of a sweep: how many failovers, how many false, how fast the real ones."""

    fail_misses: int
    timeout: float
    failovers: int
    false_failovers: int
    detection_mean: float | None
    detection_max: float | None
    false_suspicions: int

    def to_json(self) -> dict[str, Any]:
        return {
            "fail_misses": self.fail_misses,
            "timeout_s": self.timeout,
            "failovers": self.failovers,
            "false_failovers": self.false_failovers,
            "real_failovers": self.failovers - self.false_failovers,
            "detection_mean_s": None if self.detection_mean is None else round(self.detection_mean, 6),
            "detection_max_s": None if self.detection_max is None else round(self.detection_max, 6),
            "false_suspicions": self.false_suspicions,
        }

    @classmethod
    def from_result(cls, timing: Timing, result: ReplayResult) -> SweepRow:
        """The row of one what-if replay under ``timing``; detection time counts real failovers only."""
        real = [f.detection for f in result.failovers if not f.false]
        return cls(
            fail_misses=timing.fail_misses,
            timeout=timing.fail_after,
            failovers=len(result.failovers),
            false_failovers=result.false_failovers,
            detection_mean=sum(real) / len(real) if real else None,
            detection_max=max(real) if real else None,
            false_suspicions=result.false_suspicions,
        )


def render_sweep(rows: list[SweepRow]) -> list[str]:
    """The sweep as a right-aligned table, one line per timeout under a header line."""
    header = ("timeout", "misses", "failovers", "false failovers", "detection mean", "detection max", "false suspicions")
    table = [header]
    for r in rows:
        table.append((
            f"{r.timeout:g} s", str(r.fail_misses), str(r.failovers), str(r.false_failovers),
            "-" if r.detection_mean is None else f"{r.detection_mean:.3f} s",
            "-" if r.detection_max is None else f"{r.detection_max:.3f} s",
            str(r.false_suspicions),
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
