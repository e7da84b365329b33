"""Progress of long computations: a one-line bar on stderr, and batches run in chunks to drive it."""

import math
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import PyTree


class Progress:
    """A one-line progress bar with elapsed time and an estimate of the time left, on stderr.

    On a terminal the line is redrawn in place (at most ten times a second); otherwise a
    line is printed every 10 % of `total`. `value`: the name of a number shown with each
    update (e.g. "best loss"), or None; `unit`: a word before the count (e.g. "step").
    Nothing is shown before `delay` seconds have passed
    (a job done by then prints nothing). A disabled bar prints nothing.
    """

    def __init__(self, enabled: bool, total: int, label: str, value: str | None = None, delay: float = 0.0,
                 unit: str = ""):
        self.enabled, self.total, self.label, self.value = enabled, max(1, int(total)), label, value
        self.unit = f"{unit} " if unit else ""
        self.delay = delay
        self.tty = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = -1
        # `done` and the time at the first update: the rate is measured from there, so that the
        # estimate leaves out compilation (paid before the first update) and work done before a resume.
        self.first: tuple[int, float] | None = None

    def update(self, done: int, value: float | None = None, final: bool = False) -> None:
        """Show `done` of `total` (and `value`); `final` always prints and ends the line."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.first is None:
            self.first = (done, now)
        every = max(1, self.total // 10)
        if now - self.started < self.delay and not (final and self.shown >= 0):
            return
        if done == self.shown or not (final or (self.tty and now - self.last > 0.1) or (not self.tty and done % every == 0)):
            return
        self.last, self.shown = now, done
        elapsed = now - self.started
        filled = int(20 * min(done, self.total) / self.total)
        line = f"{self.label} [{'#' * filled}{'.' * (20 - filled)}] {self.unit}{done}/{self.total}"
        if self.value is not None and value is not None:
            line += f"  {self.value} {value:.4f}"
        line += f"  {elapsed:.1f} s"
        first_done, first_time = self.first
        if first_done < done < self.total and not final:
            line += f", about {(now - first_time) * (self.total - done) / (done - first_done):.0f} s left"
        print(("\r" + line) if self.tty else line, end="\n" if final or not self.tty else "", file=sys.stderr, flush=True)


def in_chunks(fn: Callable[[PyTree], PyTree], batch: PyTree, *, label: str, progress: bool, chunks: int = 10,
              min_size: int = 1, delay: float = 2.0) -> PyTree:
    """`fn(batch)` for a batch whose arrays share a leading axis, with a progress bar.

    Without `progress`, one call. With it, the batch is cut into about `chunks` slices of
    equal size, at least `min_size` elements each (a vmapped solver loops over its steps
    once per slice: slices too narrow would cost more than the bar is worth), the last one
    padded by repeating the last element, then trimmed, so a
    jit-compiled `fn` compiles once; the bar advances after each slice and shows from
    `delay` seconds on (`Progress`). `fn` must treat
    the elements of the batch independently (as a vmap or lax.map does): then both ways
    give the same result. Non-array leaves are passed unchanged.
    """
    leaves = [x for x in jax.tree.leaves(batch) if _is_array(x)]
    if not progress or not leaves:
        return fn(batch)
    n = leaves[0].shape[0]
    size = max(1, min_size, math.ceil(n / chunks))
    bar = Progress(True, n, label, delay=delay)
    if size >= n:  # one slice: the batch as it is
        result = fn(batch)
        bar.update(n, final=True)
        return result
    host = jax.tree.map(_to_host, batch)  # sliced on the host: no device program per slice
    parts = []
    for start in range(0, n, size):
        index = np.minimum(np.arange(start, start + size), n - 1)
        part = jax.tree.map(lambda x: _from_host(_HostArray(x.data[index], x.impl)) if isinstance(x, _HostArray) else x, host,
                            is_leaf=lambda x: isinstance(x, _HostArray))
        parts.append(jax.tree.map(_to_host, fn(part)))
        bar.update(min(start + size, n), final=start + size >= n)
    return jax.tree.map(lambda *xs: _from_host(_HostArray(np.concatenate([x.data for x in xs])[:n], xs[0].impl)),
                        *parts, is_leaf=lambda x: isinstance(x, _HostArray))


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


class _HostArray:
    """An array's values on the host; `impl` is the PRNG implementation of a key array, else None."""

    def __init__(self, data: np.ndarray, impl: object):
        self.data, self.impl = data, impl


def _to_host(x):
    if not _is_array(x):
        return x
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return _HostArray(np.asarray(jax.random.key_data(x)), jax.random.key_impl(x))
    return _HostArray(np.asarray(x), None)


def _from_host(x: _HostArray):
    if x.impl is not None:
        return jax.random.wrap_key_data(jnp.asarray(x.data), impl=x.impl)
    return jnp.asarray(x.data)
