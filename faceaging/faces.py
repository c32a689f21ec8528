"""What the pipeline makes of a face and of a photo, and how both are rendered at any age.

A `PreparedFace` is one face made ready to age, once: its aligned crop, its identity-optimised
latents, its own age group and its head region in the photo. From it, any age is one generator
call (`edit_at`) and one render (`render_at`). The photo pipeline (`FaceAger.age`), live video
(`LiveAger`) and evaluation all hold their faces as `PreparedFace`s.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from PIL import Image

from .ages import NUM_GROUPS, AgeGroup
from .align import CROP_SIZE, align_face, to_tensor, to_uint8
from .edit import AgeEdit
from .editor import AgeEditor
from .images import scaled_size
from .region import HeadRegion, head_region
from .render import composite, render_edit

# Aligned crops cut from the aged photos (CLI, app's face view) are at most this large.
MAX_CROP_SIDE = 512
# Ages a face keeps the edit of beyond its six groups (an edit is ~0.5 MB, a new one ~15 ms).
EDITS_KEPT = 8
# Ages per generator call when rendering several: a crowd's 15 GIF frames at once held ~60 MB more.
POSITIONS_PER_CALL = 4


def is_group(position: float) -> bool:
    return float(position).is_integer() and 0 <= position < NUM_GROUPS


@dataclass
class PreparedFace:
    """One face made ready to age: everything that belongs to the person, not to the age."""

    crop: np.ndarray  # canonical aligned crop, uint8 (S, S, 3)
    latent: torch.Tensor = field(repr=False)  # (1, 2, C, H, W): identity-optimised, for the younger and the older ages
    z0: torch.Tensor = field(repr=False)  # (1, C, H, W): the encoder's latent
    source_group: AgeGroup  # where every change starts: the estimate, or the group the user gave
    estimated_group: AgeGroup  # the age probe's reading, also when the user gave theirs
    probabilities: np.ndarray = field(repr=False)  # the age probe's (6,)
    identity_distance: float  # the worse of its renders at 0-18 and 60+, after optimisation
    editor: AgeEditor = field(repr=False)
    box: np.ndarray | None = None  # in the photo (None: a crop with no photo around it)
    landmarks: np.ndarray | None = None
    matrix: np.ndarray | None = field(repr=False, default=None)  # photo -> crop
    region: HeadRegion | None = field(repr=False, default=None)  # head region and masks in the photo
    edits: dict[float, AgeEdit] = field(repr=False, default_factory=dict)  # made so far, by position
    aged_crops: dict[AgeGroup, np.ndarray] = field(repr=False, default_factory=dict)  # the model's crops per group

    @property
    def tensor(self) -> torch.Tensor:
        """The crop as the networks take it, (1, 3, S, S) in [-1, 1]."""
        return to_tensor(self.crop[None], self.editor.device)

    @property
    def crop_side(self) -> int:
        """The side at which an aligned crop holds this face's own detail (128 px up to MAX_CROP_SIDE)."""
        pixels = CROP_SIZE / np.sqrt(abs(np.linalg.det(self.matrix[:, :2])))
        return int(np.clip(round(pixels / 64) * 64, CROP_SIZE, MAX_CROP_SIDE))

    def start_from(self, group: AgeGroup) -> None:
        """Every change starts at `group` from now on: the edits made from another group are dropped."""
        if group != self.source_group:
            self.source_group = group
            self.edits.clear()
            self.aged_crops.clear()

    def edit_at(self, position: float) -> AgeEdit:
        """The generator's edit of this face to age `position` (to 0.01), made once and kept."""
        key = round(float(position), 2)
        if key not in self.edits:
            between = [k for k in self.edits if not is_group(k)]
            if len(between) >= EDITS_KEPT:
                self.edits.pop(between[0])
            source = torch.tensor([int(self.source_group)], device=self.editor.device)
            self.edits[key] = self.editor.edits_at(self.tensor, self.latent, torch.tensor([key]), source)[0][0]
        return self.edits[key]

    def render_at(
        self, photo: np.ndarray, position: float, region: HeadRegion | None = None, edit: AgeEdit | None = None
    ) -> np.ndarray:
        """The head region (`region`, default the face's own) of `photo` with the face at age
        `position`, float32 at the photo's own resolution (`render.render_edit`)."""
        region = region or self.region
        return render_edit(photo, region, edit or self.edit_at(position), self.source_group, position)


