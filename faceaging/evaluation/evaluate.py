"""Age-cGAN's evaluation, on the held-out UTKFace slice: identity kept, and age reached.

For each held-out face and each of the six target groups, the output is judged twice: by the
identity network (same person: distance < 0.6) and by the dlib age judge. Both the encoder's z0
and the identity-optimised latent are scored, as in the paper's table. The age judge's own
accuracy on the real faces is reported beside it as the reference.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr
from tqdm import tqdm

from ..ager import FaceAger
from ..ages import GROUP_LABELS, NUM_GROUPS, AgeGroup
from ..align import align_face, to_tensor
from ..detect import FaceDetector
from ..editor import AgeStrength
from ..identity import SAME_PERSON_THRESHOLD, IdentityNet, distance, identity_features
from ..models import resolve_device
from ..training.data import ETHNICITIES, augment, detect_centre_face, utkface_age, utkface_ethnicity
from ..weights import load_identity
from .age_judge import AgeEstimator
from .detector import VIEWS, paired_auc_difference, realism_judge
from .judges import heldout_utkface
from .realism import kid, mottling, paired_kid_difference, shape_ratios, skin_tone_change, spectrum_report

AUGMENT_SEED = 1234  # the augmented copy of the slice is the same at every run
SLICE_SEED = 0


def _load_heldout(data_dir: str | Path, limit: int, tuning: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligned crops, true ages and ethnicity labels of `limit` held-out (or tuning) faces that MTCNN finds.

    The files are taken in a fixed shuffled order: in name order (age first) the first few hundred
    would all be under 30, and every age group needs real faces for the realism measures.
    """
    detector = FaceDetector(min_face_size=60)
    crops, ages, ethnicities = [], [], []
    paths = heldout_utkface(data_dir, tuning=tuning)
    random.Random(SLICE_SEED).shuffle(paths)
    for start in range(0, len(paths), 32):
        chunk = paths[start : start + 32]
        images = [np.asarray(Image.open(p).convert("RGB")) for p in chunk]
        for path, image, points in zip(chunk, images, detect_centre_face(detector, images), strict=True):
            if points is not None:
                crops.append(align_face(image, points)[0])
                ages.append(utkface_age(path.name))
                ethnicities.append(utkface_ethnicity(path.name))
        if len(crops) >= limit:
            break
    return np.stack(crops[:limit]), np.array(ages[:limit], dtype=np.float64), np.array(ethnicities[:limit])


def _score(outputs: dict[int, np.ndarray], identity_distances: dict[int, np.ndarray], judge: AgeEstimator) -> dict:
    """Per target group and overall: verification rate, mean distance, estimated age, group hits."""
    rows, all_targets, all_ages = {}, [], []
    for g in range(NUM_GROUPS):
        estimates = judge.estimate_crops(outputs[g])
        years = np.array([e.years for e in estimates])
        groups = np.array([int(e.group) for e in estimates])
        d = identity_distances[g]
        rows[GROUP_LABELS[g]] = {
            "verified": float(np.mean(d < SAME_PERSON_THRESHOLD)),
            "mean_distance": float(d.mean()),
            "mean_estimated_age": float(years.mean()),
            "in_target_group": float(np.mean(groups == g)),
            "within_one_group": float(np.mean(np.abs(groups - g) <= 1)),
        }
        all_targets += [g] * len(years)
        all_ages += years.tolist()
    means = [rows[label]["mean_estimated_age"] for label in GROUP_LABELS]
    overall = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    overall["spearman_group_vs_age"] = float(spearmanr(all_targets, all_ages).statistic)
    overall["age_rises_strictly"] = bool(all(a < b for a, b in zip(means, means[1:], strict=False)))
    overall["min_group_verified"] = min(r["verified"] for r in rows.values())
    return {"groups": rows, "overall": overall}


