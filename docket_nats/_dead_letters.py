"""Reading the dead-letter stream: what workers parked because it can never run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.js.errors import NotFoundError

from ._wire import DeadLetter, decode_dead_letter

if TYPE_CHECKING:
    from ._context import DocketContext


async def list_dead_letters(docket: DocketContext, limit: int | None = None) -> list[DeadLetter]:
    """Oldest first, one stored message at a time (up to `limit`)."""
    js = docket.connection.js
    names = docket.names
    info = await js.stream_info(names.dead_stream)
    letters: list[DeadLetter] = []
    sequence = info.state.first_seq
    while sequence and sequence <= info.state.last_seq:
        if limit is not None and len(letters) >= limit:
            break
        try:
            message = await js.get_msg(
                names.dead_stream, seq=sequence, next=True, subject=names.dead_filter
            )
        except NotFoundError:
            break
        assert message.seq is not None
        letters.append(_letter(message.data, message.seq))
        sequence = message.seq + 1
    return letters


def _letter(data: bytes | None, sequence: int) -> DeadLetter:
    letter = decode_dead_letter(data or b"")
    letter.sequence = sequence
    return letter


async def read_dead_letter(docket: DocketContext, key: str) -> DeadLetter | None:
    """The letter parked under `key` (the newest, if parked more than once)."""
    try:
        message = await docket.connection.js.get_last_msg(
            docket.names.dead_stream, docket.names.dead(key)
        )
    except NotFoundError:
        return None
    assert message.seq is not None
    return _letter(message.data, message.seq)


async def purge_dead_letters(
    docket: DocketContext, key: str | None = None, up_to_sequence: int | None = None
) -> int:
    """Remove the letters of `key` (every letter when None), only those up to
    and including `up_to_sequence` when given (a `DeadLetter.sequence`: letters
    parked after it was read stay); returns how many."""
    names = docket.names
    subject = names.dead_filter if key is None else names.dead(key)
    before = None if up_to_sequence is None else up_to_sequence + 1
    return await docket.connection.purge(names.dead_stream, subject, before)
