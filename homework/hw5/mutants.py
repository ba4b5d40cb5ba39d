"""Realistic mistakes in homework 5 (instructor-only): (name, text in hw5.py, replacement, questions it breaks)."""

MUTANTS = [
    ("source and target swapped in the swap", "return alpha * M + (1 - alpha) * M_target",
     "return alpha * M_target + (1 - alpha) * M", {"q1"}),
    ("refinement gathers the target's maps", "M.gather(-1, idx), M_target)", "M_target.gather(-1, idx), M_target)",
     {"q2"}),
    ("added words take the source's maps too",
     "torch.where(aligned[:, None, None, :] > 0, M.gather(-1, idx), M_target)", "M.gather(-1, idx)", {"q2"}),
    ("re-weighting added instead of multiplied", "return M * c[:, None, None, :]", "return M + c[:, None, None, :]",
     {"q3"}),
    ("no max-pooling", "    m = F.max_pool2d(m, kernel_size=3, stride=1, padding=1)\n", "", {"q4"}),
    ("normalised by the max only", "((m - lo) / (hi - lo).clamp_min(1e-12))", "(m / hi)", {"q4"}),
    ("guidance with w on the unconditional side", "eps_u + w * (eps_c - eps_u)", "eps_c + w * (eps_u - eps_c)",
     {"q5"}),
    ("loss summed over pixels", ".pow(2).flatten(1).mean(1)", ".pow(2).flatten(1).sum(1)", {"q5"}),
]
