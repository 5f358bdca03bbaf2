"""The Promela model in spec/failover.pml: spin proves its properties, and its
states and transitions are the ones the code declares.

Each property is one pan run (spec/properties.md); the links-up properties are
checked together, in one safety run and one liveness run. pan is built in a
temporary directory, never in the repository, once per model configuration
(CONFIGS). A run "fails" when pan reports errors; the tests for the link-cut
cases and for the weaker freshness rules (ACK_RULE 0-2) expect the documented
counterexample instead. The replaying attacker is in every run (ATTACK=1, the
model's default) but one, which shows a flaw of ACK_RULE=1 that needs no
attacker. The health-check runs (HEALTH=1) are a separate build of their own:
verdicts that fall and rise on both hosts multiply the state space; so are the
link-cut runs (LINKCUT=1).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parent.parent / "spec" / "failover.pml"
PAN_TIMEOUT = 120  # seconds per spin, gcc or pan run; the largest takes about 20 s here
NET_UP, NET_PRIVATE_CUT, NET_PARTITION = 0, 1, 2
M_WAITING, M_PROBING, M_ACQUIRING, M_HOLDING, M_STANDING_DOWN = 0, 1, 2, 3, 6  # the model's M_<state> numbers
D_ACQUIRING = 3  # the model's D_acquiring
STEP_MASTER = re.compile(r"master\[up=1 epoch=(\d+) state=(\d+) ")
REPLAY = re.compile(r"REPLAY t=\d+ (heartbeat|status) of (?:master|backup) epoch (\d+) to (?:backup|master) epoch (\d+)")

needs_spin = pytest.mark.skipif(
    shutil.which("spin") is None or shutil.which("gcc") is None,
    reason="the model checker needs `spin` (Debian package spin) and `gcc` on PATH",
)


def run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=PAN_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Config:
    """One model configuration: spin's -D defines and how pan is compiled.

    ``acceptance``: for the LTL liveness claims (pan -a). ``quick``: a run expected
    to stop at an early counterexample, where compiling pan with optimisation costs
    more than the search itself."""

    defines: dict[str, int]
    acceptance: bool = False
    quick: bool = False


class Pan:
    """One compiled verifier for one model configuration."""

    def __init__(self, workdir: Path, config: Config) -> None:
        self.workdir = workdir
        self.config = config
        self._flags = [f"-D{name}={value}" for name, value in config.defines.items()]
        shutil.copy(MODEL, workdir / MODEL.name)
        run(["spin", *self._flags, "-a", MODEL.name], workdir)
        # No -DCOLLAPSE: it saved under 10 % memory here and cost a third of the time.
        # -O1, not -O2: pan.c compiles in half the time, and for searches this short
        # the sum is smaller.
        cflags = ["-O0" if config.quick else "-O1", "-DMEMLIM=2048"] + ([] if config.acceptance else ["-DSAFETY"])
        run(["gcc", *cflags, "-o", "pan", "pan.c"], workdir)

    def verify(self, claim: str) -> tuple[int, str]:
        """Errors pan found for ``claim`` and its full report."""
        argv = ["./pan", "-m200000", "-N", claim] + (["-a"] if self.config.acceptance else [])
        report = run(argv, self.workdir)
        found = re.search(r"errors: (\d+)", report)
        assert found, f"pan gave no verdict for {claim}:\n{report}"
        assert "max search depth too small" not in report, f"search truncated for {claim}:\n{report}"
        return int(found.group(1)), report

    def trail(self) -> str:
        """The counterexample of the last failed run, one world state per step, and a
        REPLAY line before each step in which the attacker replayed a frame."""
        replay = run(["spin", *self._flags, "-t", MODEL.name], self.workdir)
        steps = [line.strip() for line in replay.splitlines() if line.strip().startswith(("STEP", "REPLAY"))]
        return "\n".join(step for i, step in enumerate(steps) if i == 0 or step != steps[i - 1])


# --- every configuration the tests use, in the order they use them --------------

# The documented bounds (ticks), each tight: one tick less is violated. The three
# are lowered in one build ("below-bounds"): each monitor reads its own bound only.
TIGHT = {"TAKEOVER_BOUND": 9, "FAILBACK_BOUND": 17, "PRESUME_BOUND": 10}
BOUND_OF = {"takeover_bounded": "TAKEOVER_BOUND", "failback_bounded": "FAILBACK_BOUND", "presume_bounded": "PRESUME_BOUND"}

# Private link cut, public network joined; the overlap bound is derived below.
OVERLAP_TIGHT = 4
PRIVATE_CUT = {"NET": NET_PRIVATE_CUT}

# Private link cut, public network joined, the master acquiring only on the
# handshake: every acquire and release within 1 tick puts the master's address
# on the wire less than fail - probe (5 ticks) after the last heartbeat the
# backup counted, before the backup's takeover probe looks.
HANDSHAKE_ONLY = {"NET": NET_PRIVATE_CUT, "PRESUME": 0}
FAST_OPS = {"M_ACQ_MAX": 1, "B_OP_MAX": 1}

# The master acquiring only on the handshake, or only on presume.
RACES = {"handshake_race": {"PRESUME": 0}, "presume_race": {"HANDSHAKE": 0}}

# Before issue 9 any authenticated frame that is not a replay counted. One build
# for both scenarios of the issue (each monitor reads its own bound only): the
# presume monitor's bound is raised to the failback bound.
TODAYS_RULE = {"NET": NET_UP, "ACK_RULE": 0, "PRESUME_BOUND": TIGHT["FAILBACK_BOUND"]}

# Health checks (spec/README.md, "Health checks"): links up, the attacker, two verdict
# changes in a run on either host or both (the master falls and rises, the backup
# falls and rises, both fall, ...), one crash or stop of each host (without a restart
# the attacker has nothing to replay), and the master's presume clock restarted at its
# rejoin: the fix spin asked for, now in the cores (REJOIN_PRESUME=0, the cores before, has two holders).
HEALTH = {"NET": NET_UP, "HEALTH": 1, "REJOIN_PRESUME": 1, "FLIPS": 2, "M_CRASHES": 1, "B_CRASHES": 1}
STEPDOWN_TIGHT = 13  # ticks: the master's acquire in flight, its release, a heartbeat, fail deadline, acquire

# Link cuts (spec/README.md, "Link cuts"): links up, the attacker, either host's links
# cut and back (two changes in a run), crashes and stops; the cores told (LINKWATCH=1).
# LINKWATCH=0 is the cores before: not told. Without crashes, the one way to two live
# holders there is the bench's scenario 2.
LINKCUT = {"NET": NET_UP, "LINKCUT": 1}
TODAYS_LINKS = LINKCUT | {"LINKWATCH": 0, "M_CRASHES": 0, "B_CRASHES": 0}
CUT = re.compile(r"cut=(\d)/(\d)")

CONFIGS = {
    "links-up": Config({"NET": NET_UP}),
    "links-up-cycles": Config({"NET": NET_UP}, acceptance=True),
    "below-bounds": Config({"NET": NET_UP} | {bound: ticks - 1 for bound, ticks in TIGHT.items()}, quick=True),
    "private-cut": Config(PRIVATE_CUT | {"OVERLAP_BOUND": OVERLAP_TIGHT}),
    "partition": Config({"NET": NET_PARTITION}, quick=True),
    "handshake-fast": Config(HANDSHAKE_ONLY | FAST_OPS),
    **{
        f"handshake-{slower}": Config(HANDSHAKE_ONLY | FAST_OPS | {slower: 2}, quick=True)
        for slower in ("M_ACQ_MAX", "B_OP_MAX")
    },
    "presume-fast": Config(PRIVATE_CUT | FAST_OPS, quick=True),
    **{
        f"overlap-{race}": Config(PRIVATE_CUT | RACES[race] | {"OVERLAP_BOUND": OVERLAP_TIGHT - 1}, quick=True)
        for race in sorted(RACES)
    },
    "rule0": Config(TODAYS_RULE, quick=True),
    "rule1": Config({"NET": NET_UP, "ACK_RULE": 1, "ATTACK": 0}, quick=True),
    "rule2": Config(HANDSHAKE_ONLY | FAST_OPS | {"ACK_RULE": 2}, quick=True),
    "health": Config(HEALTH),
    "health-below-bound": Config(HEALTH | {"STEPDOWN_BOUND": STEPDOWN_TIGHT - 1}, quick=True),
    "health-todays-rejoin": Config(HEALTH | {"REJOIN_PRESUME": 0}, quick=True),
    "health-no-floor": Config(HEALTH | {"RELEASE_FLOOR": 0}, quick=True),
    "links-cut": Config(LINKCUT),
    "links-cut-todays-cores": Config(TODAYS_LINKS, quick=True),
}


class Builds:
    """Every configuration's pan, compiled one at a time in the background in the
    order of CONFIGS, so that compiling the next overlaps the search of the last:
    at most two processes at once (gcc and pan), about half the time on 2 cores.
    A test that needs a build not started yet (run on its own, -k) builds it at once."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pan-build")
        self._pans: dict[str, Future[Pan]] = {}
        for name, config in CONFIGS.items():
            (root / name).mkdir()
            self._pans[name] = self._pool.submit(Pan, root / name, config)

    def __getitem__(self, name: str) -> Pan:
        future = self._pans[name]
        if future.cancel():  # still queued: build it here rather than wait for the ones before it
            future = self._pans[name] = Future()
            try:
                future.set_result(Pan(self._root / name, CONFIGS[name]))
            except Exception as exc:  # every later test of this build fails the same way, none waits
                future.set_exception(exc)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def pans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    builds = Builds(tmp_path_factory.mktemp("pan"))
    yield builds
    builds.close()


