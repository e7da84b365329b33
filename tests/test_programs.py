"""Stored programs (`ca_plast._programs`): a later process runs the stored executable without
compiling and gets the same numbers as the plain `eqx.filter_jit` path; damaged, foreign or
unstorable entries fall back to compiling; parameters become arrays as `jnp.asarray` makes them."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ca_plast as cp
from ca_plast import _programs
from ca_plast._fields import to_array
from ca_plast._programs import seed_key, stored_jit, storing_programs
from ca_plast._validation import set_run_time_checks

# One process of the command line's kind: JAX's cache and the stored programs in FOLDER, a small
# event-driven STDP batch; prints its numbers and how many programs it compiled for storing.
WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    import ca_plast as cp
    from ca_plast import _programs
    from ca_plast._cache import enable_compilation_cache
    from ca_plast._validation import set_run_time_checks

    folder = Path(sys.argv[1])
    set_run_time_checks(False)
    assert enable_compilation_cache(folder)
    compiled = []
    original = _programs._compile
    _programs._compile = lambda fn, *args: compiled.append(fn.__qualname__) or original(fn, *args)
    with _programs.storing_programs(folder):
        protocols = [cp.pairs(dt, 3, 5.0) for dt in (-20.0, 10.0, 30.0)]
        ratio, sem = cp.stdp_ratios(cp.gb2012_preset("DP"), protocols, method="events", n_synapses=8,
                                    key=_programs.seed_key(7))
    print(json.dumps({"ratio": ratio.tolist(), "sem": sem.tolist(), "compiled": compiled}))
""")


