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
