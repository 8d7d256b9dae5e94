import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayes_dgmm.model.density import full_logpdf, lowrank_logpdf


def test_lowrank_matches_scipy(rng):
    J, R, N = 9, 3, 50
    W = rng.normal(size=(J, R)) * 3
    d = rng.uniform(0.2, 2, size=J)
    mean = rng.normal(size=J)
    X = rng.multivariate_normal(mean, W @ W.T + np.diag(d), size=N)
    ref = multivariate_normal(mean, W @ W.T + np.diag(d)).logpdf(X)
    got, b = lowrank_logpdf(X, mean, W, d)
    np.testing.assert_allclose(got, ref, rtol=1e-11)
    np.testing.assert_allclose(full_logpdf(X, mean, W @ W.T + np.diag(d)), ref, rtol=1e-11)
    # b is the posterior mean of the factor: (I + W^T D^-1 W)^-1 W^T D^-1 (x - mean)
    M = np.eye(R) + W.T @ (W / d[:, None])
    np.testing.assert_allclose(
        b, np.linalg.solve(M, (W / d[:, None]).T @ (X - mean).T).T, rtol=1e-9
    )


def test_lowrank_stable_for_tiny_noise(rng):
    # Noise variances 1e-8 of the signal, as in layer 1 of the study data: the quadratic
    # form must not lose its digits to cancellation.
    J, R, N = 12, 4, 20
    W = rng.normal(size=(J, R)) * 1e4
    d = np.full(J, 1.0)
    f = rng.normal(size=(N, R))
    X = f @ W.T + rng.normal(size=(N, J))
    got, _ = lowrank_logpdf(X, np.zeros(J), W, d)
    # Independent reference: the quadratic form as an SVD least-squares problem on the
    # stacked system [D^-1/2 W; I] f = [D^-1/2 x; 0], log det by the determinant lemma.
    A = np.vstack([W / np.sqrt(d)[:, None], np.eye(R)])
    ref = np.empty(N)
    logdet = np.sum(np.log(d)) + np.linalg.slogdet(A.T @ A)[1]
    for i in range(N):
        rhs = np.concatenate([X[i] / np.sqrt(d), np.zeros(R)])
        f = np.linalg.lstsq(A, rhs, rcond=None)[0]
        quad = np.sum((rhs - A @ f) ** 2)
        ref[i] = -0.5 * (J * np.log(2 * np.pi) + logdet + quad)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_a_singular_covariance_is_a_clear_error_naming_its_range():
    # noise 1e-14 beside loadings 1e8 in two equal columns: I + W~^T W~ is rank one in
    # floating point, and the error says so with the figures (a LinAlgError, as before)
    W = np.full((2, 2), 1e8)
    with pytest.raises(np.linalg.LinAlgError, match=r"numerically singular .*1e-14 to 1.*1e\+08"):
        lowrank_logpdf(np.zeros((3, 2)), np.zeros(2), W, np.array([1e-14, 1.0]))
