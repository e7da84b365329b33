"""Data sets as CSV files anyone can write: one row per measurement, with the protocol that
produced it in words and numbers.

The format (UTF-8 text). Lines starting with `#` are comments (the provenance of the data:
they travel with the data set as its `source`); blank lines are skipped. The first other line
is the header. Required columns: `protocol`, `ratio` (weight after / before, 1 = no change)
and `sem` (its standard error, > 0), plus the columns of the protocols used:

| protocol        | columns                                                  |
|-----------------|----------------------------------------------------------|
| `pairs`         | `dt_ms`, `n_pairs`, `freq_hz`                            |
| `burst`         | `dt_ms`, `n_pairs`, `freq_hz`, `n_post`, `interval_ms`, optional `dt_to` |
| `pre-post-pre`  | `dt1_ms`, `dt2_ms`, `n_pairs`, `freq_hz`                 |
| `post-pre-post` | `dt1_ms`, `dt2_ms`, `n_pairs`, `freq_hz`                 |
| `quadruplet`    | `T_ms`, `n_pairs`, `freq_hz`, optional `pair_dt_ms`      |
| `trains`        | `dt_ms`, `freq_hz`, `pairs_per_train`, `n_trains`, `train_period_ms` |
| `pattern`       | `pre_ms`, `post_ms`, `n_pairs`, `freq_hz`                |

- `pairs`: `n_pairs` pre-post pairs with `dt_ms` = t_post - t_pre, at `freq_hz`.
- `burst`: one pre spike and `n_post` post spikes `interval_ms` apart, `dt_ms` measured to the
  burst's `last` spike (default) or its `first` (`dt_to`), repeated `n_pairs` times at `freq_hz`.
- `pre-post-pre`: `dt1_ms` = t_post - t_pre1 (> 0), `dt2_ms` = t_post - t_pre2 (< 0);
  `post-pre-post`: `dt1_ms` = t_post1 - t_pre (< 0), `dt2_ms` = t_post2 - t_pre (> 0)
  (Wang et al. 2005 triplets).
- `quadruplet`: a post-pre pair and a pre-post pair (both `pair_dt_ms` apart, default 5) whose
  centres are `T_ms` apart (Wang et al. 2005).
- `trains`: `n_trains` trains of `pairs_per_train` pairs at `freq_hz`, a train every
  `train_period_ms` (Sjostrom et al. 2001).
- `pattern`: any pattern, the spike times of one repetition in ms separated by `;`
  (e.g. `pre_ms` = `0`, `post_ms` = `10;30;50`), repeated `n_pairs` times at `freq_hz`.

A row leaves empty the columns its protocol does not use. Optional columns: `label` (one
short description per point), `series` (points of one series are joined in plots) and
`panel` (points of one panel share axes). When every row has a `dt_ms` (pairs, bursts,
trains), the plots draw the model against it; otherwise each point is a category.

The smallest file:

    protocol,dt_ms,n_pairs,freq_hz,ratio,sem
    pairs,10,60,1,1.21,0.05
    pairs,-10,60,1,0.83,0.04

Every error names the file, the line and the column, and what would be valid.
"""

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import ca_plast
from ca_plast import Protocol

# protocol -> (required columns, optional columns with their defaults)
KINDS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "pairs": (("dt_ms", "n_pairs", "freq_hz"), {}),
    "burst": (("dt_ms", "n_pairs", "freq_hz", "n_post", "interval_ms"), {"dt_to": "last"}),
    "pre-post-pre": (("dt1_ms", "dt2_ms", "n_pairs", "freq_hz"), {}),
    "post-pre-post": (("dt1_ms", "dt2_ms", "n_pairs", "freq_hz"), {}),
    "quadruplet": (("T_ms", "n_pairs", "freq_hz"), {"pair_dt_ms": "5"}),
    "trains": (("dt_ms", "freq_hz", "pairs_per_train", "n_trains", "train_period_ms"), {}),
    "pattern": (("pre_ms", "post_ms", "n_pairs", "freq_hz"), {}),
}
REQUIRED = ("protocol", "ratio", "sem")
LABELS = ("label", "series", "panel")
_WHOLE = ("n_pairs", "n_post", "pairs_per_train", "n_trains")  # whole numbers >= 1
_POSITIVE = ("freq_hz", "interval_ms", "train_period_ms", "pair_dt_ms")  # numbers > 0
_TIMES = ("pre_ms", "post_ms")  # lists of times separated by ';'
_WORDS = {"dt_to": ("first", "last")}
PROTOCOL_COLUMNS = tuple(dict.fromkeys(c for required, optional in KINDS.values() for c in (*required, *optional)))
COLUMNS = (*REQUIRED[:1], *PROTOCOL_COLUMNS, *REQUIRED[1:], *LABELS)


class TableError(ValueError):
    """A data file that cannot be read: the message names the file, line and column."""


