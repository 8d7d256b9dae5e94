"""The EM loop: Aitken's convergence measure, parameter expansion, Anderson acceleration."""

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm import DeepGaussianMixture, DGMMParams
from bayes_dgmm.em.driver import AITKEN_BLOCK, AITKEN_BLOCKS, aitken_remaining, run_em
from bayes_dgmm.em.estep import e_step, layer_slices, path_model, path_statistics
from bayes_dgmm.em.exact import exact_step
from bayes_dgmm.em.expansion import (
    FrameProblem,
    _frame_values,
    frame_problem,
    solve_frames,
    transform_statistics,
)
from bayes_dgmm.em.vector import pack, unpack

N_AITKEN = AITKEN_BLOCKS * AITKEN_BLOCK + 1


# ---------------------------------------------------------------------- Aitken
@pytest.mark.parametrize("rate", [0.5, 0.9, 0.999])
def test_aitken_is_exact_on_a_geometric_sequence(rate):
    """A linearly converging sequence l_k = L - c r^k still gains exactly c r^K."""
    k = np.arange(60)
    history = -1000.0 - 50.0 * rate**k
    assert aitken_remaining(history) == pytest.approx(-1000.0 - history[-1], rel=1e-6)


def test_aitken_calls_a_crawl_unconverged():
    # constant gains: no sign of slowing, whatever their size
    assert aitken_remaining(-1000.0 + 1e-3 * np.arange(40)) == math.inf
    # gains of 1e-3 shrinking at 0.9999 per iteration still hold ~10 nats
    history = -1000.0 - 10.0 * 0.9999 ** np.arange(40)
    assert aitken_remaining(history) == pytest.approx(10.0 * 0.9999**39, rel=1e-4)


def test_aitken_is_zero_at_rounding_level_and_nan_when_too_short():
    assert aitken_remaining(np.full(40, -3.0e5)) == 0.0
    assert math.isnan(aitken_remaining(np.zeros(N_AITKEN - 1)))


