"""The Promela model in spec/failover.pml: spin proves its properties, and its
states and transitions are the ones the code declares.

Each property is one pan run (spec/properties.md). pan is built in a temporary
directory, never in the repository. A run "fails" when pan reports errors; the
tests for the link-cut cases expect the documented counterexample instead.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parent.parent / "spec" / "failover.pml"
PAN_TIMEOUT = 120  # seconds per pan run; the largest takes about 15 s here
NET_UP, NET_PRIVATE_CUT, NET_PARTITION = 0, 1, 2
M_PROBING = 1  # the model's M_probing: the master presumed the backup dead and probes
STEP_MASTER = re.compile(r"master\[up=1 epoch=(\d+) state=(\d+) ")

needs_spin = pytest.mark.skipif(
    shutil.which("spin") is None or shutil.which("gcc") is None,
    reason="the model checker needs `spin` (Debian package spin) and `gcc` on PATH",
)


class Pan:
    """One compiled verifier for one model configuration."""

    def __init__(self, workdir: Path, defines: dict[str, int], *, acceptance: bool, quick: bool = False) -> None:
        """``quick``: a run expected to stop at an early counterexample, where
        compiling pan with optimisation costs more than the search itself."""
        self.workdir = workdir
        self.acceptance = acceptance
        shutil.copy(MODEL, workdir / MODEL.name)
        flags = [f"-D{name}={value}" for name, value in defines.items()]
        self._run(["spin", *flags, "-a", MODEL.name])
        # No -DCOLLAPSE: it saved under 10 % memory here and cost a third of the time.
        cflags = ["-O0" if quick else "-O2", "-DMEMLIM=2048"] + ([] if acceptance else ["-DSAFETY"])
        self._run(["gcc", *cflags, "-o", "pan", "pan.c"])

    def _run(self, argv: list[str]) -> str:
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True, timeout=PAN_TIMEOUT)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def verify(self, claim: str) -> tuple[int, str]:
        """Errors pan found for ``claim`` and its full report."""
        argv = ["./pan", "-m200000", "-N", claim] + (["-a"] if self.acceptance else [])
        report = self._run(argv)
        found = re.search(r"errors: (\d+)", report)
        assert found, f"pan gave no verdict for {claim}:\n{report}"
        assert "max search depth too small" not in report, f"search truncated for {claim}:\n{report}"
        return int(found.group(1)), report

    def trail(self, defines: dict[str, int]) -> str:
        """The counterexample of the last failed run, one world state per step."""
        flags = [f"-D{name}={value}" for name, value in defines.items()]
        replay = subprocess.run(
            ["spin", *flags, "-t", MODEL.name], cwd=self.workdir, capture_output=True, text=True, timeout=PAN_TIMEOUT
        ).stdout
        steps = [line.strip() for line in replay.splitlines() if line.strip().startswith("STEP")]
        return "\n".join(step for i, step in enumerate(steps) if i == 0 or step != steps[i - 1])


def build(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    defines: dict[str, int],
    *,
    acceptance: bool,
    quick: bool = False,
) -> Pan:
    return Pan(tmp_path_factory.mktemp(name), defines, acceptance=acceptance, quick=quick)


@pytest.fixture(scope="module")
def links_up(tmp_path_factory: pytest.TempPathFactory) -> Pan:
    return build(tmp_path_factory, "pan-up", {"NET": NET_UP}, acceptance=False)


@pytest.fixture(scope="module")
def links_up_cycles(tmp_path_factory: pytest.TempPathFactory) -> Pan:
    return build(tmp_path_factory, "pan-up-a", {"NET": NET_UP}, acceptance=True)


def assert_holds(pan: Pan, claim: str, defines: dict[str, int] | None = None) -> None:
    errors, report = pan.verify(claim)
    assert errors == 0, f"{claim} violated:\n{report}\n{pan.trail(defines or {})}"


def two_holders_trail(pan: Pan, defines: dict[str, int]) -> str:
    """The counterexample to no_two_holders that ``pan`` must find; it ends with both holding."""
    errors, report = pan.verify("no_two_holders")
    assert errors == 1, f"expected a counterexample for {defines}, got:\n{report}"
    trail = pan.trail(defines)
    backup, master = trail.splitlines()[-1].split("master[")
    assert "addr=1" in backup and "addr=1" in master, trail
    return trail


def overlap_trail(pan: Pan, defines: dict[str, int], ticks: int) -> str:
    """The counterexample to overlap_bounded that ``pan`` must find; it ends with both
    holding for ``ticks`` ticks in a row."""
    errors, report = pan.verify("overlap_bounded")
    assert errors == 1, f"expected an overlap longer than the bound for {defines}, got:\n{report}"
    trail = pan.trail(defines)
    last = trail.splitlines()[-1]
    backup, master = last.split("master[")
    assert "addr=1" in backup and "addr=1" in master and f"overlap={ticks}" in last, trail
    return trail


def master_presumed_in_last_epoch(trail: str) -> bool:
    """The master of the final epoch went through ``probing`` (its presume path)."""
    states = [(int(m[1]), int(m[2])) for m in map(STEP_MASTER.search, trail.splitlines()) if m]
    last_epoch = states[-1][0]
    return any(epoch == last_epoch and state == M_PROBING for epoch, state in states)


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("claim", ["no_two_holders", "takeover_bounded", "failback_bounded"])
def test_safety_and_bounded_response_under_links_up(links_up: Pan, claim: str) -> None:
    assert_holds(links_up, claim)


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("claim", ["takeover_eventually", "failback_eventually"])
def test_liveness_has_no_acceptance_cycle(links_up_cycles: Pan, claim: str) -> None:
    assert_holds(links_up_cycles, claim)


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize(
    ("claim", "bound", "tight"),
    [("takeover_bounded", "TAKEOVER_BOUND", 9), ("failback_bounded", "FAILBACK_BOUND", 17)],
)
def test_bounds_are_tight(tmp_path_factory: pytest.TempPathFactory, claim: str, bound: str, tight: int) -> None:
    """One tick less than the documented bound is violated: the monitors are not vacuous."""
    pan = build(tmp_path_factory, f"pan-{bound}", {"NET": NET_UP, bound: tight - 1}, acceptance=False, quick=True)
    errors, report = pan.verify(claim)
    assert errors == 1, f"{claim} with {bound}={tight - 1} should fail, the bound is not tight:\n{report}"


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("net", [NET_PRIVATE_CUT, NET_PARTITION])
def test_link_cuts_give_the_documented_split_brain(tmp_path_factory: pytest.TempPathFactory, net: int) -> None:
    """Without "links up" two holders are reachable (spec/README.md, "Without links up"): briefly
    with the private link cut (ARP conflict detection ends it, below), for good in a partition."""
    defines = {"NET": net}
    two_holders_trail(build(tmp_path_factory, f"pan-net{net}", defines, acceptance=False, quick=True), defines)


# Private link cut, public network joined, the master acquiring only on the
# handshake: every acquire and release within 1 tick puts the master's address
# on the wire less than fail - probe (5 ticks) after the last heartbeat the
# backup accepted, before the backup's takeover probe looks.
HANDSHAKE_ONLY = {"NET": NET_PRIVATE_CUT, "PRESUME": 0}
FAST_OPS = {"M_ACQ_MAX": 1, "B_OP_MAX": 1}


@needs_spin
@pytest.mark.slow
def test_private_cut_handshake_race_closed_under_latency_bound(tmp_path_factory: pytest.TempPathFactory) -> None:
    defines = HANDSHAKE_ONLY | FAST_OPS
    assert_holds(build(tmp_path_factory, "pan-cut-fast", defines, acceptance=False), "no_two_holders", defines)


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("slower", ["M_ACQ_MAX", "B_OP_MAX"])
def test_private_cut_handshake_bound_is_tight(tmp_path_factory: pytest.TempPathFactory, slower: str) -> None:
    """One tick more for the master's acquire, or for the backup's acquire and release before
    its "released" status, and the backup's probe can look before the master's address is up."""
    defines = HANDSHAKE_ONLY | FAST_OPS | {slower: 2}
    two_holders_trail(build(tmp_path_factory, f"pan-cut-{slower}", defines, acceptance=False, quick=True), defines)


@needs_spin
@pytest.mark.slow
def test_private_cut_presume_race_remains(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With the master's presume path, fast operations do not help: the master's probe and the
    backup's probe each look while the other's acquire is in flight (spec/README.md)."""
    defines = {"NET": NET_PRIVATE_CUT} | FAST_OPS
    pan = build(tmp_path_factory, "pan-cut-presume", defines, acceptance=False, quick=True)
    trail = two_holders_trail(pan, defines)
    assert master_presumed_in_last_epoch(trail), trail


