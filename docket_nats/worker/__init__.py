"""The worker: supervised actors that pull, run and acknowledge tasks."""

from ._worker import Worker

__all__ = ["Worker"]
