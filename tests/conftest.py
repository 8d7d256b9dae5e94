import numpy as np
import pytest
from threadpoolctl import threadpool_limits


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
    from bayes_dgmm.datasets import load_icbinb

    return load_icbinb()
