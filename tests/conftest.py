"""Test configuration: float64 for reference comparisons, strict promotion, seeded keys."""

import os
import random
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

from ca_plast._validation import set_run_time_checks  # noqa: E402

# Traced values are not checked at run time in this suite, except in the tests that ask for
# it (`run_time_checks`): the checks' host callbacks keep programs out of JAX's persistent
# cache, and without them the run's cache shares every compiled program between tests and
# workers. Concrete values are checked as always; the numbers computed are the same.
set_run_time_checks(False)


def pytest_configure(config):
    """One JAX compilation cache for the whole run, shared by the xdist workers (which inherit
    the environment) and removed at the end: many tests compile the same programs, and each
    compilation then happens once per run instead of once per test and worker. It starts
    empty, so every run, and CI's, compiles what it needs."""
    if "CA_PLAST_TEST_CACHE" not in os.environ:
        os.environ["CA_PLAST_TEST_CACHE"] = tempfile.mkdtemp(prefix="ca_plast_jax_cache_")
        config._ca_plast_cache_owner = True
    # The command line's own cache (ca-plast --cache-dir) goes to the same folder, never to the user's.
    os.environ["CA_PLAST_CACHE_DIR"] = os.environ["CA_PLAST_TEST_CACHE"]
    jax.config.update("jax_compilation_cache_dir", os.environ["CA_PLAST_TEST_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_unconfigure(config):
    if getattr(config, "_ca_plast_cache_owner", False):
        shutil.rmtree(os.environ.pop("CA_PLAST_TEST_CACHE"), ignore_errors=True)


@pytest.fixture
def run_time_checks():
    """Traced values are checked at run time inside the test, as for any user. JAX's in-memory
    caches are cleared before and after, so that no program traced without the checks is
    reused inside the test, and none traced with them outside it."""
    jax.clear_caches()
    previous = set_run_time_checks(True)
    yield
    set_run_time_checks(previous)
    jax.clear_caches()


@pytest.fixture
def getkey():
    """Return a function giving fresh PRNG keys; the seed is printed so failures reproduce.

    The seed is fixed (CI must be deterministic: statistical tests at 3 standard errors would
    otherwise fail now and then by design); set CA_PLAST_TEST_SEED to an integer, or to
    "random", to exercise other seeds.
    """
    choice = os.environ.get("CA_PLAST_TEST_SEED", "0")
    seed = random.randint(0, 2**31 - 1) if choice == "random" else int(choice)
    print(f"getkey seed: {seed}")
    counter = iter(range(10**9))

    def _getkey():
        return jax.random.fold_in(jax.random.key(seed), next(counter))

    return _getkey


def tree_allclose(x, y, *, rtol=1e-7, atol=1e-9) -> bool:
    """True when two pytrees have the same structure and all leaves are close."""
    leaves_x, tree_x = jax.tree.flatten(x)
    leaves_y, tree_y = jax.tree.flatten(y)
    if tree_x != tree_y:
        return False
    return all(np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol) for a, b in zip(leaves_x, leaves_y))


def central_difference(f, x, h):
    """Central finite difference of a scalar function of a scalar, in float64."""
    x = jnp.asarray(x, jnp.float64)
    return (f(x + h) - f(x - h)) / (2 * h)
