"""The verdict engine: statistical checks of a claim's statements, and the verdict they add up to.

A check compares the *difference* of two variants' means (or one variant's mean and a fixed value)
with Welch's t, one-sided in the claimed direction, on the per-seed values of one metric:

- `beats`: the claimed winner's advantage is shown to be above `margin` (0 unless the claim says
  "far": then the margin says how far), holds; shown below it, **fails**;
- `not_worse` (non-inferiority): the winner's deficit is shown to be below `margin`, a number stated
  in the experiment file, holds; shown above it, fails;
- `equivalent` (two one-sided tests): |difference| is shown to be below `margin`, holds; the
  difference is shown to lie outside ±margin, fails.

A 0/1 metric (e.g. whether a run failed to learn) against a fixed share is tested exactly: k of n
seeds with the binomial distribution and a Clopper-Pearson interval, never a t-test with a floored
spread (5 of 5 seeds is p = 1/32 against a share of one half, not p < 1e-4).

A metric the architecture fixes (a parameter count, a receptive field: the same for every seed) is
not a sample: a check on it is arithmetic, holds or fails with certainty, and stays out of the
multiplicity correction (a `Fact`).

A check with `versus` (two more variants) tests a difference of differences instead: the advantage of
`better` over `worse` minus the advantage of versus[0] over versus[1] (e.g. deep minus shallow at 1k
images, against the same at 55k), with the same Welch machinery over four samples. A check with
`pairs` (more (better, worse) pairs) tests the mean of every pair's advantage, (better, worse)'s
included: one statement drawn at several sizes (deep beats fat at each of six sizes) tested as a
whole, where each pair alone may be too close to call. Both are linear contrasts of the variants'
means, with Welch-Satterthwaite's degrees of freedom and no exact randomization test.

A seed's value that is not finite (a diverged run) is left out, and the check's line says so. A
spread below SD_FLOOR (every seed the same, e.g. a collapsed net predicting one class) counts as
SD_FLOOR in Welch's t, and the check must then also pass an exact randomization test of the same
difference (a permutation test of the two samples, or a sign-flip test of one sample against its
number), whose p-value is used when it is the larger: a t-test on a floored spread would claim
p < 1e-4 from five identical numbers, where nothing but the normal model backs it, while five seeds
against five can show no more than p = 1/252 without it (one sample: 1/32). A difference of
differences keeps the floored t-test alone, and its line says that its spread was floored.

Every other decided check of one or two samples is also tested by the same exact randomization test
(its p the larger of Welch's and the exact one, Holm-corrected in the same family); where that would
leave it open, its line says that the decision rests on the normal model alone. This flags a decision
without changing it. Where the seeds already give the exact test its least p, the decision rests on
the normal model by design, and the line says so (one sample of five against its number cannot go
below 1/32, above Holm's first step in a family of two): only more seeds could back it exactly.

Each check has a p-value for "holds" and one for "fails"; each of the two sets is corrected for
multiplicity with Holm's step-down method within two families, the key checks and the side checks,
and a check with both adjusted p-values ≥ alpha is **inconclusive**. Side checks can change the
verdict only when every key check holds (reproduced → partly), which makes this serial gatekeeping:
a false "reproduced" needs a false "holds" among the key checks, a false "not reproduced" a false
"fails" among them, and a false "partly" after key checks that all hold a false "fails" among the
side checks; each is bounded by alpha, and side checks do not spend the key checks' alpha.

The verdict comes from the key checks (the claim's statements); side checks (sub-claims, the
lecture's numbers) are reported beside them: every key check holds and no side check fails →
reproduced; every key check fails → not reproduced; otherwise partly. When inconclusive key checks
could tip it either way it is *inconclusive*, and each open check says roughly how many seeds would
settle it. An open side check is shown as open and decides nothing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
# scipy.special, not scipy.stats: the same functions (scipy.stats' t, binom, beta and norm call
# them), without scipy.stats' import, which cost every command about a second on a 2-core CPU
from scipy import special

ALPHA = 0.05
SD_FLOOR = 1e-4  # the resolution of an accuracy on 10,000 test images
POWER = 0.8  # for the seeds-needed estimate of an inconclusive check
MAX_SEEDS_SHOWN = 1000

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"


def binom_at_most(k: int, n: int, share: float) -> float:
    """P(X <= k) for X ~ Binomial(n, share)."""
    return 0.0 if k < 0 else 1.0 if k >= n else float(special.bdtr(k, n, share))


def binom_at_least(k: int, n: int, share: float) -> float:
    """P(X >= k) for X ~ Binomial(n, share)."""
    return 1.0 if k <= 0 else 0.0 if k > n else float(special.bdtrc(k - 1, n, share))


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
    versus: tuple[str, str] | None = None  # a second pair: the check is on the difference of the two pairs' differences
    pairs: tuple[tuple[str, str], ...] | None = None  # more (better, worse) pairs: the check is on the mean advantage
    # a side check stating what the claim presupposes (the net overfits, training did not fail): where
    # it fails, the key checks did not test the claim, and the verdict is inconclusive whatever they say
    premise: bool = False

    def __post_init__(self):
        if (self.worse is None) == (self.value is None):
            raise ValueError(f"check on {self.better}: give exactly one of `worse` (a variant) and `value` (a number)")
        if self.versus is not None and (self.worse is None or len(self.versus) != 2 or self.kind != "beats"
                                        or len({self.better, self.worse, *self.versus}) != 4):
            raise ValueError(f"check on {self.better}: `versus` needs kind beats, `worse` and two other variants")
        if self.pairs is not None and (self.worse is None or self.versus is not None or not self.pairs
                                       or any(len(pair) != 2 for pair in self.pairs)
                                       or len(set(self.variants)) != len(self.variants)):
            raise ValueError(f"check on {self.better}: `pairs` needs `worse`, no `versus`, and pairs of two other "
                             "variants each, every variant once")
        if self.kind not in ("beats", "not_worse", "equivalent"):
            raise ValueError(f"check kind must be beats, not_worse or equivalent, got {self.kind!r}")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"check on {self.better}: value must be a finite number (got {self.value})")
        if self.worse == self.better:
            raise ValueError(f"check on {self.better}: a variant cannot be compared with itself")
        if self.premise and self.key:
            raise ValueError(f"check on {self.better}: a premise is a side check (key: false)")
        if self.margin < 0 or not math.isfinite(self.margin) or (self.kind == "equivalent" and self.margin == 0):
            raise ValueError(f"check on {self.better}: margin must be finite and >= 0 (> 0 for equivalent)")

    @property
    def other(self) -> str:
        return self.worse if self.worse is not None else f"{self.value:g}"

    def own_value(self, advantage: float) -> float:
        """The variant's own mean where the check compares it with a number: the number moved by the
        oriented advantage (up where higher is better)."""
        return self.value + (-1 if self.lower_is_better else 1) * advantage

    @property
    def toward_away(self) -> tuple[str, str]:
        """Which way of a number is better, and which worse: ('above', 'below') where higher is better."""
        return ("below", "above") if self.lower_is_better else ("above", "below")

    @property
    def contrast(self) -> bool:
        """True when the check weighs more than two samples (`versus` or `pairs`)."""
        return bool(self.versus or self.pairs)

    @property
    def variants(self) -> list[str]:
        """Every variant the check reads, in the order of its samples."""
        return [self.better, *([self.worse] if self.worse is not None else []), *(self.versus or ()),
                *(name for pair in self.pairs or () for name in pair)]

    @property
    def weights(self) -> list[float]:
        """Each sample's coefficient in the difference the check tests, in the order of `variants`."""
        if self.pairs:
            count = len(self.pairs) + 1
            return [1 / count, -1 / count] * count
        return [1.0, -1.0, -1.0, 1.0][:len(self.variants)]

    @property
    def compared(self) -> str:
        """What the check compares, in short: 'relu vs sigmoid', '(a − b) vs (c − d)', 'mean of 2 pairs: …'."""
        if self.versus:
            return f"({self.better} − {self.worse}) vs ({self.versus[0]} − {self.versus[1]})"
        if self.pairs:
            return f"mean of {len(self.pairs) + 1} pairs: " + ", ".join(f"{b} − {w}" for b, w in [(self.better, self.worse), *self.pairs])
        return f"{self.better} vs {self.other}"

    def short(self) -> str:
        """The statement in a few words, margin included, for a summary cell: 'a beats b by more
        than 0.1 on m', 'a at most 0.02 worse than b on m', "a's m below 0.5", "(a − b) & (c − d):
        mean advantage above 0 on m"."""
        margin, kind = self.margin, self.kind
        by = f" by more than {margin:g}" if margin else ""
        if self.versus:
            return f"{self.better}'s lead over {self.worse} exceeds {self.versus[0]}'s over {self.versus[1]}{by} on {self.metric}"
        if self.pairs:
            mean = " & ".join(f"({b} − {w})" for b, w in [(self.better, self.worse), *self.pairs]) + ": mean advantage"
            bound = {"beats": f"above {margin:g}", "not_worse": f"above {-margin:g}"}.get(kind, f"within ±{margin:g}")
            return f"{mean} {bound} on {self.metric}"
        if self.value is not None:  # one variant against a number: above or below it, not "beats 0.5"
            toward, away = self.toward_away
            if kind == "beats":
                return f"{self.better}'s {self.metric} {toward} {self.value:g}{by}"
            if kind == "not_worse":
                return f"{self.better}'s {self.metric} at most {margin:g} {away} {self.value:g}"
            return f"{self.better}'s {self.metric} within ±{margin:g} of {self.value:g}"
        if kind == "beats":
            return f"{self.better} beats {self.worse}{by} on {self.metric}"
        if kind == "not_worse":
            return f"{self.better} at most {margin:g} worse than {self.worse} on {self.metric}" if margin else \
                f"{self.better} not worse than {self.worse} on {self.metric}"
        return f"{self.better} within ±{margin:g} of {self.worse} on {self.metric}"

    def statement(self) -> str:
        direction = "lower" if self.lower_is_better else "higher"
        if self.versus is not None:
            return (f"{self.better}'s advantage over {self.worse} exceeds {self.versus[0]}'s over {self.versus[1]}"
                    f"{f' by more than {self.margin:g}' if self.margin else ''} on {self.metric} ({direction} is better)")
        if self.pairs:
            pairs = ", ".join(f"{b} over {w}" for b, w in [(self.better, self.worse), *self.pairs])
            mean = f"the mean advantage of {pairs}"
            if self.kind == "beats":
                return f"{mean} is above {self.margin:g} on {self.metric} ({direction} is better)"
            if self.kind == "not_worse":
                return f"{mean} is above -{self.margin:g} on {self.metric} ({direction} is better)"
            return f"{mean} is within ±{self.margin:g} on {self.metric}"
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
    n_further: tuple[int, ...] = ()  # the further samples' sizes, for a contrast (versus or pairs)
    components: tuple[float, ...] = ()  # a contrast's pairs' own oriented differences, in order
    # the oriented samples (better, worse) when a spread was floored: the exact test's data
    floored: tuple[np.ndarray, ...] | None = None

    def __post_init__(self):
        # equal means with the sign flipped for a lower-is-better metric give -0.0: "advantage -0"
        self.estimate = float(self.estimate) + 0.0
        self.components = tuple(float(x) + 0.0 for x in self.components)

    def p_above(self, bound: float) -> float:
        """One-sided p-value of H0: true difference <= bound."""
        return max(self._p((self.estimate - bound), upper=True), self._exact(bound, upper=True))

    def p_below(self, bound: float) -> float:
        """One-sided p-value of H0: true difference >= bound."""
        return max(self._p((self.estimate - bound), upper=False), self._exact(bound, upper=False))

    def _p(self, distance: float, upper: bool) -> float:
        t = distance / self.se
        return float(special.stdtr(self.df, -t) if upper else special.stdtr(self.df, t))

    def _exact(self, bound: float, upper: bool) -> float:
        """The randomization test's p-value when a spread was floored (0 otherwise: Welch's stands)."""
        if self.floored is None or self.n_further:
            return 0.0
        if self.n_worse == 0:  # one sample against its number: are the signs of its distances random?
            return sign_flip_p(self.floored[0] - bound, upper)
        return permutation_p(self.floored[0] - bound, self.floored[1], upper)

    def interval(self, level: float = 1 - 2 * ALPHA) -> tuple[float, float]:
        """Two-sided interval whose ends are one-sided (1 - alpha) bounds (90% for alpha 0.05),
        not adjusted for multiplicity."""
        half = special.stdtrit(self.df, 1 - (1 - level) / 2) * self.se
        return self.estimate - half, self.estimate + half


