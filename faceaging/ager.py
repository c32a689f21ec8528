"""FaceAger: detect -> align -> encode -> optimise -> render six ages -> paste back."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image

from .ages import GROUP_LABELS, NUM_GROUPS, AgeGroup, age_condition
from .align import CROP_SIZE, align_face, to_tensor, to_uint8
from .detect import DetectedFace, FaceDetector
from .images import FaceAgingError, load_image
from .models import AgeEdit, resolve_device
from .optimize import optimize_latent
from .render import HeadRegion, composite, head_region, render_edit
from .weights import load_aging_models, load_identity

MAX_FACES = 8
MIN_FACE_PIXELS = 24
RENDER_BATCH = 16  # images per generator call
OPTIMISE_BATCH = 2  # faces per identity optimisation (two renders each: both ends of the age axis)
RENDER_THREADS = 2  # photos rendered at once
POSITIONS_PER_CALL = 4  # ages per generator call when rendering several (a GIF)


class AgeStrength(NamedTuple):
    """How far past the prototype prior's measured age change to go (1 = as measured), towards
    younger and towards older groups apart: rejuvenating too far loses the person sooner than
    aging does. The learned edit is not scaled: it is trained on plain conditions only."""

    younger: float
    older: float

    @classmethod
    def of(cls, value: float | Sequence[float]) -> AgeStrength:
        """One number for both directions, or (younger, older)."""
        values = (value,) if isinstance(value, int | float) else tuple(value)
        if len(values) not in (1, 2):
            raise ValueError(f"an age strength is one number or two (younger, older), not {len(values)}")
        return cls(values[0], values[-1])


# Chosen on the tuning slice of training faces (`evaluate --tuning`), never on the held-out one.
DEFAULT_AGE_STRENGTH = AgeStrength(2.5, 3.0)
# The share of the age strength at which the prior's colour change (skin tone and its local
# structure, hair greying) is applied, towards younger and towards older groups; shape and texture
# get the full strength. At the full strength the colour change made adults at 0-18 a pale wash
# and carried most of the identity lost there. Chosen on the tuning slice (300 faces): the most
# identity at 0-18 that keeps Spearman >= 0.85 (0.6 kept 98.7% of faces at 0-18 but Spearman fell
# to 0.845; 0.75: 96.3%, 0.855; full: 90.7%, 0.868); towards older groups the full colour stays
# (0.8 of it cost 60+ 1.5 years of the judge's age and Spearman 0.014; half of it, 5.7 years).
DEFAULT_COLOUR_SHARE = AgeStrength(0.75, 1.0)
# The younger strength is raised by this factor at 0-18 and 19-29, fading linearly to none at 30-39:
# the judge read a fifth of the adults sent to 0-18 as over 20. Possible once each end of the age
# axis had its own latent (`FaceAger.invert`); with one latent the harder pull at 0-18 moved the 60+
# renders too. Tuning slice (300 faces): at 0-18 only, Spearman 0.848 -> 0.854, age at 0-18 10.3 ->
# 8.0 years, distance there 0.338 -> 0.350 (1.3: +0.0002 for +0.004 of distance); then at 19-29 as
# well, 0.854 -> 0.859, distance at 19-29 0.267 -> 0.283, KID there +0.2 [-1.2, +1.7] (1.1: 0.857;
# 1.3: 0.861, KID +0.7 [-1.5, +2.9]).
YOUNGER_BOOST = 1.2
# Aligned crops cut from the aged photos (CLI, app's face view) are at most this large.
MAX_CROP_SIDE = 512

# progress(fraction, description), the shape gr.Progress accepts
Progress = Callable[[float, str], None]


@dataclass
class AgedFace:
    box: np.ndarray
    landmarks: np.ndarray
    source_group: AgeGroup  # where every change starts: the estimate, or the group the user gave
    input_crop: np.ndarray  # canonical aligned crop, uint8 HxWx3
    aged_crops: dict[AgeGroup, np.ndarray]  # aligned crop per group
    identity_distance: float  # the worse of its renders at 0-18 and 60+, after optimisation
    matrix: np.ndarray = field(repr=False)  # photo -> crop
    latent: torch.Tensor = field(repr=False)  # (1, 2, C, H, W): for the younger and the older ages
    edits: dict[AgeGroup, AgeEdit] = field(repr=False, default_factory=dict)  # per group, for the photo
    region: HeadRegion | None = field(repr=False, default=None)  # head region and mask in the photo
    estimated_group: AgeGroup | None = None  # the age probe's reading, also when the user gave theirs

    @property
    def crop_side(self) -> int:
        """The side at which an aligned crop holds this face's own detail (128 px up to MAX_CROP_SIDE)."""
        pixels = CROP_SIZE / np.sqrt(abs(np.linalg.det(self.matrix[:, :2])))
        return int(np.clip(round(pixels / 64) * 64, CROP_SIZE, MAX_CROP_SIDE))