# Private link cut, public network joined, no narrowing: both races still give
# two holders, and ARP conflict detection ends every overlap within 4 ticks (2 s):
# the backup's gratuitous ARP reaches the holding master (ARP_DELAY, 1 tick), the
# master's Announce comes back (1 tick) and the backup's release takes (B_OP_MAX,
# 2 ticks). The master's own ARP after its acquire is seen by a backup already
# acquiring or holding, which ends the overlap sooner.
OVERLAP_TIGHT = 4
PRIVATE_CUT = {"NET": NET_PRIVATE_CUT}
RACES = {"handshake_race": {"PRESUME": 0}, "presume_race": {"HANDSHAKE": 0}}


@needs_spin
@pytest.mark.slow
def test_private_cut_overlap_ends_within_bound(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Both races (the full model: handshake and presume), every interleaving."""
    defines = PRIVATE_CUT | {"OVERLAP_BOUND": OVERLAP_TIGHT}
    assert_holds(build(tmp_path_factory, "pan-cut-overlap", defines, acceptance=False), "overlap_bounded", defines)


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("race", sorted(RACES))
def test_private_cut_overlap_bound_is_tight(tmp_path_factory: pytest.TempPathFactory, race: str) -> None:
    """Each race on its own (the master acquiring only on the handshake, or only on presume)
    reaches an overlap of the full bound."""
    defines = PRIVATE_CUT | RACES[race] | {"OVERLAP_BOUND": OVERLAP_TIGHT - 1}
    pan = build(tmp_path_factory, f"pan-cut-overlap-{race}", defines, acceptance=False, quick=True)
    trail = overlap_trail(pan, defines, OVERLAP_TIGHT)
    assert master_presumed_in_last_epoch(trail) == (race == "presume_race"), trail


# --- the model's machines are the code's machines ------------------------------

ANNOTATION = re.compile(r"@(transition|declared) (\w+) (\w+): (\w+) -> (\w+)")
STATES = re.compile(r"@states (\w+): ([\w ]+?)\s*\*/")


def model_machine(machine: str) -> tuple[tuple[str, ...], set[tuple[str, str, str]]]:
    text = MODEL.read_text()
    states = next(names.split() for name, names in STATES.findall(text) if name == machine)
    transitions = {(t, s, d) for _, m, t, s, d in ANNOTATION.findall(text) if m == machine}
    return tuple(states), transitions


def code_machine(module_name: str) -> tuple[tuple[str, ...], set[tuple[str, str, str]]]:
    module = importlib.import_module(module_name)
    transitions = set()
    for spec in module.TRANSITIONS:
        sources = [spec["source"]] if isinstance(spec["source"], str) else list(spec["source"])
        if sources == ["*"]:
            sources = list(module.STATES)
        for source in sources:
            # dest None is a transitions "internal" transition: it stays where it is
            transitions.add((spec["trigger"], source, spec["dest"] or source))
    return tuple(module.STATES), transitions


@pytest.mark.parametrize(("machine", "module_name"), [("detector", "failoverd.core.detector"), ("master", "failoverd.core.master")])
def test_model_machines_match_the_code(machine: str, module_name: str) -> None:
    model_states, model_transitions = model_machine(machine)
    code_states, code_transitions = code_machine(module_name)
    assert set(model_states) == set(code_states), f"{machine}: model {model_states} vs code {code_states}"
    assert model_transitions == code_transitions, (
        f"{machine}: only in the model {sorted(model_transitions - code_transitions)}; "
        f"only in the code {sorted(code_transitions - model_transitions)}"
    )
    text = MODEL.read_text()
    prefix = "D_" if machine == "detector" else "M_"
    for state in model_states:
        assert re.search(rf"#define {prefix}{state}\s", text), f"{machine} state {state} has no {prefix}{state} in the model"
