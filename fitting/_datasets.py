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

from ._table import describe, protocol_of, read_file, text_of, times_text, write_rows


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
    `specs`: each point's protocol as a row of the CSV format (column -> text, `fitting`'s
    `_table` module), when it has one: then `to_csv` writes the data set, and `from_csv`
    reads it back to the same protocols. `panel_x_labels`: (panel, x label) pairs for panels
    whose x is not `x_label` (the parts of a joint fit); `x_label_of(panel)` gives either.
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
    specs: tuple[dict[str, str], ...] | None = None
    panel_x_labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        n = len(self.protocols)
        for field in ("labels", "data", "sem", "x", "series", "panel") + (("specs",) if self.specs is not None else ()):
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

    def subset(self, points: Sequence[int] | np.ndarray) -> "Dataset":
        """The data set restricted to `points` (indices, in the order given)."""
        keep = [int(i) for i in points]
        bad = [i for i in keep if not 0 <= i < self.n_points]
        if bad or not keep:
            raise ValueError(f"Dataset {self.name!r}: subset needs indices from 0 to {self.n_points - 1}, got {list(points)!r}")

        def pick(values):
            return tuple(values[i] for i in keep) if isinstance(values, tuple) else np.asarray(values)[keep]

        curve = self.curve
        return dataclasses.replace(
            self, **{field: pick(getattr(self, field)) for field in ("labels", "data", "sem", "protocols", "x", "series",
                                                                     "panel")},
            specs=None if self.specs is None else pick(self.specs),
            curve=None if curve is None else (lambda i, x: curve(keep[i], x)),
        )

    def x_label_of(self, panel: str) -> str:
        """The x label of one panel of the plot."""
        return dict(self.panel_x_labels).get(panel, self.x_label)

    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None) -> "Dataset":
        """A data set from a CSV file of measurements and their protocols (the format is in
        the module docstring of `fitting/_table.py` and on the documentation's fitting page).

        `name`: default the file's name without its extension. ValueError naming the file,
        line and column for anything that is not valid.
        """
        rows, comments = read_file(path)
        specs = tuple(row.spec for row in rows)
        described = [describe(spec) for spec in specs]
        continuous = all("dt_ms" in spec for spec in specs)  # pairs, bursts, trains: drawn against dt

        def curve(i: int, dt: float) -> Protocol:
            return protocol_of({**specs[i], "dt_ms": text_of(dt)})

        return cls(
            name=Path(path).stem if name is None else name,
            modelling="csv",
            modelling_note=f"the protocols as written in {Path(path).name}",
            source=comments or f"read from {path}",
            labels=tuple(row.labels.get("label") or label for row, (label, _) in zip(rows, described)),
            data=np.array([row.ratio for row in rows]),
            sem=np.array([row.sem for row in rows]),
            protocols=tuple(protocol_of(spec) for spec in specs),
            x=np.array([float(spec["dt_ms"]) for spec in specs]) if continuous else np.arange(len(rows), dtype=float),
            x_label="Δt = t_post − t_pre (ms)" if continuous else "",
            series=tuple(row.labels.get("series") or series for row, (_, series) in zip(rows, described)),
            panel=tuple(row.labels.get("panel", "") for row in rows),
            curve=curve if continuous else None,
            specs=specs,
        )

    def to_csv(self) -> str:
        """The data set in the CSV format `from_csv` reads (its `source` as comment lines)."""
        if self.specs is None:
            raise ValueError(f"Dataset {self.name!r} has no CSV description of its protocols (specs)")
        labels = [{k: v for k, v in (("label", label), ("series", series), ("panel", panel)) if v}
                  for label, series, panel in zip(self.labels, self.series, self.panel)]
        return write_rows(self.specs, self.data, self.sem, labels, self.source)


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
        specs=None if any(p.specs is None for p in parts) else sum((p.specs or () for p in parts), ()),
        panel_x_labels=tuple((p.name, p.x_label) for p in parts if p.x_label and p.x_label != x_label),
    )


def joint(parts: Sequence[Dataset]) -> Dataset:
    """Several data sets in one fit (`combine` named after them): one panel, and one mean z^2
    in the report, per data set."""
    names = [part.name for part in parts]
    labels = list(dict.fromkeys(part.x_label for part in parts if part.x_label))
    return combine("+".join(names), parts, " | ".join(labels))


def _combined_curve(parts: Sequence[Dataset]) -> Callable[[int, float], Protocol] | None:
    """`curve` of the combined data set: point i's part draws it."""
    curves = [part.curve for part in parts if part.curve is not None]
    if len(curves) < len(parts):
        return None
    starts = np.cumsum([0] + [part.n_points for part in parts])

    def curve(i: int, x: float) -> Protocol:
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return curves[k](i - int(starts[k]), x)

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
    assert __package__ is not None  # set: this module is only imported as part of its package (relative imports)
    return Path(str(resources.files(__package__).joinpath("data", filename)))