def protocol_of(spec: Mapping[str, str]) -> Protocol:
    """The `ca_plast.Protocol` a row describes (`spec`: column -> text, as in the file; checked
    by `read_table`, ValueError from the builders otherwise)."""
    kind = spec["protocol"]
    required, optional = KINDS[kind]
    value = {**optional, **{c: spec[c] for c in (*required, *optional) if spec.get(c, "") != ""}}

    def number(column: str) -> float:
        return float(value[column])

    def whole(column: str) -> int:
        return int(float(value[column]))

    if kind == "pairs":
        return ca_plast.pairs(number("dt_ms"), whole("n_pairs"), number("freq_hz"))
    if kind == "burst":
        return ca_plast.burst(number("dt_ms"), whole("n_pairs"), number("freq_hz"), n_post=whole("n_post"),
                              interval=number("interval_ms"), reference=value["dt_to"])
    if kind in ("pre-post-pre", "post-pre-post"):
        return ca_plast.triplet(kind, number("dt1_ms"), number("dt2_ms"), whole("n_pairs"), number("freq_hz"))
    if kind == "quadruplet":
        return ca_plast.quadruplet(number("T_ms"), whole("n_pairs"), number("freq_hz"), dt=number("pair_dt_ms"))
    if kind == "trains":
        return ca_plast.trains(number("dt_ms"), number("freq_hz"), pairs_per_train=whole("pairs_per_train"),
                               n_trains=whole("n_trains"), train_period=number("train_period_ms"))
    pre, post = (_times(value[c]) for c in _TIMES)
    return ca_plast.repeated(pre, post, whole("n_pairs"), 1000.0 / number("freq_hz"), name="pattern")


def _times(text: str) -> list[float]:
    return [float(t) for t in text.split(";") if t.strip() != ""]


def text_of(value: float) -> str:
    """A number as the file writes it: whole numbers without a point, others exactly (repr)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def times_text(times: Iterable[float]) -> str:
    return ";".join(text_of(t) for t in times)


def describe(spec: Mapping[str, str]) -> tuple[str, str]:
    """(label, series) of a row without its own: e.g. ("pairs, dt +10 ms", "pairs, 60 at 1 Hz")."""
    kind = spec["protocol"]
    _, optional = KINDS[kind]
    value = {**optional, **{k: v for k, v in spec.items() if v != ""}}
    g = {k: format(float(v), "g") for k, v in value.items() if k not in ("protocol", *_TIMES, *_WORDS, *LABELS)
         and _is_number(v)}
    repeat = f"{g.get('n_pairs', '')} at {g['freq_hz']} Hz"
    if kind == "pairs":
        return f"pairs, dt {float(value['dt_ms']):+g} ms", f"pairs, {repeat}"
    if kind == "burst":
        series = f"pre + {g['n_post']}-AP burst ({g['interval_ms']} ms, dt to the {value['dt_to']} AP), {repeat}"
        return f"burst, dt {float(value['dt_ms']):+g} ms", series
    if kind in ("pre-post-pre", "post-pre-post"):
        return f"{kind} ({float(value['dt1_ms']):+g}, {float(value['dt2_ms']):+g})", kind
    if kind == "quadruplet":
        return f"quadruplet T {float(value['T_ms']):+g}", "quadruplet"
    if kind == "trains":
        series = f"trains of {g['pairs_per_train']} at {g['freq_hz']} Hz, {g['n_trains']} every {g['train_period_ms']} ms"
        return f"trains, dt {float(value['dt_ms']):+g} ms", series
    return f"pattern pre {value['pre_ms']} / post {value['post_ms']}", f"pattern, {repeat}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Row:
    """One checked data row: the protocol's spec (column -> text), ratio, sem, labels, line number."""

    def __init__(self, spec: dict[str, str], ratio: float, sem: float, labels: dict[str, str], line: int):
        self.spec, self.ratio, self.sem, self.labels, self.line = spec, ratio, sem, labels, line


def read_rows(text: str, path: str) -> tuple[list[Row], str]:
    """The checked rows of a data file's `text` and its comment lines (the data's source).

    TableError (one line: `path`, line, column, what is valid) for anything else.
    """
    comments, records = [], []
    header, columns = None, []
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip() == "":
            continue
        if raw.lstrip().startswith("#"):
            comments.append(raw.lstrip().lstrip("#").strip())
            continue
        fields = [f.strip() for f in next(csv.reader([raw]))]
        if header is None:
            header, columns = line, fields
            _check_header(columns, path, line)
            continue
        if fields == columns:
            raise TableError(f"{path}, line {line}: the header is repeated (first on line {header}); "
                             "remove the repeated header line")
        if len(fields) != len(columns):
            raise TableError(f"{path}, line {line}: {len(fields)} fields, but the header (line {header}) has "
                             f"{len(columns)} columns")
        records.append((line, dict(zip(columns, fields))))
    if header is None:
        raise TableError(f"{path}: no header line; the file must start (after # comments) with a header such as "
                         f"{','.join(('protocol', *KINDS['pairs'][0], 'ratio', 'sem'))}")
    if not records:
        raise TableError(f"{path}: no data rows after the header (line {header})")
    return [_row(record, columns, path, line) for line, record in records], "\n".join(c for c in comments if c)