def _worker(folder) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run([sys.executable, "-c", WORKER, str(folder)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _plain_numbers() -> dict:
    """The worker's numbers without any cache or stored program (float32, as in the worker)."""
    code = WORKER.replace("assert enable_compilation_cache(folder)", "").replace(
        "_programs.storing_programs(folder)", "_programs.storing_programs(None)")
    proc = subprocess.run([sys.executable, "-c", code, "unused"], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_later_process_runs_the_stored_program(tmp_path):
    """First process: compiles and stores its three programs (key, protocol keys, events batch). Second: compiles
    nothing. Both give exactly what the plain jit path gives. With JAX's cache full but the
    stored programs deleted, a third process stores them again (from a fresh compilation: an
    executable loaded from JAX's cache cannot be stored whole) and a fourth runs them."""
    plain = _plain_numbers()
    first = _worker(tmp_path)
    assert sorted(first["compiled"]) == ["_batched_ratio", "_key", "_protocol_keys"]
    entries = sorted(p.name for p in (tmp_path / "programs").iterdir())
    assert len(entries) == 3 and all(e.endswith(".ca-plast-program") for e in entries)
    second = _worker(tmp_path)
    assert second["compiled"] == []
    for run in (first, second):
        assert run["ratio"] == plain["ratio"] and run["sem"] == plain["sem"]
    for entry in (tmp_path / "programs").iterdir():
        entry.unlink()
    third = _worker(tmp_path)
    fourth = _worker(tmp_path)
    assert sorted(third["compiled"]) == ["_batched_ratio", "_key", "_protocol_keys"] and fourth["compiled"] == []
    assert third["ratio"] == fourth["ratio"] == plain["ratio"]


@stored_jit
def _affine(x, scale, offset):
    return (x * scale + offset,)


@stored_jit
def _as_module(x):
    return cp.DensityGrid(), x


def _entries(folder):
    return sorted((folder / "programs").glob("*.ca-plast-program"))


def test_entries_depend_on_fixed_values_shapes_and_checks(tmp_path):
    """Each fixed value, shape and run-time-check setting has its own entry; a second call in
    the same process reuses it; the numbers are the plain path's."""
    x = jnp.arange(3.0)
    with storing_programs(tmp_path):
        a = _affine(x, 2.0, 1.0)
        _affine(x, 2.0, 1.0)
        assert len(_entries(tmp_path)) == 1
        b = _affine(x, 3.0, 1.0)  # a fixed (Python) value
        c = _affine(jnp.arange(4.0), 2.0, 1.0)  # another shape
        d = _affine(x, jnp.asarray(5.0), 1.0)  # an array: an input of the program
        e = _affine(x, jnp.asarray(6.0), 1.0)  # same program, other input
        assert len(_entries(tmp_path)) == 4
        previous = set_run_time_checks(True)
        try:
            _affine(x, 2.0, 1.0)
        finally:
            set_run_time_checks(previous)
        assert len(_entries(tmp_path)) == 5
    np.testing.assert_array_equal(a[0], x * 2.0 + 1.0)
    np.testing.assert_array_equal(b[0], x * 3.0 + 1.0)
    np.testing.assert_array_equal(c[0], jnp.arange(4.0) * 2.0 + 1.0)
    np.testing.assert_array_equal(d[0], x * 5.0 + 1.0)
    np.testing.assert_array_equal(e[0], x * 6.0 + 1.0)


def test_damaged_and_foreign_entries_are_compiled_anew(tmp_path):
    x = jnp.arange(3.0)
    with storing_programs(tmp_path):
        _affine(x, 7.0, 0.5)
    (entry,) = _entries(tmp_path)
    for content in (b"", b"not a pickle", pickle.dumps(("payload", None, None))):
        entry.write_bytes(content)
        _affine_fresh = stored_jit(_affine.__wrapped__)  # a new in-process table: reads the file
        with storing_programs(tmp_path):
            (y,) = _affine_fresh(x, 7.0, 0.5)
        np.testing.assert_array_equal(y, x * 7.0 + 0.5)
        assert entry.stat().st_size > 1000  # replaced by a real program


def test_arguments_shown_by_address_and_unwritable_folders_store_nothing(tmp_path):
    """An object whose repr carries its address would never match again: not stored. A folder
    that cannot be written: the call runs, nothing is stored."""

    class Opaque:
        pass

    @stored_jit
    def with_object(x, obj):
        return (x + 1.0,)

    with storing_programs(tmp_path):
        (y,) = with_object(jnp.arange(2.0), Opaque())
    np.testing.assert_array_equal(y, jnp.arange(2.0) + 1.0)
    assert _entries(tmp_path) == []
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        (locked / "programs").mkdir(parents=True)
        (locked / "programs").chmod(0o500)
        with storing_programs(locked):
            (z,) = _affine(jnp.arange(2.0), 9.0, 0.0)
        np.testing.assert_array_equal(z, jnp.arange(2.0) * 9.0)
        assert _entries(locked) == []


def test_a_module_as_output_is_refused(tmp_path):
    """Equinox modules' tree structures do not survive storing (their unflattening breaks):
    a stored function must return plain containers, and says so."""
    with storing_programs(tmp_path), pytest.raises(TypeError, match="_as_module must return arrays in tuples"):
        _as_module(jnp.arange(2.0))


def test_storing_is_scoped_and_restores_jax_settings(tmp_path):
    minimum = jax.config.jax_persistent_cache_min_compile_time_secs
    assert _programs._folder is None
    with storing_programs(tmp_path):
        assert _programs._folder == tmp_path / "programs"
        with storing_programs(None):
            assert _programs._folder is None
        _affine(jnp.arange(2.0), 11.0, 0.0)
        assert _programs._folder == tmp_path / "programs"
    assert _programs._folder is None
    assert jax.config.jax_persistent_cache_min_compile_time_secs == minimum


@pytest.mark.parametrize("seed", [0, 1, 7, 2**31 + 5, 2**32 - 1])
def test_seed_key_is_jax_random_key(seed, tmp_path):
    expected = jax.random.key_data(jax.random.key(seed))
    np.testing.assert_array_equal(jax.random.key_data(seed_key(seed)), expected)
    with storing_programs(tmp_path):
        np.testing.assert_array_equal(jax.random.key_data(seed_key(seed)), expected)


@pytest.mark.parametrize("value", [1.3, 2, True, np.float64(1.5), np.float32(2.5), np.int64(3), np.array([1.0, 2.0]),
                                   np.array(1.0, np.float32), np.array([1, 2]), jnp.array(1.0), [1.0, 2.0], (1, 2)],
                         ids=repr)
def test_parameter_fields_are_what_jnp_asarray_makes(value):
    """`to_array` (the models' field converter) copies numbers to the device instead of compiling
    a conversion; dtype, weak type, shape and values are jnp.asarray's, also under jit."""
    expected, got = jnp.asarray(value), to_array(value)
    assert (got.dtype, got.weak_type, got.shape) == (expected.dtype, expected.weak_type, expected.shape)
    np.testing.assert_array_equal(got, expected)
    if not isinstance(value, (list, tuple)):
        traced = jax.jit(lambda v: (to_array(v), jnp.asarray(v)))(value)
        assert (traced[0].dtype, traced[0].weak_type) == (traced[1].dtype, traced[1].weak_type)