def render_faces(
    photo: np.ndarray, faces: Sequence[PreparedFace], position: float, edits: Sequence[AgeEdit] | None = None
) -> np.ndarray:
    """`photo` with every face (largest first, as found) at age `position`, pasted back."""
    edits = edits or [None] * len(faces)
    pairs = [(f, e) for f, e in zip(faces, edits, strict=True) if f.region]
    return composite(photo, [(f.region, f.render_at(photo, position, edit=e)) for f, e in pairs])


@dataclass
class AgingResult:
    photo: np.ndarray  # the input, RGB uint8 (EXIF-rotated, possibly scaled down)
    faces: list[PreparedFace]  # largest first
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
        rows = [np.concatenate([f.crop, *(f.aged_crops[g] for g in AgeGroup)], axis=1) for f in self.faces]
        return np.concatenate(rows, axis=0)

    def render_at(self, position: float) -> np.ndarray:
        """The whole photo at a continuous age position (0 = 0-18 ... 5 = 60+): the slider."""
        return self.render_many([position])[0]

    def crops_at(self, position: float) -> list[np.ndarray]:
        """Each face's 128 px crop (the model's own) at a continuous age position."""
        if is_group(position):
            return [f.aged_crops[AgeGroup(int(position))] for f in self.faces]
        with torch.inference_mode():
            x = torch.cat([f.tensor for f in self.faces])
            return list(to_uint8(AgeEdit.cat(self._edits([position])[0]).apply_to(x)))

    def render_many(self, positions: Sequence[float], scale: float = 1.0) -> list[np.ndarray]:
        """The whole photo at several age positions; `scale` shrinks the photo."""
        photo, faces = self.photo, self.faces
        if scale != 1.0:
            photo = cv2.resize(photo, scaled_size(photo, scale), interpolation=cv2.INTER_AREA)
            # The alignment maps photo -> crop; on a photo shrunk by `scale` it first undoes the shrink.
            shrink = np.diag([1 / scale, 1 / scale, 1.0])
            faces = [replace(f, matrix=f.matrix @ shrink) for f in faces]
            faces = [replace(f, region=head_region(photo, f.matrix, CROP_SIZE)) for f in faces]
        frames = []
        for start in range(0, len(positions), POSITIONS_PER_CALL):
            chunk = positions[start : start + POSITIONS_PER_CALL]
            frames += [
                render_faces(photo, faces, float(p), edits) for p, edits in zip(chunk, self._edits(chunk), strict=True)
            ]
        return frames

    def gif(self, frames_between: int = 3, max_side: int = 512) -> bytes:
        """An animated GIF through the six groups, blended ages filling the gaps."""
        scale = min(1.0, max_side / max(self.photo.shape[:2]))
        if self.faces and frames_between > 0:
            positions = np.linspace(0, NUM_GROUPS - 1, (NUM_GROUPS - 1) * (frames_between + 1) + 1)
            frames = self.render_many(positions, scale)
        else:
            frames = [self.photos[g] for g in AgeGroup]
        # A fast octree palette per frame: PIL's default median cut takes a second per frame.
        images = [
            Image.fromarray(frame).resize(scaled_size(frame, scale)).quantize(method=Image.Quantize.FASTOCTREE)
            for frame in frames
        ]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=180, loop=0)
        return buffer.getvalue()

    def _edits(self, positions: Sequence[float]) -> list[list[AgeEdit]]:
        """Each face's edit at each position, batched over faces and ages: the six groups were made
        by `FaceAger.age`, so only the ages between them go through the generator (a GIF: 15 of 21)."""
        if not self.faces:
            return [[] for _ in positions]
        between = sorted({float(p) for p in positions if not is_group(p)})
        made: dict[float, AgeEdit] = {}
        if between:
            editor = self.faces[0].editor
            x = torch.cat([f.tensor for f in self.faces])
            z = torch.cat([f.latent for f in self.faces]).to(editor.device)
            source = torch.tensor([int(f.source_group) for f in self.faces], device=editor.device)
            made = dict(zip(between, editor.edits_at(x, z, torch.tensor(between), source)[0], strict=True))
        return [
            [f.edit_at(p) for f in self.faces]
            if is_group(p)
            else [made[float(p)][i : i + 1] for i in range(len(self.faces))]
            for p in positions
        ]
