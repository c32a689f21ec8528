"""A reader for dlib's serialisation format, enough to read its DNN model files.

Used only to convert dlib's CC0 face-recognition network into safetensors once; faceaging never
needs dlib at run time. The format: integers are a control byte (low nibble = byte count,
0x80 = negative) followed by little-endian bytes; floats are an integer mantissa and an
integer exponent; strings are a length then the bytes; tensors (version 2) are four
dimensions then raw little-endian float32 values. A network is written input layer first,
each layer as a string tag followed by its fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    pass


class DlibReader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def int(self) -> int:
        control = self._take(1)[0]
        size, negative = control & 0x0F, control & 0x80
        if size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if negative else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        return self._take(self.int()).decode("ascii")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"unsupported tensor version {version} at {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).copy()

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError("unexpected end of file")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


@dataclass
class Layer:
    kind: str
    params: np.ndarray | None = None
    fields: dict[str, float] = field(default_factory=dict)


# After its tag, each layer kind with weights or geometry: the integer fields before its params
# tensor, and after it. Other layers (relu, add_prev, tag, skip) carry nothing we need.
_LAYER_FIELDS = {
    "con_4": (
        (),
        ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"),
    ),
    "affine_": ((), ()),
    "fc_2": (("num_outputs", "num_inputs"), ()),
    "max_pool_2": (
        ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"),
        None,
    ),
    "avg_pool_2": (
        ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"),
        None,
    ),
}
_TAG = re.compile(rb"\x01([\x03-\x20])(con_4|affine_|fc_2|max_pool_2|avg_pool_2|input_rgb_image_sized)")


def read_dnn(path: str | Path) -> list[Layer]:
    """The layers of a dlib DNN file in data-flow order (input first), with their parameters.

    Each layer's fields are parsed exactly; the scan for the next tag starts after the last
    parameter tensor, so float data is never mistaken for a tag.
    """
    data = Path(path).read_bytes()
    layers: list[Layer] = []
    pos = 0
    while (match := _TAG.search(data, pos)) is not None:
        reader = DlibReader(data, match.start())
        kind = reader.string()
        if kind == "input_rgb_image_sized":
            means = [reader.float() for _ in range(3)]
            layers.append(
                Layer(
                    kind,
                    None,
                    {"avg_red": means[0], "avg_green": means[1], "avg_blue": means[2]},
                )
            )
            layers[-1].fields.update(nr=reader.int(), nc=reader.int())
        else:
            before, after = _LAYER_FIELDS[kind]
            fields = {name: reader.int() for name in before}
            params = None if after is None else reader.tensor()
            fields.update({name: reader.int() for name in after or ()})
            layers.append(Layer(kind, params, fields))
        pos = reader.pos
    if not layers or layers[0].kind != "input_rgb_image_sized":
        raise DlibFormatError(f"{path} does not look like a dlib DNN file")
    return layers
