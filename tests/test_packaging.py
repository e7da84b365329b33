"""Packaging: the sdist and the wheel carry what they should, and the declared lowest versions of
the dependencies work (slow: it installs them into a fresh virtual environment from the index)."""

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import ca_plast

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# What a build must not see: a stale egg-info's SOURCES.txt would leak into the sdist, and
# virtual environments, results and caches are not part of the project.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "results", "site", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints")


def _copy_tree(dest: Path) -> Path:
    """A copy of the repository to build from: a build writes an egg-info (and a wheel build a
    build/ folder) into its source tree, and the repository must stay as it is."""
    shutil.copytree(ROOT, dest, ignore=NOT_SOURCE)
    return dest


def _build(hook: str, source: Path, out: Path) -> Path:
    """Run a hook of setuptools' PEP 517 backend in a subprocess; return the archive it wrote."""
    out.mkdir()
    code = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True)
    assert proc.returncode == 0, f"{hook} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out / proc.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The sdist, built from a copy of the repository by the build backend pyproject.toml names
    (the test extra installs it; an older setuptools fails here with what to install)."""
    backend = Requirement(PYPROJECT["build-system"]["requires"][0])
    try:
        installed = metadata.version(backend.name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed is None or installed not in backend.specifier:
        pytest.fail(f"building needs {backend} (pyproject.toml [build-system]); this environment has {installed}: "
                    f"pip install '{backend}' (or the package's test extra)")
    tmp = tmp_path_factory.mktemp("sdist")
    return _build("build_sdist", _copy_tree(tmp / "src"), tmp / "dist")


def test_sdist_carries_tests_notebooks_data_and_license(sdist):
    with tarfile.open(sdist) as archive:
        prefix = archive.getnames()[0].split("/")[0]  # ca_plast-<version>
        names = {name.removeprefix(prefix + "/") for name in archive.getnames()}
        pkg_info = archive.extractfile(f"{prefix}/PKG-INFO").read().decode()
    expected = {"LICENSE", "pyproject.toml", "MANIFEST.in", "ca_plast/py.typed",
                "tests/conftest.py", "tests/references.py"}
    for pattern in ["tests/test_*.py", "notebooks/*.ipynb", "ca_plast/data/*.csv", "fitting/data/*.csv"]:
        found = {path.relative_to(ROOT).as_posix() for path in ROOT.glob(pattern)}
        assert found, f"nothing in the repository matches {pattern}"
        expected |= found
    assert not expected - names, f"missing from {sdist.name}: {sorted(expected - names)}"
    assert f"\nVersion: {ca_plast.__version__}\n" in pkg_info


def test_wheel_installs_fitting_inside_ca_plast(sdist, tmp_path):
    """Built from the sdist, as pip does: `fitting/` becomes `ca_plast.fitting`, with its data."""
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (source,) = (tmp_path / "unpacked").iterdir()
    wheel = _build("build_wheel", source, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "ca_plast/fitting/__init__.py" in names and "ca_plast/py.typed" in names
    for csv in (ROOT / "fitting" / "data").glob("*.csv"):
        assert f"ca_plast/fitting/data/{csv.name}" in names
    assert not [name for name in names if name.startswith("fitting/")], "a top-level `fitting` package"
    dist_info = f"ca_plast-{ca_plast.__version__}.dist-info/"
    assert [name for name in names if name.startswith(dist_info) and name.endswith("/LICENSE")], (
        f"no LICENSE in {dist_info}: {sorted(n for n in names if n.startswith(dist_info))}"
    )


def lower_bounds(pyproject: dict) -> dict[str, str]:
    """`name: version` for every `name>=version` in [project] dependencies (a requirement with no
    lower bound, such as an excluded release, is left out)."""
    bounds = {}
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                bounds[requirement.name] = spec.version
    return bounds


# What "works" means: the command line computes, simulates and fits, and the packages import.
SMOKE = [
    ["python", "-c", "import ca_plast, ca_plast.fitting"],
    ["ca-plast", "stdp", "--preset", "DP"],
    ["ca-plast", "stdp", "--preset", "DP", "--method", "events", "--trials", "20"],
    ["ca-plast", "fit", "--dataset", "sjostrom2001", "--init", "DP", "--steps", "5", "--out", "fit"],
    ["ca-plast", "stc", "--help"],
]


@pytest.mark.slow
def test_lowest_declared_versions_work(tmp_path):
    """Every dependency at the lower bound pyproject.toml declares (pip's constraints, `name==low`):
    the project installs and the smoke commands run without a traceback (a few minutes; needs the
    package index)."""
    bounds = lower_bounds(PYPROJECT)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{name}=={low}\n" for name, low in bounds.items()))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["CA_PLAST_CACHE_DIR"] = str(tmp_path / "cache")  # compiled programs: a fresh cache, not the user's
    install = [str(bin_dir / "python"), "-m", "pip", "install", "--progress-bar", "off", "--only-binary=:all:",
               "--constraint", str(constraints), str(_copy_tree(tmp_path / "src"))]
    proc = subprocess.run(install, env=env, capture_output=True, text=True)
    pinned = ", ".join(f"{name}=={low}" for name, low in bounds.items())
    assert proc.returncode == 0, (
        f"installing at the lower bounds ({pinned}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )

    work = tmp_path / "work"  # not the source copy: `import ca_plast` must find the installed package
    work.mkdir()
    for argv in SMOKE:
        proc = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=work, env=env, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "Traceback" not in output, (
            f"`{' '.join(argv)}` with {pinned}: exit {proc.returncode}\n{output[-5000:]}"
        )
    assert (work / "fit" / "fit.json").is_file() and (work / "fit" / "fit.png").is_file()
