"""Realistic mistakes in homework 4 (instructor-only): (name, text in hw4.py, replacement, questions it breaks)."""

MUTANTS = [
    ("b_t with a plus sign", "(1 - ab_prev) ** 0.5 - (ab_prev * (1 - ab) / ab) ** 0.5",
     "(1 - ab_prev) ** 0.5 + (ab_prev * (1 - ab) / ab) ** 0.5", {"q1", "q3", "q4"}),
    ("a_t inverted", "return (ab_prev / ab) ** 0.5,", "return (ab / ab_prev) ** 0.5,", {"q1", "q3", "q4"}),
    ("second mixing layer reads the old x", "return x_prev, p * y_inter + (1 - p) * x_prev",
     "return x_prev, p * y_inter + (1 - p) * x_inter", {"q2", "q3"}),
    ("p and 1 - p swapped in the mixing", "x_prev = p * x_inter + (1 - p) * y_inter",
     "x_prev = (1 - p) * x_inter + p * y_inter", {"q2", "q3"}),
    ("inverse mixing lines in the wrong order",
     "    y_inter = (y_prev - (1 - p) * x_prev) / p\n    return (x_prev - (1 - p) * y_inter) / p, y_inter",
     "    x_inter = (x_prev - (1 - p) * y_prev) / p\n    return x_inter, (y_prev - (1 - p) * x_inter) / p",
     {"q2", "q4"}),
    ("y updated with eps at the old x", "y_inter = a * y + b * eps_model(x_inter, tb)",
     "y_inter = a * y + b * eps_model(x, tb)", {"q3"}),
    ("inverse evaluates eps at y_inter instead of y_t", "return (x_inter - b * eps_model(y, tb)) / a, y",
     "return (x_inter - b * eps_model(y_inter, tb)) / a, y", {"q4"}),
]
