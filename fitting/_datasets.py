"""Experimental STDP data sets: measured points, their errors, and the protocol behind each point.

Each data file in `fitting/data/` keeps the provenance header (`# ...` lines) of the
project's shared data; the header travels with the loaded data set (`Dataset.source`).
Ratios are weight after / before (1 = no change) and errors are standard errors of the
mean in the same units. Protocols are built with the `ca_plast` builders, so every point
can be predicted by a rule (`fitting.predict`). Where the experiment and the model
authors' description of it differ, each is a selectable *modelling* of the data set.
"""

import csv
import dataclasses
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

import ca_plast
from ca_plast import Protocol


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Measured change ratios with their errors and the protocol of every point.

    `data`, `sem`: ratio (after / before) and its standard error per point, shape `(n,)`.
    `protocols`: the `ca_plast.Protocol` that produced each point. `labels`: one short
    description per point. For plots: `x` (per point, in `x_label` units), `series` and
    `panel` (per point; points of one panel share axes, points of one series are joined);
    `curve(i, x)`: the protocol of point i's series at any `x` (None where x is a category),
    so that plots draw the model on a fine grid of x, not only at the data.
    `modelling`: which description of the protocols is used (`modelling_note` explains
    it). `source`: provenance of the numbers. `reference`: a published parameter set fit
    to these data, if any (a `ca_plast.GB2012_PRESETS` name), scored next to every fit.
    """

    name: str
    modelling: str
    modelling_note: str
    source: str
    labels: tuple[str, ...]
    data: np.ndarray
    sem: np.ndarray
    protocols: tuple[Protocol, ...]
    x: np.ndarray
    x_label: str
    series: tuple[str, ...]
    panel: tuple[str, ...]
    reference: str | None = None
    curve: Callable[[int, float], Protocol] | None = None

    def __post_init__(self):
        n = len(self.protocols)
        for field in ("labels", "data", "sem", "x", "series", "panel"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"Dataset {self.name!r}: {field} has {len(getattr(self, field))} entries, expected {n}")
        if n == 0:
            raise ValueError(f"Dataset {self.name!r}: no data points")
        data, sem = np.asarray(self.data, dtype=float), np.asarray(self.sem, dtype=float)
        for values, what in ((data, "ratio (after / before)"), (sem, "error")):
            bad = ~(np.isfinite(values) & (values > 0))
            if np.any(bad):
                i = int(np.argmax(bad))
                raise ValueError(f"Dataset {self.name!r}: the {what} of point {self.labels[i]!r} must be a finite "
                                 f"number > 0, got {float(values[i])!r}")

    @property
    def n_points(self) -> int:
        return len(self.protocols)

    def spikes(self, unit: float = 1.0) -> ca_plast.Spikes:
        """All protocols as one padded, batched `ca_plast.Spikes` (ticks of `unit` ms)."""
        return ca_plast.to_spikes(list(self.protocols), unit=unit)


def combine(name: str, parts: Sequence[Dataset], x_label: str) -> Dataset:
    """Several data sets fitted together; each part becomes one panel of the plot."""
    return Dataset(
        name=name,
        modelling="+".join(sorted({p.modelling for p in parts})),
        modelling_note=" | ".join(f"{p.name}: {p.modelling_note}" for p in parts),
        source="\n".join(f"[{p.name}] {p.source}" for p in parts),
        labels=sum((p.labels for p in parts), ()),
        data=np.concatenate([p.data for p in parts]),
        sem=np.concatenate([p.sem for p in parts]),
        protocols=sum((p.protocols for p in parts), ()),
        x=np.concatenate([p.x for p in parts]),
        x_label=x_label,
        series=sum((p.series for p in parts), ()),
        panel=sum(((p.name,) * p.n_points for p in parts), ()),
        reference=parts[0].reference if len({p.reference for p in parts}) == 1 else None,
        curve=_combined_curve(parts),
    )


def _combined_curve(parts: Sequence[Dataset]) -> Callable[[int, float], Protocol] | None:
    """`curve` of the combined data set: point i's part draws it."""
    if any(part.curve is None for part in parts):
        return None
    starts = np.cumsum([0] + [part.n_points for part in parts])

    def curve(i: int, x: float) -> Protocol:
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return parts[k].curve(i - int(starts[k]), x)

    return curve


