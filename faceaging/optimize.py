"""Stage 3 of Age-cGAN: identity-preserving latent optimisation.

Starting at z0 = E(x), adjust z so that the reconstruction G(z, y_source) is the same person
as x (identity network) and looks like x (pixels). Bounded in steps and seconds, batched over
faces, and it stops early once every face is well inside the same-person threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .identity import IdentityNet, distance
from .models import Generator


def optimize_latent(
    z0: torch.Tensor,
    crops: torch.Tensor,
    source: torch.Tensor,
    generator: Generator,
    identity: IdentityNet,
    steps: int = 10,
    max_seconds: float = 5.0,
    lr: float = 0.05,
    pixel_weight: float = 1.0,
    identity_weight: float = 1.0,
    target_distance: float = 0.25,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise latents for a batch of faces.

    z0: (B, C, H, W) from the encoder; crops: (B, 3, S, S) in [-1, 1]; source: (B, 6) condition.
    Returns the optimised z and each face's final identity distance to its input.
    """
    started = time.monotonic()
    z = z0.detach().clone().requires_grad_(True)
    best_z = z0.detach().clone()
    with torch.inference_mode():
        if steps > 0:
            target = identity.embed_crops(crops)
            best_distance = torch.full((len(z0),), float("inf"), device=z0.device)
        else:  # no optimisation: one batched pass measures z0's distance for the report
            both = identity.embed_crops(torch.cat([crops, generator(z0, source)]))
            target, start = both.chunk(2)
            best_distance = distance(start, target)
    target = target.clone()  # an inference tensor cannot enter autograd
    optimizer = torch.optim.Adam([z], lr=lr)
    for step in range(steps):
        # The first pass scores z0 itself, so there is no separate evaluation of the start.
        if step > 0 and (time.monotonic() - started > max_seconds or bool((best_distance < target_distance).all())):
            break
        reconstruction = generator(z, source)
        d = distance(identity.embed_crops(reconstruction), target)
        # Keep, per face, the latent that scored best so far: Adam can overshoot.
        with torch.no_grad():
            improved = d < best_distance
            best_distance = torch.where(improved, d, best_distance)
            best_z[improved] = z[improved]
        if on_step is not None:
            on_step(step + 1, steps)
        if step == steps - 1:
            break  # the update after the last evaluation would never be scored
        loss = identity_weight * d.mean() + pixel_weight * F.l1_loss(reconstruction, crops)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return best_z, best_distance.detach()