def assert_holds(pan: Pan, claim: str) -> None:
    errors, report = pan.verify(claim)
    assert errors == 0, f"{claim} violated:\n{report}\n{pan.trail()}"


def two_holders_trail(pan: Pan) -> str:
    """The counterexample to no_two_holders that ``pan`` must find; it ends with both holding."""
    errors, report = pan.verify("no_two_holders")
    assert errors == 1, f"expected a counterexample for {pan.config.defines}, got:\n{report}"
    trail = pan.trail()
    backup, master = trail.splitlines()[-1].split("master[")
    assert "addr=1" in backup and "addr=1" in master, trail
    return trail


def overlap_trail(pan: Pan, ticks: int) -> str:
    """The counterexample to overlap_bounded that ``pan`` must find; it ends with both
    holding for ``ticks`` ticks in a row."""
    errors, report = pan.verify("overlap_bounded")
    assert errors == 1, f"expected an overlap longer than the bound for {pan.config.defines}, got:\n{report}"
    trail = pan.trail()
    last = trail.splitlines()[-1]
    backup, master = last.split("master[")
    assert "addr=1" in backup and "addr=1" in master and f"overlap={ticks}" in last, trail
    return trail


def late_trail(pan: Pan, claim: str) -> str:
    """The counterexample to the bounded-response ``claim`` that ``pan`` must find."""
    errors, report = pan.verify(claim)
    assert errors == 1, f"expected {claim} violated for {pan.config.defines}, got:\n{report}"
    return pan.trail()


