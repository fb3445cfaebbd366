"""Resume checks on the toy family: an exact resume, controls that fire, and trainers that forget state."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity import session
from parity.resume.analysis import compare_segment
from parity.resume.runner import ResumeRunner
from parity.exceptions import ConfigError
from parity.trace.reader import load_run

from conftest import REPO, TOY, toy_commands_recorded_in_process

RUNS = REPO / "runs" / "pytest-resume"
# The exact protocol's flags: NumPy/Python-RNG noise and a GradScaler make every kind of state a control can drop matter.
NOISY = dict(warmup=20, extra=', "--aug-noise", "0.05", "--grad-scaler"')


def _protocol(tmp_path, name: str, resume_script: str, *, warmup: int = 0, splits=(8,), double=None, extra: str = ""):
    common = f'"--warmup-steps", "{warmup}", "--steps", "{{stop_at}}", "--save-every", "{{save_at}}", "--ckpt-dir", "{{ckpt_dir}}"{extra}'
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[pair]
name = "{name}"
[resume]
total = 20
splits = {list(splits)}
{"double = " + str(list(double)) if double else ""}
checkpoint = "{{ckpt_dir}}/step{{at}}.pt"
cwd = "{REPO}"
run = ["{{python}}", "{TOY / 'train.py'}", {common}]
resume = ["{{python}}", "{TOY / resume_script}", {common}, "--resume", "{{ckpt}}"]
""")
    return path


@pytest.fixture(scope="module", autouse=True)
def runs_from_scratch_recorded_once():
    """Protocols of this module that share a name and a `run` command record its continuous and stopped runs
    once: only their resumed runs (another resume script) differ. Each is a trainer start (seconds) that would
    otherwise be recorded again, identical, for every protocol."""
    recorded: dict[tuple, tuple[Path, dict]] = {}
    record = ResumeRunner._record

    def record_once(self, label, template, skip=(), **values):
        key = (self.root, label, template, tuple(sorted(values.items())))
        if template is not self.p.run or skip:
            return record(self, label, template, skip, **values)
        if key in recorded and recorded[key][0].is_dir():
            out, metrics = recorded[key]
            self.runs[label], self.metrics[label] = str(out), metrics
            return load_run(out).primary
        trace = record(self, label, template, skip, **values)
        recorded[key] = (Path(self.runs[label]), self.metrics[label])
        return trace

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResumeRunner, "_record", record_once)
        yield


@pytest.fixture
def in_process():
    """Toy runs recorded in this process: what the resume analysis makes of them is the subject here.
    test_controls_that_cannot_fire_say_so records through `parity record` (as do the pairs' resume gates)."""
    with toy_commands_recorded_in_process():
        yield


@pytest.fixture(scope="module")
def exact_with_controls(tmp_path_factory):
    # The double resume starts from the split's own checkpoint, so no extra stopped run is needed.
    path = _protocol(tmp_path_factory.mktemp("p"), "toy-exact", "train.py", double=(8, 12), **NOISY)
    with toy_commands_recorded_in_process():
        return session.resume_check(path, controls=True, runs_dir=RUNS)


def test_exact_resume_and_double_resume(exact_with_controls):
    r = exact_with_controls
    assert r.exact and not r.ignored_resume
    assert [s.exact for s in r.splits] == [True] and [s.exact for s in r.double] == [True, True]
    data = r.to_json()
    assert data["exact"] is True and data["splits"][0]["at"] == 8 and data["splits"][0]["first_divergent_step"] is None


def test_controls_fire_for_restored_state(exact_with_controls):
    by_state = {c["state"]: c for c in exact_with_controls.controls}
    for state in ("optimizer", "scheduler", "rng_torch", "rng_numpy", "rng_python"):
        assert by_state[state]["fired"] and by_state[state]["called"], by_state[state]
        assert by_state[state]["first_divergent_step"] >= 8
    # The scaler's state is restored; whether dropping it matters depends on overflow history, and
    # the control must say which of the two it measured rather than go silent.
    scaler = by_state["grad_scaler"]
    assert scaler["applicable"] and scaler["called"]
    assert scaler["fired"] or "not needed" in scaler["verdict"]
    assert by_state["rng_cuda"]["applicable"] is False  # CPU-only run
    assert by_state["rng_torch"]["loss_rel"]["first"]["rel"] > 0


def test_controls_that_cannot_fire_say_so(tmp_path, monkeypatch):
    # Only the controls asserted on are run (one resumed run instead of five); which kinds apply is still
    # decided by the runner itself.
    applicable = ResumeRunner._applicable
    asserted = {"rng_numpy", "grad_scaler"}
    monkeypatch.setattr(ResumeRunner, "_applicable", lambda self, continuous: {
        kind: why if kind in asserted else "not run by this test" for kind, why in applicable(self, continuous).items()})
    r = session.resume_check(_protocol(tmp_path, "toy-launched", "train.py"), controls=True, double=False, runs_dir=RUNS)
    by_state = {c["state"]: c for c in r.controls}
    # Without --aug-noise the NumPy and Python RNGs are restored but never drawn from.
    assert by_state["rng_numpy"]["called"] and not by_state["rng_numpy"]["fired"]
    assert "not needed" in by_state["rng_numpy"]["verdict"]
    assert by_state["grad_scaler"]["applicable"] is False


# A variant's protocol shares its name and run command with another test's, whose runs from scratch it reuses.
@pytest.mark.parametrize("variant,name,flags,channel,step", [
    ("variants/forgets_optimizer_state.py", "toy-plain", {}, "params", 8),
    ("variants/forgets_scheduler_state.py", "toy-exact", NOISY, "lr", 9),
    ("variants/forgets_rng_state.py", "toy-plain", {}, "loss", 8),
], ids=["optimizer", "scheduler", "rng"])
def test_forgotten_state_is_diagnosed(tmp_path, in_process, variant, name, flags, channel, step):
    r = session.resume_check(_protocol(tmp_path, name, variant, **flags), runs_dir=RUNS)
    split = r.splits[0]
    assert not r.exact and (split.channel, split.first_divergent_step) == (channel, step), split.to_json()
    assert split.diagnosis


def test_ignored_resume_flag_is_reported_as_such(tmp_path, in_process):
    r = session.resume_check(_protocol(tmp_path, "toy-plain", "variants/ignores_resume.py"), runs_dir=RUNS)
    assert r.ignored_resume and r.splits[0].started_from_scratch
    assert "ignores the resume flag" in r.splits[0].diagnosis


def test_protocol_validation(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[resume]\ntotal = 10\nsplits = [12]\nrun = ["x"]\nresume = ["y"]\ncheckpoint = "c"\n')
    with pytest.raises(ConfigError, match="strictly between 0 and total"):
        session.resume_check(bad)
    bad.write_text("[pair]\nname = 'x'\n")
    with pytest.raises(ConfigError, match="no \\[resume\\] table"):
        session.resume_check(bad)
