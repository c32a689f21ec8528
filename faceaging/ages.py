"""The six age groups that the generator is conditioned on."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class AgeGroup(IntEnum):
    """Age-cGAN's six groups; the value is the index of the one-hot condition."""

    CHILD = 0  # 0-18
    TWENTIES = 1  # 19-29
    THIRTIES = 2  # 30-39
    FORTIES = 3  # 40-49
    FIFTIES = 4  # 50-59
    SENIOR = 5  # 60+

    @property
    def label(self) -> str:
        return GROUP_LABELS[self]

    @classmethod
    def from_age(cls, age: float) -> AgeGroup:
        # Ages at or below zero come from noisy labels (e.g. IMDB-WIKI dates); they are children,
        # not a missing category as in the book's age_to_category.
        for group, upper in zip(cls, _UPPER_BOUNDS, strict=False):
            if age <= upper:
                return group
        return cls.SENIOR

    @classmethod
    def from_label(cls, label: str) -> AgeGroup:
        try:
            return cls(GROUP_LABELS.index(label))
        except ValueError:
            raise ValueError(f"unknown age group {label!r}; expected one of {', '.join(GROUP_LABELS)}") from None

    @classmethod
    def parse(cls, value: AgeGroup | int | str | None) -> AgeGroup | None:
        """A group the user gave, as AgeGroup, index (0 = 0-18 ... 5 = 60+) or label ("60+"); None,
        "" or "auto" (not given: the model estimates it) is None; anything else is a
        `FaceAgingError` with a sentence for the user."""
        from .images import FaceAgingError

        if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
            return None
        try:
            if isinstance(value, str) and not value.strip().isdigit():
                return cls.from_label(value.strip())
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return cls(int(value))
        except (TypeError, ValueError):
            choices = ", ".join(GROUP_LABELS)
            raise FaceAgingError(f"Unknown age group {value!r}; choose one of {choices}.") from None

    @classmethod
    def position(cls, value: str | float) -> float:
        """An age position on the 0..5 axis from a group label ("60+") or a number (fractions blend
        neighbouring groups); anything else is a `FaceAgingError`."""
        from .images import FaceAgingError

        text = str(value).strip()
        if text in GROUP_LABELS:
            return float(GROUP_LABELS.index(text))
        try:
            position = float(text)
        except ValueError:
            position = -1.0
        if not 0 <= position <= NUM_GROUPS - 1:
            raise FaceAgingError(
                f"Choose an age group ({', '.join(GROUP_LABELS)}) or a position from 0 to 5, not {text!r}."
            )
        return position


AUTO = "auto"  # the group not given: estimated by the model
GROUP_LABELS = ("0-18", "19-29", "30-39", "40-49", "50-59", "60+")
_UPPER_BOUNDS = (18, 29, 39, 49, 59)
NUM_GROUPS = len(GROUP_LABELS)


def age_condition(position: float | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Condition vector for a continuous position on the 0..5 group axis.

    Between two groups the one-hot vectors are blended linearly, so that the age slider
    moves smoothly instead of jumping six times. Accepts a scalar or a 1-D tensor of positions.
    """
    import torch  # here, not at the top: the app's page is served before torch has loaded

    pos = torch.as_tensor(position, dtype=torch.float32, device=device).clamp(0, NUM_GROUPS - 1)
    pos = pos.reshape(-1)
    lower = pos.floor().long().clamp(max=NUM_GROUPS - 2)
    frac = (pos - lower).unsqueeze(1)
    out = torch.zeros(pos.shape[0], NUM_GROUPS, device=device)
    out.scatter_(1, lower.unsqueeze(1), 1 - frac)
    out.scatter_add_(1, (lower + 1).unsqueeze(1), frac)
    return out
