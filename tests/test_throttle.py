"""The per-client backoff on wrong credentials: a pure component, its clock passed in."""

from __future__ import annotations

import pytest

from bridge.web.throttle import (
    ALLOWED_FAILURES,
    FIRST_DELAY,
    FORGET_AFTER,
    MAX_DELAY,
    Throttle,
    client_key,
)

CLIENT = "198.51.100.7"


def fail(throttle: Throttle, times: int, now: float = 0.0, key: str = CLIENT) -> list[float]:
    """The waits `times` failures at `now` leave behind, one per failure."""
    return [throttle.failed(key, now) for _ in range(times)]


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # the same IPv4 client, mapped
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # same /64: same client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("", ""),  # a Unix socket's peer
        (None, ""),
        ("not an address", "not an address"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(remote: str | None, key: str) -> None:
    """Many addresses of one IPv6 host (its /64) count as one client."""
    assert client_key(remote) == key


def test_the_constants_are_ten_failures_then_one_second_doubling_to_a_minute() -> None:
    assert (ALLOWED_FAILURES, FIRST_DELAY, MAX_DELAY) == (10, 1.0, 60.0)
    assert FORGET_AFTER > MAX_DELAY  # waiting out a block never wipes the slate


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(1, 0.0), (9, 0.0), (10, 1.0), (11, 2.0), (12, 4.0), (15, 32.0), (16, 60.0), (500, 60.0)],
)
def test_the_delay_doubles_from_the_limit_up_to_the_cap(failures: int, delay: float) -> None:
    assert Throttle().delay(failures) == delay


def test_failures_below_the_limit_cost_nothing() -> None:
    throttle = Throttle()
    assert fail(throttle, ALLOWED_FAILURES - 1) == [0.0] * (ALLOWED_FAILURES - 1)
    assert throttle.wait(CLIENT, 0.0) == 0.0


def test_the_limit_blocks_the_client_for_a_second_and_it_passes() -> None:
    throttle = Throttle()
    assert fail(throttle, ALLOWED_FAILURES)[-1] == 1.0
    assert throttle.wait(CLIENT, 0.0) == 1.0
    assert throttle.wait(CLIENT, 0.25) == 0.75
    assert throttle.wait(CLIENT, 1.0) == 0.0
    assert throttle.wait("198.51.100.8", 0.0) == 0.0  # only that client


def test_each_failure_past_the_limit_doubles_the_block_up_to_the_cap() -> None:
    throttle = Throttle()
    fail(throttle, ALLOWED_FAILURES)
    now, waits = 0.0, []
    for _ in range(8):
        now += throttle.wait(CLIENT, now)  # the client waits out its block, then fails again
        waits.append(throttle.failed(CLIENT, now))
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_right_credential_forgets_the_failures() -> None:
    throttle = Throttle()
    fail(throttle, ALLOWED_FAILURES - 1)
    throttle.succeeded(CLIENT)
    assert fail(throttle, ALLOWED_FAILURES - 1) == [0.0] * (ALLOWED_FAILURES - 1)
    assert len(throttle) == 1
    throttle.succeeded(CLIENT)
    assert len(throttle) == 0


def test_a_quiet_client_is_forgotten_only_long_after_its_block() -> None:
    throttle = Throttle()
    fail(throttle, ALLOWED_FAILURES + 5)  # blocked for 32 s from 0
    blocked_until = 32.0
    assert throttle.failed(CLIENT, blocked_until + FORGET_AFTER - 1) == 60.0  # still counted
    later = blocked_until + FORGET_AFTER - 1 + 60.0 + FORGET_AFTER
    assert throttle.failed(CLIENT, later) == 0.0  # quiet long enough: a fresh start


def test_memory_is_bounded_by_forgetting_the_oldest_failure() -> None:
    throttle = Throttle(max_clients=3)
    for second, client in enumerate(("a", "b", "c", "d")):
        throttle.failed(client, float(second))
    assert len(throttle) == 3
    throttle.failed("b", 4.0)  # b failed again: now c is the oldest
    throttle.failed("e", 5.0)
    assert len(throttle) == 3
    fail(throttle, ALLOWED_FAILURES - 2, 6.0, key="b")
    assert throttle.wait("b", 6.0) == 1.0  # b's two earlier failures were kept
    assert fail(throttle, ALLOWED_FAILURES - 1, 6.0, key="c") == [0.0] * 9  # c was forgotten


def test_many_clients_cannot_grow_it() -> None:
    throttle = Throttle(max_clients=100)
    for n in range(10_000):
        throttle.failed(f"10.{n // 256 // 256}.{n // 256 % 256}.{n % 256}", float(n))
    assert len(throttle) == 100
