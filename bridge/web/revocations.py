"""Console sessions signed out before they expired: a pure component (no I/O, the clock passed in).

A session cookie is a MAC (`console/session.py`): without memory, a copy of it would stay good
until its expiry however often its owner signs out. Signing out puts the session's id here
until that expiry, and a revoked id is no session.

The memory is the process's own. With several receiver processes (`[receiver] processes`, or a
fleet behind a load balancer) a copied cookie still works on the processes that did not see
the sign-out, until it expires (8 h after sign-in) or the API token is rotated, which ends
every session in every process.
"""

from __future__ import annotations

MAX_REVOKED = 10_000  # signed-out sessions remembered (only a signed-in caller adds one)


class Revocations:
    """Session ids signed out, each remembered until its session would have expired.

    At most `limit` are kept: past that the one expiring soonest is forgotten (only a signed-in
    caller can sign out, so reaching it takes that many sign-outs within a session's lifetime).
    """

    def __init__(self, limit: int = MAX_REVOKED) -> None:
        self.limit = limit
        self._until: dict[str, int] = {}  # session id -> its expiry (epoch seconds)

    def __len__(self) -> int:
        return len(self._until)

    def revoke(self, session_id: str, expires: int, now: float) -> None:
        """The session is over: refuse its id from `now` until it `expires` anyway."""
        self._until = {sid: end for sid, end in self._until.items() if end > now}
        if expires <= now:
            return
        self._until[session_id] = expires
        while len(self._until) > self.limit:
            del self._until[min(self._until, key=self._until.__getitem__)]

    def revoked(self, session_id: str) -> bool:
        """Whether the session `session_id` was signed out."""
        return session_id in self._until
