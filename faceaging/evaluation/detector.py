"""A realism judge that the identity network's blind spots cannot fool: a classifier two-sample test.

For each target group a small CNN, trained from scratch (never on dlib or any other pretrained
features), learns to tell real faces of that group from faces the model aged into it (Lopez-Paz &
Oquab 2017). With k-fold cross-validation every face is scored by a detector that never trained
on it, and the ROC AUC of those scores says how far apart the two sets are: 0.5 when no detector
can tell them apart, 1 when every fake is caught. Three detectors look at different things:
- `full`: the RGB crop;
- `texture`: the luma's high-pass only (noise, mottling, blur, wrinkles);
- `colour`: the low-passed chroma only (blotches, tints, pale or dark washes).
The architecture, the folds and the training budget are fixed here, so the figure is comparable
across releases.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from ..edit import gaussian_blur

VIEWS = ("full", "texture", "colour")
FOLDS = 5
STEPS = 200  # batches per detector
BATCH = 32
LEARNING_RATE = 2e-3
SEED = 0
RESAMPLES = 1000
TEXTURE_SIGMA = 2.0  # crop pixels: the texture view is the luma minus its blur at this scale
COLOUR_SIGMA = 4.0  # the colour view is the chroma blurred at this scale, then a quarter of the size
WIDTHS = (32, 64, 64)


def face_view(images: np.ndarray, view: str) -> torch.Tensor:
    """What a detector sees of aligned crops (N, S, S, 3 uint8): (N, C, H, W) float32."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if view == "full":
        return x
    luma = x.mean(1, keepdim=True)
    if view == "texture":
        return 8 * (luma - gaussian_blur(luma, TEXTURE_SIGMA))
    if view == "colour":
        chroma = gaussian_blur(x[:, [0, 2]] - luma, COLOUR_SIGMA)  # red and blue against the luma
        return 4 * F.avg_pool2d(chroma, 4)
    raise ValueError(f"unknown view {view!r}; one of {', '.join(VIEWS)}")


class RealismDetector(nn.Module):
    """A small CNN: a 4 x 4 patch convolution at stride 4 (every pixel seen, the cost of a 32 px
    image), two stride-2 convolutions, global average pooling, one logit (fake)."""

    def __init__(self, channels: int, patch: int = 4):
        super().__init__()
        first = WIDTHS[0]
        layers, c = [nn.Conv2d(channels, first, patch, patch), nn.BatchNorm2d(first), nn.LeakyReLU(0.2)], first
        for width in WIDTHS[1:]:
            layers += [nn.Conv2d(c, width, 3, 2, 1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            c = width
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x).mean(dim=(2, 3))).squeeze(1)


def _train_and_score(
    x: torch.Tensor, labels: torch.Tensor, train: np.ndarray, test: np.ndarray, seed: int
) -> np.ndarray:
    """A fresh detector trained for STEPS batches on `train` (half real, half fake, drawn with
    replacement and mirrored at random), its scores on `test`."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = RealismDetector(x.shape[1], patch=1 if x.shape[-1] <= 32 else 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    real, fake = (torch.from_numpy(train[labels.numpy()[train] == c]) for c in (0, 1))
    half = BATCH // 2
    model.train()
    for _ in range(STEPS):
        batch = torch.cat([s[torch.randint(len(s), (half,), generator=generator)] for s in (real, fake)])
        flip = torch.rand(len(batch), generator=generator) < 0.5
        inputs = torch.where(flip.view(-1, 1, 1, 1), x[batch].flip(-1), x[batch])
        loss = F.binary_cross_entropy_with_logits(model(inputs), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.inference_mode():
        return model(x[torch.from_numpy(test)]).numpy()


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` for telling label 1 from label 0 (Mann-Whitney; ties count half)."""
    ranks = rankdata(scores)
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def cross_validated_scores(real: np.ndarray, fake: np.ndarray, view: str, seed: int = SEED) -> np.ndarray:
    """Every face's score (real first, then fake) from a detector that did not train on it:
    FOLDS folds, each class split evenly between them."""
    images = np.concatenate([real, fake])
    labels = np.concatenate([np.zeros(len(real)), np.ones(len(fake))]).astype(np.float32)
    x, y = face_view(images, view), torch.from_numpy(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(images), dtype=int)
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls)
        folds[rng.permutation(members)] = np.arange(len(members)) % FOLDS
    scores = np.empty(len(images), dtype=np.float32)
    for k in range(FOLDS):
        test, train = np.flatnonzero(folds == k), np.flatnonzero(folds != k)
        scores[test] = _train_and_score(x, y, train, test, seed + k)
    return scores


