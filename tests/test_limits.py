"""The open-file limit is raised at start, and the receiver's cap stays within it."""

from __future__ import annotations

import resource
import subprocess
import sys

from bridge.limits import RESERVE, connection_cap

RAISE = """
import resource
from bridge.limits import raise_open_files
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(*raise_open_files(), hard)
"""


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    """A process started with a soft limit of 256 (the probe's 1,024 and lower) gets the hard."""
    out = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", RAISE], capture_output=True, text=True, check=True
    ).stdout.split()
    soft, hard, original_hard = (int(x) for x in out)
    assert hard == original_hard
    assert hard in (soft, resource.RLIM_INFINITY)
    assert soft > 256


def test_the_cap_leaves_a_reserve_under_the_soft_limit() -> None:
    assert connection_cap(4096, 1024) == 1024 - RESERVE
    assert connection_cap(100, 1024) == 100
    assert connection_cap(4096, RESERVE) == 1  # never zero: one connection is still served
    assert connection_cap(4096, resource.RLIM_INFINITY) == 4096
