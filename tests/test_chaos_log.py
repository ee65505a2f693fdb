"""deploy/chaos.py's run-log check finds two runs of a key at once, and only those."""

from __future__ import annotations

from pathlib import Path

from deploy.chaos import read_log


def check(tmp_path: Path, lines: list[str]) -> list[str]:
    log = tmp_path / "runs.log"
    log.write_text("\n".join(lines) + "\n")
    return read_log(log).overlaps()


def test_runs_one_after_another_do_not_overlap(tmp_path: Path) -> None:
    lines = [
        "start hold-1 100 10.0",
        "end hold-1 100 12.5 cancelled",  # fenced
        "start hold-1 200 13.0",  # redelivered elsewhere after the fence
        "end hold-1 200 14.0 done",
        "start hold-2 100 10.0",
        "killed 100 11.0",  # its run ends with the kill
        "start hold-2 300 14.0",
        "end hold-2 300 15.0 done",
    ]
    assert check(tmp_path, lines) == []


def test_a_second_copy_while_the_first_runs_is_found(tmp_path: Path) -> None:
    lines = [
        "start hold-1 100 10.0",
        "start hold-1 200 13.0",  # the first copy is still running
        "end hold-1 200 14.0 done",
        "end hold-1 100 15.0 done",
        "start hold-2 100 10.0",  # never ended, never killed: open for ever
        "start hold-2 300 20.0",
        "end hold-2 300 21.0 done",
    ]
    assert sorted(check(tmp_path, lines)) == ["hold-1", "hold-2"]


def test_lost_runs_and_outcomes_are_read(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    log.write_text(
        "start hold-1 100 10.0\nend hold-1 100 12.0 cancelled\n"
        "start hold-2 100 10.0\nend hold-2 100 11.0 done\nimmediate 7 1.0\n"
    )
    seen = read_log(log)
    assert seen.finished == {"hold-2"}  # hold-1 never ran to its end
    assert seen.fenced_or_stopped == 1
    assert seen.immediates[7] == 1
