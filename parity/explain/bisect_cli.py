"""`parity bisect`: the subcommand's parser and its thin handler over session.bisect (registered via cli.PLUGGED_COMMANDS)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

EXAMPLES = """examples:
  parity bisect --pair toy-warmup --good v1.2 --bad HEAD
  parity bisect --pair my-trainer --good HEAD~16 --bad HEAD --steps 5 --format json -o bisect.json
  parity bisect --pair my-trainer --side baseline --good abc1234 --bad main --tolerance loss:4ulp

Each revision between --good and --bad (first parents) is checked out in a temporary git worktree, and
the side's command from the pair file (read from the working tree) is run in the same folder of it.
Runs are cached by commit under RUNS_DIR/.cache, so a second bisect re-records nothing; a commit whose
command fails or records nothing is skipped and reported, and its failure is remembered there too
(delete its .failed file to try it again).

Exit 1 when a first bad commit is found, 0 when the bad revision trains like the good one, 2 for an
unknown revision, a good revision that is not an ancestor of the bad one or where the side does not
run, or a missing pair.
"""


def register(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    from parity import cli

    p = sub.add_parser("bisect", help="find the first commit at which a pair's side stops training like a good revision",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES + "\n" + cli.EPILOG)
    p.add_argument("--pair", required=True, help="pair file or bundled pair name: the side's command, cwd, env, seed")
    p.add_argument("--good", required=True, metavar="REV", help="a revision where the side trains as it should")
    p.add_argument("--bad", required=True, metavar="REV", help="a later revision, descended from --good, where it does not")
    p.add_argument("--side", choices=("candidate", "baseline"), default="candidate",
                   help="which side of the pair to bisect (default: candidate)")
    p.add_argument("--repo", metavar="PATH", help="the git repository to bisect (default: the one holding the cwd)")
    p.add_argument("--tolerance", type=cli.parse_tolerance,
                   help=cli.TOLERANCE_HELP + " (default: the pair file's, else exact)")
    cli.add_run_options(p.add_argument)
    cli.add_output_options(p)
    return {"bisect": _cmd_bisect}


def _cmd_bisect(args: argparse.Namespace) -> int:
    from parity import cli, session
    from parity.explain.bisect import MATCHES
    from parity.report.render import emit, to_json_text, without_machine_paths

    result = session.bisect(args.pair, good=args.good, bad=args.bad, side=args.side, repo=args.repo, steps=args.steps,
                            device=args.device, runs_dir=args.runs_dir, tolerance=args.tolerance)
    if args.format == "json":
        text = to_json_text(result.to_json())
    else:
        from parity.report.bisect_report import render_bisect_markdown

        text = render_bisect_markdown(result)
    # Skipped commits name their logs under the runs folder: written from the project root, as reports do.
    emit(without_machine_paths(text, [Path(args.runs_dir) / result.pair]), args.output)
    if result.status == MATCHES:
        print(f"parity: bisect: {args.bad} trains like {args.good} on the {args.side} side: nothing to bisect",
              file=sys.stderr)
        return cli.OK
    first = result.first_bad
    print(f"parity: bisect: first bad commit {first.sha[:12]} {first.subject}", file=sys.stderr)
    return cli.DIFFERENCES
