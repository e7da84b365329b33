"""Protocol x parameter grids, `vmap`ped and sharded over every device.

The batch axis of a grid is split over all devices with `jax.sharding` (a 1-d `Mesh` and a
`NamedSharding`); XLA partitions the `vmap`ped computation accordingly (GPU when present,
CPU devices otherwise; test on CPU with `XLA_FLAGS=--xla_force_host_platform_device_count=8`).
"""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._custom_types import Array, PyTree
from ._spikes import Spikes
from .rules._gb2012 import GraupnerBrunel2012
from .solvers._closed_form import closed_form_ratio

AXIS = "batch"


def device_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-d mesh over `devices` (default: all devices of the default backend)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (AXIS,))


def _batch_size(tree: PyTree) -> int:
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array)) if leaf.ndim > 0}
    if len(sizes) != 1:
        raise ValueError(f"every array of a batch needs the same leading (batch) size, got sizes {sorted(sizes)}")
    return sizes.pop()


def shard_batch(tree: PyTree, mesh: Mesh) -> tuple[PyTree, int]:
    """Pad the leading axis of every array to a multiple of the mesh size and shard it.

    Padding repeats the last element (a valid input, so padded lanes compute harmless
    values); returns the sharded tree and the original batch size.
    """
    n = _batch_size(tree)
    n_devices = mesh.devices.size
    padded = -(-n // n_devices) * n_devices
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))

    def put(x):
        if not eqx.is_array(x):
            return x
        if padded > n:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], padded - n, axis=0)])
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree), n


def map_sharded(fn: Callable, batch: PyTree, *, mesh: Mesh | None = None) -> PyTree:
    """`jax.vmap(fn)(batch)` with the batch axis sharded over the mesh's devices.

    `batch`: a pytree whose arrays share a leading batch axis (non-array leaves are static).
    The result has the original batch size. The compiled program is cached per `fn` object:
    pass a module-level function, not a fresh lambda, to avoid recompiling on every call.
    """
    mesh = device_mesh() if mesh is None else mesh
    sharded, n = shard_batch(batch, mesh)
    out = _vmapped(fn, sharded)
    return jax.tree.map(lambda x: x[:n], out)


@eqx.filter_jit
def _vmapped(fn, batch):
    # `fn` is static: pass the same function object to reuse the compiled program.
    return eqx.filter_vmap(fn)(batch)


def _pair_ratio(pair: tuple[GraupnerBrunel2012, Spikes]) -> Array:
    return closed_form_ratio(*pair)


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack same-structured pytrees (e.g. rules with different parameters) along a new leading axis."""
    arrays = [eqx.filter(t, eqx.is_array) for t in trees]
    static = eqx.filter(trees[0], eqx.is_array, inverse=True)
    return eqx.combine(jax.tree.map(lambda *xs: jnp.stack(xs), *arrays), static)


def closed_form_grid(rules: GraupnerBrunel2012, spikes: Spikes, *, mesh: Mesh | None = None) -> Array:
    """Closed-form change ratios of every (rule, protocol) pair: shape `(n_rules, n_protocols)`.

    `rules`: a rule whose parameter arrays have a leading axis of size n_rules (see `stack`);
    `spikes`: a batch of n_protocols protocols. The flattened grid is sharded over devices.
    """
    n_rules, n_protocols = _batch_size(rules), spikes.pre_tick.shape[0]
    grid_rules = jax.tree.map(lambda x: jnp.repeat(x, n_protocols, axis=0), eqx.filter(rules, eqx.is_array))
    grid_spikes = jax.tree.map(lambda x: jnp.tile(x, (n_rules,) + (1,) * (x.ndim - 1)), eqx.filter(spikes, eqx.is_array))
    batch = (eqx.combine(grid_rules, eqx.filter(rules, eqx.is_array, inverse=True)),
             eqx.combine(grid_spikes, eqx.filter(spikes, eqx.is_array, inverse=True)))
    ratios = map_sharded(_pair_ratio, batch, mesh=mesh)
    return ratios.reshape(n_rules, n_protocols)