def replays(trail: str) -> list[tuple[str, int, int]]:
    """(what, epoch it was sent in, epoch of the receiver it was replayed to) per replay in ``trail``."""
    return [(m[1], int(m[2]), int(m[3])) for m in map(REPLAY.search, trail.splitlines()) if m]


def master_states_in_last_epoch(trail: str) -> list[int]:
    """The master's states in its final epoch, in order, repeats dropped."""
    states = [(int(m[1]), int(m[2])) for m in map(STEP_MASTER.search, trail.splitlines()) if m]
    last_epoch = states[-1][0]
    path = [state for epoch, state in states if epoch == last_epoch]
    return [state for i, state in enumerate(path) if i == 0 or state != path[i - 1]]


def master_presumed_in_last_epoch(trail: str) -> bool:
    """The master of the final epoch went through ``probing`` (its presume path)."""
    return M_PROBING in master_states_in_last_epoch(trail)


def claim_both_trail(pan: Pan) -> str:
    """The counterexample to no_two_holders that ``pan`` must find. The model's links-up
    assertion (no gratuitous ARP reaches a host that watches) may cut it short at the
    master's acquire: it ends with the master holding while the backup holds or is
    acquiring (an acquire in flight completes: both hold)."""
    errors, report = pan.verify("no_two_holders")
    assert errors == 1, f"expected a counterexample for {pan.config.defines}, got:\n{report}"
    trail = pan.trail()
    backup, master = trail.splitlines()[-1].split("master[")
    assert " addr=1 " in master and (" addr=1 " in backup or f" state={D_ACQUIRING} " in backup), trail
    return trail


