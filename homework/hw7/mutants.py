"""Realistic mistakes in homework 7 (instructor-only): (name, text in hw7.py, replacement, questions it breaks)."""

MUTANTS = [
    ("sigma^2 left out of q_sigma's mean", "max(1 - ab_prev - s ** 2, 0.0) ** 0.5 * eps_true",
     "(1 - ab_prev) ** 0.5 * eps_true", {"q1", "q2"}),
    ("true noise without the sqrt(ab_t) on x_0", "eps_true = (x_t - ab ** 0.5 * x0) / (1 - ab) ** 0.5",
     "eps_true = (x_t - x0) / (1 - ab) ** 0.5", {"q1", "q2"}),
    ("x_T drawn without the signal", "x = x_T = ab_T ** 0.5 * x0 + (1 - ab_T) ** 0.5 * draws[0]",
     "x = x_T = draws[0]", {"q2"}),
    ("z not divided by sigma", "z = (target - mu) / s if s > 0 else torch.zeros_like(x)",
     "z = (target - mu) if s > 0 else torch.zeros_like(x)", {"q2"}),
    ("encoder continues from the q_sigma draw's mean", "        x = mu + s * z\n",
     "        x = q_sigma_mean(sched, x, x0, t, t_prev, eta)\n", {"q2"}),
    ("decoder ignores the noise", "ddim_mean(sched, x, eps, t, t_prev, eta) + ddim_sigma(sched, t, t_prev, eta) * z[i]",
     "ddim_mean(sched, x, eps, t, t_prev, eta)", {"q3"}),
    ("decoder uses the next step's noise", "ddim_sigma(sched, t, t_prev, eta) * z[i]\n",
     "ddim_sigma(sched, t, t_prev, eta) * z[i - 1]\n", {"q3"}),
]
