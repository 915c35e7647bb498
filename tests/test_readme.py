"""The README's quick-start code runs as printed (on a small simulated evals.csv).

The snippets are read from README.md itself, so an edit that breaks them fails here.
Fits run with tiny sampler settings: this checks the API the README shows, not the
numbers.
"""

from __future__ import annotations

import json
import re
import shlex
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bayes_regimes import cli
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.crossed_tools import simulate_crossed

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = {"m00": "Pythia 70M", "m01": "Pythia 1B", "m02": "Pythia 6.9B"}


def quick_start_blocks(text: str, language: str = "python") -> list[str]:
    """The code blocks of the "Quick start" section in ``language``, in order."""
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture
def evals(tmp_path, monkeypatch):
    """A small evals.csv (3 Pythia-named models) in the working directory; tiny fits."""
    counts = simulate_crossed(n_problems=25, n_models=3, n=10, random_seed=0).counts
    counts.assign(model=counts["model"].map(NAMES)).to_csv(tmp_path / "evals.csv", index=False)
    fit = BaseModel.fit

    def tiny_fit(self, **kwargs):  # positional settings would fail loudly, not be dropped
        kwargs |= {"draws": 60, "tune": 60, "chains": 2, "progressbar": False}
        return fit(self, **kwargs)

    monkeypatch.setattr(BaseModel, "fit", tiny_fit)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_quick_start_has_the_single_and_the_crossed_example():
    blocks = quick_start_blocks(README.read_text())
    assert len(blocks) == 2
    assert "RegimeModel(data)" in blocks[0] and 'pooling="crossed"' in blocks[1]


@pytest.mark.filterwarnings("ignore::bayes_regimes.errors.DiagnosticsWarning")
def test_quick_start_code_runs(evals):
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in quick_start_blocks(README.read_text()):
            exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert (evals / "fit.nc").exists()
    assert scope["model"].is_fitted and scope["crossed"].is_fitted
    new = scope["crossed"].predict_new_cell(
        scope["crossed"].problems, "Pythia 12B", model_covariates=scope["new"]
    )
    assert len(new) == 25 and new["model"].eq("Pythia 12B").all()


@pytest.mark.filterwarnings("ignore::bayes_regimes.errors.DiagnosticsWarning")
def test_quick_start_commands_run(evals, capsys):
    sizes = {"Pythia 70M": 7.85, "Pythia 1B": 9.0, "Pythia 6.9B": 9.84}
    lines = ["model,log10_params", *(f"{m},{v}" for m, v in sizes.items())]
    (evals / "models.csv").write_text("\n".join(lines) + "\n")
    (block,) = quick_start_blocks(README.read_text(), "bash")
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert commands and all(c[0] == "bayes-regimes" for c in commands)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for command in commands:
            capsys.readouterr()
            assert cli.main(command[1:]) == 0, command
    assert (evals / "results" / "fit.nc").exists() and (evals / "crossed" / "fit.nc").exists()
    allocation = pd.DataFrame(json.loads(capsys.readouterr().out))  # the last: allocate --json
    assert allocation["extra"].sum() == 5000