def test_pack_unpack_round_trip(rng):
    p = DGMMParams.random(5, (2, 3), (3, 1), rng)
    q = unpack(pack(p), p)
    for a, b in zip(
        [*p.pi, *p.eta, *p.Lambda, *p.psi], [*q.pi, *q.eta, *q.Lambda, *q.psi], strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ---------------------------------------------------------------------- parameter expansion
def _stats(X, params):
    model = path_model(params)
    _, resp = e_step(X, model, params.n_components[0])
    return path_statistics(X, resp, model, params.n_factors[0])


def _frame_problem_by_paths(stats, params, layer, g):
    """The frame problem of one component summed path by path (brute force)."""
    table, L = params.paths, params.n_layers
    blocks = layer_slices(params.n_factors)
    sl = blocks[layer - 1]
    R = sl.stop - sl.start
    paths = np.flatnonzero(table[:, layer - 1] == g)
    n_p = stats.n[paths]
    n = float(n_p.sum())
    m = n_p @ stats.zbar[paths][:, sl] / n
    H, q = np.zeros((R, R + 1, R + 1)), np.zeros((R, R + 1))
    for p in paths:
        u = np.append(stats.zbar[p, sl] - m, 1.0)
        suu = stats.n[p] * np.outer(u, u)
        suu[:R, :R] += stats.czz[p][sl, sl]
        w = np.ones(R)
        if layer < L:
            up = blocks[layer]
            m_up = n_p @ stats.zbar[paths][:, up] / n
            h = table[p, layer]
            lam, w = params.Lambda[layer][h], 1.0 / params.psi[layer][h]
            v = stats.zbar[p, up] - m_up
            suz = stats.n[p] * np.outer(u, v)
            suz[:R] += stats.czz[p][sl, up]
            sut = suz @ lam.T + np.outer(suu[:, R], params.eta[layer][h] + lam @ m_up)
            q += (sut * w[None, :]).T
        H += w[:, None, None] * suu[None]
    return H, q, n, m


@pytest.mark.parametrize("layer", [1, 2])
def test_frame_problem_sums_the_paths_of_each_component(rng, layer):
    truth = DGMMParams.random(6, (2, 3), (3, 2), rng)
    X, _ = truth.sample(300, random_state=1)
    start = DGMMParams.random(6, (2, 3), (3, 2), np.random.default_rng(9))
    stats = _stats(X, start)
    prob = frame_problem(stats, start, layer)
    for g in range(start.n_components[layer - 1]):
        H, q, n, m = _frame_problem_by_paths(stats, start, layer, g)
        np.testing.assert_allclose(prob.H[g], H, rtol=1e-10, atol=1e-10 * np.abs(H).max())
        np.testing.assert_allclose(prob.q[g], q, rtol=1e-10, atol=1e-10 * np.abs(q).max())
        assert prob.n[g] == pytest.approx(n, rel=1e-12)
        np.testing.assert_allclose(prob.m[g], m, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("layer", [1, 2])
def test_solve_frames_finds_the_optimum_scipy_finds(rng, layer):
    truth = DGMMParams.random(6, (2, 2), (3, 2), rng)
    X, _ = truth.sample(400, random_state=1)
    start = DGMMParams.random(6, (2, 2), (3, 2), np.random.default_rng(9))
    full = frame_problem(_stats(X, start), start, layer)
    Bs, ds = solve_frames(full)
    prob = FrameProblem(full.H[1:], full.q[1:], full.n[1:], full.m[1:])
    B, d, m = Bs[1], ds[1], prob.m[0]
    R = m.shape[0]

    def negative(theta):
        return -_frame_values(theta.reshape(1, R, R + 1), prob.H, prob.q, prob.n)[0]

    beta0 = np.concatenate([np.eye(R), m[:, None]], axis=1)
    ref = minimize(
        negative,
        beta0.ravel(),
        method="Nelder-Mead" if R < 2 else "BFGS",
        options={"gtol": 1e-10, "maxiter": 20000},
    )
    ref_beta = ref.x.reshape(R, R + 1)
    ours = np.concatenate([B, (d + B @ m)[:, None]], axis=1)
    assert -negative(ours.ravel()) >= -ref.fun - 1e-8 * abs(ref.fun)
    if layer == 1:
        np.testing.assert_allclose(B, ref_beta[:, :R], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(d, ref_beta[:, R] - ref_beta[:, :R] @ m, atol=1e-3)
    else:
        # at the top layer z ~ N(0, I): the optimum is unique only up to B -> Q B
        np.testing.assert_allclose(B.T @ B, ref_beta[:, :R].T @ ref_beta[:, :R], rtol=1e-4)


def test_transform_statistics_is_the_e_step_of_the_reparametrised_model(rng):
    """A common affine change of z^(1), absorbed by layer 2, is the same distribution: its
    E-step statistics are the mapped statistics of the original parameters."""
    p = DGMMParams.random(6, (2, 2), (3, 1), rng)
    X, _ = p.sample(300, random_state=2)
    a, b = np.array([2.0, 0.5, 1.5]), np.array([1.0, -2.0, 0.3])
    q = p.replace(
        eta=[p.eta[0] - np.einsum("gij,j->gi", p.Lambda[0], b / a), a * p.eta[1] + b],
        Lambda=[p.Lambda[0] / a[None, None, :], a[None, :, None] * p.Lambda[1]],
        psi=[p.psi[0], a**2 * p.psi[1]],
    )
    assert q.score(X) == pytest.approx(p.score(X), rel=1e-10)
    maps = {(1, g): (np.diag(a), b) for g in range(2)}
    got = transform_statistics(_stats(X, p), q, maps)
    want = _stats(X, q)
    for name in ("zbar", "czz", "cxz1"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-7, atol=1e-7)


def _tiny_noise_problem():
    """Two layers whose layer-1 noise is 1e-6 of the signal (EM's frames crawl there), and
    a start whose layer-1 components carry their own, different, latent frames."""
    rng = np.random.default_rng(4)
    truth = DGMMParams.random(6, (2, 2), (3, 1), rng, separation=4.0)
    truth = truth.replace(psi=[1e-6 * truth.psi[0], truth.psi[1]])
    X, _ = truth.sample(500, random_state=5)
    A = [np.eye(3), np.array([[1.3, 0.2, 0.0], [0.0, 0.8, 0.3], [0.1, 0.0, 1.1]])]
    c = [np.zeros(3), np.array([0.8, -0.5, 0.4])]
    lam = np.stack([truth.Lambda[0][g] @ np.linalg.inv(A[g]) for g in range(2)])
    eta = np.stack([truth.eta[0][g] - lam[g] @ c[g] for g in range(2)])
    start = truth.replace(eta=[eta, truth.eta[1]], Lambda=[lam, truth.Lambda[1]])
    return X, truth, start


def test_expanded_em_beats_plain_em_where_frames_crawl():
    X, truth, start = _tiny_noise_problem()
    truth_ll = truth.score(X)
    lls = {}
    for expand in (False, True):
        step = exact_step(X, reg_psi=1e-10, expand=expand)
        p, hist = start, []
        for _ in range(100):
            out = step(p)
            hist.append(out.log_likelihood)
            p = out.params
        assert np.all(np.diff(hist) >= -1e-9 * abs(hist[-1]))
        lls[expand] = hist[-1]
    # the maximum likelihood is at least the truth's: expansion gets there, plain EM not
    assert lls[True] >= truth_ll
    assert lls[False] < truth_ll - 10.0


def test_a_crawl_is_not_called_converged_and_the_default_converges():
    X, truth, start = _tiny_noise_problem()
    crawl = DeepGaussianMixture(
        (2, 2),
        n_factors=(3, 1),
        init=start,
        stopping="tol",
        tol=1e-3,
        parameter_expansion=False,
        acceleration=None,
    )
    with pytest.warns(ConvergenceWarning, match="Aitken's estimate|still rising"):
        crawl.fit(X)
    assert not crawl.converged_
    assert crawl.remaining_ > 1e-3 * X.shape[0]
    default = DeepGaussianMixture((2, 2), n_factors=(3, 1), init=start)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        default.fit(X)
    assert default.converged_ and default.remaining_ <= 1e-3 * X.shape[0]
    assert default.lower_bound_ >= truth.score(X)
    assert default.lower_bound_ > crawl.lower_bound_ + 10.0


def test_a_handover_ends_the_em_at_its_first_crawling_probe():
    """With handover the accelerated EM stops, unconverged, at the first Aitken probe that
    finds a crawl (for the Newton finish); without it the same run goes on."""
    X, _, start = _tiny_noise_problem()
    step = exact_step(X, reg_psi=1e-10, expand=False)
    kw = dict(n_samples=X.shape[0], max_iter=400, tol=1e-4, accelerate=True)
    handed = run_em(step, start, handover=True, **kw)
    full = run_em(step, start, **kw)
    assert not handed.converged and handed.failure is None
    assert handed.remaining > 1e-4 * X.shape[0]  # the probe's own crawl estimate
    assert handed.n_iter < full.n_iter
    # the first iterations are the same run
    k = handed.n_iter + 1
    np.testing.assert_allclose(handed.log_likelihood, full.log_likelihood[:k], rtol=1e-12)


def test_screened_restarts_keep_the_best_and_run_it_to_convergence():
    X, _, _ = _tiny_noise_problem()
    est = DeepGaussianMixture((2, 2), n_factors=(3, 1), init="kmeans", n_init=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    finals = [r.log_likelihood for r in est.restarts_]
    assert est.lower_bound_ == max(finals)
    assert est.history_.log_likelihood.shape == (est.n_iter_ + 1,)
    assert np.all(np.diff(est.history_.log_likelihood) >= -1e-9 * abs(est.lower_bound_))
