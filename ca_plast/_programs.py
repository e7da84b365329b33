"""Compiled programs stored on disk whole, so that a later command neither traces nor compiles.

JAX's persistent compilation cache (`_cache.py`) skips only XLA's compilation: every run
still traces the Python solver and lowers it to a module to look the cache up, which for the
event solver takes longer than the simulation itself. `stored_jit` keeps the compiled
executable of a whole batched solver in the cache folder, next to JAX's entries, and a later
run with the same inputs loads and runs it directly.

An entry's name is a digest of everything the program depends on: the function, the source
of the installed ca_plast package, the versions of Python, JAX, jaxlib and NumPy, JAX's
configuration, the device and its processor, the shapes, dtypes and weak types of the array
arguments and the values of all the others (their `repr`). A call with an argument shown by
its address (which differs in every process) is not stored: it runs as `eqx.filter_jit`
does. An entry that cannot be read, loaded or run is compiled anew and replaced; one that
cannot be written is skipped. Loading runs code from the folder: like JAX's own cache, it
must be the user's own. A stored function must return arrays in tuples, lists or dicts.

Off outside `storing_programs` (the command line stores in its cache folder).
"""

import contextlib
import functools
import hashlib
import pickle
import platform
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxlib.version
import numpy as np

from ._custom_types import Key
from ._output import write_file
from ._validation import run_time_checks

_folder: Path | None = None
_SUFFIX = ".ca-plast-program"
SUBFOLDER = "programs"


@contextlib.contextmanager
def storing_programs(cache: Path | None) -> Iterator[None]:
    """Inside the block, `stored_jit` functions keep their programs in `cache`/programs (created
    if needed; nothing is stored when `cache` is None or that folder cannot be made)."""
    global _folder
    previous = _folder
    folder = None if cache is None else cache / SUBFOLDER
    try:
        if folder is not None:
            folder.mkdir(exist_ok=True)
    except OSError:
        folder = None
    _folder = folder
    try:
        yield
    finally:
        _folder = previous


@functools.cache
def _installation() -> str:
    """What a process cannot change: ca_plast's source, the versions, the device and processor."""
    package = Path(__file__).parent
    sources = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        sources.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    device = jax.devices()[0]
    return repr((sources.hexdigest(), sys.version, jax.__version__, jaxlib.version.__version__, np.__version__,
                 device.platform, device.device_kind, device.client.platform_version, platform.machine(),
                 _processor()))


def _settings() -> str:
    """What can change in a process and changes a program: JAX's configuration (and the 64-bit
    mode a context manager may set, which `jax.config.values` does not show), ca_plast's run-time checks."""
    return repr((sorted((name, repr(value)) for name, value in jax.config.values.items()),
                 str(jnp.result_type(float)), run_time_checks()))


def _processor() -> str:
    """The processor's model and features (a CPU program is compiled for them)."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _entry(fn: Callable, leaves: list, static: object) -> str | None:
    """The name of a program's entry; None when a fixed argument is shown by its address (it
    would never match again: storing it would only fill the folder)."""
    fixed = repr(static)
    if re.search(r" at 0x[0-9a-fA-F]+", fixed):
        return None
    arrays = [(x.shape, str(x.dtype), bool(getattr(x, "weak_type", False))) for x in leaves]
    text = repr((fn.__module__, fn.__qualname__, _installation(), _settings(), arrays, fixed))
    return hashlib.sha256(text.encode()).hexdigest()


def stored_jit(fn: Callable) -> Callable:
    """`eqx.filter_jit(fn)` whose compiled programs are kept in the `storing_programs` folder.

    Array leaves of the arguments are the program's inputs, everything else is fixed in it
    (as for `eqx.filter_jit`). The first call with new shapes or values compiles and stores
    the executable; later calls, in this process or the next, load it and run it.
    """
    jitted = eqx.filter_jit(fn)
    loaded: dict[str, jax.stages.Compiled] = {}

    @functools.wraps(fn)
    def call(*args):
        if _folder is None:
            return jitted(*args)
        dynamic, static = eqx.partition(args, eqx.is_array)
        leaves, treedef = jax.tree.flatten(dynamic)
        name = _entry(fn, leaves, (treedef, static))
        if name is None:
            return jitted(*args)
        path = _folder / (name + _SUFFIX)
        if name in loaded:
            return loaded[name](*leaves)
        program = _load(path)
        if program is not None:
            try:
                result = program(*leaves)
            except jax.errors.JaxRuntimeError:  # an entry that loads but cannot run here: replace it
                pass
            else:
                loaded[name] = program
                return result
        loaded[name] = program = _compile(fn, treedef, static, leaves, name)
        _store(path, program)
        return program(*leaves)

    return call


def _compile(fn: Callable, treedef, static, leaves: list, name: str) -> jax.stages.Compiled:
    """`fn` compiled for these arguments, afresh: an executable loaded from JAX's cache cannot
    be stored again whole, so the program has a name of its own and is not written there."""
    def flat(*xs):
        return fn(*eqx.combine(jax.tree.unflatten(treedef, xs), static))

    flat.__name__ = flat.__qualname__ = f"stored_{name[:16]}"
    minimum = jax.config.values["jax_persistent_cache_min_compile_time_secs"]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
    try:
        program = jax.jit(flat).lower(*leaves).compile()
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", minimum)
    if pickle.loads(pickle.dumps(program.out_tree)) != program.out_tree:
        raise TypeError(f"stored_jit: {fn.__qualname__} must return arrays in tuples, lists or dicts (a "
                        f"structure that can be stored), not {program.out_tree}")
    return program


def _load(path: Path) -> "jax.stages.Compiled | None":
    try:
        from jax.experimental.serialize_executable import deserialize_and_load

        payload, in_tree, out_tree = pickle.loads(path.read_bytes())
        return deserialize_and_load(payload, in_tree, out_tree)
    except FileNotFoundError:
        return None
    except Exception:  # a damaged or foreign entry: compile anew (and replace it)
        return None


def _store(path: Path, program: jax.stages.Compiled) -> None:
    try:
        from jax.experimental.serialize_executable import serialize

        write_file(path, pickle.dumps(serialize(program)))
    except Exception:  # not serialisable here, or the folder is full or read-only: run without storing
        pass


@stored_jit
def _key(seed: np.ndarray) -> Key:
    return jax.random.key(seed)


def seed_key(seed: int) -> Key:
    """`jax.random.key(seed)` for a seed from 0 to 2**32 - 1, through a stored program: the
    command line's keys, made without compiling when the program is stored."""
    return _key(np.asarray(seed, dtype=np.uint32))
