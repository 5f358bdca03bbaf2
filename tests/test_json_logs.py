"""``--log-format json``: one JSON object per line, with the daemon's state and the event's fields.

Testing charter: as tests/test_log_stall.py — a real failoverd in a namespace
of its own with a master that never sends, so it suspects, probes and takes
over a test address there; its stderr (``-d``) is read line by line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from _netns import Pair
from test_log_stall import ADDRESS, daemon_argv, running, status, wait_until

from failoverd.lab.pytest_plugin import requires_netns

pytestmark = requires_netns


def test_every_line_is_one_json_event_and_state_changes_say_what_and_why(pair: Pair, tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    with open(log, "w") as stderr, running(pair, tmp_path, daemon_argv(tmp_path, "-d", "--log-format", "json"),
                                            stderr=stderr) as daemon:
        wait_until(lambda: daemon.answers() and status(tmp_path)["state"] == "failed_over", 30, "it took over")
        daemon.terminate()
    lines = log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON, none is text
    assert events and all({"time", "program", "pid", "level", "message"} <= e.keys() for e in events)
    assert {e["program"] for e in events} == {"failoverd"} and events[0]["time"].endswith("+00:00")
    changes = [e for e in events if "transition" in e]
    assert [e["transition"] for e in changes[:3]] == ["monitoring -> suspect", "suspect -> acquiring",
                                                       "acquiring -> failed_over"]
    reasons = [e["reason"] for e in changes[:3]]
    assert reasons[0] == "silence" and reasons[1] in ("deadline", "probed") and reasons[2] == "acquired"
    assert all(e["state"] == e["transition"].split(" -> ")[1] for e in changes)
    acquiring = next(e for e in events if e["message"].startswith("acquiring va:"))
    assert acquiring["addresses"] == [f"va:{ADDRESS}"] and acquiring["state"] == "acquiring"


def test_log_format_must_be_text_or_json(tmp_path: Path) -> None:
    from failoverd.lab.pair import program

    done = subprocess.run([program("failoverd"), "-n", "--log-format", "xml", "10.0.0.1", "lo:10.0.0.2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 64 and "argument --log-format: invalid choice: 'xml'" in done.stderr
