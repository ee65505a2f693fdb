"""Checks what the built wheel and sdist contain (run by .ci/run).

    python .ci/check_dist.py DIST_DIRECTORY

The wheel must carry every module of the checkout's docket_nats package, its
py.typed marker (type checkers read the package's own annotations only when it
is there) and the embedded server's nats.conf, plus the console script and the
pytest plugin entry point; and nothing else at its top level (no tests,
benchmarks, examples or deploy files). The sdist must carry what building the
wheel from it needs. Every problem is listed before exiting non-zero.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
PACKAGE = "docket_nats"
# Files that are not Python modules but must ship inside the package.
# The dashboard's script and style sheet are served from the package itself.
PACKAGE_DATA = (
    "py.typed",
    "nats.conf",
    "dashboard/static/dashboard.js",
    "dashboard/static/dashboard.css",
)
ENTRY_POINTS = ("docket-nats = docket_nats.cli:main", "docket_nats = docket_nats.pytest_plugin")
SDIST_FILES = ("pyproject.toml", "README.md", "nats.conf", f"{PACKAGE}/py.typed")


def only(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        sys.exit(f"expected exactly one {pattern} in {directory}, found {found}")
    return found[0]


def checkout_modules() -> set[str]:
    return {
        path.relative_to(CHECKOUT).as_posix()
        for path in (CHECKOUT / PACKAGE).rglob("*.py")
        if "__pycache__" not in path.parts
    }


def wheel_problems(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            (archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")),
            "",
        )
    problems = [f"missing {module}" for module in sorted(checkout_modules() - names)]
    data_files = (f"{PACKAGE}/{data}" for data in PACKAGE_DATA)
    problems += [f"missing {data_file}" for data_file in data_files if data_file not in names]
    problems += [f"no entry point '{line}'" for line in ENTRY_POINTS if line not in entry_points]
    top_level = {name.split("/", 1)[0] for name in names}
    problems += [
        f"unexpected top-level entry {entry}"
        for entry in sorted(top_level)
        if entry != PACKAGE and not entry.endswith(".dist-info")
    ]
    return problems


def sdist_problems(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        # Members are under one directory named after the sdist (name-version/).
        names = {member.name.split("/", 1)[-1] for member in archive.getmembers()}
    return [f"sdist lacks {name}" for name in SDIST_FILES if name not in names]


def main() -> None:
    dist = Path(sys.argv[1])
    wheel, sdist = only(dist, "*.whl"), only(dist, "*.tar.gz")
    problems = wheel_problems(wheel) + sdist_problems(sdist)
    for problem in problems:
        print(f"dist check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"dist check: {wheel.name} and {sdist.name} carry what they must")


if __name__ == "__main__":
    main()
