"""Derivation checks for lecture 2: DDIM's sigma-family, eta, strided grids, the probability-flow ODE.

Tolerances are float64 round-off for identities (1e-12 or tighter, relative where magnitudes
vary), or a stated number of Monte Carlo standard errors (SE). For Gaussian data N(m, C) and the
Bayes-optimal eps-model every DDIM step is affine, x_prev = a x_t + b + sigma z, so the exact
distribution of the *discrete* sampler's output follows by propagating means and variances
(`ddim_gaussian_marginal`); this separates the sampler's discretisation error (deterministic,
computed) from Monte Carlo error (random, bounded in SE).
"""

import math

import pytest
import torch

from minidiff.elbo import lambda_t
from minidiff.gaussian import gaussian_kl, posterior_mean_from_eps, predict_eps, predict_x0, q_sample
from minidiff.oracles import gaussian_eps
from minidiff.samplers import ddim_sample, ddim_sigma, ddim_step, ddpm_sample
from minidiff.schedule import SPACINGS, Schedule, timesteps

F64 = torch.float64
SCHEDULES = {"linear": Schedule.linear(1000), "cosine": Schedule.cosine(1000)}
MEAN = torch.tensor([0.3, -0.2], dtype=F64)
COV = torch.tensor([[0.25, 0.10], [0.10, 0.16]], dtype=F64)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ddim_gaussian_marginal(sched: Schedule, grid: torch.Tensor, eta: float, m: float, s2: float) -> tuple[float, float]:
    """Exact mean and variance of DDIM's output (x_T ~ N(0, 1)) for 1-D data N(m, s2) and the optimal eps.

    With eps(x) = c (x - sqrt(ab) m), c = sqrt(1-ab)/(ab s2 + 1 - ab), eq. 12 reads x_prev = P x + Q eps(x)
    + sigma z, P = sqrt(ab_prev/ab), Q = sqrt(1 - ab_prev - sigma^2) - sqrt(ab_prev (1-ab)/ab); hence
    x_prev = A x + B + sigma z with A = P + Q c, B = -Q c sqrt(ab) m, and mean' = A mean + B,
    var' = A^2 var + sigma^2.
    """
    ab_all, mean, var = sched.alpha_bar, 0.0, 1.0
    for t, t_prev in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        ab, ab_prev = ab_all[t].item(), ab_all[t_prev].item()
        sigma2 = eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
        c = math.sqrt(1 - ab) / (ab * s2 + 1 - ab)
        Q = math.sqrt(max(1 - ab_prev - sigma2, 0.0)) - math.sqrt(ab_prev * (1 - ab) / ab)
        A, B = math.sqrt(ab_prev / ab) + Q * c, -Q * c * math.sqrt(ab) * m
        mean, var = A * mean + B, A * A * var + sigma2
    return mean, var


def ddim_gaussian_marginal_nd(sched, grid, eta, mean=MEAN, cov=COV) -> tuple[torch.Tensor, torch.Tensor]:
    """The same for N(mean, cov) in D dims: the optimal eps acts diagonally in cov's eigenbasis."""
    lam, U = torch.linalg.eigh(cov)
    m_eig = U.T @ mean
    out = [ddim_gaussian_marginal(sched, grid, eta, m_eig[i].item(), lam[i].item()) for i in range(len(lam))]
    mu = torch.tensor([o[0] for o in out], dtype=F64)
    var = torch.tensor([o[1] for o in out], dtype=F64)
    return U @ mu, U @ torch.diag(var) @ U.T


def assert_gaussian_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, n_se: float = 4.0,
                            mean_slack: torch.Tensor | float = 0.0, cov_slack: torch.Tensor | float = 0.0) -> None:
    """Sample mean within n_se SE sqrt(C_ii/N) (+ mean_slack); sample covariance within
    n_se SE sqrt((C_ii C_jj + C_ij^2)/N) (+ cov_slack), the SE of a Gaussian sample covariance."""
    N = x.shape[0]
    se_mean = (cov.diag() / N).sqrt()
    assert bool(((x.mean(0) - mean).abs() < n_se * se_mean + mean_slack).all()), (x.mean(0), mean, se_mean)
    se_cov = ((cov.diag()[:, None] * cov.diag()[None, :] + cov**2) / N).sqrt()
    emp = torch.cov(x.T)
    assert bool(((emp - cov).abs() < n_se * se_cov + cov_slack).all()), (emp, cov, se_cov)


