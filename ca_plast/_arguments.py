"""What every `ca-plast` command checks the same way: usage errors, seeds, output paths, sizes."""

import argparse

from ._limits import MAX_SEED, check_memory
from ._output import Target, output_target, plot_formats, write_output
from ._signals import Interrupts


class UsageError(Exception):
    """A bad argument: reported on stderr with exit status 2."""


def seed(text: str) -> int:
    """argparse type of `--seed`: a whole number from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, got {text!r}")
    return value


SEED_HELP = f"seed of the random numbers, 0 to {MAX_SEED} (default 0)"


def output(text: str | None, option: str, *, plot: bool = False) -> Target | None:
    """The checked target of `option` (None where not given); a plot needs a known image extension."""
    if text is None:
        return None
    try:
        return output_target(text, option, formats=plot_formats() if plot else None, stdout=not plot)
    except ValueError as error:
        raise UsageError(str(error)) from None


def memory(n_bytes: float, what: str, change: str) -> None:
    """UsageError if a run of `n_bytes` would not fit in memory (`check_memory`)."""
    try:
        check_memory(n_bytes, what, change)
    except ValueError as error:
        raise UsageError(str(error)) from None


def write_outputs(interrupts: Interrupts, command: str, outputs: list[tuple[Target, bytes | None]]) -> None:
    """Write each `(target, content)` (a None content is skipped). Ctrl-C meanwhile ends the
    process with one line naming what was written (the file being written keeps its old content)."""
    written = []
    try:
        with interrupts.raising():
            for target, content in outputs:
                if content is not None:
                    write_output(target, content)
                    written.append("standard output" if target.kind == "stdout" else target.given)
    except KeyboardInterrupt:
        interrupts.stop(f"{command}: interrupted; " + (f"wrote {', '.join(written)} only" if written else "nothing written"))
