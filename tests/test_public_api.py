"""docket's public names import from docket_nats the same way (the one-import switch)."""

from __future__ import annotations

import importlib

import pytest

import docket_nats

# What `from docket import ...` offers at the top level (docket's __all__).
DOCKET_TOP_LEVEL = [
    "Agenda",
    "CallArgument",
    "ConcurrencyLimit",
    "CurrentDocket",
    "CurrentExecution",
    "CurrentWorker",
    "CycleError",
    "Depends",
    "Docket",
    "Execution",
    "ExecutionCancelled",
    "ExecutionState",
    "ExponentialRetry",
    "Logged",
    "Perpetual",
    "Progress",
    "Retry",
    "Shared",
    "StrikeList",
    "TaskArgument",
    "TaskKey",
    "TaskLogger",
    "Timeout",
    "Worker",
    "__version__",
    "testing",
]

# Submodules docket code imports from, with a name each must provide.
DOCKET_SUBMODULES = {
    "dependencies": [
        "Depends",
        "Shared",
        "Retry",
        "Dependency",
        "current_execution",
        # docket's dependency machinery (issue #12).
        "TaskLogger",
        "format_duration",
        "get_single_dependency_parameter_of_type",
        "get_single_dependency_of_type",
        "resolved_dependencies",
        "SharedContext",
        "TaskOutcome",
        "Runtime",
        "FailureHandler",
        "CompletionHandler",
        "CallArgument",
        "CycleError",
        "FailedDependency",
        "get_annotation_dependencies",
        "get_dependency_parameters",
        "validate_dependencies",
    ],
    "execution": [
        "Execution",
        "ExecutionState",
        "StateEvent",
        "ProgressEvent",
        "ExecutionProgress",
        "compact_signature",
        "get_signature",
        "TaskFunction",
    ],
    "annotations": ["Logged"],
    "tasks": ["trace", "fail", "sleep"],
    "testing": ["assert_task_scheduled", "assert_no_tasks"],
    "agenda": ["Agenda"],
    "strikelist": ["Strike", "Restore", "Operator", "StrikeList"],
    "worker": ["Worker"],
    "docket": ["Docket"],
}


@pytest.mark.parametrize("name", DOCKET_TOP_LEVEL)
def test_top_level_name(name: str) -> None:
    assert hasattr(docket_nats, name), f"docket_nats.{name} is missing"
    if name != "__version__":
        assert name in docket_nats.__all__


@pytest.mark.parametrize("module", sorted(DOCKET_SUBMODULES))
def test_submodule_names(module: str) -> None:
    imported = importlib.import_module(f"docket_nats.{module}")
    missing = [name for name in DOCKET_SUBMODULES[module] if not hasattr(imported, name)]
    assert not missing, f"docket_nats.{module} lacks {missing}"


def test_dependency_is_uncalled_fors() -> None:
    """A dependency written for docket (on uncalled-for's base class) works here."""
    import uncalled_for

    from docket_nats import dependencies

    assert dependencies.Dependency is uncalled_for.Dependency
    assert dependencies.CallArgument is uncalled_for.CallArgument
    assert dependencies.CycleError is uncalled_for.CycleError
    assert dependencies.SharedContext is uncalled_for.SharedContext
    assert docket_nats.CallArgument is uncalled_for.CallArgument
    assert docket_nats.CycleError is uncalled_for.CycleError