@dataclass
class Share(Difference):
    """k of n seeds with a 0/1 outcome against a fixed share: exact binomial tests. `estimate` is
    the observed share minus the fixed one, oriented like Difference's."""
    k: int = 0
    value: float = 0.5
    sign: float = 1.0

    def _share(self, bound: float) -> float:
        return min(1.0, max(0.0, self.value + self.sign * bound))

    def p_above(self, bound: float) -> float:
        # H0: the oriented share difference <= bound, i.e. the share is at most (higher is better)
        # or at least (lower is better) value +/- bound: the chance of k or more (k or fewer) of n
        share = self._share(bound)
        return float(binom_at_least(self.k, self.n_better, share) if self.sign > 0
                     else binom_at_most(self.k, self.n_better, share))

    def p_below(self, bound: float) -> float:
        share = self._share(bound)
        return float(binom_at_most(self.k, self.n_better, share) if self.sign > 0
                     else binom_at_least(self.k, self.n_better, share))

    def interval(self, level: float = 1 - 2 * ALPHA) -> tuple[float, float]:
        """Clopper-Pearson interval of the share, oriented and shifted like the estimate."""
        tail = (1 - level) / 2
        low = special.betaincinv(self.k, self.n_better - self.k + 1, tail) if self.k > 0 else 0.0
        high = special.betaincinv(self.k + 1, self.n_better - self.k, 1 - tail) if self.k < self.n_better else 1.0
        ends = sorted(self.sign * (x - self.value) + 0.0 for x in (low, high))  # + 0.0: no "-0"
        return ends[0], ends[1]


