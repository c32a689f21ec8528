"""Make a corpus of hostile inputs from the example photos (nothing of it is committed).

`python tests/hostile_inputs.py DIR` writes it for manual runs; tests call `make_corpus(DIR)`.
Each entry says what a user must get: "aged" (a result, possibly with faces skipped) or the
start of the message that tells them what to do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PORTRAIT = EXAMPLES / "grace_hopper_us_navy_portrait_1984.jpg"
PORTRAITS = [
    EXAMPLES / "grace_hopper_us_navy_portrait_1984.jpg",
    EXAMPLES / "eileen_collins_nasa_portrait.png",
    EXAMPLES / "luciano_codait_cc0.png",
]
AGED = "aged"


@dataclass(frozen=True)
class HostileInput:
    path: Path
    expect: str  # AGED, or the beginning of the user message
    faces: int = 1  # faces aged (the cap, for the crowd)
    skipped: bool = False  # faces beyond the cap, reported to the user


def _portrait() -> Image.Image:
    return Image.open(PORTRAIT).convert("RGB")


def _landscape(size=(640, 400)) -> Image.Image:
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    sky = np.stack([90 + 0 * x, 140 + 0 * x, 200 + 0 * x], -1).astype(float)
    hills = (y > size[1] * (0.6 + 0.1 * np.sin(x / 50)))[..., None] * np.array([-40, 20, -150])
    noise = np.random.default_rng(0).normal(0, 6, (*sky.shape[:2], 3))
    return Image.fromarray(np.clip(sky + hills + noise, 0, 255).astype(np.uint8))


def _twenty_faces() -> Image.Image:
    tiles = [Image.open(p).convert("RGB").resize((220, 260)) for p in PORTRAITS]
    sheet = Image.new("RGB", (5 * 220, 4 * 260), "white")
    for i in range(20):
        sheet.paste(tiles[i % len(tiles)], ((i % 5) * 220, (i // 5) * 260))
    return sheet


def _tiny_face() -> Image.Image:
    """A face about 30 x 30 pixels in a 160 x 160 photo."""
    face = _portrait()
    face = face.resize((int(30 * face.width / 120), int(30 * face.height / 120)))  # face ~ 1/4 of the portrait
    canvas = Image.new("RGB", (160, 160), (200, 200, 190))
    canvas.paste(face, (40, 40))
    return canvas


def _fifty_megapixels(path: Path) -> None:
    canvas = Image.new("RGB", (8700, 5800), (120, 130, 140))
    canvas.paste(_portrait().resize((2400, 3000)), (3000, 1400))
    canvas.save(path, quality=80)


def _bomb(path: Path) -> None:
    """A 1-bit PNG of 40000 x 40000 (1.6 gigapixels) that is a few hundred kilobytes on disk."""
    Image.new("1", (40000, 40000)).save(path, optimize=True)


def _exif_rotated(path: Path) -> None:
    """As a phone stores a portrait shot: pixels lying on their side plus an orientation tag."""
    image = _portrait().rotate(90, expand=True)  # stored rotated 90 degrees anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(path, exif=exif.tobytes())


def _animated(path: Path) -> None:
    first = _portrait().resize((300, 375))
    frames = [first, first.transpose(Image.Transpose.FLIP_LEFT_RIGHT), _landscape((300, 375))]
    first.save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)


def _cut_off() -> Image.Image:
    """The face runs off the left edge: only its right 60% is in the picture."""
    image = _portrait()
    return image.crop((int(image.width * 0.38), 0, image.width, image.height))


def _sixteen_bit(path: Path) -> None:
    grey = np.asarray(_portrait().convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path)  # mode I;16


def _write_image(make):
    def write(path: Path) -> None:
        make().save(path)

    return write


def _write_bytes(make):
    def write(path: Path) -> None:
        path.write_bytes(make())

    return write


def _portrait_bytes() -> bytes:
    return PORTRAIT.read_bytes()


# name -> (what the user must get, how to write the file, expected faces, faces skipped)
CATALOGUE = {
    "landscape.jpg": ("No face found", _write_image(_landscape), 0, False),
    "blank.png": ("No face found", _write_image(lambda: Image.new("RGB", (500, 400), "white")), 0, False),
    "twenty_faces.jpg": (AGED, _write_image(_twenty_faces), 8, True),
    "tiny_face.png": (AGED, _write_image(_tiny_face), 1, False),
    "fifty_megapixels.jpg": (AGED, _fifty_megapixels, 1, False),
    "bomb.png": ("The image has more than", _bomb, 0, False),
    "truncated.jpg": ("The image file is damaged", _write_bytes(lambda: _portrait_bytes()[:20000]), 0, False),
    "zero_bytes.jpg": ("The file is empty", _write_bytes(lambda: b""), 0, False),
    "text.jpg": (
        "This file is not an image",
        _write_bytes(lambda: b"Dear diary, I renamed a text file.\n" * 20),
        0,
        False,
    ),
    "rgba.png": (AGED, _write_image(lambda: _portrait().convert("RGBA")), 1, False),
    "greyscale.png": (AGED, _write_image(lambda: _portrait().convert("L")), 1, False),
    "cmyk.jpg": (AGED, _write_image(lambda: _portrait().convert("CMYK")), 1, False),
    "sixteen_bit.png": (AGED, _sixteen_bit, 1, False),
    "palette.png": (AGED, _write_image(lambda: _portrait().convert("P", palette=Image.Palette.ADAPTIVE)), 1, False),
    "exif_rotated.jpg": (AGED, _exif_rotated, 1, False),
    "animated.gif": (AGED, _animated, 1, False),
    "long_thin.png": ("The image is very long and thin", _write_image(lambda: Image.new("RGB", (10000, 50))), 0, False),
    "cut_off_face.jpg": (AGED, _write_image(_cut_off), 1, False),
}


def make_corpus(folder: Path, names: list[str] | None = None) -> dict[str, HostileInput]:
    """Write (once) and describe the corpus entries `names` (default: all) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = {}
    for name in names or CATALOGUE:
        expect, write, faces, skipped = CATALOGUE[name]
        path = folder / name
        if not path.exists():
            write(path)
        corpus[name] = HostileInput(path, expect, faces, skipped)
    return corpus


if __name__ == "__main__":
    for name, item in make_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/hostile")).items():
        print(f"{name:22} {item.path.stat().st_size:>10} bytes  expect: {item.expect}")
