"""Apply an age edit to the photo at the photo's own resolution: the edit is resampled, never the photo.

The generator works on a 128 px canonical crop, but what it makes is an edit (`models.AgeEdit`):
a flow, a smooth colour and luma shift, and gains on the luma detail of three frequency bands.
Here those parts are carried onto the photo's own pixels around one face (the head region):
- the alignment and the flow are composed into one sampling map, and the photo is sampled once;
- the band gains scale the matching bands of the photo at its own scale (the bands' widths grow
  with the face's size in the photo); detail finer than the crop holds is softened where the
  finest band is softened, and never amplified (it is mostly noise and JPEG blocks);
- the shift is brought up with a guided filter, so that it follows the photo's own edges;
- a soft head mask (GrabCut seeded by the face) bounds every change, so the background stays
  exactly as it was, while the hair around and above the crop takes the hair's colour change.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .align import canonical_landmarks, invert_affine
from .models import BAND_SIGMAS, AgeEdit, smooth_window

# The head region around the canonical crop, in crop fractions (left, top, right, bottom): hair
# above and beside the crop, and the jaw's edge below it, where the edit fades out. It reaches
# 0.75 of the crop above it: at 0.5, a full head of hair (Eileen Collins') kept a golden crown
# above the grey at 60+, cut off by the region's fading border.
HEAD_REGION = (-0.3, -0.75, 1.3, 1.2)
# The edit (flow, gains and shift, extended past the crop by its border values) fades out over
# this fraction of the crop towards the head region's border: no edge where the crop ends.
REGION_FADE = 0.18
# The flow and the band gains, measured inside the crop, are full up to this far inside the crop's
# border (crop fractions) and fade out just past it: carried further by their border values, the
# flow smeared hair into a pale background and the gains amplified that edge into a glow.
INNER_MARGIN = (-0.1, -0.1)
# The flow's mask is the head mask blurred by this fraction of the crop, and across the face it is
# full only this far inside the crop's border (crop fractions): the prototype flow is measured
# between blurry mean faces, and at the crop's sides (ears, hair, background) it stretched ears
# into streaks. Down the face it reaches as far as the gains: the chin's move is much of the age.
FLOW_FEATHER = 0.06
FLOW_MARGIN = (-0.15, -0.1)
# The longest side the head region is worked on at; a larger face gets its edit computed at this
# size and brought up to the photo's own resolution (the photo itself is still sampled natively,
# and its detail finer than this is kept as it is). A 1,400 x 1,500 px head took 0.34-0.47 s per
# age at 1,024 px and 0.16 s at 640; the shared HD portraits' heads (400-550 px) are under it.
WORK_SIDE = 640
# GrabCut runs on the head region scaled to this side: it finds the head's outline, not its detail.
MASK_SIDE = 160
# The two finest bands of the photo (under one crop pixel: the crop's finest band, and the one
# the photo has and the crop does not) are softened at most to this share towards a younger
# group, wrinkles apart (below): below it a face turns into a smooth patch in a sharp photo. The
# finer one is never amplified (it is mostly sensor noise and JPEG blocks).
FINE_GAIN_FLOOR = 0.85
# Towards younger groups, wrinkles and folds are softened further than the crop's own gains say: a
# band's gain g under 1 becomes g ** (1 + WRINKLE_POWER * w), where w is how wrinkle-like the
# band's detail is (`wrinkle_likeness`), and the two finest bands' floor falls from
# FINE_GAIN_FLOOR to 0 with w. At the crop's gains, the whole photos still read as teenagers or
# adults at 0-18 (the HD portraits' faces over 25: 18.3 years; the crops 10.7): the finest
# wrinkles the 128 px crop cannot hold, and the 64 px age judge still sees, stayed in the photo.
# Detail stronger than about WRINKLE_CONTRAST grey levels counts as an edge, not a wrinkle (without
# that bound Grace Hopper's spectacle frames were wiped out; at 5 her wrinkles stayed), and the eyes
# and lips are spared altogether (`eyes_and_lips`: their lids and lashes went soft). Chosen on the
# shared example photos and 60 held-out UTKFace photos (model card).
WRINKLE_POWER = 2.0
WRINKLE_CONTRAST = 15.0
# The fine detail those wrinkles held comes back as grain, up to the face's own level of spot-like
# fine detail (pores, sensor noise) and never more than was taken: without it the softened face was
# a smooth patch in a sharp photo (fine detail ratio 0.52 on Grace Hopper's portrait). The grain is
# fixed to the face (a seeded texture in crop coordinates, GRAIN_SIDE texels per crop pixel), so a
# photo always gets the same grain and in live video it moves with the face instead of shimmering.
GRAIN_SIDE = 4
# On a small face every band finer than this (work pixels) counts as fine detail for the grain: with
# only the bands under a crop pixel (a third of a photo pixel on the group photo's 44 px faces),
# their softened wrinkles took the photo's own finest detail with them.
GRAIN_SCALE = 1.5
# The photo is sampled once through the composed map, with this interpolation: bilinear sampling
# at fractional offsets blurs the finest detail by about a quarter.
SAMPLING = cv2.INTER_CUBIC
# Guided filter (He, Sun & Tang 2013) radius in crop pixels and its smoothing (0..1 units squared).
GUIDE_RADIUS = 2.0
GUIDE_EPS = 1e-3
# Towards younger groups the shift's local brightness pattern over the face (its mean taken out) is
# bounded softly to this ([-1, 1] units, ±38 grey levels): the learned luma edit paints a generic
# face of the target group in 16 px blocks, up to ±170 grey levels (a white chin with a dark goatee
# at 0-18, dark stubble and jaw at 19-29). Tuned on the shared example photos (mean dlib distance
# 0.335 -> 0.320 over all aged faces; 0.2 and 0.45 either side). Towards older groups the pattern
# is what reads as age on small faces: bounded there too, UTKFace photos under 40 read 5.7 years
# younger at 60+, so it is left whole. The 128 px crops always keep the whole edit.
FACE_LUMA_BOUND = 0.3
# Towards older groups the band gains amplify line-like detail (wrinkles, folds) fully and spots
# (freckles, pores, sensor noise, JPEG blocks) by this share of it (`line_likeness`): amplified
# whole, a freckled or sharp face at 60+ turned into a speckle of dark dots, the "mottled skin"
# users saw. Chosen on the shared example photos by the skin's spot-scale lightness at 60+ against
# what real faces gain between the two groups (mean log excess +0.175 whole, +0.107 at 0.5,
# +0.068 here, +0.032 at 0; held-out UTKFace photos, already near it, undershoot more as the share
# falls; model card). The 128 px crops keep the whole gains (on them spots are much of old skin).
SPOT_GAIN_SHARE = 0.25
# Greying is lightening and the loss of the hair's own colour: lightened only, golden-brown hair
# turned a brighter blond at 60+, not grey. Towards older groups the hair loses this share of its
# colour where it greys by HAIR_GREY_FULL grey levels or more, in proportion below that. Chosen by
# looking (Eileen Collins' hair: ash-grey at 0.6, a blue-grey cast at 1; black and grey hair have
# little colour to lose); on 60 held-out UTKFace photos run whole, faces read under 40 aged to 60+
# read 1.9 years older (36.2 -> 38.1).
HAIR_GREY_SHARE = 0.6
HAIR_GREY_FULL = 40.0


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


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine a after 2x3 affine b."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _zone_map(to_crop: np.ndarray, crop_size: int) -> np.ndarray:
    """A map into crop pixels, shifted to map into head-zone pixels (the zone starts at left, top)."""
    left, top, *_ = HEAD_REGION
    to_zone = to_crop.copy()
    to_zone[:, 2] -= (left * crop_size, top * crop_size)
    return to_zone


def _pull(field: np.ndarray, to_field: np.ndarray, size: tuple[int, int], border: int) -> np.ndarray:
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
        out = _pull(field, self.to_crop, self.work_size, border)
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
    return HeadRegion(box, scale, _compose(matrix, to_photo), inverse[:, :2], empty, empty, empty, face_mask(crop_size))


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
        _pull(region_fade(crop_size, margin), _zone_map(to_crop, crop_size), size, cv2.BORDER_CONSTANT)
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
    to_earlier = _compose(invert_affine(region.to_crop), moved.to_crop)
    moved.reach, moved.inner_reach, moved.flow_reach = (
        _pull(mask.astype(np.float32), to_earlier, moved.work_size, cv2.BORDER_CONSTANT).astype(np.float16)
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
    small_to_crop = _compose(to_crop, np.array([[w / small_size[0], 0, 0], [0, h / small_size[1], 0]]))
    zone = _pull(head_zone(crop_size), _zone_map(small_to_crop, crop_size), small_size, cv2.BORDER_CONSTANT)
    face = _pull(face_mask(crop_size), small_to_crop, small_size, cv2.BORDER_CONSTANT)
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


def line_likeness(band: np.ndarray, sigma: float) -> np.ndarray:
    """How line-like a band's detail is around each pixel, float32 0..1: the coherence of its
    structure tensor integrated over `sigma` px, near 1 along wrinkles and folds, near 0 on spots,
    pores and noise (no direction dominates)."""
    gx, gy = cv2.Sobel(band, cv2.CV_32F, 1, 0), cv2.Sobel(band, cv2.CV_32F, 0, 1)
    jxx, jxy, jyy = (cv2.GaussianBlur(a, (0, 0), sigma) for a in (gx * gx, gx * gy, gy * gy))
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)


def coarse_line_likeness(band: np.ndarray, sigma: float) -> np.ndarray:
    """`line_likeness` worked out on the band scaled down until `sigma` is about 2 px and brought
    back up: the coherence does not depend on scale, and a coarse band has nothing finer to lose."""
    factor = max(1, int(sigma // 2))
    if factor == 1:
        return line_likeness(band, sigma)
    h, w = band.shape
    small = cv2.resize(band, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(line_likeness(small, sigma / factor), (w, h), interpolation=cv2.INTER_LINEAR)


def wrinkle_likeness(band: np.ndarray, sigma: float, line: np.ndarray) -> np.ndarray:
    """How much a band's detail around each pixel looks like a wrinkle, float32 0..1: line-like
    (`line`, a `line_likeness`) and weaker than WRINKLE_CONTRAST grey levels (its rms over about
    `sigma` px), which strong edges are not."""
    side = 2 * round(sigma) + 1
    return line / (1 + cv2.blur(band * band, (side, side)) / WRINKLE_CONTRAST**2)


@lru_cache(maxsize=2)
def grain_texture(crop_size: int) -> np.ndarray:
    """White noise over the canonical crop, GRAIN_SIDE texels per crop pixel (float32), the same
    for every face."""
    side = crop_size * GRAIN_SIDE
    return np.random.default_rng(0).standard_normal((side, side)).astype(np.float32)


def skin_grain(
    region: HeadRegion, crop_size: int, fine: np.ndarray, kept: np.ndarray, spots: np.ndarray, scale: float
) -> np.ndarray:
    """Grain (work resolution, finer than `scale` work pixels) that gives back the fine detail
    taken from `fine`, leaving `kept`: up to FINE_GAIN_FLOOR of the face's level of fine detail
    where it is spot-like (`spots`, 0..1 weights), and never more than FINE_GAIN_FLOOR of what was
    there."""
    level = FINE_GAIN_FLOOR**2 * float((spots * fine * fine).sum() / max(float(spots.sum()), 1e-6))
    around = (2 * round(4 * region.crop_pixel) + 1,) * 2
    there = FINE_GAIN_FLOOR**2 * cv2.blur(fine * fine, around)
    left = cv2.blur(kept * kept, around)
    amount = np.sqrt(np.maximum(np.minimum(there, level) - left, 0))
    noise = _pull(grain_texture(crop_size), region.to_crop * GRAIN_SIDE, region.work_size, cv2.BORDER_WRAP)
    noise -= cv2.GaussianBlur(noise, (0, 0), scale)
    return amount * noise / max(float(noise.std()), 1e-6)


def kept_tone(groups_away: float) -> float:
    """The share of the shift's mean brightness change over the face that is kept (its mean tint
    never is), by how many groups the age is from the face's own: none at a neighbouring group,
    which keeps the complexion (the learned luma darkened faces by ΔE 6-8 at one group), all of it
    from two groups on, where a lighter or darker complexion is part of what reads as the age
    (halving it made adults sent to 0-18 look three years older to the age judge)."""
    return float(np.clip(groups_away - 1, 0, 1))


def split_shift(
    shift: np.ndarray,
    face_weights: np.ndarray,
    keep_tone: float,
    luma_bound: float | None = None,
    prior: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The shift (3, S, S) as (over the face (3, S, S), lightening beyond it (S, S), and that
    lightening's mean over the crop beyond the face).

    Over the face its mean colour is removed, so the photo's white balance stays (local changes of
    tone and shading stay, their brightness within about ±`luma_bound` when one is given;
    `keep_tone` keeps that share of the mean brightness change). Beyond the face (hair, ears, and
    background seen through hair) only the shift's lightening is kept: tinting or darkening there
    painted brown smears on bald and white heads at 0-18. Given the prior's part of the shift
    (3, S, S), the lightening there keeps the prior's pattern, and the rest of the shift (the
    learned edit's) lightens it by one amount, its mean beyond the face.
    """
    mean = (shift * face_weights).sum(axis=(1, 2), keepdims=True) / face_weights.sum()
    local = shift - mean
    if luma_bound is not None:
        luma = local.mean(0, keepdims=True)
        local += luma_bound * np.tanh(luma / luma_bound) - luma
    face = (local + keep_tone * mean.mean(0, keepdims=True)) * face_weights
    beyond = 1 - face_weights
    lightening = shift.mean(0)
    if prior is not None:  # the prior's pattern, and the rest (the learned edit's) as one amount
        pattern = prior.mean(0)
        lightening = pattern + max(float(((lightening - pattern) * beyond).sum() / beyond.sum()), 0.0)
    mean_lightening = max(float((lightening * beyond).sum() / beyond.sum()), 0.0)
    return face, np.maximum(lightening, 0) * beyond, mean_lightening


