"""The verdict engine: statistical checks of a claim's statements, and the verdict they add up to.

A check compares the *difference* of two variants' means (or one variant's mean and a fixed value)
with Welch's t, one-sided in the claimed direction, on the per-seed values of one metric:

- `beats`: the claimed winner's advantage is > 0 (holds); it **fails** when the data show the
  advantage is below `margin` (0: the other side is significantly ahead), even if it is > 0;
- `not_worse` (non-inferiority): the winner's deficit is < `margin`, a number stated in the
  experiment file before running (holds); it fails when the deficit is significantly above it;
- `equivalent` (two one-sided tests): |difference| < `margin` (holds); it fails when the
  difference lies significantly outside ±margin.

Each check has a p-value for "holds" and one for "fails"; across a claim's checks both sets are
corrected for multiplicity with Holm's step-down method, and a check whose adjusted p-values are
both ≥ alpha is **inconclusive**. The verdict is the one every way of settling the inconclusive
checks would give: all checks hold → reproduced; every key check fails → not reproduced; otherwise
partly. When the inconclusive checks could tip it either way it is *inconclusive*, with the seeds a
power estimate says would settle the checks in question.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8  # for the seeds-needed estimate of an inconclusive check
MAX_SEEDS_SHOWN = 1000

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"


@dataclass(frozen=True)
class Check:
    """One statement of a claim. `worse` names the other variant, or is None when `better` is
    compared with the fixed number `value`."""
    better: str
    metric: str
    worse: str | None = None
    value: float | None = None
    kind: str = "beats"  # beats | not_worse | equivalent
    margin: float = 0.0
    lower_is_better: bool = False
    key: bool = True  # a key statement of the claim: if every key check fails, the claim is not reproduced
    note: str = ""  # what the check stands for, shown beside it

    def __post_init__(self):
        if (self.worse is None) == (self.value is None):
            raise ValueError(f"check on {self.better}: give exactly one of `worse` (a variant) and `value` (a number)")
        if self.kind not in ("beats", "not_worse", "equivalent"):
            raise ValueError(f"check kind must be beats, not_worse or equivalent, got {self.kind!r}")
        if self.margin < 0 or not math.isfinite(self.margin) or (self.kind == "equivalent" and self.margin == 0):
            raise ValueError(f"check on {self.better}: margin must be finite and >= 0 (> 0 for equivalent)")

    @property
    def other(self) -> str:
        return self.worse if self.worse is not None else f"{self.value:g}"

    def statement(self) -> str:
        direction = "lower" if self.lower_is_better else "higher"
        if self.kind == "beats":
            return f"{self.better} beats {self.other} on {self.metric} ({direction} is better)"
        if self.kind == "not_worse":
            return f"{self.better} is not worse than {self.other} on {self.metric} by {self.margin:g} or more ({direction} is better)"
        return f"{self.better} is within ±{self.margin:g} of {self.other} on {self.metric}"


@dataclass
class Difference:
    """Welch's comparison of two samples' means (or of one sample's mean with a number)."""
    estimate: float  # mean(better) - mean(worse), oriented so that > 0 favours `better`
    se: float
    df: float
    n_better: int
    n_worse: int  # 0 for a fixed value
    sd_pooled: float  # for the power estimate

    def p_above(self, bound: float) -> float:
        """One-sided p-value of H0: true difference <= bound."""
        return self._p((self.estimate - bound), upper=True)

    def p_below(self, bound: float) -> float:
        """One-sided p-value of H0: true difference >= bound."""
        return self._p((self.estimate - bound), upper=False)

    def _p(self, distance: float, upper: bool) -> float:
        if self.se == 0 or not math.isfinite(self.se):  # every seed gave the same value: exact
            if self.se == 0:
                return 0.0 if (distance > 0 if upper else distance < 0) else 1.0
            return 1.0
        t = distance / self.se
        return float(stats.t.sf(t, self.df) if upper else stats.t.cdf(t, self.df))

    def interval(self, level: float = 1 - 2 * ALPHA) -> tuple[float, float]:
        """Two-sided interval whose ends are one-sided (1 - alpha) bounds (90% for alpha 0.05)."""
        if self.se == 0:
            return self.estimate, self.estimate
        half = stats.t.ppf(1 - (1 - level) / 2, self.df) * self.se
        return self.estimate - half, self.estimate + half


def welch(better: np.ndarray, worse: np.ndarray | float, lower_is_better: bool = False) -> Difference:
    """The difference of means, oriented so that a positive estimate favours `better`."""
    a = np.asarray(better, dtype=float)
    sign = -1.0 if lower_is_better else 1.0
    var_a = a.var(ddof=1) / len(a)
    if np.ndim(worse) == 0:  # one sample against a fixed number
        return Difference(sign * (a.mean() - float(worse)), math.sqrt(var_a), len(a) - 1, len(a), 0, float(a.std(ddof=1)))
    b = np.asarray(worse, dtype=float)
    var_b = b.var(ddof=1) / len(b)
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1)) if se > 0 else math.inf
    return Difference(sign * (a.mean() - b.mean()), se, df, len(a), len(b),
                      math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))


