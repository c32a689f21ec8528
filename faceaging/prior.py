"""The prototype prior: the measured change between the mean faces of two age groups, and the image
rules that keep it from changing what age does not change (teeth, spectacles, a black-and-white
photo's colour)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .ages import NUM_GROUPS
from .align import CANONICAL_LANDMARKS
from .edit import BAND_SIGMAS, AgeEdit, band_amplitude, gaussian_blur, luma_bands, smooth_window, warp_by_flow

# The learned head's flow, in grid_sample units (0.05 = 3 px at 128 px).
FLOW_SCALE = 0.05

# No band's gain takes the detail past this many times the target group's mean amplitude there, per
# band, finest first: past it the input's own edges (eyelids, glasses) became rings at 60+.
AMPLITUDE_CAP = (2.0, 1.5, 1.5)
# Older groups' mean faces carry ghost spectacles: towards older groups the colour prior leaves a
# region of this radius around each eye alone (crop fractions).
EYE_RADIUS = 8 / 128


def _gaussian_spots(size: int, centres: np.ndarray, radii: tuple[float, float]) -> torch.Tensor:
    """(S, S): the sum of Gaussians at `centres` with `radii` (across, down), in crop fractions."""
    t = torch.arange(size, dtype=torch.float32) + 0.5
    rows, cols = torch.meshgrid(t / size, t / size, indexing="ij")
    return sum(torch.exp(-0.5 * (((cols - x) / radii[0]) ** 2 + ((rows - y) / radii[1]) ** 2)) for x, y in centres)


def eye_region(size: int) -> torch.Tensor:
    """(1, 1, S, S): 1 at the canonical eye centres, falling off as a Gaussian (wider than tall)."""
    spots = _gaussian_spots(size, CANONICAL_LANDMARKS[:2], (1.4 * EYE_RADIUS, EYE_RADIUS))
    return spots.clamp(max=1.0).view(1, 1, size, size)


# The young groups' mean faces smile: where the mouth (these radii, across and down, crop fractions)
# shows teeth, the colour shift keeps its brightness only, so teeth do not turn grey-green.
MOUTH_RADII = (20 / 128, 8 / 128)
# Rows and columns (crop fractions) of the left cheek; the right one mirrors it.
CHEEK = ((0.47, 0.62), (0.22, 0.34))


def mouth_region(size: int) -> torch.Tensor:
    """(1, 1, S, S): 1 over the middle of the canonical mouth, falling off as a Gaussian."""
    spot = _gaussian_spots(size, CANONICAL_LANDMARKS[3:].mean(0, keepdims=True), MOUTH_RADII)
    return (2 * spot).clamp(max=1.0).view(1, 1, size, size)


def teeth(x: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) in 0..1: where aligned crops x show teeth: inside `mouth_region`, at most a
    little darker than the cheeks and with well under their chroma (a grey moustache counts too,
    and it should not be tinted either)."""
    luma = x.mean(1, keepdim=True)
    chroma = (x - luma).abs().mean(1, keepdim=True)
    size = x.shape[-1]
    (r0, r1), (c0, c1) = ((round(a * size), round(b * size)) for a, b in CHEEK)

    def over_cheeks(t: torch.Tensor) -> torch.Tensor:
        both = torch.cat([t[..., r0:r1, c0:c1].flatten(1), t[..., r0:r1, size - c1 : size - c0].flatten(1)], 1)
        return both.median(1).values.view(-1, 1, 1, 1)

    skin_luma, skin_chroma = over_cheeks(luma), over_cheeks(chroma)
    bright = ((luma - skin_luma + 0.25) / 0.15).clamp(0, 1)
    colourless = ((0.8 - chroma / (skin_chroma + 1e-3)) / 0.3).clamp(0, 1)
    return gaussian_blur(bright * colourless * mouth, 1.0)


# Spectacles are rigid: towards younger groups, across this band (rows and columns, crop fractions)
# the flow is replaced by its affine fit, so straight frames stay straight.
RIGID_BAND = ((0.14, 0.44), (0.04, 0.96))
RIGID_FADE = 0.04


def rigid_band(size: int) -> torch.Tensor:
    """(S, S) in 0..1: the spectacles' band, fading over RIGID_FADE of the crop."""
    rows, cols = (smooth_window(size, lo * size, hi * size, RIGID_FADE * size) for lo, hi in RIGID_BAND)
    return torch.from_numpy(np.outer(rows, cols).astype(np.float32))


