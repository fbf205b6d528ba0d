"""Named crash points for the kill tests: ``REELHASH_FAILPOINTS=name[:N],…`` makes the process group die by SIGKILL
the N-th time (default: the first time) a run passes ``crash_point(name)``.

A SIGKILL of the whole process group takes the driver and a local Ray instance's processes down together, as a
machine failure would, at an exact point of the protocol rather than wherever a timer happens to land. Unset (the
normal case) a crash point costs one dictionary lookup. Points: ``extract.unit_committed`` (after a unit's
manifest), ``before_publish`` (codes hashed and evaluated, nothing published), ``publish.version_written`` (a
complete version, ``CURRENT`` not yet moved).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "REELHASH_FAILPOINTS"
_passes: Counter = Counter()


def armed() -> dict[str, int]:
    points = {}
    for item in filter(None, (part.strip() for part in os.environ.get(ENV_VAR, "").split(","))):
        name, _, count = item.partition(":")
        points[name] = int(count or 1)
    return points


def crash_point(name: str) -> None:
    points = armed()
    if name not in points:
        return
    _passes[name] += 1
    if _passes[name] >= points[name]:
        os.killpg(os.getpgid(0), signal.SIGKILL)
