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
        letters.append(decode_dead_letter(message.data or b""))
        assert message.seq is not None
        sequence = message.seq + 1
    return letters
