"""The cores' state diagrams (mermaid ``stateDiagram-v2``), drawn from their tables.

``python -m failoverd.core.diagrams > docs/state-machines.md`` writes the
document; tests/test_core_table.py fails when the committed file and the
tables differ, so the diagrams cannot drift from the code.

Each row of a table is one edge, labelled ``trigger [conditions]`` (``not
x``: an ``unless``); a row that changes no state but acts is a self-loop; a
row that neither changes the state nor acts is listed under the diagram as an
input that state ignores.
"""

from __future__ import annotations

from typing import Any

from failoverd.core import detector, master
from failoverd.core.machine import DeclaredMachine, names_in, sources

MACHINES: tuple[tuple[str, type[DeclaredMachine]], ...] = (
    ("The backup (failoverd): `failoverd.core.detector.Detector`", detector.Detector),
    ("The master (heartbeatd): `failoverd.core.master.Master`", master.Master),
)


def label(name: str) -> str:
    """``_probe_answered`` reads ``probe answered``."""
    return name.lstrip("_").replace("_", " ")


def guard(row: dict[str, Any]) -> str:
    """A row's conditions as an edge's guard: ``[a, b, not c]`` (empty when it has none)."""
    parts = [label(n) for n in names_in(row, "conditions")] + [f"not {label(n)}" for n in names_in(row, "unless")]
    return f" [{', '.join(parts)}]" if parts else ""


def acts(row: dict[str, Any]) -> bool:
    return bool(names_in(row, "before") or names_in(row, "after"))


def diagram(core: type[DeclaredMachine]) -> str:
    """One machine's mermaid block and the inputs each of its states ignores."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {core.STATES[0]}"]
    ignored: dict[str, list[str]] = {}
    everywhere: list[str] = []
    for row in core.TRANSITIONS:
        if row["dest"] is None and set(sources(row)) == set(core.STATES):
            # Drawn as a self-loop on every state it would only clutter the picture.
            does = ", ".join(label(n) for n in (*names_in(row, "before"), *names_in(row, "after"))) or "nothing"
            everywhere.append(f"- `{row['trigger']}{guard(row)}`: {does}")
            continue
        for source in sources(row):
            if row["dest"] is None and not acts(row):
                ignored.setdefault(row["trigger"] + guard(row), []).append(source)
                continue
            lines.append(f"    {source} --> {row['dest'] or source}: {row['trigger']}{guard(row)}")
    lines.append("```")
    lines += [
        "",
        "State-driven triggers, tried after every input in this order while their conditions hold: "
        + ", ".join(f"`{t}`" for t in core.AUTOMATIC) + ".",
    ]
    if everywhere:
        lines += ["", "Rows of every state that change no state (not drawn), and what they do:", "", *everywhere]
    if ignored:
        lines += ["", "Inputs a state ignores (rows that neither change the state nor act):", ""]
        lines += ["| trigger | in |", "|---|---|"]
        lines += [f"| `{trigger}` | {', '.join(states)} |" for trigger, states in ignored.items()]
    return "\n".join(lines) + "\n"


def document() -> str:
    """docs/state-machines.md."""
    parts = [
        "# State machines\n",
        "Generated from the tables (`TRANSITIONS`) in `failoverd/core/detector.py` and "
        "`failoverd/core/master.py` by `python -m failoverd.core.diagrams > docs/state-machines.md`; "
        "tests/test_core_table.py fails when this file and the tables differ. Do not edit it by hand.\n",
        "Every state change is a row of a table (see `failoverd/core/machine.py` for the rules). Each edge "
        "below is one row: `trigger [conditions]`, where `not x` is an `unless`. The rows of one trigger from "
        "one state exclude each other, so their order means nothing. A self-loop is a row that acts without "
        "changing the state. An input a state has no row for is a bug: the test suite raises it, a daemon "
        "counts it (`undeclared` in its status) and alarms.\n",
    ]
    for title, core in MACHINES:
        parts.append(f"## {title}\n")
        parts.append(diagram(core))
    return "\n".join(parts)


if __name__ == "__main__":
    print(document(), end="")
