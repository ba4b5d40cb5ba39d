"""Realistic mistakes in homework 1 (instructor-only): (name, text in hw1.py, replacement, questions it breaks)."""

MUTANTS = [
    ("sqrt missing on alpha_bar in the marginal", "return ab.sqrt() * x0 + (1 - ab).sqrt() * eps",
     "return ab * x0 + (1 - ab).sqrt() * eps", {"q1"}),
    ("alpha for alpha_bar in the marginal", "ab = at(sched.alpha_bar, t, x0)", "ab = at(sched.alpha, t, x0)", {"q1"}),
    ("t for t-1 in the posterior", "ab_prev = at(sched.alpha_bar, t, x_t), at(sched.alpha_bar, t - 1, x_t)",
     "ab_prev = at(sched.alpha_bar, t, x_t), at(sched.alpha_bar, t, x_t)", {"q2"}),
    ("x_0 and x_t coefficients swapped", "beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t",
     "beta / (1 - ab) * x_t + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x0", {"q2"}),
    ("beta_t for beta~_t", "return mean, (1 - ab_prev) / (1 - ab) * beta", "return mean, beta", {"q2"}),
    ("sign flip in the eps form", "return (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()",
     "return (x_t + beta / (1 - ab).sqrt() * eps) / alpha.sqrt()", {"q3"}),
    ("sqrt missing on 1 - alpha_bar in the eps form", "return (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()",
     "return (x_t - beta / (1 - ab) * eps) / alpha.sqrt()", {"q3"}),
    ("lambda_1 not zeroed", "lam[:2] = 0", "lam[:1] = 0", {"q4"}),
    ("factor 2 missing in lambda", "lam = sched.beta ** 2 / (2 * sigma2", "lam = sched.beta ** 2 / (sigma2", {"q4"}),
    ("alpha_bar_T without the square root in the mean", "m2, v = ab * x0 ** 2, 1 - ab",
     "m2, v = ab ** 2 * x0 ** 2, 1 - ab", {"q5"}),
    ("float32 forced", "ab = sched.alpha_bar[sched.T].to(x0.dtype)", "ab = sched.alpha_bar[sched.T].float()", {"q5"}),
]
