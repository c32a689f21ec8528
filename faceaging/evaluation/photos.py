"""`python -m faceaging evaluate-photos DIR`: the whole output photos, as a user sees them.

Every figure is taken on the whole photo at its own resolution, with the shipped defaults:
- fine detail ratio: mean |Y - GaussianBlur(Y, σ = 1.5 px)| inside the input's MTCNN face box
  shrunk by 15% per side, output ÷ input (Y = luma): 1 keeps the photo's sharpness, a blurred
  patch scores well under it;
- identity: dlib's own face-recognition distance (dlib-bin: HOG detector, 5-point shape predictor,
  ResNet) between the input's face and the face re-detected in the output photo;
- age: the dlib age judge on the face re-detected (MTCNN) in the output photo; beside it the median
  and spread of its readings over five views of that photo no one could tell apart (as it is,
  mirrored, JPEG at quality 95, shifted by a pixel, 3% smaller), because on edited faces one
  reading can swing by 20 years under such changes; and the judge on the model's own 128 px crop
  of the face at that group (`PreparedFace.aged_crops`), which tells what the model does from what
  the rendering onto the photo does;
- ΔE (CIELAB, 1976) of the mean colour inside the shrunk face box, output vs input;
- background change: mean absolute difference outside every face box grown 2.5x (clipped);
- the skin's own tone: ΔL* and ΔE of the mean CIELAB colour of the cheek and forehead patches
  (`realism.skin_colour`) of the face's aligned crop, output vs input (eyes, brows, mouth, beard
  and hair left out; a face's skin tone is not a symptom of age);
- mottling (`realism.mottling`) of the face's aligned crop cut at its own resolution from the
  output photo, over the same from the input: how much blotchier (> 1) or smoother the skin got;
- hair: inside the head mask, above the eyes and off the face's ellipse (the hair on top and at
  the temples; a hat counts too), the change of mean CIELAB lightness and the ratio of mean chroma,
  output vs input: greying hair gets lighter and loses its colour (ratio under 1);
- seconds per photo, detection included.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..ager import FaceAger
from ..ages import AgeGroup
from ..align import CROP_SIZE, canonical_landmarks
from ..convert import dlib_recognition_model, dlib_shape_predictor
from ..images import FaceAgingError, photos_in
from ..region import HeadRegion, face_mask
from .age_judge import AgeEstimator
from .realism import mottling, skin_colour

DETAIL_SIGMA = 1.5
SHRINK = 0.15  # per side, for the fine detail ratio and the face colour
BACKGROUND_GROWTH = 2.5
VIEW_SCALE = 0.97
SAME_PERSON = 0.6
HAIR_ABOVE = 0.3  # crop fraction: the hair measured lies above this row of the canonical crop (the eyes)


def _box(box: np.ndarray, factor: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """`box` (x0, y0, x1, y1) scaled about its centre by `factor`, clipped to the photo, in pixels."""
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * factor / 2
    x0, y0 = np.floor(centre - half).astype(int).clip(0, [shape[1], shape[0]])
    x1, y1 = np.ceil(centre + half).astype(int).clip(0, [shape[1], shape[0]])
    return int(x0), int(y0), int(x1), int(y1)


def fine_detail(photo: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean |Y - GaussianBlur(Y, 1.5 px)| inside `box`, Y the photo's luma at its own resolution."""
    luma = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
    x0, y0, x1, y1 = box
    return float(np.abs(luma - cv2.GaussianBlur(luma, (0, 0), DETAIL_SIGMA))[y0:y1, x0:x1].mean())


def _lab(image: np.ndarray) -> np.ndarray:
    """CIELAB (L* 0..100, a*, b*) of an RGB uint8 image."""
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def mean_lab(photo: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Mean CIELAB colour (L* 0..100) inside `box`."""
    x0, y0, x1, y1 = box
    return _lab(photo[y0:y1, x0:x1]).reshape(-1, 3).mean(0)


def _views(photo: np.ndarray, box: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The photo and a face box in it, as it is and in four views that look the same to a person:
    mirrored, JPEG at quality 95, shifted by one pixel, 3% smaller."""
    width = photo.shape[1]
    mirrored = np.ascontiguousarray(photo[:, ::-1])
    encoded = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    jpeg = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])
    smaller = cv2.resize(photo, None, fx=VIEW_SCALE, fy=VIEW_SCALE, interpolation=cv2.INTER_AREA)
    return [
        (photo, box),
        (mirrored, np.array([width - box[2], box[1], width - box[0], box[3]])),
        (jpeg, box),
        (np.ascontiguousarray(photo[1:, 1:]), box - 1),
        (smaller, box * VIEW_SCALE),
    ]


