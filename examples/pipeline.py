"""A pipeline: fan out over documents, fan in to one report, then publish it.

`docket.chain` runs the steps one after another; the middle step is a group (its
tasks run in parallel, on any workers), and each step after the first receives
the outcomes of the one before as `outcomes`, in order. The report runs exactly
once, after every count has ended, even if a worker dies on the way
(docs/architecture.md, "Groups").
"""

from __future__ import annotations

import logging

from docket_nats import Docket, MemberOutcome

logger = logging.getLogger("examples.pipeline")

DOCUMENTS = {
    "a.txt": "the quick brown fox",
    "b.txt": "jumps over the lazy dog",
    "c.txt": "and runs away",
    "missing.txt": None,
}

reports: list[str] = []


async def list_documents() -> list[str]:
    return sorted(DOCUMENTS)


async def count_words(position: int, outcomes: list[MemberOutcome]) -> int:
    name = outcomes[0].result[position]
    text = DOCUMENTS[name]
    if text is None:
        raise FileNotFoundError(name)
    return len(text.split())


async def report(outcomes: list[MemberOutcome]) -> str:
    counted = [outcome.result for outcome in outcomes if outcome.ok]
    failed = [outcome.error for outcome in outcomes if not outcome.ok]
    summary = f"{sum(counted)} words in {len(counted)} documents; failed: {failed}"
    logger.info("report: %s", summary)
    return summary


async def publish(outcomes: list[MemberOutcome]) -> None:
    reports.append(outcomes[0].result)


tasks = [list_documents, count_words, report, publish]


async def start(docket: Docket) -> None:
    """Add the whole pipeline at once; the workers do the rest."""
    await docket.chain(
        docket.call(list_documents)(),
        [docket.call(count_words)(position) for position in range(len(DOCUMENTS))],
        docket.call(report)(),
        docket.call(publish)(),
    )
