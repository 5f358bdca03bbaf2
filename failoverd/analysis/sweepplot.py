"""The sweep's figure: detection time against false failovers, per failure timeout (``failoverctl sweep --plot``).

Resource handling: matplotlib is imported only here and only when a plot is
asked for (it is heavy, and the daemons never need it); the figure is closed
whatever happens.
"""

from __future__ import annotations

from pathlib import Path

from failoverd.analysis.report import SweepRow


def plot_sweep(rows: list[SweepRow], path: Path, title: str) -> None:
    """Draw ``rows`` to the PNG file ``path``; OSError when it cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x = [r.timeout for r in rows]
    fig, left = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        right = left.twinx()
        width = (x[1] - x[0]) * 0.35 if len(x) > 1 else 0.3
        right.bar(x, [r.false_failovers for r in rows], width=width, color="tab:red", alpha=0.35,
                  label="false failovers")
        right.set_ylabel("false failovers", color="tab:red")
        right.yaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_ylim(0, max(1, max(r.false_failovers for r in rows)) * 1.15)
        mean = [(r.timeout, r.detection_mean) for r in rows if r.detection_mean is not None]
        worst = [(r.timeout, r.detection_max) for r in rows if r.detection_max is not None]
        if mean:
            left.plot(*zip(*mean), marker="o", color="tab:blue", label="detection time (mean)")
            left.plot(*zip(*worst), marker="^", linestyle="--", color="tab:blue", alpha=0.6,
                      label="detection time (max)")
            # Headroom above the curves keeps the legend off them.
            left.set_ylim(0, max(v for _, v in worst) * 1.4)
        left.set_xlabel("failure timeout (s)")
        left.set_ylabel("last heartbeat → takeover decision (s)", color="tab:blue")
        left.set_zorder(right.get_zorder() + 1)
        left.patch.set_visible(False)
        left.grid(True, alpha=0.3)
        handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
        left.legend(handles, labels, loc="upper left", framealpha=0.95)
        left.set_title(title)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
