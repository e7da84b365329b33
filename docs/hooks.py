"""MkDocs hooks of the ca_plast documentation (loaded by mkdocs.yml `hooks:`).

1. API reference: `ca_plast.fitting` lives in the source folder `fitting/` and is mapped into
   the package by pyproject.toml (`package-dir`), which static analysis (griffe) cannot follow.
   Before the build, the sources of `ca_plast/` and `fitting/` are copied into a temporary tree
   `ca_plast/` + `ca_plast/fitting/`, and mkdocstrings reads them from there. The API pages must
   name every public name of `ca_plast` and `ca_plast.fitting` (the `X as X` imports of their
   `__init__.py`); a missing one is a warning, so `mkdocs build --strict` fails on it.
2. Notebooks: `notebooks/*.ipynb` (outside `docs/`) become the pages `notebooks/NAME/`,
   rendered by mkdocs-jupyter from their stored outputs.
3. Generated text: a line `<!-- ca-plast-help: ARGS -->` in a page is replaced by the output of
   `python -m ca_plast._cli ARGS --help`, `<!-- ca-plast-presets -->` by a table of the GB2012
   presets as `ca_plast.gb2012_preset` returns them, `<!-- ca-plast-datasets -->` by a table of
   the shipped data sets from `fitting.load_dataset`; all run at build time with the interpreter
   that runs MkDocs, so the text is always the installed package's own.
4. Offline: nothing may be loaded from the network. nbconvert's MathJax and Mermaid loaders
   (CDN URLs; the notebooks use neither) are removed from the notebook pages, and any page that
   still refers to a remote script, stylesheet, font or image fails the build.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.ca_plast")

ROOT = Path(__file__).resolve().parent.parent
HELP_COLUMNS = "90"  # argparse wraps at COLUMNS - 2: fits the content column without scrolling
API_PAGES = ("api/",)
PUBLIC_PACKAGES = {"ca_plast": ROOT / "ca_plast" / "__init__.py", "ca_plast.fitting": ROOT / "fitting" / "__init__.py"}

_state: dict = {"tmp": None, "generated": {}}


# -- 1. sources for mkdocstrings -------------------------------------------------------------------


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "ca_plast", dest / "ca_plast", ignore=ignore)
    shutil.copytree(ROOT / "fitting", dest / "ca_plast" / "fitting", ignore=ignore)


@event_priority(100)
def on_config(config):
    if _state["tmp"] is not None:
        _state["tmp"].cleanup()
    _state["tmp"] = tempfile.TemporaryDirectory(prefix="ca_plast_docs_")
    src = Path(_state["tmp"].name)
    _copy_sources(src)
    handlers = config.plugins["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [str(src)]
    _state["generated"] = {}
    return config


def on_shutdown():
    if _state["tmp"] is not None:
        _state["tmp"].cleanup()
        _state["tmp"] = None


def _public_names(init: Path) -> set[str]:
    """Names an `__init__.py` re-exports explicitly (`from .x import name as name`), as griffe does,
    including those declared under `if TYPE_CHECKING:` and loaded on first use."""
    names = set()
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname for a in node.names if a.asname and a.asname == a.name and not a.name.startswith("_")}
    return names


# -- 2. notebooks ------------------------------------------------------------------------------------


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps the .ipynb files it finds
def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


# -- 3. generated text: command-line help, preset and data-set tables -------------------------------

# A line `<!-- ca-plast-KIND: ARGS -->` (ARGS for `help` only) is replaced by the output of a
# Python command run with the interpreter that runs MkDocs.
GENERATED = re.compile(r"^<!-- ca-plast-(?P<kind>help|presets|datasets)(?::(?P<args>[^>]*))? -->[ \t]*$", re.MULTILINE)

_PRESET_TABLE = """
import ca_plast as cp
rules = {name: cp.gb2012_preset(name) for name in cp.GB2012_PRESETS}
tables = (
    ("calcium and readout", ["tau_ca (ms)", "C_pre", "C_post", "D (ms)", "beta", "b"],
     lambda r: [r.calcium.tau_ca, r.calcium.C_pre, r.calcium.C_post, r.calcium.D, r.beta, r.b]),
    ("efficacy", ["theta_d", "theta_p", "gamma_d", "gamma_p", "sigma", "tau (ms)", "rho_star"],
     lambda r: [r.theta_d, r.theta_p, r.gamma_d, r.gamma_p, r.sigma, r.tau, r.rho_star]),
)
for i, (what, columns, values) in enumerate(tables):
    if i:
        print()
    print(f"| preset ({what}) | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name, rule in rules.items():
        print(f"| `{name}` | " + " | ".join(f"{float(v):.6g}" for v in values(rule)) + " |")
"""

_DATASET_TABLE = """
from ca_plast import fitting
cell = lambda text: str(text).replace("|", "\\\\|").replace("\\n", " ")
print("| data set | points | modellings (first: default) | published set fit to it | protocols (default modelling) |")
print("| --- | ---: | --- | --- | --- |")
for name in fitting.DATASETS:
    d = fitting.load_dataset(name)
    note = "its parts' default modellings" if "|" in d.modelling_note else d.modelling_note
    reference = f"`{d.reference}`" if d.reference else "none"
    modellings = ", ".join(f"`{m}`" for m in fitting.modellings(name))
    print(f"| `{name}` | {d.n_points} | {modellings} | {reference} | {cell(note)} |")
"""

# One Python process serves every request (importing JAX dominates the cost): each `help` is
# `python -m ca_plast._cli ARGS --help` run in it with `runpy`, each table its script above.
_GENERATOR = """
import contextlib, io, json, runpy, sys
tables = json.loads(sys.argv[1])
out = {}
for key, args in json.loads(sys.argv[2]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        if key == "help":
            sys.argv = ["ca-plast", *args.split(), "--help"]
            try:
                runpy.run_module("ca_plast._cli", run_name="__main__")
            except SystemExit as done:
                if done.code not in (0, None):
                    raise
        else:
            exec(tables[key], {})
    out[key + ":" + args] = text.getvalue().rstrip()
print(json.dumps(out))
"""


def _key(match: re.Match) -> tuple[str, str]:
    return match.group("kind"), (match.group("args") or "").strip()


def on_pre_build(config):
    """Generate every text the pages ask for, in one Python process."""
    keys = set()
    for page in Path(config["docs_dir"]).rglob("*.md"):
        keys |= {_key(m) for m in GENERATED.finditer(page.read_text(encoding="utf-8"))}
    tables = {"presets": _PRESET_TABLE, "datasets": _DATASET_TABLE}
    env = {**os.environ, "COLUMNS": HELP_COLUMNS, "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-c", _GENERATOR, json.dumps(tables), json.dumps(sorted(keys))]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if proc.returncode != 0:
        raise PluginError(f"generating the help texts and tables failed: {proc.stderr.strip()[-3000:]}")
    out = json.loads(proc.stdout.splitlines()[-1])
    _state["generated"] = {(kind, args): out[f"{kind}:{args}"] for kind, args in keys}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        text = _state["generated"][_key(match)]
        return f"```text\n{text}\n```" if match.group("kind") == "help" else text

    markdown = GENERATED.sub(replace, markdown)
    if page.file.src_uri.startswith(API_PAGES):
        _state.setdefault("documented", set()).update(re.findall(r"^::: *([\w.]+)", markdown, re.MULTILINE))
    return markdown


def on_env(env, config, files):
    documented = _state.pop("documented", set())
    for package, init in PUBLIC_PACKAGES.items():
        missing = sorted(n for n in _public_names(init) if f"{package}.{n}" not in documented)
        if missing:
            log.warning(f"API reference: public names of {package} on no page under docs/api/: {', '.join(missing)}")
    return env


# -- 4. offline --------------------------------------------------------------------------------------

_NBCONVERT_LOADERS = (
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL),
    re.compile(r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded", async \(\) => \{\s*'
               r'const diagrams = document\.querySelectorAll\("\.jp-Mermaid.*?</script>', re.DOTALL),
)
_REMOTE = re.compile(
    r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^>]*>"""
    r"""|@import\s+(?:url\()?["']?(?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//"""
    r"""|import\(\s*["'](?:https?:)?//""",
    re.IGNORECASE,
)


def on_post_page(output: str, page, config) -> str:
    if page.file.src_uri.startswith("notebooks/"):
        for loader in _NBCONVERT_LOADERS:
            output = loader.sub("", output)
    for match in _REMOTE.finditer(output):
        tag = match.group(0)
        if tag.lower().startswith("<link") and not re.search(r'rel=["\']?(?:stylesheet|preload|modulepreload|icon)', tag):
            continue  # plain links (rel=canonical, ...) load nothing
        raise PluginError(f"{page.file.src_uri}: the page would load from the network: {tag[:200]}")
    return output
