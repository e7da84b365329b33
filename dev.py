#!/usr/bin/env python3
"""Set-up and entry points that need nothing but python3.

    python3 dev.py fit     # the main job: fit a GB2012 rule to Sjostrom 2001 with profile likelihoods, report + plots in results/
    python3 dev.py test    # the test suite (what CI runs)
    python3 dev.py docs    # the documentation site, built strictly (warnings are errors) into site/
    python3 dev.py lint    # ruff (configured in pyproject.toml)
    python3 dev.py types   # pyright on ca_plast/ and fitting/ (configured in pyproject.toml)

Each command creates `.venv/` on first use and installs the package (editable) with its
test and documentation dependencies into it; later runs reuse it. Extra arguments are passed through (the
tests run on one worker per core, `-n auto`; `python3 dev.py test -n 0` runs them serially).
`fit` continues an interrupted main job (`--resume`: results/fit holds a checkpoint but no
fit.json) and otherwise replaces the previous one (`--force`), unless you give either.
"""

import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    spec = (ROOT / "pyproject.toml").stat().st_mtime
    if STAMP.exists() and STAMP.stat().st_mtime >= spec:
        return
    if not (BIN / "python").exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing ca_plast and its dependencies (first run only)", flush=True)
    for args in (["--upgrade", "pip"], ["-e", f"{ROOT}[test,docs]"]):
        done = subprocess.run([BIN / "python", "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"pip install {' '.join(args)} failed (exit {done.returncode})")
    STAMP.touch()


def main(argv: list[str]) -> int:
    commands = {
        "fit": [str(BIN / "ca-plast"), "fit", "--dataset", "sjostrom2001", "--init", "DP", "--out", "results/fit"],
        # One pytest worker per core (pytest-xdist): most tests are compile-bound and single-threaded.
        # Work stealing: a worker left idle takes tests queued for the other (the suite ends with
        # no long tail on one worker).
        "test": [str(BIN / "python"), "-m", "pytest", "-q", "-n", "auto", "--dist", "worksteal"],
        "docs": [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(ROOT / "site")],
        "lint": [str(BIN / "ruff"), "check", "ca_plast", "fitting", "tests", "benchmarks", "notebooks", "dev.py"],
        "types": [str(BIN / "pyright")],
    }
    if not argv or argv[0] not in commands:
        print(f"usage: python3 dev.py {{{'|'.join(commands)}}} [extra arguments]", file=sys.stderr)
        return 2
    extra = argv[1:]
    if argv[0] == "fit" and not {"--resume", "--force"} & set(extra):
        out = ROOT / "results" / "fit"
        interrupted = (out / "checkpoint.npz").exists() and not (out / "fit.json").exists()
        extra = ["--resume" if interrupted else "--force", *extra]
    ensure_venv()
    # Ctrl-C in a terminal reaches the command too (one process group); it saves what it has
    # and reports in one line, so this process ignores the signal and waits for its status.
    restore = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if os.name == "posix" else None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # mkdocs-material prints a notice about its end of life on every build; it is not a warning.
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        return subprocess.Popen(commands[argv[0]] + extra, cwd=ROOT, preexec_fn=restore, env=env).wait()
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