def evaluate(
    data_dir: str | Path,
    limit: int = 300,
    weights: str | Path | None = None,
    steps: int = 10,
    grid_path: str | Path | None = None,
    batch: int = 16,
    age_strength: float | Sequence[float] | None = None,
    tuning: bool = False,
    colour_share: float | Sequence[float] | None = None,
    outputs_path: str | Path | None = None,
    realism: bool = False,
) -> dict:
    """The Age-cGAN table, realism and shape on `limit` held-out (or tuning) faces. `outputs_path`
    keeps the optimised outputs (.npz) for `compare_kid` against another model on the same slice."""
    # No time bound: the figures must not depend on how busy the machine is.
    ager = FaceAger.from_pretrained(weights, device="auto", steps=steps, max_seconds=float("inf"))
    if age_strength is not None:
        ager.editor.age_strength = AgeStrength.of(age_strength)
    if colour_share is not None:
        ager.editor.colour_share = AgeStrength.of(colour_share)
    judge = AgeEstimator()
    crops, true_ages, ethnicities = _load_heldout(data_dir, limit, tuning)
    true_groups = np.array([int(AgeGroup.from_age(a)) for a in true_ages])
    reference = judge_on_real_faces(judge, crops, true_ages)
    outputs, distances, source_hits = _age_slice(ager, crops, true_groups, steps, batch)

    report = {
        "slice": "tuning" if tuning else "held-out",
        "reference_real_faces": reference,
        "source_group_accuracy": float(np.mean(source_hits)),
        "source_group_accuracy_augmented": augmented_source_accuracy(ager, crops, true_groups),
        "steps": steps,
        "age_strength": ager.editor.age_strength._asdict(),
        "colour_share": ager.editor.colour_share._asdict(),
    }
    for name in ("z0", "optimised"):
        stacked = {g: np.concatenate(outputs[name][g]) for g in range(NUM_GROUPS)}
        report[name] = _score(stacked, {g: np.concatenate(distances[name][g]) for g in range(NUM_GROUPS)}, judge)
    optimised = {g: np.concatenate(outputs["optimised"][g]) for g in range(NUM_GROUPS)}
    if outputs_path is not None:
        keys = {_key(g): optimised[g] for g in optimised}
        np.savez_compressed(outputs_path, crops=crops, true_groups=true_groups, ethnicities=ethnicities, **keys)
    report["realism_and_shape"] = realism_and_shape(optimised, crops, true_groups, ager.identity)
    report["by_ethnicity"] = by_ethnicity(optimised, distances["optimised"], crops, true_groups, ethnicities)
    if realism:
        report["realism_judge"] = realism_judge(optimised, crops, true_groups)
    if grid_path is not None:
        rows = [
            np.concatenate([crops[i], *(np.concatenate(outputs["optimised"][g])[i] for g in range(NUM_GROUPS))], 1)
            for i in range(min(8, len(crops)))
        ]
        Image.fromarray(np.concatenate(rows, 0)).save(grid_path)
    return report


def _age_slice(ager: FaceAger, crops: np.ndarray, true_groups: np.ndarray, steps: int, batch: int) -> tuple:
    """Every face of the slice at the six groups from the encoder's z0 and from the optimised
    latents: the aged crops and identity distances per latent and group, and whether the model
    read each face's own group right."""
    outputs = {name: {g: [] for g in range(NUM_GROUPS)} for name in ("z0", "optimised")}
    distances = {name: {g: [] for g in range(NUM_GROUPS)} for name in ("z0", "optimised")}
    source_hits = []
    editor, groups = ager.editor, torch.arange(NUM_GROUPS, dtype=torch.float32)
    for start in tqdm(range(0, len(crops), batch), desc="evaluate", unit="batch"):
        faces = ager.prepare_crops(crops[start : start + batch], steps=steps)
        source = torch.tensor([int(f.source_group) for f in faces], device=ager.device)
        source_hits += (source.cpu().numpy() == true_groups[start : start + batch]).tolist()
        x = torch.cat([f.tensor for f in faces])
        with torch.inference_mode():
            target = ager.identity.embed_crops(x)
            for name, latent in (
                ("z0", torch.cat([f.z0 for f in faces])),
                ("optimised", torch.cat([f.latent for f in faces])),
            ):
                for g, aged in enumerate(editor.edits_at(x, latent, groups, source)[1]):
                    outputs[name][g].append(aged)
                    embedded = ager.identity.embed_crops(torch.from_numpy(aged).permute(0, 3, 1, 2).float() / 127.5 - 1)
                    distances[name][g].append(distance(embedded, target).cpu().numpy())
    return outputs, distances, source_hits