def band_detail(luma: np.ndarray, region: HeadRegion, gains: np.ndarray, younger: bool, older: bool) -> np.ndarray:
    """The change of the luma's detail (work resolution) that the edit's band gains (B, S, S) make:
    each band of the crop is the same band of the photo at σ × the face's scale; towards older groups
    spots gain a share only (SPOT_GAIN_SHARE), towards younger groups wrinkles fade further
    (WRINKLE_POWER) and the skin keeps its grain (GRAIN_SIDE)."""
    pixel, size = region.crop_pixel, gains.shape[-1]
    # Band b of the crop (σ = 1, 2, 4 crop pixels) is the same band of the photo at σ × pixel; the
    # finest band of the photo, under half a crop pixel, has no counterpart in the crop.
    sigmas = (0.5, *BAND_SIGMAS)
    levels = [luma] + [cv2.GaussianBlur(luma, (0, 0), s * pixel) for s in sigmas]
    bands = [a - b for a, b in zip(levels, levels[1:], strict=False)]
    work_gains = region.to_work(gains)
    floor = FINE_GAIN_FLOOR
    if younger:  # wrinkles softened further than the crop says: see WRINKLE_POWER
        lines = [coarse_line_likeness(bands[b + 1], sigmas[b + 1] * pixel) for b in range(len(gains))]
        face_only = 1 - region.to_work(eyes_and_lips(size)[None], cv2.BORDER_CONSTANT)[..., 0]
        wrinkles = [
            face_only * wrinkle_likeness(bands[b + 1], sigmas[b + 1] * pixel, lines[b]) for b in range(len(gains))
        ]
        floor = FINE_GAIN_FLOOR * (1 - wrinkles[0])
    work_gains[..., 0] = np.maximum(work_gains[..., 0], floor)
    for b in range(len(gains)):
        gain = work_gains[..., b]
        if younger:
            work_gains[..., b] = np.where(gain < 1, np.maximum(gain, 1e-3) ** (1 + WRINKLE_POWER * wrinkles[b]), gain)
        elif older:  # spots amplified by a share only: see SPOT_GAIN_SHARE
            share = SPOT_GAIN_SHARE + (1 - SPOT_GAIN_SHARE) * line_likeness(bands[b + 1], sigmas[b + 1] * pixel)
            work_gains[..., b] = np.where(gain > 1, 1 + (gain - 1) * share, gain)
    # each band of the photo with its gain: the finest, under half a crop pixel, never amplified
    band_gains = [np.minimum(work_gains[..., 0], 1.0), *work_gains.transpose(2, 0, 1)]
    detail = sum((gain - 1) * band for gain, band in zip(band_gains, bands, strict=True))
    if younger:  # the fine detail taken from wrinkles comes back as grain: see GRAIN_SIDE
        # what counts as fine: under a crop pixel, and on a small face every band under GRAIN_SCALE
        scale = max(pixel, GRAIN_SCALE)
        fine_bands = [i for i, s in enumerate(sigmas) if s * pixel <= scale]
        fine = sum(bands[i] for i in fine_bands)
        kept = sum(band_gains[i] * bands[i] for i in fine_bands)
        spots = (1 - lines[0]) * region.inner_reach.astype(np.float32)
        detail += skin_grain(region, size, fine, kept, spots, sigmas[fine_bands[-1]] * pixel)
    return detail