@dataclass
class AgingResult:
    photo: np.ndarray  # the input, RGB uint8 (EXIF-rotated, possibly scaled down)
    faces: list[AgedFace]
    photos: dict[AgeGroup, np.ndarray]  # the whole photo per group, faces pasted back
    skipped_faces: int  # faces found beyond MAX_FACES, smallest first
    timings: dict[str, float]

    def aligned(self, face: int, photo: np.ndarray, side: int | None = None) -> np.ndarray:
        """Face `face`'s canonical crop cut from `photo` (the input or an aged photo) at the face's
        own resolution: what the CLI writes as face_N/<group>.png."""
        found = self.faces[face]
        return align_face(photo, found.landmarks, side or found.crop_side)[0]

    def grid(self) -> np.ndarray:
        """Rows = faces; columns = the aligned input, then the six groups (the model's 128 px crops)."""
        rows = [np.concatenate([f.input_crop, *(f.aged_crops[g] for g in AgeGroup)], axis=1) for f in self.faces]
        return np.concatenate(rows, axis=0)

    def gif(self, frames_between: int = 3, max_side: int = 512, ager: FaceAger | None = None) -> bytes:
        """An animated GIF through the six groups; with `ager`, blended ages fill the gaps."""
        scale = min(1.0, max_side / max(self.photo.shape[:2]))
        if ager is not None and frames_between > 0:
            positions = np.linspace(0, NUM_GROUPS - 1, (NUM_GROUPS - 1) * (frames_between + 1) + 1)
            frames = ager.render_many(self, positions, scale)
        else:
            frames = [self.photos[g] for g in AgeGroup]
        # A fast octree palette per frame: PIL's default median cut takes a second per frame.
        images = [
            Image.fromarray(frame).resize(_scaled_size(frame, scale)).quantize(method=Image.Quantize.FASTOCTREE)
            for frame in frames
        ]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=180, loop=0)
        return buffer.getvalue()


def _as_group(group: AgeGroup | int | str) -> AgeGroup:
    """A group given as AgeGroup, index (0 = 0-18 ... 5 = 60+) or label ("60+")."""
    try:
        if isinstance(group, str) and not group.strip().isdigit():
            return AgeGroup.from_label(group.strip())
        return AgeGroup(int(group))
    except ValueError:
        raise FaceAgingError(f"Unknown age group {group!r}; choose one of {', '.join(GROUP_LABELS)}.") from None


def _is_group(position: float) -> bool:
    return position.is_integer() and 0 <= position < NUM_GROUPS


def _scaled_size(image: np.ndarray, scale: float) -> tuple[int, int]:
    return max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))


