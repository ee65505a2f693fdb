"""The `docket-nats` command, on Typer with Rich output.

Each group of subcommands lives in its own module with a `register(app)`
function; this module only assembles them, runs the chosen one and turns
errors into one red line and docket's exit codes (2: usage, 1: failure).
"""

from __future__ import annotations

from collections.abc import Sequence

import typer
from typer.exceptions import TyperException

from .._settings import InvalidSetting, InvalidSettingType
from . import (
    _clear as clear,
)
from . import (
    _dashboard as dashboard,
)
from . import (
    _dead_letters as dead_letters,
)
from . import (
    _server as server,
)
from . import (
    _snapshot as snapshot,
)
from . import (
    _strikes as strikes,
)
from . import (
    _tasks as tasks,
)
from . import (
    _version as version,
)
from . import (
    _watch as watch,
)
from . import (
    _worker as worker,
)
from . import (
    _workers as workers,
)
from ._common import CommandError
from ._output import error_line

PROGRAM = "docket-nats"

EXAMPLES = """\
Examples:

  docket-nats worker --tasks myapp.tasks:tasks --concurrency 20

  docket-nats snapshot --url nats://nats:4222 --docket orders

  docket-nats watch order-1234

  docket-nats workers ls --format json

  docket-nats dashboard --read-only
"""


def build_app() -> typer.Typer:
    app = typer.Typer(
        name=PROGRAM,
        help="Distributed background tasks on NATS JetStream, with docket's API.",
        epilog=EXAMPLES,
        add_completion=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["--help", "-h"]},
    )
    for module in (
        worker,
        server,
        tasks,
        dead_letters,
        strikes,
        snapshot,
        watch,
        workers,
        clear,
        dashboard,
        version,
    ):
        module.register(app)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status. A usage error exits (SystemExit 2)
    as a Click or argparse program does."""
    command = typer.main.get_command(build_app())
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name=PROGRAM,
            standalone_mode=False,
        )
    except typer.Abort:
        # As docket's (Click's) commands on Ctrl-C: "Aborted!" and status 1.
        error_line("Aborted!")
        return 1
    except CommandError as error:
        error_line(str(error), error.fix)
        if error.status == 2:
            raise SystemExit(2) from None
        return error.status
    except (InvalidSetting, InvalidSettingType) as error:  # e.g. --concurrency 0
        error_line(str(error), f"see '{PROGRAM} --help'")
        raise SystemExit(2) from None
    except TyperException as error:  # Click's usage errors: bad option, value, command
        status = error.exit_code
        context = getattr(error, "ctx", None)
        fix = f"see '{context.command_path} --help'" if context is not None else None
        error_line(error.format_message(), fix)
        raise SystemExit(status) from None
    return result if isinstance(result, int) else 0
