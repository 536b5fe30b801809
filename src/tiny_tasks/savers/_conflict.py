"""The `RunConflictError` a database saver raises when its compare-and-swap fails."""

from __future__ import annotations

from ..errors import RunConflictError


def conflict_error(
    run_id: str, stored_version: int | None, expected_version: int | None
) -> RunConflictError:
    """The error for a write that expected `expected_version` but found `stored_version`.

    `stored_version` is `None` when the run is not stored. The messages match
    `check_version`, so every saver explains a conflict the same way.
    """
    if expected_version is None:
        return RunConflictError(run_id, "the run was created by another worker")
    if stored_version is None:
        return RunConflictError(run_id, "the run was deleted by another worker")
    return RunConflictError(
        run_id,
        f"it is at version {stored_version}, this worker read version {expected_version}",
    )
