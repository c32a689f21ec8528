"""FaceAger: detect -> align -> encode -> optimise -> render six ages -> paste back."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from .ages import GROUP_LABELS, NUM_GROUPS, AgeGroup, age_condition
from .align import CROP_SIZE, align_face
from .detect import DetectedFace, FaceDetector
from .images import FaceAgingError, load_image
from .models import resolve_device
from .optimize import optimize_latent
from .paste import apply_correction, colour_correction, paste_back
from .weights import load_aging_models, load_identity

MAX_FACES = 8
MIN_FACE_PIXELS = 24
RENDER_BATCH = 16  # images per generator call
OPTIMISE_BATCH = 4  # faces per identity optimisation
# How far past the trained age modulation to go (1 = as trained). Chosen on the tuning slice of
# training faces (`evaluate --tuning`), never on the held-out one: the largest of 1, 2, 2.5, 3
# that keeps every target group >= 90% verified as the same person (2: 96%; 2.5: 83%).
DEFAULT_AGE_STRENGTH = 2.0
# The input's own fine detail, which the 128 px generator does not reproduce, is kept in full at
# the face's own group and fades out over this many groups: near its own age a face stays as
# sharp and as recognisable as the photo, far from it the generator's face takes over.
DETAIL_REACH = 2.0

# progress(fraction, description), the shape gr.Progress accepts
Progress = Callable[[float, str], None]


@dataclass
class AgedFace:
    box: np.ndarray
    landmarks: np.ndarray
    source_group: AgeGroup
    input_crop: np.ndarray  # canonical aligned crop, uint8 HxWx3
    aged_crops: dict[AgeGroup, np.ndarray]  # colour-matched aligned crop per group
    identity_distance: float  # of the reconstruction at the source age, after optimisation
    matrix: np.ndarray = field(repr=False)  # photo -> crop
    latent: torch.Tensor = field(repr=False)
    correction: np.ndarray = field(repr=False)
    detail: np.ndarray = field(repr=False)  # input crop minus its colour-matched own-group render

    def finish(self, crop: np.ndarray, position: float) -> np.ndarray:
        return finish_crop(crop, self.correction, self.detail, position, self.source_group)


@dataclass
class AgingResult:
    photo: np.ndarray  # the input, RGB uint8 (EXIF-rotated, possibly scaled down)
    faces: list[AgedFace]
    photos: dict[AgeGroup, np.ndarray]  # the whole photo per group, faces pasted back
    skipped_faces: int  # faces found beyond MAX_FACES, smallest first
    timings: dict[str, float]

    def grid(self) -> np.ndarray:
        """Rows = faces; columns = the aligned input, then the six groups."""
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


def detail_weight(position: float, own_group: int) -> float:
    """The share of the input's own detail an age position keeps (1 at the face's own group)."""
    return max(0.0, 1.0 - abs(position - own_group) / DETAIL_REACH)


def finish_crop(
    crop: np.ndarray, correction: np.ndarray, detail: np.ndarray, position: float, own_group: int
) -> np.ndarray:
    """A generated crop, colour-matched and carrying the input's detail for that age position."""
    return apply_correction(crop, correction + detail_weight(position, own_group) * detail)


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
        age_strength: float = DEFAULT_AGE_STRENGTH,
    ):
        self.device = resolve_device(device)
        self.encoder, self.generator, self.age_classifier = load_aging_models(weights, self.device)
        self.identity = load_identity(weights, self.device).requires_grad_(False)
        for module in (self.encoder, self.generator, self.age_classifier):
            module.requires_grad_(False)
        self.detector = FaceDetector(self.device)
        self.steps = steps
        self.max_seconds = max_seconds  # bounds the optimisation's latency; evaluation lifts it
        self.age_strength = age_strength

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None, **options: Any) -> FaceAger:
        """Weights from a folder (default: the bundled weights/) or a Hub repo `owner/name[@revision]`;
        `options` are __init__'s (device, steps, max_seconds, age_strength)."""
        return cls(weights, **options)

    def age(
        self,
        image: str | Path | bytes | Image.Image | np.ndarray,
        steps: int | None = None,
        progress: Progress | None = None,
    ) -> AgingResult:
        """Age every face in a photo (largest first, up to MAX_FACES) to all six groups."""
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
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
        lap("align")
        report(0.15, "Encoding")
        n_steps = self.steps if steps is None else steps

        def on_step(step: int, total: int) -> None:
            if step == 0:
                lap("encode")
            report(0.2 + 0.6 * step / max(total, 1), f"Optimising identity ({step}/{total})")

        z0, z, source, distances = self.invert(x, n_steps, on_step)
        lap("optimize")

        report(0.85, "Rendering six ages")
        aged, corrections, details = self.six_ages(crops, z, source)
        lap("render")

        aged_faces = []
        for i, face in enumerate(faces):
            aged_faces.append(
                AgedFace(
                    box=face.box,
                    landmarks=face.landmarks,
                    source_group=AgeGroup(int(source[i])),
                    input_crop=crops[i],
                    aged_crops={g: aged[g][i] for g in AgeGroup},
                    identity_distance=float(distances[i]),
                    matrix=matrices[i],
                    latent=z[i : i + 1].detach(),
                    correction=corrections[i],
                    detail=details[i],
                )
            )
        result = AgingResult(photo, aged_faces, {}, skipped, timings)
        report(0.95, "Pasting back")
        result.photos = {
            g: self._composite(photo, aged_faces, {f_i: f.aged_crops[g] for f_i, f in enumerate(aged_faces)}, g)
            for g in AgeGroup
        }
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
            faces = [replace(f, matrix=f.matrix @ np.diag([1 / scale, 1 / scale, 1.0])) for f in faces]
        return [
            self._composite(photo, faces, dict(enumerate(crops)), float(p))
            for p, crops in zip(positions, self._render_crops(result, positions), strict=True)
        ]

    def _render_crops(self, result: AgingResult, positions: Sequence[float]) -> list[list[np.ndarray]]:
        """Each face's colour-matched crop at each position. The six groups were rendered by age():
        only the ages between them go through the generator (a GIF: 15 of 21 frames)."""
        if not result.faces:
            return [[] for _ in positions]
        wanted = [float(p) for p in positions]
        between = sorted({p for p in wanted if not _is_group(p)})
        rendered: dict[float, list[np.ndarray]] = {}
        if between:
            z = torch.cat([f.latent for f in result.faces]).to(self.device)
            source = torch.tensor([int(f.source_group) for f in result.faces])
            with torch.inference_mode():
                batch = self.render_latents(z, torch.tensor(between), source)
            for p, crops in zip(between, batch, strict=True):
                rendered[p] = [f.finish(c, p) for c, f in zip(crops, result.faces, strict=True)]
        return [[f.aged_crops[AgeGroup(int(p))] for f in result.faces] if _is_group(p) else rendered[p] for p in wanted]

    def invert(
        self, crops: torch.Tensor, steps: int, on_step: Callable[[int, int], None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Canonical crops in [-1, 1] -> (z0, identity-optimised z, source group, identity distance).

        The source group comes from the model's own age classifier, never from the age judge.
        """
        with torch.inference_mode():
            z0 = self.encoder(crops)
            source = self.age_classifier(crops).argmax(1)
        if on_step is not None:
            on_step(0, steps)
        y_source = age_condition(source.float(), self.device)
        # Faces are optimised a few at a time: backpropagating through the identity network for a
        # crowd at once would cost ~60 MB per face. Each chunk gets its share of the time budget.
        n, chunks = len(crops), range(0, len(crops), OPTIMISE_BATCH)
        results = []
        for k, start in enumerate(chunks):
            part = slice(start, start + OPTIMISE_BATCH)

            def chunk_step(step: int, total: int, k: int = k) -> None:
                if on_step is not None:
                    on_step(k * total + step, len(chunks) * total)

            results.append(
                optimize_latent(
                    z0[part],
                    crops[part],
                    y_source[part],
                    self.generator,
                    self.identity,
                    steps,
                    self.max_seconds * len(crops[part]) / n,
                    on_step=chunk_step,
                )
            )
        z = torch.cat([r[0] for r in results])
        distances = torch.cat([r[1] for r in results])
        return z0, z, source, distances

    def six_ages(
        self, crops: Sequence[np.ndarray], z: torch.Tensor, source: torch.Tensor
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Finished aligned crops of every face at the six groups (a list over groups of (B,S,S,3)),
        with each face's colour correction and the input detail the generator did not reproduce."""
        with torch.inference_mode():
            aged = self.render_latents(z, torch.arange(NUM_GROUPS, dtype=torch.float32), source)
        # The render at the face's own group is its reconstruction: no extra generator pass.
        own = source.tolist()
        corrections, details = [], []
        for i, (crop, g) in enumerate(zip(crops, own, strict=True)):
            corrections.append(colour_correction(crop, aged[g][i], CROP_SIZE))
            details.append(crop.astype(np.float32) - apply_correction(aged[g][i], corrections[i]))
        finished = [
            np.stack([finish_crop(a, k, d, g, o) for a, k, d, o in zip(group, corrections, details, own, strict=True)])
            for g, group in enumerate(aged)
        ]
        return finished, corrections, details

    def render_latents(
        self, z: torch.Tensor, positions: torch.Tensor, source: torch.Tensor | None = None
    ) -> list[np.ndarray]:
        """G(z, y) for every latent at every position, batched; a list over positions of (B,S,S,3).

        With the faces' source groups and an age_strength other than 1, each condition moves that
        many times as far from the face's own group as the position asks; the generator's age
        modulation is linear in the condition, so this scales the age change it learned.
        """
        n = z.shape[0]
        conditions = age_condition(positions, self.device).repeat_interleave(n, dim=0)
        if source is not None and self.age_strength != 1.0:
            own = age_condition(source.float(), self.device).repeat(len(positions), 1)
            conditions = own + self.age_strength * (conditions - own)
        latents = z.repeat(len(positions), 1, 1, 1)
        # Chunks bound the memory: a crowd's GIF is 8 faces x 21 ages, ~1 GB of activations at once.
        images = np.concatenate(
            [
                to_uint8(self.generator(latents[i : i + RENDER_BATCH], conditions[i : i + RENDER_BATCH]))
                for i in range(0, len(latents), RENDER_BATCH)
            ]
        )
        return [images[i * n : (i + 1) * n] for i in range(len(positions))]

    @staticmethod
    def _composite(
        photo: np.ndarray, faces: list[AgedFace], crops: dict[int, np.ndarray], position: float
    ) -> np.ndarray:
        out = photo
        # Smallest faces first, so that where faces overlap the largest one ends on top.
        for i in sorted(crops, key=lambda i: faces[i].box[2] - faces[i].box[0]):
            face = faces[i]
            out = paste_back(out, crops[i], face.matrix, face.input_crop, detail_weight(position, face.source_group))
        return out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()


__all__ = ["AgedFace", "AgingResult", "DetectedFace", "FaceAger", "FaceAgingError", "GROUP_LABELS"]