class FaceAger:
    """The whole pipeline, built once from weights and a device, then applied to photos."""

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "auto",
        steps: int = 10,
        max_seconds: float = 10.0,
        age_strength: float | Sequence[float] = DEFAULT_AGE_STRENGTH,
        colour_share: float | Sequence[float] = DEFAULT_COLOUR_SHARE,
    ):
        self.device = resolve_device(device)
        self.encoder, self.generator, self.age_probe = load_aging_models(weights, self.device)
        self.identity = load_identity(weights, self.device).requires_grad_(False)
        for module in (self.encoder, self.generator, self.age_probe):
            module.requires_grad_(False)
        self.detector = FaceDetector(self.device)
        self.steps = steps
        self.max_seconds = max_seconds  # bounds the optimisation's latency; evaluation lifts it
        self.age_strength = AgeStrength.of(age_strength)
        self.colour_share = AgeStrength.of(colour_share)

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None, **options: Any) -> FaceAger:
        """Weights from a folder (default: the bundled weights/) or a Hub repo `owner/name[@revision]`;
        `options` are __init__'s (device, steps, max_seconds, age_strength, colour_share)."""
        return cls(weights, **options)

    def age(
        self,
        image: str | Path | bytes | Image.Image | np.ndarray,
        steps: int | None = None,
        progress: Progress | None = None,
        source_group: AgeGroup | int | str | None = None,
    ) -> AgingResult:
        """Age every face in a photo (largest first, up to MAX_FACES) to all six groups.

        `source_group` ("60+", 5, AgeGroup.SENIOR) is the group the person says they are in: every
        face's change then starts there instead of at the model's estimate (still reported)."""
        told = None if source_group is None else _as_group(source_group)
        report = progress or (lambda fraction, description: None)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + now - clock
            clock = now

        photo = load_image(image)
        lap("load")
        report(0.05, "Finding faces")
        found = [f for f in self.detector.detect(photo) if f.size >= MIN_FACE_PIXELS]
        lap("detect")
        if not found:
            raise FaceAgingError("No face found — try a brighter, frontal photo where the face is clearly visible.")
        faces, skipped = found[:MAX_FACES], max(0, len(found) - MAX_FACES)

        crops, matrices = zip(*(align_face(photo, f.landmarks, CROP_SIZE) for f in faces), strict=True)
        x = to_tensor(np.stack(crops), self.device)
        lap("align")
        report(0.15, "Encoding")
        n_steps = self.steps if steps is None else steps

        def on_step(step: int, total: int) -> None:
            if step == 0:
                lap("encode")
            report(0.2 + 0.6 * step / max(total, 1), f"Optimising identity ({step}/{total})")

        told_tensor = None if told is None else torch.full((len(faces),), int(told), device=self.device)
        z0, z, source, distances, probabilities = self.invert(x, n_steps, on_step, told_tensor)
        estimated = probabilities.argmax(1)
        lap("optimize")

        report(0.85, "Rendering six ages")
        edits, aged = self.edits_at(x, z, torch.arange(NUM_GROUPS, dtype=torch.float32), source)
        lap("render")

        aged_faces = []
        for i, face in enumerate(faces):
            aged_faces.append(
                AgedFace(
                    box=face.box,
                    landmarks=face.landmarks,
                    source_group=AgeGroup(int(source[i])),
                    estimated_group=AgeGroup(int(estimated[i])),
                    input_crop=crops[i],
                    aged_crops={g: aged[g][i] for g in AgeGroup},
                    identity_distance=float(distances[i]),
                    matrix=matrices[i],
                    latent=z[i : i + 1].detach(),
                    edits={g: edits[g][i : i + 1] for g in AgeGroup},
                    region=head_region(photo, matrices[i], CROP_SIZE),
                )
            )
        result = AgingResult(photo, aged_faces, {}, skipped, timings)
        report(0.95, "Rendering the photo")
        # Two groups at a time: OpenCV and NumPy release the GIL, and much of a render is NumPy
        # arithmetic on one core.
        with ThreadPoolExecutor(RENDER_THREADS) as pool:
            photos = pool.map(
                lambda g: self._composite(photo, aged_faces, [f.edits[g] for f in aged_faces], g), AgeGroup
            )
            result.photos = dict(zip(AgeGroup, photos, strict=True))
        lap("paste")
        return result

    def render(self, result: AgingResult, position: float) -> np.ndarray:
        """The whole photo at a continuous age position (0 = 0-18 ... 5 = 60+); generator only."""
        return self.render_many(result, [position])[0]

    def render_faces(self, result: AgingResult, position: float) -> list[np.ndarray]:
        """Each face's aligned crop at a continuous age position, from its cached latent."""
        return self._render_crops(result, [position])[0]

    def render_many(self, result: AgingResult, positions: Sequence[float], scale: float = 1.0) -> list[np.ndarray]:
        """The whole photo at several age positions, in one generator batch; `scale` shrinks the photo."""
        photo, faces = result.photo, result.faces
        if scale != 1.0:
            photo = cv2.resize(photo, _scaled_size(photo, scale), interpolation=cv2.INTER_AREA)
            # The alignment maps photo -> crop; on a photo shrunk by `scale` it first undoes the shrink.
            shrink = np.diag([1 / scale, 1 / scale, 1.0])
            faces = [replace(f, matrix=f.matrix @ shrink) for f in faces]
            faces = [replace(f, region=head_region(photo, f.matrix, CROP_SIZE)) for f in faces]
        frames = []
        # A few positions per generator call: a crowd's 15 in-between GIF frames at once held
        # ~60 MB of edits more than the frames themselves.
        for start in range(0, len(positions), POSITIONS_PER_CALL):
            chunk = positions[start : start + POSITIONS_PER_CALL]
            frames += [
                self._composite(photo, faces, e, float(p))
                for p, e in zip(chunk, self._edits(result, chunk), strict=True)
            ]
        return frames

    def _edits(self, result: AgingResult, positions: Sequence[float]) -> list[list[AgeEdit]]:
        """Each face's edit at each position. The six groups were made by age(): only the ages
        between them go through the generator (a GIF: 15 of 21 frames)."""
        if not result.faces:
            return [[] for _ in positions]
        wanted = [float(p) for p in positions]
        between = sorted({p for p in wanted if not _is_group(p)})
        made: dict[float, AgeEdit] = {}
        if between:
            x, z, source = self._cached_inputs(result)
            made = dict(zip(between, self.edits_at(x, z, torch.tensor(between), source)[0], strict=True))
        return [
            [f.edits[AgeGroup(int(p))] for f in result.faces]
            if _is_group(p)
            else [made[p][i : i + 1] for i in range(len(result.faces))]
            for p in wanted
        ]

    def _render_crops(self, result: AgingResult, positions: Sequence[float]) -> list[list[np.ndarray]]:
        """Each face's aligned 128 px crop at each position (whole groups from age()'s renders)."""
        if not result.faces:
            return [[] for _ in positions]
        x, _, _ = self._cached_inputs(result)
        out = []
        for p, edits in zip(positions, self._edits(result, positions), strict=True):
            if _is_group(float(p)):
                out.append([f.aged_crops[AgeGroup(int(p))] for f in result.faces])
            else:
                with torch.inference_mode():
                    out.append(list(to_uint8(AgeEdit.cat(edits).apply_to(x))))
        return out

    def _cached_inputs(self, result: AgingResult) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = torch.cat([f.latent for f in result.faces]).to(self.device)
        source = torch.tensor([int(f.source_group) for f in result.faces], device=self.device)
        return to_tensor(np.stack([f.input_crop for f in result.faces]), self.device), z, source

    def invert(
        self,
        crops: torch.Tensor,
        steps: int,
        on_step: Callable[[int, int], None] | None = None,
        told: torch.Tensor | None = None,
        max_seconds: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Canonical crops in [-1, 1] -> (z0, identity-optimised z, source group, identity
        distance, the age probe's probabilities for the six groups (B, 6)). The source group is
        `told` (B,) where the user gave it, else the probe's most likely group. `max_seconds`
        bounds the optimisation (default: the ager's).

        The renders that the optimisation protects are both ends, 0-18 and 60+, at the age
        strength in use, each with its own latent: z is (B, 2, C, H, W), for the ages below the
        face's own group and for those above (`edits_at` picks by position). The distance
        reported is the worse of the two ends.
        """
        with torch.inference_mode():
            z0 = self.encoder(crops)
            # One identity pass serves both the age probe and stage 3's target embedding.
            features = self.identity.crop_features(crops)
            probabilities = self.age_probe(features).softmax(1)
            estimated = probabilities.argmax(1)
            source = estimated if told is None else told.to(estimated)
            wanted = self.identity.fc(features)
        if on_step is not None:
            on_step(0, steps)
        # Both ends, not only the group furthest from the face's own: protected only at 60+, a
        # 19-39-year-old lost the person at 0-18 (held-out: mean distance there 0.365 -> 0.332,
        # verified 96.7% -> 100%, with Spearman and the ages unchanged; model card).
        ends = torch.tensor([0.0, NUM_GROUPS - 1.0], device=self.device)
        # Each end gets its own latent, optimised for its own renders (model card): with one latent
        # for both, a harder pull at 0-18 moved the 60+ renders too. Every (face, end) pair is one
        # item of the optimisation; the pairs of a face lie next to each other.
        pair_end = ends.repeat(len(crops))
        pair_source = source.repeat_interleave(2)
        y_source, y_target = (age_condition(c.float(), self.device) for c in (pair_source, pair_end))
        strength = self.prior_strengths(pair_end, pair_source)
        z0_pairs, crops_pairs, wanted_pairs = (t.repeat_interleave(2, 0) for t in (z0, crops, wanted))
        # Faces are optimised a few at a time: backpropagating through the identity network for a
        # crowd at once would cost ~60 MB per render. Each chunk gets its share of the time budget.
        n, chunks = len(z0_pairs), range(0, len(z0_pairs), 2 * OPTIMISE_BATCH)
        budget = self.max_seconds if max_seconds is None else max_seconds
        results = []
        for k, start in enumerate(chunks):
            part = slice(start, start + 2 * OPTIMISE_BATCH)

            def chunk_step(step: int, total: int, k: int = k) -> None:
                if on_step is not None:
                    on_step(k * total + step, len(chunks) * total)

            results.append(
                optimize_latent(
                    z0_pairs[part],
                    crops_pairs[part],
                    y_source[part],
                    y_target[part],
                    self.generator,
                    self.identity,
                    steps,
                    budget * len(z0_pairs[part]) / n,
                    prior_strength=strength[part],
                    wanted=wanted_pairs[part],
                    on_step=chunk_step,
                )
            )
        z = torch.cat([r[0] for r in results]).unflatten(0, (-1, 2))
        distances = torch.cat([r[1] for r in results]).view(-1, 2).max(1).values
        return z0, z, source, distances, probabilities

    def age_probabilities(self, crops: torch.Tensor) -> torch.Tensor:
        """How likely each face (crops in [-1, 1]) is in each of the six groups (B, 6): the model's
        age probe on the identity network's features, never the age judge."""
        with torch.inference_mode():
            return self.age_probe(self.identity.crop_features(crops)).softmax(1)

    def source_groups(self, crops: torch.Tensor) -> torch.Tensor:
        """Each face's own group (B,) from crops in [-1, 1] (`age_probabilities`' most likely)."""
        return self.age_probabilities(crops).argmax(1)

    def six_ages(self, crops: torch.Tensor, z: torch.Tensor, source: torch.Tensor) -> list[np.ndarray]:
        """Every face (crops in [-1, 1]) at the six groups: a list over groups of (B,S,S,3) uint8."""
        return self.render_latents(crops, z, torch.arange(NUM_GROUPS, dtype=torch.float32), source)

    def prior_strengths(self, positions: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Per face and part (B, 3: shape, texture, colour), how far the prototype prior's change
        goes for the asked position: the younger or the older `age_strength`, by the direction from
        the face's own group (the younger raised at 0-18 and 19-29 by `YOUNGER_BOOST`), and for the
        colour that times the `colour_share`."""
        positions = positions.to(self.device).float()
        younger = positions < source.to(self.device)
        boost = 1 + (YOUNGER_BOOST - 1) * (2 - positions).clamp(0, 1)
        strength = torch.where(younger, self.age_strength.younger * boost, self.age_strength.older)
        share = torch.where(younger, *self.colour_share)
        return torch.stack([strength, strength, strength * share], 1)

    def render_latents(
        self, crops: torch.Tensor, z: torch.Tensor, positions: torch.Tensor, source: torch.Tensor
    ) -> list[np.ndarray]:
        """G(x, z, source, target) for every face at every position: a list over positions of
        (B,S,S,3) uint8 crops."""
        return self.edits_at(crops, z, positions, source)[1]

    def edits_at(
        self, crops: torch.Tensor, z: torch.Tensor, positions: torch.Tensor, source: torch.Tensor
    ) -> tuple[list[AgeEdit], list[np.ndarray]]:
        """The generator's edit (`AgeEdit`, B faces) of every face at every position, batched, and
        the aged crops it makes: two lists over positions, of edits and of (B,S,S,3) uint8. z is
        one latent per face (B, C, H, W), or `invert`'s two (B, 2, C, H, W)."""
        n, k = z.shape[0], len(positions)
        sources = age_condition(source.float(), self.device).repeat(k, 1)
        wanted = positions.float().to(self.device).repeat_interleave(n)
        targets = age_condition(wanted, self.device)
        strengths = self.prior_strengths(wanted, source.repeat(k))
        x = crops.repeat(k, 1, 1, 1)
        # One latent for every age (B, C, H, W), or `invert`'s for the ages below and above the
        # face's own group (B, 2, C, H, W), picked per render without copying both.
        face, above = torch.arange(n, device=self.device).repeat(k), wanted >= source.to(self.device).repeat(k)
        latents = z[face] if z.dim() == 4 else z[face, above.long()]
        # Chunks bound the memory: a crowd's GIF is 8 faces x 21 ages, ~1 GB of activations at once.
        parts, images = [], []
        with torch.inference_mode():
            for i in range(0, len(latents), RENDER_BATCH):
                c = slice(i, i + RENDER_BATCH)
                edit = self.generator.head(x[c], latents[c], sources[c], targets[c])
                age_edit, aged = self.generator.age_edit(x[c], sources[c], targets[c], edit, strengths[c])
                parts.append(age_edit)
                images.append(to_uint8(aged))
        every, images = AgeEdit.cat(parts), np.concatenate(images)
        return [every[i * n : (i + 1) * n] for i in range(k)], [images[i * n : (i + 1) * n] for i in range(k)]

    @staticmethod
    def _composite(photo: np.ndarray, faces: list[AgedFace], edits: list[AgeEdit], position: float) -> np.ndarray:
        """The photo with each face's edit (at age `position`) rendered at the photo's own resolution."""
        # Smallest faces first, so that where heads overlap the largest one's change ends on top.
        order = sorted(range(len(faces)), key=lambda i: faces[i].box[2] - faces[i].box[0])
        rendered = [
            (f.region, render_edit(photo, f.region, edits[i], f.source_group, position))
            for i in order
            if (f := faces[i]).region
        ]
        return composite(photo, rendered)


__all__ = ["AgedFace", "AgingResult", "DetectedFace", "FaceAger", "FaceAgingError", "GROUP_LABELS"]
