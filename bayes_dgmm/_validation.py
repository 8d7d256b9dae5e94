"""Input checks shared by every public entry point: clear errors naming the parameter."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

RandomLike = int | np.integer | np.random.Generator | np.random.RandomState | None


class BudgetError(ValueError):
    """A method cannot run with the budget it was given (e.g. SMC with fewer particles than
    parameters); the comparison reports such a method as not run instead of failing."""


class FitError(RuntimeError):
    """A fit broke down numerically (e.g. ADVI's step gave NaN); the message says where and
    what to try. Experiments record such a run as failed instead of stopping."""


def as_generator(random_state: RandomLike, name: str = "random_state") -> np.random.Generator:
    """Turn ``random_state`` (None, int, Generator or legacy RandomState) into a Generator.

    A legacy ``RandomState`` is used to draw a seed, so it advances as scikit-learn expects.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        if random_state is not None and int(random_state) < 0:
            raise ValueError(f"{name}={random_state} is negative; use a seed >= 0.")
        return np.random.default_rng(random_state)
    raise TypeError(
        f"{name}={random_state!r} is not a seed; give None, an int >= 0 or a "
        "numpy.random.Generator."
    )


def check_data(
    X: Any,
    *,
    name: str = "X",
    n_features: int | None = None,
    min_samples: int = 1,
) -> NDArray[np.float64]:
    """Return ``X`` as a C-contiguous float64 (N, J) array, or raise a clear error.

    Parameters
    ----------
    X : array-like of shape (N, J)
    name : str
        Name used in error messages.
    n_features : int, optional
        Required number of columns (e.g. the number seen at fit time).
    min_samples : int
        Smallest acceptable number of rows.
    """
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise TypeError(f"{name} is a sparse matrix; dense data are needed: pass {name}.toarray().")
    if np.iscomplexobj(X):
        raise ValueError(f"Complex data not supported: {name} has a complex dtype; pass reals.")
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} could not be read as numbers ({exc}); pass a numeric array with one row "
            "per observation."
        ) from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected a 2-D array (n_samples, n_features). "
            "Reshape your data with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) "
            "for a single row."
        )
    if arr.shape[0] < max(min_samples, 1):
        raise ValueError(
            f"{name} has {arr.shape[0]} rows; at least {max(min_samples, 1)} are needed."
        )
    if arr.shape[1] < 1:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required; "
            "pass data with at least one column."
        )
    if not np.all(np.isfinite(arr)):
        rows, cols = np.nonzero(~np.isfinite(arr))
        raise ValueError(
            f"{name} contains {rows.size} NaN or infinite cells (first at row {rows[0] + 1}, "
            f"column {cols[0] + 1}, counted from 1); drop or impute them before fitting."
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but {n_features} were expected (as at fit "
            "time); pass data with the same columns."
        )
    return np.ascontiguousarray(arr)


def feature_names(X: Any) -> NDArray[np.object_] | None:
    """The column names of a DataFrame ``X`` when all are strings (scikit-learn's rule)."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "shape"):
        return None
    names = [c for c in columns]
    if not names or not all(isinstance(n, str) for n in names):
        return None
    return np.asarray(names, dtype=object)


def check_feature_names(estimator: Any, X: Any, *, reset: bool) -> None:
    """scikit-learn's ``feature_names_in_``: set it from ``X`` (``reset``), or check that
    ``X`` has the columns of the fit in the same order (an error), warning where one of the
    two has no names."""
    names = feature_names(X)
    cls = type(estimator).__name__
    if reset:
        estimator.__dict__.pop("feature_names_in_", None)
        if names is not None:
            estimator.feature_names_in_ = names
        return
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None or names is None:
        if (fitted is None) != (names is None):
            has, was = ("has", "without") if fitted is None else ("has no", "with")
            warnings.warn(
                f"X {has} feature names, but {cls} was fitted {was} feature names; its "
                "columns are taken in the order of the fit.",
                UserWarning,
                stacklevel=4,
            )
        return
    if list(names) == list(fitted):
        return
    if sorted(names) == sorted(fitted):
        raise ValueError(
            f"X has the columns of the fit in another order ({list(names)}, fitted on "
            f"{list(fitted)}); pass X[est.feature_names_in_]."
        )
    missing = [n for n in fitted if n not in set(names)]
    unseen = [n for n in names if n not in set(fitted)]
    raise ValueError(
        f"X's columns differ from those of the fit (missing {missing}, not seen in fit "
        f"{unseen}); pass the columns {list(fitted)} in that order."
    )


#: Largest magnitude and smallest column standard deviation accepted for fitting: squared
#: deviations must stay inside float64 (about 1e-308 .. 1e308) with room for sums over rows.
MAX_ABS_VALUE = 1e150
MIN_COLUMN_STD = 1e-150


def check_not_constant(X: NDArray[np.float64], name: str = "X") -> None:
    """Refuse data that cannot be fitted: a constant column, or a scale float64 cannot hold.

    A constant feature has zero variance: every component's noise variance for it goes to the
    floor, and the likelihood grows without bound as the floor shrinks, so nothing useful is
    learnt. Values beyond :data:`MAX_ABS_VALUE` in magnitude overflow the squared distances
    of the likelihood, and columns whose standard deviation is below :data:`MIN_COLUMN_STD`
    underflow them, so both are refused; the model is equivariant under rescaling, so
    dividing ``X`` by a constant changes nothing but the units. Prediction on data with a
    constant column is fine; only fitting is refused.
    """
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0)
    if constant.size:
        j = int(constant[0])
        raise ValueError(
            f"{name} has {constant.size} constant column(s) (first: column {j + 1}, counted "
            f"from 1, every value {float(X[0, j])!r}); a constant feature has no variance to "
            "model: drop it before fitting."
        )
    big = np.abs(X) > MAX_ABS_VALUE
    if big.any():
        i, j = (int(v[0]) for v in np.nonzero(big))
        raise ValueError(
            f"{name} has values beyond {MAX_ABS_VALUE:g} in magnitude (first at row {i + 1}, "
            f"column {j + 1}: {float(X[i, j])!r}), too large for float64 squares; rescale "
            "it (e.g. standardise each column) before fitting."
        )
    std = X.std(axis=0)
    small = np.flatnonzero(std < MIN_COLUMN_STD)
    if small.size:
        j = int(small[0])
        raise ValueError(
            f"{name} column {j + 1} has standard deviation {float(std[j]):.3g}, below "
            f"{MIN_COLUMN_STD:g}: too small for float64 squares; rescale it (e.g. standardise "
            "each column) before fitting."
        )


def check_layer(layer: Any, n_layers: int, *, allow_zero: bool = False) -> int:
    """Check a 1-based layer number (0 means the data level when ``allow_zero``)."""
    low = 0 if allow_zero else 1
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise TypeError(
            f"layer={layer!r} is not an integer; layers are numbered {low}..{n_layers}."
        )
    if not low <= int(layer) <= n_layers:
        raise ValueError(
            f"layer={layer} is out of range; this model has layers {low}..{n_layers} "
            "(layer 1 is next to the data)."
        )
    return int(layer)


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} is not an integer; give an int >= {minimum}.")
    if int(value) < minimum:
        raise ValueError(f"{name}={value} is out of range; give an int >= {minimum}.")
    return int(value)


#: Keyword arguments of the Bayesian methods that count something, and their least value.
METHOD_COUNTS = {"n": 1, "draws": 1, "tune": 0, "chains": 1, "cores": 1, "batch_size": 1}


def check_method_kwargs(method: str, kwargs: dict[str, Any]) -> None:
    """Range-check the counting keywords (``n``, ``draws``, ``tune``, ``chains``, ``cores``)
    passed to a Bayesian ``method`` before any model is compiled or sampled."""
    for key, minimum in METHOD_COUNTS.items():
        if key in kwargs:
            check_count(kwargs[key], f"{key} (for method={method!r})", minimum)
    if "batch_size" in kwargs and method not in ("advi", "fullrank_advi"):
        raise ValueError(
            f"batch_size={kwargs['batch_size']!r} is for method='advi' or 'fullrank_advi' "
            f"only; method={method!r} needs the density of all the data: drop batch_size."
        )


def check_seed(seed: Any, name: str = "random_seed") -> None:
    """``seed`` must be None or an int in 0..2**32-1 (what PyMC and nutpie accept)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}={seed!r} is not a seed; give None or an int in 0..2**32-1.")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"{name}={seed} is out of range; give None or an int in 0..2**32-1.")


