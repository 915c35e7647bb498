"""Shared helpers of the paper figure scripts: settings, saving, captions, the held-out fit.

Every figure script exposes ``NAME``, ``CAPTION``, ``DATA`` (the public files it
reads, relative to ``../shared/data``; empty for simulated figures) and
``main(out=OUTPUT, quick=False) -> list[Path]``, which writes ``NAME.png`` and
``NAME.pdf`` into ``out`` and returns their paths (an empty list, with the reason
printed, when its data is absent). ``quick=True`` uses tiny sampler settings for
the tests; the figures are then drafts.

The held-out figures (4 to 8) share one fit of Large Language Monkeys: the
first ``train_m`` samples of every problem (an exact hypergeometric draw, see
:func:`bayes_regimes.heldout.holdout_split`) are the training data, the other
``10,000 - train_m`` the truth. :func:`heldout_fit` caches it per process, so
``make_all.py`` fits it once.

Figures 1 to 3 share one :class:`~bayes_regimes.models.interventions.InterventionModel`
fit on the paper's failure profiles (:func:`intervention_fit`), with the settings of
``benchmarks/router.py`` (2 chains, 500 tuning steps, ``target_accept=0.9``). It is
saved under ``<out>/cache/`` (untracked) and reloaded by later runs: delete that
folder to refit.
"""

from __future__ import annotations

import contextlib
import functools
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayes_regimes import RegimeModel, RolloutData, datasets, paper  # noqa: E402
from bayes_regimes.errors import DiagnosticsWarning  # noqa: E402
from bayes_regimes.heldout import holdout_split  # noqa: E402
from bayes_regimes.models.interventions import InterventionModel  # noqa: E402
from bayes_regimes.routing import profiles_to_counts, total_rollouts  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "output"
#: Results of ``benchmarks/router.py`` (cross-validated Bayesian routing), when present.
ROUTER_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "router.json"
MONKEYS = datasets.SOURCES["monkeys"]
PROFILES = datasets.SOURCES["failure_profiles"]
DPI = 150


@contextlib.contextmanager
def quiet_queries():
    """Silence the DiagnosticsWarning that every query of a failed fit repeats: the
    figures flag a failed fit once, with a red banner (:func:`flag_failed_fit`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        yield


@dataclass(frozen=True)
class Settings:
    """Sampler and protocol settings of the figures."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    train_m: int = 10
    seed: int = 0
    baseline_draws: int = 200

    def fit_kwargs(self) -> dict:
        return dict(
            draws=self.draws,
            tune=self.tune,
            chains=self.chains,
            random_seed=self.seed,
            progressbar=False,
        )


FULL = Settings()
QUICK = Settings(draws=100, tune=100, chains=2, baseline_draws=20)


def settings(quick: bool) -> Settings:
    return QUICK if quick else FULL


def data_available(name: str) -> bool:
    """True when the public data exists; else print why the figure is skipped."""
    if datasets.data_dir() is None:
        print(f"skipping {name}: {datasets.missing_reason()}")
        return False
    return True


def data_note(*files: str) -> str:
    return "Real data from " + ", ".join(f"../shared/data/{f}" for f in files) + "."