def test_pair(check: Check, diff: Difference) -> tuple[float, float]:
    """(p that the check holds, p that it fails), each one-sided and not yet corrected."""
    m = check.margin
    if check.kind == "beats":
        return diff.p_above(0.0), diff.p_below(m)
    if check.kind == "not_worse":
        return diff.p_above(-m), diff.p_below(-m)
    # equivalent: both one-sided tests must reject to hold (TOST); either side outside fails
    return (max(diff.p_above(-m), diff.p_below(m)),
            min(1.0, 2 * min(diff.p_below(-m), diff.p_above(m))))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def seeds_needed(check: Check, diff: Difference, alpha: float) -> int | None:
    """Seeds per variant at which the check's nearer decision would have 80% power, if the true
    difference and spread were as observed (normal approximation); None when the observed
    difference sits on a decision boundary."""
    m = check.margin
    boundaries = {"beats": (0.0, m), "not_worse": (-m, -m), "equivalent": (-m, m)}[check.kind]
    distance = min(abs(diff.estimate - b) for b in boundaries)
    if distance == 0 or diff.sd_pooled == 0:
        return None
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(POWER)
    groups = 1 if check.worse is None else 2
    # never fewer than one more seed than these runs have: they did not settle it
    return max(min(diff.n_better, diff.n_worse or diff.n_better) + 1,
               math.ceil(groups * (z * diff.sd_pooled / distance) ** 2))


