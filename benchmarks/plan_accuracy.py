"""tracekit plan's uncalibrated predictions against public measured figures.

Usage (from the repo root):

    .venv/bin/python benchmarks/plan_accuracy.py              # the table and its summary
    .venv/bin/python benchmarks/plan_accuracy.py --markdown   # the same as a Markdown table
    .venv/bin/python benchmarks/plan_accuracy.py --figures other.json

Each row of `benchmarks/plan_validation.json` (model, precision, GPU, count, layout,
input/output tokens, concurrency, engine and version, source) is predicted by the plan's cost
model with its default constants (no calibration; `analyzers/planning/validation.py`), and
printed with the measured figure and the error (predicted / measured - 1); then the median
and worst absolute error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analyzers.planning import validation

DEFAULT = Path(__file__).with_name("plan_validation.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=DEFAULT, help="validation table (JSON)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    checked = [validation.check(f) for f in validation.load(args.figures)]
    head = ("figure", "engine", "GPUs", "layout", "in/out", "conc", "metric", "measured",
            "predicted", "error")  # fmt: skip
    rows = [
        (c.figure.id, f"{c.figure.engine} {c.figure.engine_version.split(' (')[0]}",
         f"{c.figure.gpus}x {c.figure.gpu}", c.figure.layout.label,
         f"{c.figure.input_tokens}/{c.figure.output_tokens}", str(c.figure.concurrency),
         c.figure.metric, f"{c.figure.value:,.2f}", f"{c.predicted:,.2f}", f"{c.error:+.1%}")
        for c in checked
    ]  # fmt: skip
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
        for r in (head, *rows):
            print("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)))
    mid, worst = validation.summary(checked)
    print(f"\n{len(checked)} figures, uncalibrated: median |error| {mid:.1%}, worst {worst:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
