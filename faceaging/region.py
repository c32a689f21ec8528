"""The head region around one face in a photo, and its masks: where an age edit may change the photo.

Made once per face (GrabCut, 30-100 ms) and carried to later video frames by a warp
(`moved_region`, ~1 ms). Every mask is the same for every age, so the six renders share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .align import canonical_landmarks, invert_affine
from .edit import smooth_window

# The head region around the canonical crop, in crop fractions (left, top, right, bottom): the
# hair above and beside the crop (a full head of hair reaches 0.75 of the crop up), the jaw below.
HEAD_REGION = (-0.3, -0.75, 1.3, 1.2)
# The edit fades out over this fraction of the crop towards the region's border: no edge.
REGION_FADE = 0.18
# The band gains are full up to this far inside the crop's border (crop fractions), fading just
# past it: carried further by their border values they amplified the hair's edge into a glow.
INNER_MARGIN = (-0.1, -0.1)
# The flow fades with the head mask blurred by this fraction of the crop, and across the face ends
# this far inside the crop: the prototype flow stretched ears into streaks at the crop's sides.
FLOW_FEATHER = 0.06
FLOW_MARGIN = (-0.15, -0.1)
# The longest side a head region's edit is worked out at (the photo is still sampled natively).
WORK_SIDE = 640
# GrabCut runs at this side: it finds the head's outline, not its detail.
MASK_SIDE = 160
# GrabCut's mask and the shift follow the photo's own edges through a guided filter (He, Sun & Tang
# 2013): radius in crop pixels and its smoothing (0..1 units squared).
GUIDE_RADIUS = 2.0
GUIDE_EPS = 1e-3


@lru_cache(maxsize=4)
def face_mask(size: int) -> np.ndarray:
    """A soft ellipse over the face in canonical-crop coordinates (float32, 0..1): brows to chin,
    cheek to cheek, fading over ~10% of the crop."""
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (size // 2, int(size * 0.54)), (int(size * 0.40), int(size * 0.46)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), size * 0.05)


@lru_cache(maxsize=4)
def eyes_and_lips(size: int) -> np.ndarray:
    """The eyes (lids and lashes) and the lips in canonical-crop coordinates (float32 0..1): their
    edges are the face's own, never wrinkles to soften (`wrinkle_likeness`)."""
    mask = np.zeros((size, size), np.float32)
    left_eye, right_eye, _, mouth_left, mouth_right = canonical_landmarks(size)
    eye_axes = (round(0.1 * size), round(0.05 * size))
    for eye in (left_eye, right_eye):
        cv2.ellipse(mask, tuple(np.round(eye).astype(int)), eye_axes, 0, 0, 360, 1.0, -1)
    centre = np.round((mouth_left + mouth_right) / 2).astype(int)
    half_width = round(float(mouth_right[0] - mouth_left[0]) / 2 + 0.03 * size)
    cv2.ellipse(mask, tuple(centre), (half_width, round(0.07 * size)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), size * 0.015)


@lru_cache(maxsize=4)
def head_zone(size: int) -> np.ndarray:
    """Where a head can be, in crop coordinates over the head region's extent (float32 0..1):
    the face and the hair above and beside it, not the neck and shoulders."""
    left, top, right, bottom = HEAD_REGION
    w, h = round((right - left) * size), round((bottom - top) * size)
    zone = np.zeros((h, w), np.float32)
    centre = (round((0.5 - left) * size), round((0.40 - top) * size))
    # Taller above its centre (the crown) than below it, where a wider zone would reach the collar.
    cv2.ellipse(zone, centre, (round(0.75 * size), round(1.07 * size)), 0, 180, 360, 1.0, -1)
    cv2.ellipse(zone, centre, (round(0.75 * size), round(0.82 * size)), 0, 0, 180, 1.0, -1)
    zone[round((1.1 - top) * size) :] = 0  # the neck and shoulders
    return cv2.GaussianBlur(zone, (0, 0), size * 0.04)