def is_subsequence(wanted: list[int], path: list[int]) -> bool:
    states = iter(path)
    return all(state in states for state in wanted)


# --- links up ---------------------------------------------------------------------


@needs_spin
@pytest.mark.slow
def test_safety_and_bounded_response_under_links_up(pans: Builds) -> None:
    """no_two_holders, takeover_bounded, failback_bounded and presume_bounded, in one run."""
    assert_holds(pans["links-up"], "links_up_safety")


@needs_spin
@pytest.mark.slow
def test_liveness_has_no_acceptance_cycle(pans: Builds) -> None:
    """takeover_eventually, failback_eventually and presume_eventually, in one run."""
    assert_holds(pans["links-up-cycles"], "links_up_liveness")


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("claim", sorted(BOUND_OF))
def test_bounds_are_tight(pans: Builds, claim: str) -> None:
    """One tick less than the documented bound is violated: the monitors are not vacuous."""
    errors, report = pans["below-bounds"].verify(claim)
    bound = BOUND_OF[claim]
    assert errors == 1, f"{claim} with {bound}={TIGHT[bound] - 1} should fail, the bound is not tight:\n{report}"


# --- without links up ---------------------------------------------------------------


@needs_spin
@pytest.mark.slow
def test_private_cut_gives_the_documented_brief_split_brain(pans: Builds) -> None:
    """Without "links up" two holders are reachable (spec/README.md, "Without links up"):
    briefly with the private link cut (ARP conflict detection ends it, below)."""
    two_holders_trail(pans["private-cut"])


@needs_spin
@pytest.mark.slow
def test_partition_gives_the_documented_split_brain(pans: Builds) -> None:
    """In a partition (both networks cut) two holders are reachable for good: no probe or
    ARP reaches the other host (spec/README.md, "Without links up")."""
    two_holders_trail(pans["partition"])


@needs_spin
@pytest.mark.slow
def test_private_cut_handshake_race_closed_under_latency_bound(pans: Builds) -> None:
    assert_holds(pans["handshake-fast"], "no_two_holders")


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("slower", ["M_ACQ_MAX", "B_OP_MAX"])
def test_private_cut_handshake_bound_is_tight(pans: Builds, slower: str) -> None:
    """One tick more for the master's acquire, or for the backup's acquire and release before
    its "released" status, and the backup's probe can look before the master's address is up."""
    two_holders_trail(pans[f"handshake-{slower}"])


@needs_spin
@pytest.mark.slow
def test_private_cut_presume_race_remains(pans: Builds) -> None:
    """With the master's presume path, fast operations do not help: the master's probe and the
    backup's probe each look while the other's acquire is in flight (spec/README.md)."""
    trail = two_holders_trail(pans["presume-fast"])
    assert master_presumed_in_last_epoch(trail), trail


# Private link cut, public network joined, no narrowing: both races still give
# two holders, and ARP conflict detection ends every overlap within 4 ticks (2 s):
# the backup's gratuitous ARP reaches the holding master (ARP_DELAY, 1 tick), the
# master's Announce comes back (1 tick) and the backup's release takes (B_OP_MAX,
# 2 ticks). The master's own ARP after its acquire is seen by a backup already
# acquiring or holding, which ends the overlap sooner.