@dataclass
class Fact(Difference):
    """The difference of two quantities no seed changes: known exactly, so every p-value is 0 or 1."""

    def p_above(self, bound: float) -> float:
        return 0.0 if self.estimate > bound else 1.0

    def p_below(self, bound: float) -> float:
        return 0.0 if self.estimate < bound else 1.0

    def interval(self, level: float = 1 - 2 * ALPHA) -> tuple[float, float]:
        return self.estimate, self.estimate


def fact(samples: list[np.ndarray], value: float | None, lower_is_better: bool = False) -> Fact:
    """The oriented difference of two seed-independent quantities (or of one and `value`)."""
    if any(np.ptp(s) > 0 for s in samples):
        raise ValueError("a metric fixed by the architecture differs between seeds")
    sign = -1.0 if lower_is_better else 1.0
    other = value if value is not None else samples[1][0]
    return Fact(sign * (samples[0][0] - other), 0.0, math.inf, len(samples[0]), 0 if value is not None else len(samples[1]),
                0.0)


def share_test(sample: np.ndarray, value: float, lower_is_better: bool = False) -> Share:
    """A 0/1 sample (one outcome per seed) against the share `value`."""
    a = np.asarray(sample, dtype=float)
    if not np.isin(a, (0.0, 1.0)).all():
        raise ValueError("a 0/1 metric has a value other than 0 or 1")
    sign = -1.0 if lower_is_better else 1.0
    k, n = int(a.sum()), len(a)
    return Share(sign * (k / n - value), math.nan, math.nan, n, 0, max(float(a.std(ddof=1)), SD_FLOOR),
                 k=k, value=value, sign=sign)


