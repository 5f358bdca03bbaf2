"""The lab with kernel bridges for LANs (``Lab(wire="bridge")``), as the peer benchmark uses it.

Testing charter as in test_lab_netns.py: root only, traffic only inside the lab's namespaces, a
time limit on the test, the lab removed whatever happens.
"""

from __future__ import annotations

import pytest

from failoverd.lab import netns
from failoverd.lab.lab import Lab, LabError
from failoverd.lab.pytest_plugin import requires_netns, time_limit

pytestmark = [requires_netns, pytest.mark.netns]


def test_frames_cross_both_bridges_and_a_dead_host_leaves_the_others_carrier() -> None:
    with time_limit(120), Lab(seed=3, wire="bridge") as lab:
        assert lab.describe()["wire"] == "bridge"
        assert lab.emulator is None
        assert sorted(n for n in netns.links(lab.ns("wire")) if n.endswith("-br")) == ["priv-br", "pub-br"]
        for src, dst, lan in [("client", "master", "pub"), ("backup", "master", "priv")]:
            result = lab.ping(src, lab.address(dst, lan), count=2, interval=0.05)
            assert result.received == 2, (src, dst, lan, result.lines)
        lab.kill_host("master")
        assert lab.link_state("backup", "priv") == {"up": True, "carrier": True}
        assert lab.ping("backup", lab.address("master", "priv"), count=1, wait=0.3).received == 0
        lab.revive_host("master")
        assert lab.ping("backup", lab.address("master", "priv"), count=3, interval=0.1).received >= 1


def test_a_bridge_lab_refuses_impairments_before_sending_anything() -> None:
    with time_limit(60), Lab(seed=4, wire="bridge") as lab:
        with pytest.raises(LabError, match="needs the emulator"):
            lab.impair("priv", "master", "backup", loss=0.5)
        with pytest.raises(LabError, match="needs the emulator"):
            lab.partition("priv", "master")


def test_an_unknown_wire_is_refused() -> None:
    with pytest.raises(LabError, match="unknown wire 'hub'"):
        Lab(wire="hub")