def by_ethnicity(
    outputs: dict[int, np.ndarray],
    distances: dict[int, list[np.ndarray]],
    crops: np.ndarray,
    true_groups: np.ndarray,
    ethnicities: np.ndarray,
) -> dict:
    """Per UTKFace ethnicity label: identity verified per target group, and the change of the mean
    skin colour (cheeks and forehead, CIELAB) from the input to each target group, over the faces
    whose own group it is not. A face's skin tone is not a symptom of age."""
    rows = {}
    for label, name in enumerate(ETHNICITIES):
        mine = ethnicities == label
        if not mine.any():
            continue
        groups = {}
        for g in range(NUM_GROUPS):
            moved = mine & (true_groups != g)
            tone = skin_tone_change(crops[moved], outputs[g][moved]) if moved.any() else None
            groups[GROUP_LABELS[g]] = {
                "verified": float(np.mean(np.concatenate(distances[g])[mine] < SAME_PERSON_THRESHOLD)),
                "skin": tone,
            }
        rows[name] = {"faces": int(mine.sum()), "groups": groups}
    return rows


def _key(group: int) -> str:
    return f"target_{group}"


def compare_kid(
    new_path: str | Path, old_path: str | Path, weights: str | Path | None = None, resamples: int = 1000
) -> dict:
    """Per target group, KID of two models' saved outputs (`evaluate(outputs_path=...)`) against
    the slice's real faces of that group, and the difference with a paired bootstrap interval."""
    new, old = _saved_pair(new_path, old_path)
    identity = load_identity(weights, resolve_device("auto"))
    real_features, true_groups = identity_features(identity, new["crops"]), new["true_groups"]
    rows = {}
    for g in range(NUM_GROUPS):
        real = true_groups == g
        if real.sum() > 1:
            rows[GROUP_LABELS[g]] = paired_kid_difference(
                identity_features(identity, new[_key(g)]),
                identity_features(identity, old[_key(g)]),
                real_features[real],
                resamples,
            )
            rows[GROUP_LABELS[g]]["mottling"] = {
                "old": mottling(old[_key(g)]),
                "new": mottling(new[_key(g)]),
                "real": mottling(new["crops"][real]),
            }
    return rows


def compare_realism(new_path: str | Path, old_path: str | Path) -> dict:
    """Per target group and view of the realism judge, two models' saved outputs against the
    slice's real faces of that group: each model's AUC and the paired difference."""
    new, old = _saved_pair(new_path, old_path)
    crops, true_groups = new["crops"], new["true_groups"]
    rows = {}
    for g in range(NUM_GROUPS):
        real, others = crops[true_groups == g], true_groups != g
        new_aged, old_aged = new[_key(g)][others], old[_key(g)][others]
        rows[GROUP_LABELS[g]] = {view: paired_auc_difference(real, new_aged, old_aged, view) for view in VIEWS}
    return rows


def _saved_pair(new_path: str | Path, old_path: str | Path) -> tuple:
    """Two models' saved outputs (`evaluate --save-outputs`), refused unless made on the same faces."""
    new, old = np.load(new_path), np.load(old_path)
    if not np.array_equal(new["crops"], old["crops"]):
        raise ValueError(f"{new_path} and {old_path} were made on different faces: evaluate both on the same slice")
    return new, old


def judge_on_real_faces(judge: AgeEstimator, crops: np.ndarray, true_ages: np.ndarray) -> dict:
    """The age judge on the real faces: the reference for the outputs' figures.

    Per true group too, and averaged over groups: the outputs' table weighs the six targets
    equally, while the slice's own faces are mostly young adults, which the judge places best.
    """
    real = judge.estimate_crops(crops)
    years = np.array([e.years for e in real])
    found = np.array([int(e.group) for e in real])
    true_groups = np.array([int(AgeGroup.from_age(a)) for a in true_ages])
    hit, near = found == true_groups, np.abs(found - true_groups) <= 1
    groups = {
        GROUP_LABELS[g]: {
            "faces": int(m.sum()),
            "in_group": float(hit[m].mean()),
            "within_one_group": float(near[m].mean()),
            "mean_estimated_age": float(years[m].mean()),
        }
        for g in range(NUM_GROUPS)
        if (m := true_groups == g).any()
    }
    return {
        "faces": len(crops),
        "judge_mae_years": float(np.mean(np.abs(years - true_ages))),
        "judge_group_accuracy": float(hit.mean()),
        "judge_within_one_group": float(near.mean()),
        "judge_spearman_true_group_vs_age": float(spearmanr(true_groups, years).statistic),
        "groups": groups,
        "group_balanced_accuracy": float(np.mean([r["in_group"] for r in groups.values()])),
        "group_balanced_within_one": float(np.mean([r["within_one_group"] for r in groups.values()])),
    }


