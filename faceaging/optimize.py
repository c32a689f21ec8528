"""Stage 3 of Age-cGAN: identity-preserving latent optimisation.

Starting at z0 = E(x), adjust z so that the aged faces are still the same person as x (identity
network). In v1 the generator redrew the face, so stage 3 fitted the reconstruction; now the
generator edits the input and is exact at the face's own age, so what stage 3 protects is the aged
face, where identity is at risk: the renders at both ends of the age axis, each end with its own
latent (the caller, `FaceAger.invert`, makes each face-and-end pair one item of the batch). A pull
towards z0 keeps it from undoing the age change. Bounded in steps and seconds, batched, and it
stops early once every item is well inside the same-person threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .identity import IdentityNet, distance
from .models import Generator

# Identity distance at which a face counts as kept (dlib's same-person threshold is 0.6). Chosen on
# the tuning slice: 0.45 took the mean distance at 60+ from 0.353 to 0.335 and at 0-18 from 0.391
# to 0.380 for 0.4 years of age change; lower buys identity that is not needed with the age change.
TARGET_DISTANCE = 0.45


def optimize_latent(
    z0: torch.Tensor,
    crops: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    generator: Generator,
    identity: IdentityNet,
    steps: int = 10,
    max_seconds: float = 5.0,
    lr: float = 0.05,
    anchor_weight: float = 1.0,
    target_distance: float = TARGET_DISTANCE,
    prior_strength: torch.Tensor | float = 1.0,
    wanted: torch.Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise latents for a batch of items, each a face and one age to protect.

    z0: (B, C, H, W) from the encoder; crops: (B, 3, S, S) in [-1, 1]; source and target: (B, 6)
    conditions, the face's own group and the age to protect; `prior_strength` a number, (B,) or
    (B, 3). `wanted`: the crops' identity embeddings, when the caller has them already. Returns the
    optimised z and each item's identity distance between its input and its render.
    """
    strength = torch.as_tensor(prior_strength, dtype=z0.dtype, device=z0.device)

    def render_distance(latent: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        return distance(identity.embed_crops(generator(crops, latent, source, target, strength)), wanted)

    started = time.monotonic()
    z = z0.detach().clone().requires_grad_(True)
    best_z = z0.detach().clone()
    with torch.inference_mode():
        if wanted is None:
            wanted = identity.embed_crops(crops)
        if steps > 0:
            best_distance = torch.full((len(z0),), float("inf"), device=z0.device)
        else:  # no optimisation: one pass measures z0's distance for the report
            best_distance = render_distance(z0, wanted)
    wanted = wanted.clone()  # an inference tensor cannot enter autograd
    adam = _Adam(z, lr)
    for step in range(steps):
        # The first pass scores z0 itself, so there is no separate evaluation of the start.
        if step > 0 and (time.monotonic() - started > max_seconds or bool((best_distance < target_distance).all())):
            break
        d = render_distance(z, wanted)
        # Keep, per item, the latent that scored best so far (Adam can overshoot), but only until
        # the item is within `target_distance`: past that, a closer match undoes the age change.
        with torch.no_grad():
            improved = (d < best_distance) & (best_distance >= target_distance)
            best_distance = torch.where(improved, d, best_distance)
            best_z[improved] = z[improved]
            active = (best_distance >= target_distance).float()
        if on_step is not None:
            on_step(step + 1, steps)
        if step == steps - 1:
            break  # the update after the last evaluation would never be scored
        loss = (d * active).mean() + anchor_weight * (z - z0).pow(2).mean()
        loss.backward()
        adam.step()
    return best_z, best_distance.detach()


class _Adam:
    """Adam (Kingma & Ba) on the one latent tensor. torch.optim's step imports torch._dynamo on first
    use: 1.5 s on two cores, which the first photo after every server start would wait for."""

    def __init__(self, z: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.z, self.lr, self.betas, self.eps, self.t = z, lr, betas, eps, 0
        self.m, self.v = torch.zeros_like(z), torch.zeros_like(z)

    @torch.no_grad()
    def step(self) -> None:
        (b1, b2), grad, self.t = self.betas, self.z.grad, self.t + 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denominator = (self.v / (1 - b2**self.t)).sqrt_().add_(self.eps)
        self.z.addcdiv_(self.m, denominator, value=-self.lr / (1 - b1**self.t))
        self.z.grad = None
