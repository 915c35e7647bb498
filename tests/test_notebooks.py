"""Execute every notebook in notebooks/ (picked up automatically) with nbclient.

Each notebook runs top to bottom in a fresh kernel started from *this* interpreter
(a temporary kernelspec pointing at ``sys.executable``, so the venv's package is the
one imported, whatever kernels the machine has installed). Any cell that raises
fails the test: errors are never allowed.

A notebook that reads the public data (``../shared/data``) is skipped, with the
reason, when the data folder is absent. It says so in its metadata,
``{"bayes_regimes": {"requires_data": true}}``; without that key, a notebook is
taken to need the data when its code mentions ``bayes_regimes.datasets`` or one of
its loaders, or ``read_failure_profiles``.

Every notebook starts with a papermill-style parameters cell (tagged ``parameters``)
that reads the environment variable ``BAYES_REGIMES_NOTEBOOK_QUICK``; the tests set
it to ``1``, so the notebooks fit with tiny sampler settings (drafts: their fits
fail the diagnostics and say so, which is part of what they show).

At those settings every notebook runs in 20 to 80 s on an idle 2-core machine
(01 18 s, 02 49 s, 03 74 s, 04 78 s; about 2.5 min for all four with two workers), so
all of :data:`FAST_NOTEBOOKS` run in the fast suite (CI). Under heavy load they take
up to 5 min each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bayes_regimes import datasets

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: Environment variable of the parameters cells: "1" selects tiny sampler settings.
QUICK_ENV = "BAYES_REGIMES_NOTEBOOK_QUICK"
#: Notebooks executed in the fast suite (any others would be slow-marked): all four
#: run in about 2.5 min together at quick settings on an idle 2-core machine.
FAST_NOTEBOOKS: frozenset[str] = frozenset(
    {
        "01_quickstart.ipynb",
        "02_interventions_and_routing.ipynb",
        "03_model_checking.ipynb",
        "04_comparing_models.ipynb",
    }
)
KERNEL_NAME = "bayes-regimes-test"
#: Code that marks a notebook as reading the public data (when its metadata is silent).
DATA_MARKERS = ("bayes_regimes.datasets", "load_source(", "source_path(", "read_failure_profiles(")
#: Wall-clock limit per cell, generous for a loaded 2-core machine.
CELL_TIMEOUT_S = 900


def requires_data(nb) -> bool:
    """Whether the notebook reads the public data folder."""
    meta = nb.metadata.get("bayes_regimes", {})
    if "requires_data" in meta:
        return bool(meta["requires_data"])
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return any(marker in code for marker in DATA_MARKERS)


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A kernelspec whose kernel is ``sys.executable -m ipykernel_launcher``."""
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager

    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "bayes_regimes test", "language": "python"})
    )
    return KernelSpecManager(kernel_dirs=[str(root)])


def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_quickstart.ipynb",
        "02_interventions_and_routing.ipynb",
        "03_model_checking.ipynb",
        "04_comparing_models.ipynb",
    ]
    assert set(names) >= FAST_NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_quick_parameters_cell(path):
    """The first code cell is tagged ``parameters`` and reads the quick-mode variable."""
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert QUICK_ENV in first.source and "QUICK" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    """Valid nbformat, a Python kernelspec, and no stored error output."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("language") == "python"
    stored = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in stored if o.get("output_type") == "error"]


def _executed(path: Path):
    """A fast-suite parameter for the notebooks in FAST_NOTEBOOKS, else a slow one."""
    marks = () if path.name in FAST_NOTEBOOKS else (pytest.mark.slow,)
    return pytest.param(path, id=path.name, marks=marks)


@pytest.mark.parametrize("path", [_executed(p) for p in NOTEBOOKS])
def test_notebook_executes(path, kernel_spec_manager, monkeypatch):
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if requires_data(nb) and datasets.data_dir() is None:
        pytest.skip(f"{path.name} reads the public data: {datasets.missing_reason()}")
    monkeypatch.setenv(QUICK_ENV, "1")  # inherited by the kernel: tiny sampler settings
    # A last cell checks that the kernel saw it (else the test would run full settings).
    nb.cells.append(nbformat.v4.new_code_cell(f"assert QUICK, 'quick mode: {QUICK_ENV} not seen'"))
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_spec_manager)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
