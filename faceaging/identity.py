"""Identity: dlib's face-recognition ResNet (CC0), ported to PyTorch.

It maps a 150 x 150 face chip to a 128-d embedding; two faces are the same person when the
Euclidean distance is below 0.6. The latent optimisation uses it as a differentiable loss,
and evaluation uses it to verify identity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .align import chip_from_crop, to_tensor

SAME_PERSON_THRESHOLD = 0.6
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# dlib's mean-face positions of its own 5 landmarks (eye corners, nose base) on the unit square,
# from get_face_chip_details in dlib's interpolation.h.
DLIB_FACE_POINTS = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
# Where MTCNN's 5 landmarks (eye centres, nose tip, mouth corners) fall on that same unit square:
# fitted on 1,073 UTKFace training faces by `python -m faceaging fit-chip-template`.
MTCNN_FACE_POINTS = np.array(
    [
        [0.2297, 0.2074],
        [0.7703, 0.2074],
        [0.5000, 0.5290],
        [0.2608, 0.7628],
        [0.7392, 0.7628],
    ]
)
INPUT_MEANS = (122.782, 117.001, 104.298)  # dlib's input_rgb_image means, in 0..255


def chip_template(points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """Pixel positions of unit-square face points in a dlib face chip (get_face_chip_details)."""
    return (padding + points) / (2 * padding + 1) * size


def _pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: tensors of different channels or sizes add as if zero-padded at the end."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))

    return pad(a) + pad(b)


class Affine(nn.Module):
    """dlib's affine_ layer: batch norm folded into a per-channel scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ResidualBlock(nn.Module):
    """dlib's ares / ares_down: conv-affine-relu-conv-affine, plus the (pooled) input, then relu."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride, padding = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding)
        self.affine1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.affine2 = Affine(cout)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_pad_add(h, shortcut))


# (channels, downsample) per block, in data-flow order: dlib's alevel4 .. alevel0.
_BLOCKS = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
_BLOCKS += [(256, True)] + [(256, False)] * 2 + [(256, True)]


class IdentityNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1 as an nn.Module.

    forward takes RGB chips (B, 3, 150, 150) with values in 0..1 and returns (B, 128) embeddings,
    differentiable with respect to the pixels.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, 2, 0)
        self.affine = Affine(32)
        blocks, cin = [], 32
        for cout, down in _BLOCKS:
            blocks.append(ResidualBlock(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("means", torch.tensor(INPUT_MEANS).view(1, 3, 1, 1) / 255.0)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(chips))

    def features(self, chips: torch.Tensor) -> torch.Tensor:
        """The 256-d pooled features under the embedding (evaluation uses them for KID)."""
        x = (chips - self.means) * (255.0 / 256.0)
        x = F.relu(self.affine(self.conv(x)))
        x = F.max_pool2d(x, 3, 2)
        return self.blocks(x).mean(dim=(2, 3))

    def chips(self, crops: torch.Tensor) -> torch.Tensor:
        """Canonical crops in [-1, 1] (B, 3, S, S), warped into dlib's chip geometry (0..1)."""
        template = chip_template(MTCNN_FACE_POINTS, CHIP_SIZE, CHIP_PADDING)
        return chip_from_crop(crops * 0.5 + 0.5, template, CHIP_SIZE)

    def crop_features(self, crops: torch.Tensor) -> torch.Tensor:
        """Pooled 256-d features of canonical crops in [-1, 1] (B, 3, S, S)."""
        return self.features(self.chips(crops))

    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Embeddings of canonical crops in [-1, 1] (B, 3, S, S)."""
        return self.fc(self.crop_features(crops))


@torch.inference_mode()
def identity_features(identity: IdentityNet, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    """Pooled 256-d features (N, 256, float64) of uint8 canonical crops (N, S, S, 3), in batches:
    what the age probe is fitted on and what KID compares."""
    device = next(identity.parameters()).device  # evaluate runs the network on CUDA when present
    out = []
    for start in range(0, len(crops), batch):
        out.append(identity.crop_features(to_tensor(crops[start : start + batch], device)).double().cpu().numpy())
    return np.concatenate(out)


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between embeddings; below 0.6 means the same person."""
    return (a - b).norm(dim=-1)


def state_dict_from_dlib(path: str) -> dict[str, torch.Tensor]:
    """Convert dlib's .dat file into an IdentityNet state dict, checking every layer's geometry."""
    from .dlib_format import DlibFormatError, read_dnn

    layers = read_dnn(path)
    model = IdentityNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    affines = [m for m in model.modules() if isinstance(m, Affine)]
    dlib_convs = [layer for layer in layers if layer.kind == "con_4"]
    dlib_affines = [layer for layer in layers if layer.kind == "affine_"]
    (fc,) = [layer for layer in layers if layer.kind == "fc_2"]
    if len(convs) != len(dlib_convs) or len(affines) != len(dlib_affines):
        raise DlibFormatError("the file's layers do not match dlib_face_recognition_resnet_model_v1")
    state = {}
    names = {m: n for n, m in model.named_modules()}
    for conv, layer in zip(convs, dlib_convs, strict=True):
        f = layer.fields
        geometry = (f["num_filters"], f["nr"], f["stride_y"], f["padding_y"])
        if geometry != (
            conv.out_channels,
            conv.kernel_size[0],
            conv.stride[0],
            conv.padding[0],
        ):
            raise DlibFormatError(f"layer {names[conv]}: file has {geometry}")
        flat = layer.params.ravel()
        n_weights = conv.weight.numel()
        state[f"{names[conv]}.weight"] = torch.from_numpy(flat[:n_weights].reshape(conv.weight.shape))
        state[f"{names[conv]}.bias"] = torch.from_numpy(flat[n_weights:])
    for affine, layer in zip(affines, dlib_affines, strict=True):
        gamma, beta = np.split(layer.params.ravel(), 2)
        state[f"{names[affine]}.weight"] = torch.from_numpy(gamma)
        state[f"{names[affine]}.bias"] = torch.from_numpy(beta)
    state["fc.weight"] = torch.from_numpy(fc.params.reshape(fc.fields["num_inputs"], fc.fields["num_outputs"]).T.copy())
    state["means"] = model.means.clone()
    return state
