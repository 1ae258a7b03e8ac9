"""Signed-out console sessions, shared by every receiver process through the store.

A session cookie is a MAC (`web/console/session.py`): without a shared memory, a copy of it
would stay good until its expiry on every process that did not see the sign-out. Signing out
writes the session's id here until that expiry; each process asks before it takes a cookie.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from bridge.store.engine import Engines
from bridge.store.tables import revocations

REVOKE = sa.text(
    "INSERT INTO revocations (session_id, expires_at) VALUES (:s, :until) ON CONFLICT DO NOTHING"
).bindparams(sa.bindparam("until", type_=revocations.c.expires_at.type))


class Sessions(Engines):
    """Revoking a console session, and asking whether one was."""

    async def revoke_session(self, session_id: str, expires: datetime, now: datetime) -> None:
        """Refuse `session_id` until it `expires` anyway; forget sessions expired by `now`."""

        def revoke(connection: sa.Connection) -> None:
            connection.execute(revocations.delete().where(revocations.c.expires_at <= now))
            if expires > now:
                connection.execute(REVOKE, {"s": session_id, "until": expires})

        await self._transaction(revoke)

    async def session_revoked(self, session_id: str, now: datetime) -> bool:
        """Whether the session `session_id` was signed out (and has not expired since)."""
        async with self._read() as connection:
            found = await connection.scalar(
                sa.select(sa.literal(1)).where(
                    revocations.c.session_id == session_id, revocations.c.expires_at > now
                )
            )
        return found is not None
