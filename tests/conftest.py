import numpy as np
import pytest
from hypothesis import settings
from threadpoolctl import threadpool_limits

# Property tests draw the same examples on every run and machine, so CI cannot flip.
settings.register_profile("ci", derandomize=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    # Small-matrix loops are far slower with 2 BLAS threads on these machines.
    with threadpool_limits(1):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def icbinb():
    from bayes_dgmm.experiments.datasets import load_icbinb

    return load_icbinb()
