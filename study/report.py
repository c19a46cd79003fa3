"""Command line: `python -m study.report STUDY_DIR` writes the study's report into STUDY_DIR/report/;
`python -m study.report A B ...` compares studies side by side (study/reporting/compare_studies.py).

Works on a finished study, a failed one and one still running (it reads what is on disk); what the
report holds is described in study/reporting/report.py. Only argparse is imported at start-up, so
`--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from study.cli_errors import print_bad_input


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.report",
        description="Write a study's report: the thesis's tables with this study's numbers (Markdown, CSV, "
        "LaTeX), the thesis's numbers beside them (full scale), Lion vs AdamW significance tests, efficiency "
        "figures and training-dynamics plots. Works on running studies too.",
    )
    parser.add_argument(
        "study_dirs",
        nargs="+",
        metavar="STUDY_DIR",
        help="the study directory `python -m study.run` printed; two or more: compare them (the first is the baseline)",
    )
    parser.add_argument(
        "--out", help="where to write the report (default: STUDY_DIR/report); with several studies, compare.md goes there"
    )
    parser.add_argument("--resamples", type=int, default=10_000, help="randomization-test resamples (default 10000)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (a few seconds per model)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from study.reporting.study_data import load_study

    try:
        studies = [load_study(directory) for directory in args.study_dirs]
        if args.resamples < 1:
            raise ValueError(f"--resamples must be at least 1, but got {args.resamples}")
    except ValueError as err:
        return print_bad_input(err)
    if len(studies) > 1:
        return compare(studies, args)
    from study.reporting.report import write_report

    paths = write_report(args.study_dirs[0], out_dir=args.out, n_resamples=args.resamples, plots=not args.no_plots)
    print(paths.summary)
    print(f"\nReport: {paths.markdown}")
    print(f"  tables: {paths.directory / 'tables'} ({len(paths.tables)} files)")
    print(f"  plots:  {paths.directory / 'plots'} ({len(paths.plots)} PNGs)")
    return 0


def compare(studies, args: argparse.Namespace) -> int:
    from study.reporting.compare_studies import comparison_text
    from study.results import write_atomic

    text = comparison_text(studies, n_resamples=args.resamples)
    print(text)
    if args.out:
        from pathlib import Path

        path = write_atomic(Path(args.out) / "compare.md", "```\n" + text + "\n```\n")
        print(f"\nWritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
