"""Similarity alignment from MTCNN's five landmarks to faceaging's canonical crop.

Training and inference both go through `align_face`, so the generator sees one geometry.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .images import scaled_size

CROP_SIZE = 128

# MTCNN landmark order: left eye, right eye, nose, left mouth corner, right mouth corner
# (image left/right). Positions are fractions of the crop side: UTKFace's mean MTCNN landmarks
# (detected on padded images), centred horizontally. The crop keeps UTKFace's framing, hair and
# chin included, so training faces need almost no invented border.
CANONICAL_LANDMARKS = np.array(
    [
        [0.3030, 0.2918],
        [0.6970, 0.2918],
        [0.5000, 0.5230],
        [0.3260, 0.6950],
        [0.6740, 0.6950],
    ],
    dtype=np.float64,
)


def canonical_landmarks(size: int = CROP_SIZE) -> np.ndarray:
    return CANONICAL_LANDMARKS * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping points src -> dst, as a 2x3 matrix.

    cv2.estimateAffinePartial2D is robust-fitting (RANSAC/LMEDS); with five clean points a
    plain least-squares fit is both exact and deterministic.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp_to(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp an HxWxC uint8 image with a 2x3 matrix into a size x size crop.

    Large downscales first go through an area resize, so that a face from a 12-megapixel photo
    is not aliased by bilinear sampling.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        factor = scale * 2
        h, w = image.shape[:2]
        new_w, new_h = scaled_size(image, factor)
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        pre = np.diag([w / new_w, h / new_h])  # crop <- original  =  crop <- small o small->original
        matrix = np.concatenate([matrix[:, :2] @ pre, matrix[:, 2:]], axis=1)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Cut the canonical crop out of an RGB uint8 image.

    Returns the size x size x 3 crop and the 2x3 matrix that maps image coordinates to crop
    coordinates (invert it to paste back).
    """
    matrix = similarity_transform(landmarks, canonical_landmarks(size))
    return warp_to(image, matrix, size), matrix


def chip_from_crop(crops: torch.Tensor, template: np.ndarray, chip_size: int) -> torch.Tensor:
    """Differentiably resample canonical crops (B,3,S,S) into another network's face chip.

    `template` holds where MTCNN's five landmarks land in that chip, in pixels. The warp is a
    fixed similarity, so gradients flow from the chip back to every crop pixel.
    """
    size = crops.shape[-1]
    # chip pixel -> crop pixel
    matrix = similarity_transform(template, canonical_landmarks(size))
    theta = _pixel_affine_to_theta(matrix, chip_size, size)
    theta_t = torch.as_tensor(theta, dtype=crops.dtype, device=crops.device).expand(crops.shape[0], 2, 3)
    grid = F.affine_grid(
        theta_t,
        [crops.shape[0], crops.shape[1], chip_size, chip_size],
        align_corners=False,
    )
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _pixel_affine_to_theta(matrix: np.ndarray, out_size: int, in_size: int) -> np.ndarray:
    """Convert a pixel-space map (output pixel -> input pixel) to affine_grid's normalised theta.

    With align_corners=False, pixel centre i sits at normalised (2i + 1) / n - 1.
    """

    def to_norm(n: int) -> np.ndarray:  # pixel coordinate -> normalised coordinate
        return np.array([[2 / n, 0, 1 / n - 1], [0, 2 / n, 1 / n - 1], [0, 0, 1]])

    full = np.vstack([matrix, [0, 0, 1]])
    theta = to_norm(in_size) @ full @ np.linalg.inv(to_norm(out_size))
    return theta[:2]


def to_tensor(crops: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 crops (B, S, S, 3) -> float (B, 3, S, S) in [-1, 1], what the networks take."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """The inverse of `to_tensor`, rounded: float (B, 3, S, S) in [-1, 1] -> uint8 (B, S, S, 3)."""
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
