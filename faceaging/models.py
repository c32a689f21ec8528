"""The aging networks: encoder, conditional generator, discriminator and age classifier.

Age-cGAN squeezes a face into a 100-d vector and decodes it at 64 px, which is why its faces
are blurry and lose identity. Here the latent z is a small spatial map (32 x 16 x 16 for a
128 px crop): it keeps the layout of the face, while the age condition drives every decoder
stage through AdaIN-style modulation. Channel widths are chosen to train on two CPU cores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .ages import NUM_GROUPS

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
        self.affine = nn.Linear(NUM_GROUPS, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(age).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class ModulatedBlock(nn.Module):
    """Optional x2 upsample, then conv -> AdaIN(age) -> LeakyReLU, with a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.mod1 = AgeModulation(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.mod2 = AgeModulation(cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = F.leaky_relu(self.mod1(self.conv1(x), age), 0.2)
        h = F.leaky_relu(self.mod2(self.conv2(h), age), 0.2)
        return h + self.skip(x)


class Generator(nn.Module):
    """G(z, y): spatial latent + age condition (B, 6), one-hot or blended -> 128 px face in [-1, 1]."""

    def __init__(self, width: int = 16, latent_channels: int = LATENT_CHANNELS):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(latent_channels, 8 * w, 3, 1, 1)
        self.blocks = nn.ModuleList(
            [
                ModulatedBlock(8 * w, 8 * w, upsample=False),  # 16
                ModulatedBlock(8 * w, 4 * w, upsample=True),  # 32
                ModulatedBlock(4 * w, 2 * w, upsample=True),  # 64
                ModulatedBlock(2 * w, w, upsample=True),  # 128
            ]
        )
        self.to_rgb = nn.Conv2d(w, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        h = self.stem(z)
        for block in self.blocks:
            h = block(h, age)
        return torch.tanh(self.to_rgb(h))


class Discriminator(nn.Module):
    """D(x, y): PatchGAN realism plus a projection term for the age condition (Miyato & Koyama 2018)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            spectral_norm(nn.Conv2d(3, w, 4, 2, 1)),
            nn.LeakyReLU(0.2),  # 64
            spectral_norm(nn.Conv2d(w, 2 * w, 4, 2, 1)),
            nn.LeakyReLU(0.2),  # 32
            spectral_norm(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)),
            nn.LeakyReLU(0.2),  # 16
            spectral_norm(nn.Conv2d(4 * w, 8 * w, 4, 2, 1)),
            nn.LeakyReLU(0.2),  # 8
        )
        self.patch = spectral_norm(nn.Conv2d(8 * w, 1, 3, 1, 1))
        self.embed = spectral_norm(nn.Linear(NUM_GROUPS, 8 * w, bias=False))

    def forward(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = h.mean(dim=(2, 3))
        projection = (self.embed(age) * pooled).sum(dim=1, keepdim=True)
        return self.patch(h).mean(dim=(2, 3)) + projection


class AgeClassifier(nn.Module):
    """Six-way age-group classifier on a 64 px view of the crop, trained on real labelled faces.

    It steers the generator towards the target group during training and, at inference,
    estimates the source group of an input face. (The dlib age judge is never used for either.)
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


class LatentAgeCritic(nn.Module):
    """Guesses the source age group from the latent z (training only).

    If z carries the age of the input, G can reconstruct without reading the age condition and
    learns to ignore it: that is why Age-cGAN-style aging comes out weak. The encoder is trained
    to leave this critic guessing, so age has to come from the condition.
    """

    def __init__(self, latent_channels: int = LATENT_CHANNELS, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, 2, 1),
            nn.LeakyReLU(0.2),  # 8
            nn.Conv2d(width, width, 3, 2, 1),
            nn.LeakyReLU(0.2),  # 4
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, NUM_GROUPS),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; any other name is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
