"""`Progress()`: lets a task report how far it got (see docket_nats._execution_progress)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Provider, current_execution

if TYPE_CHECKING:
    from .._execution_progress import ExecutionProgress


class Progress(Provider["Progress"]):
    """Report progress of the running task: `set_total`, `increment`, `set_message`."""

    def __init__(self) -> None:
        self._progress: ExecutionProgress | None = None

    def for_parameter(self, name: str) -> Progress:
        return Progress()  # one per run: the declared default is shared by every run

    async def __aenter__(self) -> Progress:
        self._progress = current_execution.get().progress
        return self

    @property
    def _tracker(self) -> ExecutionProgress:
        if self._progress is None:
            raise RuntimeError("Progress() works only as a task's dependency")
        return self._progress

    @property
    def current(self) -> int | None:
        return self._tracker.current

    @property
    def total(self) -> int:
        return self._tracker.total

    @property
    def message(self) -> str | None:
        return self._tracker.message

    async def set_total(self, total: int) -> None:
        await self._tracker.set_total(total)

    async def increment(self, amount: int = 1) -> None:
        await self._tracker.increment(amount)

    async def set_message(self, message: str | None) -> None:
        await self._tracker.set_message(message)
