"""Command line: a thin shell over parity.session. Exit 0 as expected, 1 differences, 2 bad input/setup."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from parity import session
from parity.checks.base import Tolerance
from parity.exceptions import ConfigError, ParityError
from parity.pairs import parse_tolerance_value
from parity.report.render import check_output_file, emit, to_json_text, without_machine_paths
from parity.results import ReportResult
from parity.trace import schema
from parity.trace.reader import load_run

OK, DIFFERENCES, INVALID = 0, 1, 2
TOLERANCE_HELP = "loss:REL | loss:N%% | loss:Nulp | loss:bits or loss:0 (exact, the default); finite and >= 0"
#: README section on options and their values, for errors about the command line itself.
OPTIONS_DOCS = "README.md#commands"
EPILOG = ("Exit codes: 0 as expected / identical / exact, 1 differences found (a gate failed, a resume is not exact), "
          "2 invalid input or setup.")


def parse_tolerance(text: str) -> Tolerance:
    """`loss:1e-6` (relative), `loss:0.01%`, `loss:4ulp`, or `loss:bits` / `loss:0` (exact, the default)."""
    field, _, value = text.partition(":")
    if field != "loss" or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: write loss:REL, loss:N%, loss:Nulp or loss:bits")
    try:
        return parse_tolerance_value(value)  # the syntax a pair file's [tolerance] uses too
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= {low}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write split points as integers, e.g. 8,16") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: split points must be positive integers, e.g. 8,16")
    return values


def _output_file(text: str) -> str:
    """-o: checked while parsing, so that a bad path fails before anything (plots included) is rendered."""
    if text != "-":
        try:
            check_output_file(text)
        except ParityError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _run_directory(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, not a run directory; give a directory to record into")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {existing} is a file, so no directory can be created under it")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: `parity: error: ...`, exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format (default: md)")
    p.add_argument("-o", "--output", metavar="FILE", type=_output_file,
                   help="write here atomically instead of stdout ('-' = stdout); markdown puts its PNG plots beside it")


def add_run_options(addoption: Callable[..., Any], prefix: str = "", *, runs_dir: str = "runs", steps: bool = True) -> None:
    """How pair sides run: `--steps`, `--device`, `--runs-dir` here, `--parity-steps` ... under pytest.

    `addoption` is `ArgumentParser.add_argument` or pytest's `addoption`; the pytest plugin keeps its
    runs under runs/pytest, apart from the command line's."""
    if steps:
        addoption(f"--{prefix}steps", type=_positive_int, help="step budget for runnable sides (default: the pair file's)")
    addoption(f"--{prefix}device", choices=("cpu", "cuda"), default="cpu", help="device for runnable sides (default: cpu)")
    addoption(f"--{prefix}runs-dir", default=runs_dir, help=f"where recorded runs are kept (default: {runs_dir}/)")


