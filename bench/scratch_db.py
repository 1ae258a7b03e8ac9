"""A scratch PostgreSQL database for one benchmark run, so runs never pile up in a real one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
from yarl import URL


@contextlib.asynccontextmanager
async def scratch_database(server: str) -> AsyncIterator[str]:
    """A new, empty database on the server `server` points at; dropped on exit."""
    name = f"cb_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield str(URL(server).with_path(f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