def check_declared(constraints: dict[str, list[Any]], params: dict[str, Any], caller: str) -> None:
    """Validate ``params`` against scikit-learn style ``_parameter_constraints``.

    scikit-learn's own validator is not used for the message: it prints the options of a
    ``StrOptions`` in set order, which changes from one process to the next, and its
    ``Interval(Integral, ...)`` accepts ``True`` as 1. Here a bool never counts as a number,
    options are listed sorted, and the message starts with ``name=value``.

    Raises
    ------
    InvalidParameterError
        (a ValueError and TypeError) naming the first parameter that meets none of its
        constraints, its value and what it may be.
    """
    # imported here: the command line reads this module at start-up without scikit-learn
    from sklearn.utils._param_validation import InvalidParameterError, make_constraint

    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        made = [make_constraint(c) for c in allowed]
        if any(_satisfied(c, value) for c in made):
            continue
        wanted = " or ".join(_describe(c) for c in made)
        raise InvalidParameterError(
            f"{name}={value!r} is not {wanted}; pass {caller}({name}=...) such a value."
        )


def _satisfied(constraint: Any, value: Any) -> bool:
    from sklearn.utils._param_validation import Interval

    if isinstance(value, bool | np.bool_) and isinstance(constraint, Interval):
        return False
    return bool(constraint.is_satisfied_by(value))


def _describe(constraint: Any) -> str:
    from sklearn.utils._param_validation import Options

    if isinstance(constraint, Options):
        return f"one of {tuple(sorted(constraint.options, key=str))}"
    return str(constraint)