@needs_spin
@pytest.mark.slow
def test_private_cut_overlap_ends_within_bound(pans: Builds) -> None:
    """Both races (the full model: handshake and presume), every interleaving."""
    assert_holds(pans["private-cut"], "overlap_bounded")


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("race", sorted(RACES))
def test_private_cut_overlap_bound_is_tight(pans: Builds, race: str) -> None:
    """Each race on its own (the master acquiring only on the handshake, or only on presume)
    reaches an overlap of the full bound."""
    trail = overlap_trail(pans[f"overlap-{race}"], OVERLAP_TIGHT)
    assert master_presumed_in_last_epoch(trail) == (race == "presume_race"), trail


# --- freshness: the replaying attacker against the weaker rules -----------------
# spec/README.md, "Freshness and the replaying attacker". Under the model's rule
# (ACK_RULE=3) every run above has the attacker in it; each weaker rule has a
# counterexample of its own.


@needs_spin
@pytest.mark.slow
def test_todays_rule_replayed_heartbeats_delay_a_restarted_backups_takeover(pans: Builds) -> None:
    """Issue 9: a backup restarted after the master died counts replays of the master's
    heartbeats, recorded before its restart, and does not take over within the bound."""
    trail = late_trail(pans["rule0"], "takeover_bounded")
    backup, master = trail.splitlines()[-1].split("master[")
    assert backup.startswith("STEP") and "backup[up=1 " in backup and " addr=0 " in backup, trail
    assert master.startswith("up=0 ") and "bepoch=2 " in master, trail  # the backup's second life, the master dead
    assert any(what == "heartbeat" and to == 2 for what, _, to in replays(trail)), trail


@needs_spin
@pytest.mark.slow
def test_todays_rule_replayed_statuses_keep_a_returning_master_off_its_address(pans: Builds) -> None:
    """Issue 9: a managed master that starts while the backup is dead takes replays of the
    backup's statuses, recorded before its start, for a live backup: it does not acquire
    even within the failback bound (17 ticks; without the replays it does within 10)."""
    trail = late_trail(pans["rule0"], "presume_bounded")
    last = trail.splitlines()[-1]
    backup, master = last.split("master[")
    assert "backup[up=0 " in backup and master.startswith("up=1 ") and " addr=0 " in master, trail
    epoch = int(STEP_MASTER.search(last)[1])
    assert any(what == "status" and to == epoch for what, _, to in replays(trail)), trail


@needs_spin
@pytest.mark.slow
def test_acknowledgement_rule_alone_lets_an_answer_to_an_uncounted_heartbeat_release(pans: Builds) -> None:
    """ACK_RULE=1 (a frame counts only if it acknowledges the receiver's epoch), no attacker,
    links up: a restarted master's first heartbeat does not count, but the backup's answer to
    it acknowledges the master's epoch and says "I hold nothing"; the master acquires while the
    backup's silence still counts from the previous master, and both hold."""
    two_holders_trail(pans["rule1"])


@needs_spin
@pytest.mark.slow
def test_counted_rule_alone_lets_a_replay_elicit_a_late_release(pans: Builds) -> None:
    """ACK_RULE=2 (released only by a status acknowledging a heartbeat the backup counted),
    private link cut, handshake only, 1-tick operations: a replayed heartbeat makes the
    backup answer with "released" long after the heartbeat it counted, and the handshake
    race that the latency bound closes under ACK_RULE=3 opens again."""
    trail = two_holders_trail(pans["rule2"])
    assert any(what == "heartbeat" for what, _, _ in replays(trail)), trail


# --- health checks ---------------------------------------------------------------
# spec/README.md, "Health checks"; spec/properties.md, 10-12. One build (HEALTH above)
# for the proofs and the reachability checks, and one per counterexample.


@needs_spin
@pytest.mark.slow
def test_health_checks_flapping_on_both_hosts_keep_every_health_property(pans: Builds) -> None:
    """no_two_holders, stepdown_bounded, unfit_never_acquires and both_unfit_nobody_holds in one
    run, under links up with the replaying attacker, crashes and stops."""
    assert_holds(pans["health"], "health_safety")


