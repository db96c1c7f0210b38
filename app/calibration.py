"""Calibration: learn the risk thresholds from what became of earlier fixes (`autofix calibrate`).

Each MLflow run that opened a PR carries the risk score (metric ``risk``), its factors (``risk_<name>``) and
the cause; the outcome follow-up tags it ``outcome.final`` (effective, ineffective, reverted, rejected, stale).
A fix was *safe* when it was merged, not reverted and not ineffective. An isotonic regression (decreasing:
a higher score never means a safer fix) estimates P(safe | score); the proposed thresholds are where that
estimate falls below the policy's rates:

    medium = the lowest score whose fitted safe rate is below calibration.target_safe_rate
    high   = the lowest score whose fitted safe rate is below calibration.medium_safe_rate

Pointwise on a decreasing curve, so every fix scored low has a fitted safe rate of at least the target (the
rate of the low level as a whole is at least as high). Pure: no I/O; scikit-learn is imported when a curve is
fitted, so the rest of the bot never pays for it. The policy is never written: the proposal is a diff.
"""

from __future__ import annotations

import bisect
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.errors import ConfigError
from app.policies import CalibrationPolicy

FINALS = ("effective", "ineffective", "reverted", "rejected", "stale")
MERGED = frozenset({"effective", "ineffective", "reverted"})  # an outcome that needs a merged PR
UNSAFE = frozenset({"ineffective", "reverted"})
FINAL_TAG = "outcome.final"
PR_TAG = "outcome.pr_state"  # the PR's state sent with the outcome (app/outcomes.py): "merged" counts as merged
SCORE_METRIC = "risk"
FACTOR_PREFIX = "risk_"
BUCKETS = 10  # the table's risk buckets: [0, 0.1), [0.1, 0.2), ... [0.9, 1.0]
TAIL_SHARE, MIN_TAIL = 0.05, 5  # the samples a proposed threshold needs at or above it (thresholds())
GRID = [round(i / 100, 2) for i in range(1, 101)]  # thresholds are proposed to two decimals
MISSING_SKLEARN = "autofix calibrate needs scikit-learn: pip install 'gitops-autofix[calibrate]'"

RunData = tuple[Mapping[str, float], Mapping[str, str]]  # (metrics, tags) of one MLflow run


@dataclass(frozen=True)
class Sample:
    """One finished fix: its risk score and what became of it."""

    score: float
    final: str
    merged: bool
    cause: str = ""
    factors: Mapping[str, float] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        return self.merged and self.final not in UNSAFE


@dataclass(frozen=True)
class Bucket:
    low: float
    high: float
    count: int
    merged: int
    effective: int
    reverted: int
    safe: int
    fitted: float | None  # the fitted safe rate at the bucket's middle (None: no sample in it)

    @property
    def safe_rate(self) -> float | None:
        return self.safe / self.count if self.count else None


@dataclass(frozen=True)
class Calibration:
    samples: int
    buckets: list[Bucket]
    curve: list[tuple[float, float]]  # (score, fitted P(safe)) on GRID
    current: dict[str, float]
    proposed: dict[str, float]
    low_safe_rate: float | None  # observed safe rate of the samples the proposal would call low
    notes: list[str]


def samples(runs: Iterable[RunData]) -> list[Sample]:
    """The runs with a risk score and a final outcome; runs still followed (no ``outcome.final``) are left out."""
    found = []
    for metrics, tags in runs:
        final = str(tags.get(FINAL_TAG, "")).strip().lower()
        score = metrics.get(SCORE_METRIC)
        if final not in FINALS or score is None or not math.isfinite(score):
            continue
        merged = final in MERGED or str(tags.get(PR_TAG, "")).lower() == "merged"
        factors = {k[len(FACTOR_PREFIX):]: float(v) for k, v in metrics.items() if k.startswith(FACTOR_PREFIX)}
        found.append(Sample(score=min(1.0, max(0.0, float(score))), final=final, merged=merged,
                            cause=str(tags.get("cause", "")), factors=factors))
    return found


