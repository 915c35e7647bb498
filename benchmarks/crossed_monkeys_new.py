"""``benchmarks/crossed.py --part monkeys``, last section: models never run.

Each of the 7 Pythia models is left out of the fit in turn; the crossed model with the
log parameter count as a model covariate is fitted on the other six (m = 10 samples
per cell), and the left-out model's pass@k on every problem is predicted before it
runs: placed by its size, or as an anonymous draw from the population of models.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _common import markdown_table, quiet_warnings
from crossed_monkeys import (
    COVARIATE,
    MONKEYS_FIT,
    _cached,
    _model_kwargs,
    log_params,
)

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes.metrics import auroc, brier, expected_calibration_error

#: Variant fitted on six models to predict the seventh (``new_models``).
NEW_MODEL_VARIANT = COVARIATE + " (ability, structural, kappa)"
#: pass@k of the left-out model that ``new_models`` predicts per problem.
NEW_MODEL_KS = (1, 10, 100, 10000)


def new_models(counts, seed: int, args) -> list[dict]:
    """Leave one model out entirely; predict its pass@k on every problem before it runs.

    The other six models are fitted on m = 10 samples per cell (the covariate variant);
    the left-out model is then predicted twice from the same fit: placed by its size
    (``predict_new_cell(..., model_covariates=...)``) and as an anonymous draw from the
    population of models. Truth: pass@k of its 10,000 samples (unbiased estimator;
    pass@10000 = any success). Scored per left-out model: mean pass@k predicted
    against true, and for pass@10000 AUROC / ECE / Brier over the 128 problems.
    """
    from bayes_regimes.closed_form import unbiased_pass_at_k
    from bayes_regimes.heldout import holdout_split

    sizes = log_params(counts["model"].unique())
    rows = []
    for held in counts["model"].unique():

        def compute(held=held):
            split = holdout_split(counts, 10, random_seed=seed)
            train = split[split["model"] != held]
            data = RolloutData.from_counts(
                train.assign(n=train["n_train"], k=train["k_train"])[
                    ["model", "problem_id", "n", "k"]
                ],
                group="model",
            )
            kw = _model_kwargs(counts, NEW_MODEL_VARIANT)
            kw["model_covariates"] = sizes.drop(index=held)
            model = RegimeModel(data, **kw)
            start = time.perf_counter()
            with quiet_warnings():
                model.fit(random_seed=seed, **MONKEYS_FIT)
            seconds = time.perf_counter() - start
            target = counts[counts["model"] == held]
            problems = target["problem_id"].astype(str).to_numpy()
            out = []
            for how, cov in (("by size", sizes.loc[[held]]), ("population", None)):
                with quiet_warnings():
                    pred = model.predict_new_cell(
                        problems, held, ks=list(NEW_MODEL_KS), model_covariates=cov
                    )
                row = {"model": held, "seed": seed, "prediction": how}
                for kk in NEW_MODEL_KS:
                    truth = unbiased_pass_at_k(target["n"], target["k"], kk)
                    row[f"pass@{kk}_true"] = float(np.mean(truth))
                    row[f"pass@{kk}_pred"] = float(pred[f"pass@{kk}_mean"].mean())
                solved = (target["k"] > 0).to_numpy()
                p = pred[f"pass@{NEW_MODEL_KS[-1]}_mean"].to_numpy()
                row |= {"auroc": auroc(solved, p), "ece": expected_calibration_error(solved, p)}
                row |= {"brier": brier(solved, p), "fit_seconds": seconds}
                row |= {"diagnostics_ok": bool(model.diagnostics().ok)}
                out.append(row)
            return {"rows": out}

        slug = "".join(ch if ch.isalnum() else "_" for ch in held)
        rows += _cached(args.tmp / f"monkeys_newmodel_{slug}_seed{seed}.json", compute)["rows"]
        print("new model", held, rows[-2]["auroc"], rows[-1]["auroc"])
    return rows


def new_models_markdown(unseen: list[dict]) -> tuple[list[str], list[dict]]:
    """The section's markdown lines, and the mean errors per kind of prediction."""
    cols = {"model": "left-out model", "prediction": "prediction"}
    for kk in NEW_MODEL_KS:
        cols |= {f"pass@{kk}_pred": f"pass@{kk} pred", f"pass@{kk}_true": "true"}
    cols |= {"auroc": "AUROC", "ece": "ECE", "brier": "Brier", "diagnostics_ok": "ok"}
    err = pd.DataFrame(unseen)
    for kk in NEW_MODEL_KS:
        err[f"err{kk}"] = (err[f"pass@{kk}_pred"] - err[f"pass@{kk}_true"]).abs()
    metrics = [f"err{kk}" for kk in NEW_MODEL_KS] + ["auroc", "ece", "brier"]
    summary = err.groupby("prediction", sort=False)[metrics].mean().reset_index()
    summary_cols = {"prediction": "prediction"}
    summary_cols |= {f"err{kk}": f"pass@{kk}" for kk in NEW_MODEL_KS}
    summary_cols |= {"auroc": "AUROC", "ece": "ECE", "brier": "Brier"}
    records = summary.to_dict("records")
    md = [
        "## New models: predict a model left out of the fit entirely",
        "",
        f"`{NEW_MODEL_VARIANT}` fitted on the other six models (m = 10 samples, seed 0), "
        "then the left-out model's pass@k on each of the 128 problems predicted from its "
        "size (`predict_new_cell(..., model_covariates=...)`) or as an anonymous draw "
        "from the population of models; mean over problems against the truth of its "
        "10,000 samples; AUROC / ECE / Brier of pass@10000 (any success) over problems.",
        "",
        markdown_table(unseen, cols),
        "",
        "Mean absolute error of the benchmark-level pass@k over the 7 left-out models:",
        "",
        markdown_table(records, summary_cols),
    ]
    return md, records
