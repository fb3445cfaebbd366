"""`config` check: argparse values, optimizer defaults (hard-coded ones too), numerics and env, via deepdiff."""

from __future__ import annotations

from pathlib import Path

from parity.checks.config import check_config, run_config
from parity.trace import schema
from parity.trace.reader import Trace

ADAMW = "torch.optim.adamw.AdamW"


def _trace(args: dict | None = None, betas: tuple[float, float] = (0.9, 0.999), env: dict | None = None,
           numerics: dict | None = None, **header: object) -> Trace:
    meta = {"argparse": {"lr": 0.001, "batch_size": 32, "seed": 0, "out": "/tmp/a", **(args or {})},
            "optimizers": [{"class": ADAMW, "defaults": {"lr": 0.001, "betas": list(betas), "eps": 1e-8,
                                                         "weight_decay": 0.01}, "param_groups": 1, "params": 10}]}
    hdr = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0,
           "seed": 0, "deterministic": True, "level": "full",
           "meta": {"numerics": numerics or {"tf32": False}, "env": env or {"RANK": "0", "OMP_NUM_THREADS": "1"}},
           **header}
    return Trace(path=Path("t.jsonl"), header=hdr, meta=meta)


def _paths(f) -> list[str]:
    return [c["path"] for c in f.evidence["changes"]]


def test_identical() -> None:
    f = check_config(_trace(), _trace())
    assert f.status == schema.IDENTICAL and f.evidence["changes"] == []
    assert f.affects_training is False and f.first_divergent_step is None


def test_changed_argparse_value() -> None:
    f = check_config(_trace(), _trace({"batch_size": 64}))
    assert f.status == schema.DIFFERENT
    assert f.evidence["changes"] == [{"path": "root['argparse']['batch_size']", "baseline": 32, "candidate": 64}]
    assert "['argparse']['batch_size']" in f.summary
    assert f.affects_training is False, "config explains; the measured channels decide"


def test_hard_coded_optimizer_default_is_found() -> None:
    # Same command line, beta2 changed in code: only the optimizer's recorded defaults show it.
    f = check_config(_trace(), _trace(betas=(0.9, 0.95)))
    assert f.status == schema.DIFFERENT
    assert f.evidence["changes"] == [{"path": "root['optimizers'][0]['betas'][1]", "baseline": 0.999,
                                      "candidate": 0.95}]


def test_added_and_removed_arguments() -> None:
    base = _trace()
    cand = _trace({"warmup": 100})
    del cand.meta["argparse"]["seed"]
    changes = {c["path"]: c for c in check_config(base, cand).evidence["changes"]}
    assert changes["root['argparse']['warmup']"]["candidate"] == 100
    assert "added" in changes["root['argparse']['warmup']"]["change"]
    assert changes["root['argparse']['seed']"]["baseline"] == 0
    assert "removed" in changes["root['argparse']['seed']"]["change"]


def test_ignore_args_hides_only_the_named_arguments() -> None:
    base, cand = _trace(), _trace({"out": "/tmp/b", "batch_size": 64})
    f = check_config(base, cand, frozenset({"out"}))
    assert _paths(f) == ["root['argparse']['batch_size']"]
    assert f.evidence["ignored_args"] == ["out"]
    f = check_config(base, cand, frozenset({"out", "batch_size"}))
    assert f.status == schema.IDENTICAL


def test_ignore_args_does_not_hide_optimizer_hyperparameters() -> None:
    base = _trace()
    cand = _trace({"lr": 0.002})
    cand.meta["optimizers"][0]["defaults"]["lr"] = 0.002
    assert _paths(check_config(base, cand, frozenset({"lr"}))) == ["root['optimizers'][0]['lr']"]


def test_numerics_env_and_parity_settings_are_compared() -> None:
    f = check_config(_trace(), _trace(numerics={"tf32": True}, env={"RANK": "0", "OMP_NUM_THREADS": "4"}, seed=1))
    assert _paths(f) == ["root['env']['OMP_NUM_THREADS']", "root['numerics']['tf32']", "root['parity']['seed']"]


def test_rank_variables_are_not_a_difference() -> None:
    f = check_config(_trace(env={"RANK": "0", "LOCAL_RANK": "0"}), _trace(env={"RANK": "1", "LOCAL_RANK": "1"}))
    assert f.status == schema.IDENTICAL


def test_nothing_recorded_on_either_side_is_identical() -> None:
    # Config is explanatory and has no NOT_COMPARED state: with nothing recorded, nothing differs.
    empty = Trace(path=Path("t.jsonl"), header={"type": schema.HEADER})
    assert run_config(empty)["argparse"] == {} and run_config(empty)["optimizers"] == []
    assert check_config(empty, empty).status == schema.IDENTICAL


def test_a_config_dict_found_under_another_name_is_diffed_key_by_key() -> None:
    from parity.checks.config import align_config_objects

    base = {"__main__.CONFIG": {"lr": 0.1, "aug": 0.2, "seed": 0, "out_dir": "a"}}
    fork = {"main:config": {"lr": 0.3, "aug": 0.2, "seed": 0, "out_dir": "a"}}
    assert align_config_objects(base, fork) == {"__main__.CONFIG": {"lr": 0.3, "aug": 0.2, "seed": 0, "out_dir": "a"}}
    unrelated = {"main:opts": {"colour": "red"}}
    assert align_config_objects(base, unrelated) == unrelated


def test_an_alias_of_a_config_already_seen_is_not_a_change() -> None:
    from parity.checks.config import align_config_objects

    base = {"__main__.CONFIG": {"lr": 0.1}}
    fork = {"__main__.CONFIG": {"lr": 0.1}, "main:cfg": {"lr": 0.1}}
    assert align_config_objects(base, fork) == base


def test_a_numerics_flag_recorded_on_one_side_only_is_not_a_change() -> None:
    """A golden saved by an older parity lacks flags capture reads today: unknown is not changed."""
    old = _trace(numerics={"tf32": False})
    new = _trace(numerics={"tf32": False, "cuda.matmul.fp32_precision": "none"})
    assert check_config(old, new).status == schema.IDENTICAL
    changed = _trace(numerics={"tf32": True, "cuda.matmul.fp32_precision": "tf32"})
    assert _paths(check_config(old, changed)) == ["root['numerics']['tf32']"]