EXACT_LIMIT = 200_000  # arrangements enumerated exactly; beyond, a seeded Monte-Carlo sample of them


def arrangement_count(sizes: list[int]) -> int:
    """How many arrangements an exact randomization test weighs, so its least p is one over it: one
    sample, its 2^n sign flips; two samples, the C(n1 + n2, n1) splits of their pooled seeds."""
    return 2 ** sizes[0] if len(sizes) == 1 else math.comb(sum(sizes), sizes[0])


def _arrangements(count: int, exact: Callable[[], np.ndarray], draw: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    return exact() if count <= EXACT_LIMIT else draw(np.random.default_rng(0))


def sign_flip_p(distances: np.ndarray, upper: bool) -> float:
    """Exact one-sided p of H0 "the mean distance is <= 0" (upper) or ">= 0": the share of the 2^n
    sign patterns whose mean is at least (at most) the observed one."""
    n, count = len(distances), arrangement_count([len(distances)])
    signs = _arrangements(count, lambda: 1 - 2 * ((np.arange(count)[:, None] >> np.arange(n)) & 1),
                          lambda rng: rng.choice([-1, 1], size=(EXACT_LIMIT, n)))
    means, observed = (signs * np.abs(distances)).mean(axis=1), distances.mean()
    return _share_beyond(means, observed, upper, sampled=count > EXACT_LIMIT)


def permutation_p(better: np.ndarray, worse: np.ndarray, upper: bool) -> float:
    """Exact one-sided permutation p of H0 "mean(better) - mean(worse) <= 0" (upper) or ">= 0": the
    share of the ways to split the pooled values into groups of these sizes whose difference is at
    least (at most) the observed one."""
    pooled, n = np.concatenate([better, worse]), len(better)
    total, count = pooled.sum(), arrangement_count([len(better), len(worse)])
    firsts = _arrangements(count,
                           lambda: np.array(list(itertools.combinations(range(len(pooled)), n))),
                           lambda rng: np.argsort(rng.random((EXACT_LIMIT, len(pooled))), axis=1)[:, :n])
    sums = pooled[firsts].sum(axis=1)
    differences = sums / n - (total - sums) / len(worse)
    return _share_beyond(differences, better.mean() - worse.mean(), upper,
                         sampled=count > EXACT_LIMIT)


def _share_beyond(statistics: np.ndarray, observed: float, upper: bool, sampled: bool) -> float:
    tie = 1e-12 * max(1.0, abs(observed))  # sums in another order differ in the last bits
    beyond = int((statistics >= observed - tie).sum() if upper else (statistics <= observed + tie).sum())
    # a Monte-Carlo sample counts the observed arrangement too, so that p is never 0
    return (beyond + 1) / (len(statistics) + 1) if sampled else beyond / len(statistics)


def welch(better: np.ndarray, worse: np.ndarray | float, lower_is_better: bool = False,
          further: tuple[np.ndarray, ...] = (), weights: list[float] | None = None) -> Difference:
    """The difference of means, oriented so that a positive estimate favours `better`; with
    `further` samples, the contrast of all of them with `weights` (one per sample, in order:
    Check.weights), Welch-Satterthwaite over all."""
    sign = -1.0 if lower_is_better else 1.0
    if np.ndim(worse) == 0:  # one sample against a fixed number
        a = np.asarray(better, dtype=float)
        sd_a = max(float(a.std(ddof=1)), SD_FLOOR)
        floored = (sign * (a - float(worse)),) if a.std(ddof=1) < SD_FLOOR else None
        return Difference(sign * (a.mean() - float(worse)), sd_a / math.sqrt(len(a)), len(a) - 1, len(a), 0, sd_a,
                          floored=floored)
    samples = [np.asarray(s, dtype=float) for s in (better, worse, *further)]
    weights = weights or [1.0, -1.0]
    if len(weights) != len(samples):
        raise ValueError(f"a contrast of {len(samples)} samples needs as many weights, got {len(weights)}")
    sds = [max(float(s.std(ddof=1)), SD_FLOOR) for s in samples]
    variances = [(w * sd) ** 2 / len(s) for w, sd, s in zip(weights, sds, samples)]
    df = sum(variances) ** 2 / sum(v ** 2 / (len(s) - 1) for v, s in zip(variances, samples))
    floored = (sign * samples[0], sign * samples[1]) if any(s.std(ddof=1) < SD_FLOOR for s in samples) else None
    components = tuple(sign * (samples[i].mean() - samples[i + 1].mean()) for i in range(0, len(samples), 2)) if further else ()
    return Difference(sign * sum(w * s.mean() for w, s in zip(weights, samples)), math.sqrt(sum(variances)), df,
                      len(samples[0]), len(samples[1]), math.sqrt(sum(sd ** 2 for sd in sds) / len(sds)),
                      tuple(len(s) for s in samples[2:]), components, floored)


def test_pair(check: Check, diff: Difference) -> tuple[float, float]:
    """(p that the check holds, p that it fails), each one-sided and not yet corrected."""
    m = check.margin
    if check.kind == "beats":
        return diff.p_above(m), diff.p_below(m)
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
    if isinstance(diff, Share):  # the fewest seeds at which the observed share would decide, exactly
        share = diff.k / diff.n_better
        for n in range(diff.n_better + 1, MAX_SEEDS_SHOWN + 1):
            bigger = Share(diff.estimate, math.nan, math.nan, n, 0, diff.sd_pooled, k=round(share * n),
                           value=diff.value, sign=diff.sign)
            if min(test_pair(check, bigger)) < alpha:
                return n
        return MAX_SEEDS_SHOWN + 1
    boundaries = {"beats": (m,), "not_worse": (-m,), "equivalent": (-m, m)}[check.kind]
    distance = min(abs(diff.estimate - b) for b in boundaries)
    if distance == 0 or diff.sd_pooled == 0:
        return None
    z = special.ndtri(1 - alpha) + special.ndtri(POWER)
    groups = sum(w * w for w in check.weights)  # the difference's variance in units of one sample's
    # never fewer than one more seed than these runs have: they did not settle it
    seeds = max(min(diff.n_better, diff.n_worse or diff.n_better, *diff.n_further) + 1, math.ceil(groups * (z * diff.sd_pooled / distance) ** 2))
    if diff.floored is not None and not diff.n_further:  # nor fewer than the exact test's smallest p allows
        # the bound first: a tiny observed difference asks for ~1e17 seeds, whose C(2n, n) never finishes
        while seeds <= MAX_SEEDS_SHOWN and 1 / arrangement_count([seeds] * (1 if diff.n_worse == 0 else 2)) >= alpha:
            seeds += 1
    return seeds


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
    dropped: int = 0  # seeds whose value was not finite (diverged runs), left out
    # test_pair's p-values under the exact randomization test too (exact_pair), where one applies
    robust: Robustness | None = None
    # a decision the exact randomization test of the same seeds would leave open: its Holm p
    exact_p_adjusted: float | None = None
    exact_floor: bool = False  # ... because no exact test of this many seeds could decide it
    # open with every seed of every variant compared at the metric's best value (a training accuracy of
    # 1): the measure is saturated, so more seeds are unlikely to settle it
    saturated_at: float | None = None

    def describe(self) -> str:
        """'relu vs sigmoid, test_acc (higher is better), n = 5/5: advantage +0.851 [0.83, 0.87],
        p < 1e-04 (Holm < 1e-04) → beats: **holds**'."""
        c = self.check
        if self.diff is None:
            return f"{c.statement()}: {INCONCLUSIVE} ({self.problem})"
        low, high = self.diff.interval()
        p, p_adj = (self.p_fails, self.p_fails_adjusted) if self.status == FAILS else (self.p_holds, self.p_holds_adjusted)
        oriented = c.kind != "equivalent"
        direction = f" ({'lower' if c.lower_is_better else 'higher'} is better)" if oriented else ""
        n = "/".join(map(str, [self.diff.n_better, *([self.diff.n_worse] if c.worse is not None else []),
                               *self.diff.n_further]))
        compared = c.compared
        if c.value is not None:  # the variant's own mean beside the number, not only the difference from it
            mean = c.own_value(self.diff.estimate)
            # the mean first rounded as summary.csv stores it (6 digits), as the table's is: the two never
            # round one mean apart (0.11349999 to 0.113 here, 0.1135 to 0.114 there); the table may show fewer digits
            compared = (f"{c.better} {mean:,.10g} vs {c.value:,.10g}" if isinstance(self.diff, Fact)
                        else f"{c.better} {float(f'{mean:.6g}'):.3g} vs {c.other}")
        if isinstance(self.diff, Fact):  # no interval, no p: the same in every seed
            text = (f"{compared}, {c.metric}{direction}: {'advantage' if oriented else 'difference'} "
                    f"{self.diff.estimate:+.6g}, fixed by the architecture (every seed alike)")
        else:
            text = (f"{compared}, {c.metric}{direction}, n = {n}: "
                    f"{'advantage' if oriented else 'difference'} {self.diff.estimate:+.3g} [{low:.3g}, {high:.3g}], "
                    f"p {_p(p)} (Holm {_p(p_adj)})")
            if self.status == INCONCLUSIVE:
                # which way the data lean: "p = 0.98" alone hides an interval wholly on the failing side
                text += f" that it holds, p {_p(self.p_fails)} (Holm {_p(self.p_fails_adjusted)}) that it fails"
        if c.margin or c.kind != "beats":
            text += f", margin {c.margin:g}"
        text += f" → {c.kind.replace('_', ' ')}: **{self.status}**"
        if self.diff.floored is not None:
            text += (f" (a spread below {SD_FLOOR:g} counted as {SD_FLOOR:g})" if c.contrast else
                     f" (a spread below {SD_FLOOR:g}: p is the larger of Welch's and an exact randomization test's, "
                     f"which cannot go below 1/{arrangement_count([len(s) for s in self.diff.floored]):,} "
                     f"with these seeds)")
        if c.pairs:  # a mean can hide pairs that disagree: each pair's own advantage beside it
            text += (f" (the pairs' own advantages: {', '.join(f'{x:+.2g}' for x in self.diff.components)}; "
                     "a contrast rests on the normal model: no exact test backs it)")
        if self.dropped:
            text += f" ({self.dropped} non-finite value{'s' if self.dropped > 1 else ''} left out: diverged runs)"
        if self.exact_p_adjusted is not None and self.exact_floor:
            least = self.robust.least[0 if self.status == HOLDS else 1]
            text += (f" (rests on the normal model by design: an exact randomization test of these seeds cannot go "
                     f"below p = 1/{round(1 / least):,}, Holm p {_p(self.exact_p_adjusted)} here, so more seeds would be needed)")
        elif self.exact_p_adjusted is not None:
            text += (f" (rests on the normal model: with each p at least an exact randomization test's of the same "
                     f"seeds, Holm gives p {_p(self.exact_p_adjusted)}, which would leave it open)")
        if self.status == INCONCLUSIVE:
            m, estimate = c.margin, self.diff.estimate
            towards = HOLDS if {"beats": estimate > m, "not_worse": estimate > -m, "equivalent": -m < estimate < m}[c.kind] else FAILS
            text += (f" (very roughly {self.seeds} seeds per variant would settle it, as {towards} if the observed "
                     f"difference were the true one)"
                     if self.seeds and self.seeds <= MAX_SEEDS_SHOWN
                     else f" (more than {MAX_SEEDS_SHOWN} seeds per variant would be needed)" if self.seeds
                     else f" (every seed of {' and '.join(c.variants)} is at {c.metric}'s best value, "
                          f"{self.saturated_at:g}: the measure is saturated, so more seeds are unlikely to settle it; "
                          "a setup where the metric stays off that value could)" if self.saturated_at is not None
                     else " (the observed difference sits on the decision boundary)")
        return text + (f" — {c.note}" if c.note else "")

    def as_dict(self) -> dict:
        low, high = self.diff.interval() if self.diff else (math.nan, math.nan)
        return {"statement": self.check.statement(), "key": self.check.key, "premise": self.check.premise, "kind": self.check.kind,
                "better": self.check.better, "other": self.check.other, "metric": self.check.metric,
                "margin": self.check.margin, "status": self.status,
                "difference": None if self.diff is None else _finite(self.diff.estimate),
                "ci90": [_finite(low), _finite(high)], "p": _finite(self.p_holds if self.status != FAILS else self.p_fails),
                "p_holm": _finite(self.p_holds_adjusted if self.status != FAILS else self.p_fails_adjusted),
                "n": None if self.diff is None else [self.diff.n_better, self.diff.n_worse, *self.diff.n_further],
                "dropped": self.dropped, "seeds_needed": self.seeds,
                **({"saturated_at": self.saturated_at} if self.saturated_at is not None else {}),
                **({"exact_p_holm": _finite(self.exact_p_adjusted), "exact_floor": self.exact_floor}
                   if self.exact_p_adjusted is not None else {}),
                "text": self.describe()}


P_SHOWN_BELOW = 1e-4  # t tails from five seeds are not precise beyond this


def _p(p: float) -> str:
    return f"< {P_SHOWN_BELOW:.0e}" if p < P_SHOWN_BELOW else f"= {p:.2g}"


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def run_checks(checks: list[Check], values: dict[tuple[str, str], np.ndarray], alpha: float = ALPHA,
               binary: frozenset[str] = frozenset(), fixed: frozenset[str] = frozenset(),
               best_values: dict[str, float] | None = None) -> list[Outcome]:
    """Test every check on `values[(variant, metric)]` (one value per seed), Holm-corrected within
    the key checks and within the other side checks, each premise on its own;
    a check of a metric in `binary` (0/1 per seed) against a fixed share by the exact binomial test;
    a check of a metric in `fixed` (set by the architecture) by arithmetic, outside the correction;
    an open check of variants all at their metric's value in `best_values` in every seed says so."""
    outcomes = []
    for check in checks:
        raw = [values.get((name, check.metric)) for name in check.variants]
        cleaned = [_clean(r) for r in raw]
        better = cleaned[0]
        worse = check.value if check.worse is None else cleaned[1]
        dropped = sum(len(r) - len(_clean(r)) for r in raw if r is not None)
        short = [name for name, sample in zip(check.variants, cleaned) if sample is None or len(sample) < 2]
        if short:
            outcomes.append(Outcome(check, INCONCLUSIVE, None, problem=f"fewer than 2 finite values of {check.metric} for "
                                    + ", ".join(short)))
            continue
        if check.metric in fixed and not check.contrast:
            try:
                diff = fact(cleaned[:2] if check.worse is not None else cleaned[:1], check.value, check.lower_is_better)
            except ValueError as error:
                outcomes.append(Outcome(check, INCONCLUSIVE, None, problem=str(error)))
                continue
        elif check.metric in binary and check.worse is None:
            diff = share_test(better, worse, check.lower_is_better)
        else:
            diff = welch(better, worse, check.lower_is_better, tuple(cleaned[2:]), check.weights)
        p_holds, p_fails = test_pair(check, diff)
        outcomes.append(Outcome(check, INCONCLUSIVE, diff, p_holds, p_fails, dropped=dropped,
                                robust=exact_pair(check, diff, cleaned[:1] if check.worse is None else cleaned[:2])))
    for o in outcomes:
        if isinstance(o.diff, Fact):
            o.p_holds_adjusted, o.p_fails_adjusted = o.p_holds, o.p_fails
            o.status = HOLDS if o.p_holds == 0 else FAILS
    tested = [o for o in outcomes if o.diff is not None and not isinstance(o.diff, Fact)]
    # two families: the key checks, then the side checks (serial gatekeeping); each premise alone, since
    # the verdict needs every premise to hold (an intersection-union test needs no correction) and a
    # failed one only withholds the verdict
    families = [[o for o in tested if o.check.key], [o for o in tested if not o.check.key and not o.check.premise],
                *([o] for o in tested if o.check.premise)]
    for family in families:
        for o, p_h, p_f in zip(family, holm([o.p_holds for o in family]), holm([o.p_fails for o in family])):
            o.p_holds_adjusted, o.p_fails_adjusted = p_h, p_f
            if p_h < alpha:
                o.status = HOLDS
            elif p_f < alpha:
                o.status = FAILS
            else:
                o.seeds = seeds_needed(o.check, o.diff, alpha / len(family))  # Holm's strictest step
                # only where no seeds estimate applies: a tie at the ceiling with a margin (not worse
                # within 0.001) is what more seeds could settle, and its line says how many
                o.saturated_at = saturation(o.check, values, best_values or {}) if o.seeds is None else None
        flag_exact_decisions(family, alpha)
    return outcomes


def saturation(check: Check, values: dict[tuple[str, str], np.ndarray], best_values: dict[str, float]) -> float | None:
    """The metric's best value where every seed of every variant the check compares sits at it (no
    variant can do better, so neither can lead), else None."""
    best = best_values.get(check.metric)
    if best is None or check.worse is None:
        return None
    return best if all(all_at(values.get((name, check.metric)), best) for name in check.variants) else None


def all_at(sample: np.ndarray | None, value: float) -> bool:
    """Whether there are seeds and every one of them is exactly at `value`."""
    return sample is not None and len(sample) > 0 and bool(np.all(np.asarray(sample) == value))


def flag_exact_decisions(family: list[Outcome], alpha: float) -> None:
    """Flag each decided check of the family whose decision the exact randomization test of the same
    seeds would leave open, with every p at least the exact test's, Holm-corrected over the family.
    A check whose seeds give the exact test its least p is flagged as open by design (more seeds
    than these are needed); its p counts as Welch's for the others, so that no check is flagged
    only because a sibling sits at that floor."""
    def decided_side(o: Outcome) -> int | None:
        return {HOLDS: 0, FAILS: 1}.get(o.status) if o.robust else None

    def at_floor(o: Outcome, side: int) -> bool:
        return o.robust.exact[side] <= o.robust.least[side] * (1 + 1e-9)

    for by_design in (False, True):
        ps = [tuple(o.robust.larger[side] if o.robust and (by_design or not at_floor(o, side)) else p
                    for side, p in enumerate((o.p_holds, o.p_fails))) for o in family]
        for o, p_h, p_f in zip(family, holm([p[0] for p in ps]), holm([p[1] for p in ps])):
            side = decided_side(o)
            if side is not None and at_floor(o, side) == by_design and (p_h, p_f)[side] >= alpha:
                o.exact_p_adjusted, o.exact_floor = (p_h, p_f)[side], by_design


class ExactOnly(Difference):
    """A difference whose p-values are the exact randomization test's alone (`floored` holds the samples)."""

    def p_above(self, bound: float) -> float:
        return self._exact(bound, upper=True)

    def p_below(self, bound: float) -> float:
        return self._exact(bound, upper=False)


@dataclass
class Robustness:
    larger: tuple[float, float]  # test_pair's p-values, each at least the exact test's
    exact: tuple[float, float]  # the exact test's alone
    least: tuple[float, float]  # the least the exact test can give with these seeds


def exact_pair(check: Check, diff: Difference, samples: list[np.ndarray]) -> Robustness | None:
    """test_pair's p-values under the exact randomization test of the same seeds, for a Welch
    comparison of one or two samples whose spread was not floored (a floored one already takes the
    larger p, a share and a fact are exact, a contrast of more samples has no such test); None
    where none applies."""
    if type(diff) is not Difference or diff.floored is not None or check.contrast:
        return None
    sign = -1.0 if check.lower_is_better else 1.0
    oriented = (sign * (samples[0] - check.value),) if check.worse is None else (sign * samples[0], sign * samples[1])
    least = 1 / arrangement_count([len(s) for s in oriented])
    with_samples = replace(diff, floored=oriented)  # p: the larger of Welch's and the exact test's
    return Robustness(test_pair(check, with_samples), test_pair(check, ExactOnly(**vars(with_samples))),
                      # equivalence fails on either side: twice the smaller one-sided p
                      (least, 2 * least if check.kind == "equivalent" else least))


def _clean(sample) -> np.ndarray | None:
    if sample is None:
        return None
    sample = np.asarray(sample, dtype=float)
    return sample[np.isfinite(sample)]


def verdict_of(key: list[str], side_failed: bool) -> str:
    """The verdict for settled key checks: all hold (and no side check fails) → reproduced; all
    fail → not reproduced; anything else → partly."""
    if all(s == HOLDS for s in key):
        return PARTLY if side_failed else REPRODUCED
    if all(s == FAILS for s in key):
        return NOT_REPRODUCED
    return PARTLY


@dataclass
class Verdict:
    verdict: str
    outcomes: list[Outcome] = field(default_factory=list)
    possible: list[str] = field(default_factory=list)  # verdicts the inconclusive key checks leave open
    premise: str = ""  # a premise check failed or is open: what the key checks say does not stand alone

    def headline(self) -> str:
        parts = []
        for label, key in (("key checks", True), ("side checks", False)):
            mine = [o.status for o in self.outcomes if o.check.key == key]
            if mine:
                parts.append(f"{label}: {mine.count(HOLDS)} of {len(mine)} hold, {mine.count(FAILS)} fail, "
                             f"{mine.count(INCONCLUSIVE)} inconclusive")
        head = "; ".join(parts)
        saturated = sum(o.saturated_at is not None for o in self.outcomes if o.check.key)
        # an open check more seeds cannot be expected to settle: "could make it" is not "maybe true"
        stuck = (f"; {saturated} of them with every seed at its metric's best value, which more seeds are unlikely "
                 "to settle" if saturated else "")
        if self.premise == FAILS:
            head += " (a premise of the claim fails: the key checks did not test it)"
        elif self.premise == INCONCLUSIVE:
            head += f" (a premise of the claim is open; if it holds, the verdict is {' or '.join(self.possible)})"
        elif self.verdict == INCONCLUSIVE:
            head += f" (the open key checks could make it {' or '.join(self.possible)}{stuck})"
        return head

    def reason(self) -> str:
        return self.headline() + ". " + "; ".join(o.describe() for o in self.outcomes)


def decide(checks: list[Check], values: dict[tuple[str, str], np.ndarray], alpha: float = ALPHA,
           binary: frozenset[str] = frozenset(), fixed: frozenset[str] = frozenset(),
           best_values: dict[str, float] | None = None) -> Verdict:
    """Test the checks; the verdict is the one every way of settling the open key checks gives,
    provided every premise holds (a failed or open premise leaves it inconclusive)."""
    if not any(check.key for check in checks):
        raise ValueError("a claim needs at least one key check")
    outcomes = run_checks(checks, values, alpha, binary, fixed, best_values)
    premises = {o.status for o in outcomes if o.check.premise}
    if FAILS in premises:
        return Verdict(INCONCLUSIVE, outcomes, [], FAILS)
    key = [o.status for o in outcomes if o.check.key]
    side_failed = any(o.status == FAILS for o in outcomes if not o.check.key)
    open_ = [i for i, status in enumerate(key) if status == INCONCLUSIVE]
    possible = set()
    for settled in itertools.product((HOLDS, FAILS), repeat=len(open_)):
        statuses = list(key)
        for i, status in zip(open_, settled):
            statuses[i] = status
        possible.add(verdict_of(statuses, side_failed))
    ordered = [v for v in (REPRODUCED, PARTLY, NOT_REPRODUCED) if v in possible]
    if INCONCLUSIVE in premises:
        return Verdict(INCONCLUSIVE, outcomes, ordered, INCONCLUSIVE)
    return Verdict(ordered[0] if len(ordered) == 1 else INCONCLUSIVE, outcomes, ordered)
