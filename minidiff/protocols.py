"""The two callable signatures that every sampler, inversion, editor and guidance method is written against.

    eps_model(x_t, t, context) -> eps       x_t (B, ...), t (B,) integers in 1..T, context (B, L, D) or None
    classifier(x_t, t) -> logits            x_t (B, ...), t (B,) -> (B, K), a classifier of *noisy* images

A trained `nn.DiffusionModel` is an eps-model; so are the closed-form `oracles`, the 2-D toy MLP and any
wrapper (classifier-free or classifier guidance). Methods never know which network is behind the callable.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

EpsModel = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
Classifier = Callable[[Tensor, Tensor], Tensor]
