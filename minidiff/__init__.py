"""minidiff: a from-scratch, plain-PyTorch teaching implementation of diffusion models."""
