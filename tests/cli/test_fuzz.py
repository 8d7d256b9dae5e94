"""Fuzzing of the CSV reader of the command line and of the estimator's hyper-parameters:
every failure is a ValueError, TypeError or FileNotFoundError that names the input."""

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bayes_dgmm import DeepGaussianMixture
from bayes_dgmm.experiments.cli_io import load_csv

CLEAN = (ValueError, TypeError, FileNotFoundError)

cells = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "NA",
            "n/a",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "x1",
            "abc",
            "0x10",
            "1_000",
            "\ufeff1",
            "é",
        ]
    ),
)
rows = st.lists(st.lists(cells, min_size=1, max_size=4), min_size=0, max_size=6)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=rows, bom=st.booleans(), crlf=st.booleans())
@example(table=[["NA", "1"], ["2", "3"]], bom=False, crlf=False)
@example(table=[["1", "2"], ["3", "4"]], bom=True, crlf=True)
@example(table=[["\ufeff1"]], bom=False, crlf=False)
def test_csv_reader_fails_only_cleanly(tmp_path, table, bom, crlf):
    text = ("\r\n" if crlf else "\n").join(",".join(r) for r in table)
    path = tmp_path / "X.csv"
    path.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
    try:
        X = load_csv(path)
    except CLEAN as exc:
        assert "--data=" in str(exc), str(exc)
    else:
        assert X.ndim == 2 and X.shape[0] >= 1 and np.all(np.isfinite(X))
        # line 1 is a header when it holds text and no number, or integers counting up by
        # one; the reader drops one byte-order mark at the start of the file, whichever
        # wrote it, and blank lines
        lines = [r for r in table if r != [""]]
        first = list(lines[0])
        if not bom and table[0] == lines[0]:
            first[0] = first[0].removeprefix("\ufeff")
        assert X.shape[0] == len(lines) - _header_like(first, lines[1:])


MISSING = {"", "na", "n/a", "#n/a", "nan", "null", "none", "?", "-", "--", "."}


def _integer(cell):
    return re.fullmatch(r"\s*[+-]?[0-9]+\s*", cell) is not None


def _header_like(cells, below):
    kinds = {_kind(c) for c in cells}
    if "number" not in kinds:
        return "text" in kinds
    if len(cells) < 2 or not all(_integer(c) for c in cells):
        return False
    values = [int(c) for c in cells]
    if values != list(range(values[0], values[0] + len(values))):
        return False
    # two numbers counting up are a header only above a number that is not an integer
    return len(cells) >= 3 or not all(_integer(c) for row in below for c in row)


def _kind(cell):
    if cell.strip().lower() in MISSING:
        return "missing"
    try:
        float(cell)
    except ValueError:
        return "text"
    return "number"


X_TINY = np.random.default_rng(0).normal(size=(24, 4))

valid = {
    "n_components": st.sampled_from([(2,), 2, (2, 2), [2, 1]]),
    "n_factors": st.sampled_from([(1,), 1, (2, 1), (3,)]),
    "algorithm": st.sampled_from(["exact", "stochastic"]),
    "init": st.sampled_from(["kmeans", "random"]),
    "n_init": st.integers(1, 2),
    "max_iter": st.integers(1, 3),
    "tol": st.floats(0, 1),
    "reg_psi": st.floats(1e-12, 1e-2),
    "constraint": st.sampled_from([None, "lower_triangular", "orthonormal", "diagonal"]),
    "stopping": st.sampled_from(["auto", "aitken", "tol", "fixed", "deepgmm", "stationary"]),
    "acceleration": st.sampled_from(["anderson", None]),
    "parameter_expansion": st.booleans(),
    "random_state": st.one_of(st.none(), st.integers(0, 2**31)),
    "verbose": st.just(0),
    "n_jobs": st.sampled_from([None, 1]),
}
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.integers(-2, 2), max_size=3),
)
fuzzed = sorted(valid)


@settings(max_examples=120, deadline=None)
@given(
    kwargs=st.fixed_dictionaries(valid),
    bad=st.one_of(st.none(), st.sampled_from(fuzzed)),
    value=junk,
)
def test_estimator_hyper_parameters_fail_only_cleanly(kwargs, bad, value):
    if bad is not None:
        kwargs = {**kwargs, bad: value}
    est = DeepGaussianMixture(**kwargs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X_TINY)
    except CLEAN as exc:
        # the parameter made invalid, or another one that this valid draw contradicts
        # (e.g. n_factors with more layers than n_components)
        named = [name for name in kwargs if name in str(exc)]
        assert named or str(exc).startswith("X "), f"{type(exc).__name__}: {exc}"
    else:
        assert math.isfinite(est.lower_bound_)
        if bad is not None:
            assert _value_accepted(bad, value), f"{bad}={value!r} was accepted"


def _value_accepted(name, value):
    """Whether a junk value is in fact a valid setting (e.g. tol=0.5, init=None is not)."""
    if name == "random_state":
        return value is None or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
        )
    if name == "constraint":
        return value is None
    if name == "tol":
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and 0 <= value < math.inf
        )
    if name == "reg_psi":
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
        )
    if name in ("n_components", "n_factors"):
        return isinstance(value, list) and len(value) > 0 and all(v > 0 for v in value)
    return False


def test_verbose_is_checked():
    with pytest.raises(ValueError, match="verbose='x'"):
        DeepGaussianMixture((2,), n_factors=(1,), verbose="x", max_iter=1).fit(X_TINY)


@pytest.mark.parametrize("n_jobs", [3604508.0, [1], 2**40])
def test_n_jobs_is_checked(n_jobs):
    with pytest.raises((ValueError, TypeError), match="n_jobs="):
        DeepGaussianMixture((2,), n_factors=(1,), n_jobs=n_jobs, max_iter=1).fit(X_TINY)
