"""``failoverd-lab``: build, list and remove labs from the command line.

    failoverd-lab up [--seed N] [--frame-log] [--backups N] [--format json|plain]
                                                                      build a lab and leave it running
    failoverd-lab down LAB                                            remove a lab (id or namespace name)
    failoverd-lab list [--format json|plain]                          labs recorded or found
    failoverd-lab sweep [--all]                                       remove leftovers of ours

Each subcommand is one :class:`Subcommand` entry in ``SUBCOMMANDS``: a name, a help line, a function
that adds its arguments to an argparse parser, and a function that runs it and returns the exit
status. Adding one (for instance ``demo``) is adding one entry.

Exit status: 0 done, 1 the operation failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from failoverd.lab import demo, netns, registry
from failoverd.lab.control import ControlError
from failoverd.lab.lab import Lab, LabError
from failoverd.lab.registry import ProcessId
from failoverd.lab.topology import LAB_ID_RE, MAX_BACKUPS, ROLES, TopologyError, lab_of_namespace, namespace


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("json", "plain"), default="plain")


# --- up ----------------------------------------------------------------------------------------------

def _configure_up(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="the emulator's random seed (default: random, printed)")
    parser.add_argument("--frame-log", action="store_true", help="log every frame to frames.jsonl")
    parser.add_argument("--backups", type=int, choices=range(1, MAX_BACKUPS + 1), default=1, metavar="N",
                        help=f"backup hosts (1 to {MAX_BACKUPS}; 2 adds backup2 on both LANs; default 1)")
    _format_option(parser)


def _up(args: argparse.Namespace) -> int:
    lab = Lab(seed=args.seed, owned=False, frame_log=args.frame_log, backups=args.backups).create()
    description = lab.describe()
    if args.format == "json":
        print(json.dumps(description, indent=2))
    else:
        print(_plain(description))
    return 0


def _plain(d: dict[str, Any]) -> str:
    lines = [f"lab {d['id']} (seed {d['seed']}, emulator pid {d['emulator_pid']})"]
    for role, ns in d["namespaces"].items():
        lines.append(f"  {role:7} namespace {ns}")
    for lan, info in d["lans"].items():
        hosts = ", ".join(f"{h} {v['address']}" for h, v in info["hosts"].items())
        lines.append(f"  {lan:7} {info['network']} on {info['interface']}: {hosts}")
    lines.append(f"  vip     {d['vip']} (not configured; the daemons add it)")
    lines.append(f"  control {d['control']}")
    lines.append(f"  run a command: ip netns exec {d['namespaces']['client']} <command>")
    return "\n".join(lines)


# --- down --------------------------------------------------------------------------------------------

def _configure_down(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lab", help="lab id (fo1a2b3c) or any of its namespace names")


def _lab_id(name: str) -> str:
    if LAB_ID_RE.match(name):
        return name
    lab_id = lab_of_namespace(name)
    if lab_id is None:
        raise TopologyError(f"{name!r} is neither a lab id nor a lab namespace name")
    return lab_id


def _down(args: argparse.Namespace) -> int:
    lab_id = _lab_id(args.lab)
    if registry.read_record(lab_id) is None and not _namespaces_of(lab_id):
        raise LabError(f"no lab {lab_id}: nothing recorded and no namespace left")
    _remove(lab_id)
    print(f"removed lab {lab_id}")
    return 0


def _namespaces_of(lab_id: str) -> list[str]:
    return [ns for ns in netns.list_namespaces() if lab_of_namespace(ns) == lab_id]


def _remove(lab_id: str) -> None:
    """Remove a lab whether or not it is fully recorded."""
    if registry.read_record(lab_id) is not None:
        Lab.attach(lab_id).destroy()
        return
    # A namespace without a record (its builder died mid-way): remove it directly.
    problems = []
    for ns in _namespaces_of(lab_id):
        try:
            netns.kill_all(ns)
            netns.delete_namespace(ns)
        except netns.NetnsError as exc:
            problems.append(str(exc))
    registry.remove_record(lab_id)
    if problems:
        raise LabError("; ".join(problems))


# --- list --------------------------------------------------------------------------------------------

def _configure_list(parser: argparse.ArgumentParser) -> None:
    _format_option(parser)


def survey() -> list[dict[str, Any]]:
    """Every lab recorded or with a namespace, and whether it is running and owned."""
    found: dict[str, dict[str, Any]] = {}
    for lab_id in registry.recorded_labs():
        record = registry.read_record(lab_id) or {}
        owner = ProcessId.from_dict(record.get("owner"))
        emulator = ProcessId.from_dict(record.get("emulator"))
        found[lab_id] = {
            "id": lab_id,
            "state": record.get("state", "unrecorded"),
            "owner_pid": owner.pid if owner else None,
            "owner_alive": owner.alive() if owner else None,
            "emulator_alive": emulator.alive() if emulator else False,
            "namespaces": [],
            "vip": record.get("vip"),
        }
    for ns in netns.list_namespaces():
        owning_lab = lab_of_namespace(ns)
        if owning_lab is None:
            continue
        entry = found.setdefault(owning_lab, {"id": owning_lab, "state": "unrecorded", "owner_pid": None,
                                          "owner_alive": None, "emulator_alive": False,
                                          "namespaces": [], "vip": None})
        entry["namespaces"].append(ns)
    for entry in found.values():
        entry["leftover"] = _is_leftover(entry)
    return sorted(found.values(), key=lambda e: e["id"])


def _is_leftover(entry: dict[str, Any]) -> bool:
    if entry["state"] == "unrecorded":
        return True
    if entry["owner_pid"] is not None:
        return not entry["owner_alive"]
    # Labs left running by `up` have no owner: they are leftovers once their wire is gone.
    return not entry["emulator_alive"]


def _list(args: argparse.Namespace) -> int:
    labs = survey()
    if args.format == "json":
        print(json.dumps(labs, indent=2))
        return 0
    if not labs:
        print("no labs")
    for entry in labs:
        owner = (f"owner pid {entry['owner_pid']}" if entry["owner_pid"] else "no owner (failoverd-lab up)")
        flag = "  LEFTOVER" if entry["leftover"] else ""
        print(f"{entry['id']}  {entry['state']:10} {owner}, {len(entry['namespaces'])} namespaces, "
              f"vip {entry['vip']}{flag}")
    return 0


# --- sweep -------------------------------------------------------------------------------------------

def _configure_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true",
                        help="also remove labs that are still running (owned by a live process or left up)")


def _sweep(args: argparse.Namespace) -> int:
    failed = 0
    for entry in survey():
        if not (args.all or entry["leftover"]):
            continue
        try:
            _remove(entry["id"])
            print(f"removed lab {entry['id']}")
        except (LabError, netns.NetnsError, ControlError) as exc:
            print(f"failoverd-lab: could not remove {entry['id']}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("up", "build a lab and leave it running; print its description", _configure_up, _up),
    Subcommand("down", "remove a lab", _configure_down, _down),
    Subcommand("list", "list the labs recorded or found", _configure_list, _list),
    Subcommand("sweep", "remove leftover labs (namespaces fo<6 hex>-<role> only)", _configure_sweep, _sweep),
    Subcommand("demo", "live demonstration: the master dies, the backup takes over, the master returns",
               demo.add_arguments, demo.main),
)


def build_parser(subcommands: Sequence[Subcommand] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="failoverd-lab",
        description="Network-namespace lab for failoverd: master, backup (and backup2 with up --backups 2) and client on two emulated LANs. "
                    f"Namespaces are named fo<6 hex>-<{'|'.join(ROLES)}>, e.g. {namespace('fo1a2b3c', 'master')}.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in subcommands:
        child = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (LabError, netns.NetnsError, ControlError, TopologyError) as exc:
        print(f"failoverd-lab: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"failoverd-lab: {exc} (the lab needs root)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
