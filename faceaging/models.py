"""The aging networks: encoder, conditional generator, discriminator, age classifier and age probe.

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
from .prior import AgePrior

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
        return self.prior.edit(x, source, target, self.head(x, z, source, target), prior_strength)[1]


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
