"""`parity.checks.ranks`: replica consistency, every rank of two runs, and a sharded run against an unsharded one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from parity import session
from parity.capture.digest import PendingDigest, hex64, resolve_all
from parity.checks.base import Tolerance
from parity.checks.ranks import SHARDED_LOSS_TOLERANCE, check_rank_consistency, check_sharded, compare_each_rank
from parity.exceptions import ConfigError
from parity.trace import schema
from parity.trace.reader import Run, Trace, load_run

ROOT = Path(__file__).resolve().parent.parent
TRAINER = ROOT / "tests" / "distributed" / "fsdp_train.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _element_sums(*tensors: torch.Tensor) -> list[int]:
    pending = PendingDigest(list(tensors), weighted=False, elements=True)
    resolve_all([pending])
    return pending.sums


def _step(i: int, params: str, sums: dict[str, int] | None = None, loss: float = 1.0, lr: float = 0.01) -> dict:
    step = {"type": schema.STEP, "step": i, "events": [], schema.F_PARAMS: params, schema.F_OPTIM_STATE: "s",
            schema.F_LOSSES: [{"bits": "0", "dtype": "float32", "value": loss}], schema.F_GROUPS: [{"lr": lr}]}
    if sums is not None:
        step[schema.F_PARAM_SUMS] = {k: hex64(v) for k, v in sums.items()}
    return step


def _run(*ranks: list[dict], layout: dict | None = None) -> Run:
    """One trace per argument (that rank's steps); `layout` is every rank's param_layout meta record."""
    traces = {}
    for r, steps in enumerate(ranks):
        header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": r}
        meta = {schema.META_PARAM_LAYOUT: layout} if layout is not None else {}
        traces[r] = Trace(path=Path(f"trace-rank{r}.jsonl"), header=header, meta=meta, steps=steps)
    return Run(Path("run"), traces)


SHARD = {"w": {schema.LAYOUT_PLACEMENTS: ["S(0)"], schema.LAYOUT_SHAPE: [5], schema.LAYOUT_LOCAL_SHAPE: [3]}}


# -- layout-independent sums ----------------------------------------------------------------------
def test_element_sums_of_uneven_shards_add_up_to_the_whole() -> None:
    # 5 float32 rows cut 3 + 2, as FSDP2 cuts the head: 8-byte words would straddle the cut, elements never do.
    full = torch.randn(5, 3)
    parts = _element_sums(full[:3], full[3:])
    assert (sum(parts) & (1 << 64) - 1) == _element_sums(full)[0]
    nudged = full.clone()
    nudged[4, 2] = torch.nextafter(nudged[4, 2], torch.tensor(float("inf")))
    assert _element_sums(nudged)[0] != _element_sums(full)[0]


# -- replica consistency -------------------------------------------------------------------------
def test_consistency_identical_replicas() -> None:
    steps = [_step(i, f"p{i}") for i in range(3)]
    f = check_rank_consistency(_run(steps, list(steps)))
    assert f.status == schema.IDENTICAL and f.evidence["steps_compared"] == 3


def test_consistency_names_the_step_the_rank_and_the_parameter() -> None:
    good = [_step(i, f"p{i}", {"w": i, "b": 7}) for i in range(4)]
    bad = good[:2] + [_step(i, f"q{i}", {"w": i + 1, "b": 7}) for i in (2, 3)]
    f = check_rank_consistency(_run(good, good, bad))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    assert f.evidence["odd_ranks"] == [2] and f.evidence["reference_ranks"] == [0, 1]
    assert f.evidence["parameters"] == ["w"] and "rank 2" in f.summary


def test_consistency_not_compared() -> None:
    assert check_rank_consistency(_run([_step(0, "p")])).status == schema.NOT_COMPARED
    sharded = _run([_step(0, "a", {"w": 1})], [_step(0, "b", {"w": 2})], layout=SHARD)
    f = check_rank_consistency(sharded)
    assert f.status == schema.NOT_COMPARED and "sharded" in f.summary


# -- every rank of two runs -----------------------------------------------------------------------
def test_world_size_mismatch_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs one world size"):
        compare_each_rank(_run([_step(0, "p")]), _run([_step(0, "p")], [_step(0, "p")]))


def test_cli_maps_all_ranks_and_sharded_to_the_facade(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from parity import cli
    from parity.results import RanksResult

    seen = {}

    def fake(name: str):
        def call(baseline, candidate, **options):
            seen[name] = (baseline, candidate, options)
            return RanksResult({}, {"candidate": check_rank_consistency(_run([_step(0, "p")], [_step(0, "q")]))})
        return call

    monkeypatch.setattr(cli.session, "compare_ranks", fake("ranks"))
    monkeypatch.setattr(cli.session, "compare_sharded", fake("sharded"))
    assert cli.main(["compare", "A", "B", "--all-ranks", "--ignore-arg", "out"]) == 1
    assert seen["ranks"][:2] == ("A", "B") and seen["ranks"][2]["ignore_args"] == frozenset({"out"})
    assert "replicas differ after step 0" in capsys.readouterr().out
    assert cli.main(["compare", "A", "B", "--sharded", "--tolerance", "loss:1e-5", "--format", "json"]) == 1
    assert seen["sharded"][2]["tolerance"] == Tolerance(rel=1e-5)
    assert cli.main(["compare", "A", "B", "--sharded", "--repeat", "C"]) == 2
    assert "--repeat" in capsys.readouterr().err


# -- sharded against unsharded --------------------------------------------------------------------
def test_sharded_sums_match_the_unsharded_run() -> None:
    single = _run([_step(0, "x", {"w": 10}, loss=2.0)])
    sharded = _run([_step(0, "a", {"w": 4}, loss=1.5)], [_step(0, "b", {"w": 6}, loss=2.5)], layout=SHARD)
    f = check_sharded(single, sharded)
    assert f.status == schema.IDENTICAL, f.summary
    # A replicated parameter (no layout) is one copy: summing it over ranks would count it twice.
    assert check_sharded(single, _run([_step(0, "a", {"w": 10}, loss=2.0)], [_step(0, "a", {"w": 10}, loss=2.0)]))\
        .status == schema.IDENTICAL


def test_sharded_lr_and_loss_differences() -> None:
    single = _run([_step(0, "x", {"w": 10}, loss=2.0)])
    other_lr = _run([_step(0, "a", {"w": 4}, loss=2.0, lr=0.02)], [_step(0, "b", {"w": 6}, loss=2.0, lr=0.02)],
                    layout=SHARD)
    assert check_sharded(single, other_lr).status == schema.DIFFERENT
    drift = _run([_step(0, "a", {"w": 5}, loss=2.0 + 1e-7)], [_step(0, "b", {"w": 6}, loss=2.0)], layout=SHARD)
    assert check_sharded(single, drift).status == schema.EQUIVALENT
    assert check_sharded(single, drift, Tolerance(rel=1e-9)).status == schema.DIFFERENT


# -- recorded runs (2 gloo processes on CPU) --------------------------------------------------------
def _record(tmp_path_factory: pytest.TempPathFactory, name: str, command: list[str]) -> Path:
    out = tmp_path_factory.mktemp("ranks") / name
    result = session.record(command, out, seed=0)
    assert result.returncode == 0, result.log.read_text()[-2000:] if result.log else result
    return out


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory, "ddp", [*TORCHRUN, str(TRAINER), "--ddp"])


@pytest.fixture(scope="module")
def desync(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory, "desync", [*TORCHRUN, str(TRAINER), "--ddp", "--desync-step", "3"])


def _record_single_in_process(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str) -> Path:
    """The trainer on one process, recorded in this one: the checks are the subject, torchrun runs are not."""
    import importlib.util

    import parity

    spec = importlib.util.spec_from_file_location("fsdp_train", TRAINER)
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    out = tmp_path_factory.mktemp("ranks") / name
    with parity.record(out, seed=0):
        trainer.main(list(args))
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record_single_in_process(tmp_path_factory, "single")


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory, "fsdp", [*TORCHRUN, str(TRAINER), "--fsdp"])


def _parity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_ddp_replicas_identical(ddp: Path) -> None:
    result = session.compare_ranks(ddp, ddp)
    assert result.consistency["candidate"].status == schema.IDENTICAL
    assert result.consistency["candidate"].evidence["steps_compared"] == 8
    assert sorted(result.comparisons) == [0, 1] and result.verdict == schema.IDENTICAL


@pytest.mark.slow
def test_desynced_rank_caught_at_its_step(ddp: Path, desync: Path) -> None:
    f = session.compare_ranks(ddp, desync).consistency["candidate"]
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 3
    assert f.evidence["odd_ranks"] == [1] and f.evidence["parameters"] == ["0.weight"]
    done = _parity("compare", str(ddp), str(desync), "--all-ranks", "--format", "json")
    assert done.returncode == 1, done.stderr
    import json

    ranks = {r["rank"]: r for r in json.loads(done.stdout)["ranks"]}
    # Rank 1 carries the nudge from step 3; rank 0 follows one step later, through the all-reduced gradient.
    assert ranks[1]["verdict"] == schema.DIFFERENT and ranks[1]["first_divergence"]["step"] == 3
    assert ranks[0]["verdict"] == schema.DIFFERENT and ranks[0]["first_divergence"]["step"] == 4


@pytest.mark.slow
def test_world_size_mismatch_exits_2_with_one_line(single: Path, ddp: Path) -> None:
    done = _parity("compare", str(single), str(ddp), "--all-ranks")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "needs one world size" in done.stderr


@pytest.mark.slow
def test_fsdp_matches_single_process_within_measured_tolerance(single: Path, fsdp: Path) -> None:
    result = session.compare_sharded(single, fsdp)
    f = result.sharded
    assert f.status in (schema.EQUIVALENT, schema.IDENTICAL), f.summary
    assert f.evidence["worst_rel"] <= SHARDED_LOSS_TOLERANCE.rel
    assert result.consistency["candidate"].status == schema.NOT_COMPARED  # shards legitimately differ
    # Before digests read the local shard, every FSDP2 update was lost to a capture error.
    assert not any(schema.META_CAPTURE_ERROR in t.meta for t in load_run(fsdp).traces.values())


@pytest.mark.slow
def test_ddp_and_fsdp_on_two_ranks_are_bit_identical_across_layouts(ddp: Path, fsdp: Path) -> None:
    # Both add the same two half-batch gradients and halve them (exact): the layout-independent sums agree.
    f = session.compare_sharded(ddp, fsdp).sharded
    assert f.status == schema.IDENTICAL, f.summary


@pytest.mark.slow
def test_changed_lr_caught_across_layouts(tmp_path_factory: pytest.TempPathFactory, fsdp: Path) -> None:
    other = _record_single_in_process(tmp_path_factory, "single-lr", "--lr", "0.011")
    done = _parity("compare", str(other), str(fsdp), "--sharded")
    assert done.returncode == 1, done.stderr
    assert session.compare_sharded(other, fsdp).sharded.first_divergent_step == 0