def add_golden_options(addoption: Callable[..., Any], prefix: str = "", *, auto: bool = False) -> None:
    """Gate against stored goldens: `--golden`/`--update-golden` here, `--parity-golden`... under pytest.

    `auto`: goldens are used where stored by default (the pytest items), and `--no-golden` turns that off."""
    addoption(f"--{prefix}golden", action="store_true",
              help="run only the candidate and compare it with the pair's stored golden for this environment "
                   "(a missing golden is created and the gate fails that first time)")
    if auto:
        addoption(f"--{prefix}no-golden", action="store_true",
                  help="record both sides of every pair even where a golden of this environment is stored "
                       "(default: use it, and record the baseline only where none is stored)")
    addoption(f"--{prefix}update-golden", action="store_true",
              help="re-record the baseline, rewrite its golden on purpose and print what changed per channel")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parity", description="Differential testing for PyTorch training code.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND", help="what to do (COMMAND --help for more)")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("record", help="run a training command and record a per-step trace", formatter_class=fmt,
                       epilog="example:\n  parity record --out runs/base --seed 0 -- python train.py --lr 1e-3\n\n" + EPILOG)
    p.add_argument("--out", required=True, type=_run_directory, help="run directory to create (one trace-rank<N>.jsonl per process)")
    p.add_argument("--seed", type=_non_negative_int, help="seed Python, NumPy, torch and PYTHONHASHSEED before the trainer starts")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (warn-only) + CUBLAS_WORKSPACE_CONFIG")
    p.add_argument("--level", default=schema.LEVEL_FULL, help="capture level: full (default), every:N, minimal")
    p.add_argument("--force", action="store_true", help="replace traces already in --out")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")

    p = sub.add_parser("compare", help="compare two recorded runs step by step", formatter_class=fmt,
                       epilog="example:\n  parity compare runs/base runs/cand --format json\n\n" + EPILOG)
    p.add_argument("baseline", help="run directory (or trace file) of the reference run")
    p.add_argument("candidate", help="run directory (or trace file) of the modified run")
    p.add_argument("--repeat", metavar="DIR", help="a second recording of the baseline: measure its noise floor")
    p.add_argument("--tolerance", type=parse_tolerance, help=TOLERANCE_HELP + " (default: the pair file's, else exact)")
    p.add_argument("--rank", type=_non_negative_int, default=0, help="which rank's trace to compare (default 0)")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--all-ranks", action="store_true",
                        help="compare every rank (one world size) and check that each run's replicas agree")
    layout.add_argument("--sharded", action="store_true",
                        help="the same training under two layouts (1 process vs N FSDP2 ranks): mean loss within "
                             "the measured tolerance (or --tolerance), lr exact, layout-independent parameter sums")
    p.add_argument("--ignore-arg", action="append", default=[], help="argparse value to leave out of the config diff")
    add_output_options(p)

    p = sub.add_parser("report", help="record (if needed), compare and write a report", formatter_class=fmt,
                       epilog="examples:\n  parity report --pair toy-warmup -o reports/toy-warmup.md\n"
                              "  parity report --baseline runs/base --candidate runs/cand -o reports/base-vs-cand.md\n"
                              "  parity report --baseline git:HEAD~1 --command python train.py --steps 50\n"
                              "  parity report --pair histocc-occpast --attribute -o reports/histocc-vs-occpast.md\n"
                              "  parity report --pair toy-warmup --explain locate.json --explain bisect.json\n\n" + EPILOG)
    p.add_argument("--pair", help="pair file or bundled pair name (parity/pairs/NAME.toml)")
    p.add_argument("--baseline", help="run directory, trace file, git:REV[:PATH], or . for the working tree "
                                      "(default: the pair's baseline)")
    p.add_argument("--candidate", help="run directory, trace file, git:REV[:PATH], or . for the working tree "
                                       "(default: the pair's candidate)")
    p.add_argument("--command", nargs=argparse.REMAINDER, help="command for git:REV sides when there is no pair (last option)")
    p.add_argument("--repeat", nargs="?", const=True, default=None, metavar="DIR",
                   help="noise floor of the baseline: with --pair or --command, `--repeat` records the baseline twice; "
                        "with run directories, `--repeat DIR` names a second recording of the baseline")
    p.add_argument("--tolerance", type=parse_tolerance, help=TOLERANCE_HELP + " (default: the pair file's, else exact)")
    p.add_argument("--require-clean", action="store_true", help="refuse (exit 2) when tracked files have uncommitted changes")
    p.add_argument("--attribute", action="store_true",
                   help="run `parity attribute` on the same sides and add its finding to an Explanation section")
    p.add_argument("--explain", action="append", default=[], metavar="FILE",
                   help="a JSON result of `parity locate|bisect|attribute --format json -o FILE` to add to the "
                        "Explanation section (repeatable)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="with --attribute: runs recorded in parallel (default 2)")
    add_run_options(p.add_argument)
    add_output_options(p)

    p = sub.add_parser("gate", help="fail (exit 1) when findings differ from what the pair file expects",
                       formatter_class=fmt, epilog="example:\n  parity gate --pair toy-logging\n\n" + EPILOG)
    p.add_argument("--pair", required=True, help="pair file or bundled pair name")
    add_run_options(p.add_argument)
    add_golden_options(p.add_argument)
    p.add_argument("--require-clean", action="store_true", help="refuse (exit 2) when tracked files have uncommitted changes")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: failures on stderr; json: the comparison and the failures on stdout (default: text)")

    p = sub.add_parser("golden", help="store a pair's baseline as its golden for this environment", formatter_class=fmt,
                       epilog="examples:\n  parity golden save --pair toy-logging\n  parity golden update --pair toy-logging\n\n"
                              "`save` refuses to replace an existing golden; `update` rewrites it and prints what changed\n"
                              "per channel, for the pull request.\n" + EPILOG)
    p.add_argument("action", choices=("save", "update"), help="save a new golden, or update (rewrite) an existing one")
    p.add_argument("--pair", required=True, help="pair file or bundled pair name")
    add_run_options(p.add_argument)

    p = sub.add_parser("calibrate", help="record the baseline K times and store the per-step bands it varies by",
                       formatter_class=fmt, epilog="example:\n  parity calibrate --pair toy-logging --repeats 3\n\n"
                       "A bitwise-deterministic baseline gets a zero band. `parity gate --golden` then judges a\n"
                       "candidate EQUIVALENT inside the band, and falls back to it where provenance differs.\n" + EPILOG)
    p.add_argument("--pair", required=True, help="pair file or bundled pair name")
    p.add_argument("--repeats", type=_positive_int, default=3, help="runs of the baseline (default 3; at least 2)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="runs recorded in parallel (default 2)")
    add_run_options(p.add_argument)
    p.add_argument("--format", choices=("text", "json"), default="text", help="text summary on stderr, or json on stdout")

    p = sub.add_parser("resume-check", help="stop at step k, resume in a fresh process, compare with a continuous run",
                       formatter_class=fmt, epilog="examples:\n  parity resume-check --pair toy-resume --controls\n"
                       "  parity resume-check --pair toy-resume --splits 8,16 --format json\n\n" + EPILOG)
    p.add_argument("--pair", required=True, help="pair file (or bundled name) with a [resume] table")
    p.add_argument("--splits", type=_int_list, help="comma-separated split points (default: the pair file's)")
    p.add_argument("--controls", action="store_true", help="also run negative controls: skip one state restore at a time")
    p.add_argument("--no-double", action="store_true", help="skip the stop-resume-stop-resume chain")
    add_run_options(p.add_argument, steps=False)
    add_output_options(p)

    p = sub.add_parser("ablate", help="apply each difference alone to the baseline and revert it alone on the candidate",
                       formatter_class=fmt, epilog="example:\n  parity ablate --pair toy-ablate --jobs 2 -o reports/toy/toy-ablate.md\n\n"
                       "Exit 1 when any single change alters training on its own.\n" + EPILOG)
    p.add_argument("--pair", required=True, help="pair file with [[toggle]] tables (name, baseline args, candidate args)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="runs recorded in parallel (default 2)")
    add_run_options(p.add_argument)
    add_output_options(p)

    p = sub.add_parser("audit", help="classify what a checkpoint saves and what the run used but did not save",
                       formatter_class=fmt, epilog="examples:\n  parity audit runs/a/ckpt/step8.pt --trace runs/a\n"
                       "  parity audit ckpt_epoch2.pt --against other/ckpt_epoch2.pt --format json\n\n"
                       "Exit 1 when --trace shows state the run used that the checkpoint lacks.\n" + EPILOG)
    p.add_argument("checkpoint", help=".pt/.pth/.bin/.ckpt pickle, .safetensors, or a directory of them (HF Trainer)")
    p.add_argument("--trace", help="run directory of the recorded run that wrote the checkpoint")
    p.add_argument("--against", help="a second checkpoint: deepdiff of the two structures")
    p.add_argument("--impact", help="JSON written by `parity resume-check --controls --format json`: attach measured impact")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow unsafe pickles (only for checkpoints you trust)")
    add_output_options(p)
    for module in PLUGGED_COMMANDS:
        COMMANDS.update(importlib.import_module(module).register(sub))
    return parser


def _cmd_record(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    result = session.record(cmd, args.out, seed=args.seed, deterministic=args.deterministic, level=args.level, force=args.force,
                            reraise_signal=False)
    attempt = result.failed_attempt or Path(args.out)
    run = load_run(attempt) if any(attempt.glob(schema.TRACE_GLOB)) else None
    steps = {r: len(t.steps) for r, t in run.traces.items()} if run else {}
    kept = f"; {args.out} still holds the previous run" if result.failed_attempt else ""
    if result.interrupted_by is not None:
        name = signal.Signals(result.interrupted_by).name
        print(f"parity: interrupted by {name}; the trainer was stopped, its partial trace is in {attempt} "
              f"(steps per rank: {steps or 'none'}){kept}", file=sys.stderr)
        return 128 + result.interrupted_by  # the shell's convention for death by a signal
    if result.returncode != 0:
        print(f"parity: the command exited with code {result.returncode}; partial trace kept in {attempt} "
              f"(steps per rank: {steps or 'none'}){kept}", file=sys.stderr)
        return INVALID
    if not run:
        print(f"parity: the command finished but recorded nothing in {args.out}: it never created an optimizer "
              f"(is it a PyTorch training command?), or capture could not start in it (a 'capture could not start' "
              f"line above says why){kept}", file=sys.stderr)
        return INVALID
    print(f"parity: recorded {args.out} in {result.seconds:.1f} s (steps per rank: {steps})", file=sys.stderr)
    return OK


def _exit_for(verdict: str) -> int:
    return {schema.DIFFERENT: DIFFERENCES, schema.NOT_COMPARED: INVALID}.get(verdict, OK)


def _invocation(subcommand: str) -> list[str] | None:
    """The command line after `parity`, for the Reproduce block; None when main() was called in-process."""
    return sys.argv[1:] if sys.argv[1:2] == [subcommand] else None


def _render(result: ReportResult, fmt: str, output: str | None, generated_by: str) -> None:
    if fmt == "json":
        data = result.comparison.to_json()
        if result.explanations:
            data["explanation"] = result.explanations
        emit(without_machine_paths(to_json_text(data), [result.baseline.path, result.candidate.path]), output)
        return
    from parity.report.markdown import MarkdownReporter, ReportContext  # pandas/matplotlib: only for markdown

    pair = result.pair
    ctx = ReportContext(result.baseline, result.candidate, labels=result.labels, commands=result.commands,
                        description=pair.description if pair else "", expectations=result.expectations,
                        title=pair.name if pair else "", generated_by=generated_by, explanations=result.explanations)
    out = Path(output) if output not in (None, "-") else None
    emit(MarkdownReporter().render(result.comparison, ctx, out), output)


def _cmd_compare_ranks(args: argparse.Namespace) -> int:
    if args.repeat:
        raise ConfigError("--repeat: the noise floor is measured on one rank; leave out --all-ranks/--sharded",
                          docs=OPTIONS_DOCS)
    if args.sharded:
        result = session.compare_sharded(args.baseline, args.candidate, tolerance=args.tolerance)
    else:
        result = session.compare_ranks(args.baseline, args.candidate, tolerance=args.tolerance,
                                       ignore_args=frozenset(args.ignore_arg))
    if args.format == "json":
        emit(to_json_text(result.to_json()), args.output)
    else:
        from parity.report.ranks_report import render_ranks_markdown

        emit(render_ranks_markdown(result), args.output)
    return _exit_for(result.verdict)


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.all_ranks or args.sharded:
        return _cmd_compare_ranks(args)
    result = session.report_runs(args.baseline, args.candidate, repeat=args.repeat, rank=args.rank,
                                 ignore_args=frozenset(args.ignore_arg), tolerance=args.tolerance,
                                 invocation=_invocation("compare"))
    _render(result, args.format, args.output, "parity compare")
    return _exit_for(result.comparison.verdict)


def _check_clean(args: argparse.Namespace) -> None:
    if args.require_clean:
        from parity.sides import require_clean_worktree

        require_clean_worktree(Path.cwd())


def _cmd_report(args: argparse.Namespace) -> int:
    _check_clean(args)
    if args.pair is None and not (args.baseline and args.candidate) and not args.command:
        raise ConfigError("give --pair NAME, or --baseline and --candidate (run dirs or git:REV with --command)")
    # `--repeat` alone records a side twice, so it needs a side to record; `--repeat DIR` is a recording.
    if args.repeat is True and args.pair is None and not args.command:
        raise ConfigError("--repeat: there is no baseline command to record twice; with run directories give the "
                          "second recording of the baseline: --repeat DIR", docs=OPTIONS_DOCS)
    result = session.report(args.pair, baseline=args.baseline, candidate=args.candidate, command=args.command,
                            repeat=args.repeat, steps=args.steps, device=args.device, runs_dir=args.runs_dir,
                            tolerance=args.tolerance, invocation=_invocation("report"), explain=args.explain,
                            attribute=args.attribute, jobs=args.jobs)
    _render(result, args.format, args.output, "parity report")
    if result.failures is None:
        return _exit_for(result.comparison.verdict)
    for f in result.failures:
        print(f"parity: {result.pair.name}: {f.check} is {f.actual}, expected {f.expected} (step {f.step}): {f.summary}",
              file=sys.stderr)
    return DIFFERENCES if result.failures else OK


def _cmd_golden(args: argparse.Namespace) -> int:
    result = session.golden_save(args.pair, steps=args.steps, device=args.device, runs_dir=args.runs_dir,
                                 update=args.action == "update")
    if result.change_summary:
        print(result.change_summary)
    print(f"parity: golden of {result.pair} for {result.environment} {'updated' if result.updated else 'saved'} in "
          f"{result.path}", file=sys.stderr)
    return OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    result = session.calibrate(args.pair, repeats=args.repeats, jobs=args.jobs, steps=args.steps, device=args.device,
                               runs_dir=args.runs_dir)
    if args.format == "json":
        emit(to_json_text(result.to_json()), None)
    widths = ", ".join(f"{k} {v:.3g}" for k, v in result.widths.items())
    what = "bitwise deterministic (zero band)" if result.deterministic else f"not deterministic: band widths {widths}"
    print(f"parity: {result.pair} baseline over {result.repeats} runs on {result.environment}: {what}; bands in "
          f"{result.path}", file=sys.stderr)
    return OK


def _cmd_gate(args: argparse.Namespace) -> int:
    _check_clean(args)
    result = session.gate(args.pair, steps=args.steps, device=args.device, runs_dir=args.runs_dir,
                          golden=args.golden or None, update_golden=args.update_golden)
    if result.golden and result.golden.change_summary:
        print(result.golden.change_summary)
    name, c = result.pair.name, result.comparison
    if args.format == "json":
        emit(to_json_text(result.to_json()), None)
    for f in result.failures:
        print(f"FAIL {name}: {f.check}: expected {f.expected}, got {f.actual} at step {f.step}: {f.summary}", file=sys.stderr)
    if result.failures and c.first_divergence:
        fd = c.first_divergence
        print(f"first divergence: step {fd['step']}, channel {fd['channel']}: {fd['diagnosis']}", file=sys.stderr)
    if result.passed:
        print(f"parity: gate {name} passed (verdict {c.verdict})", file=sys.stderr)
    return OK if result.passed else DIFFERENCES


def _cmd_resume_check(args: argparse.Namespace) -> int:
    result = session.resume_check(args.pair, splits=args.splits, controls=args.controls, double=not args.no_double,
                                  runs_dir=args.runs_dir, device=args.device)
    if args.format == "json":
        emit(to_json_text(result.to_json()), args.output)
    else:
        from parity.report.resume_report import render_resume_markdown

        emit(render_resume_markdown(result, ["parity " + " ".join(sys.argv[1:])]), args.output)
    return OK if result.exact else DIFFERENCES


def _cmd_ablate(args: argparse.Namespace) -> int:
    result = session.ablate(args.pair, runs_dir=args.runs_dir, steps=args.steps, device=args.device, jobs=args.jobs)
    if args.format == "json":
        emit(to_json_text(result.to_json()), args.output)
    else:
        from parity.report.ablation_report import render_ablation_markdown

        emit(render_ablation_markdown(result, ["parity " + " ".join(sys.argv[1:])]), args.output)
    return DIFFERENCES if any(t.applied.verdict == schema.DIFFERENT for t in result.toggles) else OK


def _cmd_audit(args: argparse.Namespace) -> int:
    import json

    from parity import audit as audit_api

    loaded = audit_api.load_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
    result = audit_api.classify(loaded)
    if args.trace:
        result = audit_api.compare_with_trace(result, load_run(args.trace).primary)
    if args.impact:
        try:
            controls = json.loads(Path(args.impact).read_text())["controls"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"--impact {args.impact}: not a resume-check JSON with 'controls' ({exc})") from None
        result = audit_api.attach_impact(result, controls)
    against = None
    if args.against:
        against = audit_api.diff_checkpoints(loaded, audit_api.load_checkpoint(args.against, trust=args.trust_checkpoint))
    if args.format == "json":
        data = audit_api.audit_to_json(result)
        if against is not None:
            data["against"] = {"checkpoint": args.against, "differences": against}
        emit(to_json_text(data), args.output)
    else:
        reproduce = "\n".join(["", "## Reproduce", "", "```bash", "parity " + " ".join(sys.argv[1:]), "```", ""])
        emit(audit_api.render_audit_markdown(result, against) + reproduce, args.output)
    missing = [c for c in result.categories if c.status == audit_api.NOT_SAVED and c.used]
    return DIFFERENCES if missing else OK


#: Subcommands that live in their own modules. Each module's `register(sub)` adds its parsers to the
#: subparsers `sub` and returns {name: handler(args) -> exit code}; it must import nothing heavy at
#: module level (torch, pandas), because every `parity` invocation builds the whole parser.
PLUGGED_COMMANDS: tuple[str, ...] = ("parity.explain.bisect_cli", "parity.features.cli", "parity.explain.locate_cli", "parity.explain.attribute_cli")

COMMANDS = {"ablate": _cmd_ablate, "audit": _cmd_audit, "record": _cmd_record, "compare": _cmd_compare, "report": _cmd_report, "gate": _cmd_gate,
            "resume-check": _cmd_resume_check, "golden": _cmd_golden, "calibrate": _cmd_calibrate}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.subcommand](args)
    except ParityError as exc:
        # One line, whatever the message holds: callers grep stderr, and exit 2 promises a single reason.
        message = " ".join(str(exc).split())
        print(f"parity: error: {message} (see {exc.docs})", file=sys.stderr)
        return INVALID
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return INVALID


def run() -> None:
    """Console entry point: like `sys.exit(main())`, minus the interpreter's teardown.

    Freeing the decoded records of two 100k-step traces one object at a time takes about half a
    second at exit and changes nothing; output is flushed first, and nothing else is pending."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
