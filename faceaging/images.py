"""Reading user photos safely: any mode, EXIF orientation, and explicit size limits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 60_000_000  # refused above this (decompression bombs included)
WORK_SIDE = 2048  # larger photos are scaled down to this longest side before processing
MIN_SIDE = 32
MAX_ASPECT = 8  # longest side / shortest side; no photo of a face is a banner
NOT_AN_IMAGE = "This file is not an image we can read; please upload a JPEG, PNG or WebP photo."


# Every file name a photo may have (compared in lower case), wherever photos are looked for.
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def is_photo(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES


def photos_in(folder: str | Path) -> list[Path]:
    """The photos directly in `folder`, in name order."""
    return sorted(p for p in Path(folder).iterdir() if is_photo(p))


def scaled_size(image: np.ndarray, scale: float) -> tuple[int, int]:
    """(width, height) of `image` scaled by `scale`, at least one pixel each."""
    return max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))


class FaceAgingError(ValueError):
    """A problem with the user's input, phrased so the user knows what to do."""


def load_image(source: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """An RGB uint8 array from a path, bytes, a PIL image or an array, within the size limits."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FaceAgingError(f"No image at {path}.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise FaceAgingError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB; please use a smaller photo.")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise FaceAgingError("The file is empty; please upload a photo (JPEG, PNG or WebP).")
    if len(data) > MAX_FILE_BYTES:
        raise FaceAgingError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB; please use a smaller photo.")
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        raise FaceAgingError(
            "This file is not an image we can read; please upload a JPEG, PNG or WebP photo."
        ) from None
    except Image.DecompressionBombError:
        raise _too_large() from None
    return _from_pil(image)


def _too_large() -> FaceAgingError:
    return FaceAgingError(f"The image has more than {MAX_PIXELS // 1_000_000} megapixels; please use a smaller photo.")


def _from_pil(image: Image.Image) -> np.ndarray:
    if image.width * image.height > MAX_PIXELS:
        raise _too_large()
    if max(image.size) > MAX_ASPECT * min(image.size):
        raise FaceAgingError(
            f"The image is very long and thin ({image.width}x{image.height}); please crop it closer to the face."
        )
    try:
        image.seek(0)  # animated images: the first frame
        # JPEG: decode at a reduced scale when that suffices (before anything loads the pixels).
        image.draft("RGB", (WORK_SIDE, WORK_SIDE))
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except Image.DecompressionBombError:
        raise _too_large() from None
    except (OSError, ValueError, SyntaxError):
        raise FaceAgingError("The image file is damaged or truncated; please upload it again or try another.") from None
    if min(image.size) < MIN_SIDE:
        raise FaceAgingError(f"The image is smaller than {MIN_SIDE} pixels on a side; please use a larger photo.")
    if max(image.size) > WORK_SIDE:
        image = image.copy()
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale to 8 bits by the actual range, not by clipping.
        values = np.asarray(image, dtype=np.float64)
        top = values.max() or 1.0
        image = Image.fromarray((values / top * 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise FaceAgingError("Expected an RGB image.")
    if array.dtype != np.uint8:
        top = float(array.max()) or 1.0
        array = (array.astype(np.float64) / (top if top > 1 else 1.0) * 255).clip(0, 255).astype(np.uint8)
    return _from_pil(Image.fromarray(array[..., :3] if array.shape[2] == 4 else array))
