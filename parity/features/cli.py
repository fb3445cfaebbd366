"""`parity features`: the command-line shell over `session.features` (registered through cli.PLUGGED_COMMANDS)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

_EXAMPLES = """examples:
  parity features runs/lm/sample runs/lm/chunked
  parity features --pair lm-sample-vs-chunked --same-stream-pair lm-sample-packed-vs-chunked \
      --throughput reports/lm-throughput-cpu.json -o reports/lm-sample-vs-chunked.md
  parity features runs/a runs/b --format json --no-test-mode

Rows: CLI flags (argparse), files the runs wrote (charts, JSON and their schema, checkpoint sets), metric
keys, what the trace shows (tokenizer, vocabulary, model, loss, optimizer, schedule, dtype), numerics
(same tokens in the same order? same losses?) and the seed's checklist (test mode, charts, checkpoints
saved and resumed, JSON against A's schema, memory). A broken file is a row ("corrupt: why"), not an error.

"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0 seconds")
    return value


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    from parity import cli

    p = sub.add_parser("features", help="feature matrix of two trainers, measured from their runs",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EXAMPLES + cli.EPILOG)
    p.add_argument("a", nargs="?", help="run directory of side A (or give --pair)")
    p.add_argument("b", nargs="?", help="run directory of side B")
    p.add_argument("--pair", help="record both sides of this pair file (or bundled name) as `parity report` does")
    p.add_argument("--no-test-mode", action="store_true", help="do not re-run sides whose CLI has --test")
    p.add_argument("--test-timeout", type=_seconds, default=300.0, help="seconds a --test run may take (default 300)")
    p.add_argument("--no-resume", action="store_true", help="skip the pair's [resume] protocol (resume-check)")
    p.add_argument("--throughput", metavar="FILE", help="JSON a throughput benchmark wrote: shown as its own table")
    p.add_argument("--same-stream-pair", metavar="PAIR",
                   help="a pair of the same two trainers fed one token stream: recorded too, its numerics added as rows")
    cli.add_run_options(p.add_argument)
    cli.add_output_options(p)
    return {"features": _cmd_features}


def _cmd_features(args: argparse.Namespace) -> int:
    from parity import session
    from parity.exceptions import UsageError
    from parity.features.render import render_json, render_markdown
    from parity.report.render import emit

    if args.pair is None and not (args.a and args.b):
        raise UsageError("give two run directories (A B) or --pair NAME")
    if args.pair is not None and (args.a or args.b):
        raise UsageError("give either run directories A B or --pair NAME, not both")
    invocation = sys.argv[1:] if sys.argv[1:2] == ["features"] else None
    matrix = session.features(args.a, args.b, pair=args.pair, steps=args.steps, device=args.device,
                              runs_dir=args.runs_dir, test_mode=not args.no_test_mode, test_timeout=args.test_timeout,
                              resume=not args.no_resume, throughput=args.throughput,
                              same_stream_pair=args.same_stream_pair, invocation=invocation)
    emit(render_json(matrix) if args.format == "json" else render_markdown(matrix), args.output)
    return 0 if matrix.identical else 1
