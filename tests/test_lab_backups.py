"""The lab with a second backup host (``Lab(backups=2)``), on both wires, as tests/test_e2e_backups.py and
bench/backups.py use it.

Testing charter as in test_lab_netns.py: root only (skipped otherwise); traffic only inside the
lab's own namespaces; a time limit on every test; the lab removed whatever the test does.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from failoverd.lab import netns, registry
from failoverd.lab.lab import Lab, LabError
from failoverd.lab.pytest_plugin import requires_netns, time_limit
from failoverd.lab.topology import TopologyError

pytestmark = [requires_netns, pytest.mark.netns]

# Every pair of hosts on each LAN that the second backup adds, both ways.
NEW_PAIRS = [("backup2", "master", "priv"), ("backup2", "backup", "priv"), ("backup", "backup2", "priv"),
             ("master", "backup2", "priv"), ("client", "backup2", "pub"), ("backup2", "master", "pub"),
             ("backup2", "client", "pub")]


def reaches(lab: Lab, src: str, dst: str, lan: str, count: int = 2) -> int:
    return lab.ping(src, lab.address(dst, lan), count=count, interval=0.05, wait=0.5).received


def test_backup2_is_on_both_emulated_lans_and_a_cut_between_the_backups_cuts_only_them(lab_factory) -> None:
    lab = lab_factory(seed=5, backups=2)
    assert lab.hosts == ("master", "backup", "backup2", "client")
    assert lab.backup_hosts == ("backup", "backup2")
    description = lab.describe()
    assert description["backups"] == 2
    assert description["lans"]["priv"]["hosts"]["backup2"]["address"] == lab.address("backup2", "priv")
    for src, dst, lan in NEW_PAIRS:
        assert reaches(lab, src, dst, lan) == 2, (src, dst, lan)
    assert sorted(lab.partition("priv", "backup", "backup2")) == ["priv:backup2>backup", "priv:backup>backup2"]
    assert reaches(lab, "backup", "backup2", "priv", count=2) == 0
    assert reaches(lab, "backup2", "backup", "pub") == 2, "the public LAN stays shared"
    assert reaches(lab, "master", "backup2", "priv") == 2 and reaches(lab, "master", "backup", "priv") == 2
    lab.heal()
    assert reaches(lab, "backup", "backup2", "priv") == 2
    lab.kill_host("backup2")
    assert lab.link_state("backup2", "priv")["up"] is False
    assert lab.link_state("backup", "priv") == {"up": True, "carrier": True}
    assert reaches(lab, "master", "backup2", "priv", count=1) == 0
    lab.revive_host("backup2")
    assert reaches(lab, "master", "backup2", "priv", count=3) >= 1


def test_backup2_is_on_both_kernel_bridges() -> None:
    with time_limit(120), Lab(seed=6, wire="bridge", backups=2) as lab:
        ports = {name for name in netns.links(lab.ns("wire")) if name.startswith("backup2-")}
        assert ports == {"backup2-priv", "backup2-pub"}
        for src, dst, lan in NEW_PAIRS:
            assert reaches(lab, src, dst, lan) == 2, (src, dst, lan)


def test_a_lab_with_one_backup_refuses_backup2_before_sending_anything(lab_factory) -> None:
    lab = lab_factory(seed=7)
    assert lab.backup_hosts == ("backup",)
    assert "backup2" not in lab.describe()["namespaces"]
    with pytest.raises(TopologyError, match=r"no host 'backup2'.*Lab\(backups=2\)"):
        lab.ns("backup2")
    with pytest.raises(TopologyError, match="no host 'backup2'"):
        lab.partition("priv", "backup", "backup2")
    with pytest.raises(TopologyError, match="no host 'backup2'"):
        lab.impair("pub", "backup2", "*", loss=0.5)
    assert lab.stats()["links"] and all(link["blocked"] == 0 for link in lab.stats()["links"])


@pytest.mark.parametrize("backups", [0, 3])
def test_a_bad_number_of_backup_hosts_is_refused_before_anything_is_built(backups: int) -> None:
    with pytest.raises(LabError, match="a lab has 1 to 2 backup hosts"):
        Lab(backups=backups)


def test_clean_up_of_a_three_host_lab_leaves_nothing_when_the_body_raises() -> None:
    names: list[str] = []
    with time_limit(120), pytest.raises(RuntimeError, match="boom"):
        with Lab(seed=8, backups=2) as lab:
            names = list(lab.describe()["namespaces"].values())
            lab.popen("backup2", ["sleep", "300"])
            raise RuntimeError("boom")
    assert len(names) == 5
    assert not set(names) & set(netns.list_namespaces())


def test_failoverd_lab_up_backups_2_builds_backup2_and_down_removes_it() -> None:
    up = subprocess.run([sys.executable, "-m", "failoverd.lab.cli", "up", "--backups", "2", "--format", "json"],
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    description = json.loads(up.stdout)
    lab_id = description["id"]
    try:
        assert sorted(description["namespaces"]) == ["backup", "backup2", "client", "master", "wire"]
        attached = Lab.attach(lab_id)
        assert attached.backup_hosts == ("backup", "backup2")
        assert reaches(attached, "backup", "backup2", "priv") == 2
    finally:
        down = subprocess.run([sys.executable, "-m", "failoverd.lab.cli", "down", lab_id],
                              capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(lab_id + "-")]
    assert registry.read_record(lab_id) is None


def test_failoverd_lab_up_refuses_three_backups_as_bad_usage() -> None:
    up = subprocess.run([sys.executable, "-m", "failoverd.lab.cli", "up", "--backups", "3"],
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 2
    assert "--backups" in up.stderr