def straighten(flow: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """`flow` (B, 2, S, S) with its part inside `band` (S, S) replaced by its weighted least-squares
    affine fit over the band."""
    size = flow.shape[-1]
    t = (torch.arange(size, dtype=flow.dtype, device=flow.device) + 0.5) / size
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    basis = torch.stack([cols.flatten(), rows.flatten(), torch.ones_like(cols.flatten())], 1)  # (N, 3)
    weight = band.flatten().to(flow.dtype)
    normal = basis.T @ (basis * weight[:, None])  # (3, 3)
    values = flow.flatten(2).transpose(1, 2)  # (B, N, 2)
    coefficients = torch.linalg.solve(normal, basis.T @ (values * weight[None, :, None]))  # (B, 3, 2)
    affine = (basis @ coefficients).transpose(1, 2).reshape_as(flow)
    return flow + band * (affine - flow)


# A crop counts as fully in colour from this mean |channel - grey| up ([-1, 1] units); below it the
# colour shift fades to its luma, so a black-and-white photo stays one.
CHROMA_FULL = 0.05


class AgePrior(nn.Module):
    """The classic prototype transform (Burt & Perrett; Tiddeman et al.) as fixed buffers.

    Per age group, measured on aligned training faces by `faceaging.training.prototypes`:
    - `flow`: where each pixel of that group's mean face lies in the mean face of all groups
      (grid_sample units), so f(target) - f(source) moves a face's shape between groups;
    - `log_amplitude`: log of the mean local amplitude of each frequency band, so the ratio
      target / source makes wrinkles and skin texture appear (or fade) band by band;
    - `colour`: the group's low-pass mean face, so hair and skin tone shift with age.
    Everything is linear in the condition vector, so blended ages and the age strength (the
    condition moved further from the face's own group) work the same way as for the learned part.
    """

    def __init__(self, size: int = 128):
        super().__init__()
        self.register_buffer("flow", torch.zeros(NUM_GROUPS, 2, size, size))
        self.register_buffer("log_amplitude", torch.zeros(NUM_GROUPS, len(BAND_SIGMAS), size, size))
        self.register_buffer("colour", torch.zeros(NUM_GROUPS, 3, size, size))
        # How much of the measured shape, texture and colour difference to apply.
        self.register_buffer("gains", torch.ones(3))
        self.register_buffer("eyes", eye_region(size), persistent=False)
        self.register_buffer("mouth", mouth_region(size), persistent=False)
        self.register_buffer("rigid", rigid_band(size), persistent=False)

    def mix(self, table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bg,g...->b...", weights, table)

    def edit(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
        head: torch.Tensor,
        prior_strength: torch.Tensor | float = 1.0,
    ) -> tuple[AgeEdit, torch.Tensor]:
        """The prior's change from source to target (times `prior_strength`) plus the learned
        edit `head` (B, 5, S, S: flow x and y, luma, two unused chroma; `Generator.head`) as an `AgeEdit` (what
        the photo renderer applies at the photo's own resolution), and the aged crops it makes of x."""
        # One strength for all, one per face (B,), or one per face and part (B, 3: shape, texture, colour).
        strength = torch.as_tensor(prior_strength, dtype=x.dtype, device=x.device)
        parts = strength.reshape(-1, 1, 1).expand(-1, 3, 1) if strength.dim() < 2 else strength.unsqueeze(-1)
        step = target - source
        shape_delta, texture_delta, colour_delta = (parts[:, i] * step for i in range(3))
        shape_gain, texture_gain, colour_gain = self.gains
        older = step @ torch.arange(NUM_GROUPS, dtype=x.dtype, device=x.device) > 0
        flow = shape_gain * self.mix(self.flow, shape_delta) + FLOW_SCALE * head[:, :2]
        younger = (~older).to(x.dtype).view(-1, 1, 1, 1)
        flow = flow + younger * (straighten(flow, self.rigid) - flow)  # see RIGID_BAND
        warped = warp_by_flow(x, flow)
        ratio = torch.exp(texture_gain * self.mix(self.log_amplitude, texture_delta)).clamp(1 / 3, 3.0)
        # Colour comes from the prior alone, and only as a local change (hair greying, shading): the
        # groups' photos also differ in exposure, which made 0-18 pale and 19-29 dark. The head's
        # two chroma channels are unused (they grew blotches around the eyes); they stay so that
        # the step-2,500 checkpoint resumes.
        colour = self.mix(self.colour, colour_delta)
        colour = colour - colour.mean(dim=(2, 3), keepdim=True)
        colour = colour * (1 - self.eyes * older.to(x.dtype).view(-1, 1, 1, 1))  # see EYE_RADIUS
        # A black-and-white photo stays one: the colour shift keeps its chroma only in proportion
        # to the input's own (full from a mean channel spread of CHROMA_FULL up).
        luma = colour.mean(1, keepdim=True)
        chroma = ((x - x.mean(1, keepdim=True)).abs().mean(dim=(1, 2, 3)) / CHROMA_FULL).clamp(max=1.0)
        colour = luma + chroma.view(-1, 1, 1, 1) * (colour - luma)
        # The band ratios scale the detail's luma only: scaling every channel also amplified the
        # face's own colour contrast (rosy cheeks became red blotches at 60+).
        typical = torch.exp(self.mix(self.log_amplitude, target))
        bands = luma_bands(warped)
        gains = []
        for b, band in enumerate(bands):
            ceiling = AMPLITUDE_CAP[b] * typical[:, b : b + 1] / (band_amplitude(band, b) + 1e-3)
            gains.append(torch.minimum(ratio[:, b : b + 1], ceiling.clamp(min=1.0)))  # see AMPLITUDE_CAP
        learned = head[:, 2:3]
        shift = colour_gain * colour + learned
        shift = shift - teeth(warped, self.mouth) * (shift - shift.mean(1, keepdim=True))  # see MOUTH_RADII
        age_edit = AgeEdit(flow, shift, torch.cat(gains, 1), learned)
        return age_edit, age_edit.compose(warped, bands)
