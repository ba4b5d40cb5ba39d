"""Derivation checks for lecture 1: DDPM as a Markov hierarchical VAE.

Every tolerance is either float64 round-off (exact identities, 1e-10 or tighter) or a
stated number of Monte Carlo standard errors (SE) of the estimate being checked. The
reference for Gaussian data x_0 ~ N(m, s^2) is `expected_elbo`, the bound computed in
closed form (every term is a Gaussian integral; derivation in its docstring).
"""

import math

import pytest
import torch

from minidiff.elbo import L_0, L_T, L_simple, L_t_minus_1, elbo_estimate, elbo_terms, lambda_t
from minidiff.gaussian import (
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    gaussian_log_prob,
    posterior_mean_from_eps,
    predict_eps,
    q_posterior,
    q_sample,
    q_step,
    sigma2,
)
from minidiff.samplers import ddpm_sample
from minidiff.schedule import Schedule

F64 = torch.float64
M, S = 0.3, 0.5  # the Gaussian data N(M, S^2) of the oracle tests


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def optimal_eps(sched: Schedule, m: float = M, s: float = S):
    """The Bayes-optimal eps-model for x_0 ~ N(m, s^2 I):

        E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab).
    """
    def eps_model(x_t, t, context=None):
        ab = sched.at("alpha_bar", t, x_t)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
    return eps_model


def expected_elbo(sched: Schedule, var: str = "beta", m: float = M, s: float = S) -> float:
    """E_{x_0 ~ N(m, s^2)} of the bound, per dimension, with the optimal eps-model, in closed form.

    - L_T: KL(N(sqrt(ab) x0, 1-ab) || N(0,1)) averaged over x0 -> 0.5(-log(1-ab) + 1-ab + ab(m^2+s^2) - 1).
    - L_{t-1}: mu~ - mu_theta = -beta/(sqrt(alpha) sqrt(1-ab)) (eps - E[eps|x_t]), whose mean square is
      beta^2/(alpha(1-ab)) Var(eps|x_t), Var(eps|x_t) = ab s^2/(ab s^2 + 1 - ab); plus the variance KL.
    - L_0 (continuous): mu_theta(x_1) = E[x_0|x_1], so E(x0 - mu)^2 = Var(x0|x1) = s^2(1-ab_1)/(ab_1 s^2 + 1 - ab_1).
    """
    ab, T, s2 = sched.alpha_bar, sched.T, sigma2(sched, var)
    LT = 0.5 * (-torch.log(1 - ab[T]) + (1 - ab[T]) + ab[T] * (m**2 + s**2) - 1)
    t = torch.arange(2, T + 1)
    bt, sg = sched.beta_tilde[t], s2[t]
    var_eps = ab[t] * s**2 / (ab[t] * s**2 + 1 - ab[t])
    mean_sq = sched.beta[t] ** 2 / (sched.alpha[t] * (1 - ab[t])) * var_eps  # E (mu~ - mu_theta)^2
    Lt = 0.5 * (torch.log(sg / bt) + bt / sg - 1) + mean_sq / (2 * sg)
    var_x0 = s**2 * (1 - ab[1]) / (ab[1] * s**2 + 1 - ab[1])
    L0 = 0.5 * torch.log(2 * math.pi * s2[1]) + var_x0 / (2 * s2[1])
    return float(LT + Lt.sum() + L0)


def gaussian_entropy(s: float = S) -> float:
    """E[-log N(x; m, s^2)] = 0.5 log(2 pi e s^2): the exact expected negative log-likelihood."""
    return 0.5 * math.log(2 * math.pi * math.e * s**2)


# ---- schedules -------------------------------------------------------------------------------

@pytest.mark.parametrize("sched", [Schedule.linear(1000), Schedule.cosine(1000)], ids=["linear", "cosine"])
def test_schedule_alpha_bar_starts_at_one_and_decreases_strictly(sched):
    ab = sched.alpha_bar
    assert sched.beta.dtype == F64 and len(ab) == sched.T + 1
    assert ab[0] == 1.0 and sched.beta[0] == 0.0 and sched.alpha[0] == 1.0
    assert bool((ab[1:] < ab[:-1]).all())
    torch.testing.assert_close(ab[1:], torch.cumprod(1 - sched.beta[1:], 0), rtol=0, atol=1e-15)