def _check_header(columns: list[str], path: str, line: int) -> None:
    for i, column in enumerate(columns):
        if column == "":
            raise TableError(f"{path}, line {line}: column {i + 1} of the header has no name")
        if column in columns[:i]:
            raise TableError(f"{path}, line {line}: column {column!r} appears twice in the header")
        if column not in COLUMNS:
            raise TableError(f"{path}, line {line}: unknown column {column!r}; valid columns: {', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise TableError(f"{path}, line {line}: missing column(s) {', '.join(missing)}; required: {', '.join(REQUIRED)} "
                         "and the columns of the protocols used")


def _row(record: dict[str, str], columns: list[str], path: str, line: int) -> Row:
    def fail(column: str, what: str) -> TableError:
        return TableError(f"{path}, line {line}, column {column!r}: {what}")

    kind = record["protocol"]
    if kind not in KINDS:
        raise fail("protocol", f"unknown protocol {kind!r}; valid protocols: {', '.join(KINDS)}")
    required, optional = KINDS[kind]
    for column in required:
        if column not in columns:
            raise TableError(f"{path}, line {line}: protocol {kind!r} needs column {column!r} (it uses "
                             f"{', '.join(required)}), which the header lacks")
        if record[column] == "":
            raise fail(column, f"empty; protocol {kind!r} needs {', '.join(required)}")
    for column in PROTOCOL_COLUMNS:
        if column in columns and record[column] != "" and column not in required and column not in optional:
            raise fail(column, f"not used by protocol {kind!r} (it uses {', '.join((*required, *optional))}); "
                               "leave it empty")
    spec = {"protocol": kind}
    for column in (*required, *optional):
        if record.get(column, "") == "":
            continue
        text = record[column]
        if column in _WORDS:
            if text not in _WORDS[column]:
                raise fail(column, f"{text!r} is not valid; valid: {', '.join(_WORDS[column])}")
        elif column in _TIMES:
            try:
                times = _times(text)
            except ValueError:
                times = None
            if not times or not all(math.isfinite(t) for t in times):
                raise fail(column, f"{text!r} is not a list of spike times in ms separated by ';' (e.g. 0;10;20)")
        else:
            _number(text, column, fail)
            value = float(text)
            if column in _WHOLE and (value < 1 or not value.is_integer()):
                raise fail(column, f"must be a whole number >= 1, got {text!r}")
            if column in _POSITIVE and value <= 0:
                raise fail(column, f"must be > 0, got {text!r}")
        spec[column] = text
    ratio = _number(record["ratio"], "ratio", fail)
    sem = _number(record["sem"], "sem", fail)
    if ratio <= 0:
        raise fail("ratio", f"must be > 0 (weight after / before; 1 = no change), got {record['ratio']!r}")
    if sem <= 0:
        raise fail("sem", f"must be > 0 (the standard error of the ratio), got {record['sem']!r}")
    try:
        protocol_of(spec)
    except ValueError as error:
        raise TableError(f"{path}, line {line}: protocol {kind!r}: {error}") from None
    return Row(spec, ratio, sem, {c: record[c] for c in LABELS if record.get(c, "") != ""}, line)


def _number(text: str, column: str, fail: Callable[[str, str], TableError]) -> float:
    if text == "":
        raise fail(column, "empty; a number is needed")
    try:
        value = float(text)
    except ValueError:
        raise fail(column, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise fail(column, f"must be a finite number, got {text!r}")
    return value


def write_rows(specs: Sequence[Mapping[str, str]], ratio: Iterable[float], sem: Iterable[float],
               labels: Sequence[Mapping[str, str]], source: str) -> str:
    """The file's text for rows of protocol `specs` (column -> text), ratios, errors and labels."""
    used = {c for spec in specs for c in spec if c != "protocol"}
    label_columns = [c for c in LABELS if any(c in entry for entry in labels)]
    columns = ["protocol", *(c for c in PROTOCOL_COLUMNS if c in used), "ratio", "sem", *label_columns]
    out = io.StringIO()
    for line in source.splitlines():
        out.write(f"# {line}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for spec, r, e, entry in zip(specs, ratio, sem, labels):
        values = {**spec, "ratio": text_of(r), "sem": text_of(e), **entry}
        writer.writerow([values.get(c, "") for c in columns])
    return out.getvalue()


def read_file(path: Path | str) -> tuple[list[Row], str]:
    """`read_rows` of the file at `path` (TableError naming it when it cannot be read)."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TableError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise TableError(f"{shown}: is a folder, not a data file") from None
    except UnicodeDecodeError as error:
        raise TableError(f"{shown}: not UTF-8 text (byte {error.start}); save it as UTF-8 CSV") from None
    except OSError as error:
        raise TableError(f"{shown}: cannot be read ({error.strerror or error})") from None
    return read_rows(text, shown)
