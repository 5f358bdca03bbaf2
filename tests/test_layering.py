"""The package layout is the architecture: each layer imports only the layers below it.

See docs/architecture.md. Every import of every module is read from its
source (those inside functions and under ``TYPE_CHECKING`` too), so an import
across a forbidden boundary fails here, named by file and line, before it
can blur the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import failoverd

ROOT = Path(failoverd.__file__).parent

CONFIGURATION = {"cli/config.py", "cli/exitcodes.py"}
"""The configuration's vocabulary: what every layer above the core may read (it imports only the core)."""

MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "configuration": {"core"},
    "system": {"core", "configuration"},
    "analysis": {"core", "configuration"},
    "cli": {"core", "configuration", "system"},
    "runtime": {"core", "configuration", "system", "cli", "analysis"},
    "lab": {"core", "configuration", "system", "cli", "analysis", "runtime"},
    "programs": {"core", "configuration", "system", "cli", "analysis", "runtime", "lab"},
}
"""Layer -> the other layers it may import (its own always)."""

CORE_MUST_NOT_IMPORT = {
    "trio", "socket", "select", "selectors", "asyncio", "threading", "subprocess", "signal",
    "os", "time", "datetime", "random", "pyroute2",
}
"""The core is sans-IO: no sockets, no clocks, no files, no processes, no randomness (every call takes ``now``)."""


def layer_of(relative: str) -> str:
    """``core/wire.py`` -> ``core``; the configuration's two modules are a layer of their own."""
    if relative in CONFIGURATION:
        return "configuration"
    parts = relative.split("/")
    return parts[0] if len(parts) > 1 else "top"


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source`` (``package``: for relative ones)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "failoverd" and len(module.split(".")) <= 2:
                # ``from failoverd.cli import config`` imports failoverd.cli.config (a name in a
                # package's __init__ counts as the package's).
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def violations(relative: str, source: str) -> list[str]:
    """Every import in the module at ``relative`` (to the package) that crosses a forbidden boundary."""
    layer = layer_of(relative)
    package = "failoverd." + ".".join(relative.split("/")[:-1])
    found = []
    for line, module in imported_modules(source, package.rstrip(".")):
        parts = module.split(".")
        if parts[0] == "failoverd" and len(parts) > 1:
            target_path = "/".join(parts[1:]) + ".py"
            target = layer_of(target_path) if target_path in CONFIGURATION else parts[1]
            if target == layer or target == "__version__" or layer in ("top",):
                continue
            if target not in MAY_IMPORT.get(layer, set()):
                found.append(f"{relative}:{line}: {layer} imports {module} ({target})")
        elif layer == "core" and parts[0] in CORE_MUST_NOT_IMPORT:
            found.append(f"{relative}:{line}: the core imports {module} (it never does I/O or reads a clock)")
    return found


def test_every_module_imports_only_the_layers_below_it() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        found += violations(relative, path.read_text())
    assert found == []


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(MAY_IMPORT)


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("core/detector.py", "import trio\n"),
        ("core/wire.py", "from time import monotonic\n"),
        ("core/master.py", "from failoverd.runtime import shell\n"),
        ("core/timing.py", "def f():\n    import socket\n"),
        ("system/arp.py", "from failoverd.runtime.ports import System\n"),
        ("cli/preflight.py", "from failoverd.runtime.backup import serve\n"),
        ("cli/config.py", "from failoverd.system import hooks\n"),
        ("system/hooks.py", "from failoverd.cli import logsetup\n"),
        ("analysis/trace.py", "from failoverd.runtime import shell\n"),
        ("runtime/shell.py", "from failoverd.programs import failoverd\n"),
        ("lab/pair.py", "from failoverd import programs\n"),
    ],
)
def test_an_import_across_a_boundary_is_found(relative: str, source: str) -> None:
    assert len(violations(relative, source)) == 1


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("core/detector.py", "from failoverd.core import wire\nimport hmac\n"),
        ("system/hooks.py", "from failoverd.cli.config import DEFAULT_HOOK_DIR\n"),
        ("system/checks.py", "from failoverd.cli import config\n"),
        ("runtime/backup.py", "from failoverd.system.takeover import Takeover\nimport trio\n"),
        ("programs/failoverctl.py", "from failoverd.runtime.control import request\n"),
    ],
)
def test_an_import_within_the_rules_passes(relative: str, source: str) -> None:
    assert violations(relative, source) == []
