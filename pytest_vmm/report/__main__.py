"""``python -m pytest_vmm.report ab|merge|html``: A/B verdicts, shard merging, the HTML page."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_vmm.matrix import markdown_table, text_table
from pytest_vmm.report import ab, merge
from pytest_vmm.report.metrics import read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vmm.report", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p_ab = commands.add_parser("ab", help="compare two metric files (A = baseline, B = candidate); "
                                          "exit status 1 when a metric regressed")
    p_ab.add_argument("a", type=Path, help="baseline samples (JSON lines)")
    p_ab.add_argument("b", type=Path, help="candidate samples (JSON lines)")
    p_ab.add_argument("--threshold", type=float, default=ab.THRESHOLD,
                      help=f"noise threshold on the relative change (default {ab.THRESHOLD:g} = 5%%)")
    p_ab.add_argument("--alpha", type=float, default=ab.ALPHA, help=f"significance level (default {ab.ALPHA:g})")
    p_ab.add_argument("--json", type=Path, metavar="PATH", help="also write the comparisons as JSON")
    p_ab.add_argument("--markdown", action="store_true", help="print a Markdown table (for a CI job summary)")

    p_merge = commands.add_parser("merge", help="merge shard outputs into one matrix, JUnit file and HTML report")
    p_merge.add_argument("shards", type=Path, nargs="+", help="shard output directories (or files)")
    p_merge.add_argument("--out", type=Path, required=True, help="directory for the merged outputs")
    p_merge.add_argument("--summary", type=Path, metavar="PATH",
                         help="append the Markdown matrix to PATH (e.g. $GITHUB_STEP_SUMMARY)")

    p_html = commands.add_parser("html", help="write the HTML report from a matrix JSON and metrics")
    p_html.add_argument("matrix", type=Path, help="matrix JSON (from --vmm-matrix)")
    p_html.add_argument("--metrics", type=Path, nargs="*", default=[], help="metric JSON-lines files")
    p_html.add_argument("--ab", type=Path, help="comparisons JSON (from `ab --json`)")
    p_html.add_argument("-o", "--out", type=Path, required=True, help="the HTML file to write")

    args = parser.parse_args(argv)
    try:
        if args.command == "ab":
            return _ab(args)
        if args.command == "merge":
            return _merge(args)
        return _html(args)
    except (OSError, ValueError) as exc:
        print(f"pytest_vmm.report {args.command}: {exc}", file=sys.stderr)
        return 2


def _ab(args: argparse.Namespace) -> int:
    comparisons = ab.compare(read(args.a), read(args.b), alpha=args.alpha, threshold=args.threshold)
    if not comparisons:
        raise ValueError(f"no samples in {args.a} or {args.b}")
    lines = (markdown_table if args.markdown else text_table)(*ab.table(comparisons))
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "alpha": args.alpha,
                                         "threshold": args.threshold,
                                         "comparisons": [c.to_dict() for c in comparisons]}, indent=2) + "\n")
    regressions = ab.failed(comparisons)
    print(f"{len(regressions)} regression(s) in {len(comparisons)} metric(s) "
          f"(p < {args.alpha:g} and |change| > {args.threshold * 100:g}%)")
    return 1 if regressions else 0


def _merge(args: argparse.Namespace) -> int:
    written = merge.merge_shards(args.shards, args.out)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    if args.summary:
        with args.summary.open("a") as summary:
            summary.write(written["markdown"].read_text() + "\n")
    return 0


def _html(args: argparse.Namespace) -> int:
    from pytest_vmm.report import html

    matrix = json.loads(args.matrix.read_text())
    records = [r for path in args.metrics for r in read(path)]
    comparisons = json.loads(args.ab.read_text())["comparisons"] if args.ab else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(html.render(matrix, records, comparisons, base=args.out.parent))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