def augmented_source_accuracy(ager: FaceAger, crops: np.ndarray, true_groups: np.ndarray) -> float:
    """The model's own source-group estimate on a copy of the slice as users' photos show faces
    (crop margin, tilt, colour, lighting, blur, JPEG: `training.data.augment`, fixed seed)."""
    rng = np.random.default_rng(AUGMENT_SEED)
    copy = np.stack([augment(c, rng) for c in crops])
    found = np.concatenate(
        [
            ager.age_probabilities(to_tensor(copy[i : i + 64], ager.device)).argmax(1).cpu().numpy()
            for i in range(0, len(copy), 64)
        ]
    )
    return float(np.mean(found == true_groups))


def realism_and_shape(
    outputs: dict[int, np.ndarray], crops: np.ndarray, true_groups: np.ndarray, identity: IdentityNet
) -> dict:
    """Per target group: KID and spectrum against real faces of that group, and the shape ratio;
    and how far adult faces sent to 0-18 move towards real children's ratio."""
    detector = FaceDetector(min_face_size=40)
    real_features = identity_features(identity, crops)
    real_ratio = shape_ratios(detector, crops)
    rows = {}
    for g in range(NUM_GROUPS):
        real = true_groups == g
        rows[GROUP_LABELS[g]] = {
            "kid_x1000": kid(identity_features(identity, outputs[g]), real_features[real]) if real.sum() > 1 else None,
            "spectrum": spectrum_report(outputs[g], crops[real] if real.any() else crops),
            "shape_ratio_outputs": float(np.nanmean(shape_ratios(detector, outputs[g]))),
            "shape_ratio_real": float(np.nanmean(real_ratio[real])) if real.any() else None,
            "mottling_outputs": mottling(outputs[g]),
            "mottling_real": mottling(crops[real]) if real.any() else None,
        }
    adults = true_groups >= 1
    child_mean = rows[GROUP_LABELS[0]]["shape_ratio_real"]
    moved = None
    if adults.any() and child_mean is not None:
        before = real_ratio[adults]
        after = shape_ratios(detector, outputs[0][adults])
        moved = float(np.nanmean(before - after) / np.nanmean(before - child_mean))
    return {"groups": rows, "adult_to_child_shape_move": moved, "kid_features": "dlib ResNet pooled 256-d"}


