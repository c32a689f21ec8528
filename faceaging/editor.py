"""Stage 4: the conditional generator's edit of each face at each age, at the age strength in use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .ages import age_condition
from .align import to_uint8
from .edit import AgeEdit
from .models import Generator

RENDER_BATCH = 16  # images per generator call: a crowd's GIF at once is ~1 GB of activations


class AgeStrength(NamedTuple):
    """How far past the prototype prior's measured age change to go (1 = as measured), towards
    younger and towards older groups apart: rejuvenating too far loses the person sooner than
    aging does. The learned edit is not scaled: it is trained on plain conditions only."""

    younger: float
    older: float

    @classmethod
    def of(cls, value: float | Sequence[float]) -> AgeStrength:
        """One number for both directions, or (younger, older)."""
        values = (value,) if isinstance(value, int | float) else tuple(value)
        if len(values) not in (1, 2):
            raise ValueError(f"an age strength is one number or two (younger, older), not {len(values)}")
        return cls(values[0], values[-1])


# Chosen on the tuning slice (`evaluate --tuning`), never on the held-out one (model card).
DEFAULT_AGE_STRENGTH = AgeStrength(2.5, 3.0)
# The share of the age strength for the prior's colour change: at the full strength adults at 0-18
# were a pale wash, and most of the identity lost there went with it.
DEFAULT_COLOUR_SHARE = AgeStrength(0.75, 1.0)
# The younger strength is raised this much at 0-18 and 19-29, fading to none at 30-39: a fifth of
# the adults sent to 0-18 still read over 20.
YOUNGER_BOOST = 1.2


class AgeEditor:
    """The generator's `AgeEdit` of faces at age positions (0 = 0-18 ... 5 = 60+, fractions blend),
    with the prior's change scaled by the age strength and the learned edit decoded from z."""

    def __init__(
        self,
        generator: Generator,
        device: torch.device,
        age_strength: float | Sequence[float] = DEFAULT_AGE_STRENGTH,
        colour_share: float | Sequence[float] = DEFAULT_COLOUR_SHARE,
    ):
        self.generator = generator
        self.device = device
        self.age_strength = AgeStrength.of(age_strength)
        self.colour_share = AgeStrength.of(colour_share)

    def prior_strengths(self, positions: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Per face and part (B, 3: shape, texture, colour), how far the prototype prior's change
        goes for the asked position: the younger or the older `age_strength`, by the direction from
        the face's own group (the younger raised at 0-18 and 19-29 by `YOUNGER_BOOST`), and for the
        colour that times the `colour_share`."""
        positions = positions.to(self.device).float()
        younger = positions < source.to(self.device)
        boost = 1 + (YOUNGER_BOOST - 1) * (2 - positions).clamp(0, 1)
        strength = torch.where(younger, self.age_strength.younger * boost, self.age_strength.older)
        share = torch.where(younger, *self.colour_share)
        return torch.stack([strength, strength, strength * share], 1)

    def edits_at(
        self, crops: torch.Tensor, z: torch.Tensor, positions: torch.Tensor, source: torch.Tensor
    ) -> tuple[list[AgeEdit], list[np.ndarray]]:
        """The edit (`AgeEdit`, B faces) of every face (crops in [-1, 1]) at every position, batched,
        and the aged crops it makes: two lists over positions, of edits and of (B,S,S,3) uint8. z is
        one latent per face (B, C, H, W), or `FaceAger.invert`'s two (B, 2, C, H, W): the younger
        end's below the face's own group, the older end's from it up."""
        n, k = z.shape[0], len(positions)
        sources = age_condition(source.float(), self.device).repeat(k, 1)
        wanted = positions.float().to(self.device).repeat_interleave(n)
        targets = age_condition(wanted, self.device)
        strengths = self.prior_strengths(wanted, source.repeat(k))
        x = crops.repeat(k, 1, 1, 1)
        face, above = torch.arange(n, device=self.device).repeat(k), wanted >= source.to(self.device).repeat(k)
        latents = z[face] if z.dim() == 4 else z[face, above.long()]  # picked per render, not copied
        parts, images = [], []
        with torch.inference_mode():
            for i in range(0, len(latents), RENDER_BATCH):
                c = slice(i, i + RENDER_BATCH)
                head = self.generator.head(x[c], latents[c], sources[c], targets[c])
                edit, aged = self.generator.prior.edit(x[c], sources[c], targets[c], head, strengths[c])
                parts.append(edit)
                images.append(to_uint8(aged))
        every, images = AgeEdit.cat(parts), np.concatenate(images)
        return [every[i * n : (i + 1) * n] for i in range(k)], [images[i * n : (i + 1) * n] for i in range(k)]
