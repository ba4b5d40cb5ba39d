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
# # Lecture 2: DDIM, one trained model and a whole family of samplers
#
# Song, Meng & Ermon (2021), *Denoising Diffusion Implicit Models*; "eq. N" below is their equation N.
#
# **Notation warning.** The DDIM paper writes $\alpha_t$ for what DDPM (and `minidiff`) call $\bar\alpha_t =
# \prod_{s \le t} (1 - \beta_s)$. We keep DDPM's symbols throughout: every $\bar\alpha$ below is `alpha_bar`.
#
# 1. DDPM's loss only sees the marginals $q(x_t \mid x_0)$: a family $q_\sigma$ of non-Markovian processes with
#    the same marginals.
# 2. The generative step: predicted $x_0$, direction pointing to $x_t$, noise.
# 3. $\eta$: $\eta = 1$ is DDPM, $\eta = 0$ is deterministic. One trained model serves all of them.
# 4. Strided sub-sequences: sampling in 10-50 steps instead of 1000.
# 5. DDIM at $\eta = 0$ is Euler's method on an ODE.
# 6. Experiments: two moons, exact Gaussian oracle, the `shapes` model, wall time.
# 7. Exercises.
#
# As in lecture 1: derive in markdown, re-implement inline, `assert_close` against `minidiff`, then use `minidiff`.

# %% tags=["parameters"]
# FAST = True is the CI-sized run (about 70 s in the test suite, 2 threads).
# FAST = False runs the full-size lecture: more Monte Carlo draws, samples, training and step counts (minutes).
FAST = True
DEVICE = "auto"  # where section 6's shapes model runs: auto (CUDA, else MPS, else CPU; $MINIDIFF_DEVICE overrides),
# cpu, cuda, mps. The 2-D toy and the float64 derivation checks stay on the CPU (their ops take microseconds).

# %%
import inspect
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.testing import assert_close

from minidiff.bench.eta_grid import eta_steps_grid
from minidiff.datasets.toy import two_moons
from minidiff.devices import resolve_device
from minidiff.elbo import lambda_t
from minidiff.gaussian import gaussian_kl, posterior_mean_from_eps, predict_eps, predict_x0, q_posterior
from minidiff.guidance import Guidance, classifier_free_guidance
from minidiff.oracles import gaussian_eps
from minidiff.samplers import ddim_sample, ddim_sigma, ddim_step, ddpm_sample
from minidiff.schedule import SPACINGS, Schedule, timesteps
from minidiff.training import pretrained
from minidiff.training.toy import train_toy

F64 = torch.float64  # derivation checks run in float64, to round-off
T = 1000
sched = Schedule.linear(T)
ab = sched.alpha_bar  # (T+1,) alpha_bar_t, ab[0] = 1
N_MC = 20_000 if FAST else 200_000  # Monte Carlo chains / oracle samples
TOY_STEPS = 4000 if FAST else 12000  # training steps of the two-moons model (4000 = train_toy's default)
N_TOY = 1000 if FAST else 4000  # two-moons samples per (eta, steps) panel
SHAPES_STEPS = (10, 20, 50) if FAST else (10, 20, 50, 100)  # eta_steps_grid columns
SPEED_STEPS = (5, 10, 20, 40) if FAST else (10, 25, 50, 100, 200)
SPEED_BATCH = 2 if FAST else 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# %% [markdown]
# ## 1. A family of processes with DDPM's marginals
#
# Look again at what DDPM trains on (Algorithm 1): $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,
# \epsilon$, one $t$ per example. The loss $L_\text{simple}$ depends on the forward process **only through the
# marginals** $q(x_t \mid x_0)$; the Markov chain $q(x_t \mid x_{t-1})$ that produced them never appears. So any
# other "inference process" with the same marginals leads to the same training problem, but (as we will see) to a
# different generative process.
#
# DDIM (sec. 3.1) defines, for any choice of $\sigma = (\sigma_1, \dots, \sigma_T)$ with $\sigma_t \ge 0$,
#
# $$q_\sigma(x_{1:T} \mid x_0) = q_\sigma(x_T \mid x_0) \prod_{t=2}^T q_\sigma(x_{t-1} \mid x_t, x_0), \qquad
#   q_\sigma(x_T \mid x_0) = \mathcal N(\sqrt{\bar\alpha_T}\, x_0, (1 - \bar\alpha_T) I),$$
#
# a process that runs *backwards* from $x_T$, each step a Gaussian that may look at $x_0$. We want
# $q_\sigma(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$ for every $t$.
#
# **Derivation (Lemma 1).** Try a linear-Gaussian step, $x_{t-1} = a_t x_0 + b_t x_t + \sigma_t z$ with
# $z \sim \mathcal N(0, I)$, and go down by induction from $t = T$. If $x_t = \sqrt{\bar\alpha_t}\, x_0 +
# \sqrt{1 - \bar\alpha_t}\, \epsilon$, then
#
# $$x_{t-1} = (a_t + b_t \sqrt{\bar\alpha_t})\, x_0 + \underbrace{b_t \sqrt{1 - \bar\alpha_t}\, \epsilon
#   + \sigma_t z}_{\text{variance } b_t^2 (1 - \bar\alpha_t) + \sigma_t^2}.$$
#
# Matching mean and variance with $\mathcal N(\sqrt{\bar\alpha_{t-1}}\, x_0, 1 - \bar\alpha_{t-1})$:
#
# $$b_t = \frac{\sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}}{\sqrt{1 - \bar\alpha_t}}, \qquad
#   a_t = \sqrt{\bar\alpha_{t-1}} - b_t \sqrt{\bar\alpha_t},$$
#
# so (eq. 7)
#
# $$q_\sigma(x_{t-1} \mid x_t, x_0) = \mathcal N\Big(\sqrt{\bar\alpha_{t-1}}\, x_0
#   + \sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}\; \frac{x_t - \sqrt{\bar\alpha_t}\, x_0}{\sqrt{1 - \bar\alpha_t}},\;
#   \sigma_t^2 I\Big), \qquad 0 \le \sigma_t^2 \le 1 - \bar\alpha_{t-1}.$$
#
# The fraction is the noise $\epsilon$ that takes $x_0$ to $x_t$: the step keeps a share of that same noise and
# tops the variance up with fresh noise $\sigma_t z$. One $\sigma$ is a free dial per step. By Bayes, the implied
# forward step $q_\sigma(x_t \mid x_{t-1}, x_0)$ is Gaussian but depends on $x_0$: the process is not Markov
# (except for DDPM's $\sigma$, section 3).
#
# First the closed-form argument, at every $t$ and for four choices of $\sigma_t$: zero, half and all of DDPM's
# posterior std $\sqrt{\tilde\beta_t}$, and the largest allowed value $\sqrt{1 - \bar\alpha_{t-1}}$ (then
# $b_t = 0$: $x_{t-1}$ forgets $x_t$ and is a fresh draw from $q(x_{t-1} \mid x_0)$).