def judged_ages(judge: AgeEstimator, ager: FaceAger, photo: np.ndarray, box: np.ndarray) -> list[float | None]:
    """The age judge's reading of the face nearest `box` in each of the photo's `_views` (the plain
    photo first), None where MTCNN does not find it."""
    readings = []
    for view, near in _views(photo, box):
        found = _nearest_face(ager, view, near)
        readings.append(None if found is None else judge.estimate(view, found.landmarks).years)
    return readings


def hair_pixels(region: HeadRegion) -> np.ndarray:
    """(h, w) bool at the head region's work resolution: where the hair is measured."""
    w, h = region.work_size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    crop_y = region.to_crop[1, 0] * xs + region.to_crop[1, 1] * ys + region.to_crop[1, 2]
    face = region.to_work(face_mask(CROP_SIZE)[None], cv2.BORDER_CONSTANT)[..., 0]
    return (region.reach.astype(np.float32) > 0.5) & (face < 0.05) & (crop_y < HAIR_ABOVE * CROP_SIZE)


def hair_colour(photo: np.ndarray, region: HeadRegion, where: np.ndarray) -> tuple[float, float] | None:
    """Mean CIELAB lightness and chroma of the hair (`hair_pixels`) in a photo; None with too few."""
    if where.sum() < 50:
        return None
    x0, y0, x1, y1 = region.box
    lab = _lab(cv2.resize(photo[y0:y1, x0:x1], region.work_size, interpolation=cv2.INTER_AREA))[where]
    return float(lab[:, 0].mean()), float(np.hypot(lab[:, 1], lab[:, 2]).mean())


def background_change(photo: np.ndarray, output: np.ndarray, boxes: list[np.ndarray]) -> float:
    """Mean |output - input| (grey levels, all channels) outside every face box grown 2.5x."""
    outside = np.ones(photo.shape[:2], bool)
    for box in boxes:
        x0, y0, x1, y1 = _box(box, BACKGROUND_GROWTH, photo.shape)
        outside[y0:y1, x0:x1] = False
    if not outside.any():
        return 0.0
    return float(np.abs(output.astype(np.int16) - photo.astype(np.int16))[outside].mean())


class DlibIdentity:
    """dlib's own face recognition, started as its users start it (dlib-bin)."""

    def __init__(self):
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_shape_predictor()))
        self.recogniser = dlib.face_recognition_model_v1(str(dlib_recognition_model()))

    def descriptor(self, photo: np.ndarray, near: np.ndarray) -> np.ndarray | None:
        """The 128-d descriptor of the face dlib finds nearest the centre of box `near`; None when
        dlib finds no face there."""
        centre = (near[:2] + near[2:]) / 2
        width = near[2] - near[0]
        rects = [r for r in self.detector(photo, 0 if width >= 80 else 1)]
        rects = [r for r in rects if np.hypot(r.center().x - centre[0], r.center().y - centre[1]) < 0.5 * width]
        if not rects:
            return None
        rect = min(rects, key=lambda r: np.hypot(r.center().x - centre[0], r.center().y - centre[1]))
        chip = self.dlib.get_face_chip(photo, self.predictor(photo, rect), 150, 0.25)
        return np.asarray(self.recogniser.compute_face_descriptor(chip))


def _nearest_face(ager: FaceAger, photo: np.ndarray, box: np.ndarray):
    centre, width = (box[:2] + box[2:]) / 2, box[2] - box[0]
    found = [f for f in ager.detector.detect(photo) if np.hypot(*(f.centre - centre)) < 0.5 * width]
    return min(found, key=lambda f: np.hypot(*(f.centre - centre))) if found else None