@lru_cache(maxsize=8)
def region_fade(size: int, margin: tuple[float, float] | None = None) -> np.ndarray:
    """In head-zone coordinates: 1 over the crop grown by `margin` (crop fractions, across and
    down), falling to 0 over the next REGION_FADE of the crop (`margin` = None: 1 over the whole
    region but its fading border). The edit is only measured inside the crop, and must end
    without an edge."""
    left, top, right, bottom = HEAD_REGION
    w, h = round((right - left) * size), round((bottom - top) * size)
    fade = REGION_FADE * size
    if margin is None:
        rows, cols = smooth_window(h, fade, h - fade, fade), smooth_window(w, fade, w - fade, fade)
    else:
        across, down = margin
        rows = smooth_window(h, (-top - down) * size, (1 - top + down) * size, fade)
        cols = smooth_window(w, (-left - across) * size, (1 - left + across) * size, fade)
    return np.outer(rows, cols).astype(np.float32)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine a after 2x3 affine b."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def zone_map(to_crop: np.ndarray, crop_size: int) -> np.ndarray:
    """A map into crop pixels, shifted to map into head-zone pixels (the zone starts at left, top)."""
    left, top, *_ = HEAD_REGION
    to_zone = to_crop.copy()
    to_zone[:, 2] -= (left * crop_size, top * crop_size)
    return to_zone


def pull(field: np.ndarray, to_field: np.ndarray, size: tuple[int, int], border: int) -> np.ndarray:
    """Sample `field` (H, W) or (H, W, C) at to_field(pixel) for every pixel of an image of `size`."""
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(field, to_field, size, flags=flags, borderMode=border)


@dataclass
class HeadRegion:
    """One face's head region in a photo, worked on at `scale` (≤ 1) of the photo's resolution;
    its masks are the same for every age, so they are made once per face."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photo
    scale: float  # work pixels per photo pixel
    to_crop: np.ndarray  # 2x3: work pixel -> crop pixel
    crop_to_photo: np.ndarray  # 2x2: a step in crop pixels -> the step in photo pixels
    # Kept in float16 for every face of every photo a server holds for its slider; float32 in use.
    reach: np.ndarray  # (h, w) the head mask times the region's fade: how much of the edit applies
    inner_reach: np.ndarray  # (h, w) the same, ending just past the crop: where the band gains apply
    flow_reach: np.ndarray  # (h, w) a blurred head mask, ending just past the crop: how far pixels move
    face_weights: np.ndarray  # (S, S) the face in the crop: the colour cast over it is removed

    @property
    def work_size(self) -> tuple[int, int]:
        return self.reach.shape[1], self.reach.shape[0]

    @property
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Photo coordinates (x, y) of each work pixel, float32 (h, w) each; pixel centres kept
        aligned as cv2.resize does."""
        x0, y0 = self.box[:2]
        w, h = self.work_size
        xs = (np.arange(w, dtype=np.float32) + 0.5) / self.scale - 0.5 + x0
        ys = (np.arange(h, dtype=np.float32) + 0.5) / self.scale - 0.5 + y0
        return tuple(np.broadcast_to(a, (h, w)).astype(np.float32) for a in (xs[None, :], ys[:, None]))

    @property
    def crop_pixel(self) -> float:
        """Work pixels per crop pixel: the bands' scale at work resolution."""
        return float(1 / np.sqrt(abs(np.linalg.det(self.to_crop[:, :2]))))

    def to_work(self, field: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        """A crop-space field (C, S, S) onto the work grid, bilinear: (h, w, C). Past the crop it is
        extended by its border values (`border`: OpenCV's border mode; BORDER_CONSTANT: zero)."""
        field = np.ascontiguousarray(field.transpose(1, 2, 0))
        out = pull(field, self.to_crop, self.work_size, border)
        return out if out.ndim == 3 else out[..., None]


def _region_frame(shape: tuple[int, ...], matrix: np.ndarray, crop_size: int) -> HeadRegion | None:
    """The head region's place in a photo of `shape` for the face that `matrix` (photo -> crop)
    aligns, masks still empty; None when it lies outside the photo."""
    h, w = shape[:2]
    inverse = invert_affine(matrix)
    left, top, right, bottom = HEAD_REGION
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]]) * crop_size
    corners = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [w, h])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    scale = float(min(1.0, WORK_SIDE / max(x1 - x0, y1 - y0)))
    size = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
    # work pixel q -> photo point p, with pixel centres kept aligned as cv2.resize does
    to_photo = np.array([[1 / scale, 0, 0.5 / scale - 0.5 + x0], [0, 1 / scale, 0.5 / scale - 0.5 + y0]])
    box = (int(x0), int(y0), int(x1), int(y1))
    empty = np.zeros((size[1], size[0]), np.float16)
    return HeadRegion(box, scale, compose(matrix, to_photo), inverse[:, :2], empty, empty, empty, face_mask(crop_size))


