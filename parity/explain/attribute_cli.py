"""`parity attribute`: the subcommand's parser and its thin handler over session.attribute (registered via cli.PLUGGED_COMMANDS)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

EXAMPLES = """examples:
  parity attribute --pair histocc-occpast
  parity attribute --pair nsd-baseline-vs-run11 --jobs 2 -o reports/nsd-attribution.md
  parity attribute runs/base runs/cand --format json -o attribution.json

Every setting that differs between the two runs (argparse values, keys of config objects such as
TrainingArguments) is set back to the baseline's value on the candidate's command line, alone, then all
together; a setting only the candidate has is set to its off value (False, 0). The options come from the
parser's recorded option table (--opt value, --opt=value, flags, --no-x); a setting no option writes is
reported as not on the command line, never guessed. Each side is recorded twice for its noise floor, and
no setting whose effect is within the candidate's own noise is blamed. Runs are parallel (--jobs) and
cached like `parity ablate`. With run directories, their run.json give the commands.

Exit 1 when a setting changes training alone or a divergence is left with every setting set back,
0 when the settings change nothing and nothing is left.
"""


def register(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    from parity import cli

    p = sub.add_parser("attribute", help="set each differing setting back on the candidate: which ones change training",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES + "\n" + cli.EPILOG)
    p.add_argument("runs", nargs="*", metavar="RUN", help="baseline and candidate run directories (or give --pair)")
    p.add_argument("--pair", help="pair file or bundled pair name (parity/pairs/NAME.toml)")
    p.add_argument("--jobs", type=cli._positive_int, default=2, help="runs recorded in parallel (default 2)")
    cli.add_run_options(p.add_argument)
    cli.add_output_options(p)
    return {"attribute": _cmd_attribute}


def _cmd_attribute(args: argparse.Namespace) -> int:
    from parity import cli, session
    from parity.exceptions import ConfigError, UsageError
    from parity.report.render import emit, to_json_text, without_machine_paths

    if not (args.pair is not None and not args.runs or args.pair is None and len(args.runs) == 2):
        raise ConfigError("give --pair NAME, or two run directories A B (not both)", docs=cli.OPTIONS_DOCS)
    for run in args.runs:
        if not Path(run).is_dir():
            raise UsageError(f"{run}: not a run directory (record one with `parity record`)")
    baseline, candidate = args.runs if args.runs else (None, None)
    result = session.attribute(args.pair, baseline=baseline, candidate=candidate, runs_dir=args.runs_dir,
                               steps=args.steps, device=args.device, jobs=args.jobs)
    if args.format == "json":
        text = to_json_text(result.to_json())
    else:
        from parity.report.attribution_report import render_attribution_markdown

        text = render_attribution_markdown(result)
    emit(without_machine_paths(text, [Path(args.runs_dir)]), args.output)
    return cli.DIFFERENCES if attribution_found_differences(result) else cli.OK


def attribution_found_differences(result: Any) -> bool:
    """A setting changes training alone, or a divergence is left once every setting is set back."""
    left = result.rest if result.rest is not None else result.comparison
    return bool(result.responsible) or left.verdict == "DIFFERENT"
