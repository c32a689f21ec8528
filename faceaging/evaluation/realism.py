"""How real the outputs look, and whether their shape changes: distribution and landmark measures.

- KID (Binkowski et al. 2018), the unbiased squared MMD with a cubic polynomial kernel, between
  outputs and real faces of a group, on the 256-d pooled features of the frozen dlib ResNet (the
  identity network; no other pretrained network is available offline). Lower is more alike.
- The azimuthally averaged power spectrum of grey crops: an upsampling lattice shows as a peak at
  high frequency in outputs / real.
- The face-shape ratio (eye line to mouth) / (eye distance), from MTCNN's landmarks: children have
  a shorter lower face than adults.
- Mottling: how blotchy the skin is (`mottling`), against real faces of the target group.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ..detect import FaceDetector
from ..training.data import detect_centre_face


def kid(a: np.ndarray, b: np.ndarray, a_index: np.ndarray | None = None, b_index: np.ndarray | None = None) -> float:
    """Unbiased squared MMD with k(x, y) = (x.y / d + 1)^3 (KID), times 1000 as usually reported.

    `a_index` / `b_index` say which original sample each row is: a bootstrap resample repeats
    rows, and pairs of one sample with itself are left out, as the plain estimate leaves out its
    diagonal.
    """
    d = a.shape[1]
    kaa, kbb, kab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    a_index = np.arange(len(a)) if a_index is None else a_index
    b_index = np.arange(len(b)) if b_index is None else b_index
    other_a, other_b = a_index[:, None] != a_index[None, :], b_index[:, None] != b_index[None, :]
    return float(1000 * (kaa[other_a].mean() + kbb[other_b].mean() - 2 * kab.mean()))


def paired_kid_difference(
    new: np.ndarray, old: np.ndarray, real: np.ndarray, resamples: int = 1000, seed: int = 0
) -> dict:
    """KID(new, real) - KID(old, real), with a 95% bootstrap interval.

    Row i of `new` and of `old` are two models' outputs for the same input face, so one resample
    of the input faces (and one of the real faces) serves both: the interval then reflects how
    much the difference depends on which faces were drawn. With a few dozen real faces per group
    a single KID is noisy; this says whether a gap between two models is more than that noise.
    """
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    for r in range(resamples):
        i, j = rng.integers(0, len(new), len(new)), rng.integers(0, len(real), len(real))
        differences[r] = kid(new[i], real[j], i, j) - kid(old[i], real[j], i, j)
    low, high = np.percentile(differences, [2.5, 97.5])
    before, after = kid(old, real), kid(new, real)
    return {
        "old": before,
        "new": after,
        "difference": after - before,
        "ci95": [float(low), float(high)],
        "share_of_resamples_new_lower": float(np.mean(differences < 0)),
    }


# Skin patches of the canonical crop, as fractions (centre x, centre y, half-width, half-height):
# both cheeks and the middle of the forehead, clear of eyes, brows, nostrils, lips, and of most
# hairlines and beards.
SKIN_PATCHES = ((0.29, 0.53, 0.07, 0.06), (0.71, 0.53, 0.07, 0.06), (0.5, 0.155, 0.11, 0.035))
# The band that holds blotches: between these Gaussian sigmas at 128 px (spots and patches of
# about 2-8 px; finer is pores and noise, coarser is the face's shading).
MOTTLING_SIGMAS = (1.0, 4.0)


@functools.cache
def skin_patches(size: int) -> np.ndarray:
    """Boolean (size, size) mask of SKIN_PATCHES in a canonical crop."""
    mask = np.zeros((size, size), np.uint8)
    for cx, cy, rx, ry in SKIN_PATCHES:
        cv2.ellipse(mask, (round(cx * size), round(cy * size)), (round(rx * size), round(ry * size)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def mottling(crops: np.ndarray) -> dict[str, float]:
    """How blotchy the skin of aligned crops (N, S, S, 3 uint8) is: the mean magnitude, inside the
    cheek and forehead patches, of CIELAB lightness (`luma`) and of chroma (a*, b*: `chroma`) in
    the band between MOTTLING_SIGMAS (at 128 px; scaled with S).

    Why this measure: amplified noise, JPEG blocks and freckles, and a colour shift with local
    structure, all show as variation of lightness and colour at the scale of spots, which real
    skin has too, but less (and its colour varies least). Wrinkles add lightness variation with
    age, so outputs are compared with real faces of the same group: a ratio near 1 is right,
    above it mottled, below it too smooth.
    """
    mask = skin_patches(crops.shape[1])
    # The band is the same share of the face at any crop size (the whole photo's own resolution).
    fine, coarse = (sigma * crops.shape[1] / 128 for sigma in MOTTLING_SIGMAS)
    luma, chroma = [], []
    for crop in crops:
        lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
        band = cv2.GaussianBlur(lab, (0, 0), fine) - cv2.GaussianBlur(lab, (0, 0), coarse)
        luma.append(np.abs(band[..., 0][mask]).mean())
        chroma.append(np.hypot(band[..., 1], band[..., 2])[mask].mean())
    return {"luma": float(np.mean(luma)), "chroma": float(np.mean(chroma))}


def skin_colour(crops: np.ndarray) -> np.ndarray:
    """The mean CIELAB colour (N, 3: L*, a*, b*) of each aligned crop's skin: the cheek and
    forehead patches, away from eyes, brows, mouth and hair."""
    mask = skin_patches(crops.shape[1])
    return np.stack([cv2.cvtColor(c.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[mask].mean(0) for c in crops])


def skin_tone_change(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """How far the skin's mean colour moves from `before` to `after` (aligned crops of the same
    faces): ΔE (CIELAB, 1976) median and 90th percentile, and the mean and extremes of ΔL*."""
    a, b = skin_colour(before), skin_colour(after)
    delta_e = np.linalg.norm(b - a, axis=1)
    lightness = b[:, 0] - a[:, 0]
    return {
        "faces": len(a),
        "delta_e_median": float(np.median(delta_e)),
        "delta_e_p90": float(np.percentile(delta_e, 90)),
        "delta_l_mean": float(lightness.mean()),
        "delta_l_min": float(lightness.min()),
        "delta_l_max": float(lightness.max()),
    }


def radial_spectrum(crops: np.ndarray, bins: int = 32) -> np.ndarray:
    """Mean azimuthally averaged log10 power of grey crops, from the lowest to the highest frequency."""
    grey = crops.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    size = grey.shape[-1]
    window = np.outer(np.hanning(size), np.hanning(size))
    power = (np.abs(np.fft.fftshift(np.fft.fft2(grey * window), axes=(1, 2))) ** 2).mean(0)
    yy, xx = np.indices(power.shape) - size // 2
    radius = np.hypot(xx, yy) / (size / 2)  # 1 = Nyquist along an axis
    which = np.minimum((radius * bins).astype(int), bins)
    sums = np.bincount(which.ravel(), power.ravel(), minlength=bins + 1)[:bins]
    counts = np.bincount(which.ravel(), minlength=bins + 1)[:bins]
    return np.log10(sums / np.maximum(counts, 1) + 1e-12)


def spectrum_report(outputs: np.ndarray, real: np.ndarray) -> dict:
    """log10(outputs / real) per radial band; a lattice is a local peak in the upper half."""
    diff = radial_spectrum(outputs) - radial_spectrum(real)
    upper = diff[len(diff) // 2 :]
    local_peak = float(np.max(upper[1:-1] - (upper[:-2] + upper[2:]) / 2)) if len(upper) > 2 else 0.0
    return {
        "log10_ratio": [round(float(v), 3) for v in diff],
        "mean_log10_ratio_upper_half": float(upper.mean()),
        "max_local_peak_upper_half": local_peak,
    }


def shape_ratios(detector: FaceDetector, crops: np.ndarray) -> np.ndarray:
    """(eye line to mouth centre) / (eye distance) per crop from MTCNN's landmarks; NaN where none."""
    out = np.full(len(crops), np.nan)
    for start in range(0, len(crops), 32):
        for i, points in enumerate(detect_centre_face(detector, list(crops[start : start + 32]))):
            if points is not None:
                eyes, mouth = points[:2].mean(0), points[3:].mean(0)
                out[start + i] = np.linalg.norm(mouth - eyes) / np.linalg.norm(points[1] - points[0])
    return out