# --- the data sets -------------------------------------------------------------------------

SJOSTROM_REGULAR_PAIRS = 75


# Each point's protocol as a row of the CSV format (`_table`): the shipped data sets are built
# from these rows, so `Dataset.to_csv` can write them and `Dataset.from_csv` read them back.

def _pairs(dt: float, n: int, freq: float) -> dict[str, str]:
    return {"protocol": "pairs", "dt_ms": text_of(dt), "n_pairs": text_of(n), "freq_hz": text_of(freq)}


def _trains(dt: float, freq: float, pairs_per_train: int, n_trains: int, train_period: float) -> dict[str, str]:
    return {"protocol": "trains", "dt_ms": text_of(dt), "freq_hz": text_of(freq),
            "pairs_per_train": text_of(pairs_per_train), "n_trains": text_of(n_trains),
            "train_period_ms": text_of(train_period)}


def _burst(dt: float, n: int, freq: float, n_post: int, interval: float, dt_to: str) -> dict[str, str]:
    return {"protocol": "burst", "dt_ms": text_of(dt), "n_pairs": text_of(n), "freq_hz": text_of(freq),
            "n_post": text_of(n_post), "interval_ms": text_of(interval), "dt_to": dt_to}


def _repeated(kind: str, n: int, freq: float, **times: float) -> dict[str, str]:
    return {"protocol": kind, **{k: text_of(v) for k, v in times.items()}, "n_pairs": text_of(n),
            "freq_hz": text_of(freq)}


def _frequency_dataset(name: str, path: Path, modelling: str, spec: Callable[[float, float], dict[str, str]],
                       reference: str | None = None) -> Dataset:
    """A frequency-dependence data set (columns freq_Hz, dt_ms, ratio_after_before, sem): one
    series per dt against the pairing frequency; `spec(dt, freq)` models each point."""
    table = _Table(path, ("freq_Hz", "dt_ms", "ratio_after_before", "sem"))
    freqs, dts = table.numbers("freq_Hz"), table.numbers("dt_ms")
    specs = tuple(spec(dt, f) for f, dt in zip(freqs, dts))
    return Dataset(
        name=name,
        modelling=modelling,
        modelling_note=_MODELLINGS[name][modelling],
        source=table.source,
        labels=tuple(f"{f:g} Hz, dt {dt:+g} ms" for f, dt in zip(freqs, dts)),
        data=table.numbers("ratio_after_before"),
        sem=table.numbers("sem"),
        protocols=tuple(protocol_of(row) for row in specs),
        x=freqs,
        x_label="pairing frequency (Hz)",
        series=tuple(f"Δt = {dt:+g} ms" for dt in dts),
        panel=("",) * len(freqs),
        reference=reference,
        curve=lambda i, f: protocol_of(spec(dts[i], f)),
        specs=specs,
    )


def _sjostrom2001(path: Path, modelling: str) -> Dataset:
    def regular(dt, freq):
        return _pairs(dt, SJOSTROM_REGULAR_PAIRS, freq)

    spec = regular if modelling == "regular" else _sjostrom_trains
    return _frequency_dataset("sjostrom2001", path, modelling, spec, reference="cortical_slices")


def _sjostrom_trains(dt: float, freq: float) -> dict[str, str]:
    """Sjostrom et al. 2001: 15 trains of 5 pairs, 10 s apart; 75 single pairs where 5 pairs do not fit in 10 s."""
    if 4 * 1000.0 / freq + abs(dt) < 10_000.0:
        return _trains(dt, freq, 5, 15, 10_000.0)
    return _pairs(dt, SJOSTROM_REGULAR_PAIRS, freq)


WITTENBERG_WANG_FREQ = 5.0
WITTENBERG_WANG_PAIRS = 200
WITTENBERG_WANG_BURST_INTERVAL = 11.5


def _wittenberg_wang2006_pairs(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("dt_ms", "dW", "sterr"))
    dts = table.numbers("dt_ms")
    specs = tuple(_pairs(dt, WITTENBERG_WANG_PAIRS, WITTENBERG_WANG_FREQ) for dt in dts)
    return Dataset(
        name="wittenberg_wang2006_pairs",
        modelling=modelling,
        modelling_note=_MODELLINGS["wittenberg_wang2006_pairs"][modelling],
        source=table.source,
        labels=tuple(f"pairs, dt {dt:+g} ms" for dt in dts),
        data=table.numbers("dW"),
        sem=table.numbers("sterr"),
        protocols=tuple(protocol_of(row) for row in specs),
        x=dts,
        x_label="Δt = t_post − t_pre (ms)",
        series=("cells",) * len(dts),
        panel=("pairs",) * len(dts),
        reference="hippocampal_slices",
        curve=lambda i, dt: protocol_of(_pairs(dt, WITTENBERG_WANG_PAIRS, WITTENBERG_WANG_FREQ)),
        specs=specs,
    )


