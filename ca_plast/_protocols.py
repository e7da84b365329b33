"""Stimulation protocols: host-side pre- and postsynaptic spike times (float64, ms).

A `Protocol` holds the spike times of one presynaptic and one postsynaptic neuron and the
duration over which plasticity is integrated. Builders follow the experiments' own
descriptions; `dt = t_post - t_pre` throughout, so positive dt means
pre before post. Solvers turn protocols into padded device arrays (`ca_plast.to_spikes`).
"""

import dataclasses

import numpy as np

from ._validation import whole_number

_MS_PER_S = 1000.0


def _as_times(name: str, times) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if arr.ndim != 1:
        raise ValueError(f"Protocol: {name} spike times must be a 1-d sequence, got shape {arr.shape}")
    return arr


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Spike times (ms, float64) of the pre- and postsynaptic neuron and the duration (ms).

    Times must be finite, sorted, and lie in `[0, duration)`. Presynaptic spikes reach the
    synapse after the calcium model's delay `D`; arrivals past `duration` are ignored.
    """

    pre: np.ndarray
    post: np.ndarray
    duration: float
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "pre", _as_times("pre", self.pre))
        object.__setattr__(self, "post", _as_times("post", self.post))
        duration = float(self.duration)
        if not np.isfinite(duration) or duration <= 0:
            raise ValueError(f"Protocol {self.name!r}: duration must be a finite number of ms > 0, got {self.duration!r}")
        object.__setattr__(self, "duration", duration)
        for side in ("pre", "post"):
            times = getattr(self, side)
            if not np.all(np.isfinite(times)):
                raise ValueError(f"Protocol {self.name!r}: {side} spike times must be finite, got {times[~np.isfinite(times)][:5]}")
            if np.any(times < 0):
                raise ValueError(f"Protocol {self.name!r}: {side} spike times must be >= 0 ms, got {times[times < 0][:5]}")
            if np.any(np.diff(times) < 0):
                i = int(np.argmax(np.diff(times) < 0))
                raise ValueError(
                    f"Protocol {self.name!r}: {side} spike times must be sorted, got {times[i]} ms before {times[i + 1]} ms"
                )
            if np.any(times >= duration):
                raise ValueError(
                    f"Protocol {self.name!r}: {side} spike times must be < duration {duration} ms, got {times[times >= duration][:5]}"
                )

    @property
    def n_spikes(self) -> int:
        return self.pre.size + self.post.size


def _check_count(name: str, n) -> int:
    return whole_number(None, name, n)


def _check_freq(freq: float) -> float:
    if not np.isfinite(freq) or freq <= 0:
        raise ValueError(f"frequency must be a finite number of Hz > 0, got {freq!r}")
    return float(freq)


def repeated(pre, post, n: int, period: float, name: str = "") -> Protocol:
    """Repeat one pattern of relative spike times `n` times, every `period` ms.

    The pattern is shifted so that its earliest spike falls at 0; duration = n * period.
    The pattern must fit inside one period.
    """
    n = _check_count("number of repetitions", n)
    pre, post = _as_times("pre", pre), _as_times("post", post)
    start = min(np.min(pre, initial=np.inf), np.min(post, initial=np.inf))
    pre, post = pre - start, post - start
    span = max(np.max(pre, initial=0.0), np.max(post, initial=0.0))
    if not period > span:
        raise ValueError(f"{name or 'protocol'}: the pattern spans {span} ms, longer than the period {period} ms")
    offsets = period * np.arange(n)[:, None]
    return Protocol(
        pre=np.sort((offsets + pre).ravel()),
        post=np.sort((offsets + post).ravel()),
        duration=n * period,
        name=name,
    )


def pairs(dt: float, n: int = 60, freq: float = 1.0) -> Protocol:
    """`n` pre-post pairs with timing `dt = t_post - t_pre` (ms) at `freq` Hz (GB2012 Fig. 2: 60 at 1 Hz)."""
    period = _MS_PER_S / _check_freq(freq)
    return repeated([0.0], [dt], n, period, name=f"pairs(dt={dt:g} ms, n={n}, {freq:g} Hz)")


def burst(
    dt: float,
    n: int,
    freq: float,
    n_post: int = 2,
    interval: float = 11.5,
    reference: str = "last",
) -> Protocol:
    """One pre spike paired with a burst of `n_post` post spikes `interval` ms apart.

    `dt` is measured from the pre spike to the `reference` ("first" or "last") spike of the
    burst. Wittenberg & Wang 2006: 2 APs 11.5 ms apart, dt to the second AP, 5 Hz, 100 or
    30 repetitions. Nevian & Sakmann 2006: 3 APs at 50 Hz (20 ms), dt to the first AP,
    60 repetitions at 0.1 Hz.
    """
    if reference not in ("first", "last"):
        raise ValueError(f"burst: reference must be 'first' or 'last', got {reference!r}")
    n_post = _check_count("n_post", n_post)
    post = interval * np.arange(n_post)
    post = post + dt - (post[-1] if reference == "last" else 0.0)
    period = _MS_PER_S / _check_freq(freq)
    return repeated([0.0], post, n, period, name=f"burst(dt={dt:g} ms, {n_post} APs, n={n}, {freq:g} Hz)")


def trains(dt: float, freq: float, pairs_per_train: int = 5, n_trains: int = 15, train_period: float = 10_000.0) -> Protocol:
    """Sjostrom et al. 2001: trains of `pairs_per_train` pairs at `freq` Hz, `n_trains` trains every `train_period` ms."""
    k = _check_count("pairs_per_train", pairs_per_train)
    pre = _MS_PER_S / _check_freq(freq) * np.arange(k)
    return repeated(pre, pre + dt, n_trains, train_period, name=f"trains(dt={dt:g} ms, {freq:g} Hz, {k}x{n_trains})")


def random_pairs(freq: float, n: int = 75, dt_low: float = -15.0, dt_high: float = 15.0, *, seed: int) -> Protocol:
    """`n` pairs at `freq` Hz with dt drawn uniformly from `[dt_low, dt_high]` ms (Sjostrom 2001 random timing).

    Pairs whose post spike would cross into the next period are not possible: the period
    must exceed `dt_high - dt_low`.
    """
    n = _check_count("number of pairs", n)
    period = _MS_PER_S / _check_freq(freq)
    if not (np.isfinite(dt_low) and np.isfinite(dt_high) and dt_low <= dt_high):
        raise ValueError(f"random_pairs: need finite dt_low <= dt_high (ms), got dt_low {dt_low!r}, dt_high {dt_high!r}")
    if not period > dt_high - dt_low:
        raise ValueError(f"random_pairs: period {period} ms must exceed the dt range {dt_high - dt_low} ms")
    dts = np.random.default_rng(seed).uniform(dt_low, dt_high, size=n)
    start = period * np.arange(n) - dt_low
    return Protocol(pre=start, post=start + dts, duration=n * period,
                    name=f"random_pairs({freq:g} Hz, n={n}, seed={seed})")


def triplet(kind: str, dt1: float, dt2: float, n: int = 60, freq: float = 1.0) -> Protocol:
    """Wang et al. 2005 triplets, repeated `n` times at `freq` Hz.

    `"pre-post-pre"`: one post spike, dt1 = t_post - t_pre1 (> 0), dt2 = t_post - t_pre2 (< 0).
    `"post-pre-post"`: one pre spike, dt1 = t_post1 - t_pre (< 0), dt2 = t_post2 - t_pre (> 0).
    """
    period = _MS_PER_S / _check_freq(freq)
    if kind == "pre-post-pre":
        return repeated([-dt1, -dt2], [0.0], n, period, name=f"pre-post-pre({dt1:g}, {dt2:g})")
    if kind == "post-pre-post":
        return repeated([0.0], [dt1, dt2], n, period, name=f"post-pre-post({dt1:g}, {dt2:g})")
    raise ValueError(f"triplet: kind must be 'pre-post-pre' or 'post-pre-post', got {kind!r}")


def quadruplet(T: float, n: int = 60, freq: float = 1.0, dt: float = 5.0) -> Protocol:
    """Wang et al. 2005 quadruplet: a post-pre pair (-dt) and a pre-post pair (+dt), centres `T` ms apart.

    `T > 0`: post-pre pair first, pre-post pair T later; `T < 0`: pre-post pair first
    (Pfister & Gerstner 2006, Fig. 7).
    """
    half = dt / 2
    post_pre_pre = [half]  # pre spike of the post-pre pair, pair centred at 0
    post_pre_post = [-half]
    pre_post_pre = [T - half]  # pre-post pair centred at T
    pre_post_post = [T + half]
    return repeated(post_pre_pre + pre_post_pre, sorted(post_pre_post + pre_post_post), n,
                    _MS_PER_S / _check_freq(freq), name=f"quadruplet(T={T:g} ms)")


def poisson(rate_pre: float, rate_post: float, duration: float, *, seed: int) -> Protocol:
    """Independent Poisson spike trains at `rate_pre` and `rate_post` Hz over `duration` ms."""
    rng = np.random.default_rng(seed)

    def train(rate):
        if not np.isfinite(rate) or rate < 0:
            raise ValueError(f"poisson: rates must be finite and >= 0 Hz, got {rate!r}")
        count = rng.poisson(rate * duration / _MS_PER_S)
        return np.sort(rng.uniform(0.0, duration, size=count))

    return Protocol(pre=train(rate_pre), post=train(rate_post), duration=duration,
                    name=f"poisson({rate_pre:g} Hz, {rate_post:g} Hz)")