@needs_spin
@pytest.mark.slow
def test_step_down_bound_is_tight(pans: Builds) -> None:
    """One tick less than the step-down bound is violated: the master's check falls while its
    acquire is in flight, and every `leaving` heartbeat after its release is lost."""
    errors, report = pans["health-below-bound"].verify("stepdown_bounded")
    assert errors == 1, f"stepdown_bounded with STEPDOWN_BOUND={STEPDOWN_TIGHT - 1} should fail:\n{report}"


@needs_spin
@pytest.mark.slow
def test_both_unfit_after_the_masters_release_is_reached(pans: Builds) -> None:
    """both_unfit_nobody_holds is not vacuous: both hosts unfit, the master stood down, the
    backup holding nothing, is reachable."""
    errors, report = pans["health"].verify("fault_unreached")
    assert errors == 1, f"both unfit after the master's release should be reachable:\n{report}"


@needs_spin
@pytest.mark.slow
def test_an_unfit_backup_keeps_what_it_holds_unlike_keepalived_fault(pans: Builds) -> None:
    """The choice docs/checks.md describes: a backup whose check falls while it holds the
    address keeps it while the master stands down unfit too (keepalived's FAULT state would
    release it and leave nobody holding it)."""
    errors, report = pans["health"].verify("unfit_backup_never_holds")
    assert errors == 1, f"an unfit backup holding the address should be reachable:\n{report}"
    last = pans["health"].trail().splitlines()[-1]
    backup, master = last.split("master[")
    assert " addr=1 " in backup and f" state={M_STANDING_DOWN} " in master and " fit=0/0 " in last + " ", last


@needs_spin
@pytest.mark.slow
def test_todays_rejoin_lets_the_master_presume_a_backup_that_takes_over_on_its_leaving(pans: Builds) -> None:
    """Finding (spec/README.md, "Health checks"): with the cores before the fix a master that rejoins
    presumes the backup dead a failure timeout after it last heard it, though the backup may
    be taking over on the `leaving` heartbeats it sent until the rejoin; the probe looks
    while the backup's acquire is in flight, and both hold. tests/test_core_health.py plays
    it through the real cores."""
    trail = claim_both_trail(pans["health-todays-rejoin"])
    path = master_states_in_last_epoch(trail)
    assert is_subsequence([M_STANDING_DOWN, M_WAITING, M_PROBING, M_ACQUIRING], path), trail


@needs_spin
@pytest.mark.slow
def test_without_the_release_floor_a_status_made_while_leaving_releases_the_master(pans: Builds) -> None:
    """Master._rejoin's release floor is needed: without it the backup's "I hold nothing",
    answering a `leaving` heartbeat it is about to act on, makes a rejoined master acquire
    (the handshake, not a presume) while the backup takes over."""
    trail = claim_both_trail(pans["health-no-floor"])
    path = master_states_in_last_epoch(trail)
    assert is_subsequence([M_STANDING_DOWN, M_WAITING, M_ACQUIRING], path) and M_PROBING not in path, trail


# --- link cuts ----------------------------------------------------------------------
# spec/README.md, "Link cuts"; spec/properties.md, 13-14.


@needs_spin
@pytest.mark.slow
def test_link_cuts_on_either_host_never_give_two_holders_whose_links_are_up(pans: Builds) -> None:
    """no_two_live_holders and cut_never_acquires in one run: cuts and flaps of either host's
    links at any instant, the instant they return included, with crashes, stops and the attacker."""
    assert_holds(pans["links-cut"], "link_safety")


@needs_spin
@pytest.mark.slow
@pytest.mark.parametrize("claim", ["master_cut_unreached", "backup_cut_unreached"])
def test_a_cut_host_whose_peer_holds_the_address_is_reached(pans: Builds, claim: str) -> None:
    """link_safety is not vacuous: the backup takes over from a cut master, and a master from a cut backup."""
    errors, report = pans["links-cut"].verify(claim)
    assert errors == 1, f"{claim} should be reachable:\n{report}"


