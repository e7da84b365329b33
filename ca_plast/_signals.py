"""Ctrl-C on the command line: exit status 130 and one true line, whenever it comes.

While a command only computes (nothing of it written yet, nothing to save), Ctrl-C ends the
process at once: the line is printed and the process leaves without unwinding, so no
half-finished XLA call can crash at shutdown and no library frame can swallow the interrupt.
(Called in-process, `main(argv)` raises `Interrupted` instead, which it reports and turns into
status 130.)
While a command writes files or runs a fit that saves checkpoints (`Interrupts.raising`),
Ctrl-C raises KeyboardInterrupt instead, so that the writer removes its temporary file and the
fit saves its checkpoint; the command then reports what was saved. An interrupt swallowed on
the way (raised inside a callback or destructor, where Python only prints it) is still
recorded, and `Interrupts.check` raises it again.
"""

import contextlib
import os
import signal
import sys


class Interrupted(Exception):
    """Ctrl-C ended a command called in-process; the message says what was written."""


class Interrupts:
    """The SIGINT handler of one command (installed by `installed`).

    `message`: the line printed when Ctrl-C comes while only computing; `exit_process`:
    end the process at once (the console script) or raise `Interrupted` (in-process calls).
    """

    def __init__(self, message: str, *, exit_process: bool):
        self.message = message
        self.exit_process = exit_process
        self.requested = False
        self._raising = False

    def _handle(self, signum, frame):
        self.requested = True
        if self._raising:
            raise KeyboardInterrupt
        self.stop(self.message)

    def stop(self, message: str):
        """End the command with status 130 and `message` (see the class docstring)."""
        if self.exit_process:
            leave(message)
        raise Interrupted(message)

    @contextlib.contextmanager
    def installed(self):
        """Handle SIGINT with this object inside the block (the previous handler after it)."""
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def raising(self):
        """Inside the block Ctrl-C raises KeyboardInterrupt (cleanup and saving can run)."""
        before, self._raising = self._raising, True
        try:
            self.check()
            yield
        finally:
            self._raising = before

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C came and was swallowed on the way."""
        if self.requested:
            raise KeyboardInterrupt


def leave(message: str, status: int = 130) -> None:
    """Print `message` to stderr and end the process now with `status` (no unwinding)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(status)


def guard_console_start() -> None:
    """In the `ca-plast` console script, Ctrl-C while the package is still being imported (JAX
    takes a second or two) ends the process with status 130 and one line, no traceback.

    Called first thing by `ca_plast/__init__.py`; does nothing in any other program, or where
    SIGINT is no longer Python's default handler.
    """
    script = os.path.basename(getattr(sys, "argv", [""])[0] or "")
    if script not in ("ca-plast", "ca-plast.exe") or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: leave("ca-plast: interrupted; nothing written"))
    except ValueError:  # not the main thread
        pass