def fit(data: Sequence[Sample]) -> list[tuple[float, float]]:
    """The isotonic (decreasing) fit of P(safe) against the score, read on GRID."""
    try:
        from sklearn.isotonic import IsotonicRegression
    except ImportError as err:
        raise ConfigError(MISSING_SKLEARN) from err
    model = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    model.fit([s.score for s in data], [1.0 if s.safe else 0.0 for s in data])
    return [(x, float(y)) for x, y in zip(GRID, model.predict(GRID), strict=True)]


def thresholds(curve: Sequence[tuple[float, float]], policy: CalibrationPolicy, *,
               scores: Sequence[float]) -> tuple[dict[str, float], list[str]]:
    """medium and high where the fitted safe rate first falls below each rate; a rate the curve never falls
    below within the data proposes nothing for that level (the note says why).

    An isotonic fit ends in a block as small as one sample: the last fix failing drags the fitted rate at the
    top to 0. A crossing counts only with at least TAIL_SHARE of the samples (and MIN_TAIL) at or above it."""
    proposed: dict[str, float] = {}
    notes = []
    ordered = sorted(scores)
    support = max(MIN_TAIL, math.ceil(TAIL_SHARE * len(ordered)))
    for level, rate in (("medium", policy.target_safe_rate), ("high", policy.medium_safe_rate)):
        below = next((x for x, y in curve
                      if y < rate and len(ordered) - bisect.bisect_left(ordered, x) >= support), None)
        if below is None:
            notes.append(f"{level}: the fitted safe rate never falls below {rate:.0%}: kept")
        else:
            proposed[level] = below
    if "medium" in proposed and "high" in proposed and proposed["high"] < proposed["medium"]:
        proposed["high"] = proposed["medium"]
    return proposed, notes


def calibrate(data: Sequence[Sample], policy: CalibrationPolicy, *,
              current: Mapping[str, float]) -> Calibration:
    curve = fit(data)
    proposed, notes = thresholds(curve, policy, scores=[s.score for s in data])
    now = {"medium": 0.3, "high": 0.6, **current}
    if "medium" in proposed and "high" not in proposed and now["high"] < proposed["medium"]:
        proposed["high"] = proposed["medium"]  # keep the levels ordered
        notes.append("high: raised to the proposed medium")
    if "high" in proposed and "medium" not in proposed and now["medium"] > proposed["high"]:
        proposed["medium"] = proposed["high"]
        notes.append("medium: lowered to the proposed high")
    medium = proposed.get("medium", now["medium"])
    low = [s for s in data if s.score < medium]
    low_rate = sum(s.safe for s in low) / len(low) if low else None
    return Calibration(samples=len(data), buckets=buckets(data, curve), curve=curve, current=dict(now),
                       proposed=proposed, low_safe_rate=low_rate, notes=notes)


def buckets(data: Sequence[Sample], curve: Sequence[tuple[float, float]]) -> list[Bucket]:
    rows = []
    for i in range(BUCKETS):
        lo, hi = i / BUCKETS, (i + 1) / BUCKETS
        inside = [s for s in data if lo <= s.score < hi or (i == BUCKETS - 1 and s.score == hi)]
        middle = round((lo + hi) / 2, 2)
        fitted = min(curve, key=lambda p: abs(p[0] - middle))[1] if inside and curve else None
        rows.append(Bucket(low=lo, high=hi, count=len(inside), merged=sum(s.merged for s in inside),
                           effective=sum(s.final == "effective" for s in inside),
                           reverted=sum(s.final == "reverted" for s in inside),
                           safe=sum(s.safe for s in inside), fitted=fitted))
    return rows