# ---- eta = 1 is DDPM --------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCHEDULES)
def test_ddim_variance_at_eta1_with_unit_stride_is_the_ddpm_posterior_variance(name):
    """sigma_t(1)^2 with t_prev = t - 1 equals beta~_t = (1 - ab_{t-1})/(1 - ab_t) beta_t for every t = 1..T."""
    sched = SCHEDULES[name]
    t = torch.arange(1, sched.T + 1)
    torch.testing.assert_close(ddim_sigma(sched, t, t - 1, 1.0) ** 2, sched.beta_tilde[1:], rtol=1e-12, atol=1e-18)
    assert ddim_sigma(sched, t, t - 1, 0.0).abs().max() == 0


@pytest.mark.parametrize("name", SCHEDULES)
def test_ddim_step_at_eta1_with_unit_stride_is_the_ddpm_ancestral_step(name):
    """For the same eps and noise z, at every t: DDIM eq. 12 = mu~(x_t, eps) + sqrt(beta~_t) z (DDPM eq. 11)."""
    sched = SCHEDULES[name]
    t = torch.arange(1, sched.T + 1)
    x_t, eps, z = (torch.randn(sched.T, 3, generator=gen(k), dtype=F64) for k in (1, 2, 3))
    ddpm = posterior_mean_from_eps(sched, x_t, t, eps) + sched.beta_tilde[t, None].sqrt() * z
    torch.testing.assert_close(ddim_step(sched, x_t, eps, t, t - 1, eta=1.0, noise=z), ddpm, rtol=1e-12, atol=1e-12)


def test_ddim_sampler_at_eta1_on_the_full_grid_reproduces_ddpm_sample_with_beta_tilde():
    """Whole chains: ddim_sample(eta=1, steps=T) == ddpm_sample(var="beta_tilde") for the same injected noise."""
    sched = Schedule.linear(200, 1e-3, 0.05)
    model = gaussian_eps(sched, MEAN, COV)
    x_T, noise = torch.randn(16, 2, generator=gen(4), dtype=F64), torch.randn(200, 16, 2, generator=gen(5), dtype=F64)
    a = ddim_sample(model, sched, x_T, steps=200, eta=1.0, noise=noise)
    b = ddpm_sample(model, sched, x_T, var="beta_tilde", noise=noise)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ---- the step itself ----------------------------------------------------------------------------

