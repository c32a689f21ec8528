"""Put aged crops back into the photo: a feathered inverse warp that keeps the photo's fine detail near its own age."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .align import invert_affine


@lru_cache(maxsize=4)
def face_mask(size: int) -> np.ndarray:
    """A soft ellipse over the face in canonical-crop coordinates (float32, 0..1).

    It covers brows to chin and cheek to cheek, and fades over ~10% of the crop, so no seam or
    rectangle shows where the generated face meets the photo.
    """
    mask = np.zeros((size, size), np.float32)
    centre = (size // 2, int(size * 0.54))
    axes = (int(size * 0.40), int(size * 0.46))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    sigma = size * 0.05
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def paste_back(
    photo: np.ndarray,
    crop: np.ndarray,
    matrix: np.ndarray,
    reference: np.ndarray | None = None,
    detail: float = 0.0,
) -> np.ndarray:
    """Blend a canonical crop into the photo (RGB uint8) through the inverse of the alignment matrix.

    With `reference` (the input's own crop) and `detail` > 0, that share of the photo's detail
    finer than the crop can hold (the photo minus the warped reference) is kept on the face, so a
    face near its own age stays as sharp as the photo instead of being a 128 px upscale.
    """
    h, w = photo.shape[:2]
    size = crop.shape[0]
    inverse = invert_affine(matrix)
    # Only warp the face's bounding region: a 12-megapixel photo need not be touched elsewhere.
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [w, h])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return photo
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    region = (x1 - x0, y1 - y0)

    def warp(image: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(image, shifted, region, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    face = warp(crop).astype(np.float32)
    alpha = cv2.warpAffine(face_mask(size), shifted, region, flags=cv2.INTER_LINEAR)[..., None]
    out = photo.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32)
    if reference is not None and detail > 0:
        face += detail * (patch - warp(reference).astype(np.float32))
    out[y0:y1, x0:x1] = np.clip(alpha * face + (1 - alpha) * patch + 0.5, 0, 255).astype(np.uint8)
    return out