def head_region(photo: np.ndarray, matrix: np.ndarray, crop_size: int) -> HeadRegion | None:
    """The head region of the face that `matrix` (photo -> crop) aligns, with its mask; None
    when it lies outside the photo."""
    region = _region_frame(photo.shape, matrix, crop_size)
    if region is None:
        return None
    size, to_crop = region.work_size, region.to_crop
    work = cv2.remap(photo, *region.grid, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    head = _head_mask(work, to_crop, crop_size, region.crop_pixel)
    fade, inner_fade, flow_fade = (
        pull(region_fade(crop_size, margin), zone_map(to_crop, crop_size), size, cv2.BORDER_CONSTANT)
        for margin in (None, INNER_MARGIN, FLOW_MARGIN)
    )
    # The flow fades out with a blurred head mask: cut at the mask's own edge, the displacement fell
    # from full to nothing within a few pixels and smeared ears and curls into streaks.
    moving = cv2.GaussianBlur(head, (0, 0), FLOW_FEATHER * crop_size * region.crop_pixel)
    region.reach = (head * fade).astype(np.float16)
    region.inner_reach = (head * inner_fade).astype(np.float16)
    region.flow_reach = (np.maximum(moving, head) * flow_fade).astype(np.float16)
    return region


def moved_region(region: HeadRegion, shape: tuple[int, ...], matrix: np.ndarray, crop_size: int) -> HeadRegion | None:
    """`region`, made on an earlier frame, carried to where the face that `matrix` aligns is now in
    a frame of `shape`: its masks move with the face (a warp, ~1 ms) instead of being found again
    (GrabCut, 30-100 ms). What was outside the earlier region stays outside the head."""
    moved = _region_frame(shape, matrix, crop_size)
    if moved is None:
        return None
    # new work pixel -> crop pixel -> earlier work pixel
    to_earlier = compose(invert_affine(region.to_crop), moved.to_crop)
    moved.reach, moved.inner_reach, moved.flow_reach = (
        pull(mask.astype(np.float32), to_earlier, moved.work_size, cv2.BORDER_CONSTANT).astype(np.float16)
        for mask in (region.reach, region.inner_reach, region.flow_reach)
    )
    return moved


def _head_mask(work: np.ndarray, to_crop: np.ndarray, crop_size: int, crop_pixel: float) -> np.ndarray:
    """Soft head (face and hair) mask at work resolution: GrabCut on a small copy, seeded with
    the face as sure foreground and everything outside the head zone as sure background, then
    feathered along the photo's own edges with a guided filter."""
    h, w = work.shape[:2]
    factor = min(1.0, MASK_SIDE / max(w, h))
    small_size = (max(8, round(w * factor)), max(8, round(h * factor)))
    small = cv2.resize(work, small_size, interpolation=cv2.INTER_AREA)
    small_to_crop = compose(to_crop, np.array([[w / small_size[0], 0, 0], [0, h / small_size[1], 0]]))
    zone = pull(head_zone(crop_size), zone_map(small_to_crop, crop_size), small_size, cv2.BORDER_CONSTANT)
    face = pull(face_mask(crop_size), small_to_crop, small_size, cv2.BORDER_CONSTANT)
    seeds = np.full(small.shape[:2], cv2.GC_BGD, np.uint8)
    seeds[zone > 0.05] = cv2.GC_PR_BGD
    seeds[zone > 0.5] = cv2.GC_PR_FGD
    seeds[face > 0.8] = cv2.GC_FGD
    head = zone
    if (seeds == cv2.GC_BGD).any() and (seeds == cv2.GC_FGD).any():
        try:
            # GrabCut seeds its colour models with k-means on OpenCV's global random state: left as
            # it was, the same photo got a different head mask on every upload after the first.
            cv2.setRNGSeed(0)
            cv2.grabCut(small, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)
            head = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32) * zone
        except cv2.error:  # a flat image gives GrabCut nothing to model; the zone alone is used
            pass
    head = np.maximum(cv2.erode(head, np.ones((3, 3), np.uint8)), face)  # GrabCut's edge often takes in background
    head = cv2.resize(cv2.GaussianBlur(head, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    radius = max(1, round(GUIDE_RADIUS * crop_pixel))
    head = np.clip(cv2.ximgproc.guidedFilter(work, head, radius, GUIDE_EPS * 255**2), 0, 1)
    head[head < 0.02] = 0  # the guided filter's faint ringing must not reach the background
    return head