def evaluate_photos(folder: str | Path, ager: FaceAger | None = None) -> dict:
    """The figures for every photo in `folder` and every face in it, per group, and a summary."""
    photos = photos_in(folder)
    ager = ager or FaceAger.from_pretrained()
    judge, identity = AgeEstimator(), DlibIdentity()
    if photos:
        ager.age(photos[0])  # warm-up, so the first photo's seconds are not a cold start
    rows, seconds, skipped = [], {}, {}
    for path in photos:
        try:
            started = time.perf_counter()
            result = ager.age(path)
            seconds[path.name] = time.perf_counter() - started
        except FaceAgingError as err:
            skipped[path.name] = str(err)
            continue
        photo = result.photo
        boxes = [f.box for f in result.faces]
        for index, face in enumerate(result.faces, start=1):
            inner = _box(face.box, 1 - 2 * SHRINK, photo.shape)
            reference = identity.descriptor(photo, face.box)
            input_age = judge.estimate(photo, face.landmarks).years
            own_crop = result.aligned(index - 1, photo)[None]
            skin, tone = mottling(own_crop), skin_colour(own_crop)[0]
            crop_landmarks = canonical_landmarks(face.crop.shape[0])
            hair = hair_pixels(face.region) if face.region else None
            hair_before = hair_colour(photo, face.region, hair) if hair is not None else None
            for group in AgeGroup:
                output = result.photos[group]
                hair_after = hair_colour(output, face.region, hair) if hair_before else None
                out_crop = result.aligned(index - 1, output)[None]
                blotches, tone_after = mottling(out_crop), skin_colour(out_crop)[0]
                plain, *others = judged_ages(judge, ager, output, face.box)
                ages = [a for a in (plain, *others) if a is not None]
                described = identity.descriptor(output, face.box) if reference is not None else None
                distance = None if described is None else float(np.linalg.norm(described - reference))
                rows.append(
                    {
                        "photo": path.name,
                        "face": index,
                        "face_width": round(float(face.box[2] - face.box[0])),
                        "source_group": face.source_group.label,
                        "input_age": round(input_age, 1),
                        "group": group.label,
                        "steps_from_own": abs(int(group) - int(face.source_group)),
                        "fine_detail_ratio": round(
                            fine_detail(output, inner) / max(fine_detail(photo, inner), 1e-6), 3
                        ),
                        "identity_distance": None if distance is None else round(distance, 3),
                        "age": None if plain is None else round(plain, 1),
                        "age_of_views": round(statistics.median(ages), 1) if ages else None,
                        "age_spread": round(max(ages) - min(ages), 1) if ages else None,
                        "age_of_crop": round(judge.estimate(face.aged_crops[group], crop_landmarks).years, 1),
                        "delta_e": round(float(np.linalg.norm(mean_lab(output, inner) - mean_lab(photo, inner))), 2),
                        "background_change": round(background_change(photo, output, boxes), 3),
                        "skin_lightness_change": round(float(tone_after[0] - tone[0]), 2),
                        "skin_delta_e": round(float(np.linalg.norm(tone_after - tone)), 2),
                        "mottling_luma_ratio": round(blotches["luma"] / max(skin["luma"], 1e-6), 3),
                        "mottling_chroma_ratio": round(blotches["chroma"] / max(skin["chroma"], 1e-6), 3),
                        "hair_lightness_change": round(hair_after[0] - hair_before[0], 2) if hair_after else None,
                        "hair_chroma_ratio": round(hair_after[1] / max(hair_before[1], 1e-6), 3)
                        if hair_after
                        else None,
                    }
                )
    return {
        "rows": rows,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "skipped": skipped,
        **summarise(rows, seconds),
    }


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def summarise(rows: list[dict], seconds: dict[str, float]) -> dict:
    """Per group means and the issue's bars, from the rows of `evaluate_photos`."""

    def distances(of: list[dict]) -> list[float]:
        """Identity distances of the aged photo-groups (the face's own group is the input: 0)."""
        return [r["identity_distance"] for r in of if r["steps_from_own"] > 0 and r["identity_distance"] is not None]

    groups = {}
    for group in AgeGroup:
        mine = [r for r in rows if r["group"] == group.label]
        groups[group.label] = {
            "fine_detail_ratio_mean": _mean([r["fine_detail_ratio"] for r in mine]),
            "fine_detail_ratio_min": min((r["fine_detail_ratio"] for r in mine), default=None),
            "verified": _mean(
                [r["identity_distance"] is not None and r["identity_distance"] < SAME_PERSON for r in mine]
            ),
            "identity_distance_mean": _mean(distances(mine)),
            "age_mean": _mean([r["age"] for r in mine if r["age"] is not None]),
            "age_of_views_mean": _mean([r["age_of_views"] for r in mine if r["age_of_views"] is not None]),
            "delta_e_mean": _mean([r["delta_e"] for r in mine]),
            "skin_lightness_change_mean": _mean([r["skin_lightness_change"] for r in mine]),
            "mottling_luma_ratio_mean": _mean([r["mottling_luma_ratio"] for r in mine]),
            "mottling_chroma_ratio_mean": _mean([r["mottling_chroma_ratio"] for r in mine]),
            "hair_lightness_change_mean": _mean(
                [r["hair_lightness_change"] for r in mine if r["hair_lightness_change"] is not None]
            ),
            "hair_chroma_ratio_mean": _mean(
                [r["hair_chroma_ratio"] for r in mine if r["hair_chroma_ratio"] is not None]
            ),
        }

    def ages(group: str, of_faces: Callable[[float], bool], key: str = "age") -> list[float]:
        return [r[key] for r in rows if r["group"] == group and of_faces(r["input_age"]) and r[key] is not None]

    senior, child = ages("60+", lambda age: age < 40), ages("0-18", lambda age: age > 25)
    near = [r["delta_e"] for r in rows if r["steps_from_own"] == 1]
    return {
        "groups": groups,
        "bars": {
            "fine_detail_lowest_group_mean": min((g["fine_detail_ratio_mean"] for g in groups.values()), default=None),
            "fine_detail_lowest": min((r["fine_detail_ratio"] for r in rows), default=None),
            "verified_share": _mean(
                [r["identity_distance"] is not None and r["identity_distance"] < SAME_PERSON for r in rows]
            ),
            "identity_distance_mean": _mean(distances(rows)),
            "age_at_60_plus_of_faces_under_40": _mean(senior),
            "faces_under_40": len(senior),
            "age_at_0_18_of_faces_over_25": _mean(child),
            "faces_over_25": len(child),
            "age_of_views_at_60_plus_of_faces_under_40": _mean(ages("60+", lambda age: age < 40, "age_of_views")),
            "age_of_views_at_0_18_of_faces_over_25": _mean(ages("0-18", lambda age: age > 25, "age_of_views")),
            "age_of_crops_at_60_plus_of_faces_under_40": _mean(ages("60+", lambda age: age < 40, "age_of_crop")),
            "age_of_crops_at_0_18_of_faces_over_25": _mean(ages("0-18", lambda age: age > 25, "age_of_crop")),
            "age_spread_at_0_18_of_faces_over_25_max": max(
                ages("0-18", lambda age: age > 25, "age_spread"), default=None
            ),
            "delta_e_one_group_away_max": max(near, default=None),
            "delta_e_one_group_away_mean": _mean(near),
            "background_change_max": max((r["background_change"] for r in rows), default=None),
            "skin_lightness_change_max_abs": max((abs(r["skin_lightness_change"]) for r in rows), default=None),
            "skin_delta_e_max": max((r["skin_delta_e"] for r in rows), default=None),
            "seconds_per_photo_median": round(statistics.median(seconds.values()), 3) if seconds else None,
        },
    }


