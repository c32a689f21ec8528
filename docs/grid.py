"""Make the README's whole-photo grid and its 100% detail: `python docs/grid.py PHOTO [PHOTO ...]`.

Each row is one photo's head region at the photo's own resolution (no scaling beyond fitting the
cell height): the input, then 0-18 ... 60+, as the app and `age` render them with the defaults.
With --before DIR (the previous release's `age` output of the same photos), it also writes
docs/detail.jpg: the first photo's face at 100% at 60+ (or --detail-group, into --detail-name),
before beside now.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from faceaging import AgeGroup, FaceAger

CELL = 384


def _cell(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    cell = Image.fromarray(image[y0:y1, x0:x1])
    return np.asarray(cell.resize((round(cell.width * CELL / cell.height), CELL), Image.Resampling.LANCZOS))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--before", help="the previous release's `age` output folder of the same photos")
    parser.add_argument("--detail-group", default="60+", help="the group of the 100%% detail")
    parser.add_argument("--detail-name", default="detail.jpg")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    ager = FaceAger.from_pretrained()
    rows = []
    for index, path in enumerate(args.photos):
        result = ager.age(path)
        box = result.faces[0].region.box
        rows.append(np.concatenate([_cell(result.photo, box)] + [_cell(result.photos[g], box) for g in AgeGroup], 1))
        if index == 0 and args.before:
            x0, y0, x1, y1 = result.faces[0].box.astype(int)
            pad = (x1 - x0) // 5
            window = slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)
            group = AgeGroup.from_label(args.detail_group)
            before = np.asarray(Image.open(Path(args.before) / Path(path).name / f"{group.label}.png").convert("RGB"))
            detail = np.concatenate([before[window], result.photos[group][window]], 1)
            Image.fromarray(detail).save(Path(args.out) / args.detail_name, quality=92)
    width = min(r.shape[1] for r in rows)
    Image.fromarray(np.concatenate([r[:, :width] for r in rows], 0)).save(Path(args.out) / "grid_hd.jpg", quality=85)


if __name__ == "__main__":
    main()
