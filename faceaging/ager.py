"""FaceAger: detect -> align -> encode -> optimise -> edit six ages -> render and paste back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from .ages import GROUP_LABELS, NUM_GROUPS, AgeGroup, age_condition
from .align import CROP_SIZE, align_face, to_tensor
from .detect import DetectedFace, FaceDetector
from .editor import DEFAULT_AGE_STRENGTH, DEFAULT_COLOUR_SHARE, AgeEditor, AgeStrength
from .faces import AgingResult, PreparedFace, render_faces
from .images import FaceAgingError, load_image
from .models import resolve_device
from .optimize import optimize_latent
from .region import head_region
from .timing import Stopwatch, summing
from .weights import load_aging_models, load_identity

MAX_FACES = 8
MIN_FACE_PIXELS = 24
OPTIMISE_BATCH = 2  # faces per identity optimisation (two renders each: both ends of the age axis)
RENDER_THREADS = 2  # photos rendered at once: OpenCV and NumPy release the GIL

# progress(fraction, description), the shape gr.Progress accepts
Progress = Callable[[float, str], None]


class Inversion(NamedTuple):
    """`FaceAger.invert`'s result for B crops."""

    z0: torch.Tensor  # (B, C, H, W) the encoder's latent
    latent: torch.Tensor  # (B, 2, C, H, W) identity-optimised, for the ages below and from the face's own group
    source: torch.Tensor  # (B,) the face's own group: told, or the age probe's most likely
    distance: torch.Tensor  # (B,) identity distance, the worse of the two ends
    probabilities: torch.Tensor  # (B, 6) the age probe's


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
        self.encoder, generator, self.age_probe = load_aging_models(weights, self.device)
        self.identity = load_identity(weights, self.device).requires_grad_(False)
        for module in (self.encoder, generator, self.age_probe):
            module.requires_grad_(False)
        self.editor = AgeEditor(generator, self.device, age_strength, colour_share)
        self.detector = FaceDetector(self.device)
        self.steps = steps
        self.max_seconds = max_seconds  # bounds the optimisation's latency; evaluation lifts it

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
        told = AgeGroup.parse(source_group)
        report = progress or (lambda fraction, description: None)
        timings: dict[str, float] = {}
        watch = Stopwatch(summing(timings))
        photo = load_image(image)
        watch.lap("load")
        report(0.05, "Finding faces")
        found = [f for f in self.detector.detect(photo) if f.size >= MIN_FACE_PIXELS]
        watch.lap("detect")
        if not found:
            raise FaceAgingError("No face found — try a brighter, frontal photo where the face is clearly visible.")

        def on_step(step: int, total: int) -> None:
            if step == 0:
                watch.lap("encode")
            report(0.2 + 0.6 * step / max(total, 1), f"Optimising identity ({step}/{total})")

        report(0.15, "Encoding")
        faces = self.prepare(photo, found[:MAX_FACES], told, steps, on_step=on_step, watch=watch)
        report(0.85, "Rendering six ages")
        self.edit_groups(faces)
        watch.lap("render")
        report(0.95, "Rendering the photo")
        with ThreadPoolExecutor(RENDER_THREADS) as pool:
            photos = dict(zip(AgeGroup, pool.map(lambda g: render_faces(photo, faces, g), AgeGroup), strict=True))
        watch.lap("paste")
        return AgingResult(photo, faces, photos, max(0, len(found) - MAX_FACES), timings)

    def prepare(
        self,
        photo: np.ndarray,
        faces: Sequence[DetectedFace | np.ndarray],
        told: AgeGroup | None = None,
        steps: int | None = None,
        max_seconds: float | None = None,
        on_step: Callable[[int, int], None] | None = None,
        watch: Stopwatch | None = None,
    ) -> list[PreparedFace]:
        """Each face of `photo` (a detection, or its five landmarks) made ready to age: aligned,
        inverted (`invert`) and given its head region in the photo."""
        watch = watch or Stopwatch(lambda stage, seconds: None)
        landmarks = [f.landmarks if isinstance(f, DetectedFace) else f for f in faces]
        crops, matrices = zip(*(align_face(photo, points, CROP_SIZE) for points in landmarks), strict=True)
        watch.lap("align")
        prepared = self.prepare_crops(np.stack(crops), told, steps, max_seconds, on_step)
        watch.lap("optimize")
        for face, found, points, matrix in zip(prepared, faces, landmarks, matrices, strict=True):
            face.box = found.box if isinstance(found, DetectedFace) else None
            face.landmarks, face.matrix = points, matrix
            face.region = head_region(photo, matrix, CROP_SIZE)
        watch.lap("region")
        return prepared

    def prepare_crops(
        self,
        crops: np.ndarray,
        told: AgeGroup | None = None,
        steps: int | None = None,
        max_seconds: float | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> list[PreparedFace]:
        """Aligned crops (B, S, S, 3 uint8) made ready to age, with no photo around them."""
        told_tensor = None if told is None else torch.full((len(crops),), int(told), device=self.device)
        steps = self.steps if steps is None else steps
        inverted = self.invert(to_tensor(crops, self.device), steps, on_step, told_tensor, max_seconds)
        probabilities = inverted.probabilities.cpu().numpy()
        return [
            PreparedFace(
                crop=crops[i],
                latent=inverted.latent[i : i + 1].detach(),
                z0=inverted.z0[i : i + 1],
                source_group=AgeGroup(int(inverted.source[i])),
                estimated_group=AgeGroup(int(probabilities[i].argmax())),
                probabilities=probabilities[i],
                identity_distance=float(inverted.distance[i]),
                editor=self.editor,
            )
            for i in range(len(crops))
        ]

    def edit_groups(self, faces: Sequence[PreparedFace]) -> None:
        """Every face's edit and 128 px crop at the six groups, in one batch."""
        x = torch.cat([f.tensor for f in faces])
        z = torch.cat([f.latent for f in faces])
        source = torch.tensor([int(f.source_group) for f in faces], device=self.device)
        edits, aged = self.editor.edits_at(x, z, torch.arange(NUM_GROUPS, dtype=torch.float32), source)
        for i, face in enumerate(faces):
            for g in AgeGroup:
                face.edits[float(g)], face.aged_crops[g] = edits[g][i : i + 1], aged[g][i]

    def invert(
        self,
        crops: torch.Tensor,
        steps: int,
        on_step: Callable[[int, int], None] | None = None,
        told: torch.Tensor | None = None,
        max_seconds: float | None = None,
    ) -> Inversion:
        """Canonical crops in [-1, 1] -> their latents (`Inversion`). Age-cGAN's stage 3 keeps the
        renders at both ends, 0-18 and 60+, the same person, each end with its own latent (a harder
        pull at one end moved the other's renders too). `max_seconds` bounds the optimisation."""
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
        # Every (face, end) pair is one item of the optimisation; the pairs of a face lie together.
        ends = torch.tensor([0.0, NUM_GROUPS - 1.0], device=self.device)
        pair_end, pair_source = ends.repeat(len(crops)), source.repeat_interleave(2)
        y_source, y_target = (age_condition(c.float(), self.device) for c in (pair_source, pair_end))
        strength = self.editor.prior_strengths(pair_end, pair_source)
        z0_pairs, crops_pairs, wanted_pairs = (t.repeat_interleave(2, 0) for t in (z0, crops, wanted))
        # A few faces at a time: a crowd at once costs ~60 MB per render. Each chunk gets its share of time.
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
                    self.editor.generator,
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
        return Inversion(z0, z, source, distances, probabilities)

    def age_probabilities(self, crops: torch.Tensor) -> torch.Tensor:
        """How likely each face (crops in [-1, 1]) is in each of the six groups (B, 6): the model's
        age probe on the identity network's features, never the age judge."""
        with torch.inference_mode():
            return self.age_probe(self.identity.crop_features(crops)).softmax(1)


__all__ = ["AgeStrength", "AgingResult", "FaceAger", "FaceAgingError", "GROUP_LABELS", "Inversion", "PreparedFace"]
