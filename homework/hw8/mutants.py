"""Realistic mistakes in homework 8 (instructor-only): (name, text in hw8.py, replacement, questions it breaks)."""

MUTANTS = [
    ("sqrt missing on alpha_bar in P_t", "/ ab ** 0.5\n", "/ ab\n", {"q1", "q2"}),
    ("the edit in D_t too (the symmetric step)", "+ (1 - ab_prev) ** 0.5 * eps\n",
     "+ (1 - ab_prev) ** 0.5 * eps_edit\n", {"q2"}),
    ("the edit in neither term", "P_t(sched, x_t, eps_edit, t)", "P_t(sched, x_t, eps, t)", {"q2"}),
    ("cosine with the edited feature, not the change", "cosine_similarity(f_edit - f_source,",
     "cosine_similarity(f_edit,", {"q3"}),
    ("similarity instead of loss", "return 1 - torch.nn.functional.cosine_similarity",
     "return torch.nn.functional.cosine_similarity", {"q3"}),
    ("v not renormalised", "        v = w / w.norm()\n", "        v = w\n", {"q4"}),
    ("singular value squared", "return v, torch.func.jvp(f, (x,), (v,))[1].norm().item()",
     "return v, torch.func.jvp(f, (x,), (v,))[1].norm().item() ** 2", {"q4"}),
]