def test_linear_schedule_matches_ddpm_endpoints_and_cosine_matches_its_formula():
    lin = Schedule.linear(1000, 1e-4, 0.02)
    assert lin.beta[1] == 1e-4 and abs(lin.beta[1000] - 0.02) < 1e-15
    assert abs(lin.alpha_bar[1000].item() - 4.0358e-5) < 1e-8  # the well-known value for DDPM's schedule
    cos = Schedule.cosine(1000)
    t = torch.arange(0, 990, dtype=F64)  # below the max_beta clip
    f = torch.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(cos.alpha_bar[:990], f / f[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("sched", [Schedule.linear(1000), Schedule.cosine(1000)], ids=["linear", "cosine"])
def test_prior_term_L_T_is_negligible_for_the_default_schedules(sched):
    x0 = torch.tensor([[-1.0, 0.0, 1.0]], dtype=F64)  # the worst case in [-1, 1] is |x0| = 1
    bits_per_dim = L_T(sched, x0) / (3 * math.log(2))
    assert bits_per_dim.item() < 2e-5  # Ho et al. report L_T ~ 1e-5 bits/dim on CIFAR-10


def test_schedule_rejects_bad_betas():
    with pytest.raises(ValueError, match="beta\\[0\\] must be 0"):
        Schedule(torch.tensor([0.1, 0.2], dtype=F64))
    with pytest.raises(ValueError, match="\\(0, 1\\)"):
        Schedule.linear(10, 1e-4, 1.5)
    with pytest.raises(ValueError, match="positive integer"):
        Schedule.linear(0)


# ---- forward process ------------------------------------------------------------------------

def test_composing_one_step_transitions_gives_the_marginal_q_xt_given_x0():
    """q(x_t|x_0) = N(sqrt(ab_t) x0, (1-ab_t) I) from t steps of q(x_s|x_{s-1}) = N(sqrt(alpha_s) x, beta_s I).

    Exact part: the mean coefficient prod sqrt(alpha_s) and the variance recursion
    v_s = alpha_s v_{s-1} + beta_s agree with the closed form to float64 round-off.
    Monte Carlo part: 200,000 chains; mean within 5 SE = 5 sqrt((1-ab)/N), variance within
    5 SE = 5 (1-ab) sqrt(2/(N-1)) (the SE of a Gaussian sample variance).
    """
    sched = Schedule.linear(1000)
    coef, v = torch.ones((), dtype=F64), torch.zeros((), dtype=F64)
    for s in range(1, sched.T + 1):
        coef, v = coef * sched.alpha[s].sqrt(), sched.alpha[s] * v + sched.beta[s]
        if s in (1, 10, 500, 1000):
            assert abs(coef - sched.alpha_bar[s].sqrt()) < 1e-12 and abs(v - (1 - sched.alpha_bar[s])) < 1e-12
    N, x0, g = 200_000, 0.7, gen(0)
    x = torch.full((N, 1), x0, dtype=F64)
    for s in range(1, 301):
        x = q_step(sched, x, torch.full((N,), s), torch.randn(N, 1, generator=g, dtype=F64))
        if s in (1, 50, 300):
            ab = sched.alpha_bar[s].item()
            assert abs(x.mean().item() - ab**0.5 * x0) < 5 * math.sqrt((1 - ab) / N)
            assert abs(x.var().item() - (1 - ab)) < 5 * (1 - ab) * math.sqrt(2 / (N - 1))


def test_q_posterior_equals_bayes_rule():
    """q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0): a product of two Gaussians in x_{t-1} with
    precision alpha_t/beta_t + 1/(1-ab_{t-1}). Checked for every t = 2..T to 1e-12, and by
    independent numerical quadrature of the unnormalised density on a grid for three t (1e-8)."""
    sched = Schedule.linear(1000)
    t = torch.arange(2, 1001)
    x0, x_t = torch.randn(999, 1, generator=gen(1), dtype=F64), torch.randn(999, 1, generator=gen(2), dtype=F64)
    a, b, ab_prev = sched.alpha[t, None], sched.beta[t, None], sched.alpha_bar[t - 1, None]
    prec = a / b + 1 / (1 - ab_prev)
    mean_bayes = (a.sqrt() * x_t / b + ab_prev.sqrt() * x0 / (1 - ab_prev)) / prec
    mean, var = q_posterior(sched, x0, x_t, t)
    torch.testing.assert_close(mean, mean_bayes, rtol=0, atol=1e-12)
    torch.testing.assert_close(var, 1 / prec, rtol=1e-12, atol=0)
    for ti in (2, 100, 1000):
        x0i, xti, tt = torch.tensor([[0.4]], dtype=F64), torch.tensor([[-0.3]], dtype=F64), torch.tensor([ti])
        m_, v_ = q_posterior(sched, x0i, xti, tt)
        grid = torch.linspace(-3, 3, 400_001, dtype=F64).view(-1, 1) * v_.sqrt() * 10 + m_
        logp = (gaussian_log_prob(xti, sched.alpha[ti].sqrt() * grid, sched.beta[ti])
                + gaussian_log_prob(grid, sched.alpha_bar[ti - 1].sqrt() * x0i, 1 - sched.alpha_bar[ti - 1]))
        w = torch.softmax(logp.flatten(), 0)
        m_num = (w * grid.flatten()).sum()
        v_num = (w * (grid.flatten() - m_num) ** 2).sum()
        assert abs(m_num - m_.item()) < 1e-8 * max(1.0, abs(m_.item())) and abs(v_num / v_.item() - 1) < 1e-8


def test_posterior_mean_mu_tilde_form_equals_beta_tilde_form():
    """Eq. 7 with x0 = (x_t - sqrt(1-ab) eps)/sqrt(ab) substituted gives eq. 11's mu~(x_t, eps)."""
    sched = Schedule.cosine(1000)
    t = torch.randint(1, 1001, (64,), generator=gen(3))
    x0, eps = torch.randn(64, 3, generator=gen(4), dtype=F64), torch.randn(64, 3, generator=gen(5), dtype=F64)
    x_t = q_sample(sched, x0, t, eps)
    torch.testing.assert_close(predict_eps(sched, x_t, t, x0), eps, rtol=0, atol=1e-6)  # ab_T ~ 2e-9 amplifies
    torch.testing.assert_close(posterior_mean_from_eps(sched, x_t, t, eps), q_posterior(sched, x0, x_t, t)[0],
                               rtol=0, atol=1e-9)


# ---- KL, L_{t-1}, L_0 -----------------------------------------------------------------------

def test_gaussian_kl_matches_monte_carlo():
    """KL(N1||N2) = E_{x~N1}[log N1(x) - log N2(x)], estimated with 10^6 draws; within 5 SE."""
    m1, v1, m2, v2 = 0.3, 0.5, -0.2, 1.7
    x = m1 + math.sqrt(v1) * torch.randn(1_000_000, generator=gen(6), dtype=F64)
    m1, v1, m2, v2 = (torch.tensor(v, dtype=F64) for v in (m1, v1, m2, v2))
    log_ratio = gaussian_log_prob(x, m1, v1) - gaussian_log_prob(x, m2, v2)
    kl = gaussian_kl(m1, v1, m2, v2)
    assert abs(log_ratio.mean() - kl) < 5 * log_ratio.std() / 1000
    assert gaussian_kl(m1, v1, m1, v1) == 0


@pytest.mark.parametrize("var", ["beta_tilde", "beta"])
def test_L_t_minus_1_is_the_lambda_weighted_eps_mse(var):
    """Eq. 12: L_{t-1} = beta^2/(2 sigma^2 alpha (1-ab)) ||eps - eps_theta||^2 + C_t, where C_t is the KL of
    the variances alone: 0 for sigma^2 = beta~ (matched), D/2 (log(beta/beta~) + beta~/beta - 1) for beta.
    Any eps-model will do (here an arbitrary nonlinear one); float64 round-off."""
    sched, D = Schedule.linear(1000), 6
    eps_theta = lambda x, t, c: torch.tanh(1.3 * x) + 0.01 * t.view(-1, 1).to(x)
    t = torch.arange(2, 1001, 7)
    x0 = torch.rand(len(t), D, generator=gen(7), dtype=F64) * 2 - 1
    eps = torch.randn(len(t), D, generator=gen(8), dtype=F64)
    mse = (eps - eps_theta(q_sample(sched, x0, t, eps), t, None)).pow(2).sum(1)
    bt, s2 = sched.beta_tilde[t], sigma2(sched, var)[t]
    C = D / 2 * (torch.log(s2 / bt) + bt / s2 - 1)
    expected = lambda_t(sched, var)[t] * mse + C
    torch.testing.assert_close(L_t_minus_1(eps_theta, sched, x0, t, eps, var=var), expected, rtol=1e-10, atol=1e-12)
    if var == "beta_tilde":
        assert C.abs().max() < 1e-12


def test_discretized_gaussian_likelihood_sums_to_one_over_the_256_bins():
    """L_0's decoder is a distribution over the 256 values {-1, -1 + 2/255, ..., 1}: it sums to 1 (round-off)."""
    x = torch.linspace(-1, 1, 256, dtype=F64)
    for mean, std in [(0.0, 0.01), (0.93, 0.2), (-1.2, 0.5), (0.5, 1e-4)]:
        p = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.tensor(std, dtype=F64)).exp()
        assert abs(p.sum().item() - 1) < 1e-12
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        discretized_gaussian_log_likelihood(torch.tensor([1.5]), torch.tensor([0.0]), torch.tensor(0.1))


# ---- L_0's decoder variance ---------------------------------------------------------------------

@pytest.mark.parametrize("sched", [Schedule.linear(1000), Schedule.cosine(1000)], ids=["linear", "cosine"])
def test_decoder_var_beta_tilde_2_is_ho_et_al_fixedlarge_and_changes_only_t_equal_1(sched):
    """Ho et al.'s "fixedlarge" variances are [beta~_2, beta_2, ..., beta_T]: decoder_var="beta_tilde_2" puts
    beta~_2 = beta_1 beta_2 / (1 - (1 - beta_1)(1 - beta_2)) (eq. 7 at t = 2, from the betas) at t = 1
    and leaves every other t bit-identical. The default keeps the paper's sigma_1^2 = beta_1. Round-off."""
    b = sched.beta
    beta_tilde_2 = b[1] * b[2] / (b[1] + b[2] - b[1] * b[2])  # 1 - ab_2 without the cancellation
    large = sigma2(sched, "beta", decoder_var="beta_tilde_2")
    torch.testing.assert_close(large[1], beta_tilde_2, rtol=1e-11, atol=0)  # 1 - ab_2 ~ 2e-4 costs ~1e-12
    assert torch.equal(large[2:], b[2:]) and large[0] == 0
    assert sigma2(sched, "beta")[1] == sigma2(sched, "beta", decoder_var="beta_1")[1] == b[1]
    assert torch.equal(sigma2(sched, "beta_tilde"), sigma2(sched, "beta_tilde", decoder_var="beta_tilde_2"))
    small_b1 = sigma2(sched, "beta_tilde", decoder_var="beta_1")
    assert small_b1[1] == b[1] and torch.equal(small_b1[2:], sched.beta_tilde[2:])
    assert abs(beta_tilde_2 / b[1] - 1) > 0.1  # the two choices differ (by ~2x for the linear schedule)
    with pytest.raises(ValueError, match="decoder_var"):
        sigma2(sched, "beta", decoder_var="beta_tilde")
    with pytest.raises(ValueError, match="T >= 2"):
        sigma2(Schedule.linear(1), "beta", decoder_var="beta_tilde_2")


@pytest.mark.parametrize("decoder_var", [None, "beta_1", "beta_tilde_2"])
def test_L_0_is_the_discretised_gaussian_likelihood_with_the_chosen_decoder_variance(decoder_var):
    """L_0 = -sum_pixels log P(x_0 | x_1) with P the Gaussian N(mu~_1(x_1, eps_theta), v) integrated over each
    8-bit bin [x - 1/255, x + 1/255] (edge bins open), recomputed here with torch.distributions.Normal and
    v = beta_1 (None, "beta_1") or beta~_2 ("beta_tilde_2"); also the continuous density. Round-off."""
    sched, D = Schedule.linear(1000), 64
    eps_theta = lambda x, t, c: torch.tanh(1.3 * x) + 0.01 * t.view(-1, 1).to(x)
    x0 = (torch.randint(0, 256, (5, D), generator=gen(30)) / 127.5 - 1).to(F64)
    x0[:, :3] = torch.tensor([-1.0, 1.0, 0.0], dtype=F64)  # both open edge bins and a middle one
    eps = torch.randn(5, D, generator=gen(31), dtype=F64)
    b1, b2 = sched.beta[1], sched.beta[2]
    v = b1 if decoder_var in (None, "beta_1") else b1 * b2 / (b1 + b2 - b1 * b2)  # beta~_2
    x1 = (1 - b1).sqrt() * x0 + b1.sqrt() * eps  # alpha_bar_1 = alpha_1 = 1 - beta_1
    mean = (x1 - b1.sqrt() * eps_theta(x1, torch.ones(5, dtype=torch.long), None)) / (1 - b1).sqrt()  # eq. 11, t = 1
    normal = torch.distributions.Normal(mean, v.sqrt())
    upper = torch.where(x0 >= 1, torch.ones_like(x0), normal.cdf(x0 + 1 / 255))
    lower = torch.where(x0 <= -1, torch.zeros_like(x0), normal.cdf(x0 - 1 / 255))
    expected = -torch.log(upper - lower).sum(1)
    torch.testing.assert_close(L_0(eps_theta, sched, x0, eps, decoder_var=decoder_var), expected,
                               rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(L_0(eps_theta, sched, x0, eps, discrete=False, decoder_var=decoder_var),
                               -normal.log_prob(x0).sum(1), rtol=1e-12, atol=1e-10)


def test_elbo_terms_decoder_var_changes_L_0_only():
    """Same generator, two decoder variances: L_T and every L_{t-1} are identical, L_0 is the decoder term with
    the chosen variance (same eps as `L_0` called directly), and the totals differ by exactly the L_0 gap."""
    sched = Schedule.linear(20, 1e-3, 0.2)
    x0 = (torch.randint(0, 256, (4, 3, 2, 2), generator=gen(32)) / 127.5 - 1).to(F64)
    model = lambda x, t, c: 0.9 * x + 0.05 * t.view(-1, 1, 1, 1).to(x) / sched.T
    paper = elbo_terms(model, sched, x0, generator=gen(33))
    large = elbo_terms(model, sched, x0, generator=gen(33), decoder_var="beta_tilde_2")
    assert torch.equal(paper["L_T"], large["L_T"]) and torch.equal(paper["L_t"], large["L_t"])
    g = gen(33)
    eps = [torch.randn(x0.shape, generator=g, dtype=F64) for _ in range(sched.T)][-1]  # L_0 draws after the L_t
    for out, dv in [(paper, None), (large, "beta_tilde_2")]:
        torch.testing.assert_close(out["L_0"], L_0(model, sched, x0, eps, decoder_var=dv), rtol=1e-12, atol=0)
    assert bool((paper["L_0"] != large["L_0"]).all())
    torch.testing.assert_close(large["nats"] - paper["nats"], large["L_0"] - paper["L_0"], rtol=1e-9, atol=1e-9)


# ---- the bound with the optimal model ----------------------------------------------------------

def test_expected_elbo_bounds_the_exact_nll_and_the_gap_shrinks_as_T_grows():
    """For N(m, s^2) data and the optimal eps-model, E[bound] >= E[-log p(x0)] = entropy, and the gap
    falls roughly like 1/T (measured: 0.057, 0.0061, 0.00061 nats/dim at T = 10, 100, 1000)."""
    H = gaussian_entropy()
    gaps = [expected_elbo(Schedule.cosine(T)) - H for T in (10, 100, 1000)]
    assert all(g > 0 for g in gaps)
    assert gaps[0] > 5 * gaps[1] > 25 * gaps[2]
    assert gaps[2] < 1e-3


@pytest.mark.parametrize("T", [10, 100])
def test_elbo_terms_monte_carlo_agrees_with_the_closed_form(T):
    """The library's per-example bound (exact sum over t, one eps per term) averaged over 20,000 x0 ~ N(m, s^2)
    equals `expected_elbo` within 4 SE; so does the unbiased one-t estimator (200,000 draws)."""
    sched, N = Schedule.cosine(T), 20_000
    x0 = M + S * torch.randn(N, 1, generator=gen(9), dtype=F64)
    out = elbo_terms(optimal_eps(sched), sched, x0, var="beta", discrete=False, generator=gen(10))
    assert out["L_t"].shape == (N, T - 1)
    torch.testing.assert_close(out["nats"], out["L_T"] + out["L_t"].sum(1) + out["L_0"])
    exact = expected_elbo(sched)
    assert abs(out["nats"].mean().item() - exact) < 4 * out["nats"].std().item() / math.sqrt(N)
    x0 = M + S * torch.randn(200_000, 1, generator=gen(11), dtype=F64)
    est = elbo_estimate(optimal_eps(sched), sched, x0, var="beta", discrete=False, generator=gen(12))
    assert abs(est.mean().item() - exact) < 4 * est.std().item() / math.sqrt(len(est))


def test_bits_per_dim_is_nats_over_D_ln2():
    sched = Schedule.linear(50, 2e-3, 0.4)
    x0 = (torch.randint(0, 256, (4, 3, 2, 2), generator=gen(13)) / 127.5 - 1).to(F64)
    out = elbo_terms(optimal_eps(sched, 0.0, 0.6), sched, x0, generator=gen(14))
    torch.testing.assert_close(out["bits_per_dim"], out["nats"] / (12 * math.log(2)))


def test_L_simple_of_the_optimal_model_is_the_average_posterior_eps_variance():
    """E||eps - E[eps|x_t]||^2 = Var(eps|x_t) = ab s^2/(ab s^2 + 1 - ab), averaged over t ~ U{1..T}; 4 SE."""
    sched, N = Schedule.linear(1000), 400_000
    x0 = M + S * torch.randn(N, 1, generator=gen(15), dtype=F64)
    loss = L_simple(optimal_eps(sched), sched, x0, generator=gen(16))
    ab = sched.alpha_bar[1:]
    expected = (ab * S**2 / (ab * S**2 + 1 - ab)).mean().item()
    assert abs(loss.mean().item() - expected) < 4 * loss.std().item() / math.sqrt(N)


# ---- Algorithm 2 --------------------------------------------------------------------------------

@pytest.mark.parametrize("var", ["beta", "beta_tilde"])
def test_ddpm_sample_with_the_optimal_model_reproduces_the_data_distribution(var):
    """20,000 ancestral samples: mean within 4 SE (s/sqrt N) of m, std within 4 SE (s/sqrt(2N)) of s."""
    sched, N = Schedule.linear(1000), 20_000
    x = ddpm_sample(optimal_eps(sched), sched, torch.randn(N, 1, generator=gen(17), dtype=F64), var=var,
                    generator=gen(18))
    assert abs(x.mean().item() - M) < 4 * S / math.sqrt(N)
    assert abs(x.std().item() - S) < 4 * S / math.sqrt(2 * N)


def test_ddpm_sample_is_deterministic_given_injected_noise_and_reports_each_step():
    sched = Schedule.linear(20, 1e-3, 0.2)
    x_T = torch.randn(3, 2, generator=gen(19), dtype=F64)
    noise = torch.randn(20, 3, 2, generator=gen(20), dtype=F64)
    seen = []
    a = ddpm_sample(optimal_eps(sched), sched, x_T, noise=noise, callback=seen.append)
    b = ddpm_sample(optimal_eps(sched), sched, x_T, noise=noise)
    assert torch.equal(a, b)
    assert [d["t"] for d in seen] == list(range(20, 0, -1))
    torch.testing.assert_close(seen[-1]["x_prev"], a)
    # the last step adds no noise: x_0 is the posterior mean at t = 1, which equals x0_pred there
    torch.testing.assert_close(seen[-1]["x0_pred"], a, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="noise must have shape"):
        ddpm_sample(optimal_eps(sched), sched, x_T, noise=noise[:5])