def _wittenberg_wang2006_burst(repetitions: int) -> Callable[[Path, str], Dataset]:
    def load(path: Path, modelling: str) -> Dataset:
        name = f"wittenberg_wang2006_burst{repetitions}"
        table = _Table(path, ("dt2_ms", "dW", "sterr"))
        dts = table.numbers("dt2_ms")

        def spec(dt: float) -> dict[str, str]:
            return _burst(dt, repetitions, WITTENBERG_WANG_FREQ, 2, WITTENBERG_WANG_BURST_INTERVAL, "last")

        specs = tuple(spec(dt) for dt in dts)
        protocols = tuple(protocol_of(row) for row in specs)
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
            curve=lambda i, dt: protocol_of(spec(dt)),
            specs=specs,
        )

    return load


WANG_REPETITIONS, WANG_FREQ = 60, 1.0


def _wang2005(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("protocol", "dt1_ms", "dt2_ms", "T_ms", "dw", "sem"))
    specs, labels = [], []
    for i, row in enumerate(table.rows):
        kind = row["protocol"].strip()
        if kind in ("pre-post-pre", "post-pre-post"):
            dt1, dt2 = table.number(i, "dt1_ms"), table.number(i, "dt2_ms")
            specs.append(_repeated(kind, WANG_REPETITIONS, WANG_FREQ, dt1_ms=dt1, dt2_ms=dt2))
            labels.append(f"{kind} ({dt1:+g}, {dt2:+g})")
        elif kind == "quadruplet":
            T = table.number(i, "T_ms")
            specs.append(_repeated(kind, WANG_REPETITIONS, WANG_FREQ, T_ms=T))
            labels.append(f"quadruplet T {T:+g}")
        elif kind == "pair":
            dt = table.number(i, "dt1_ms")
            specs.append(_pairs(dt, WANG_REPETITIONS, WANG_FREQ))
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
        protocols=tuple(protocol_of(spec) for spec in specs),
        x=np.arange(len(specs), dtype=float),
        x_label="",
        series=kinds,
        panel=("",) * len(specs),
        reference="hippocampal_cultures",
        specs=tuple(specs),
    )


BI_POO_REPETITIONS, BI_POO_FREQ = 60, 1.0
BI_POO_ASSUMED_SEM = 0.2


def _bipoo1998(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("dt_ms", "percent_change"))
    dts = table.numbers("dt_ms")
    specs = tuple(_pairs(dt, BI_POO_REPETITIONS, BI_POO_FREQ) for dt in dts)
    return Dataset(
        name="bipoo1998",
        modelling=modelling,
        modelling_note=_MODELLINGS["bipoo1998"][modelling],
        source=table.source,
        labels=tuple(f"dt {dt:+.1f} ms" for dt in dts),
        data=1.0 + table.numbers("percent_change") / 100.0,
        sem=np.full(dts.shape, BI_POO_ASSUMED_SEM),
        protocols=tuple(protocol_of(row) for row in specs),
        x=dts,
        x_label="Δt = t_post − t_pre (ms)",
        series=("cells",) * len(dts),
        panel=("",) * len(dts),
        curve=lambda i, dt: protocol_of(_pairs(dt, BI_POO_REPETITIONS, BI_POO_FREQ)),
        specs=specs,
    )


def _nevian_sakmann2006(path: Path, modelling: str) -> Dataset:
    table = _Table(path, ("prot_id", "stim_sequence", "intervals_ms", "freq_Hz", "n_rep",
                          "synaptic_gain_after_before", "stderr"))
    specs, x, shapes = [], [], []
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
        freq = table.number(i, "freq_Hz")
        n = int(table.number(i, "n_rep"))
        specs.append({"protocol": "pattern", "pre_ms": times_text(pre), "post_ms": times_text(post),
                      "n_pairs": text_of(n), "freq_hz": text_of(freq)})
        period = 1000.0 / freq
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
        protocols=tuple(protocol_of(spec) for spec in specs),
        x=np.array(x),
        x_label="Δt = t_post1 − t_pre (ms, to the first AP of the 50 Hz burst)",
        series=("cells",) * len(x),
        panel=("",) * len(x),
        curve=curve,
        specs=tuple(specs),
    )


def _markram1997(path: Path, modelling: str) -> Dataset:
    def trains(dt, freq):
        return _trains(dt, freq, 5, 10, 4000.0)

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