def markdown_table(report: dict) -> str:
    lines = [
        "| photo | face | group | fine detail | identity | age | age: median of views (spread) "
        "| age of the 128 px crop | ΔE | skin ΔL* / ΔE | background |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        own = " (own)" if r["steps_from_own"] == 0 else ""
        lines.append(
            f"| {r['photo']} | {r['face']} ({r['input_age']:.0f} y) | {r['group']}{own} | {r['fine_detail_ratio']:.2f} "
            f"| {r['identity_distance'] if r['identity_distance'] is not None else 'not found'} "
            f"| {r['age'] if r['age'] is not None else 'not found'} "
            f"| {r['age_of_views']} ({r['age_spread']}) | {r['age_of_crop']} | {r['delta_e']:.1f} "
            f"| {r['skin_lightness_change']:+.1f} / {r['skin_delta_e']:.1f} | {r['background_change']:.2f} |"
        )
    lines += [
        "",
        "| group | fine detail mean / min | verified | mean distance | age | age of views | ΔE | skin ΔL* "
        "| mottling luma / chroma (out ÷ in) | hair: lightness change / chroma (out ÷ in) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, g in report["groups"].items():
        lines.append(
            f"| {label} | {g['fine_detail_ratio_mean']} / {g['fine_detail_ratio_min']} | {g['verified']} "
            f"| {g['identity_distance_mean']} | {g['age_mean']} | {g['age_of_views_mean']} | {g['delta_e_mean']} "
            f"| {g['skin_lightness_change_mean']} "
            f"| {g['mottling_luma_ratio_mean']} / {g['mottling_chroma_ratio_mean']} "
            f"| {g['hair_lightness_change_mean']} / {g['hair_chroma_ratio_mean']} |"
        )
    lines += ["", *(f"- {key}: {value}" for key, value in report["bars"].items())]
    lines += [f"- skipped {name}: {why}" for name, why in report["skipped"].items()]
    return "\n".join(lines)
