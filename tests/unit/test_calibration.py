"""Calibration (app/calibration.py) on generated outcome sets whose true curve is known.

The true curve is P(safe | score) = 1 - score, scores uniform on [0, 1], each outcome a Bernoulli draw (the
noise), fixed seed. With the default policy (target_safe_rate 0.9, medium_safe_rate 0.5) the true thresholds
are medium = 0.1 and high = 0.5. Tolerance 0.1 with 5000 samples: over seeds 0-99 the fitted thresholds were
off by at most 0.08 (medium, sd 0.023) and 0.07 (high, sd 0.026), measured with the same generator; a fit
that ignores the data (the current 0.3 / 0.6, or an increasing curve) lands 0.2 or more away.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable

import pytest
import yaml

from app import calibration, policies
from app.calibration import Sample
from app.policies import CalibrationPolicy
from app.settings import DEFAULT_POLICY_DIR

TOLERANCE = 0.1
POLICY = CalibrationPolicy()
UNSAFE_ENDS = ("reverted", "ineffective", "rejected")


def generated(n: int, *, seed: int, true_safe: Callable[[float], float] = lambda s: 1 - s) -> list[Sample]:
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        score = rng.random()
        final = "effective" if rng.random() < true_safe(score) else rng.choice(UNSAFE_ENDS)
        data.append(Sample(score=score, final=final, merged=final != "rejected"))
    return data


def test_fitted_thresholds_land_on_the_true_curve() -> None:
    result = calibration.calibrate(generated(5000, seed=7), POLICY, current={"medium": 0.3, "high": 0.6})
    assert abs(result.proposed["medium"] - 0.1) <= TOLERANCE
    assert abs(result.proposed["high"] - 0.5) <= TOLERANCE
    assert result.low_safe_rate is not None and result.low_safe_rate >= POLICY.target_safe_rate
    assert [y for _, y in result.curve] == sorted((y for _, y in result.curve), reverse=True)


def test_other_rates_move_the_thresholds_with_the_curve() -> None:
    """A stricter target on a steeper curve: P(safe) = 1 - 2s (0 past 0.5); target 0.8 -> 0.1, 0.4 -> 0.3."""
    data = generated(5000, seed=11, true_safe=lambda s: max(0.0, 1 - 2 * s))
    policy = CalibrationPolicy(target_safe_rate=0.8, medium_safe_rate=0.4)
    result = calibration.calibrate(data, policy, current={})
    assert abs(result.proposed["medium"] - 0.1) <= TOLERANCE / 2  # twice as steep: half the score error
    assert abs(result.proposed["high"] - 0.3) <= TOLERANCE / 2


def test_a_curve_that_never_falls_below_the_target_proposes_nothing_for_that_level() -> None:
    data = generated(500, seed=3, true_safe=lambda s: 0.97)
    result = calibration.calibrate(data, POLICY, current={"medium": 0.3, "high": 0.6})
    assert result.proposed == {}
    assert any(note.startswith("medium:") for note in result.notes)


def test_the_table_counts_each_bucket() -> None:
    data = [Sample(0.05, "effective", True), Sample(0.07, "reverted", True), Sample(0.15, "rejected", False),
            Sample(0.95, "ineffective", True), Sample(1.0, "stale", False)]
    rows = {b.low: b for b in calibration.calibrate(data, POLICY, current={}).buckets}
    assert (rows[0.0].count, rows[0.0].merged, rows[0.0].effective, rows[0.0].reverted, rows[0.0].safe) == (2, 2, 1, 1, 1)
    assert (rows[0.1].count, rows[0.1].merged, rows[0.1].safe) == (1, 0, 0)
    assert (rows[0.9].count, rows[0.9].merged, rows[0.9].safe) == (2, 1, 0)  # 1.0 is in the last bucket
    assert rows[0.5].count == 0 and rows[0.5].fitted is None
    text = calibration.table(calibration.calibrate(data, POLICY, current={}))
    assert text.splitlines()[2].split()[:6] == ["0.0-0.1", "2", "2", "1", "1", "50%"]


def test_samples_read_from_run_data_keep_only_finished_scored_fixes() -> None:
    runs = [
        ({"risk": 0.42, "risk_blast_radius": 0.3, "seconds_total": 1.0}, {"outcome.final": "effective", "cause": "oom_killed"}),
        ({"risk": 0.2}, {"outcome": "pr_opened"}),  # still followed
        ({"seconds_total": 1.0}, {"outcome.final": "rejected"}),  # no score: not a PR's run
        ({"risk": 0.7}, {"outcome.final": "stale", "outcome.pr_state": "merged"}),
        ({"risk": 0.5}, {"outcome.final": "bogus"}),
    ]
    found = calibration.samples(runs)
    assert [(s.score, s.final, s.merged, s.safe) for s in found] == [(0.42, "effective", True, True),
                                                                   (0.7, "stale", True, True)]
    assert found[0].factors == {"blast_radius": 0.3} and found[0].cause == "oom_killed"


def test_policy_diff_changes_only_the_threshold_values() -> None:
    text = (DEFAULT_POLICY_DIR / "default.yaml").read_text(encoding="utf-8")
    diff = calibration.policy_diff(text, {"medium": 0.12, "high": 0.48}, name="default.yaml")
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-    medium: 0.3   # score >= medium -> medium", "-    high: 0.6     # score >= high -> high",
                       "+    medium: 0.12  # score >= medium -> medium", "+    high: 0.48    # score >= high -> high"]
    assert diff.startswith("--- a/default.yaml\n+++ b/default.yaml\n")
    assert calibration.policy_diff(text, {"medium": 0.3, "high": 0.6}, name="default.yaml") == ""


@pytest.mark.parametrize("text", ["version: 1\n", "risk:\n  weights: {}\n", "risk:\n  thresholds:\n    high: 0.6\n"])
def test_policy_diff_adds_what_the_file_does_not_set(text: str) -> None:
    diff = calibration.policy_diff(text, {"medium": 0.2, "high": 0.5}, name="team.yaml")
    applied = _apply(text, diff)
    assert yaml.safe_load(applied)["risk"]["thresholds"] == {"medium": 0.2, "high": 0.5}


def _apply(text: str, diff: str) -> str:
    """The new side of a unified diff of one file, rebuilt from its hunks (context and + lines)."""
    lines = diff.splitlines(keepends=True)[2:]
    old = text.splitlines(keepends=True)
    new: list[str] = []
    i = 0
    for line in lines:
        if line.startswith("@@"):
            start = int(line.split()[1].split(",")[0][1:]) - 1
            new += old[i:max(start, 0)]
            i = max(start, 0)
        elif line.startswith("+"):
            new.append(line[1:])
        elif line.startswith("-"):
            i += 1
        else:
            new.append(line[1:])
            i += 1
    new += old[i:]
    assert "".join(difflib.unified_diff(old, new, fromfile="a/team.yaml", tofile="b/team.yaml")) == diff
    return "".join(new)


def test_the_shipped_policy_has_the_calibration_section() -> None:
    policy = policies.load(DEFAULT_POLICY_DIR)
    assert (policy.calibration.target_safe_rate, policy.calibration.medium_safe_rate) == (0.9, 0.5)
    assert policy.calibration.min_samples >= 2
    with pytest.raises(ValueError, match="medium_safe_rate must be below"):
        CalibrationPolicy(target_safe_rate=0.5, medium_safe_rate=0.6)