def _bootstrap(statistic, n_real: int, n_fake: int, seed: int) -> tuple[float, float]:
    """The 95% interval of `statistic(real indices, fake indices)` over RESAMPLES bootstrap
    resamples of the faces, each set resampled on its own."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n_real, n_real), rng.integers(0, n_fake, n_fake)) for _ in range(RESAMPLES)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def two_sample_auc(real: np.ndarray, fake: np.ndarray, view: str = "full", seed: int = SEED) -> dict:
    """How well a detector tells `fake` crops from `real` ones (both N, S, S, 3 uint8): the
    cross-validated ROC AUC and its 95% bootstrap interval (faces resampled within each set)."""
    if len(real) < FOLDS or len(fake) < FOLDS:
        return {"auc": None, "low": None, "high": None, "real": len(real), "fake": len(fake)}
    scores = cross_validated_scores(real, fake, view, seed)
    real_scores, fake_scores = scores[: len(real)], scores[len(real) :]
    low, high = _bootstrap(lambda r, f: _auc(real_scores[r], fake_scores[f]), len(real), len(fake), seed)
    return {"auc": _auc(real_scores, fake_scores), "low": low, "high": high, "real": len(real), "fake": len(fake)}


def paired_auc_difference(
    real: np.ndarray, new: np.ndarray, old: np.ndarray, view: str = "full", seed: int = SEED
) -> dict:
    """Two models' aged faces of the same source faces (`new[i]` and `old[i]` made from one face)
    against the same real faces: each model's AUC, and new - old with a paired 95% bootstrap
    interval (the same real and source faces drawn for both). Below zero: the new model's faces
    are harder to tell from real ones."""
    if len(real) < FOLDS or len(new) < FOLDS:
        return {"new": None, "old": None, "difference": None, "low": None, "high": None}
    n = len(real)
    new_scores, old_scores = (cross_validated_scores(real, fake, view, seed) for fake in (new, old))

    def difference(r: np.ndarray, f: np.ndarray) -> float:
        return _auc(new_scores[r], new_scores[n + f]) - _auc(old_scores[r], old_scores[n + f])

    low, high = _bootstrap(difference, n, len(new), seed)
    aucs = [_auc(s[:n], s[n:]) for s in (new_scores, old_scores)]
    return {"new": aucs[0], "old": aucs[1], "difference": aucs[0] - aucs[1], "low": low, "high": high}


def _auc(real_scores: np.ndarray, fake_scores: np.ndarray) -> float:
    labels = np.concatenate([np.zeros(len(real_scores)), np.ones(len(fake_scores))])
    return roc_auc(labels, np.concatenate([real_scores, fake_scores]))


def realism_judge(outputs: dict[int, np.ndarray], crops: np.ndarray, true_groups: np.ndarray) -> dict:
    """Per target group g and view: real faces of group g against the faces aged into g from every
    other group (`outputs[g]`, one per face of the slice), and the mean over groups."""
    groups = {}
    for g, aged in sorted(outputs.items()):
        real, fake = crops[true_groups == g], aged[true_groups != g]
        groups[g] = {view: two_sample_auc(real, fake, view) for view in VIEWS}
    means = {
        view: float(np.mean([r[view]["auc"] for r in groups.values() if r[view]["auc"] is not None])) for view in VIEWS
    }
    return {"groups": groups, "mean_auc": means, "folds": FOLDS, "steps": STEPS, "detector": list(WIDTHS)}
