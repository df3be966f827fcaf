"""How a script runs: the one user-error type, the one way it is reported, the command line as run."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A problem with the user's arguments or data: reported as one line, without a traceback."""


class Laps:
    """Where a script's time goes: `laps("name")` adds the seconds since the previous lap (or the
    start) to `laps.seconds["name"]`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 2)
        self._last = now


def first_line(error: BaseException | str, limit: int | None = None) -> str:
    """The first line of an error's message ('' for an empty one), cut to `limit` characters."""
    lines = str(error).splitlines()
    line = lines[0] if lines else ""
    return line if limit is None else line[:limit]


def run_script(main: Callable[[], object], *errors: type[BaseException]) -> None:
    """Run a script's `main()`; a `UserError` (or one of `errors`) becomes one line on stderr, exit 2."""
    try:
        main()
    except (UserError, *errors) as error:
        print(f"error: {first_line(error) or type(error).__name__}", file=sys.stderr)
        sys.exit(2)


def command_line(
    script: str, argv: Sequence[str] | None, num_processes: int = 1, environ=os.environ
) -> str:
    """The command that started this run, for its model card: `accelerate launch` when accelerate's
    launcher started it (its environment, or several processes), `python` otherwise."""
    args = " ".join(map(str, sys.argv[1:] if argv is None else argv))
    if num_processes > 1:
        launcher = f"accelerate launch --num_processes {num_processes}"
    elif "ACCELERATE_DYNAMO_BACKEND" in environ:  # set by both of accelerate launch's launchers
        launcher = "accelerate launch"
    else:
        launcher = "python"
    return f"{launcher} {script} {args}".rstrip()
