"""Realistic mistakes in homework 3 (instructor-only): (name, text in hw3.py, replacement, questions it breaks)."""

MUTANTS = [
    ("alpha_bar of t and t_prev swapped in the upward step",
     "    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()\n    x0_pred = (x_prev",
     "    ab_prev, ab = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()\n    x0_pred = (x_prev",
     {"q1", "q2"}),
    ("eps with the wrong sign in x0_pred", "x0_pred = (x_prev - (1 - ab_prev) ** 0.5 * eps)",
     "x0_pred = (x_prev + (1 - ab_prev) ** 0.5 * eps)", {"q1", "q2"}),
    ("inversion evaluates the model at t_prev", "eps = eps_model(x, torch.full((len(x),), t, dtype=torch.long))",
     "eps = eps_model(x, torch.full((len(x),), t_prev, dtype=torch.long))", {"q2"}),
    ("SDEdit noises with alpha instead of alpha_bar", "ab = sched.alpha_bar[t0].item()",
     "ab = sched.alpha[t0].item()", {"q3"}),
    ("SDEdit denoises over the whole grid", "grid = [t0] + full[full < t0].tolist()", "grid = full.tolist()",
     {"q3"}),
    ("Ho & Salimans' w read as minidiff's", "return eps_u + w * (eps_c - eps_u)",
     "return eps_c + w * (eps_c - eps_u)", {"q4"}),
    ("guidance with the wrong sign", "return (eps_model(x_t, t) - s * (1 - ab).sqrt() * grad)",
     "return (eps_model(x_t, t) + s * (1 - ab).sqrt() * grad)", {"q5"}),
    ("sqrt(1 - alpha_bar) left out", "return (eps_model(x_t, t) - s * (1 - ab).sqrt() * grad)",
     "return (eps_model(x_t, t) - s * grad)", {"q5"}),
    ("softmax over the batch", "log_p = torch.log_softmax(classifier(x, t), dim=-1)",
     "log_p = torch.log_softmax(classifier(x, t), dim=0)", {"q5"}),
]
