"""Dependencies point one way: contracts <- handlers <- bridge (STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A handler maps bytes to values: no broker, no HTTP, no socket, file, clock or environment.
HANDLER_FORBIDDEN = frozenset(
    {
        "bridge",
        "aio_pika",
        "aiormq",
        "pamqp",
        "aiohttp",
        "yarl",
        "socket",
        "ssl",
        "select",
        "selectors",
        "asyncio",
        "os",
        "pathlib",
        "io",
        "shutil",
        "tempfile",
        "subprocess",
        "http",
        "urllib",
        "requests",
        "httpx",
        "time",
    }
)
CONTRACTS_ALLOWED = frozenset({"pydantic", "orjson", "contracts"}) | sys.stdlib_module_names


# Submodules of forbidden packages that only compute (percent-encoding): reported by full name.
PURE_SUBMODULES = frozenset({"urllib.parse"})


def _name(module: str) -> str:
    return module if module in PURE_SUBMODULES else module.partition(".")[0]


def modules_in(source: str) -> set[str]:
    """Top-level names of every module `source` imports, anywhere in it.

    A relative import is reported as ".<module>" so that it can never pass as absolute.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_name(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add("." + (node.module or ""))
            elif node.module is not None:
                found.add(_name(node.module))
    return found


def imported_by_file(package: str) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return {
        str(path.relative_to(ROOT)): modules_in(path.read_text(encoding="utf-8")) for path in files
    }


def test_scanner_finds_every_kind_of_import() -> None:
    source = (
        "import os.path\n"
        "from aiohttp import web\n"
        "import json as j, socket\n"
        "def f() -> None:\n"
        "    import asyncio\n"
        "if True:\n"
        "    from bridge.settings import Config\n"
        "from . import sibling\n"
        "from .base import x\n"
        "from urllib.parse import quote\n"
        "import urllib.request\n"
    )
    assert modules_in(source) == {
        "os",
        "aiohttp",
        "json",
        "socket",
        "asyncio",
        "bridge",
        ".",
        ".base",
        "urllib.parse",
        "urllib",
    }


def test_scanner_sees_the_real_packages() -> None:
    """Guard against a vacuous pass: the known imports are found."""
    handlers = set().union(*imported_by_file("handlers").values())
    contracts = set().union(*imported_by_file("contracts").values())
    assert {"contracts", "handlers", "pydantic", "hmac"} <= handlers
    assert {"pydantic", "orjson"} <= contracts


def test_handlers_do_no_io() -> None:
    """handlers/ imports neither bridge/ nor a broker, HTTP or other I/O library."""
    offenders = {
        path: sorted(names & HANDLER_FORBIDDEN)
        for path, names in imported_by_file("handlers").items()
        if names & HANDLER_FORBIDDEN
    }
    assert offenders == {}


def test_contracts_use_only_pydantic_orjson_and_stdlib() -> None:
    offenders = {
        path: sorted(names - CONTRACTS_ALLOWED)
        for path, names in imported_by_file("contracts").items()
        if names - CONTRACTS_ALLOWED
    }
    assert offenders == {}


def test_contracts_do_not_import_handlers_or_bridge() -> None:
    """Spelled out, since both would also be caught as non-stdlib above."""
    for path, names in imported_by_file("contracts").items():
        assert not names & {"handlers", "bridge"}, path


def test_imports_are_absolute() -> None:
    """Relative imports would hide a layer crossing from the checks above."""
    for package in ("handlers", "contracts"):
        for path, names in imported_by_file(package).items():
            assert not {name for name in names if name.startswith(".")}, path


# The folders of bridge/ and the ones each may import (besides the cross-cutting modules at
# the top of bridge/): the arrows of the architecture. The AMQP side and the store are the
# bottom; the web side, the worker and reconciliation stand on them; the CLI and the demo
# compose everything.
BRIDGE = ROOT / "bridge"
FOLDER_ARROWS: dict[str, frozenset[str]] = {
    "amqp": frozenset(),
    "store": frozenset(),
    "worker": frozenset({"amqp", "store"}),
    "web": frozenset({"amqp", "store"}),
    "reconcile": frozenset({"amqp", "store"}),
    "backstop": frozenset({"amqp", "store"}),
    "cli": frozenset({"amqp", "store", "reconcile", "backstop", "demo", "web", "worker"}),
    "demo": frozenset({"amqp", "store", "web", "worker", "cli"}),
}
# Top-level modules that put the parts together; the others are cross-cutting and import none.
TOP_COMPOSERS = frozenset({"__main__.py", "runtime.py", "targets.py"})


def bridge_folders_imported(path: Path) -> set[str]:
    """The folders of bridge/ that the module at `path` imports from."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bridge"):
            names = [node.module]
            if node.module == "bridge":
                names = [f"bridge.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("bridge.")]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and (BRIDGE / parts[1]).is_dir():
                found.add(parts[1])
    return found


def test_every_bridge_folder_has_its_arrows() -> None:
    folders = {p.name for p in BRIDGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(FOLDER_ARROWS)


def test_bridge_folders_import_only_along_the_arrows() -> None:
    """E.g. the AMQP side and the store never import the web side."""
    offenders = {}
    for folder, allowed in FOLDER_ARROWS.items():
        for path in sorted((BRIDGE / folder).rglob("*.py")):
            crossing = bridge_folders_imported(path) - allowed - {folder}
            if crossing:
                offenders[str(path.relative_to(ROOT))] = sorted(crossing)
    assert offenders == {}


def test_cross_cutting_modules_import_no_part() -> None:
    offenders = {
        path.name: sorted(found)
        for path in sorted(BRIDGE.glob("*.py"))
        if path.name not in TOP_COMPOSERS and (found := bridge_folders_imported(path))
    }
    assert offenders == {}


def test_the_arrow_scanner_sees_crossings() -> None:
    """Guard against a vacuous pass: the web side's known imports are found."""
    assert {"amqp", "store"} <= bridge_folders_imported(BRIDGE / "web" / "app.py")
