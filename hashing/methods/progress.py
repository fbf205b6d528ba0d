"""How a training loop reports progress to its caller (e.g. a Prefect task that shows it while a long run goes on)."""

from __future__ import annotations

from collections.abc import Callable

# Called after every epoch with (epochs done, epochs in all, that epoch's mean of every history entry).
EpochCallback = Callable[[int, int, dict[str, float]], None]
