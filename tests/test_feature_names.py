"""scikit-learn's feature_names_in_ in both estimators: a DataFrame's columns are kept at
fit and checked at predict and score, so reordered columns cannot pass unnoticed."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_dgmm import BayesianDeepGaussianMixture, DeepGaussianMixture
from bayes_dgmm.experiments.datasets import make_dgmm_data

COMPS, FACTS = (2, 2), (2, 1)


@pytest.fixture(scope="module")
def df():
    data = make_dgmm_data(120, 5, COMPS, FACTS, random_state=3, separation=5.0)
    return pd.DataFrame(data.X, columns=list("abcde"))


@pytest.fixture(scope="module")
def em(df):
    return DeepGaussianMixture(COMPS, n_factors=FACTS, n_init=2, max_iter=20, random_state=0).fit(
        df
    )


def test_em_keeps_the_column_names(em, df):
    assert em.feature_names_in_.tolist() == list("abcde")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = em.predict(df)
    np.testing.assert_array_equal(labels, em.params_.predict(df.to_numpy()))


def test_em_refuses_reordered_or_other_columns(em, df):
    with pytest.raises(ValueError, match=r"columns of the fit in another order.*feature_names_in_"):
        em.predict(df[list("edcba")])
    with pytest.raises(ValueError, match=r"missing \['e'\], not seen in fit \['f'\]"):
        em.score(df.rename(columns={"e": "f"}))
    with pytest.raises(ValueError, match=r"another order"):
        em.bic(df[list("edcba")])
    # the right columns in another order are the fit's once reselected
    np.testing.assert_array_equal(
        em.predict(df[list("edcba")][em.feature_names_in_]), em.predict(df)
    )


def test_em_warns_where_one_side_has_no_names(em, df):
    with pytest.warns(UserWarning, match="X has no feature names, but DeepGaussianMixture was"):
        em.predict(df.to_numpy())
    plain = DeepGaussianMixture(COMPS, n_factors=FACTS, max_iter=5, random_state=0)
    plain.fit(df.to_numpy())
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but DeepGaussianMixture was"):
        plain.predict(df)
    # a refit on an array forgets the names of an earlier fit on a DataFrame
    again = DeepGaussianMixture(COMPS, n_factors=FACTS, max_iter=5, random_state=0).fit(df)
    again.fit(df.to_numpy())
    assert not hasattr(again, "feature_names_in_")


def test_bayesian_keeps_and_checks_the_column_names(df, monkeypatch):
    pm = pytest.importorskip("pymc")
    import pytensor
    from pymc.testing import mock_sample

    monkeypatch.setattr(pm, "sample", lambda **kw: mock_sample(**kw))
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    with pytensor.config.change_flags(mode="FAST_COMPILE"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(df, method="nuts", draws=3, chains=1)
    assert est.feature_names_in_.tolist() == list("abcde")
    with pytest.raises(ValueError, match=r"columns of the fit in another order"):
        est.predict(df[list("edcba")])
    with pytest.raises(ValueError, match=r"columns of the fit in another order"):
        est.score(df[list("edcba")])
    with pytest.warns(UserWarning, match="X has no feature names"):
        est.predict(df.to_numpy())
