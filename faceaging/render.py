"""The age edit on the photo at the photo's own resolution: the edit is resampled, never the photo.

The generator works on a 128 px canonical crop and says what to change as an `AgeEdit` (a flow, a
smooth colour and luma shift, gains on the luma detail of three bands). Two renderers apply it:
- `AgeEdit.apply_to`, the **crop renderer**: the model's own 128 px crops, which `evaluate`
  scores and the grid shows. It applies the edit exactly as the generator made it.
- `render_edit`, the **photo renderer**: what users see. It carries the same parts onto the
  photo's pixels around one face (a `region.HeadRegion`) and adds what a whole photo needs and a
  128 px crop does not (the model card has each one's figures):
  1. one sampling map: the alignment and the flow composed, the photo sampled once (bicubic);
  2. each band's gain on the photo's band at the face's own scale; detail finer than the crop's
     is softened with the finest band (floored, `FINE_GAIN_FLOOR`) and never amplified (noise);
  3. towards older groups spots gain a share only (`SPOT_GAIN_SHARE`): amplified whole, freckles
     and sensor noise became a speckle of dark dots;
  4. towards younger groups wrinkles fade further than the crop's gains (`WRINKLE_POWER`) and the
     skin keeps its grain (`skin_grain`): the photo keeps wrinkles finer than the crop can hold;
  5. the shift split (`split_shift`): over the face its colour cast removed and its tone kept only
     from two groups away (`kept_tone`), towards younger groups its brightness pattern bounded
     (`FACE_LUMA_BOUND`); beyond the face only lightening, as greying;
  6. hair greying past the crop, and the hair's own colour lost where it greys (`HAIR_GREY_SHARE`);
  7. the shift brought up with a guided filter, along the photo's own edges;
  8. the head mask (`region.py`) bounding every change: the background stays pixel for pixel.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .edit import BAND_SIGMAS, AgeEdit
from .region import GUIDE_EPS, GUIDE_RADIUS, INNER_MARGIN, HeadRegion, eyes_and_lips, pull, region_fade, zone_map

# Towards younger groups the two finest bands are softened at most to this share (wrinkles apart):
# below it a face is a smooth patch in a sharp photo.
FINE_GAIN_FLOOR = 0.85
# Towards younger groups a gain g < 1 becomes g ** (1 + WRINKLE_POWER * w), w = `wrinkle_likeness`:
# the photo holds wrinkles finer than the crop, which still read as age.
WRINKLE_POWER = 2.0
# Detail stronger than this (grey levels, rms) is an edge (spectacle frames), not a wrinkle.
WRINKLE_CONTRAST = 15.0
# The grain that replaces softened wrinkles is fixed to the face: this many texels per crop pixel.
GRAIN_SIDE = 4
# On a small face every band finer than this (work pixels) counts as fine detail for the grain.
GRAIN_SCALE = 1.5
# Bilinear sampling at fractional offsets blurs the finest detail by about a quarter.
SAMPLING = cv2.INTER_CUBIC
# Towards younger groups the shift's brightness pattern over the face is bounded softly to this
# ([-1, 1] units): the learned luma paints a generic face of the target group (a goatee at 0-18).
FACE_LUMA_BOUND = 0.3
# Towards older groups spots (freckles, pores, noise) gain this share of the band gain; lines all.
SPOT_GAIN_SHARE = 0.25
# Towards older groups hair loses this share of its own colour where it greys by HAIR_GREY_FULL
# grey levels or more: lightening alone turned brown hair blond, not grey.
HAIR_GREY_SHARE = 0.6
HAIR_GREY_FULL = 40.0


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
    noise = pull(grain_texture(crop_size), region.to_crop * GRAIN_SIDE, region.work_size, cv2.BORDER_WRAP)
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
    # Towards older groups the learned edit's lightening beyond the face is one amount: its own
    # outline, drawn round what it takes for background, left a pale ghost in the hair.
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
    # Past the crop the lightening is one amount, towards older groups only: carried by its border
    # values it greyed the temples in streaks under a dark crown.
    inside = pull(
        region_fade(size, INNER_MARGIN), zone_map(region.to_crop, size), region.work_size, cv2.BORDER_CONSTANT
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
    """The photo with each rendered head region's change added (RGB uint8), given largest first and
    drawn smallest first, so that where heads overlap the largest one's change ends on top. Outside
    the heads the change is exactly zero, so the photo is left as it was, pixel for pixel."""
    out = photo.copy()
    for region, pixels in reversed(rendered):
        x0, y0, x1, y1 = region.box
        original = photo[y0:y1, x0:x1].astype(np.float32)
        current = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(current + (pixels - original) + 0.5, 0, 255).astype(np.uint8)
    return out
