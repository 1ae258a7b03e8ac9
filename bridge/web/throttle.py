"""Backoff for wrong credentials, per client: a pure component (no I/O, the clock passed in).

A client (`client_key`: its IPv4 address, or its IPv6 /64; behind a trusted proxy, the one
its `X-Forwarded-For` names: `hardening.client_of`) may get `ALLOWED_FAILURES` wrong
credentials in a row; the failure that reaches the limit, and each one after it, blocks the
client for

    min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - ALLOWED_FAILURES))

seconds (1, 2, 4, ... 60), during which its attempts are refused unchecked. A right credential
forgets the client; so does `FORGET_AFTER` seconds without a failure once its block has ended.
At most `MAX_CLIENTS` clients are remembered: past that the one whose last failure is oldest is
forgotten, so many addresses cannot grow the memory without bound (each of them gets its own
`ALLOWED_FAILURES` anyway).

Each process keeps its own: `N` receiver processes on one port allow up to `N` times the
attempts. At the cap a client gets one guess a minute per process.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

ALLOWED_FAILURES = 10  # wrong credentials in a row before the first block
FIRST_DELAY = 1.0  # seconds of the first block; each further failure doubles it...
MAX_DELAY = 60.0  # ...up to this
FORGET_AFTER = 600.0  # seconds without a failure (after the block) that wipe the slate
MAX_CLIENTS = 10_000  # clients remembered (about 200 bytes each)
_IPV6_CLIENT_BITS = 64  # one IPv6 client is its /64: a single host is often given a whole /64


def client_key(remote: str | None) -> str:
    """Who is asking, for counting: an IPv4 address, an IPv6 /64, or the peer as given.

    An IPv4-mapped IPv6 address counts as its IPv4 address. A peer that is not an IP address
    (a Unix socket's, or none) is itself: all such peers share one count.
    """
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        host_bits = 128 - _IPV6_CLIENT_BITS
        prefix = ipaddress.IPv6Address(int(address) >> host_bits << host_bits)
        return f"{prefix}/{_IPV6_CLIENT_BITS}"
    return str(address)


@dataclass(slots=True)
class _Record:
    failures: int
    last_failure: float
    blocked_until: float


class Throttle:
    """Failures by client key, and how long each client must wait before it is heard again."""

    def __init__(
        self,
        *,
        allowed: int = ALLOWED_FAILURES,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        forget_after: float = FORGET_AFTER,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.allowed = allowed
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_clients = max_clients
        self._records: OrderedDict[str, _Record] = OrderedDict()  # oldest failure first

    def __len__(self) -> int:
        return len(self._records)

    def delay(self, failures: int) -> float:
        """Seconds a client is blocked after its `failures`-th failure in a row (0 below)."""
        if failures < self.allowed:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(failures - self.allowed, 62))

    def wait(self, key: str, now: float) -> float:
        """Seconds `key` must wait before its credential is checked again; 0: check it now."""
        record = self._records.get(key)
        return 0.0 if record is None else max(0.0, record.blocked_until - now)

    def failed(self, key: str, now: float) -> float:
        """Count a wrong credential from `key` at `now`; the seconds it must now wait."""
        record = self._records.pop(key, None)
        if record is None or now - max(record.last_failure, record.blocked_until) >= (
            self.forget_after
        ):
            record = _Record(failures=0, last_failure=now, blocked_until=now)
        record.failures += 1
        record.last_failure = now
        if record.failures >= self.allowed:
            record.blocked_until = now + self.delay(record.failures)
        self._records[key] = record  # re-inserted: the most recent failure is last
        while len(self._records) > self.max_clients:
            self._records.popitem(last=False)
        return max(0.0, record.blocked_until - now)

    def succeeded(self, key: str) -> None:
        """A right credential from `key`: its failures are forgotten."""
        self._records.pop(key, None)
