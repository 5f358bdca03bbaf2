"""The witness model in spec/witness.pml: spin proves "never two holders" for
the design in spec/witness.md, and catches each weaker rule.

Each configuration is one pan build in a temporary directory (spin writes pan.c
and trails next to the model). A proof must search the whole state space (no
truncated depth, no memory limit hit); a weaker rule must give a counterexample
whose replay ends with two hosts holding the address, not some other error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parent.parent / "spec" / "witness.pml"
PAN_TIMEOUT = 240  # seconds per spin, gcc or pan run; the largest search takes about 20 s here
DEPTH = 2_000_000  # the proof's DFS goes about 350 000 steps deep

pytestmark = [
    pytest.mark.skipif(
        shutil.which("spin") is None or shutil.which("gcc") is None,
        reason="the model checker needs `spin` (Debian package spin) and `gcc` on PATH",
    ),
    pytest.mark.slow,
]


def run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=PAN_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def search(workdir: Path, defines: dict[str, int], *, optimise: bool) -> tuple[int, str, list[str]]:
    """Build pan for ``defines`` in ``workdir`` and search: (errors, report, flags)."""
    flags = [f"-D{name}={value}" for name, value in defines.items()]
    shutil.copy(MODEL, workdir / MODEL.name)
    run(["spin", *flags, "-a", MODEL.name], workdir)
    # -O0 for the runs that stop at an early counterexample: compiling costs more than searching.
    run(["gcc", "-O1" if optimise else "-O0", "-DSAFETY", "-DMEMLIM=2048", "-o", "pan", "pan.c"], workdir)
    report = run(["./pan", f"-m{DEPTH}"], workdir)
    found = re.search(r"errors: (\d+)", report)
    assert found, f"pan gave no verdict for {defines}:\n{report}"
    assert "max search depth too small" not in report, f"search truncated for {defines}:\n{report}"
    assert "out of memory" not in report, f"search ran out of memory for {defines}:\n{report}"
    return int(found.group(1)), report, flags


def proves(workdir: Path, defines: dict[str, int]) -> None:
    errors, report, _ = search(workdir, defines, optimise=True)
    assert errors == 0, f"{defines}: never two holders violated:\n{report}"


def counterexample(workdir: Path, defines: dict[str, int]) -> list[str]:
    """The events the replayed counterexample printed (HOLDERS n, HANDOVER)."""
    errors, report, flags = search(workdir, defines, optimise=False)
    assert errors == 1, f"expected a counterexample for {defines}, got:\n{report}"
    replay = run(["spin", *flags, "-t", MODEL.name], workdir)
    return [line.strip() for line in replay.splitlines() if line.strip().startswith(("HOLDERS", "HANDOVER"))]


def test_the_design_never_has_two_holders(tmp_path: Path) -> None:
    """Every loss and delay of every request and answer (so every partition of the
    hosts from the etcd members), requests given up on taking effect later, the
    store expiring a claim at any moment (an early revocation included), other
    hosts' claims at any moment, a crash of each host, clocks at the worst ends of
    their drift."""
    proves(tmp_path, {"RULE": 0, "EXPIRY_ANY": 1, "OTHERS": 1, "CRASHES": 1})


def test_the_model_reaches_a_handover(tmp_path: Path) -> None:
    """Not vacuous: one host holds the address, then the other takes it over."""
    events = counterexample(tmp_path, {"RULE": 0, "REACH": 1})
    assert events[-1] == "HANDOVER"
    assert "HOLDERS 2" not in events


@pytest.mark.parametrize(
    ("rule", "defines"),
    [
        ("no drift margin: the wait after a grant equals the proof's validity", {"RULE": 1}),
        ("the margin one tick short: LO(W) = HI(V)", {"RULE": 0, "W": 5}),
        ("a proof counted from the answer's arrival", {"RULE": 2}),
        ("no wait after a grant", {"RULE": 3}),
        ("the holder trusts the lease's TTL, even with the store's clock judging expiry", {"RULE": 4, "EXPIRY_ANY": 0}),
    ],
    ids=["no-margin", "margin-one-short", "proof-from-answer", "no-wait", "trust-the-lease"],
)
def test_a_weaker_rule_gives_two_holders(tmp_path: Path, rule: str, defines: dict[str, int]) -> None:
    events = counterexample(tmp_path, defines)
    assert events and events[-1] == "HOLDERS 2", f"{rule}: {events[-5:]}"


# --- --etcd-unreachable keep: keep-and-refuse-new (spec/witness.md) ------------------------------


def test_keep_and_refuse_new_never_has_two_holders(tmp_path: Path) -> None:
    """A holder past its proof keeps the address while the other host confirms, answering a
    heartbeat, that it cannot reach etcd either (each confirmation a proof counted from the
    heartbeat's sending): still never two holders, under every loss and delay, early expiries
    and a crash of each host. Two hosts and no others: keep needs every host's confirmation."""
    proves(tmp_path, {"RULE": 0, "KEEP": 1, "EXPIRY_ANY": 1, "OTHERS": 0, "CRASHES": 1})


def test_keep_is_not_vacuous_a_confirmation_keeps_a_holder_longer(tmp_path: Path) -> None:
    errors, report, _ = search(tmp_path, {"KEEP": 1, "OTHERS": 0, "KEPT": 1}, optimise=False)
    assert errors == 1, report


def test_keep_with_a_confirming_owner_gives_two_holders(tmp_path: Path) -> None:
    """A host that read its grant must not confirm (it configures W later), and a confirmation
    counts from the heartbeat it answers, not from its arrival (the same run): else two holders."""
    events = counterexample(tmp_path, {"KEEP": 1, "OTHERS": 0, "CRASHES": 1, "CONFIRM": 1})
    assert events and events[-1] == "HOLDERS 2", events[-5:]


def test_keep_among_any_number_of_hosts_never_has_two_holders(tmp_path: Path) -> None:
    """Several backups (spec/witness.md, "With several backups"): the two modelled hosts are any two
    of N, each keeping past its proof only on the other's confirmation (the real rule needs every
    other host's, the other's among them, so it holds during a subset of the same run), while the
    hosts left out change the key's owner at any moment: still never two holders."""
    proves(tmp_path, {"RULE": 0, "KEEP": 1, "EXPIRY_ANY": 1, "OTHERS": 1, "CRASHES": 1})


def test_keep_among_any_number_of_hosts_is_not_vacuous(tmp_path: Path) -> None:
    errors, report, _ = search(tmp_path, {"KEEP": 1, "OTHERS": 1, "KEPT": 1}, optimise=False)
    assert errors == 1, report