def markdown_table(report: dict) -> str:
    ref = report["reference_real_faces"]
    lines = [
        f"UTKFace {report['slice']} faces: {ref['faces']}; identity optimisation steps: {report['steps']}; "
        f"age strength towards younger {report['age_strength']['younger']}, towards older "
        f"{report['age_strength']['older']}; the prior's colour at {report['colour_share']['younger']} / "
        f"{report['colour_share']['older']} of that.",
        f"Age judge on the real faces: MAE {ref['judge_mae_years']:.1f} years, group accuracy "
        f"{ref['judge_group_accuracy']:.1%}, within one group {ref['judge_within_one_group']:.1%}, "
        f"Spearman {ref['judge_spearman_true_group_vs_age']:.3f}. Source-group accuracy of the model's own "
        f"age probe: {report['source_group_accuracy']:.1%}.",
        "",
        "| latent | target | verified (d<0.6) | mean distance | mean est. age | in target group | within one |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("z0", "optimised"):
        for label, row in [*report[name]["groups"].items(), ("overall", report[name]["overall"])]:
            lines.append(
                f"| {name} | {label} | {row['verified']:.1%} | {row['mean_distance']:.3f} | "
                f"{row['mean_estimated_age']:.1f} | {row['in_target_group']:.1%} | {row['within_one_group']:.1%} |"
            )
        o = report[name]["overall"]
        lines.append(
            f"| {name} | Spearman {o['spearman_group_vs_age']:.3f} | min group verified {o['min_group_verified']:.1%} "
            f"| age rises strictly: {o['age_rises_strictly']} | | | |"
        )
    # The judge on the real faces of each group, in the same columns: the level it can reach.
    for label, row in ref.get("groups", {}).items():
        lines.append(
            f"| real faces ({row['faces']}) | {label} | | | {row['mean_estimated_age']:.1f} | "
            f"{row['in_group']:.1%} | {row['within_one_group']:.1%} |"
        )
    if "group_balanced_accuracy" in ref:
        lines.append(
            f"| real faces | mean over groups | | | | {ref['group_balanced_accuracy']:.1%} | "
            f"{ref['group_balanced_within_one']:.1%} |"
        )
    shape = report.get("realism_and_shape")
    if shape:
        lines += [
            "",
            f"Source-group accuracy on the augmented copy: {report['source_group_accuracy_augmented']:.1%}. "
            f"Adult faces sent to 0-18 move {shape['adult_to_child_shape_move'] or 0:.0%} of the way to real "
            "children's shape ratio (eye line to mouth / eye distance, MTCNN landmarks).",
            "",
            "| target | KID x1000 (dlib features) | spectrum: mean log10 out/real, upper half | lattice peak "
            "| shape ratio outputs | shape ratio real | mottling luma / chroma: outputs | real |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, row in shape["groups"].items():
            spectrum = row["spectrum"]
            kid_text = "n/a" if row["kid_x1000"] is None else f"{row['kid_x1000']:.1f}"
            real_text = "n/a" if row["shape_ratio_real"] is None else f"{row['shape_ratio_real']:.3f}"
            out, real = row["mottling_outputs"], row["mottling_real"]
            real_mottling = "n/a" if real is None else f"{real['luma']:.2f} / {real['chroma']:.2f}"
            lines.append(
                f"| {label} | {kid_text} | {spectrum['mean_log10_ratio_upper_half']:+.3f} | "
                f"{spectrum['max_local_peak_upper_half']:.3f} | {row['shape_ratio_outputs']:.3f} | {real_text} "
                f"| {out['luma']:.2f} / {out['chroma']:.2f} | {real_mottling} |"
            )
    lines += _ethnicity_lines(report.get("by_ethnicity")) + _realism_lines(report.get("realism_judge"))
    return "\n".join(lines) + "\n"


def _ethnicity_lines(ethnic: dict | None) -> list[str]:
    if not ethnic:
        return []
    lines = [
        "",
        "Per UTKFace ethnicity label: identity verified, and the skin's mean colour (cheeks and forehead, "
        "CIELAB) from the input to each target group, faces whose own group it is not; per group "
        "ΔE median / 90th percentile.",
        "",
        "| ethnicity | faces | verified, lowest group | " + " | ".join(GROUP_LABELS) + " | ΔL* mean, by group |",
        "|---|---|---|" + "---|" * NUM_GROUPS + "---|",
    ]
    for name, row in ethnic.items():
        skins = [row["groups"][label]["skin"] for label in GROUP_LABELS]
        cells = ["n/a" if t is None else f"{t['delta_e_median']:.1f} / {t['delta_e_p90']:.1f}" for t in skins]
        shifts = " ".join("n/a" if t is None else f"{t['delta_l_mean']:+.1f}" for t in skins)
        lowest = min(r["verified"] for r in row["groups"].values())
        lines.append(f"| {name} | {row['faces']} | {lowest:.1%} | " + " | ".join(cells) + f" | {shifts} |")
    return lines


def _realism_lines(judge: dict | None) -> list[str]:
    if not judge:
        return []
    lines = [
        "",
        f"Realism judge (`--realism`): ROC AUC of detectors trained from scratch to tell real faces of the "
        f"group from faces aged into it ({judge['folds']}-fold cross-validated, 95% bootstrap interval; "
        "0.5 = indistinguishable).",
        "",
        "| target | real / aged faces | " + " | ".join(VIEWS) + " |",
        "|---|---|" + "---|" * len(VIEWS),
    ]
    for g, row in judge["groups"].items():
        cells = [
            "n/a" if row[v]["auc"] is None else f"{row[v]['auc']:.3f} [{row[v]['low']:.3f}, {row[v]['high']:.3f}]"
            for v in VIEWS
        ]
        first = row[VIEWS[0]]
        lines.append(f"| {GROUP_LABELS[int(g)]} | {first['real']} / {first['fake']} | " + " | ".join(cells) + " |")
    lines.append("| mean | | " + " | ".join(f"{judge['mean_auc'][v]:.3f}" for v in VIEWS) + " |")
    return lines


def write_report(report: dict, json_path: str | Path) -> Path:
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    markdown = json_path.with_suffix(".md")
    markdown.write_text(markdown_table(report))
    return markdown