# %%
t = torch.arange(2, T + 1)  # t = 2..T (q_sigma(x_{t-1} | x_t, x_0) is defined for t >= 2)
SIGMAS = {  # name -> sigma_t for t = 0..T, float64
    "sigma = 0": torch.zeros(T + 1, dtype=F64),
    "sigma = sqrt(beta~)/2": sched.beta_tilde.sqrt() / 2,
    "sigma = sqrt(beta~) (DDPM)": sched.beta_tilde.sqrt(),
    "sigma = sqrt(1 - ab_{t-1}) (max)": torch.cat([torch.zeros(1, dtype=F64), (1 - ab[:-1]).sqrt()]),
}
for name, sigma in SIGMAS.items():
    s = sigma[t]
    b = (1 - ab[t - 1] - s**2).clamp(min=0).sqrt() / (1 - ab[t]).sqrt()
    a = ab[t - 1].sqrt() - b * ab[t].sqrt()
    # x_{t-1} = a x_0 + b x_t + sigma z with x_t ~ q(x_t | x_0): mean coefficient and variance
    assert_close(a + b * ab[t].sqrt(), ab[t - 1].sqrt(), rtol=0, atol=1e-12)
    assert_close(b**2 * (1 - ab[t]) + s**2, 1 - ab[t - 1], rtol=0, atol=1e-12)
    print(f"{name:34s}: marginals preserved at every t; b_t (weight on x_t) at t = 500: {b[498]:.4f}")


# %% [markdown]
# Now by Monte Carlo: fix $x_0 = 0.7$ (1-D), draw `N_MC` values $x_T \sim q(x_T \mid x_0)$ and run each of the four
# processes all the way down with the inline step below. At several $t$ the sample mean and variance must match
# $\sqrt{\bar\alpha_t}\, x_0$ and $1 - \bar\alpha_t$ within 5 standard errors. The plot shows a few trajectories of
# each process inside the same $\pm 2$ std band of the marginal: same marginals, very different paths.

