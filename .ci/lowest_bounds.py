"""Prints pip constraints pinning every runtime dependency to its lower bound.

    python .ci/lowest_bounds.py > lowest.txt
    pip install -c lowest.txt -e '.[test]'

The bounds are read from pyproject.toml, so the versions CI tests are always the
ones the package declares (no second list to keep in step). A dependency with no
`>=` bound is an error: its lowest version would be untested. The runtime
dependencies and those of the extras users install to run something (PINNED_EXTRAS:
the dashboard) are pinned; the test and dev tools are not.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# "name[extras]>=1.2,<3 ; marker": the name and the version after ">=".
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")
LOWER_BOUND = re.compile(r">=\s*([^,;\s]+)")
PINNED_EXTRAS = ("dashboard",)


def main() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    dependencies: list[str] = list(project["dependencies"])
    for extra in PINNED_EXTRAS:
        dependencies += project["optional-dependencies"][extra]
    unbounded: list[str] = []
    for requirement in dependencies:
        parsed = REQUIREMENT.match(requirement)
        bound = LOWER_BOUND.search(parsed.group(2)) if parsed else None
        if parsed is None or bound is None:
            unbounded.append(requirement)
            continue
        print(f"{parsed.group(1)}=={bound.group(1)}")
    if unbounded:
        sys.exit(f"runtime dependencies without a '>=' lower bound: {unbounded}")


if __name__ == "__main__":
    main()
