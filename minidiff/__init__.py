"""minidiff: a from-scratch, plain-PyTorch teaching implementation of diffusion models and diffusion-based editing.

Notation (every module, test and notebook uses it; the same table is in README.md):

    symbol              code                              meaning
    x_0                 x0                                data: images (B, C, H, W) in [-1, 1], channels first
    t = 1..T            t (B,) long, `schedule.t_batch`   paper indexing: t = 0 is the data (diffusers' k = t - 1)
    beta_t              sched.beta[t]                     variance of step t; every schedule tensor has length T + 1
    alpha_t             sched.alpha[t]                    1 - beta_t
    alpha-bar_t         sched.alpha_bar[t]                prod_{s <= t} alpha_s (DDIM's "alpha_t"); alpha_bar[0] = 1
    beta~_t             sched.beta_tilde[t]               posterior variance of q(x_{t-1} | x_t, x_0)
    x_t                 x_t                               sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps
    eps_theta           eps_model(x_t, t, context)        `protocols.EpsModel`: what every method is written against
    c, null             context, null_context             encoded prompt (B, L, D) and the encoded "" of CFG
    w                   Guidance(null_context, w).w       classifier-free guidance scale: 1 = conditional, 0 = null
    sigma_t(eta)        samplers.ddim_sigma               the DDIM family's noise; eta = 0 deterministic, 1 = DDPM
    tau_S > ... > 0     grid, `schedule.timesteps`        a descending timestep grid that ends at t = 0
    p                   edict's p                         EDICT's mixing weight (0.93)
    M_t                 attention probs (B, heads, HW, L) Prompt-to-Prompt's cross-attention maps

Layout (docs/architecture.md): the lectures' maths and methods at the top level; `nn/` networks, `datasets/`,
`training/`, `bench/` (measured tables, demo) and `cli` above them, imports only going downward.
"""