# %%
def q_sigma_step(x_t: torch.Tensor, x0: torch.Tensor, t: int, sigma: float, z: torch.Tensor) -> torch.Tensor:
    """A draw from q_sigma(x_{t-1} | x_t, x_0), eq. 7."""
    # mean = sqrt(ab_{t-1}) x_0 + sqrt(1 - ab_{t-1} - sigma_t^2) (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t)
    direction = (x_t - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
    return ab[t - 1].sqrt() * x0 + (1 - ab[t - 1] - sigma**2).clamp(min=0).sqrt() * direction + sigma * z


x0_val, check_t, n_show = 0.7, (900, 500, 100, 10), 12
fig, ax = plt.subplots(1, len(SIGMAS), figsize=(16, 3), sharey=True)
for k, (name, sigma) in enumerate(SIGMAS.items()):
    g = gen(100 + k)
    x0 = torch.full((N_MC,), x0_val, dtype=F64)
    x = ab[T].sqrt() * x0 + (1 - ab[T]).sqrt() * torch.randn(N_MC, generator=g, dtype=F64)  # x_T ~ q(x_T | x_0)
    path = [x[:n_show]]
    for s in range(T, 1, -1):  # x_s -> x_{s-1}
        x = q_sigma_step(x, x0, s, sigma[s], torch.randn(N_MC, generator=g, dtype=F64))
        path.append(x[:n_show])
        if s - 1 in check_t:
            mean, var = ab[s - 1].sqrt() * x0_val, 1 - ab[s - 1]
            assert abs(x.mean() - mean) < 5 * (var / N_MC).sqrt(), (name, s - 1)
            assert abs(x.var() - var) < 5 * var * math.sqrt(2 / (N_MC - 1)), (name, s - 1)
    t_axis = torch.arange(T, 0, -1)  # path[i] is x at t = T - i
    ax[k].fill_between(t_axis, ab[t_axis].sqrt() * x0_val - 2 * (1 - ab[t_axis]).sqrt(),
                       ab[t_axis].sqrt() * x0_val + 2 * (1 - ab[t_axis]).sqrt(), color="0.9", label="marginal ± 2 std")
    ax[k].plot(t_axis, torch.stack(path), lw=0.6)
    ax[k].set_title(name, fontsize=9)
    ax[k].set_xlabel("t")
    ax[k].invert_xaxis()
ax[0].legend(fontsize=8, loc="lower left")
fig.tight_layout()
plt.show()
print(f"{N_MC} chains per process: mean and variance at t = {check_t} within 5 SE of q(x_t | x_0) for all four")

# %% [markdown]
# ## 2. The generative step
#
# At sampling time $x_0$ is unknown. DDIM plugs in the model's guess (eq. 9),
#
# $$\hat x_0(x_t) = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}},$$
#
# and samples $p_\theta(x_{t-1} \mid x_t) = q_\sigma(x_{t-1} \mid x_t, \hat x_0(x_t))$. With $x_0 = \hat x_0$
# the fraction $(x_t - \sqrt{\bar\alpha_t}\, \hat x_0) / \sqrt{1 - \bar\alpha_t}$ is exactly $\epsilon_\theta$, so
# eq. 7 becomes eq. 12:
#
# $$x_{t-1} = \underbrace{\sqrt{\bar\alpha_{t-1}}\, \hat x_0(x_t)}_{\text{predicted } x_0}
#   + \underbrace{\sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}\; \epsilon_\theta(x_t, t)}_{\text{direction pointing to }
#   x_t} + \underbrace{\sigma_t z}_{\text{random noise}}.$$
#
# Nothing in the derivation needs the previous timestep to be $t - 1$: any $t_\text{prev} < t$ works (section 4),
# so the inline step takes a pair $(t, t_\text{prev})$. $\sigma_t$ comes from `ddim_sigma` (section 3 derives it).

# %%
def ddim_step_inline(x_t, eps, t: int, t_prev: int, sigma: float, z):
    x0_pred = (x_t - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()  # predicted x_0, eq. 9
    direction = (1 - ab[t_prev] - sigma**2).sqrt() * eps  # direction pointing to x_t
    return ab[t_prev].sqrt() * x0_pred + direction + sigma * z  # eq. 12


x_t, eps, z = (torch.randn(8, 3, generator=gen(k), dtype=F64) for k in (1, 2, 3))
for t_int, t_prev in [(1000, 980), (500, 250), (37, 0), (2, 1)]:
    for eta in (0.0, 0.5, 1.0):
        sigma = ddim_sigma(sched, t_int, t_prev, eta).item()
        assert_close(ddim_step_inline(x_t, eps, t_int, t_prev, sigma, z),
                     ddim_step(sched, x_t, eps, t_int, t_prev, eta, noise=z), rtol=1e-12, atol=1e-12)

# with the TRUE noise, x0_pred = x_0 and the generative step is the inference step q_sigma of section 1
x0 = torch.randn(8, 3, generator=gen(4), dtype=F64)
t_int = 600
x_t = ab[t_int].sqrt() * x0 + (1 - ab[t_int]).sqrt() * eps
eps_true = predict_eps(sched, x_t, torch.full((8,), t_int), x0)
for sigma in SIGMAS.values():
    eta = (sigma[t_int] / sched.beta_tilde[t_int].sqrt()).item()
    if eta <= 1:  # ddim_step takes eta, defined relative to DDPM's sigma (section 3)
        assert_close(ddim_step(sched, x_t, eps_true, t_int, t_int - 1, eta, noise=z),
                     q_sigma_step(x_t, x0, t_int, sigma[t_int], z), rtol=1e-12, atol=1e-12)
print("eq. 12 inline = ddim_step for strided pairs and eta in {0, 0.5, 1}; with the true eps it is q_sigma (eq. 7)")

# %% [markdown]
# ## 3. $\eta$: from DDPM to deterministic DDIM
#
# DDIM parameterises $\sigma$ by one number (eq. 16):
#
# $$\sigma_t(\eta) = \eta\, \sqrt{\frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}}\, \sqrt{1 - \frac{\bar\alpha_t}
#   {\bar\alpha_{t-1}}}.$$
#
# **$\eta = 1$ is DDPM.** With unit steps $\bar\alpha_t / \bar\alpha_{t-1} = \alpha_t$, so $\sigma_t(1)^2 =
# \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t = \tilde\beta_t$, DDPM's posterior variance. The mean
# matches too: $1 - \bar\alpha_{t-1} - \tilde\beta_t = (1 - \bar\alpha_{t-1})\frac{\alpha_t - \bar\alpha_t}{1 -
# \bar\alpha_t} = \frac{\alpha_t (1 - \bar\alpha_{t-1})^2}{1 - \bar\alpha_t}$, so the weight on $x_t$ in eq. 7 is
# $\frac{\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}$, DDPM's eq. 7 coefficient. Then
# $q_\sigma(x_{t-1} \mid x_t, x_0) = q(x_{t-1} \mid x_t, x_0)$ for every $t$, the process is DDPM's Markov chain,
# and the generative step is DDPM's ancestral step with $\sigma_t^2 = \tilde\beta_t$. (DDPM's other choice
# $\sigma_t^2 = \beta_t$ is not a member: with an increasing schedule $\beta_2 > \beta_1 = 1 - \bar\alpha_1$, so it
# breaks the constraint at $t = 2$. DDIM's Table 1 runs it as a separate variant, $\hat\sigma$.)
#
# **Notation.** With unit steps eq. 16 is $\sigma_t(\eta) = \eta \sqrt{\tilde\beta_t}$, so the *variance* is
# $\sigma_t^2 = \eta^2 \tilde\beta_t$. Some lecture notes write the step's noise as $\eta\, \tilde\beta_t$ (with
# $t_\text{prev} = t - 1$): that is a variance, and it agrees with eq. 16 only at $\eta \in \{0, 1\}$.
# `ddim_sigma` returns the std, $\eta \sqrt{\tilde\beta_t}$ (checked below at $\eta = 0.5$).
#
# **$\eta = 0$ is deterministic**: $x_{t-1}$ is a function of $x_t$, so the sample is a function of $x_T$ alone,
# an *implicit* model (hence the name).

# %%
t = torch.arange(1, T + 1)
# sigma_t(eta) = eta sqrt((1 - ab_{t-1}) / (1 - ab_t)) sqrt(1 - ab_t / ab_{t-1})            (eq. 16)
for eta in (0.0, 0.5, 1.0):
    sigma_inline = eta * ((1 - ab[t - 1]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab[t - 1]).sqrt()
    assert_close(sigma_inline, ddim_sigma(sched, t, t - 1, eta), rtol=1e-12, atol=0)
assert_close(ddim_sigma(sched, t, t - 1, 1.0) ** 2, sched.beta_tilde[1:], rtol=1e-12, atol=1e-18)
assert_close(ddim_sigma(sched, t, t - 1, 0.5) ** 2, 0.5**2 * sched.beta_tilde[1:], rtol=1e-12, atol=1e-18)  # eta^2

# eta = 1: the inference step q_sigma (section 1) is DDPM's posterior q(x_{t-1} | x_t, x_0), for t = 2..T
t = torch.arange(2, T + 1)
x0, x_t = (torch.randn(T - 1, 2, generator=gen(k), dtype=F64) for k in (5, 6))
mean_q, var_q = q_posterior(sched, x0, x_t, t)
a_t, a_prev, sigma = ab[t, None], ab[t - 1, None], sched.beta_tilde[t, None].sqrt()  # (T-1, 1)
mean_sigma = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
assert_close(mean_sigma, mean_q, rtol=0, atol=1e-12)  # eq. 7 of DDIM with sigma^2 = beta~ = eqs. 6-7 of DDPM

# eta = 1: the generative step is DDPM's ancestral step mu~(x_t, eps) + sqrt(beta~_t) z, with the same z
t = torch.arange(1, T + 1)
x_t, eps, z = (torch.randn(T, 2, generator=gen(k), dtype=F64) for k in (8, 9, 10))
ddpm_step = posterior_mean_from_eps(sched, x_t, t, eps) + sched.beta_tilde[t, None].sqrt() * z
assert_close(ddim_step(sched, x_t, eps, t, t - 1, eta=1.0, noise=z), ddpm_step, rtol=1e-12, atol=1e-12)

# ... and whole chains: DDIM with eta = 1 on all T steps = ddpm_sample(var="beta_tilde"), same injected noise
oracle = gaussian_eps(sched, torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([[0.25, 0.1], [0.1, 0.16]],
                                                                                   dtype=F64))
x_T, noise = torch.randn(16, 2, generator=gen(11), dtype=F64), torch.randn(T, 16, 2, generator=gen(12), dtype=F64)
assert_close(ddim_sample(oracle, sched, x_T, steps=T, eta=1.0, noise=noise),
             ddpm_sample(oracle, sched, x_T, var="beta_tilde", noise=noise), rtol=0, atol=1e-12)

# eta = 0: the noise is never used; x_0 is a function of x_T
a = ddim_sample(oracle, sched, x_T, steps=50, eta=0.0, generator=gen(13))
assert torch.equal(a, ddim_sample(oracle, sched, x_T, steps=50, eta=0.0, generator=gen(14)))
print("eta = 1: sigma^2 = beta~, q_sigma = DDPM posterior, step and 1000-step chain = DDPM ancestral sampling")
print("eta = 0: the same x_T gives the same sample whatever the noise generator")

# %% [markdown]
# **One trained model for every $\sigma$.** Training a model for $q_\sigma$ means maximising the ELBO of
# $p_\theta$ against $q_\sigma$, $J_\sigma$. DDIM's Theorem 1: for every $\sigma > 0$, $J_\sigma = L_\gamma + C$,
# where $L_\gamma = \sum_t \gamma_t\, \mathbb E \|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\, x_0 +
# \sqrt{1 - \bar\alpha_t}\, \epsilon, t)\|^2$ is a weighted $L_\text{simple}$ (the weights $\gamma_t$ depend on
# $\sigma$) and $C$ does not depend on $\theta$. Each term only involves $\epsilon_\theta(\cdot, t)$ at its own $t$,
# so if the model can fit each $t$ separately the minimiser is the same for every weighting: $\epsilon_\theta(x_t,
# t) = \mathbb E[\epsilon \mid x_t]$. The model trained with $L_\text{simple}$ (lecture 1) is therefore already
# the model for *every* $\sigma$, including the limit $\sigma \to 0$. DDIM is a new sampler, not a new model.
#
# **Theorem 1, one step at a time.** Where do the $\gamma_t$ come from? A step of $J_\sigma$ is
# $\mathrm{KL}(q_\sigma(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))$ with
# $p_\theta = q_\sigma(\cdot \mid x_t, \hat x_0)$, the generative step of section 2. Both Gaussians have covariance
# $\sigma_t^2 I$, so the KL is $\|\text{mean difference}\|^2 / (2\sigma_t^2)$. With $x_t = \sqrt{\bar\alpha_t}\, x_0
# + \sqrt{1 - \bar\alpha_t}\, \epsilon$ the fraction in eq. 7 is $\epsilon$, so $q_\sigma$'s mean is
# $\sqrt{\bar\alpha_{t-1}}\, x_0 + \sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}\, \epsilon$; $p_\theta$'s is the same with
# $\epsilon \to \epsilon_\theta$ and $x_0 \to \hat x_0 = x_0 + \sqrt{(1 - \bar\alpha_t) / \bar\alpha_t}\, (\epsilon -
# \epsilon_\theta)$. Subtracting,
#
# $$\mu_q - \mu_\theta = k_t\, (\epsilon - \epsilon_\theta), \quad k_t = \sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}
#   - \sqrt{\frac{\bar\alpha_{t-1} (1 - \bar\alpha_t)}{\bar\alpha_t}}, \qquad
#   \mathrm{KL} = \gamma_t\, \|\epsilon - \epsilon_\theta(x_t, t)\|^2, \quad \gamma_t = \frac{k_t^2}{2 \sigma_t^2}.$$
#
# No constant: the variances match, so these steps contribute nothing $\theta$-free (the theorem's $C$ collects
# the prior term and the decoder's normaliser). At $\eta = 1$ the weight must be lecture 1's $\lambda_t$ for
# $\sigma_t^2 = \tilde\beta_t$ (eq. 12 of DDPM); at the largest $\sigma_t = \sqrt{1 - \bar\alpha_{t-1}}$ the first term
# of $k_t$ vanishes and only $\hat x_0$'s error is left. As $\sigma_t \to 0$, $k_t$ stays nonzero and $\gamma_t \to
# \infty$: $\eta = 0$ is a limit of the family, not a member, hence "$\sigma > 0$". Below: the Gaussian oracle as
# $\epsilon_\theta$ (not the true noise of these $x_0$), four $\sigma$ families, `gaussian_kl` against $\gamma_t$.

# %%
def gamma_inline(t: int, t_prev: int, sigma2: torch.Tensor) -> torch.Tensor:
    # k_t = sqrt(1 - ab_{t-1} - sigma_t^2) - sqrt(ab_{t-1} (1 - ab_t) / ab_t),   gamma_t = k_t^2 / (2 sigma_t^2)
    k = (1 - ab[t_prev] - sigma2).clamp(min=0).sqrt() - (ab[t_prev] * (1 - ab[t]) / ab[t]).sqrt()
    return k**2 / (2 * sigma2)


def eta_for(family: float | str, t: int, t_prev: int) -> float:  # "max": sigma_t = sqrt(1 - ab_{t-1}), i.e. eta >= 1
    return ((1 - ab[t_prev]).sqrt() / ddim_sigma(sched, t, t_prev, 1.0)).item() if family == "max" else family


x0, eps = (torch.randn(256, 2, generator=gen(k), dtype=F64) for k in (15, 16))
zeros = torch.zeros_like(x0)
for t_int in (2, 50, 500, 1000):
    x_t = ab[t_int].sqrt() * x0 + (1 - ab[t_int]).sqrt() * eps
    eps_theta = oracle(x_t, torch.full((256,), t_int), None)  # section 3's Gaussian oracle
    gammas = []
    for family in (0.3, 0.5, 1.0, "max"):
        eta = eta_for(family, t_int, t_int - 1)
        sigma2 = ddim_sigma(sched, t_int, t_int - 1, eta) ** 2
        mean_q = q_sigma_step(x_t, x0, t_int, sigma2.sqrt(), zeros)  # eq. 7 with the true x_0
        mean_p = ddim_step(sched, x_t, eps_theta, t_int, t_int - 1, eta, noise=zeros)  # eq. 12 with x0_pred
        kl = gaussian_kl(mean_q, sigma2, mean_p, sigma2).sum(1)
        gamma = gamma_inline(t_int, t_int - 1, sigma2)
        assert_close(kl, gamma * (eps - eps_theta).pow(2).sum(1), rtol=1e-9, atol=1e-14)  # Theorem 1, C = 0
        gammas.append(gamma.item())
    assert_close(gammas[2], lambda_t(sched, "beta_tilde")[t_int].item(), rtol=1e-10, atol=0)  # eta = 1: DDPM's weight
    print(f"t = {t_int:4d}: gamma_t for eta = 0.3, 0.5, 1, max: " + ", ".join(f"{g:.3g}" for g in gammas))
print("per-step KL = gamma_t ||eps - eps_theta||^2 with C = 0, for every sigma family; eta = 1 gives lambda_t")

# %% [markdown]
# The two ends of the family, through the noise the step leaves in $x_{t-1}$: $\epsilon_{t-1} := (x_{t-1} -
# \sqrt{\bar\alpha_{t-1}}\, \hat x_0) / \sqrt{1 - \bar\alpha_{t-1}} = (\sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}\,
# \epsilon_\theta + \sigma_t z) / \sqrt{1 - \bar\alpha_{t-1}}$. At $\sigma_t = 0$ it is $\epsilon_\theta$ itself: the
# deterministic step keeps the noise direction. At $\sigma_t = \sqrt{1 - \bar\alpha_{t-1}}$ it is $z$: the new noise
# is independent of the old (sample correlation within 5 SE $= 5 / \sqrt{N}$ of 0).

# %%
x_t, eps, z = (torch.randn(N_MC, 1, generator=gen(k), dtype=F64) for k in (17, 18, 19))
t_int, t_prev = 500, 499
x0_pred = predict_x0(sched, x_t, torch.full((N_MC,), t_int), eps)


def implied_noise(eta: float) -> torch.Tensor:
    x_prev = ddim_step(sched, x_t, eps, t_int, t_prev, eta, noise=z)
    return (x_prev - ab[t_prev].sqrt() * x0_pred) / (1 - ab[t_prev]).sqrt()


assert_close(implied_noise(0.0), eps, rtol=1e-12, atol=1e-12)  # eta = 0: the same noise direction
fresh = implied_noise(eta_for("max", t_int, t_prev))
assert_close(fresh, z, rtol=0, atol=1e-6)  # the eps coefficient is sqrt(round-off) ~ 1e-8, not exactly 0
corr = torch.corrcoef(torch.cat([fresh, eps], 1).T)[0, 1].item()
assert abs(corr) < 5 / math.sqrt(N_MC)
print(f"eta = 0: eps_(t-1) = eps_t; sigma = sqrt(1 - ab_(t-1)): eps_(t-1) = z, corr with eps_t {corr:+.4f}")

# %% [markdown]
# ## 4. Strided sub-sequences
#
# Lemma 1 only used the marginals at the two timesteps of a step. So take any increasing sub-sequence
# $\tau_1 < \dots < \tau_S$ of $1..T$ and define $q_{\sigma, \tau}$ on it alone (sec. 4.2, appendix C.1): the
# step $\tau_i \to \tau_{i-1}$ is eq. 7 with $(t, t-1)$ replaced by $(\tau_i, \tau_{i-1})$. Its marginals are
# still $q(x_{\tau_i} \mid x_0)$, its ELBO is again a weighted $L_\text{simple}$ (over the $\tau_i$ only), and the
# model trained on all $t$ samples on any $\tau$: 50 model calls instead of 1000.
#
# `timesteps(T, S, spacing)` returns $\tau_S > \dots > \tau_1$ followed by $0$. The last step goes to
# $t = 0$, where $\bar\alpha_0 = 1$ and $\sigma = 0$: it returns $\hat x_0$ exactly, so no sampler needs a special
# last step. Spacings (Lin et al. 2024, table 2): DDIM's *leading* grid $1, 1 + T/S, \dots$ never reaches $t = T$
# (for $S = 10$ it starts at 901, where $\bar\alpha$ is 7 times $\bar\alpha_T$; the sampler treats $x_T \sim
# \mathcal N(0, I)$ as $x_{901}$), *trailing* always starts at $T$, *linspace* hits both $1$ and $T$.

# %%
S = 10
fig, ax = plt.subplots(1, 2, figsize=(13, 2.8))
for k, spacing in enumerate(SPACINGS):
    grid = timesteps(T, S, spacing)
    assert grid[-1] == 0 and bool((grid[:-1] > grid[1:]).all()) and len(grid) == S + 1
    print(f"{spacing:9s} S = {S}: {grid.tolist()}; alpha_bar at the first step {ab[grid[0]]:.1e}")
    ax[0].plot(grid, [k] * len(grid), "o", label=spacing)
    ax[1].semilogy(grid[:-1], ab[grid[:-1]] / (1 - ab[grid[:-1]]), "o-", label=spacing, ms=4)
assert timesteps(T, S, "leading").tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1, 0]
assert timesteps(T, S, "trailing")[0] == T and timesteps(T, S, "linspace")[[0, -2]].tolist() == [T, 1]
ax[0].set(yticks=range(len(SPACINGS)), yticklabels=SPACINGS, xlabel="t", title=f"grids, S = {S} (all end at t = 0)")
ax[1].set(xlabel="t", title=r"SNR $\bar\alpha_t / (1 - \bar\alpha_t)$ at the visited $t$")
ax[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. $\eta = 0$ is Euler's method for an ODE
#
# Divide eq. 12 at $\sigma = 0$ by $\sqrt{\bar\alpha_{t-1}}$ and expand $\hat x_0$:
#
# $$\frac{x_{t-1}}{\sqrt{\bar\alpha_{t-1}}} = \frac{x_t}{\sqrt{\bar\alpha_t}}
#   + \Big(\sqrt{\tfrac{1 - \bar\alpha_{t-1}}{\bar\alpha_{t-1}}} - \sqrt{\tfrac{1 - \bar\alpha_t}{\bar\alpha_t}}\Big)
#   \epsilon_\theta(x_t, t) \qquad \text{(eq. 13)}.$$
#
# In the coordinates $\bar x = x / \sqrt{\bar\alpha}$ and $\bar\sigma = \sqrt{1 - \bar\alpha} / \sqrt{\bar\alpha}$
# (the noise-to-signal ratio) this is $\bar x_{t-1} = \bar x_t + (\bar\sigma_{t-1} - \bar\sigma_t)\,
# \epsilon_\theta$: one Euler step of
#
# $$\frac{d\bar x}{d\bar\sigma} = \epsilon_\theta\Big(\frac{\bar x}{\sqrt{\bar\sigma^2 + 1}}, t(\bar\sigma)\Big)
#   \qquad \text{(eq. 14)},$$
#
# which is the probability-flow ODE of the diffusion (sec. 4.3): its solution carries the distribution of $x_T$ to
# that of $x_0$ through exactly the marginals $q(x_t)$. Steps in $\bar\sigma$, not in $t$: $\bar\sigma$ runs from
# about 160 ($t = T$) to 0 ($t = 0$), and the grid decides where the Euler steps fall.

# %%
def sigma_bar(t):  # sqrt(1 - ab_t) / sqrt(ab_t)
    return ((1 - ab[t]) / ab[t]).sqrt()


x_t, eps = torch.randn(6, 3, generator=gen(20), dtype=F64), torch.randn(6, 3, generator=gen(21), dtype=F64)
for t_int, t_prev in [(1000, 0), (1000, 999), (981, 961), (500, 250), (20, 0), (1, 0)]:
    x_bar_prev = x_t / ab[t_int].sqrt() + (sigma_bar(t_prev) - sigma_bar(t_int)) * eps  # Euler in (x_bar, sigma_bar)
    assert_close(ab[t_prev].sqrt() * x_bar_prev, ddim_step(sched, x_t, eps, t_int, t_prev), rtol=1e-12, atol=1e-12)
print(f"eq. 13 (Euler in x_bar, sigma_bar) = ddim_step at eta = 0; sigma_bar runs from {sigma_bar(T):.0f} to 0")

# %% [markdown]
# **An ODE we can solve exactly.** For 1-D data $x_0 \sim \mathcal N(m, s^2)$ the optimal model (lecture 1,
# `oracles.gaussian_eps`) is $\epsilon^*(x_t) = \sqrt{1 - \bar\alpha_t}\,(x_t - \sqrt{\bar\alpha_t}\, m) /
# (\bar\alpha_t s^2 + 1 - \bar\alpha_t)$; with $x_t = \sqrt{\bar\alpha_t}\, \bar x$ this is
# $\epsilon^* = \bar\sigma (\bar x - m) / (s^2 + \bar\sigma^2)$. The ODE $d\bar x / d\bar\sigma =
# \bar\sigma (\bar x - m) / (s^2 + \bar\sigma^2)$ separates, $d \log|\bar x - m| = d \log\sqrt{s^2 + \bar\sigma^2}$,
# so starting at $t_1 = \tau_S$:
#
# $$x_0 = m + (\bar x_{t_1} - m) \frac{s}{\sqrt{s^2 + \bar\sigma_{t_1}^2}}.$$
#
# DDIM is Euler's method, a first-order solver: its error should fall like $1/S$, i.e. error $\times\, S \approx$
# constant.

# %%
m_data, s_data = 0.3, 0.5
gauss = gaussian_eps(sched, torch.tensor([m_data], dtype=F64), torch.tensor([[s_data**2]], dtype=F64))
x_T = torch.randn(N_MC, 1, generator=gen(22), dtype=F64)
ode_steps, ode_err = (10, 20, 50, 100, 200, 500, 1000), []
for S in ode_steps:
    t1 = timesteps(T, S)[0]
    exact = m_data + (x_T / ab[t1].sqrt() - m_data) * s_data / (s_data**2 + sigma_bar(t1) ** 2).sqrt()
    ode_err.append((ddim_sample(gauss, sched, x_T, steps=S) - exact).abs().mean().item())
    print(f"S = {S:4d}: mean |DDIM - exact ODE solution| = {ode_err[-1]:.2e}, x S = {ode_err[-1] * S:.2f}")
assert max(e * S for e, S in zip(ode_err, ode_steps, strict=True)) < 1.5 * min(e * S for e, S in
                                                                             zip(ode_err, ode_steps, strict=True))

# %% [markdown]
# ## 6. Experiments
#
# ### Two moons: $\eta \times$ steps
#
# The 2-D model of lecture 1, retrained here in a few seconds with `train_toy`'s defaults (Adam, lr $2 \cdot 10^{-2}$
# cosine-decayed to 5%, batch 256). One $x_T$ for every panel. The number under each panel is the mean distance from
# a sample to its nearest data point; fresh data points score the "data" value (the moons have noise std 0.05).

# %%
data = two_moons(20_000, gen(30))
start = time.perf_counter()
toy, losses = train_toy(data, sched, steps=TOY_STEPS, progress=False)
print(f"train_toy: {TOY_STEPS} steps in {time.perf_counter() - start:.1f} s, final L_simple "
      f"{sum(losses[-100:]) / 100:.3f} (default lr {inspect.signature(train_toy).parameters['lr'].default:g})")

reference = data[:5000]


def nn_distance(x: torch.Tensor) -> float:
    """Mean distance from each point to its nearest neighbour among `reference` data points."""
    return torch.cdist(x, reference).min(1).values.mean().item()


x_T = torch.randn(N_TOY, 2, generator=gen(31))
etas, toy_steps = (0.0, 0.5, 1.0), (10, 20, 50, 1000)
fig, ax = plt.subplots(len(etas), len(toy_steps), figsize=(12, 8.6), sharex=True, sharey=True)
for i, eta in enumerate(etas):
    for j, S in enumerate(toy_steps):
        x = ddim_sample(toy, sched, x_T, steps=S, eta=eta, generator=gen(32))
        ax[i, j].scatter(*x.T, s=1, alpha=0.5)
        ax[i, j].set_title(f"eta = {eta:g}, {S} steps", fontsize=9)
        ax[i, j].set_xlabel(f"NN distance {nn_distance(x):.3f}", fontsize=8)
        ax[i, j].set(xlim=(-2, 2), ylim=(-1.6, 1.6), aspect="equal")
fig.tight_layout()
plt.show()
print(f"data: NN distance {nn_distance(two_moons(N_TOY, gen(33))):.3f}")

# %% [markdown]
# What to look for: at 10 steps every row blurs the moons (a few large Gaussian steps cannot bend the samples onto
# thin curves), and by 50 steps every row is close to its 1000-step panel. Compare the NN distances across a column:
# on this toy the differences between the $\eta$ are small, and the stochastic rows can even be slightly sharper at
# many steps (fresh noise lets the chain correct an imperfect model's errors, a strength of DDPM). On images the DDIM
# paper (Table 1, CIFAR-10 and CelebA FID) finds $\eta = 0$ clearly best at 10 to 100 steps, the gap closing as $S$
# grows.
#
# ### The exact oracle: error vs steps
#
# With Gaussian data $\mathcal N(0.3, 0.5^2)$ and the optimal model, every DDIM step is affine, $x_{t_\text{prev}} =
# A x_t + B + \sigma z$, so the *discrete* sampler's output is exactly Gaussian with a mean and variance we can
# propagate step by step ($\text{mean} \mapsto A\, \text{mean} + B$, $\text{var} \mapsto A^2\, \text{var} +
# \sigma^2$). That separates the sampler's own error (deterministic, computed) from Monte Carlo noise (the dots,
# `N_MC` samples each, $\pm 2$ SE). The target is the data std 0.5.

# %%
def ddim_output_moments(grid: torch.Tensor, eta: float) -> tuple[float, float]:
    """Exact mean and variance of DDIM's output for x_T ~ N(0, 1), data N(m_data, s_data^2), optimal eps."""
    mean, var = 0.0, 1.0
    for t_int, t_prev in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        a, a_prev = ab[t_int].item(), ab[t_prev].item()
        sigma = ddim_sigma(sched, t_int, t_prev, eta).item()
        c = math.sqrt(1 - a) / (a * s_data**2 + 1 - a)  # eps*(x) = c (x - sqrt(a) m)
        # eq. 12: x_prev = sqrt(a_prev / a) x + Q eps, Q = sqrt(1 - a_prev - sigma^2) - sqrt(a_prev (1 - a) / a)
        Q = math.sqrt(max(1 - a_prev - sigma**2, 0.0)) - math.sqrt(a_prev * (1 - a) / a)
        A, B = math.sqrt(a_prev / a) + Q * c, -Q * c * math.sqrt(a) * m_data
        mean, var = A * mean + B, A * A * var + sigma**2
    return mean, var


oracle_steps = (10, 20, 50, 100, 200, 500, 1000)
x_T = torch.randn(N_MC, 1, generator=gen(40), dtype=F64)
fig, ax = plt.subplots(figsize=(7, 3.6))
print("std of DDIM samples minus the data std 0.5: exact (Monte Carlo)")
for k, eta in enumerate(etas):
    exact, mc = [], []
    for S in oracle_steps:
        exact.append(math.sqrt(ddim_output_moments(timesteps(T, S), eta)[1]) - s_data)
        mc.append(ddim_sample(gauss, sched, x_T, steps=S, eta=eta, generator=gen(41)).std().item() - s_data)
        assert abs(mc[-1] - exact[-1]) < 5 * (exact[-1] + s_data) / math.sqrt(2 * N_MC)  # 5 SE of a std
    print(f"eta = {eta:g}: " + ", ".join(f"{S}: {e:+.4f} ({m:+.4f})" for S, e, m in zip(oracle_steps, exact, mc,
                                                                                          strict=True)))
    ax.semilogx(oracle_steps, exact, "-", color=f"C{k}", label=f"eta = {eta:g}, exact")
    ax.errorbar(oracle_steps, mc, yerr=2 * s_data / math.sqrt(2 * N_MC), fmt="o", color=f"C{k}", ms=3)
    assert all(1.0 < abs(e) * S < 4.0 for e, S in zip(exact, oracle_steps, strict=True))  # first order in 1/S
ax.axhline(0, color="k", lw=0.5)
ax.set(xlabel="steps S", ylabel="std(samples) - 0.5", title="DDIM on N(0.3, 0.5²) with the exact eps")
ax.legend()
plt.show()

# %% [markdown]
# Every $\eta$ under-disperses (a coarse sampler shrinks the distribution) with an error $\propto 1/S$, and $\eta =
# 0$ has the smallest constant. The spread between the $\eta$ rows shrinks as $S$ grows: in continuous time all
# members of the family have the same marginals.
#
# ### The `shapes` model
#
# `pretrained.load("shapes")` is a text-conditional UNet on $3 \times 32 \times 32$ scenes, shipped in `data/` and
# trained by `python -m minidiff train --dataset shapes ...` (the exact command is in `data/README.md`).
# `bench.eta_grid.eta_steps_grid` samples one $x_T$ with every $(\eta, S)$ under classifier-free guidance ($w = 3$;
# lecture 3) and reports each sample's change from the same $\eta$'s sample with the most steps (MSE on $[0, 1]$
# pixels). For $\eta = 0$ that is the distance to the converged ODE solution and it shrinks quickly; for $\eta > 0$
# each step count injects different noise, so the rows are different samples, not approximations of one, and the
# change stays much larger.

# %%
device = resolve_device(DEVICE)
model = pretrained.load("shapes", device=device)
print(f"shapes model: {model.num_params() / 1e6:.2f}M parameters, schedule {model.schedule.spec}, on {device}")
prompt = "a yellow triangle in the center on a gray background"
png = Path("out") / "eta_steps_grid.png"
rows = eta_steps_grid(model, prompt, etas=etas, steps=SHAPES_STEPS, seed=0, w=3.0, path=png)
for eta in etas:
    print(f"eta = {eta:g}: change vs {max(SHAPES_STEPS)} steps: "
          + ", ".join(f"{r['steps']} steps {r['change_vs_most_steps']:.2e}" for r in rows if r["eta"] == eta))
img = plt.imread(png)
plt.figure(figsize=(img.shape[1] / 80, img.shape[0] / 80))
plt.imshow(img)
plt.axis("off")
plt.show()

# %% [markdown]
# ### Speed
#
# The cost of sampling is the number of model calls, one per step (two images per call with guidance). Wall time per
# sample, measured on this machine for a small batch; DDPM's 1000 steps are extrapolated from the fitted line.

# %%
guided = classifier_free_guidance(model, Guidance.of(model, 3.0))
context = model.encode_text([prompt] * SPEED_BATCH)
x_T = torch.randn(SPEED_BATCH, 3, 32, 32, generator=gen(50)).to(device)
ddim_sample(guided, model.schedule, x_T, steps=2, context=context)  # warm-up
seconds = []
for S in SPEED_STEPS:
    start = time.perf_counter()
    ddim_sample(guided, model.schedule, x_T, steps=S, context=context)
    if device.type == "cuda":
        torch.cuda.synchronize()  # GPU kernels run asynchronously: time finished work only
    seconds.append((time.perf_counter() - start) / SPEED_BATCH)
    print(f"{S:4d} steps: {seconds[-1]:.3f} s per sample")
steps_t, seconds_t = torch.tensor(SPEED_STEPS, dtype=F64), torch.tensor(seconds, dtype=F64)
slope = ((steps_t - steps_t.mean()) * (seconds_t - seconds_t.mean())).sum() / ((steps_t - steps_t.mean()) ** 2).sum()
intercept = seconds_t.mean() - slope * steps_t.mean()
print(f"fit: {1e3 * slope:.1f} ms per step per sample; 50 steps {intercept + 50 * slope:.2f} s vs DDPM's 1000 steps "
      f"{intercept + 1000 * slope:.1f} s (extrapolated): {(intercept + 1000 * slope) / (intercept + 50 * slope):.0f}x")
plt.figure(figsize=(5, 3))
plt.plot(SPEED_STEPS, seconds, "o", label="measured")
fit_x = torch.linspace(0, max(SPEED_STEPS), 50, dtype=F64)
plt.plot(fit_x, intercept + slope * fit_x, "k--", lw=1, label="linear fit")
plt.xlabel("steps")
plt.ylabel("seconds per sample")
plt.legend()
plt.show()

# %% [markdown]
# ## 7. Exercises
#
# 1. Derive $b_t$ with the other sign, $b_t = -\sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2} / \sqrt{1 - \bar\alpha_t}$.
#    Is that process still valid? What would its generative step do with $\epsilon_\theta$?
# 2. Show that $\sigma_t(\eta)$ of eq. 16 with a stride $t \to t_\text{prev}$ is the posterior std of DDPM's chain
#    *restricted to the sub-sequence*, i.e. of $q(x_{t_\text{prev}} \mid x_t, x_0)$ with $\bar\alpha_t /
#    \bar\alpha_{t_\text{prev}}$ playing the role of $\alpha_t$.
# 3. Replace Euler by Heun's method (a second-order solver) on the ODE of section 5: two model calls per step.
#    Measure the oracle error against the exact solution as a function of the number of *model calls*. Which wins at
#    20 calls?
# 4. In the oracle experiment, move $x_T \sim \mathcal N(0, 1)$ to the exact $q(x_T) = \mathcal N(\sqrt{\bar\alpha_T}\,
#    m, \bar\alpha_T s^2 + 1 - \bar\alpha_T)$. How much of the 1000-step mean error was the prior mismatch?
# 5. Compare the three spacings at $S = 10$ on two moons and on the oracle. Which one suffers from starting at
#    $t = 901$, and why does `trailing` still take a large final step?
# 6. `eta_steps_grid` uses a different noise sequence per step count. Redo it with the noise of a 1000-step chain
#    summed appropriately over each stride: does the $\eta = 1$ row then converge like the $\eta = 0$ row?
