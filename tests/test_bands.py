"""Calibrated bands: a candidate difference inside what the baseline varies by is EQUIVALENT, beyond it
DIFFERENT; a deterministic baseline gets a zero band and changes nothing."""

from __future__ import annotations

import copy
import json

from parity.checks.bands import Bands, compute_bands
from parity.checks.compare import compare_traces
from parity.report.markdown import MarkdownReporter, ReportContext
from parity.trace import schema
from tests.test_causes import STEPS, _step, _trace


def _noisy(jitter: float) -> object:
    """A baseline run whose loss differs by `jitter` (relative) at every step, params digests too."""
    return _trace([{**_step(i, loss=(2.0 - 0.1 * i) * (1 + jitter)), schema.F_PARAMS: f"p{i}-{jitter}",
                    schema.F_OPTIM_STATE: f"s{i}-{jitter}"} for i in range(STEPS)])


def test_a_deterministic_baseline_has_a_zero_band_and_keeps_differences() -> None:
    bands = compute_bands([_trace(), _trace(), _trace()])
    assert bands.deterministic and bands.width("loss") == 0.0 and all(bands.digests_stable.values())
    c = compare_traces(_trace(), _noisy(1e-7), bands=bands)
    assert c.verdict == schema.DIFFERENT and c.noise["bands"]["deterministic"]


def test_a_candidate_inside_the_baselines_own_band_is_equivalent() -> None:
    bands = compute_bands([_noisy(0.0), _noisy(1e-6), _noisy(-1e-6)])
    assert not bands.deterministic and bands.width("loss") > 0 and not bands.digests_stable["params"]
    c = compare_traces(_noisy(0.0), _noisy(5e-7), bands=bands)
    assert c.finding("loss").status == schema.EQUIVALENT and "inside the band" in c.finding("loss").summary
    assert c.finding("params").status == schema.EQUIVALENT
    assert c.verdict == schema.EQUIVALENT
    assert c.finding("loss").evidence["band"]["steps_outside"] == 0


def test_a_candidate_beyond_the_band_stays_different_and_names_the_step() -> None:
    bands = compute_bands([_noisy(0.0), _noisy(1e-6)])
    cand = _noisy(5e-7)
    cand.steps = copy.deepcopy(cand.steps)
    cand.steps[3] = {**cand.steps[3], schema.F_LOSSES: [_step(3, loss=9.0)[schema.F_LOSSES][0]]}
    c = compare_traces(_noisy(0.0), cand, bands=bands)
    loss = c.finding("loss")
    assert loss.status == schema.DIFFERENT and loss.evidence["band"]["first_outside"]["step"] == 3
    assert c.finding("params").status == schema.DIFFERENT  # a scalar left its band: digests are not excused


def test_bands_round_trip_through_json_and_show_in_the_report() -> None:
    bands = compute_bands([_noisy(0.0), _noisy(1e-6)])
    again = Bands.from_json(json.loads(json.dumps(bands.to_json())))
    assert again == bands
    c = compare_traces(_noisy(0.0), _noisy(5e-7), bands=again)
    text = MarkdownReporter().render(c, ReportContext(_noisy(0.0), _noisy(5e-7)), None)
    assert "**Calibrated band:** 2 runs of the baseline" in text


def test_the_report_says_when_the_noise_floor_is_zero() -> None:
    c = compare_traces(_trace(), _trace(), baseline_repeat=_trace())
    text = MarkdownReporter().render(c, ReportContext(_trace(), _trace()), None)
    assert "**Noise floor: zero.**" in text
    single = compare_traces(_trace(), _trace())
    assert "**Noise floor:** not measured" in MarkdownReporter().render(single, ReportContext(_trace(), _trace()), None)
