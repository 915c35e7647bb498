"""Where the real public rollout data lives, and loaders for the public sources.

The package never ships these files. They are read from the folder named by the
environment variable ``BAYES_REGIMES_DATA`` when it is set, and otherwise from
``../shared/data`` relative to the project root (or the current directory).

Examples
--------
>>> from bayes_regimes.datasets import data_dir
>>> folder = data_dir()  # None when no data folder exists
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

ENV_VAR = "BAYES_REGIMES_DATA"

#: Files of the public sources, relative to the data folder.
SOURCES: dict[str, str] = {
    "monkeys": "large_language_monkeys/monkeys_pythia_math_n10000.csv",
    "cruxeval": "cruxeval/evalarena_cruxeval_temp_x_cot.csv",
    "cruxeval_per_sample": "cruxeval/cruxeval_codellama7b_per_sample.csv",
    "livecodebench": "livecodebench/lcb_generation_vs_self_repair.csv",
    "failure_profiles": "islah2026_failure_profiles/failure_profiles.csv",
}


def _candidates() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    if env:
        # An explicit setting wins and is the only candidate: a typo must not
        # silently fall back to another folder.
        return [Path(env).expanduser()]
    project_root = Path(__file__).resolve().parents[1]
    return [project_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]


def data_dir() -> Path | None:
    """Return the folder holding the public rollout data, or None if absent.

    Returns
    -------
    pathlib.Path or None
        ``$BAYES_REGIMES_DATA`` when set and existing, else ``../shared/data``.

    Examples
    --------
    >>> data_dir() is None or data_dir().is_dir()
    True
    """
    for path in _candidates():
        if path.is_dir():
            return path
    return None


def missing_reason() -> str:
    """One line saying why the data is unavailable (for ``pytest.skip``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return f"{ENV_VAR}={env} is not a directory"
    return f"no public data folder: set {ENV_VAR} or provide ../shared/data"


def source_path(name: str) -> Path:
    """Path of one public source file.

    Parameters
    ----------
    name : str
        One of :data:`SOURCES`.

    Raises
    ------
    KeyError
        For an unknown source name.
    FileNotFoundError
        When the data folder or the file is absent.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    root = data_dir()
    if root is None:
        raise FileNotFoundError(missing_reason())
    path = root / SOURCES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path


def load_source(name: str) -> pd.DataFrame:
    """Read one public source as a pandas DataFrame.

    Examples
    --------
    >>> if data_dir() is not None:
    ...     df = load_source("monkeys")
    ...     assert {"model", "problem_id", "n", "k"} <= set(df.columns)
    """
    return pd.read_csv(source_path(name))