# --- reading the shipped files -------------------------------------------------------------


class _Table:
    """Rows of one data file, with checked access to numeric columns."""

    def __init__(self, path: Path, columns: Sequence[str]):
        text = path.read_text()
        lines = text.splitlines()
        self.path = path
        self.source = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))
        reader = csv.DictReader(line for line in lines if line.strip() and not line.startswith("#"))
        self.rows = list(reader)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(reader.fieldnames or [])}"
            )
        if not self.rows:
            raise ValueError(f"{path}: no data rows")

    def number(self, i: int, column: str) -> float:
        """The value in row `i` (0-based, data rows only) of `column`: a finite number, or ValueError."""
        text = (self.rows[i][column] or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = np.nan
        if not np.isfinite(value):
            raise ValueError(f"{self.path}: data row {i + 1}, column {column!r} must be a finite number, got {text!r}")
        return value

    def numbers(self, column: str) -> np.ndarray:
        return np.array([self.number(i, column) for i in range(len(self.rows))])


def _data_file(filename: str) -> Path:
    return Path(str(resources.files(__package__).joinpath("data", filename)))


# --- the data sets -------------------------------------------------------------------------

SJOSTROM_REGULAR_PAIRS = 75


def _frequency_dataset(name: str, path: Path, modelling: str, protocol: Callable[[float, float], Protocol],
                       reference: str | None = None) -> Dataset:
    """A frequency-dependence data set (columns freq_Hz, dt_ms, ratio_after_before, sem): one
    series per dt against the pairing frequency; `protocol(dt, freq)` models each point."""
    table = _Table(path, ("freq_Hz", "dt_ms", "ratio_after_before", "sem"))
    freqs, dts = table.numbers("freq_Hz"), table.numbers("dt_ms")
    return Dataset(
        name=name,
        modelling=modelling,
        modelling_note=_MODELLINGS[name][modelling],
        source=table.source,
        labels=tuple(f"{f:g} Hz, dt {dt:+g} ms" for f, dt in zip(freqs, dts)),
        data=table.numbers("ratio_after_before"),
        sem=table.numbers("sem"),
        protocols=tuple(protocol(dt, f) for f, dt in zip(freqs, dts)),
        x=freqs,
        x_label="pairing frequency (Hz)",
        series=tuple(f"Δt = {dt:+g} ms" for dt in dts),
        panel=("",) * len(freqs),
        reference=reference,
        curve=lambda i, f: protocol(dts[i], f),
    )


def _sjostrom2001(path: Path, modelling: str) -> Dataset:
    def regular(dt, freq):
        return ca_plast.pairs(dt, SJOSTROM_REGULAR_PAIRS, freq)

    protocol = regular if modelling == "regular" else _sjostrom_trains
    return _frequency_dataset("sjostrom2001", path, modelling, protocol, reference="cortical_slices")


def _sjostrom_trains(dt: float, freq: float) -> Protocol:
    """Sjostrom et al. 2001: 15 trains of 5 pairs, 10 s apart; 75 single pairs where 5 pairs do not fit in 10 s."""
    if 4 * 1000.0 / freq + abs(dt) < 10_000.0:
        return ca_plast.trains(dt, freq, pairs_per_train=5, n_trains=15, train_period=10_000.0)
    return ca_plast.pairs(dt, SJOSTROM_REGULAR_PAIRS, freq)


WITTENBERG_WANG_FREQ = 5.0
WITTENBERG_WANG_PAIRS = 200
WITTENBERG_WANG_BURST_INTERVAL = 11.5


def _wittenberg_wang2006_pairs(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("dt_ms", "dW", "sterr"))
    dts = table.numbers("dt_ms")
    return Dataset(
        name="wittenberg_wang2006_pairs",
        modelling=modelling,
        modelling_note=_MODELLINGS["wittenberg_wang2006_pairs"][modelling],
        source=table.source,
        labels=tuple(f"pairs, dt {dt:+g} ms" for dt in dts),
        data=table.numbers("dW"),
        sem=table.numbers("sterr"),
        protocols=tuple(ca_plast.pairs(dt, WITTENBERG_WANG_PAIRS, WITTENBERG_WANG_FREQ) for dt in dts),
        x=dts,
        x_label="Δt = t_post − t_pre (ms)",
        series=("cells",) * len(dts),
        panel=("pairs",) * len(dts),
        reference="hippocampal_slices",
        curve=lambda i, dt: ca_plast.pairs(dt, WITTENBERG_WANG_PAIRS, WITTENBERG_WANG_FREQ),
    )


def _wittenberg_wang2006_burst(repetitions: int) -> Callable[[Path, str], Dataset]:
    def load(path: Path, modelling: str) -> Dataset:
        name = f"wittenberg_wang2006_burst{repetitions}"
        table = _Table(path, ("dt2_ms", "dW", "sterr"))
        dts = table.numbers("dt2_ms")

        def protocol(dt: float) -> Protocol:
            return ca_plast.burst(dt, repetitions, WITTENBERG_WANG_FREQ, n_post=2,
                                  interval=WITTENBERG_WANG_BURST_INTERVAL, reference="last")

        protocols = tuple(protocol(dt) for dt in dts)
        return Dataset(
            name=name,
            modelling=modelling,
            modelling_note=_MODELLINGS[name][modelling],
            source=table.source,
            labels=tuple(f"burst x{repetitions}, dt {dt:+g} ms" for dt in dts),
            data=table.numbers("dW"),
            sem=table.numbers("sterr"),
            protocols=protocols,
            x=dts,
            x_label="Δt = t_post2 − t_pre (ms, to the second AP)",
            series=("cells",) * len(dts),
            panel=(f"pre + 2-AP burst x{repetitions}",) * len(dts),
            reference="hippocampal_slices",
            curve=lambda i, dt: protocol(dt),
        )

    return load


WANG_REPETITIONS, WANG_FREQ = 60, 1.0


def _wang2005(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("protocol", "dt1_ms", "dt2_ms", "T_ms", "dw", "sem"))
    protocols, labels = [], []
    for i, row in enumerate(table.rows):
        kind = row["protocol"].strip()
        if kind in ("pre-post-pre", "post-pre-post"):
            dt1, dt2 = table.number(i, "dt1_ms"), table.number(i, "dt2_ms")
            protocols.append(ca_plast.triplet(kind, dt1, dt2, WANG_REPETITIONS, WANG_FREQ))
            labels.append(f"{kind} ({dt1:+g}, {dt2:+g})")
        elif kind == "quadruplet":
            T = table.number(i, "T_ms")
            protocols.append(ca_plast.quadruplet(T, WANG_REPETITIONS, WANG_FREQ))
            labels.append(f"quadruplet T {T:+g}")
        elif kind == "pair":
            dt = table.number(i, "dt1_ms")
            protocols.append(ca_plast.pairs(dt, WANG_REPETITIONS, WANG_FREQ))
            labels.append(f"pair {dt:+g}")
        else:
            raise ValueError(f"{path}: data row {i + 1}: unknown protocol {kind!r}; "
                             "expected pre-post-pre, post-pre-post, quadruplet or pair")
    kinds = tuple(row["protocol"].strip() for row in table.rows)
    return Dataset(
        name="wang2005",
        modelling=modelling,
        modelling_note=_MODELLINGS["wang2005"][modelling],
        source=table.source,
        labels=tuple(labels),
        data=1.0 + table.numbers("dw"),
        sem=table.numbers("sem"),
        protocols=tuple(protocols),
        x=np.arange(len(protocols), dtype=float),
        x_label="",
        series=kinds,
        panel=("",) * len(protocols),
        reference="hippocampal_cultures",
    )


BI_POO_REPETITIONS, BI_POO_FREQ = 60, 1.0
BI_POO_ASSUMED_SEM = 0.2


def _bipoo1998(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("dt_ms", "percent_change"))
    dts = table.numbers("dt_ms")
    return Dataset(
        name="bipoo1998",
        modelling=modelling,
        modelling_note=_MODELLINGS["bipoo1998"][modelling],
        source=table.source,
        labels=tuple(f"dt {dt:+.1f} ms" for dt in dts),
        data=1.0 + table.numbers("percent_change") / 100.0,
        sem=np.full(dts.shape, BI_POO_ASSUMED_SEM),
        protocols=tuple(ca_plast.pairs(dt, BI_POO_REPETITIONS, BI_POO_FREQ) for dt in dts),
        x=dts,
        x_label="Δt = t_post − t_pre (ms)",
        series=("cells",) * len(dts),
        panel=("",) * len(dts),
        curve=lambda i, dt: ca_plast.pairs(dt, BI_POO_REPETITIONS, BI_POO_FREQ),
    )


def _nevian_sakmann2006(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("prot_id", "stim_sequence", "intervals_ms", "freq_Hz", "n_rep",
                          "synaptic_gain_after_before", "stderr"))
    protocols, x, shapes = [], [], []
    for i, row in enumerate(table.rows):
        kinds = row["stim_sequence"].strip().split("-")
        try:
            gaps = [float(g) for g in row["intervals_ms"].split(";")]
        except ValueError:
            gaps = []
        if sorted(kinds) != ["post", "post", "post", "pre"] or len(gaps) != 3 or not all(np.isfinite(gaps)):
            raise ValueError(f"{path}: data row {i + 1}: expected one pre and three post spikes with three intervals, "
                             f"got {row['stim_sequence']!r} and {row['intervals_ms']!r}")
        times = np.concatenate([[0.0], np.cumsum(gaps)])
        pre = times[[k == "pre" for k in kinds]]
        post = times[[k == "post" for k in kinds]]
        period = 1000.0 / table.number(i, "freq_Hz")
        n = int(table.number(i, "n_rep"))
        protocols.append(ca_plast.repeated(pre, post, n, period, name=f"Nevian-Sakmann {row['prot_id']}"))
        x.append(post[0] - pre[0])
        shapes.append((post - post[0], n, period))

    def curve(i: int, dt: float) -> Protocol:
        """Row i's burst with the presynaptic spike moved to dt before its first AP."""
        burst, n, period = shapes[i]
        return ca_plast.repeated(np.array([-dt]), burst, n, period, name=f"Nevian-Sakmann, dt {dt:+g} ms")

    return Dataset(
        name="nevian_sakmann2006",
        modelling=modelling,
        modelling_note=_MODELLINGS["nevian_sakmann2006"][modelling],
        source=table.source,
        labels=tuple(f"{row['prot_id']} {row['stim_sequence']}" for row in table.rows),
        data=table.numbers("synaptic_gain_after_before"),
        sem=table.numbers("stderr"),
        protocols=tuple(protocols),
        x=np.array(x),
        x_label="Δt = t_post1 − t_pre (ms, to the first AP of the 50 Hz burst)",
        series=("cells",) * len(x),
        panel=("",) * len(x),
        curve=curve,
    )


def _markram1997(path: Path, modelling: str) -> Dataset:
    def trains(dt, freq):
        return ca_plast.trains(dt, freq, pairs_per_train=5, n_trains=10, train_period=4000.0)

    return _frequency_dataset("markram1997", path, modelling, trains)


# name -> (file, loader); modellings: name -> {modelling: note}, the first is the default.
_FILES: dict[str, tuple[str, Callable[[Path, str], Dataset]]] = {
    "sjostrom2001": ("sjostrom2001_freq_graupner_repo.csv", _sjostrom2001),
    "wittenberg_wang2006_pairs": ("wittenberg_wang2006_fig1d_spike_pairs.csv", _wittenberg_wang2006_pairs),
    "wittenberg_wang2006_burst100": ("wittenberg_wang2006_fig3e_pre_postburst_100rep.csv", _wittenberg_wang2006_burst(100)),
    "wittenberg_wang2006_burst30": ("wittenberg_wang2006_fig4d_pre_postburst_30rep.csv", _wittenberg_wang2006_burst(30)),
    "wang2005": ("wang2005_hippocampal_culture_triplets_quadruplets_azghadi.csv", _wang2005),
    "bipoo1998": ("bi_poo1998_fig7_digitised_spicher.csv", _bipoo1998),
    "nevian_sakmann2006": ("nevian_sakmann2006_fig2b_bluepyopt.csv", _nevian_sakmann2006),
    "markram1997": ("markram1997_freq_graupner_repo.csv", _markram1997),
}

_MODELLINGS: dict[str, dict[str, str]] = {
    "sjostrom2001": {
        "regular": f"{SJOSTROM_REGULAR_PAIRS} regular pairs at the stated frequency, as the GB2012 authors modelled it",
        "trains": "the experiment's structure: 15 trains of 5 pairs at the stated frequency, trains 10 s apart "
                  "(0.1 Hz: 75 single pairs 10 s apart)",
    },
    "wittenberg_wang2006_pairs": {
        "gb2012": f"{WITTENBERG_WANG_PAIRS} pairs at {WITTENBERG_WANG_FREQ:g} Hz, as in the GB2012 authors' code",
    },
    "wittenberg_wang2006_burst100": {
        "gb2012": f"pre spike + 2 post APs {WITTENBERG_WANG_BURST_INTERVAL} ms apart (dt to the second AP), "
                  f"100 repetitions at {WITTENBERG_WANG_FREQ:g} Hz, as in the GB2012 authors' code",
    },
    "wittenberg_wang2006_burst30": {
        "gb2012": f"pre spike + 2 post APs {WITTENBERG_WANG_BURST_INTERVAL} ms apart (dt to the second AP), "
                  f"30 repetitions at {WITTENBERG_WANG_FREQ:g} Hz, as in the GB2012 authors' code",
    },
    "wang2005": {
        "pfister_gerstner": f"pairs, triplets and quadruplets (5 ms pairs) repeated {WANG_REPETITIONS} times at "
                            f"{WANG_FREQ:g} Hz (the commonly reported protocol; not verified in the paper)",
    },
    "bipoo1998": {
        "pairs": f"{BI_POO_REPETITIONS} pairs at {BI_POO_FREQ:g} Hz (commonly cited, not verified); no per-point errors "
                 f"in the digitised source, every point is given sem = {BI_POO_ASSUMED_SEM:g}",
    },
    "nevian_sakmann2006": {
        "bluepyopt": "1 pre spike + 3 post APs at 50 Hz, 60 repetitions at 0.1 Hz, spike order and intervals "
                     "as coded in BluePyOpt's GB2012 example",
    },
    "markram1997": {
        "deperrois2020": "trains of 5 pairs, 10 trains 4 s apart (Deperrois & Graupner 2020, 'henry' set)",
    },
}

_COMBINED = {
    "wittenberg_wang2006": (
        ("wittenberg_wang2006_pairs", "wittenberg_wang2006_burst100", "wittenberg_wang2006_burst30"),
        "Δt (ms): t_post − t_pre for pairs, to the second AP for bursts",
    ),
}

DATASETS = tuple(_FILES) + tuple(_COMBINED)


def modellings(name: str) -> tuple[str, ...]:
    """The modellings a data set offers; the first is the default."""
    if name in _COMBINED:
        return ("gb2012",)
    return tuple(_MODELLINGS[_check_name(name)])


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid data sets: {', '.join(DATASETS)}")
    return name


def load_dataset(name: str, modelling: str | None = None, *, path: str | Path | None = None) -> Dataset:
    """A shipped data set by name (`DATASETS`), with the protocol of each point.

    `modelling`: how the protocols are described (`modellings(name)`; default: the first).
    `path`: read the numbers from this file instead of the shipped copy (same columns).
    Raises ValueError for an unknown name or modelling, a missing column, or a value that
    is not a finite number.
    """
    _check_name(name)
    valid = modellings(name)
    modelling = valid[0] if modelling is None else modelling
    if modelling not in valid:
        raise ValueError(f"unknown modelling {modelling!r} of data set {name!r}; valid: {', '.join(valid)}")
    if name in _COMBINED:
        if path is not None:
            raise ValueError(f"data set {name!r} combines several files; give path= to its parts instead")
        parts, x_label = _COMBINED[name]
        return combine(name, [load_dataset(part) for part in parts], x_label)
    filename, loader = _FILES[name]
    return loader(Path(path) if path is not None else _data_file(filename), modelling)