def render_edit(
    photo: np.ndarray, region: HeadRegion, edit: AgeEdit, source: float = 0.0, position: float = 0.0
) -> np.ndarray:
    """The head region of `photo` (RGB uint8) with one face's edit (a batch of one) to age
    `position` applied, float32 at the photo's own resolution (y1 - y0, x1 - x0, 3). `source`, the
    face's own group, says how much of the tone is kept (`kept_tone`) and which way the hair goes:
    it greys towards older groups only (towards 0-18 the prototypes' lighter surroundings lightened
    it by 25-50 grey levels)."""
    size = edit.flow.shape[-1]
    younger, older = position < source, position > source
    flow = edit.flow[0].float().cpu().numpy()
    tone = kept_tone(abs(position - source))
    crop_shift = edit.shift[0].float().cpu().numpy()
    # Towards older groups, beyond the face the learned edit's lightening is taken as one amount: it
    # lightens what it takes for background (UTKFace's older faces are photographed against lighter
    # ones; up to +200 grey levels at 60+), and where its outline and the head mask's differed, hair
    # turned into a pale, translucent ghost beside the cheek (Eileen Collins at 50-59 and 60+). Taken
    # out altogether, the hair hardly greyed. Towards younger groups no ghost was seen, and taken as
    # one amount there the HD portraits read 2 years older at 0-18: left as it was.
    learned = edit.learned[0].float().cpu().numpy() if older and edit.learned is not None else None
    prior = None if learned is None else crop_shift - learned
    bound = FACE_LUMA_BOUND if younger else None
    face_shift, lightening, mean_lightening = split_shift(crop_shift, region.face_weights, tone, bound, prior)
    gains = edit.gains[0].float().cpu().numpy()
    # One sampling map: the flow (crop pixels) taken back through the alignment into photo pixels.
    reach, inner_reach = region.reach.astype(np.float32), region.inner_reach.astype(np.float32)
    step = region.to_work(flow) * (size / 2) @ region.crop_to_photo.T.astype(np.float32)
    grid_x, grid_y = region.grid
    moves = step * region.flow_reach.astype(np.float32)[..., None]
    map_x, map_y = grid_x + moves[..., 0], grid_y + moves[..., 1]
    warped = cv2.remap(photo, map_x, map_y, SAMPLING, borderMode=cv2.BORDER_REFLECT).astype(np.float32)

    luma = warped.mean(2)
    pixel = region.crop_pixel
    detail = band_detail(luma, region, gains, younger, older) * inner_reach
    radius = max(1, round(GUIDE_RADIUS * pixel))
    shift = region.to_work(np.concatenate([face_shift, lightening[None]])) * 127.5
    # Inside the crop, where it was measured, the lightening keeps its own pattern; past the crop
    # (the hair above and beside it) it is one amount, towards older groups only: carried there by
    # its border values, it greyed the temples in white streaks under a dark crown, and towards
    # 0-18 the prototypes' lighter surroundings lightened the hair by 25-50 grey levels.
    inside = _pull(
        region_fade(size, (-0.1, -0.1)), _zone_map(region.to_crop, size), region.work_size, cv2.BORDER_CONSTANT
    )
    beyond_crop = mean_lightening * 127.5 * older * (1 - region.to_work(region.face_weights[None])[..., 0])
    shift[..., 3] = inside * shift[..., 3] + (1 - inside) * beyond_crop
    # The luma as the guide: a colour guide cost four times as much for no visible difference.
    shift = cv2.ximgproc.guidedFilter(luma, shift, radius, GUIDE_EPS * 255**2)
    # Greying lightens dark hair most; what is already light (grey hair, a pale background seen
    # through it) can hardly get lighter. It also fades out twice as fast at the mask's soft edge,
    # where background shows between hair: lightened there, it glowed beside ears and curls.
    greying = shift[..., 3] * (1 - luma / 255) * reach
    change = reach[..., None] * (shift[..., :3] + greying[..., None]) + detail[..., None]
    if older:  # see HAIR_GREY_SHARE
        lost = HAIR_GREY_SHARE * np.clip(greying / HAIR_GREY_FULL, 0, 1)
        change -= lost[..., None] * (warped - luma[..., None])

    x0, y0, x1, y1 = region.box
    if region.scale < 1:  # the edit was worked out smaller: bring it up, and sample the photo at its own size
        native = (x1 - x0, y1 - y0)
        moves, change = (cv2.resize(a, native, interpolation=cv2.INTER_LINEAR) for a in (moves, change))
        map_x = np.arange(x0, x1, dtype=np.float32)[None, :] + moves[..., 0]
        map_y = np.arange(y0, y1, dtype=np.float32)[:, None] + moves[..., 1]
        warped = cv2.remap(photo, map_x, map_y, SAMPLING, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    return warped + change


def composite(photo: np.ndarray, rendered: list[tuple[HeadRegion, np.ndarray]]) -> np.ndarray:
    """The photo with each rendered head region's change added (RGB uint8). Outside the heads the
    change is exactly zero, so the photo is left as it was, pixel for pixel."""
    out = photo.copy()
    for region, pixels in rendered:
        x0, y0, x1, y1 = region.box
        original = photo[y0:y1, x0:x1].astype(np.float32)
        current = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(current + (pixels - original) + 0.5, 0, 255).astype(np.uint8)
    return out
