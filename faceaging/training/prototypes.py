"""The prototype prior: per-group mean faces, the flow between them, and their band amplitudes.

Burt & Perrett's prototypes, with Tiddeman et al.'s band-wise texture: a few minutes on a CPU
over the aligned training faces (never the held-out ones). The results become buffers of the
generator's `AgePrior` and ship inside its weights file; no face image is stored.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..ages import NUM_GROUPS
from ..align import to_tensor
from ..edit import BAND_SIGMAS, band_amplitude, gaussian_blur, split_bands
from ..prior import AgePrior
from .data import FaceSet

# Gains of the shape, texture and colour differences. Colour is halved: even with balanced cells,
# the groups' photos differ in lighting and camera as well as in age.
DEFAULT_GAINS = (1.0, 1.0, 0.5)
FLOW_SMOOTHING = 4.0  # px: the prototypes' flow is a head shape, not a texture


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).contiguous()


def local_amplitude(x: torch.Tensor) -> torch.Tensor:
    """Per band, the local mean of |band| of the grey image, (B, bands, H, W)."""
    bands, _ = split_bands(_grey(x))
    return torch.cat([band_amplitude(band, b) for b, band in enumerate(bands)], 1)


def demographic_cells(names: list[str]) -> np.ndarray:
    """UTKFace's `AGE_GENDER_RACE_...` names -> one "gender_race" label per face ("?" where missing)."""
    out = []
    for name in names:
        parts = name.split("_")
        out.append(f"{parts[1]}_{parts[2]}" if len(parts) > 3 and parts[1].isdigit() and parts[2].isdigit() else "?")
    return np.array(out)


def prototype_flow(prototype: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2), in pixels, from a group's prototype to the mean face: the group's
    pixel p shows what the mean face shows at p + flow(p)."""

    def grey(a: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.clip(a, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(grey(prototype), grey(mean), None)
    return cv2.GaussianBlur(flow, (0, 0), FLOW_SMOOTHING)


@torch.no_grad()
def build_prior(faces: FaceSet, size: int = 128, batch: int = 256) -> tuple[AgePrior, np.ndarray]:
    """An AgePrior from training faces, and the six prototypes (uint8, for looking at only)."""
    groups = faces.groups
    cells = demographic_cells(faces.names)
    means = np.zeros((NUM_GROUPS, size, size, 3), np.float64)
    amplitude = torch.zeros(NUM_GROUPS, len(BAND_SIGMAS), size, size)
    present = [g for g in range(NUM_GROUPS) if (groups == g).any()]
    if not present:
        raise ValueError("no training faces to build the prototypes from")
    for g in present:
        # Each (gender, ethnicity) cell weighs the same in every group: UTKFace's groups differ in
        # who is in them, and an unweighted mean would turn that into a change of skin tone.
        in_group = groups == g
        weights = np.zeros(len(groups))
        for cell in np.unique(cells[in_group]):
            members = in_group & (cells == cell)
            weights[members] = 1.0 / members.sum()
        idx = np.flatnonzero(in_group)
        w = weights[idx] / weights[idx].sum()
        for start in range(0, len(idx), batch):
            part, pw = faces.images[idx[start : start + batch]], w[start : start + batch]
            means[g] += np.tensordot(pw, part.astype(np.float64), axes=1)
            amplitude[g] += torch.einsum("b,b...->...", torch.from_numpy(pw).float(), local_amplitude(to_tensor(part)))
    # A group without faces (tiny test sets only) gets the average of the others: no change to it.
    for g in set(range(NUM_GROUPS)) - set(present):
        means[g] = means[present].mean(0)
        amplitude[g] = amplitude[present].mean(0)
    # The mean of the six prototypes, so that every group weighs the same however uneven the data.
    centre = means.mean(0)
    prior = AgePrior(size)
    for g in range(NUM_GROUPS):
        flow = prototype_flow(means[g], centre)
        prior.flow[g] = torch.from_numpy(flow * (2.0 / size)).permute(2, 0, 1).float()
    prior.log_amplitude.copy_(torch.log(amplitude + 1e-3))
    low_pass = gaussian_blur(torch.from_numpy(means).permute(0, 3, 1, 2).float() / 127.5 - 1, BAND_SIGMAS[-1])
    prior.colour.copy_(low_pass)
    prior.gains.copy_(torch.tensor(DEFAULT_GAINS))
    return prior, np.clip(means + 0.5, 0, 255).astype(np.uint8)