def test_ddim_step_is_predicted_x0_plus_direction_to_x_t_plus_noise():
    """Eq. 12 term by term, for strided pairs and eta in {0, 0.5, 1}: rebuilt here from the schedule."""
    sched = SCHEDULES["cosine"]
    x_t, eps, z = (torch.randn(5, 4, generator=gen(k), dtype=F64) for k in (6, 7, 8))
    for t, t_prev in [(1000, 980), (500, 1), (37, 0), (2, 1)]:
        ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]
        for eta in (0.0, 0.5, 1.0):
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
            x0_pred = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
            expected = ab_prev.sqrt() * x0_pred + (1 - ab_prev - sigma**2).sqrt() * eps + sigma * z
            torch.testing.assert_close(ddim_step(sched, x_t, eps, t, t_prev, eta, z), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_with_the_true_noise_keeps_the_forward_marginals(eta):
    """DDIM's Lemma 1: if x_t = sqrt(ab_t) x0 + sqrt(1-ab_t) e and eps = e (so x0_pred = x0), then the step's
    x_prev given x0 has mean sqrt(ab_prev) x0 and variance 1 - ab_prev, for every sigma. Exact at eta = 0
    (x_prev = q_sample(x0, t_prev, e), 1e-12); 200,000 draws within 5 SE for eta > 0."""
    sched, N, (t, t_prev) = SCHEDULES["linear"], 200_000, (700, 300)
    x0 = torch.full((N, 1), 0.4, dtype=F64)
    e, z = torch.randn(N, 1, generator=gen(9), dtype=F64), torch.randn(N, 1, generator=gen(10), dtype=F64)
    x_prev = ddim_step(sched, q_sample(sched, x0, torch.full((N,), t), e), e, t, t_prev, eta, z)
    ab_prev = sched.alpha_bar[t_prev].item()
    if eta == 0:
        torch.testing.assert_close(x_prev, q_sample(sched, x0, torch.full((N,), t_prev), e), rtol=0, atol=1e-12)
    var = 1 - ab_prev
    assert abs(x_prev.mean().item() - ab_prev**0.5 * 0.4) < 5 * math.sqrt(var / N)
    assert abs(x_prev.var().item() - var) < 5 * var * math.sqrt(2 / (N - 1))


@pytest.mark.parametrize("name", SCHEDULES)
def test_ddim_at_eta0_is_the_euler_step_of_the_probability_flow_ode(name):
    """With x_bar = x / sqrt(ab) and sigma = sqrt((1-ab)/ab), eq. 12 at eta = 0 is exactly
    x_bar_prev = x_bar_t + (sigma_prev - sigma_t) eps(x_t, t): Euler on d x_bar = eps d sigma (DDIM eq. 14)."""
    sched = SCHEDULES[name]
    ab = sched.alpha_bar
    x_t, eps = torch.randn(6, 3, generator=gen(11), dtype=F64), torch.randn(6, 3, generator=gen(12), dtype=F64)
    for t, t_prev in [(1000, 0), (1000, 999), (981, 961), (500, 250), (20, 0), (1, 0)]:
        sig, sig_prev = ((1 - ab[t]) / ab[t]).sqrt(), ((1 - ab[t_prev]) / ab[t_prev]).sqrt()
        x_bar_prev = x_t / ab[t].sqrt() + (sig_prev - sig) * eps
        expected = ab[t_prev].sqrt() * x_bar_prev
        torch.testing.assert_close(ddim_step(sched, x_t, eps, t, t_prev), expected, rtol=1e-12, atol=1e-12)


# ---- Theorem 1: every J_sigma is a weighted L_simple -----------------------------------------------

PAIRS = [(2, 1), (10, 9), (100, 99), (500, 499), (1000, 999), (1000, 980), (500, 250), (37, 1)]  # t_prev >= 1
SIGMA_FAMILIES = (0.3, 0.5, 1.0, "max")  # eta, or "max": sigma_t = sqrt(1 - ab_prev), the largest allowed


def family_eta(sched: Schedule, t: int, t_prev: int, family: float | str) -> float:
    """The eta that gives `family`'s sigma_t; "max" needs eta = sqrt(1 - ab_prev) / sigma_t(eta = 1) >= 1."""
    if family == "max":
        return ((1 - sched.alpha_bar[t_prev]).sqrt() / ddim_sigma(sched, t, t_prev, 1.0)).item()
    return family


def theorem1_gamma(sched: Schedule, t: int, t_prev: int, sigma2: torch.Tensor) -> torch.Tensor:
    """DDIM Theorem 1's weight, per dimension, derived from eq. 7 and eq. 12 (ab = alpha_bar):
    with x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps and x0_pred = x0 + sqrt((1 - ab_t)/ab_t) (eps - eps_theta),
    mean_q - mean_p = k (eps - eps_theta), k = sqrt(1 - ab_prev - sigma^2) - sqrt(ab_prev (1 - ab_t) / ab_t);
    both variances are sigma^2, so the KL is k^2 ||eps - eps_theta||^2 / (2 sigma^2): gamma = k^2 / (2 sigma^2)."""
    ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]
    k = (1 - ab_prev - sigma2).clamp(min=0).sqrt() - (ab_prev * (1 - ab) / ab).sqrt()
    return k**2 / (2 * sigma2)