def table(result: Calibration) -> str:
    """The empirical table, one row per risk bucket with samples."""
    head = f"{'risk':<11} {'count':>5} {'merged':>6} {'effective':>9} {'reverted':>8} {'safe':>6} {'fitted':>6}"
    lines = [head, "-" * len(head)]
    for b in result.buckets:
        if not b.count:
            continue
        lines.append(f"{b.low:.1f}-{b.high:.1f}{'':<4} {b.count:>5} {b.merged:>6} {b.effective:>9} {b.reverted:>8} "
                     f"{_pct(b.safe_rate):>6} {_pct(b.fitted):>6}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summary(result: Calibration, policy: CalibrationPolicy) -> str:
    def pair(d: Mapping[str, float]) -> str:
        return f"medium >= {d.get('medium', result.current['medium']):.2f}, " \
               f"high >= {d.get('high', result.current['high']):.2f}"

    lines = [f"{result.samples} finished fixes; target safe rate {policy.target_safe_rate:.0%} (low), "
             f"{policy.medium_safe_rate:.0%} (medium)",
             f"current:  {pair(result.current)}", f"proposed: {pair(result.proposed)}"]
    if result.low_safe_rate is not None:
        lines.append(f"observed safe rate below the proposed medium threshold: {result.low_safe_rate:.0%}")
    return "\n".join(lines + result.notes)


_THRESHOLD_LINE = re.compile(r"^(?P<lead>\s+)(?P<key>medium|high):(?P<gap>\s*)(?P<value>[0-9.]+)(?P<rest>.*)$")


def policy_diff(text: str, proposed: Mapping[str, float], *, name: str) -> str:
    """A unified diff of a policy file with ``risk.thresholds`` set to ``proposed`` ("" when nothing changes).
    Only the values change: the lines' comments and the rest of the file stay as they are."""
    lines = text.splitlines(keepends=True)
    new = list(lines)
    section = sub = ""
    risk_at = thresholds_at = None
    found: set[str] = set()
    for i, line in enumerate(lines):
        if line.strip() == "" or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key = line.strip().split(":", 1)[0]
        if indent == 0:
            section, sub = key, ""
            risk_at = i if key == "risk" else risk_at
        elif section == "risk" and indent <= 2:
            sub = key
            thresholds_at = i if key == "thresholds" else thresholds_at
        elif (section, sub) == ("risk", "thresholds") and (match := _THRESHOLD_LINE.match(line.rstrip("\r\n"))) \
                and match["key"] in proposed:
            eol = line[len(line.rstrip("\r\n")):]
            value, rest = f"{proposed[match['key']]:g}", match["rest"]
            if rest.startswith(" ") and rest.lstrip().startswith("#"):  # keep the comment's column when it fits
                gap = len(rest) - len(rest.lstrip()) - (len(value) - len(match["value"]))
                rest = " " * max(1, gap) + rest.lstrip()
            new[i] = f"{match['lead']}{match['key']}:{match['gap']}{value}{rest}{eol}"
            found.add(match["key"])
    block = [f"    {k}: {proposed[k]:g}\n" for k in ("medium", "high") if k in proposed and k not in found]
    if block:
        if thresholds_at is not None:
            new[thresholds_at + 1:thresholds_at + 1] = block
        elif risk_at is not None:
            new[risk_at + 1:risk_at + 1] = ["  thresholds:\n", *block]
        else:
            if new and not new[-1].endswith("\n"):
                new[-1] += "\n"
            new += ["risk:\n", "  thresholds:\n", *block]
    return "".join(difflib.unified_diff(lines, new, fromfile=f"a/{name}", tofile=f"b/{name}"))


def as_json(result: Calibration, *, diff: str, png: str | None) -> dict[str, object]:
    return {"samples": result.samples, "current": result.current, "proposed": result.proposed,
            "low_safe_rate": result.low_safe_rate, "notes": result.notes,
            "buckets": [{"low": b.low, "high": b.high, "count": b.count, "merged": b.merged,
                         "effective": b.effective, "reverted": b.reverted, "safe": b.safe,
                         "safe_rate": b.safe_rate, "fitted": b.fitted} for b in result.buckets],
            "curve": [{"score": x, "safe": y} for x, y in result.curve], "diff": diff, "png": png}
