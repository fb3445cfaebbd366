"""`parity locate`: the subcommand's parser and its thin handler over session.locate (registered via cli.PLUGGED_COMMANDS)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

EXAMPLES = """examples:
  parity locate runs/base runs/cand
  parity locate --pair toy-clip-changed --format json -o locate.json
  parity locate --pair histocc-occpast --repeat --try-settings
  parity locate --pair gpu-histocc-occpast --device cuda --repeat --try-settings -o reports/gpu/histocc-nondeterminism.md
  parity locate runs/base --repeat --step 3 --env CUBLAS_WORKSPACE_CONFIG=:4096:8 --strict-deterministic

Both runs are compared first; the step of their first divergence (or --step K) is then re-run on both sides
from the start, as recorded (command, seed, environment), with deep capture switched on for that step only:
every module's outputs and gradients and every ATen op's inputs, arguments and outputs, digested exactly. The
two op streams are walked in execution order to the first op whose outputs differ, which is named with its
module, phase, shapes and the size of the difference, and diagnosed: same inputs and different outputs (a
nondeterministic kernel or a changed op), a changed call (same tensors, other arguments), another RNG state,
different inputs (the divergence comes from upstream), or a different op sequence (a code change).
--repeat compares the baseline with a second run of itself, to localise nondeterminism. --env,
--strict-deterministic and --try-settings re-run both sides in full under those settings and say whether
the divergence goes away. Deep re-runs go under RUNS_DIR/<pair or adhoc>/locate/.

Exit 1 when a differing op is found, 0 when the runs (or the deep captures of the step) match op for op,
2 for bad input (not a run directory, a step beyond the run) or a side that fails to run.
"""


def register(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    from parity import cli

    p = sub.add_parser("locate", help="name the first module and ATen op whose outputs differ between two runs",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES + "\n" + cli.EPILOG)
    p.add_argument("runs", nargs="*", metavar="RUN", help="BASELINE and CANDIDATE run directories (one with --repeat)")
    p.add_argument("--pair", help="pair file or bundled pair name, instead of run directories")
    p.add_argument("--repeat", action="store_true", help="compare the baseline with a second run of itself")
    p.add_argument("--step", type=cli._non_negative_int, help="the step to capture op by op (default: the first divergence)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="also re-run both sides with this variable set and say whether the divergence goes away (repeatable)")
    p.add_argument("--strict-deterministic", action="store_true",
                   help="also re-run both sides under torch.use_deterministic_algorithms(True) without warn-only")
    p.add_argument("--try-settings", action="store_true",
                   help="also re-run both sides under each of: strict deterministic algorithms, "
                        "CUBLAS_WORKSPACE_CONFIG=:4096:8, NVIDIA_TF32_OVERRIDE=0")
    p.add_argument("--jobs", type=cli._positive_int, default=2,
                   help="re-runs at a time (default: 2, the two sides together; 1 runs them one after the other)")
    cli.add_run_options(p.add_argument)
    cli.add_output_options(p)
    return {"locate": _cmd_locate}


def _cmd_locate(args: argparse.Namespace) -> int:
    from parity import cli, session
    from parity.exceptions import UsageError
    from parity.report.render import emit, to_json_text, without_machine_paths

    if args.pair is not None and args.runs:
        raise UsageError("give run directories or --pair NAME, not both")
    if args.pair is None and len(args.runs) != (1 if args.repeat else 2):
        raise UsageError("give BASELINE and CANDIDATE run directories, BASELINE with --repeat, or --pair NAME")
    baseline, candidate = (args.runs + [None, None])[:2]
    result = session.locate(args.pair, baseline=baseline, candidate=candidate, repeat=args.repeat, step=args.step,
                            steps=args.steps, device=args.device, runs_dir=args.runs_dir, env=args.env,
                            strict_deterministic=args.strict_deterministic, try_settings=args.try_settings,
                            jobs=args.jobs, invocation=cli._invocation("locate"))
    if args.format == "json":
        text = to_json_text(result.to_json())
    else:
        from parity.report.locate_report import render_locate_markdown

        text = render_locate_markdown(result)
    emit(without_machine_paths(text, [*result.runs, args.runs_dir]), args.output)
    if not result.located:
        print(f"parity: locate: no differing op ({'step ' + str(result.step) if result.step is not None else 'no divergence'})",
              file=sys.stderr)
        return cli.OK
    loc = result.deep.location
    print(f"parity: locate: step {result.step}: {loc.record.name or loc.record.kind} in "
          f"{loc.record.module if loc.record.module is not None else '(outside modules)'}, {loc.record.phase}: "
          f"{loc.explanation}", file=sys.stderr)
    return cli.DIFFERENCES