@pytest.mark.parametrize("family", SIGMA_FAMILIES)
def test_ddim_theorem1_per_step_kl_is_gamma_times_eps_mse_with_zero_constant(family):
    """KL( q_sigma(x_prev | x_t, x0) || p_theta(x_prev | x_t) ) = gamma_t ||eps - eps_theta(x_t, t)||^2 exactly
    (C = 0: equal variances), with q_sigma's mean from eq. 7, p_theta's mean = ddim_step without noise, the
    variance ddim_sigma^2, eps_theta the Gaussian oracle, random x0 and eps, unit and strided steps, both
    schedules. With eps_theta = eps the KL is 0. Float64 round-off."""
    for sched in SCHEDULES.values():
        ab, oracle = sched.alpha_bar, gaussian_eps(sched, MEAN, COV)
        for i, (t, t_prev) in enumerate(PAIRS):
            x0, eps = (torch.randn(64, 2, generator=gen(100 + 2 * i + k), dtype=F64) for k in (0, 1))
            x_t = q_sample(sched, x0, torch.full((64,), t), eps)
            eta = family_eta(sched, t, t_prev, family)
            sigma2 = ddim_sigma(sched, t, t_prev, eta) ** 2  # (1,)
            # eq. 7: sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)
            mean_q = (ab[t_prev].sqrt() * x0 + (1 - ab[t_prev] - sigma2).clamp(min=0).sqrt()
                      * (x_t - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt())
            eps_theta = oracle(x_t, torch.full((64,), t), None)
            mean_p = ddim_step(sched, x_t, eps_theta, t, t_prev, eta, noise=torch.zeros_like(x_t))
            kl = gaussian_kl(mean_q, sigma2, mean_p, sigma2).sum(1)
            expected = theorem1_gamma(sched, t, t_prev, sigma2) * (eps - eps_theta).pow(2).sum(1)
            torch.testing.assert_close(kl, expected, rtol=1e-9, atol=1e-14)
            assert expected.min() > 0  # the oracle is not the true noise: the check is not 0 = 0
            mean_true = ddim_step(sched, x_t, eps, t, t_prev, eta, noise=torch.zeros_like(x_t))
            assert gaussian_kl(mean_q, sigma2, mean_true, sigma2).abs().max() < 1e-12  # C = 0


@pytest.mark.parametrize("name", SCHEDULES)
def test_ddim_theorem1_weight_at_eta1_unit_stride_is_ddpm_lambda_with_beta_tilde(name):
    """At eta = 1 with t_prev = t - 1, q_sigma is DDPM's posterior, so gamma_t must be lecture 1's eq. 12
    weight lambda_t = beta_t^2 / (2 beta~_t alpha_t (1 - ab_t)) for sigma_t^2 = beta~_t (t = 2..T; 1e-10)."""
    sched = SCHEDULES[name]
    t = torch.arange(2, sched.T + 1)
    gamma = theorem1_gamma(sched, t, t - 1, ddim_sigma(sched, t, t - 1, 1.0) ** 2)
    torch.testing.assert_close(gamma, lambda_t(sched, "beta_tilde")[2:], rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_ddim_eta0_keeps_the_noise_direction(name):
    """sigma = 0: the noise implied by x_prev, eps_prev = (x_prev - sqrt(ab_prev) x0_pred) / sqrt(1 - ab_prev)
    (= predict_eps at t_prev), is the very eps used at t: the deterministic step never turns the noise."""
    sched = SCHEDULES[name]
    x_t, eps = (torch.randn(16, 3, generator=gen(k), dtype=F64) for k in (120, 121))
    for t, t_prev in PAIRS:
        x0_pred = predict_x0(sched, x_t, torch.full((16,), t), eps)
        x_prev = ddim_step(sched, x_t, eps, t, t_prev, eta=0.0)
        torch.testing.assert_close(predict_eps(sched, x_prev, torch.full((16,), t_prev), x0_pred), eps,
                                   rtol=1e-10, atol=1e-10)


def test_ddim_max_sigma_drops_the_direction_term_and_its_new_noise_is_independent_of_eps():
    """sigma_t = sqrt(1 - ab_prev): the coefficient sqrt(1 - ab_prev - sigma^2) on eps vanishes (to ~1e-8, the
    square root of the float64 round-off left in 1 - ab_prev - sigma^2), so x_prev = sqrt(ab_prev) x0_pred +
    sigma z and the implied noise is z itself. Over N = 200,000 draws its sample correlation with eps is within
    5 SE (1/sqrt(N)) of 0, while at eta = 0.5 it is within 5 SE ((1 - rho^2)/sqrt(N)) of the kept share
    rho = sqrt(1 - sigma^2 / (1 - ab_prev)): the statistic tells the two apart."""
    sched, N = SCHEDULES["linear"], 200_000
    x_t, eps, z = (torch.randn(N, 1, generator=gen(k), dtype=F64) for k in (130, 131, 132))
    corr = lambda a: torch.corrcoef(torch.cat([a, eps], 1).T)[0, 1].item()
    for t, t_prev in [(1000, 999), (500, 250), (10, 9)]:
        ab_prev, t_vec, t_prev_vec = sched.alpha_bar[t_prev], torch.full((N,), t), torch.full((N,), t_prev)
        x0_pred = predict_x0(sched, x_t, t_vec, eps)
        eta = family_eta(sched, t, t_prev, "max")
        sigma = ddim_sigma(sched, t, t_prev, eta)
        torch.testing.assert_close(sigma, (1 - ab_prev).sqrt().view(1), rtol=1e-12, atol=0)
        direction_coef = (1 - ab_prev - sigma**2).clamp(min=0).sqrt().item()
        assert direction_coef < 2e-8
        tol = 2e-8 * eps.abs().max().item() + 1e-12
        x_prev = ddim_step(sched, x_t, eps, t, t_prev, eta, noise=z)
        torch.testing.assert_close(x_prev, ab_prev.sqrt() * x0_pred + sigma * z, rtol=0, atol=tol)
        implied = predict_eps(sched, x_prev, t_prev_vec, x0_pred)
        torch.testing.assert_close(implied, z, rtol=0, atol=tol / (1 - ab_prev).sqrt().item())
        assert abs(corr(implied)) < 5 / math.sqrt(N)
        implied_half = predict_eps(sched, ddim_step(sched, x_t, eps, t, t_prev, 0.5, noise=z), t_prev_vec, x0_pred)
        rho = (1 - ddim_sigma(sched, t, t_prev, 0.5) ** 2 / (1 - ab_prev)).sqrt().item()
        assert abs(corr(implied_half) - rho) < 5 * (1 - rho**2) / math.sqrt(N)


# ---- sampling Gaussian data with the optimal model ------------------------------------------------

@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_samples_of_gaussian_data_have_the_exact_moments_of_the_discrete_sampler(eta):
    """20,000 2-D samples, 50 leading steps, optimal eps for N(MEAN, COV): sample mean and covariance agree
    with the closed-form output distribution of the 50-step sampler within 4 SE (no discretisation slack).
    Against the DATA covariance the 50-step bias is 12, 15 and 23 SE for eta = 0, 0.5, 1: strided DDIM is
    visibly biased, and this closed form is what separates that bias from sampling noise."""
    sched, N = SCHEDULES["linear"], 20_000
    grid = timesteps(sched.T, 50, "leading")
    x = ddim_sample(gaussian_eps(sched, MEAN, COV), sched, torch.randn(N, 2, generator=gen(13), dtype=F64),
                    grid=grid, eta=eta, generator=gen(14))
    assert_gaussian_moments(x, *ddim_gaussian_marginal_nd(sched, grid, eta))


def test_ddim_discretisation_error_is_first_order_in_the_step_and_shrinks_for_every_eta():
    """Closed form, 1-D N(0.3, 0.5^2), linear schedule, leading grid: the output std falls short of 0.5 by
    C/steps with C in [1.2, 4] for all steps in 10..1000 and eta in {0, 0.5, 1} (first order). Measured
    std errors at 10, 20, 50, 100, 200, 500, 1000 steps: eta = 0: 0.126, 0.066, 0.028, 0.014, 0.0071, 0.0029,
    0.0015; eta = 1: 0.167, 0.109, 0.056, 0.032, 0.017, 0.0075, 0.0039 (eta = 1 at 1000 steps is DDPM).
    The continuous-time marginals do not depend on eta: the spread between eta = 0, 0.5, 1 shrinks > 10x
    from 50 to 1000 steps. The mean error at eta = 0 (-9.5e-4) is the prior mismatch x_T ~ N(0, 1) instead of
    N(sqrt(ab_T) m, .), carried to x_0 by the deterministic map's slope (~ s)."""
    sched, m, s, all_steps = SCHEDULES["linear"], 0.3, 0.5, (10, 20, 50, 100, 200, 500, 1000)
    std_err = {(eta, S): math.sqrt(ddim_gaussian_marginal(sched, timesteps(1000, S), eta, m, s**2)[1]) - s
               for eta in (0.0, 0.5, 1.0) for S in all_steps}
    for eta in (0.0, 0.5, 1.0):
        errs = [std_err[eta, S] for S in all_steps]
        assert all(e < 0 for e in errs) and all(abs(a) > abs(b) for a, b in zip(errs, errs[1:], strict=False))
        assert all(1.2 < abs(std_err[eta, S]) * S < 4.0 for S in all_steps)
    assert abs(std_err[0.0, 50] + 0.0276) < 1e-3 and abs(std_err[0.0, 1000]) < 2e-3 and abs(std_err[1.0, 1000]) < 4e-3
    spread = {S: max(std_err[e, S] for e in (0.0, 0.5, 1.0)) - min(std_err[e, S] for e in (0.0, 0.5, 1.0))
              for S in (50, 1000)}
    assert spread[1000] < spread[50] / 10
    mean_err = ddim_gaussian_marginal(sched, timesteps(1000, 1000), 0.0, m, s**2)[0] - m
    prior_shift = -math.sqrt(sched.alpha_bar[1000].item()) * m * s  # E[x_T] error, mapped by A ~ s
    assert abs(mean_err - prior_shift) < 1e-5


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_samples_on_the_full_grid_have_the_data_mean_and_covariance(eta):
    """steps = T = 1000, 20,000 2-D samples: mean and covariance match the DATA within 4 SE plus the sampler's
    own bias, computed in closed form (at most 0.7, 1.0 and 1.8 SE of a covariance entry for eta = 0, 0.5, 1;
    asserted below 2 SE, so the slack is stated, not hidden)."""
    sched, N = SCHEDULES["linear"], 20_000
    mean_d, cov_d = ddim_gaussian_marginal_nd(sched, timesteps(1000, 1000), eta)
    se_cov = ((COV.diag()[:, None] * COV.diag()[None, :] + COV**2) / N).sqrt()
    assert bool(((cov_d - COV).abs() < 2 * se_cov).all())
    assert bool(((mean_d - MEAN).abs() < (COV.diag() / N).sqrt()).all())
    x = ddim_sample(gaussian_eps(sched, MEAN, COV), sched, torch.randn(N, 2, generator=gen(15), dtype=F64),
                    steps=1000, eta=eta, generator=gen(16))
    assert_gaussian_moments(x, MEAN, COV, mean_slack=(mean_d - MEAN).abs(), cov_slack=(cov_d - COV).abs())


# ---- grids: no special first or last step ----------------------------------------------------------

@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_every_grid_ends_at_alpha_bar_one_and_the_last_x0_pred_is_the_output(spacing, steps, eta):
    """The model is only ever called with 1 <= t <= T; the last step goes to t = 0 where ab = 1 and sigma = 0,
    so the sampler's output is exactly the last step's x0_pred (float64: bit-identical)."""
    sched = SCHEDULES["cosine"]
    seen_t = []

    def model(x, t, c):
        assert bool(((t >= 1) & (t <= sched.T)).all()), t
        seen_t.append(int(t[0]))
        return torch.tanh(x) * t.view(-1, 1) / sched.T

    steps_seen = []
    out = ddim_sample(model, sched, torch.randn(3, 2, generator=gen(17), dtype=F64), steps=steps, eta=eta,
                      spacing=spacing, generator=gen(18), callback=steps_seen.append)
    assert len(steps_seen) == steps and steps_seen[-1]["t_prev"] == 0 and sched.alpha_bar[0] == 1.0
    assert seen_t == timesteps(sched.T, steps, spacing)[:-1].tolist()
    assert torch.equal(steps_seen[-1]["x0_pred"], out) and torch.equal(steps_seen[-1]["x_prev"], out)


# ---- errors that teach ----------------------------------------------------------------------------

def test_ddim_sample_rejects_an_eps_model_of_the_wrong_shape():
    """The per-step update (`ddim_update`) checks eps against x_t: a (B, 1, ...) eps is not broadcast silently."""
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="eps shape"):
        ddim_sample(lambda x_t, t, c: x_t[:, :1], Schedule.linear(100), x, steps=5)


def test_ddim_step_rejects_bad_arguments_with_clear_errors():
    sched = Schedule.linear(100, 1e-3, 0.05)
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_step(sched, x, x, 10, 5, eta=-0.1)
    with pytest.raises(ValueError, match="0 <= t_prev < t <= T = 100"):
        ddim_step(sched, x, x, 10, 10)
    with pytest.raises(ValueError, match="0 <= t_prev < t <= T = 100"):
        ddim_step(sched, x, x, 101, 50)
    with pytest.raises(ValueError, match="0 <= t_prev < t <= T"):
        ddim_step(sched, x, x, 5, -1)
    with pytest.raises(ValueError, match="eps shape"):
        ddim_step(sched, x, torch.zeros(2, 4, dtype=F64), 10, 5)
    with pytest.raises(ValueError, match="pass noise"):
        ddim_step(sched, x, x, 10, 5, eta=0.5)
    with pytest.raises(ValueError, match="noise shape"):
        ddim_step(sched, x, x, 10, 5, eta=0.5, noise=torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="too large"):
        ddim_step(sched, x, x, 2, 1, eta=1.5, noise=x)
    with pytest.raises(ValueError, match="shape \\(B,\\)"):
        ddim_step(sched, x, x, torch.tensor([10, 9, 8]), 5)
    with pytest.raises(TypeError, match="integers"):
        ddim_step(sched, x, x, 10.5, 5)
    with pytest.raises(ValueError, match="noise must have shape"):
        ddim_sample(lambda x, t, c: x, sched, x, steps=5, eta=1.0, noise=torch.zeros(4, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_sample(lambda x, t, c: x, sched, x, grid=torch.tensor([50, 20, 1]))  # does not end at 0
