"""The distributed path of :func:`bayes_regimes.reduce.reduce_rollouts` (dask.dataframe).

Each file is one partition of a ``dask.dataframe.from_map``: a worker reads it with
the same pyarrow reader and :class:`~bayes_regimes._streaming.Reducer` as the
single-process path (so its errors name the file and row group) and returns that
file's per-cell partial counts; ``groupby().agg()`` merges them in a tree reduction.
A sample repeated in one cell across files is found by a dask ``groupby().size()``
over (cell, sample) and then located by a pruned scan on the client.

Examples
--------
>>> import tempfile
>>> import pandas as pd
>>> from distributed import Client, LocalCluster
>>> from bayes_regimes.reduce import reduce_rollouts
>>> folder = tempfile.mkdtemp()
>>> for i in range(2):
...     rows = pd.DataFrame({"problem_id": ["a", "b"], "correct": [1, i]})
...     rows.to_parquet(f"{folder}/part-{i}.parquet")
>>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
...     with Client(cluster) as client:
...         data = reduce_rollouts(folder, client=client)
>>> data.cells[["problem", "n", "k"]].values.tolist()
[['a', 2, 2], ['b', 2, 1]]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bayes_regimes._streaming import Plan, Reducer, cell_text, merge_spec
from bayes_regimes.errors import DataError
from bayes_regimes.reduce import _scan, _Source, _typed_frame

__all__ = ["reduce_dask"]


def _reduce_part(i: int, src: _Source, plan: Plan, batch_size: int) -> pd.DataFrame:
    return _typed_frame(_scan(src, plan, [i], batch_size, lambda done: None).frame(), src, plan)


def reduce_dask(client: Any, src: _Source, plan: Plan, batch_size: int) -> pd.DataFrame:
    """Per-cell merged partial counts of every file, computed on a Dask cluster.

    ``client`` is a ``distributed.Client`` or a scheduler address (a client is then
    opened and closed here). The frame has the raw key columns and the columns of
    :func:`~bayes_regimes._streaming.merge_spec`, one row per distinct raw key.
    """
    try:
        import dask
        import dask.dataframe as dd
        from distributed import Client
    except ImportError:
        raise ImportError(
            "client= needs dask.dataframe and dask.distributed: pip install 'bayes-regimes[scale]'"
        ) from None

    own = isinstance(client, str)
    client = Client(client) if own else client
    try:
        meta = _typed_frame(Reducer(plan, src.locate).frame(), src, plan)
        with dask.config.set({"dataframe.convert-string": False}):
            parts = dd.from_map(
                _reduce_part,
                range(len(src.files)),
                src=src,
                plan=plan,
                batch_size=batch_size,
                meta=meta,
                enforce_metadata=False,
            )
            parts = parts.assign(_parts=1)
            # a tree reduction (split_out=1): the merged cells come back to this process
            merged = parts.groupby(list(plan.keys), sort=False).agg(
                {**merge_spec(plan), "_parts": "sum"}, split_out=1
            )
            frame = client.compute(merged, sync=True).reset_index()
        if plan.sample is not None and (frame["_parts"] > 1).any():
            _check_samples_dask(client, src, plan, frame)
        return frame.drop(columns="_parts")
    finally:
        if own:
            client.close()


def _sample_rows(i: int, src: _Source, plan: Plan) -> pd.DataFrame:
    table = src.dataset(None, [i]).to_table(columns=[*plan.keys, plan.sample])
    return table.to_pandas()


def _check_samples_dask(client: Any, src: _Source, plan: Plan, frame: pd.DataFrame) -> None:
    """A sample repeated in one cell across files: found with dask, located here."""
    import dask.dataframe as dd

    meta = _sample_rows(0, src, plan).iloc[:0]
    rows = dd.from_map(_sample_rows, range(len(src.files)), src=src, plan=plan, meta=meta)
    sizes = rows.groupby([*plan.keys, plan.sample]).size()
    repeated = client.compute(sizes[sizes > 1], sync=True)
    if len(repeated):
        _locate_repeat(
            src, plan, dict(zip([*plan.keys, plan.sample], repeated.index[0], strict=True))
        )


def _locate_repeat(src: _Source, plan: Plan, values: dict) -> None:
    """Raise the DataError of the second row (in scan order) holding the given values."""
    first, second = src.rows_matching(values, limit=2)
    raw = [values[name] for name in plan.keys]
    raise DataError(
        f"column {plan.sample!r}, {src.locate(second)}: sample {values[plan.sample]!r} repeats "
        f"{src.locate(first)} in the same cell ({cell_text(plan, raw)})"
    )
