"""Exceptions and warnings raised by bayes_regimes.

This module imports nothing heavy, so the command line can catch these errors
before PyMC is imported.

Examples
--------
>>> from bayes_regimes.errors import DataError
>>> try:
...     raise DataError("column 'k', row 3: k=12 exceeds n=10")
... except ValueError as err:
...     print(err)
column 'k', row 3: k=12 exceeds n=10
"""

from __future__ import annotations

__all__ = ["DataError", "DiagnosticsWarning", "FitError", "FormatVersionError"]


class DataError(ValueError):
    """Bad input data.

    The message is one line naming the offending row (0-based position in the
    input, written ``row 5``) and/or column.

    Examples
    --------
    >>> err = DataError("column 'n', row 0: n=0 but a cell needs n >= 1")
    >>> isinstance(err, ValueError)
    True
    """


class FormatVersionError(ValueError):
    """A saved file carries a format version this version of the package cannot read.

    Examples
    --------
    >>> isinstance(FormatVersionError("format version 99 is unknown"), ValueError)
    True
    """


class FitError(RuntimeError):
    """A fit could not produce a posterior at all (for example variational
    inference whose objective became NaN at every learning rate tried).

    A fit that ran but failed its diagnostics is not an error: it warns with
    :class:`DiagnosticsWarning` and flags every query instead.

    Examples
    --------
    >>> isinstance(FitError("ADVI diverged (NaN) at learning rates 0.001, 0.0001"), RuntimeError)
    True
    """


class DiagnosticsWarning(UserWarning):
    """A fit failed its convergence diagnostics (R-hat, ESS, divergences, BFMI).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("R-hat 1.2 > 1.01", DiagnosticsWarning)
    >>> caught[0].category is DiagnosticsWarning
    True
    """
