"""The age edit: what the generator says to change in an aligned crop, in parts that apply at any
resolution (a flow, a smooth shift, gains on the luma detail of three frequency bands)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# Frequency bands of a 128 px crop: differences of Gaussians at these scales, finest first.
BAND_SIGMAS = (1.0, 2.0, 4.0)


def split_bands(x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(band-pass images, finest first; low-pass base): they sum back to x exactly."""
    blurred = [x] + [gaussian_blur(x, s) for s in BAND_SIGMAS]
    return [a - b for a, b in zip(blurred, blurred[1:], strict=False)], blurred[-1]


AMPLITUDE_SMOOTHING = 2.0  # local amplitude = |band| averaged over this many times the band's scale


def band_amplitude(band: torch.Tensor, index: int) -> torch.Tensor:
    """Local mean of |band| for band `index` of `split_bands`: what the prior's amplitude tables hold."""
    return gaussian_blur(band.abs(), AMPLITUDE_SMOOTHING * BAND_SIGMAS[index])


def smooth_window(n: int, start: float, stop: float, fade: float) -> np.ndarray:
    """1 between start and stop (pixels), falling smoothly to 0 over `fade` pixels beyond them."""
    x = np.arange(n) + 0.5
    t = np.clip(np.minimum(x - (start - fade), (stop + fade) - x) / fade, 0, 1)
    return t * t * (3 - 2 * t)  # smoothstep: no visible edge where the fade starts


def identity_grid(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """grid_sample's sampling grid that leaves a size x size image as it is, (1, S, S, 2)."""
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], device=device)
    return F.affine_grid(theta, [1, 1, size, size], align_corners=False)


def luma_bands(image: torch.Tensor) -> list[torch.Tensor]:
    """The band-pass images (`split_bands`, finest first) of an image's luma (channel mean)."""
    return split_bands(image.mean(1, keepdim=True))[0]


def warp_by_flow(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x (B, C, S, S) at the identity grid plus `flow` (B, 2, S, S, grid_sample units).

    Bicubic, as the photo renderer samples: the flow moves pixels by fractions of a pixel, where
    bilinear sampling averages neighbours (a 4 px pattern half a pixel off keeps 0.71 of its
    amplitude, bicubic 0.97), and the crops came out softer than real faces of every group."""
    grid = identity_grid(x.shape[-1], x.device) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)


@dataclass
class AgeEdit:
    """The generator's change to aligned crops, in parts that apply at any resolution.

    The aged crop is `flow` (where each output pixel samples the input, grid_sample units), then
    `shift` added (colour prior and learned luma; smooth), then each frequency band's luma detail
    (`split_bands`, finest first) multiplied by its `gains`. The crop renderer (`apply_to`) and
    the photo renderer (`faceaging.render`) apply the same parts, the latter on the photo's own
    pixels at the photo's own resolution.
    """

    flow: torch.Tensor  # (B, 2, S, S)
    shift: torch.Tensor  # (B, 3, S, S), [-1, 1] units
    gains: torch.Tensor  # (B, len(BAND_SIGMAS), S, S)
    # (B, 1, S, S): the learned head's share of `shift` (a brightness change); the rest is the
    # prior's colour. The photo renderer treats them apart beyond the face. None: all the prior's.
    learned: torch.Tensor | None = None

    def apply_to(self, x: torch.Tensor) -> torch.Tensor:
        warped = warp_by_flow(x, self.flow)
        return self.compose(warped, luma_bands(warped))

    def compose(self, warped: torch.Tensor, bands: list[torch.Tensor]) -> torch.Tensor:
        """The aged crops from the flow's result and its `luma_bands`."""
        out = warped + self.shift
        for b, band in enumerate(bands):
            out = out + (self.gains[:, b : b + 1] - 1) * band
        return out.clamp(-1, 1)

    def __getitem__(self, index: slice) -> AgeEdit:
        learned = None if self.learned is None else self.learned[index]
        return AgeEdit(self.flow[index], self.shift[index], self.gains[index], learned)

    @staticmethod
    def cat(edits: list[AgeEdit]) -> AgeEdit:
        """Several batches of edits as one."""
        learned = None if any(e.learned is None for e in edits) else torch.cat([e.learned for e in edits])
        return AgeEdit(*(torch.cat([getattr(e, part) for e in edits]) for part in ("flow", "shift", "gains")), learned)