@dataclass
class Outcome:
    check: Check
    status: str
    diff: Difference | None
    p_holds: float = math.nan
    p_fails: float = math.nan
    p_holds_adjusted: float = math.nan
    p_fails_adjusted: float = math.nan
    seeds: int | None = None  # inconclusive only
    problem: str = ""  # why no test was possible

    def describe(self) -> str:
        """'relu vs sigmoid, test_acc (higher is better): advantage +0.851 [0.83, 0.87], p = 2e-08
        (Holm 4e-08) → beats: **holds**'; the interval's ends are one-sided 95% bounds."""
        c = self.check
        if self.diff is None:
            return f"{c.statement()}: {INCONCLUSIVE} ({self.problem})"
        low, high = self.diff.interval()
        p, p_adj = (self.p_fails, self.p_fails_adjusted) if self.status == FAILS else (self.p_holds, self.p_holds_adjusted)
        direction = "" if c.kind == "equivalent" else f" ({'lower' if c.lower_is_better else 'higher'} is better)"
        text = (f"{c.better} vs {c.other}, {c.metric}{direction}: "
                f"advantage {self.diff.estimate:+.3g} [{low:.3g}, {high:.3g}], p = {p:.2g} (Holm {p_adj:.2g})")
        if c.kind != "beats" or c.margin:
            text += f", margin {c.margin:g}"
        text += f" → {c.kind.replace('_', ' ')}: **{self.status}**"
        if self.status == INCONCLUSIVE:
            text += (f" (about {self.seeds} seeds per variant would settle it)" if self.seeds and self.seeds <= MAX_SEEDS_SHOWN
                     else f" (more than {MAX_SEEDS_SHOWN} seeds per variant would be needed)" if self.seeds
                     else " (the observed difference sits on the decision boundary)")
        return text + (f" — {c.note}" if c.note else "")

    def as_dict(self) -> dict:
        low, high = self.diff.interval() if self.diff else (math.nan, math.nan)
        return {"statement": self.check.statement(), "key": self.check.key, "kind": self.check.kind,
                "better": self.check.better, "other": self.check.other, "metric": self.check.metric,
                "margin": self.check.margin, "status": self.status,
                "difference": None if self.diff is None else _finite(self.diff.estimate),
                "ci90": [_finite(low), _finite(high)], "p": _finite(self.p_holds if self.status != FAILS else self.p_fails),
                "p_holm": _finite(self.p_holds_adjusted if self.status != FAILS else self.p_fails_adjusted),
                "n": None if self.diff is None else [self.diff.n_better, self.diff.n_worse],
                "seeds_needed": self.seeds, "text": self.describe()}


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def run_checks(checks: list[Check], values: dict[tuple[str, str], np.ndarray], alpha: float = ALPHA) -> list[Outcome]:
    """Test every check on `values[(variant, metric)]` (one value per seed), Holm-corrected together."""
    outcomes = []
    for check in checks:
        better = _clean(values.get((check.better, check.metric)))
        worse = check.value if check.worse is None else _clean(values.get((check.worse, check.metric)))
        short = [name for name, sample in ((check.better, better), (check.worse, worse))
                 if name is not None and (sample is None or len(sample) < 2)]
        if short:
            outcomes.append(Outcome(check, INCONCLUSIVE, None, problem=f"fewer than 2 finite values of {check.metric} for "
                                    + ", ".join(short)))
            continue
        diff = welch(better, worse, check.lower_is_better)
        p_holds, p_fails = test_pair(check, diff)
        outcomes.append(Outcome(check, INCONCLUSIVE, diff, p_holds, p_fails))
    tested = [o for o in outcomes if o.diff is not None]
    for o, p_h, p_f in zip(tested, holm([o.p_holds for o in tested]), holm([o.p_fails for o in tested])):
        o.p_holds_adjusted, o.p_fails_adjusted = p_h, p_f
        if p_f < alpha:  # first: a `beats` advantage shown to be below its margin fails even if it is > 0
            o.status = FAILS
        elif p_h < alpha:
            o.status = HOLDS
        else:
            o.seeds = seeds_needed(o.check, o.diff, alpha / len(tested))  # Holm's strictest step
    return outcomes


def _clean(sample) -> np.ndarray | None:
    if sample is None:
        return None
    sample = np.asarray(sample, dtype=float)
    return sample[np.isfinite(sample)]


def verdict_of(statuses: list[str], key: list[bool]) -> str:
    """The verdict for settled checks: all hold → reproduced; every key check fails → not
    reproduced; anything else → partly."""
    if all(s == HOLDS for s in statuses):
        return REPRODUCED
    if all(s == FAILS for s, k in zip(statuses, key) if k):
        return NOT_REPRODUCED
    return PARTLY


@dataclass
class Verdict:
    verdict: str
    outcomes: list[Outcome] = field(default_factory=list)
    possible: list[str] = field(default_factory=list)  # verdicts the inconclusive checks leave open

    def headline(self) -> str:
        n_held = sum(o.status == HOLDS for o in self.outcomes)
        n_failed = sum(o.status == FAILS for o in self.outcomes)
        n_open = len(self.outcomes) - n_held - n_failed
        head = f"{n_held} of {len(self.outcomes)} checks hold, {n_failed} fail, {n_open} inconclusive"
        if self.verdict == INCONCLUSIVE:
            head += f" (the open checks could make it {' or '.join(self.possible)})"
        return head

    def reason(self) -> str:
        return self.headline() + ". " + "; ".join(o.describe() for o in self.outcomes)


def decide(checks: list[Check], values: dict[tuple[str, str], np.ndarray], alpha: float = ALPHA) -> Verdict:
    outcomes = run_checks(checks, values, alpha)
    open_ = [i for i, o in enumerate(outcomes) if o.status == INCONCLUSIVE]
    keys = [o.check.key for o in outcomes]
    possible = set()
    for settled in itertools.product((HOLDS, FAILS), repeat=len(open_)):
        statuses = [o.status for o in outcomes]
        for i, status in zip(open_, settled):
            statuses[i] = status
        possible.add(verdict_of(statuses, keys))
    ordered = [v for v in (REPRODUCED, PARTLY, NOT_REPRODUCED) if v in possible]
    return Verdict(ordered[0] if len(ordered) == 1 else INCONCLUSIVE, outcomes, ordered)
