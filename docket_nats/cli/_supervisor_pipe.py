"""A pool's worker processes stop when their supervisor dies, however it dies.

The supervisor opens a pipe, keeps its write end for as long as it lives and
never writes to it; each child gets the read end (its number in
`DOCKET_POOL_SUPERVISOR_FD`). When the supervisor exits, even by SIGKILL, the
kernel closes the write end and the child's end reads EOF: the child stops.

Why a pipe: prctl(PR_SET_PDEATHSIG) is Linux only and reaches only a direct
child (not one started through a wrapper such as `uv run`), and polling
getppid() costs a wake-up per interval and a delay; the pipe is portable, needs
no timer and is told at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

logger = logging.getLogger("docket_nats.cli")

PIPE_VARIABLE = "DOCKET_POOL_SUPERVISOR_FD"


class SupervisorPipe:
    """The supervisor's side: the pipe, open while the pool runs."""

    def __init__(self) -> None:
        # Both ends are non-inheritable (os.pipe's default): a child gets the
        # read end only through `pass_fds`, and never the write end.
        self.read_end, self._write_end = os.pipe()

    def environment(self) -> dict[str, str]:
        return {PIPE_VARIABLE: str(self.read_end)}

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self._write_end)


class SupervisorWatch:
    """A child's side: calls `on_gone` once, when the supervisor is gone."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self.gone = False

    @classmethod
    def from_environment(cls) -> SupervisorWatch | None:
        """The watch of a pool's child; None in a process started otherwise.
        The variable is taken out, so a process this one starts inherits nothing."""
        text = os.environ.pop(PIPE_VARIABLE, None)
        return None if not text else cls(int(text))

    def start(self, on_gone: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                if os.read(self._descriptor, 1):
                    return  # the supervisor never writes; nothing to do
            except BlockingIOError:
                return
            except OSError:
                pass  # a broken end means the same: the supervisor is gone
            loop.remove_reader(self._descriptor)
            os.close(self._descriptor)
            self.gone = True
            logger.warning("the pool's supervisor is gone: worker process %d stops", os.getpid())
            on_gone()

        # Already closed (the supervisor died while this process started): the
        # reader fires at once.
        loop.add_reader(self._descriptor, readable)
