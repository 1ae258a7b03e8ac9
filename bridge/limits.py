"""The process's open-file limit: raised at start, and what the receiver may spend of it.

Every connection is a file descriptor. With the common soft limit of 1,024, 1,500 idle
connections starved a receiver (a probe answered 35 of 90 signed webhooks): the soft limit is
raised to the hard one at start, and the receiver holds at most that many connections less
`RESERVE` (the broker, the store, logs and the files a worker opens).
"""

from __future__ import annotations

import contextlib
import resource

RESERVE = 64  # descriptors kept for everything but the receiver's connections


def raise_open_files() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        # A platform that refuses keeps its limit; the connection cap follows it.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def connection_cap(wanted: int, soft: int) -> int:
    """The receiver's connection cap: `wanted`, within what the open-file limit leaves."""
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVE))
