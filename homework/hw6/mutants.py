"""Realistic mistakes in homework 6 (instructor-only): (name, text in hw6.py, replacement, questions it breaks)."""

MUTANTS = [
    ("logvar used as log std", "mean + torch.exp(0.5 * logvar) * noise", "mean + torch.exp(logvar) * noise", {"q1"}),
    ("-1 left out of the KL", "logvar.exp() - 1 - logvar", "logvar.exp() - logvar", {"q2", "q3"}),
    ("KL averaged over entries instead of summed", ".flatten(1).sum(1)", ".flatten(1).mean(1)", {"q2", "q3"}),
    ("MSE for L1", "(x - x_hat).abs().mean()", "(x - x_hat).pow(2).mean()", {"q3"}),
    ("KL not divided by the pixels", "kl_to_standard_normal(mean, logvar).mean() / x[0].numel()",
     "kl_to_standard_normal(mean, logvar).mean()", {"q3"}),
    ("1 / variance for 1 / std", "return 1.0 / latents.double().std().item()",
     "return 1.0 / latents.double().var().item()", {"q4"}),
    ("float32 statistics", "return 1.0 / latents.double().std().item()", "return 1.0 / latents.float().std().item()",
     {"q4"}),
]
