"""`Docket.retry_failed`: a run that FAILED for good is added again with its call."""

from __future__ import annotations

import pytest

from docket_nats import Docket, Worker
from docket_nats._state_records import CALL_LIMIT, read_record

calls: list[str] = []
failing = {"now": True}


async def parcel(label: str, weight: int = 1) -> None:
    calls.append(f"{label}:{weight}")
    if failing["now"]:
        raise RuntimeError(f"{label} did not fit")


async def test_a_failed_run_is_retried_with_its_original_arguments(
    docket: Docket, worker: Worker
) -> None:
    calls.clear()
    failing["now"] = True
    await docket.add(parcel, key="f-1")("box", weight=3)
    await worker.run_until_finished()
    failed = await docket.get_execution("f-1")
    assert failed is not None and failed.state.value == "failed"

    failing["now"] = False
    again = await docket.retry_failed("f-1")
    assert again.disposition.value == "scheduled" and again.attempt == 1
    assert (again.args, again.kwargs) == (("box",), {"weight": 3})
    await worker.run_until_finished()
    assert calls == ["box:3", "box:3"]
    done = await docket.get_execution("f-1")
    assert done is not None and done.state.value == "completed"

    # Completed now, so nothing failed is left to retry; nor is an unknown key.
    with pytest.raises(LookupError, match="f-1"):
        await docket.retry_failed("f-1")
    with pytest.raises(LookupError, match="nobody"):
        await docket.retry_failed("nobody")


async def test_only_failures_keep_their_call_and_only_up_to_the_limit(
    docket: Docket, worker: Worker
) -> None:
    failing["now"] = False
    await docket.add(parcel, key="f-ok")("bag")
    failing_big = "x" * (CALL_LIMIT + 1)
    await worker.run_until_finished()
    completed = await read_record(docket.context, "f-ok")
    assert completed is not None and completed.state == "completed"
    assert completed.call is None  # the success path keeps nothing

    failing["now"] = True
    await docket.add(parcel, key="f-big")(failing_big)
    await worker.run_until_finished()
    record = await read_record(docket.context, "f-big")
    assert record is not None and record.state == "failed"
    assert record.call is None and record.call_problem is not None
    assert "too large" in record.call_problem
    with pytest.raises(ValueError, match="too large"):
        await docket.retry_failed("f-big")