def save(fig, out: Path, name: str, note: str = "") -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` (with ``note`` as a footer) and close the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if note:
        # Below the axes: bbox_inches="tight" widens the saved figure to include it.
        fig.text(0.005, -0.01, textwrap.fill(note, 190), fontsize=7, color="#555", va="top")
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return paths


def flag_failed_fit(fig, models: dict[str, RegimeModel]) -> str:
    """A red banner on the figure for every fit that failed its diagnostics.

    Returns the note ("" when every fit passed); a failed fit is never used silently.
    """
    bad = {name: m.diagnostics().message for name, m in models.items() if not m.diagnostics().ok}
    if not bad:
        return ""
    note = "; ".join(f"{name}: {msg}" for name, msg in bad.items())
    text = textwrap.fill(note, 150)
    fig.text(0.5, 1.03, text, color="#b00", fontsize=7, ha="center", va="bottom")
    print(f"warning: {note}")
    return note


@dataclass
class HeldoutFit:
    """The Large Language Monkeys held-out set and fits on its training part."""

    counts: pd.DataFrame
    split: pd.DataFrame
    models: dict[str, RegimeModel]
    settings: Settings

    @property
    def model(self) -> RegimeModel:
        """The package's default model (zero-inflated Beta)."""
        return self.models[DEFAULT_MODEL]

    @property
    def failed(self) -> np.ndarray:
        """Mask of the training failures (k_train = 0), aligned with the cells."""
        return self.split["k_train"].to_numpy() == 0


DEFAULT_MODEL = "zero-inflated Beta"


#: Further slab families (of ``bayes_regimes.models.regime.SLABS``) compared in figure 4.
#: Empty for now: a logit-normal fit of this data took over 14 minutes on 2 cores.
EXTRA_SLABS: tuple[str, ...] = ()


def model_specs() -> dict[str, dict]:
    """The Bayesian models of figure 4: the package's default (zero-inflated Beta, first),
    the plain Beta (no point mass) and the zero-inflated :data:`EXTRA_SLABS`."""
    specs = {DEFAULT_MODEL: dict(slab="beta", structural=True)}
    specs["plain Beta"] = dict(slab="beta", structural=False)
    specs.update({f"zero-inflated {s}": dict(slab=s) for s in EXTRA_SLABS})
    return specs


@functools.cache
def _split(s: Settings) -> tuple[pd.DataFrame, pd.DataFrame, RolloutData]:
    counts = datasets.load_source("monkeys")
    split = holdout_split(counts, s.train_m, random_seed=s.seed)
    train = split[["model", "problem_id", "n_train", "k_train"]].rename(
        columns={"n_train": "n", "k_train": "k"}
    )
    return counts, split, RolloutData.from_counts(train, group="model")


@functools.cache
def _fit(s: Settings, name: str) -> RegimeModel:
    model = RegimeModel(_split(s)[2], **model_specs()[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # flagged on the figure instead
        model.fit(**s.fit_kwargs())
    return model


def heldout_fit(s: Settings, names: tuple[str, ...] = (DEFAULT_MODEL,)) -> HeldoutFit:
    """Models fitted on the first ``s.train_m`` samples of every problem (cached)."""
    counts, split, _ = _split(s)
    return HeldoutFit(counts, split, {name: _fit(s, name) for name in names}, s)


# ------------------------------------------------------------ the interventions model
#: Attempts per trial of each condition: best-of-3 rescue contexts, single original rollouts.
ATTEMPTS = {c: paper.ATTEMPTS_PER_CONTEXT for c in paper.RATES} | {"original": 1}


def intervention_settings(s: Settings) -> dict:
    """Sampler settings of the interventions fit: those of ``benchmarks/router.py``
    (2 chains x 1,000 draws after 500 tuning steps), or tiny ones for the drafts."""
    quick = s == QUICK
    return dict(
        draws=100 if quick else 1000,
        tune=100 if quick else 500,
        chains=2,
        random_seed=s.seed,
        progressbar=False,
        target_accept=0.9,
    )


def intervention_data(df: pd.DataFrame) -> RolloutData:
    """The failure profiles as condition cells (:func:`~bayes_regimes.routing.profiles_to_counts`):
    groups = the 8 model x task cells, the three trace features, the original rollouts
    as the selection condition."""
    counts = profiles_to_counts(df, rollouts=total_rollouts(df))
    return RolloutData.from_counts(
        counts, group="cell", condition="condition", features=list(paper.FEATURES)
    )


@functools.cache
def _intervention_fit(s: Settings, cache: Path) -> InterventionModel:
    kw = intervention_settings(s)
    path = cache / f"interventions_d{kw['draws']}_t{kw['tune']}_c{kw['chains']}_s{s.seed}.nc"
    df = paper.read_failure_profiles()
    model = InterventionModel(intervention_data(df), attempts=ATTEMPTS, selection="original")
    if path.exists():
        cached = InterventionModel.load(path)
        same_data = cached.data.cells.equals(model.data.cells)
        if cached.config == model.config and same_data:
            print(f"interventions fit: reusing {path}")
            return cached
        print(f"interventions fit: {path} is a different model or data set; refitting")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # flagged on the figure instead
        model.fit(**kw)
    cache.mkdir(parents=True, exist_ok=True)
    model.save(path)
    print(f"interventions fit: saved {path} ({model.diagnostics().message or 'diagnostics OK'})")
    return model


def intervention_fit(s: Settings, out: Path = OUTPUT) -> InterventionModel:
    """The interventions model fitted on all 1,423 failures (cached in ``out/cache``)."""
    return _intervention_fit(s, (Path(out) / "cache").resolve())


def unit_index(model: InterventionModel, df: pd.DataFrame) -> np.ndarray:
    """Position of each row of the failure-profile table among the model's units."""
    lay = model.layout
    pos = {(g, p): i for i, (g, p) in enumerate(zip(lay.group_label, lay.problem, strict=True))}
    keys = zip(df["cell"].astype(str), df["problem_id"].astype(str), strict=True)
    return np.array([pos[key] for key in keys], dtype=np.int64)


@functools.cache
def _routes(s: Settings, cache: Path) -> pd.DataFrame:
    with quiet_queries():
        return _intervention_fit(s, cache).route(max_draws=500, random_seed=s.seed)


def intervention_routes(s: Settings, df: pd.DataFrame, out: Path = OUTPUT) -> pd.DataFrame:
    """:func:`~bayes_regimes.routing.route_fitted` of :func:`intervention_fit`, one row
    per row of ``df`` (same index)."""
    model = intervention_fit(s, out)
    routes = _routes(s, (Path(out) / "cache").resolve())
    return routes.iloc[unit_index(model, df)].set_index(df.index)
