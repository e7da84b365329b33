"""What every `ca-plast` command shares: help layout, cache options, usage errors, seeds, output paths, sizes."""

import argparse
from pathlib import Path

from ._cache import ENVIRONMENT, default_folder, enable_compilation_cache, user_cache_folder
from ._limits import MAX_SEED, check_memory
from ._output import Target, output_target, plot_formats, write_output
from ._signals import Interrupts


class UsageError(Exception):
    """A bad argument: reported on stderr with exit status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option's default in its help (unless the help says it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def cache_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the persistent compilation cache, shared by every sub-command."""
    group = parser.add_argument_group("compilation cache")
    group.add_argument("--cache-dir", default=None, metavar="DIR",
                       help=f"keep compiled programs here, so that later runs start faster (default: ${ENVIRONMENT} "
                            f"if set, else {_home_relative(user_cache_folder())})")
    group.add_argument("--no-cache", action="store_true", help="compile everything anew; read and write no cache")


def _home_relative(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def use_cache(args: argparse.Namespace) -> Path | None:
    """Turn on the compilation cache as `cache_arguments` asked and return its folder (None: no
    cache). A folder the user named must be usable (UsageError otherwise); the default one is
    skipped silently when it is not."""
    if args.no_cache:
        return None
    folder = default_folder() if args.cache_dir is None else Path(args.cache_dir).expanduser()
    if enable_compilation_cache(folder):
        return folder
    if args.cache_dir is not None:
        raise UsageError(f"--cache-dir {args.cache_dir!r}: cannot create or write that folder")
    return None


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


def write_outputs(interrupts: Interrupts, command: str, outputs: list[tuple[Target | None, bytes | None]]) -> None:
    """Write each `(target, content)` (a None target or content is skipped). Ctrl-C meanwhile ends the
    process with one line naming what was written (the file being written keeps its old content)."""
    written = []
    try:
        with interrupts.raising():
            for target, content in outputs:
                if target is not None and content is not None:
                    write_output(target, content)
                    written.append("standard output" if target.kind == "stdout" else target.given)
    except KeyboardInterrupt:
        interrupts.stop(f"{command}: interrupted; " + (f"wrote {', '.join(written)} only" if written else "nothing written"))
