# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 1: DDPM as a Markov hierarchical VAE
#
# Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models*; "eq. N" below is their
# equation N. The hierarchical-VAE reading follows Luo (2022), *Understanding Diffusion Models:
# A Unified Perspective*.
#
# 1. The model: a VAE with a chain of latents and a fixed encoder.
# 2. The marginal $q(x_t \mid x_0)$: jump to any noise level in one step.
# 3. The posterior $q(x_{t-1} \mid x_t, x_0)$: the target every decoder step is fitted to.
# 4. The ELBO, step by step, each step checked with numbers on a model whose likelihood is exact.
# 5. Train a tiny DDPM on 2-D two moons, sample it (Algorithm 2), and split its bound over $t$.
# 6. Exercises.
#
# The pattern throughout: derive in markdown, re-implement inline, `assert_close` against `minidiff`,
# then use `minidiff`.

# %% tags=["parameters"]
# FAST = True is the CI-sized run (about 40 s in the test suite, 2 threads).
# FAST = False runs the full-size lecture: more training steps, samples and Monte Carlo draws (about a minute).
FAST = True

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from torch.testing import assert_close

from minidiff.datasets.toy import two_moons
from minidiff.elbo import L_simple, L_t_minus_1, elbo_terms, lambda_t
from minidiff.gaussian import (
    gaussian_kl,
    gaussian_log_prob,
    posterior_mean_from_eps,
    q_posterior,
    q_sample,
    q_step,
    sigma2,
)
from minidiff.nn.toy import ToyMLP
from minidiff.samplers import ddpm_sample
from minidiff.schedule import Schedule
from minidiff.training.toy import train_toy

F64 = torch.float64  # the derivation checks run in float64, to round-off
T = 1000
TRAIN_STEPS = 4000 if FAST else 12000
TRAIN_LR = 2e-2  # train_toy's default: recognisable moons in 4000 steps (cosine-decayed to 5%)
N_MC = 50_000 if FAST else 400_000  # Monte Carlo draws for the derivation checks
N_SAMPLES = 1000 if FAST else 4000  # DDPM samples of the toy model
N_ELBO = 500 if FAST else 4000  # held-out examples the toy's bound is evaluated on


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# %% [markdown]
# ## 1. The model
#
# A VAE has one latent $z$, an encoder $q_\phi(z \mid x)$ and a decoder $p_\theta(x \mid z)$. A *Markov
# hierarchical* VAE has a chain of latents $x_1, \dots, x_T$, each talking only to its neighbours:
#
# $$p_\theta(x_{0:T}) = p(x_T) \prod_{t=1}^T p_\theta(x_{t-1} \mid x_t), \qquad
#   q(x_{1:T} \mid x_0) = \prod_{t=1}^T q(x_t \mid x_{t-1}).$$
#
# DDPM is this model with three restrictions:
#
# 1. every latent has the data's dimension $D$;
# 2. the encoder is **not learned**: $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\, x_{t-1}, \beta_t I)$,
#    $\alpha_t = 1 - \beta_t$ (eq. 2), for a fixed variance schedule $\beta_1, \dots, \beta_T$;
# 3. the schedule makes $q(x_T \mid x_0) \approx \mathcal N(0, I) = p(x_T)$, the prior.
#
# Only the decoder $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$ is learned.
#
# **Indexing.** `minidiff` schedule tensors have length $T+1$ and index 0 is the data: `beta[0] = 0`,
# `alpha_bar[0] = 1`, so `alpha_bar[t]` is $\bar\alpha_t = \prod_{s=1}^t \alpha_s$ for the paper's $t$.

# %%
lin, cos = Schedule.linear(T), Schedule.cosine(T)
# alpha_bar_t = prod_{s=1}^t (1 - beta_s); alpha_bar_0 = 1 is the empty product
assert_close(torch.cumprod(1 - lin.beta, dim=0), lin.alpha_bar)
for name, s in [("linear", lin), ("cosine", cos)]:
    print(f"{name}: beta_1 = {s.beta[1]:.1e}, beta_T = {s.beta[T]:.3f}, alpha_bar_T = {s.alpha_bar[T]:.1e}")

# %%
t_axis = torch.arange(1, T + 1)
fig, ax = plt.subplots(1, 3, figsize=(13, 3.2))
for name, s in [("linear", lin), ("cosine", cos)]:
    ax[0].semilogy(t_axis, s.beta[1:], label=name)
    ax[1].plot(t_axis, s.alpha_bar[1:], label=name)
    ax[2].semilogy(t_axis, s.alpha_bar[1:] / (1 - s.alpha_bar[1:]), label=name)
for axis, title in zip(ax, [r"$\beta_t$", r"$\bar\alpha_t$", r"SNR $\bar\alpha_t / (1 - \bar\alpha_t)$"], strict=True):
    axis.set_title(title)
    axis.set_xlabel("t")
    axis.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# One encoder step, eq. 2, by reparameterisation:
#
# $$x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I).$$
#
# Why $\sqrt{\alpha_t}$: if $\operatorname{Var} x_{t-1} = 1$ then $\operatorname{Var} x_t = \alpha_t + \beta_t = 1$.
# The chain keeps the scale fixed while it trades signal for noise ("variance preserving").

