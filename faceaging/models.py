"""The aging networks: encoder, conditional generator, discriminator, age classifier and age probe.

Age-cGAN squeezes a face into a 100-d vector and decodes it at 64 px, which is why its faces
are blurry and lose identity. Here the latent z is a small spatial map (32 x 16 x 16 for a
128 px crop): it keeps the layout of the face, while the age condition drives every decoder
stage through AdaIN-style modulation. Channel widths are chosen to train on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .ages import NUM_GROUPS
from .align import CANONICAL_LANDMARKS

LATENT_CHANNELS = 32


class Encoder(nn.Module):
    """E(x): a 128 px crop in [-1, 1] -> spatial latent z (B, 32, 16, 16)."""

    def __init__(self, width: int = 16, latent_channels: int = LATENT_CHANNELS):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1),
            nn.LeakyReLU(0.2),
            _down(w, 2 * w),  # 64
            _down(2 * w, 4 * w),  # 32
            _down(4 * w, 8 * w),  # 16
            nn.Conv2d(8 * w, 8 * w, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8 * w, latent_channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, 2, 1),
        nn.InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(0.2),
    )


class AgeModulation(nn.Module):
    """Instance-normalise, then scale and shift per channel from the age condition (AdaIN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        # Small random weights, not zeros: the head's output layer starts at zero, and if the
        # conditions had no effect either, head(target) - head(source) would have no gradient.
        self.affine = nn.Linear(2 * NUM_GROUPS, 2 * channels)
        nn.init.normal_(self.affine.weight, std=0.1)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(age).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class ModulatedBlock(nn.Module):
    """Optional bilinear x2 upsample, then conv -> AdaIN(age) -> LeakyReLU, with a residual.

    Bilinear, not nearest-neighbour, upsampling: v1's nearest upsampling left a regular lattice
    over old faces. Each block also sees the input crop at its own scale, so that the edit lines
    up with the face's own features.
    """

    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(cin + 3, cout, 3, 1, 1)
        self.mod1 = AgeModulation(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.mod2 = AgeModulation(cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: torch.Tensor, image: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        view = F.interpolate(image, size=h.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        out = F.leaky_relu(self.mod1(self.conv1(torch.cat([h, view], 1)), age), 0.2)
        out = F.leaky_relu(self.mod2(self.conv2(out), age), 0.2)
        return out + self.skip(h)


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


# The texture prior multiplies the input's detail by the groups' amplitude ratio, but never beyond
# this many times what the target group's faces have at that place on average: multiplied by an
# extrapolated ratio, the input's own strong edges (eyelids, glasses, hairline) became rings and
# harsh lines at 60+. Smooth skin, where wrinkles appear, is far below the ceiling. Per band, finest
# first: the finest (pores, fine lines) may reach twice the target group's amplitude, since at 1.5
# the crops aged to 60+ kept about half the fine-scale power of real 60+ faces (their spectrum's
# upper half −0.28 in log10 against −0.22 at 2, the skin's spot-scale mottling 3.08 against real
# faces' 3.05; at 3 it overshot, 3.14).
AMPLITUDE_CAP = (2.0, 1.5, 1.5)
# Older UTKFace faces wear glasses more often, so the older groups' mean faces carry a pale ghost of
# spectacles. Towards an older group the colour prior leaves a region of this radius around each
# eye (canonical crop fractions) alone; towards a younger one the darker eyes of the young mean
# faces are part of what reads as young (without them 0-18 outputs were judged 4 years older).
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


# The young groups smile more often, so their mean faces show white teeth where the older ones have
# a darker, redder-lipped closed mouth: the colour prior's change there turned a smiling face's teeth
# grey-green at 60+. Where the mouth (a region of these radii around its middle; across, down, in
# crop fractions) shows teeth, bright and nearly colourless against the cheeks, the shift keeps only
# its brightness: the darkening reads as age (teeth left whole read 1.3 years younger at 60+ and
# cost 0.007 of Spearman on the tuning slice; with the tint alone taken out, both as before).
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


# Spectacles are rigid: towards younger groups, across the band of the face that holds them (rows
# and columns in crop fractions), the flow is replaced by its best affine fit, which maps straight
# lines to straight lines. The flow's local part there (1.5 crop px on average at 0-18) bent frames
# into waves, and it was no help to the age change either: without it, 300 tuning faces at 0-18
# moved from KID x1000 71.9 to 61.0, mean identity distance 0.385 to 0.372, judged age 10.3 to 9.2.
# Towards older groups the local part (bags, hooded lids) is kept: made affine there too, KID rose
# by 2.4-5.8 in each group from 19-29 to 60+.
RIGID_BAND = ((0.14, 0.44), (0.04, 0.96))
RIGID_FADE = 0.04


def smooth_window(n: int, start: float, stop: float, fade: float) -> np.ndarray:
    """1 between start and stop (pixels), falling smoothly to 0 over `fade` pixels beyond them."""
    x = np.arange(n) + 0.5
    t = np.clip(np.minimum(x - (start - fade), (stop + fade) - x) / fade, 0, 1)
    return t * t * (3 - 2 * t)  # smoothstep: no visible edge where the fade starts


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


def identity_grid(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """grid_sample's sampling grid that leaves a size x size image as it is, (1, S, S, 2)."""
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], device=device)
    return F.affine_grid(theta, [1, 1, size, size], align_corners=False)


# A crop counts as fully in colour from this mean |channel - grey| up ([-1, 1] units; UTKFace: median
# 0.17, 5th percentile 0.07); below it the prior's colour shift fades to its luma.
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


class Generator(nn.Module):
    """G(x, z, y_source, y_target): edits the aligned input instead of redrawing it.

    The output is the input crop, warped by a dense flow (shape) and changed band by band plus a
    residual (texture and colour). Each of those is the prototype prior's change from the source
    to the target group plus a learned edit decoded from the encoder's latent z. The learned edit
    is scaled by how far the target is from the source (half the L1 distance of the conditions),
    so at the face's own group both are exactly zero and the output is the input; identity, pose,
    lighting and detail come from the input, and the network's capacity goes to the age change.
    Conditions (B, 6) may be blended. The edit is decoded at 64 px and upsampled bilinearly: fine
    texture comes from the prior's band ratios, and the CPU budget goes to more training steps.
    """

    FLOW_SCALE = 0.05  # the head's flow, in grid_sample units (0.05 = 3 px at 128 px)

    def __init__(self, width: int = 16, latent_channels: int = LATENT_CHANNELS, size: int = 128):
        super().__init__()
        w = width
        self.prior = AgePrior(size)
        self.stem = nn.Conv2d(latent_channels, 8 * w, 3, 1, 1)
        self.blocks = nn.ModuleList(
            [
                ModulatedBlock(8 * w, 8 * w, upsample=False),  # 16
                ModulatedBlock(8 * w, 4 * w, upsample=True),  # 32
                ModulatedBlock(4 * w, 2 * w, upsample=True),  # 64
            ]
        )
        # Flow (2), luma (1) and chroma (2), zero at the start: an untrained head is the prior alone.
        self.to_edit = nn.Conv2d(2 * w, 5, 3, 1, 1)
        nn.init.zeros_(self.to_edit.weight)
        nn.init.zeros_(self.to_edit.bias)

    def head(self, x: torch.Tensor, z: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The learned edit (B, 5, S, S): flow, then residual; zero where target == source."""
        h = self.stem(z)
        for block in self.blocks:
            h = block(h, x, torch.cat([source, target], 1))
        edit = F.interpolate(self.to_edit(h), size=x.shape[-2:], mode="bilinear", align_corners=False)
        gate = 0.5 * (target - source).abs().sum(1)
        return edit * gate.view(-1, 1, 1, 1)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
        prior_strength: torch.Tensor | float = 1.0,
    ) -> torch.Tensor:
        """`prior_strength` (a number, or one per face) scales the prior's change only: the prior
        is linear in the condition, while the learned head sees the conditions it was trained on
        (extrapolated ones are outside them, and it loses the person there)."""
        return self.apply(x, source, target, self.head(x, z, source, target), prior_strength)

    def apply(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
        edit: torch.Tensor,
        prior_strength: torch.Tensor | float = 1.0,
    ) -> torch.Tensor:
        """The prior's change from source to target (times `prior_strength`) plus a learned edit
        (B, 5, S, S: flow x and y, luma, two unused chroma), applied to x."""
        return self.age_edit(x, source, target, edit, prior_strength)[1]

    def age_edit(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
        edit: torch.Tensor,
        prior_strength: torch.Tensor | float = 1.0,
    ) -> tuple[AgeEdit, torch.Tensor]:
        """The change `apply` makes to x, in its separable parts (`AgeEdit`: what the renderer
        applies to the photo at its own resolution), and the aged crops it makes of x."""
        # One strength for all, one per face (B,), or one per face and part (B, 3: shape, texture, colour).
        strength = torch.as_tensor(prior_strength, dtype=x.dtype, device=x.device)
        parts = strength.reshape(-1, 1, 1).expand(-1, 3, 1) if strength.dim() < 2 else strength.unsqueeze(-1)
        prior, step = self.prior, target - source
        shape_delta, texture_delta, colour_delta = (parts[:, i] * step for i in range(3))
        shape_gain, texture_gain, colour_gain = prior.gains
        older = step @ torch.arange(NUM_GROUPS, dtype=x.dtype, device=x.device) > 0
        flow = shape_gain * prior.mix(prior.flow, shape_delta) + self.FLOW_SCALE * edit[:, :2]
        younger = (~older).to(x.dtype).view(-1, 1, 1, 1)
        flow = flow + younger * (straighten(flow, prior.rigid) - flow)  # see RIGID_BAND
        warped = warp_by_flow(x, flow)
        ratio = torch.exp(texture_gain * prior.mix(prior.log_amplitude, texture_delta)).clamp(1 / 3, 3.0)
        # Colour comes from the prior alone, and only as a local change (hair greying, shading): the
        # groups' photos also differ in exposure, which made 0-18 pale and 19-29 dark. The head's
        # two chroma channels are unused (they grew blotches around the eyes); they stay so that
        # the step-2,500 checkpoint resumes.
        colour = prior.mix(prior.colour, colour_delta)
        colour = colour - colour.mean(dim=(2, 3), keepdim=True)
        colour = colour * (1 - prior.eyes * older.to(x.dtype).view(-1, 1, 1, 1))  # see EYE_RADIUS
        # A black-and-white photo stays one: the colour shift keeps its chroma only in proportion
        # to the input's own (full from a mean channel spread of CHROMA_FULL up).
        luma = colour.mean(1, keepdim=True)
        chroma = ((x - x.mean(1, keepdim=True)).abs().mean(dim=(1, 2, 3)) / CHROMA_FULL).clamp(max=1.0)
        colour = luma + chroma.view(-1, 1, 1, 1) * (colour - luma)
        # The band ratios scale the detail's luma only: scaling every channel also amplified the
        # face's own colour contrast (rosy cheeks became red blotches at 60+).
        typical = torch.exp(prior.mix(prior.log_amplitude, target))
        bands = luma_bands(warped)
        gains = []
        for b, band in enumerate(bands):
            ceiling = AMPLITUDE_CAP[b] * typical[:, b : b + 1] / (band_amplitude(band, b) + 1e-3)
            gains.append(torch.minimum(ratio[:, b : b + 1], ceiling.clamp(min=1.0)))  # see AMPLITUDE_CAP
        learned = edit[:, 2:3]
        shift = colour_gain * colour + learned
        shift = shift - teeth(warped, prior.mouth) * (shift - shift.mean(1, keepdim=True))  # see MOUTH_RADII
        age_edit = AgeEdit(flow, shift, torch.cat(gains, 1), learned)
        return age_edit, age_edit.compose(warped, bands)


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


class _PatchCritic(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        layers, cin = [], 3
        for i in range(depth):
            cout = width * 2 ** min(i, 3)
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.patch = spectral_norm(nn.Conv2d(cin, 1, 3, 1, 1))
        self.classify = nn.Linear(cin, NUM_GROUPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.patch(h).mean(dim=(2, 3)), self.classify(h.mean(dim=(2, 3)))


class Discriminator(nn.Module):
    """D(x) at two scales (128 and 64 px): realism, plus an auxiliary age classifier (StarGAN).

    The classifier is trained on real faces only; the generator must then make the target age
    visible to it, at the coarse scale (head shape, hair) as well as the fine one (skin).
    """

    def __init__(self, width: int = 32):
        super().__init__()
        self.fine = _PatchCritic(width, depth=4)  # 128 -> 8
        self.coarse = _PatchCritic(width, depth=3)  # 64 -> 8

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(realism (B, 1), age logits (B, 6)), each the sum over the two scales."""
        small = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        (r1, c1), (r2, c2) = self.fine(x), self.coarse(small)
        return r1 + r2, c1 + c2


class AgeClassifier(nn.Module):
    """Six-way age-group classifier on a 64 px view of the crop, trained on real labelled faces.

    It steers the generator towards the target group during training (the source group at
    inference comes from `AgeProbe`). The dlib age judge is never used for either.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 32
            nn.Conv2d(w, 2 * w, 3, 1, 1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16
            nn.Conv2d(2 * w, 4 * w, 3, 1, 1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8
            nn.Conv2d(4 * w, 8 * w, 3, 1, 1),
            nn.BatchNorm2d(8 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(8 * w, NUM_GROUPS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
        return self.net(x)


class AgeProbe(nn.Module):
    """The source group of an input face: a linear probe on the identity network's pooled 256-d
    features (`IdentityNet.crop_features`), standardised by the training faces' mean and spread.

    The frozen face-recognition features hold up better than a small CNN trained on UTKFace's
    tight crops when a photo is compressed, blurred, lit differently or cropped loosely (tuning
    slice: 63.2% against 54.2%; the model card has the table).
    """

    def __init__(self, features: int = 256):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.linear = nn.Linear(features, NUM_GROUPS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 256) pooled identity features -> (B, 6) group logits."""
        return self.linear((features - self.mean) / self.std)


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; any other name is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
