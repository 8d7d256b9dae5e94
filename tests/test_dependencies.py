"""The private scikit-learn API the estimators use, so that a release that changes it fails
here first (pyproject bounds scikit-learn above for the same reason)."""

import numbers

import pytest
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    make_constraint,
)


def test_interval_and_options_accept_and_refuse_as_the_estimators_expect():
    closed = Interval(numbers.Integral, 1, None, closed="left")
    assert closed.is_satisfied_by(1) and not closed.is_satisfied_by(0)
    assert "range [1, inf)" in str(closed)
    assert StrOptions({"a", "b"}).is_satisfied_by("a")
    assert not StrOptions({"a", "b"}).is_satisfied_by("c")
    assert Options(type(None), {None}).is_satisfied_by(None)
    assert make_constraint("boolean").is_satisfied_by(True)
    assert issubclass(InvalidParameterError, ValueError)


def test_the_estimators_refuse_a_bad_parameter_with_sklearns_error():
    from bayes_dgmm import DeepGaussianMixture

    with pytest.raises(InvalidParameterError, match="n_init"):
        DeepGaussianMixture(n_init=0).fit([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [1.0, 2.0]])
