"""Realistic mistakes in homework 2 (instructor-only): (name, text in hw2.py, replacement, questions it breaks)."""

MUTANTS = [
    ("ab_t / ab_prev inverted in sigma", "(1 - ab / ab_prev).sqrt()", "(1 - ab_prev / ab).sqrt()", {"q1", "q2", "q4"}),
    ("eta^2 for eta", "return eta * ((1 - ab_prev)", "return eta ** 2 * ((1 - ab_prev)", {"q1", "q2", "q4"}),
    ("sigma^2 left out of the direction term", "max(1 - ab_prev - sigma ** 2, 0.0)", "max(1 - ab_prev, 0.0)",
     {"q2", "q4"}),
    ("alpha for alpha_bar in the step", "ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()",
     "ab, ab_prev = sched.alpha[t].item(), sched.alpha[t_prev].item()", {"q2", "q4"}),
    ("noise not scaled by sigma", "x_prev + sigma * noise", "x_prev + noise", {"q2", "q4"}),
    ("grid starts at 0", "tau = 1 + torch.arange(steps) * (T // steps)", "tau = torch.arange(steps) * (T // steps)",
     {"q3", "q4"}),
    ("grid not reversed", "torch.cat([tau.flip(0), torch.zeros", "torch.cat([tau, torch.zeros", {"q3", "q4"}),
    ("eps evaluated at t_prev", "torch.full((len(x),), t, dtype=torch.long)",
     "torch.full((len(x),), t_prev, dtype=torch.long)", {"q4"}),
    ("noise of the next step", "None if noise is None else noise[k])", "None if noise is None else noise[k - 1])",
     {"q4"}),
]
