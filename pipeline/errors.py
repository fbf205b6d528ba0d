"""The project's error kinds and the exit status each one means for the `reelhash` command.

Schedulers (cron, Prefect, CI) react to the exit status, so every failure that reaches the CLI is one of these
kinds (or is mapped to one in ``flows/cli.py``). The table is documented in README.md ("Exit status"):

| status | meaning |
|---|---|
| 0 | success |
| 1 | the run failed (too many bad files, a corrupt store file, an unexpected error) |
| 2 | usage: the command line cannot work as given (bad option, unknown name, missing weights) |
| 3 | the index is busy: another run holds it (retry later or pass ``--wait``) |
| 4 | the quality gate refused to publish (inspect the report; ``--force`` publishes anyway) |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INDEX_BUSY = 3
EXIT_QUALITY_GATE = 4
EXIT_INTERRUPTED = 130


class ReelhashError(Exception):
    """Base of the project's errors; ``exit_code`` is the CLI's exit status for it."""

    exit_code = EXIT_RUN_FAILED


class UsageError(ReelhashError, ValueError):
    """The request cannot work as given: a bad option value, an unknown name, missing inputs."""

    exit_code = EXIT_USAGE


class RunFailedError(ReelhashError, RuntimeError):
    """A run could not finish (e.g. too many files failed); the message says which and why."""

    exit_code = EXIT_RUN_FAILED


class CorruptStoreError(ReelhashError, RuntimeError):
    """A store file is corrupt, truncated or missing; the message names it and says how to recover."""

    exit_code = EXIT_RUN_FAILED


class IndexBusyError(ReelhashError, RuntimeError):
    """Another run holds the index (or a collection it shares)."""

    exit_code = EXIT_INDEX_BUSY


class QualityGateError(ReelhashError, RuntimeError):
    """A new version scored worse than the published one by more than the tolerance."""

    exit_code = EXIT_QUALITY_GATE
