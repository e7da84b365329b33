"""`ca-plast compare`: fits of the same data side by side (information criteria, cross-validated error).

    ca-plast compare DIR_OR_FIT_JSON DIR_OR_FIT_JSON [...]
"""

import json
from pathlib import Path

from ca_plast._arguments import UsageError

DESCRIPTION = """\
Compare fits of the same data (the fit.json files that `ca-plast fit` wrote, or their
folders): mean z^2, AIC and BIC (sum z^2 plus a penalty per free parameter; differences from
the best fit) and, where the fits were run with --cv, the mean z^2 on held-out points.
Use it to choose between rules, calcium models or sets of free parameters."""

EXAMPLES = """\
examples:
  ca-plast fit --dataset sjostrom2001 --init DP --free theta_p,theta_d --cv 5 --out results/two
  ca-plast fit --dataset sjostrom2001 --init DP --cv 5 --out results/ten
  ca-plast compare results/two results/ten"""


def add_arguments(parser) -> None:
    parser.add_argument("fits", nargs="+", metavar="FIT", help="fit.json files or the folders holding them (two or more)")


def run(args, interrupts) -> int:
    from ._comparison import compare

    if len(args.fits) < 2:
        raise UsageError("ca-plast compare: give at least two fits")
    records = {}
    for text in args.fits:
        path = Path(text)
        path = path / "fit.json" if path.is_dir() else path
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"ca-plast compare: cannot read {str(path)!r} as a fit.json "
                             f"({getattr(error, 'strerror', None) or error})") from None
        if not isinstance(record, dict) or "model_comparison" not in record or "data" not in record:
            raise UsageError(f"ca-plast compare: {str(path)!r} is not a fit.json of this version of ca-plast fit "
                             "(no model_comparison); fit again")
        label = text if text not in records else f"{text} ({len(records)})"
        records[label] = record
    try:
        print(compare(records))
    except ValueError as error:
        raise UsageError(f"ca-plast {error}") from None
    return 0
