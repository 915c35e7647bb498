"""Simulated benchmarks with known ground truth.

Each problem of a simulated benchmark is *structural* with probability ``pi`` (it is
never solved: ``p = 0``); otherwise its per-rollout success probability is drawn from
the slab ``p ~ Beta(mu * kappa, (1 - mu) * kappa)``. Every problem is then attempted
``n`` times, ``k ~ Binomial(n, p)``. This is exactly the zero-inflated beta-binomial
that :class:`bayes_regimes.models.regime.RegimeModel` fits, so the true ``p`` and the
true structural flag of every problem are available to check what a fit recovers.

Examples
--------
>>> from bayes_regimes.simulate import simulate_benchmark
>>> bench = simulate_benchmark(n_problems=4, n=8, random_seed=1)
>>> list(bench.counts.columns)
['problem_id', 'n', 'k']
>>> list(bench.truth.columns)
['problem_id', 'group', 'p', 'structural']
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_GROUPS",
    "SimulatedBenchmark",
    "default_benchmark",
    "simulate_benchmark",
]

#: Group label used in ``truth`` and ``params`` when no ``groups`` are given
#: (the same label :class:`bayes_regimes.data.RolloutData` uses without a group column).
SINGLE_GROUP = "all"

#: Hyper-parameters of the built-in default benchmark (see :func:`default_benchmark`),
#: read-only.
DEFAULT_GROUPS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "sft": MappingProxyType({"pi": 0.35, "mu": 0.25, "kappa": 1.5}),
        "grpo": MappingProxyType({"pi": 0.2, "mu": 0.35, "kappa": 2.5}),
    }
)
DEFAULT_N_PROBLEMS = 400
DEFAULT_N = 16
DEFAULT_SEED = 0

_PARAM_NAMES = ("pi", "mu", "kappa")

# Independent streams derived from the benchmark's seed for the optional extras, so
# that asking for rollouts or held-out draws never changes the counts.
_ROLLOUT_STREAM = 1
_HELDOUT_STREAM = 2


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_seed(random_seed: Any) -> int | None:
    if random_seed is None:
        return None
    if not _is_int(random_seed) or random_seed < 0:
        raise ValueError(f"random_seed must be a non-negative integer or None, got {random_seed!r}")
    return int(random_seed)


def _check_params(where: str, pi: Any, mu: Any, kappa: Any) -> dict[str, float]:
    values = {"pi": pi, "mu": mu, "kappa": kappa}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where}{name} must be a real number, got {value!r}")
        if not np.isfinite(float(value)):
            raise ValueError(f"{where}{name} must be finite, got {value!r}")
    pi, mu, kappa = float(pi), float(mu), float(kappa)
    if not 0.0 <= pi <= 1.0:
        raise ValueError(f"{where}pi must lie in [0, 1], got {pi!r}")
    if not 0.0 < mu < 1.0:
        raise ValueError(f"{where}mu must lie strictly between 0 and 1, got {mu!r}")
    if not kappa > 0.0:
        raise ValueError(f"{where}kappa must be positive, got {kappa!r}")
    return {"pi": pi, "mu": mu, "kappa": kappa}


def _resolve_groups(
    groups: Mapping[str, Mapping[str, float]] | None, pi: Any, mu: Any, kappa: Any
) -> dict[str, dict[str, float]]:
    defaults = {"pi": pi, "mu": mu, "kappa": kappa}
    if groups is None:
        return {SINGLE_GROUP: _check_params("", pi, mu, kappa)}
    if not isinstance(groups, Mapping) or len(groups) == 0:
        raise ValueError(
            "groups must be a non-empty dict mapping group name -> dict(pi=..., mu=..., "
            f"kappa=...), got {groups!r}"
        )
    resolved: dict[str, dict[str, float]] = {}
    for name, spec in groups.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"group names must be non-empty strings, got {name!r}")
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"groups[{name!r}] must be a dict with keys among {_PARAM_NAMES}, got {spec!r}"
            )
        unknown = sorted(set(spec) - set(_PARAM_NAMES))
        if unknown:
            raise ValueError(
                f"groups[{name!r}] has unknown keys {unknown}; allowed keys are {_PARAM_NAMES}"
            )
        merged = {key: spec.get(key, defaults[key]) for key in _PARAM_NAMES}
        resolved[name] = _check_params(f"groups[{name!r}]: ", **merged)
    return resolved


def _resolve_n(n: Any, n_problems: int, n_groups: int) -> np.ndarray:
    """Per-problem rollout counts as an int64 array of length ``n_problems * n_groups``."""
    total = n_problems * n_groups
    if _is_int(n):
        if n < 1:
            raise ValueError(f"n must be a positive integer (rollouts per problem), got {n!r}")
        return np.full(total, int(n), dtype=np.int64)
    if isinstance(n, bool | str | bytes | Mapping):
        raise ValueError(f"n must be a positive integer or a 1-d array of them, got {n!r}")
    arr = np.asarray(n)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"n must be a positive integer or a non-empty 1-d array of them, got {n!r}"
        )
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"n must contain integers, got dtype {arr.dtype}")
    if np.any(arr < 1):
        bad = int(np.flatnonzero(arr < 1)[0])
        raise ValueError(f"n must be >= 1 for every problem; n[{bad}] = {arr[bad]}")
    if arr.size == total:
        return arr.astype(np.int64)
    if arr.size == n_problems:
        # Same per-problem n within every group.
        return np.tile(arr.astype(np.int64), n_groups)
    expected = (
        f"{n_problems}" if n_groups == 1 else f"{n_problems} (per group) or {total} (all groups)"
    )
    raise ValueError(f"n has {arr.size} entries but there are {expected} problems")


def _derived_rng(random_seed: int | None, stream: int) -> np.random.Generator:
    if random_seed is None:
        return np.random.default_rng()
    return np.random.default_rng([random_seed, stream])


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SimulatedBenchmark:
    """A simulated benchmark and its ground truth.

    Attributes
    ----------
    counts : pandas.DataFrame
        One row per problem: ``problem_id`` (str), ``group`` (str, only when the
        benchmark was simulated with ``groups``), ``n`` and ``k`` (int64).
    truth : pandas.DataFrame
        Aligned row by row with ``counts``: ``problem_id``, ``group`` (``"all"``
        without groups), ``p`` (float64, the true per-rollout success probability)
        and ``structural`` (bool; structural problems have ``p == 0`` and ``k == 0``).
    params : dict
        The true hyper-parameters per group: ``{group: {"pi", "mu", "kappa"}}``
        (the single group is called ``"all"`` without groups).
    random_seed : int or None
        The seed the benchmark was simulated from. :meth:`rollouts` and
        :meth:`heldout` derive independent, reproducible streams from it.

    Examples
    --------
    >>> from bayes_regimes.simulate import simulate_benchmark
    >>> bench = simulate_benchmark(n_problems=3, n=4, random_seed=0)
    >>> bench.counts.shape, bench.truth.shape
    ((3, 3), (3, 4))
    >>> bench.params
    {'all': {'pi': 0.3, 'mu': 0.2, 'kappa': 2.0}}
    """

    counts: pd.DataFrame
    truth: pd.DataFrame
    params: dict[str, dict[str, float]]
    random_seed: int | None = field(default=None)

    @property
    def has_group(self) -> bool:
        """Whether ``counts`` carries a ``group`` column."""
        return "group" in self.counts.columns

    def __repr__(self) -> str:
        n_struct = int(self.truth["structural"].sum())
        return (
            f"SimulatedBenchmark({len(self.counts)} problems, groups={list(self.params)}, "
            f"{n_struct} structural, rollouts={int(self.counts['n'].sum())}, "
            f"random_seed={self.random_seed})"
        )

    def _id_columns(self) -> list[str]:
        return ["problem_id", "group"] if self.has_group else ["problem_id"]

    def rollouts(self, random_seed: int | None = None) -> pd.DataFrame:
        """One row per rollout, consistent with :attr:`counts`.

        Problem ``i`` contributes ``n_i`` rows numbered ``sample = 0 .. n_i - 1`` of which
        exactly ``k_i`` are correct, at positions shuffled at random.

        Parameters
        ----------
        random_seed : int, optional
            Seed for the positions of the correct rollouts. By default a stream derived
            from the benchmark's own seed, so the result is reproducible.

        Returns
        -------
        pandas.DataFrame
            Columns ``problem_id``, ``group`` (only when the benchmark has groups),
            ``sample`` (int64) and ``correct`` (bool), problems in the order of
            :attr:`counts`.

        Examples
        --------
        >>> from bayes_regimes.simulate import simulate_benchmark
        >>> bench = simulate_benchmark(n_problems=5, n=6, random_seed=2)
        >>> rows = bench.rollouts()
        >>> len(rows) == int(bench.counts["n"].sum())
        True
        >>> k = rows.groupby("problem_id", sort=False)["correct"].sum()
        >>> bool((k.to_numpy() == bench.counts["k"].to_numpy()).all())
        True
        """
        seed = self.random_seed if random_seed is None else _check_seed(random_seed)
        rng = _derived_rng(seed, _ROLLOUT_STREAM)
        n = self.counts["n"].to_numpy(dtype=np.int64)
        k = self.counts["k"].to_numpy(dtype=np.int64)
        owner = np.repeat(np.arange(len(n)), n)
        # Random keys, ranked within each problem: the k_i smallest are the correct ones.
        order = np.lexsort((rng.random(owner.size), owner))
        starts = np.concatenate(([0], np.cumsum(n)[:-1]))
        rank = np.empty(owner.size, dtype=np.int64)
        rank[order] = np.arange(owner.size) - np.repeat(starts, n)
        correct = rank < k[owner]
        sample = np.arange(owner.size) - np.repeat(starts, n)
        out = {col: np.repeat(self.counts[col].to_numpy(), n) for col in self._id_columns()}
        out["sample"] = sample.astype(np.int64)
        out["correct"] = correct
        return pd.DataFrame(out)

    def heldout(self, m_more: int, random_seed: int | None = None) -> pd.DataFrame:
        """Successes in ``m_more`` further rollouts per problem, drawn from the true ``p``.

        Use it to validate predictions of what more sampling buys, e.g. the expected
        gain ``P(at least one success in m_more more | data)`` against
        ``heldout(m_more).k > 0`` for problems unsolved in :attr:`counts`.

        Parameters
        ----------
        m_more : int
            Further rollouts per problem (positive).
        random_seed : int, optional
            Seed of the draws. By default a stream derived from the benchmark's own seed
            (independent of the counts and of :meth:`rollouts`).

        Returns
        -------
        pandas.DataFrame
            Aligned row by row with :attr:`counts`, same columns: ``problem_id``,
            ``group`` (only with groups), ``n`` (``m_more``) and ``k`` (held-out
            successes, always 0 for structural problems).

        Examples
        --------
        >>> from bayes_regimes.simulate import simulate_benchmark
        >>> bench = simulate_benchmark(n_problems=6, n=4, random_seed=3)
        >>> more = bench.heldout(100)
        >>> bool((more.loc[bench.truth["structural"], "k"] == 0).all())
        True
        >>> int(more["n"].iloc[0])
        100
        """
        m_more = _check_positive_int("m_more", m_more)
        seed = self.random_seed if random_seed is None else _check_seed(random_seed)
        rng = _derived_rng(seed, _HELDOUT_STREAM)
        p = self.truth["p"].to_numpy(dtype=np.float64)
        k = rng.binomial(m_more, p).astype(np.int64)
        out = self.counts[self._id_columns()].copy()
        out["n"] = np.full(len(out), m_more, dtype=np.int64)
        out["k"] = k
        return out


def simulate_benchmark(
    n_problems: int = 500,
    n: int | Sequence[int] | np.ndarray = 10,
    pi: float = 0.3,
    mu: float = 0.2,
    kappa: float = 2.0,
    groups: Mapping[str, Mapping[str, float]] | None = None,
    random_seed: int | None = 0,
) -> SimulatedBenchmark:
    """Simulate a benchmark from the zero-inflated hierarchical beta-binomial.

    For every problem: with probability ``pi`` it is structural (``p = 0``), otherwise
    ``p ~ Beta(mu * kappa, (1 - mu) * kappa)``; then ``k ~ Binomial(n, p)``.

    Parameters
    ----------
    n_problems : int, default 500
        Problems to simulate (per group when ``groups`` is given).
    n : int or array of int, default 10
        Rollouts per problem: one number for all problems, or one per problem (length
        ``n_problems``, reused in every group, or the total number of problems).
    pi : float, default 0.3
        Probability that a problem is structural, in [0, 1].
    mu : float, default 0.2
        Mean of the slab Beta distribution of ``p`` for non-structural problems, in (0, 1).
    kappa : float, default 2.0
        Concentration (``a + b``) of the slab Beta distribution, positive.
    groups : dict, optional
        Group name -> ``dict(pi=..., mu=..., kappa=...)``. Each group gets
        ``n_problems`` problems; keys left out fall back to the ``pi``, ``mu``,
        ``kappa`` arguments. Groups are simulated in the dict's order.
    random_seed : int or None, default 0
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same benchmark.

    Returns
    -------
    SimulatedBenchmark
        ``counts``, ``truth`` (aligned row by row) and the true ``params``. Problem ids
        are ``"p0000"``, ``"p0001"``, ... numbered across all groups, so every
        (problem, group) row is a distinct problem.

    Raises
    ------
    ValueError
        If an argument is out of range (e.g. ``mu`` outside (0, 1), ``kappa <= 0``,
        ``n < 1``) or ``groups`` is malformed.

    Examples
    --------
    >>> from bayes_regimes.simulate import simulate_benchmark
    >>> bench = simulate_benchmark(n_problems=200, n=10, pi=0.3, random_seed=0)
    >>> bench.counts.head(3)["problem_id"].tolist()
    ['p0000', 'p0001', 'p0002']
    >>> bool((bench.counts.loc[bench.truth["structural"], "k"] == 0).all())
    True

    Two groups with different hyper-parameters:

    >>> two = simulate_benchmark(
    ...     n_problems=50,
    ...     n=8,
    ...     groups={"a": {"pi": 0.1, "mu": 0.5, "kappa": 3.0}, "b": {"pi": 0.5}},
    ... )
    >>> two.counts["group"].value_counts(sort=False).to_dict()
    {'a': 50, 'b': 50}
    >>> two.params["b"]
    {'pi': 0.5, 'mu': 0.2, 'kappa': 2.0}
    """
    n_problems = _check_positive_int("n_problems", n_problems)
    seed = _check_seed(random_seed)
    params = _resolve_groups(groups, pi, mu, kappa)
    n_arr = _resolve_n(n, n_problems, len(params))

    rng = np.random.default_rng(seed)
    total = n_problems * len(params)
    p = np.empty(total, dtype=np.float64)
    structural = np.empty(total, dtype=bool)
    labels = np.repeat(np.array(list(params), dtype=object), n_problems)
    for g, spec in enumerate(params.values()):
        block = slice(g * n_problems, (g + 1) * n_problems)
        is_struct = rng.random(n_problems) < spec["pi"]
        a = spec["mu"] * spec["kappa"]
        b = (1.0 - spec["mu"]) * spec["kappa"]
        slab = rng.beta(a, b, size=n_problems)
        structural[block] = is_struct
        p[block] = np.where(is_struct, 0.0, slab)
    k = rng.binomial(n_arr, p).astype(np.int64)

    width = max(4, len(str(total - 1)))
    ids = [f"p{i:0{width}d}" for i in range(total)]
    counts = {"problem_id": ids}
    if groups is not None:
        counts["group"] = labels.tolist()
    counts_df = pd.DataFrame({**counts, "n": n_arr, "k": k})
    truth_df = pd.DataFrame(
        {"problem_id": ids, "group": labels.tolist(), "p": p, "structural": structural}
    )
    return SimulatedBenchmark(
        counts=counts_df, truth=truth_df, params=copy.deepcopy(params), random_seed=seed
    )


def default_benchmark() -> SimulatedBenchmark:
    """The built-in default dataset used by ``bayes-regimes demo``.

    Two groups of 400 problems each, every problem attempted ``n = 16`` times,
    simulated with seed 0 from :data:`DEFAULT_GROUPS`:

    ========  =====  =====  =======  ======================================
    group      pi     mu    kappa    reading
    ========  =====  =====  =======  ======================================
    ``sft``   0.35   0.25   1.5      more structural failures, lower slab
    ``grpo``  0.20   0.35   2.5      fewer structural failures, higher slab
    ========  =====  =====  =======  ======================================

    The groups stand for a supervised fine-tuned model and an RL-tuned (GRPO) model
    on comparable problem sets; problem ids run ``p0000`` .. ``p0799`` across both.

    Returns
    -------
    SimulatedBenchmark
        The same benchmark on every call.

    Examples
    --------
    >>> from bayes_regimes.simulate import default_benchmark
    >>> bench = default_benchmark()
    >>> bench.counts.shape
    (800, 4)
    >>> sorted(bench.params)
    ['grpo', 'sft']
    >>> int(bench.counts["n"].max())
    16
    """
    return simulate_benchmark(
        n_problems=DEFAULT_N_PROBLEMS,
        n=DEFAULT_N,
        groups={name: dict(spec) for name, spec in DEFAULT_GROUPS.items()},
        random_seed=DEFAULT_SEED,
    )