# %%
def forward_step(sched: Schedule, x_prev: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps                                  (eq. 2)
    return sched.alpha[t].sqrt() * x_prev + sched.beta[t].sqrt() * eps


x0_moons = two_moons(2000, gen(1)).to(F64)  # (N, 2)
show_t = [0, 10, 50, 100, 250, 1000]
x, snapshots, g = x0_moons, {0: x0_moons}, gen(2)
for t in range(1, T + 1):
    eps = torch.randn(x.shape, generator=g, dtype=F64)
    x_next = forward_step(lin, x, t, eps)
    assert_close(x_next, q_step(lin, x, torch.full((len(x),), t), eps))
    x = x_next
    if t in show_t:
        snapshots[t] = x

fig, ax = plt.subplots(1, len(show_t), figsize=(15, 2.8))
for axis, t in zip(ax, show_t, strict=True):
    axis.scatter(*snapshots[t].T, s=1, alpha=0.4)
    axis.set_title(f"t = {t}, " + r"$\bar\alpha_t$" + f" = {lin.alpha_bar[t]:.3f}")
    axis.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The marginal $q(x_t \mid x_0)$
#
# **Claim (eq. 4).** $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$, i.e.
# $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$.
#
# **Proof by induction.** For $t = 1$ it is eq. 2, since $\bar\alpha_1 = \alpha_1$ and $1 - \bar\alpha_1 = \beta_1$.
# Suppose $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\, x_0 + \sqrt{1 - \bar\alpha_{t-1}}\, \bar\epsilon$ with
# $\bar\epsilon \sim \mathcal N(0, I)$. One more step with a fresh, independent $\epsilon$:
#
# $$x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon
#       = \sqrt{\alpha_t \bar\alpha_{t-1}}\, x_0
#       + \underbrace{\sqrt{\alpha_t (1 - \bar\alpha_{t-1})}\, \bar\epsilon + \sqrt{1 - \alpha_t}\, \epsilon}_{
#         \text{sum of independent zero-mean Gaussians}}.$$
#
# The bracket is Gaussian with variance $\alpha_t(1 - \bar\alpha_{t-1}) + 1 - \alpha_t = 1 - \alpha_t\bar\alpha_{t-1}
# = 1 - \bar\alpha_t$, and $\sqrt{\alpha_t \bar\alpha_{t-1}} = \sqrt{\bar\alpha_t}$. $\square$
#
# So training never has to run the chain: any $x_t$ costs one line (Algorithm 1).

# %%
def marginal_sample(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    ab = sched.alpha_bar[t].view(-1, *[1] * (x0.ndim - 1))  # (B, 1, ...)
    # x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps                        (eq. 4)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


t = torch.randint(1, T + 1, (len(x0_moons),), generator=gen(3))
eps = torch.randn(x0_moons.shape, generator=gen(4), dtype=F64)
assert_close(marginal_sample(lin, x0_moons, t, eps), q_sample(lin, x0_moons, t, eps))

# The induction as a recursion: mean coefficient c_t = sqrt(alpha_t) c_{t-1}, variance v_t = alpha_t v_{t-1} + beta_t.
c, v = torch.ones(T + 1, dtype=F64), torch.zeros(T + 1, dtype=F64)
for s in range(1, T + 1):
    c[s], v[s] = lin.alpha[s].sqrt() * c[s - 1], lin.alpha[s] * v[s - 1] + lin.beta[s]
assert_close(c, lin.alpha_bar.sqrt(), rtol=0, atol=1e-12)
assert_close(v, 1 - lin.alpha_bar, rtol=0, atol=1e-12)
print("eq. 4 holds: one-shot sampling = the library's q_sample; the recursion matches to 1e-12")

# %% [markdown]
# Monte Carlo: run `N_MC` one-dimensional chains from $x_0 = 0.7$ with the single-step `q_step` and compare
# the histogram of $x_t$ with the density of eq. 4. The sample mean and variance must be within 5 standard errors:
# $\mathrm{SE}(\text{mean}) = \sqrt{(1-\bar\alpha_t)/N}$, $\mathrm{SE}(\text{var}) = (1-\bar\alpha_t)\sqrt{2/(N-1)}$.

# %%
x0_val, check_t = 0.7, (10, 100, 300)
x, g = torch.full((N_MC,), x0_val, dtype=F64), gen(5)
fig, ax = plt.subplots(1, len(check_t), figsize=(13, 3))
for s in range(1, max(check_t) + 1):
    x = q_step(lin, x, torch.full((N_MC,), s), torch.randn(N_MC, generator=g, dtype=F64))
    if s in check_t:
        mean, var = lin.alpha_bar[s].sqrt() * x0_val, 1 - lin.alpha_bar[s]
        assert abs(x.mean() - mean) < 5 * (var / N_MC).sqrt()
        assert abs(x.var() - var) < 5 * var * math.sqrt(2 / (N_MC - 1))
        axis = ax[check_t.index(s)]
        axis.hist(x, bins=80, density=True, alpha=0.5, label=f"{N_MC} chains")
        grid = torch.linspace(x.min(), x.max(), 300, dtype=F64)
        axis.plot(grid, gaussian_log_prob(grid, mean, var).exp(), "k", label="eq. 4")
        axis.set_title(f"t = {s}: mean {x.mean():.4f} (exact {mean:.4f}), var {x.var():.4f} (exact {var:.4f})",
                    fontsize=8)
        axis.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The posterior $q(x_{t-1} \mid x_t, x_0)$
#
# Bayes' rule, with the Markov property $q(x_t \mid x_{t-1}, x_0) = q(x_t \mid x_{t-1})$:
#
# $$q(x_{t-1} \mid x_t, x_0) = \frac{q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)}{q(x_t \mid x_0)}
#   \propto \exp\Big(-\frac12\Big[\frac{(x_t - \sqrt{\alpha_t}\, x_{t-1})^2}{\beta_t}
#   + \frac{(x_{t-1} - \sqrt{\bar\alpha_{t-1}}\, x_0)^2}{1 - \bar\alpha_{t-1}}\Big]\Big)$$
#
# (per coordinate). The bracket is quadratic in $x_{t-1}$: $A x_{t-1}^2 - 2 B x_{t-1} + \text{const}$ with
#
# $$A = \frac{\alpha_t}{\beta_t} + \frac{1}{1 - \bar\alpha_{t-1}}
#     = \frac{\alpha_t (1 - \bar\alpha_{t-1}) + \beta_t}{\beta_t (1 - \bar\alpha_{t-1})}
#     = \frac{1 - \bar\alpha_t}{\beta_t (1 - \bar\alpha_{t-1})}, \qquad
#   B = \frac{\sqrt{\alpha_t}}{\beta_t}\, x_t + \frac{\sqrt{\bar\alpha_{t-1}}}{1 - \bar\alpha_{t-1}}\, x_0 .$$
#
# Completing the square, $A x^2 - 2 B x = A (x - B/A)^2 - B^2/A$: a Gaussian with variance $1/A$ and mean
# $B/A$ (eqs. 6-7),
#
# $$\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t, \qquad
#   \tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\, \beta_t}{1 - \bar\alpha_t}\, x_0
#                         + \frac{\sqrt{\alpha_t}\, (1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t .$$
#
# At $t = 1$, $\tilde\beta_1 = 0$: given $x_0$, there is nothing left to guess about $x_0$.

# %%
t = torch.arange(2, T + 1)  # every t at once, one (x_0, x_t) pair each
x0 = torch.randn(len(t), 2, generator=gen(6), dtype=F64)
x_t = torch.randn(len(t), 2, generator=gen(7), dtype=F64)
a, b = lin.alpha[t, None], lin.beta[t, None]  # (T-1, 1)
ab, ab_prev = lin.alpha_bar[t, None], lin.alpha_bar[t - 1, None]

# the completed square: A = alpha_t / beta_t + 1 / (1 - alpha_bar_{t-1}),  B = the linear coefficient
A = a / b + 1 / (1 - ab_prev)
B = a.sqrt() / b * x_t + ab_prev.sqrt() / (1 - ab_prev) * x0
# the simplified closed forms, eqs. 6-7
beta_tilde = (1 - ab_prev) / (1 - ab) * b
mu_tilde = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * x_t

mean_lib, var_lib = q_posterior(lin, x0, x_t, t)
assert_close(B / A, mu_tilde, rtol=0, atol=1e-12)
assert_close(1 / A, beta_tilde, rtol=1e-12, atol=0)
assert_close(mu_tilde, mean_lib, rtol=0, atol=1e-12)
assert_close(beta_tilde, var_lib, rtol=1e-12, atol=0)

# brute force, no algebra: normalise q(x_t | x_{t-1}) q(x_{t-1} | x_0) on a grid of x_{t-1} (one t, 1-D)
ti, x0i, xti = 100, torch.tensor(0.4, dtype=F64), torch.tensor(-0.3, dtype=F64)
m_i, v_i = q_posterior(lin, x0i.view(1), xti.view(1), torch.tensor([ti]))
grid = m_i + v_i.sqrt() * torch.linspace(-12, 12, 200_001, dtype=F64)
log_unnorm = (gaussian_log_prob(xti, lin.alpha[ti].sqrt() * grid, lin.beta[ti])
              + gaussian_log_prob(grid, lin.alpha_bar[ti - 1].sqrt() * x0i, 1 - lin.alpha_bar[ti - 1]))
w = torch.softmax(log_unnorm, 0)
m_num = (w * grid).sum()
v_num = (w * (grid - m_num) ** 2).sum()
assert_close(m_num, m_i[0], rtol=1e-8, atol=1e-10)
assert_close(v_num, v_i[0], rtol=1e-8, atol=0)
print(f"t = {ti}: grid posterior mean {m_num:.8f}, var {v_num:.4e}; eqs. 6-7: {m_i.item():.8f}, {v_i.item():.4e}")

# %% [markdown]
# **The $\epsilon$ form.** Eq. 4 read backwards gives $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon) /
# \sqrt{\bar\alpha_t}$. Substitute it into $\tilde\mu_t$ and use $\sqrt{\bar\alpha_{t-1}} / \sqrt{\bar\alpha_t}
# = 1/\sqrt{\alpha_t}$. The coefficient of $x_t$ becomes
# $\frac{\beta_t + \alpha_t (1 - \bar\alpha_{t-1})}{(1 - \bar\alpha_t)\sqrt{\alpha_t}} = \frac{1}{\sqrt{\alpha_t}}$,
# and that of $\epsilon$ becomes $-\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1 - \bar\alpha_t}}$:
#
# $$\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\, \epsilon\Big)
#   \qquad \text{(eq. 11)}.$$
#
# The decoder uses exactly this form with a network in place of the true noise:
# $\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,
# \epsilon_\theta(x_t, t)\big)$. Learning the decoder = learning to predict the noise.

# %%
eps = torch.randn(len(t), 2, generator=gen(8), dtype=F64)
x_t = q_sample(lin, x0, t, eps)  # now x_t really comes from x_0 and eps
# mu~_t = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)                   (eq. 11)
mu_eps = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
assert_close(mu_eps, q_posterior(lin, x0, x_t, t)[0], rtol=0, atol=1e-10)
assert_close(mu_eps, posterior_mean_from_eps(lin, x_t, t, eps), rtol=0, atol=1e-12)
print("eq. 11 (eps form) = eq. 7 (x_0 form) for every t = 2..T")

# %% [markdown]
# ## 4. The ELBO
#
# **A testbed where everything is exact.** To check each step with numbers we want a model whose
# likelihood $p_\theta(x_0)$ we can compute. Take 1-D data $x_0 \sim \mathcal N(m, s^2)$. Then $x_t$ and
# $\epsilon$ are jointly Gaussian, and the best $\epsilon$-prediction in squared error is the conditional mean
#
# $$\epsilon^*(x_t, t) = \mathbb E[\epsilon \mid x_t] = \frac{\operatorname{Cov}(\epsilon, x_t)}{\operatorname{Var} x_t}
#   (x_t - \mathbb E x_t) = \frac{\sqrt{1 - \bar\alpha_t}}{\bar\alpha_t s^2 + 1 - \bar\alpha_t}
#   (x_t - \sqrt{\bar\alpha_t}\, m).$$
#
# It is affine in $x_t$, so $\mu_\theta(x_t) = \frac{1}{\sqrt{\alpha_t}}\big((1 - k_t) x_t + k_t \sqrt{\bar\alpha_t}\,
# m\big)$ with $k_t = \beta_t / (\bar\alpha_t s^2 + 1 - \bar\alpha_t)$, and every decoder step is linear-Gaussian.
# Pushing the prior $\mathcal N(0, 1)$ through the chain (mean $\mapsto$ affine map of the mean, variance
# $\mapsto (1-k_t)^2/\alpha_t \cdot$ variance $+ \sigma_t^2$) gives $p_\theta(x_0) = \mathcal N(M, V)$ exactly.
# We use $\sigma_t^2 = \beta_t$ (the library default) and a short cosine schedule, $T = 10$, so gaps are visible.

# %%
M_DATA, S_DATA = 0.3, 0.5
small = Schedule.cosine(10)


def optimal_eps(sched: Schedule, m: float = M_DATA, s: float = S_DATA):
    """The Bayes-optimal eps-model for x_0 ~ N(m, s^2): an eps-model callable (x_t, t, context) -> eps."""
    def eps_model(x_t, t, context=None):
        ab = sched.at("alpha_bar", t, x_t)
        # E[eps | x_t] = sqrt(1 - ab_t) (x_t - sqrt(ab_t) m) / (ab_t s^2 + 1 - ab_t)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
    return eps_model


def model_marginal(sched: Schedule, var: str = "beta", m: float = M_DATA, s: float = S_DATA):
    """(M, V) of p_theta(x_0) = N(M, V) for the optimal eps-model: N(0, 1) pushed through x_T -> ... -> x_0."""
    s2, mean, v = sigma2(sched, var), torch.zeros((), dtype=F64), torch.ones((), dtype=F64)
    for t in range(sched.T, 0, -1):
        a, ab = sched.alpha[t], sched.alpha_bar[t]
        k = sched.beta[t] / (ab * s**2 + 1 - ab)
        # x_{t-1} = ((1 - k) x_t + k sqrt(ab) m) / sqrt(alpha_t) + sigma_t z
        mean, v = ((1 - k) * mean + k * ab.sqrt() * m) / a.sqrt(), (1 - k) ** 2 / a * v + s2[t]
    return mean, v


M_model, V_model = model_marginal(small)
# check against Algorithm 2 run on the same model; ddpm_sample adds no noise at t = 1, hence V - sigma_1^2
x_gen = ddpm_sample(optimal_eps(small), small, torch.randn(N_MC, 1, generator=gen(9), dtype=F64), generator=gen(10))
V_sampler = V_model - sigma2(small)[1]
assert abs(x_gen.mean() - M_model) < 5 * (V_sampler / N_MC).sqrt()
assert abs(x_gen.var() - V_sampler) < 5 * V_sampler * math.sqrt(2 / (N_MC - 1))

nll_model = 0.5 * torch.log(2 * math.pi * V_model) + (S_DATA**2 + (M_DATA - M_model) ** 2) / (2 * V_model)
entropy = 0.5 * math.log(2 * math.pi * math.e * S_DATA**2)
print(f"p_theta(x_0) = N({M_model:.4f}, {V_model:.4f}); data N({M_DATA}, {S_DATA**2})")
print(f"E_data[-log p_theta(x_0)] = {nll_model:.4f} nats  >=  data entropy {entropy:.4f} nats")

# %% [markdown]
# **Step 1: Jensen.** The likelihood is an integral over all latents, i.e. an expectation under the encoder:
#
# $$-\log p_\theta(x_0) = -\log \int p_\theta(x_{0:T})\, dx_{1:T}
#   = -\log \mathbb E_{q(x_{1:T} \mid x_0)}\Big[\underbrace{\frac{p_\theta(x_{0:T})}{q(x_{1:T} \mid x_0)}}_{w}\Big]
#   \le \mathbb E_q[-\log w] =: L,$$
#
# because $-\log$ is convex. The gap is $\mathrm{KL}(q(x_{1:T} \mid x_0) \,\|\, p_\theta(x_{1:T} \mid x_0))$.
#
# **Step 2: the Markov factorisations** turn $\log w$ into a sum over steps:
#
# $$L = \mathbb E_q\Big[-\log p(x_T) - \sum_{t=1}^T \log \frac{p_\theta(x_{t-1} \mid x_t)}{q(x_t \mid x_{t-1})}\Big].$$
#
# Check for one $x_0$: with $K$ forward trajectories, $-\log \frac1K\sum_k w_k \to -\log p_\theta(x_0)$ (the
# equality before Jensen; 5 delta-method SEs), while the average of $-\log w_k$ stays above it.

# %%
def forward_trajectories(sched: Schedule, x0: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """[x_0, x_1, ..., x_T], one chain per entry of x0, drawn from the encoder q(x_{1:T} | x_0)."""
    xs = [x0]
    for t in range(1, sched.T + 1):
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        xs.append(q_step(sched, xs[-1], torch.full(x0.shape[:1], t), eps))
    return xs


def log_w(sched: Schedule, eps_model, xs: list[torch.Tensor], var: str = "beta") -> torch.Tensor:
    """log p_theta(x_{0:T}) - log q(x_{1:T} | x_0) along each trajectory (step 2), shape (K, 1)."""
    s2, T_ = sigma2(sched, var), sched.T
    out = gaussian_log_prob(xs[T_], 0.0, 1.0)  # log p(x_T)
    for t in range(1, T_ + 1):
        tt = torch.full(xs[0].shape[:1], t)
        mu_theta = posterior_mean_from_eps(sched, xs[t], tt, eps_model(xs[t], tt))
        out = out + gaussian_log_prob(xs[t - 1], mu_theta, s2[t])  # log p_theta(x_{t-1} | x_t)
        out = out - gaussian_log_prob(xs[t], sched.alpha[t].sqrt() * xs[t - 1], sched.beta[t])  # log q(x_t|x_{t-1})
    return out


x0_one = torch.full((N_MC, 1), 1.0, dtype=F64)  # K = N_MC trajectories from the same x_0 = 1
xs = forward_trajectories(small, x0_one, gen(11))
lw = log_w(small, optimal_eps(small), xs)
nll_exact = -gaussian_log_prob(torch.tensor(1.0, dtype=F64), M_model, V_model)
nll_is = -(torch.logsumexp(lw, 0) - math.log(N_MC))  # -log (1/K) sum_k w_k
se_is = (lw - lw.max()).exp().std() / (lw - lw.max()).exp().mean() / math.sqrt(N_MC)
print(f"-log p_theta(x_0 = 1): exact {nll_exact:.4f}, importance-sampled {nll_is.item():.4f} (SE {se_is:.4f}), "
      f"E_q[-log w] = {-lw.mean():.4f} (the bound)")
assert abs(nll_is - nll_exact) < 5 * se_is
assert -lw.mean() > nll_exact

# %% [markdown]
# **Step 3: Bayes.** The encoder's transitions $q(x_t \mid x_{t-1})$ point the wrong way to be compared with the
# decoder's $p_\theta(x_{t-1} \mid x_t)$. For $t \ge 2$ turn them around, conditioning on $x_0$ (free, by Markov):
#
# $$q(x_t \mid x_{t-1}) = q(x_t \mid x_{t-1}, x_0)
#   = \frac{q(x_{t-1} \mid x_t, x_0)\, q(x_t \mid x_0)}{q(x_{t-1} \mid x_0)} .$$
#
# The $t = 1$ term stays as it is: its posterior $q(x_0 \mid x_1, x_0)$ would be a point mass. This identity holds
# at *every* point, so we check it at random points, not samples.

# %%
t = torch.arange(2, T + 1)
x0, x_prev, x_t = (torch.randn(len(t), generator=gen(seed), dtype=F64) for seed in (12, 13, 14))
lhs = gaussian_log_prob(x_t, lin.alpha[t].sqrt() * x_prev, lin.beta[t])  # log q(x_t | x_{t-1})
mean, var = q_posterior(lin, x0, x_t, t)
rhs = (gaussian_log_prob(x_prev, mean, var)  # log q(x_{t-1} | x_t, x_0)
       + gaussian_log_prob(x_t, lin.alpha_bar[t].sqrt() * x0, 1 - lin.alpha_bar[t])  # + log q(x_t | x_0)
       - gaussian_log_prob(x_prev, lin.alpha_bar[t - 1].sqrt() * x0, 1 - lin.alpha_bar[t - 1]))  # - log q(x_{t-1}|x_0)
assert_close(lhs, rhs, rtol=1e-9, atol=1e-9)
print("Bayes' rewriting holds pointwise for t = 2..T")

# %% [markdown]
# **Step 4: telescoping.** After substituting, the ratios $q(x_{t-1} \mid x_0) / q(x_t \mid x_0)$ telescope,
# $\sum_{t=2}^T \log \frac{q(x_{t-1} \mid x_0)}{q(x_t \mid x_0)} = \log \frac{q(x_1 \mid x_0)}{q(x_T \mid x_0)}$,
# and the $q(x_1 \mid x_0)$ cancels the one left in the $t = 1$ term:
#
# $$L = \mathbb E_q\Big[\underbrace{\log\frac{q(x_T \mid x_0)}{p(x_T)}}_{\to L_T}
#   + \sum_{t=2}^T \underbrace{\log\frac{q(x_{t-1} \mid x_t, x_0)}{p_\theta(x_{t-1} \mid x_t)}}_{\to L_{t-1}}
#   \underbrace{- \log p_\theta(x_0 \mid x_1)}_{\to L_0}\Big].$$
#
# Again an identity per trajectory: on the very same trajectories the new sum equals $-\log w$ to round-off.

# %%
s2_small = sigma2(small)
rewritten = (gaussian_log_prob(xs[10], small.alpha_bar[10].sqrt() * xs[0], 1 - small.alpha_bar[10])
             - gaussian_log_prob(xs[10], 0.0, 1.0))  # log q(x_T | x_0) / p(x_T)
for t in range(1, 11):
    tt = torch.full((N_MC,), t)
    mu_theta = posterior_mean_from_eps(small, xs[t], tt, optimal_eps(small)(xs[t], tt))
    if t >= 2:
        mean, var = q_posterior(small, xs[0], xs[t], tt)
        rewritten += gaussian_log_prob(xs[t - 1], mean, var) - gaussian_log_prob(xs[t - 1], mu_theta, s2_small[t])
    else:
        rewritten -= gaussian_log_prob(xs[0], mu_theta, s2_small[1])  # -log p_theta(x_0 | x_1)
assert_close(rewritten, -lw, rtol=1e-9, atol=1e-9)
print("telescoped form = -log w on every trajectory")

# %% [markdown]
# **Step 5: expectations become KLs.** Each bracket depends on few variables, so integrate out the rest
# (eq. 5):
#
# $$L_T = \mathrm{KL}(q(x_T \mid x_0) \,\|\, p(x_T)), \quad
#   L_{t-1} = \mathbb E_{q(x_t \mid x_0)} \mathrm{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t)), \quad
#   L_0 = \mathbb E_{q(x_1 \mid x_0)}[-\log p_\theta(x_0 \mid x_1)].$$
#
# Between Gaussians the KL is closed form, per coordinate:
#
# $$\mathrm{KL}(\mathcal N(\mu_1, v_1) \,\|\, \mathcal N(\mu_2, v_2))
#   = \mathbb E_1[\log \mathcal N_1 - \log \mathcal N_2]
#   = \frac12\Big(\log\frac{v_2}{v_1} + \frac{v_1 + (\mu_1 - \mu_2)^2}{v_2} - 1\Big).$$
#
# The KL form needs only $x_0$ and one $x_t$ per term, so any single $t$ can be evaluated on its own: that is
# what lets training (section 5) pick one random $t$ per example instead of running whole chains.

# %%
def kl_inline(mu1, v1, mu2, v2):
    # KL( N(mu1, v1) || N(mu2, v2) ) = 0.5 (log(v2 / v1) + (v1 + (mu1 - mu2)^2) / v2 - 1)
    return 0.5 * (torch.log(v2 / v1) + (v1 + (mu1 - mu2) ** 2) / v2 - 1)


mu1, mu2 = torch.randn(2, 100, generator=gen(15), dtype=F64)
v1, v2 = torch.rand(2, 100, generator=gen(16), dtype=F64) + 0.1
assert_close(kl_inline(mu1, v1, mu2, v2), gaussian_kl(mu1, v1, mu2, v2))
z = 0.3 + math.sqrt(0.5) * torch.randn(N_MC, generator=gen(17), dtype=F64)  # KL by Monte Carlo, 5 SE
log_ratio = gaussian_log_prob(z, 0.3, 0.5) - gaussian_log_prob(z, -0.2, 1.7)
kl = gaussian_kl(torch.tensor(0.3, dtype=F64), 0.5, torch.tensor(-0.2, dtype=F64), 1.7)
assert abs(log_ratio.mean() - kl) < 5 * log_ratio.std() / math.sqrt(N_MC)

# The whole bound three ways, for x_0 drawn from the data: (a) -log w on full trajectories, (b) elbo_terms (KLs)
x0_data = M_DATA + S_DATA * torch.randn(N_MC, 1, generator=gen(18), dtype=F64)
bound_traj = -log_w(small, optimal_eps(small), forward_trajectories(small, x0_data, gen(19)))[:, 0]
terms = elbo_terms(optimal_eps(small), small, x0_data, discrete=False, generator=gen(24))


def se(x: torch.Tensor) -> float:
    """Standard error of the mean of x."""
    return x.std().item() / math.sqrt(len(x))


print(f"bound, trajectories (-log w): {bound_traj.mean():.4f} +- {se(bound_traj):.4f} nats")
print(f"bound, elbo_terms (KL form):  {terms['nats'].mean():.4f} +- {se(terms['nats']):.4f} nats")
print(f"exact model NLL:              {nll_model:.4f} nats")
print(f"data entropy:                 {entropy:.4f} nats")
assert abs(bound_traj.mean() - terms["nats"].mean()) < 5 * math.hypot(se(bound_traj), se(terms["nats"]))
assert terms["nats"].mean() - 5 * se(terms["nats"]) > nll_model > entropy

# %% [markdown]
# So $\text{bound} \ge -\log p_\theta \ge$ entropy, as promised: the first gap is the encoder-vs-true-posterior
# KL of step 1, the second is $\mathrm{KL}(\text{data} \,\|\, p_\theta)$. Both shrink as $T$ grows (exercise 2).
#
# **$L_{t-1}$ is a weighted noise-prediction error.** With $q = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$ and
# $p_\theta = \mathcal N(\mu_\theta, \sigma_t^2 I)$ in $D$ dimensions, the KL formula gives
#
# $$L_{t-1} = \underbrace{\frac D2\Big(\log\frac{\sigma_t^2}{\tilde\beta_t}
#   + \frac{\tilde\beta_t}{\sigma_t^2} - 1\Big)}_{C_t,\ \text{no } \theta}
#   + \frac{\mathbb E\|\tilde\mu_t - \mu_\theta\|^2}{2\sigma_t^2}, \qquad
#   \tilde\mu_t - \mu_\theta = \frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1 - \bar\alpha_t}}(\epsilon_\theta - \epsilon)$$
#
# by eq. 11 for both means at the same $x_t$. Hence (eq. 12)
#
# $$L_{t-1} = C_t + \lambda_t\, \mathbb E\|\epsilon - \epsilon_\theta(x_t, t)\|^2, \qquad
#   \lambda_t = \frac{\beta_t^2}{2 \sigma_t^2 \alpha_t (1 - \bar\alpha_t)} .$$
#
# Ho et al. drop $\lambda_t$ and $C_t$ and draw $t$ uniformly: $L_\text{simple} = \mathbb E_{t, x_0, \epsilon}
# \|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, t)\|^2$ (eq. 14).
# Relative to the bound, this down-weights the small-$t$ terms (tiny noise, an easy denoising task) and gives
# more weight to the large-$t$ ones, where the network has to invent structure. That trades likelihood for
# sample quality: they report FID 3.17 and $\le 3.75$ bits/dim with $L_\text{simple}$, against a much worse
# FID and $\le 3.70$ bits/dim when training on the true bound (their Tables 1-2).

# %%
D = 2
eps_theta = lambda x, t, c: torch.tanh(1.3 * x) + 0.01 * t.view(-1, 1).to(x)  # any eps-model will do
t = torch.arange(2, T + 1, 7)
x0 = torch.rand(len(t), D, generator=gen(21), dtype=F64) * 2 - 1
eps = torch.randn(len(t), D, generator=gen(22), dtype=F64)
mse = (eps - eps_theta(q_sample(lin, x0, t, eps), t, None)).pow(2).sum(1)  # ||eps - eps_theta||^2
fig, ax = plt.subplots(1, 2, figsize=(12, 3.2))
for var in ("beta", "beta_tilde"):
    s2 = sigma2(lin, var)
    # lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))                     (eq. 12)
    lam = lin.beta**2 / (2 * s2 * lin.alpha * (1 - lin.alpha_bar))
    assert_close(lam[2:], lambda_t(lin, var)[2:])
    bt = lin.beta_tilde[t]
    C = D / 2 * (torch.log(s2[t] / bt) + bt / s2[t] - 1)  # C_t, zero when sigma_t^2 = beta~_t
    assert_close(L_t_minus_1(eps_theta, lin, x0, t, eps, var=var), C + lam[t] * mse, rtol=1e-10, atol=1e-12)
    ax[0].semilogy(range(2, T + 1), lam[2:], label=rf"$\sigma_t^2$ = {var}")
    ax[1].semilogy(range(2, T + 1), lam[2:] / lam[2:].mean(), label=rf"$\sigma_t^2$ = {var}")
    print(f"sigma^2 = {var:10s}: lambda_2 = {lam[2]:.3f}, lambda_T = {lam[T]:.4f}, ratio {lam[2] / lam[T]:.0f}")
ax[1].axhline(1, color="k", ls="--", label=r"$L_\mathrm{simple}$ (uniform)")
ax[0].set_title(r"$\lambda_t$: the bound's weight on $\|\epsilon - \epsilon_\theta\|^2$")
ax[1].set_title("relative weight over t (mean 1)")
for axis in ax:
    axis.set_xlabel("t")
    axis.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. A tiny DDPM on two moons
#
# **Algorithm 1** (training): repeat { $x_0 \sim$ data, $t \sim \mathcal U\{1..T\}$, $\epsilon \sim \mathcal N(0, I)$,
# gradient step on $\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, t)\|^2$
# }. `train_toy` is that loop around `L_simple` and a 3-layer MLP `ToyMLP`. First the loss inline against the library,
# on one batch with the same $t$ and $\epsilon$:

# %%
data = two_moons(20_000, gen(30))  # float32, like any model input
net = ToyMLP()
x0, t = data[:256], torch.randint(1, T + 1, (256,), generator=gen(31))
eps = torch.randn(x0.shape, generator=gen(32))
ab = lin.alpha_bar[t].float()[:, None]  # (B, 1)
with torch.no_grad():
    # || eps - eps_theta( sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t ) ||^2, averaged over the D coordinates  (eq. 14)
    loss_inline = (eps - net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t)).pow(2).mean(1)
    assert_close(loss_inline, L_simple(net, lin, x0, t=t, eps=eps))

start = time.perf_counter()
model, losses = train_toy(data, lin, steps=TRAIN_STEPS, lr=TRAIN_LR, progress=False)
print(f"{TRAIN_STEPS} steps of Algorithm 1 in {time.perf_counter() - start:.1f} s; "
      f"L_simple over the last 100 steps: {sum(losses[-100:]) / 100:.3f}")
plt.figure(figsize=(5, 3))
plt.plot(torch.tensor(losses).view(-1, 50).mean(1))
plt.xlabel("step / 50")
plt.title(r"$L_\mathrm{simple}$ (mean of 50 steps)")
plt.show()

# %% [markdown]
# **Algorithm 2** (sampling) is ancestral sampling from the decoder chain, with $\mu_\theta$ in the $\epsilon$ form:
#
# $$x_T \sim \mathcal N(0, I), \qquad x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 -
#   \bar\alpha_t}}\, \epsilon_\theta(x_t, t)\Big) + \sigma_t z, \quad z \sim \mathcal N(0, I) \text{ for } t > 1,
#   \ z = 0 \text{ at } t = 1.$$
#
# `ddpm_sample` calls `callback` after every step; we use it to recompute each step inline (with the same
# injected noise) and to keep a few snapshots of the reverse trajectory.

# %%
x_T = torch.randn(N_SAMPLES, 2, generator=gen(40))
noise = torch.randn(T, N_SAMPLES, 2, generator=gen(41))  # row i is used at t = T - i
reverse_snapshots = {}


def check_step(d: dict) -> None:
    t = d["t"]
    a, b, ab = (float(s[t]) for s in (lin.alpha, lin.beta, lin.alpha_bar))
    z = noise[d["i"]] if t > 1 else torch.zeros_like(d["x_t"])
    # x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps_theta) / sqrt(alpha_t) + sigma_t z, sigma_t^2 = beta_t (Alg. 2)
    x_prev = (d["x_t"] - b / math.sqrt(1 - ab) * d["eps"]) / math.sqrt(a) + math.sqrt(b) * z
    assert_close(x_prev, d["x_prev"])
    if t in (T, 300, 100, 30):
        reverse_snapshots[t] = d["x_t"]


start = time.perf_counter()
samples = ddpm_sample(model, lin, x_T, noise=noise, callback=check_step)
print(f"{N_SAMPLES} samples, {T} steps each, in {time.perf_counter() - start:.1f} s")
reverse_snapshots[0] = samples

fig, ax = plt.subplots(1, 6, figsize=(16, 2.9))
ax[0].scatter(*data[:N_SAMPLES].T, s=1, alpha=0.5)
ax[0].set_title("data")
for axis, t in zip(ax[1:], sorted(reverse_snapshots, reverse=True), strict=True):
    axis.scatter(*reverse_snapshots[t].T, s=1, alpha=0.5, color="C1")
    axis.set_title(f"reverse chain, t = {t}" if t else "DDPM samples, t = 0")
for axis in ax:
    axis.set(xlim=(-2, 2), ylim=(-1.6, 1.6), aspect="equal")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The bound, split over $t$.** `elbo_terms` evaluates every term exactly summed over $t$ (one model call per $t$).
# Two-moons points are continuous, so we use the Gaussian density for $L_0$ (`discrete=False`): the bound is on
# $-\log p_\theta(x_0)$ as a *density* in nats, which can be negative. $L_0$ is strongly negative here because
# $\sigma_1^2 = \beta_1 = 10^{-4}$ pins $x_0$ to within about $0.01$ of $\mu_\theta(x_1)$. That is the paper's
# decoder variance and the default; `decoder_var="beta_tilde_2"` uses $\tilde\beta_2$ instead, as Ho et al.'s code does.

# %%
held_out = two_moons(N_ELBO, gen(50))
with torch.no_grad():
    terms = elbo_terms(model, lin, held_out, discrete=False, generator=gen(51))
L_t_mean = terms["L_t"].mean(0)  # (T-1,): column t-2 holds L_{t-1}
bound = terms["nats"].mean().item()
print(f"L_T = {terms['L_T'].mean():.2e}, sum_t L_(t-1) = {terms['L_t'].sum(1).mean():.3f}, "
      f"L_0 = {terms['L_0'].mean():.3f} nats")
print(f"bound: {bound:.3f} +- {se(terms['nats']):.3f} nats per example ({terms['bits_per_dim'].mean():.3f} bits/dim)")

fig, ax = plt.subplots(1, 2, figsize=(13, 3.4), width_ratios=[2, 1])
ax[0].semilogy(range(2, T + 1), L_t_mean, lw=1, label=r"$L_{t-1}$, mean over examples")
ax[0].semilogy([T], [terms["L_T"].mean().item()], "rv", label=rf"$L_T$ = {terms['L_T'].mean():.1e}")
ax[0].axvline(1, color="g", ls=":", label=rf"$L_0$ = {terms['L_0'].mean():.2f} (negative: off this log axis)")
ax[0].set_xlabel("t")
ax[0].set_ylabel("nats")
ax[0].legend()
parts = {"L_T": terms["L_T"].mean(), "sum L_(t-1)": terms["L_t"].sum(1).mean(), "L_0": terms["L_0"].mean(),
         "bound": bound}
ax[1].bar(list(parts), [float(p) for p in parts.values()], color=["C3", "C0", "C2", "k"])
ax[1].axhline(0, color="k", lw=0.5)
ax[1].set_title("the bound, nats per example")
fig.tight_layout()
plt.show()

# %% [markdown]
# **How good is that?** For two moons we know the true density: a point uniform on one of two half circles of
# radius $1/1.1$ plus $\mathcal N(0, 0.05^2 I)$ noise (see `minidiff.datasets.toy.two_moons`), so
# $p(x) = \frac12 \sum_\text{arcs} \frac1\pi \int_0^\pi \mathcal N(x; c(u), 0.05^2 I)\, du$, a 1-D integral we do
# on a grid. Its entropy $H = \mathbb E[-\log p(x)]$ is the floor for any model's expected NLL, so the bound
# minus $H$ is the total slack: the Jensen gap plus $\mathrm{KL}(\text{data} \,\|\, p_\theta)$.

# %%
def two_moons_log_density(x: torch.Tensor, n_u: int = 2000, noise: float = 0.05) -> torch.Tensor:
    u = (torch.arange(n_u, dtype=F64) + 0.5) * math.pi / n_u  # midpoint rule on [0, pi]
    upper = torch.stack([torch.cos(u) - 0.5, torch.sin(u) - 0.25], 1) / 1.1  # (n_u, 2) arc centres
    lower = torch.stack([0.5 - torch.cos(u), 0.25 - torch.sin(u)], 1) / 1.1
    centres = torch.cat([upper, lower])  # (2 n_u, 2), each of weight 1 / (2 n_u)
    out = []
    for chunk in x.to(F64).split(2000):
        log_k = -torch.cdist(chunk, centres) ** 2 / (2 * noise**2) - math.log(2 * math.pi * noise**2)
        out.append(torch.logsumexp(log_k, 1) - math.log(2 * n_u))
    return torch.cat(out)


gx, gy = torch.meshgrid(torch.linspace(-1.8, 1.8, 181, dtype=F64), torch.linspace(-1.4, 1.4, 141, dtype=F64),
                        indexing="ij")
cell = (3.6 / 180) * (2.8 / 140)
mass = two_moons_log_density(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().sum() * cell
assert abs(mass - 1) < 1e-3, mass  # it is a density
nll_true = -two_moons_log_density(two_moons(20_000 if FAST else 100_000, gen(52)))
H = nll_true.mean().item()
print(f"two-moons entropy H = {H:.3f} +- {se(nll_true):.3f} nats; the DDPM bound {bound:.3f} nats "
      f"is {bound - H:.2f} nats above it")

# %% [markdown]
# ## 6. Exercises
#
# 1. Switch $\sigma_t^2$ to $\tilde\beta_t$ (`var="beta_tilde"` in `elbo_terms` and `ddpm_sample`). Which terms of
#    the bound change? Explain the change in $L_0$ from $\sigma_1^2 = \tilde\beta_2 \approx \beta_1/2$ instead of
#    $\beta_1$, and why $C_t = 0$ now.
# 2. In the Gaussian testbed, compute the bound (`elbo_terms`) and the exact model NLL for $T = 10, 100, 1000$.
#    How fast does the gap close? (Use enough samples, or derive the expected bound in closed form: every term is a
#    Gaussian integral.)
# 3. Show that $L_\text{simple}$ of the optimal model is $\mathbb E_t \operatorname{Var}(\epsilon \mid x_t)$, not 0.
#    Estimate that floor for two moons from the training curve: what does a plateau at that value tell you?
# 4. Train the toy with the true weights: replace the loss in `train_toy` by $\lambda_t \|\epsilon -
#    \epsilon_\theta\|^2$ (with $t \sim \mathcal U\{2..T\}$). Compare the bound and the samples with the
#    $L_\text{simple}$ model.
# 5. Repeat section 5 with `Schedule.cosine(T)`. Where along $t$ does the bound's mass move, and why?
# 6. Why is $L_0$ not a KL like the other terms? What goes wrong in step 3 at $t = 1$?