@needs_spin
@pytest.mark.slow
def test_todays_cores_answer_beside_the_backup_when_a_cut_masters_links_return(pans: Builds) -> None:
    """The bench's scenario 2 (docs/benchmarks.md, "Link cut"), found by the model with the cores
    not told of their links: the master holds through the cut, the backup takes over, and when
    the links return both hold the address."""
    errors, report = pans["links-cut-todays-cores"].verify("no_two_live_holders")
    assert errors == 1, f"expected a counterexample with LINKWATCH=0, got:\n{report}"
    steps = [line for line in pans["links-cut-todays-cores"].trail().splitlines() if line.startswith("STEP")]
    backup, master = steps[-1].split("master[")
    assert " addr=1 " in backup and " addr=1 " in master and CUT.search(steps[-1]).groups() == ("0", "0"), steps[-1]
    cut = [step for step in steps if CUT.search(step).group(2) == "1"]
    assert cut and any(f" state={M_HOLDING} addr=1 " in step.split("master[")[1] for step in cut), "\n".join(steps)


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


def several_backups(trigger: str, source: str, dest: str) -> bool:
    """A detector row that holds only with peers (the table marks them: failoverd/core/detector.py)."""
    from failoverd.core.detector import SEVERAL_BACKUPS_STATES, SEVERAL_BACKUPS_TRIGGERS

    return trigger in SEVERAL_BACKUPS_TRIGGERS or source in SEVERAL_BACKUPS_STATES or dest in SEVERAL_BACKUPS_STATES


def pair_machine(module_name: str) -> tuple[tuple[str, ...], set[tuple[str, str, str]]]:
    """The code's machine as a pair runs it: the detector without its several-backups states and rows,
    which a backup without --peer never enters or fires (spec/backups.pml models them)."""
    states, transitions = code_machine(module_name)
    if module_name != "failoverd.core.detector":
        return states, transitions
    from failoverd.core.detector import SEVERAL_BACKUPS_STATES

    return (
        tuple(s for s in states if s not in SEVERAL_BACKUPS_STATES),
        {t for t in transitions if not several_backups(*t)},
    )


def test_the_several_backups_marks_name_states_and_triggers_of_the_table() -> None:
    """The marks exclude only what exists: a misspelt one would exclude nothing and hide nothing."""
    from failoverd.core.detector import AUTOMATIC, SEVERAL_BACKUPS_STATES, SEVERAL_BACKUPS_TRIGGERS, STATES

    assert set(STATES) >= SEVERAL_BACKUPS_STATES
    assert set(AUTOMATIC) >= SEVERAL_BACKUPS_TRIGGERS
    # And nothing a pair runs is among them: every pair state keeps its pair-model rows.
    assert {"monitoring", "suspect", "failed_over", "recovering"}.isdisjoint(SEVERAL_BACKUPS_STATES)


def test_the_several_backups_model_names_the_several_backups_states() -> None:
    """Where the pair model has no deferring or announcing, spec/backups.pml must: by the code's names."""
    from failoverd.core.detector import SEVERAL_BACKUPS_STATES

    model = MODEL.parent / "backups.pml"
    text = model.read_text()
    for state in sorted(SEVERAL_BACKUPS_STATES):
        assert re.search(rf"#define D_{state}\s", text), f"several-backups state {state} has no D_{state} in {model}"


@pytest.mark.parametrize(("machine", "module_name"), [("detector", "failoverd.core.detector"), ("master", "failoverd.core.master")])
def test_model_machines_match_the_code(machine: str, module_name: str) -> None:
    model_states, model_transitions = model_machine(machine)
    code_states, code_transitions = pair_machine(module_name)
    assert set(model_states) == set(code_states), f"{machine}: model {model_states} vs code {code_states}"
    assert model_transitions == code_transitions, (
        f"{machine}: only in the model {sorted(model_transitions - code_transitions)}; "
        f"only in the code {sorted(code_transitions - model_transitions)}"
    )
    text = MODEL.read_text()
    prefix = "D_" if machine == "detector" else "M_"
    for state in model_states:
        assert re.search(rf"#define {prefix}{state}\s", text), f"{machine} state {state} has no {prefix}{state} in the model"
