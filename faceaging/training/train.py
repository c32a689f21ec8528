"""Train the aging networks: an encoder and a generator that edits the input face.

Age-cGAN trains G from noise, then E on G's samples, and only fixes identity afterwards by
latent optimisation. Here G edits the aligned input (flow + band-wise texture + residual), starts
from the prototype prior (`prototypes.build_prior`, measured before the first step), and learns
what the prior misses against a two-scale discriminator whose auxiliary age classifier is trained
on real faces only (StarGAN), the dlib identity loss, and a penalty on the size of the learned
edit. G is exact at the face's own age by construction, so no reconstruction loss is needed.
Stage 3, the identity-preserving latent optimisation, stays at inference time.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision.utils import save_image
from tqdm import tqdm

from ..ages import NUM_GROUPS, AgeGroup
from ..identity import distance, identity_features
from ..models import AgeClassifier, AgeProbe, Discriminator, Encoder, Generator, resolve_device
from ..weights import load_identity
from .data import AgedFaces, FaceSet
from .prototypes import build_prior


@dataclass
class TrainConfig:
    steps: int = 4000
    batch_size: int = 16
    lr: float = 2e-4
    cls_weight: float = 1.0
    adv_weight: float = 1.0
    identity_weight: float = 2.0
    edit_weight: float = 2.0  # L1 on the learned residual: the prior carries the change, the head refines it
    flow_weight: float = 0.5
    identity_faces: int = 4  # per batch (per process): the identity network is the costliest part of a step
    adversarial_from: int = 200  # D and C learn the ages of real faces first
    ema_decay: float = 0.999
    sample_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    augment: bool = True  # off only where a test needs the same faces in two runs


# The prior's (shape, texture, colour) gains in the exported generator. Training keeps colour at
# half (prototypes.DEFAULT_GAINS) so that the learned edit does not lean on it; on the tuning slice
# the full colour difference then moved the judge's estimates further for the same identity
# (`evaluate --tuning`, see the model card). The shape at 0.6 with a stronger age strength: the
# full flow, pushed that far, folded faces at 60+, while texture and colour carry the age.
EXPORT_PRIOR_GAINS = (0.6, 1.0, 1.0)


def save_checkpoint(state: dict, path: Path) -> None:
    """torch.save through a temporary file: an interrupted save never corrupts the last checkpoint."""
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


_CHECKPOINTED = ("E", "G", "D", "C", "G_ema", "E_ema", "opt_g", "opt_d", "opt_c")


class EditStep(nn.Module):
    """E and G as one module whose forward is one training edit, (aged, learned edit): what
    DistributedDataParallel wraps, since it averages only gradients that flow through a wrapped
    module's forward (G.head and G.apply are not G's forward)."""

    def __init__(self, encoder: Encoder, generator: Generator):
        super().__init__()
        self.E, self.G = encoder, generator

    def forward(self, x: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        edit = self.G.head(x, self.E(x), y_src, y_tgt)
        return self.G.prior.edit(x, y_src, y_tgt, edit)[1], edit


class Schedule(torch.utils.data.Dataset):
    """The whole run's sequence of (face, source group, target offset), drawn once from the seed:
    group-balanced faces and a random other group to age each to. Every process of a distributed
    run draws the same sequence and reads its own shard (DistributedSampler), so N processes with
    batch B see exactly the faces and targets one process with batch N x B would."""

    def __init__(self, faces: AgedFaces, length: int, generator: torch.Generator):
        self.faces = faces
        self.order = torch.tensor(list(faces.balanced_sampler(length, generator)))
        self.offsets = torch.randint(1, NUM_GROUPS, (length,), generator=generator)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, source = self.faces[int(self.order[k])]
        return x, source, self.offsets[k]


def world() -> tuple[int, int]:
    """(this process's rank, number of processes): (0, 1) unless started by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    def __init__(
        self, faces: FaceSet, out: Path, config: TrainConfig, device: torch.device, identity_weights: str | None = None
    ):
        self.out, self.config, self.device = out, config, device
        self.rank, self.world = world()
        # The same initial weights everywhere (DDP also broadcasts rank 0's); randomness inside a
        # step (augmentation, dropout) differs per process, as it would across a bigger batch.
        torch.manual_seed(config.seed)
        random.seed(config.seed + self.rank)
        np.random.seed(config.seed + self.rank)
        train = faces.subset(~faces.heldout)
        self.data = AgedFaces(train, augmented=config.augment, seed=config.seed + self.rank)
        # Sample grids show held-out faces, so they reveal over-fitting; tiny sets may have none.
        shown = faces.subset(faces.heldout) if faces.heldout.any() else train
        self.sample_faces, self.sample_groups = _sample_faces(shown, config.seed)
        self.train_faces = train
        self.E, self.G = Encoder().to(device), Generator().to(device)
        # Exported weights are an exponential moving average of E and G: smoother than any one step.
        self.E_ema, self.G_ema = Encoder().to(device), Generator().to(device)
        self.E_ema.load_state_dict(self.E.state_dict())
        self.G_ema.load_state_dict(self.G.state_dict())
        self.E_ema.requires_grad_(False), self.G_ema.requires_grad_(False)
        # The identity network may be a training loss (the judge of age may not): it is what
        # stage 3 optimises at inference, so training G to respect it makes that stage cheap.
        self.identity = load_identity(identity_weights, device).requires_grad_(False)
        self.D, self.C = Discriminator().to(device), AgeClassifier().to(device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam([*self.E.parameters(), *self.G.parameters()], config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), config.lr, betas=betas)
        self.opt_c = torch.optim.Adam(self.C.parameters(), config.lr, betas=(0.9, 0.999))
        self.step = 0
        self.elapsed = 0.0
        # What the step calls: the networks themselves, or under torchrun their DDP wrappers,
        # which average the gradients of every process before each optimiser step.
        self.editor, self.critic, self.classifier = EditStep(self.E, self.G), self.D, self.C
        if self.world > 1:
            ids = [device] if device.type == "cuda" else None
            self.editor, self.critic, self.classifier = (
                DistributedDataParallel(m, device_ids=ids) for m in (self.editor, self.critic, self.classifier)
            )

    # -- checkpoints -------------------------------------------------------------------------
    def measure_prior(self) -> None:
        """The prototype prior from the training faces (a fresh run only: checkpoints carry it),
        measured by rank 0 alone and sent to the other processes."""
        if self.rank == 0:
            prior, _ = build_prior(self.train_faces)
            self.G.prior.load_state_dict(prior.state_dict())
        if self.world > 1:
            for buffer in self.G.prior.buffers():
                dist.broadcast(buffer, 0)
        self.G_ema.prior.load_state_dict(self.G.prior.state_dict())

    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "config": asdict(self.config),
            "rng": torch.get_rng_state(),
            **{name: getattr(self, name).state_dict() for name in _CHECKPOINTED},
        }
        save_checkpoint(state, self.out / "checkpoint.pt")

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        for name in _CHECKPOINTED:
            getattr(self, name).load_state_dict(state[name])
        self.step, self.elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["rng"])

    # -- one step ---------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, source: torch.Tensor, offset: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        y_src = F.one_hot(source, NUM_GROUPS).float()
        # Targets other than the source: at its own group G is the input by construction.
        target = (source + offset) % NUM_GROUPS
        y_tgt = F.one_hot(target, NUM_GROUPS).float()
        adversarial = self.step >= cfg.adversarial_from

        # The age classifier that steers G, on (augmented) real faces only.
        self.classifier.train()
        cls_loss = F.cross_entropy(self.classifier(x), source)
        self.opt_c.zero_grad(set_to_none=True)
        cls_loss.backward()
        self.opt_c.step()

        aged, edit = self.editor(x, y_src, y_tgt)

        # Discriminator: hinge realism on real vs aged faces; its age classifier on real faces only.
        real_score, real_logits = self.critic(x)
        d_loss = F.cross_entropy(real_logits, source) + F.relu(1 - real_score).mean()
        if adversarial:
            fake_score, _ = self.critic(aged.detach())
            d_loss = d_loss + F.relu(1 + fake_score).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # Encoder + generator.
        zero = torch.zeros((), device=self.device)
        adv_loss = age_loss = zero
        if adversarial:
            self.classifier.eval()
            fake_score, fake_logits = self.critic(aged)
            adv_loss = -fake_score.mean()
            age_loss = F.cross_entropy(fake_logits, target) + F.cross_entropy(self.classifier(aged), target)
        edit_loss = edit[:, 2:].abs().mean()
        flow = edit[:, :2]
        flow_loss = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean() + (flow[..., 1:] - flow[..., :-1]).abs().mean()
        n = cfg.identity_faces
        with torch.no_grad():
            real_identity = self.identity.embed_crops(x[:n])
        identity_loss = distance(self.identity.embed_crops(aged[:n]), real_identity).mean()
        g_loss = (
            cfg.adv_weight * adv_loss
            + cfg.cls_weight * age_loss
            + cfg.identity_weight * identity_loss
            + cfg.edit_weight * edit_loss
            + cfg.flow_weight * flow_loss
        )
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.C.zero_grad(set_to_none=True)
        self.D.zero_grad(set_to_none=True)
        self._update_ema()
        return {
            "loss/classifier": cls_loss.item(),
            "loss/discriminator": d_loss.item(),
            "loss/adversarial": adv_loss.item(),
            "loss/age": age_loss.item(),
            "loss/identity": identity_loss.item(),
            "loss/edit": edit_loss.item(),
            "loss/flow": flow_loss.item(),
        }

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for ema, live in ((self.E_ema, self.E), (self.G_ema, self.G)):
            for e, p in zip(ema.parameters(), live.parameters(), strict=True):
                e.lerp_(p, 1 - decay)

    @torch.inference_mode()
    def save_samples(self, path: Path) -> None:
        """Rows = held-out faces, one per group; columns = input, then the six age groups (EMA weights)."""
        x = self.sample_faces.to(self.device)
        z = self.E_ema(x)
        source = F.one_hot(self.sample_groups.to(self.device), NUM_GROUPS).float()
        columns = [x] + [
            self.G_ema(x, z, source, F.one_hot(torch.full((len(x),), g, device=self.device), NUM_GROUPS).float())
            for g in range(NUM_GROUPS)
        ]
        grid = torch.stack(columns, dim=1).flatten(0, 1)
        save_image(grid * 0.5 + 0.5, path, nrow=NUM_GROUPS + 1)

    def run(self, max_minutes: float | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.config
        lead = self.rank == 0  # one process writes checkpoints, TensorBoard and grids
        writer = SummaryWriter(str(self.out / "tensorboard")) if lead else None
        generator = torch.Generator().manual_seed(cfg.seed + self.step)  # a resumed run draws fresh batches
        schedule = Schedule(self.data, (cfg.steps - self.step) * cfg.batch_size * self.world, generator)
        sampler = (
            torch.utils.data.DistributedSampler(schedule, self.world, self.rank, shuffle=False)
            if self.world > 1
            else torch.utils.data.SequentialSampler(schedule)
        )
        loader = torch.utils.data.DataLoader(schedule, cfg.batch_size, sampler=sampler, drop_last=True)
        started = time.monotonic()
        base_elapsed = self.elapsed
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", mininterval=10, disable=not lead)
        for x, source, offset in loader:
            losses = self.train_step(x.to(self.device), source.to(self.device), offset.to(self.device))
            self.step += 1
            self.elapsed = base_elapsed + time.monotonic() - started
            bar.update(1)
            if not lead:
                if self._out_of_time(started, max_minutes):
                    break
                continue
            if self.step % 25 == 0:
                for k, v in losses.items():
                    writer.add_scalar(k, v, self.step)
                bar.set_postfix(
                    age=f"{losses['loss/age']:.2f}",
                    id=f"{losses['loss/identity']:.2f}",
                    edit=f"{losses['loss/edit']:.3f}",
                )
            if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                self.save_samples(self.out / "samples" / f"step_{self.step:06d}.png")
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
                (self.out / "progress.json").write_text(json.dumps({"step": self.step, "elapsed_s": self.elapsed}))
            if self._out_of_time(started, max_minutes):
                self.save_checkpoint()
                break
        bar.close()
        if writer is not None:
            writer.close()

    def _out_of_time(self, started: float, max_minutes: float | None) -> bool:
        """Whether to stop for --max-minutes; rank 0's clock decides for every process, so that
        all stop after the same step."""
        if max_minutes is None:
            return False
        # on the device: NCCL broadcasts CUDA tensors only
        stop = torch.tensor([float(time.monotonic() - started > max_minutes * 60)], device=self.device)
        if self.world > 1:
            dist.broadcast(stop, 0)
        return bool(stop.item())


def _sample_faces(faces: FaceSet, seed: int, per_group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A few faces of each group in [-1, 1], and their groups."""
    rng = np.random.default_rng(seed)
    picks = []
    for g in range(NUM_GROUPS):
        idx = np.flatnonzero(faces.groups == g)
        picks.extend(rng.choice(idx, size=min(per_group, len(idx)), replace=False))
    images = torch.from_numpy(faces.images[picks]).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, torch.from_numpy(faces.groups[picks])


def train(
    faces: FaceSet,
    out: str | Path,
    config: TrainConfig,
    device: str = "auto",
    resume: bool = False,
    max_minutes: float | None = None,
    identity_weights: str | None = None,
) -> Trainer:
    """Train E and G into `out`. Started by torchrun (WORLD_SIZE > 1 in the environment), it runs
    data-parallel: gloo on CPUs, NCCL on CUDA, one process per device, each reading its shard."""
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    target = resolve_device(device)
    if distributed:
        if target.type == "cuda":
            target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(target)
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    try:
        trainer = Trainer(faces, out, config, target, identity_weights)
        checkpoint = out / "checkpoint.pt"
        if resume and checkpoint.exists():
            trainer.load_checkpoint(checkpoint)  # every process reads rank 0's last checkpoint
            if trainer.rank == 0:
                print(f"resumed from step {trainer.step} ({trainer.elapsed / 60:.1f} min trained)")
        else:
            trainer.measure_prior()
        if trainer.step < config.steps:
            trainer.run(max_minutes)
        if trainer.world > 1:
            dist.barrier()  # rank 0's last checkpoint is written before any process returns
    finally:
        if distributed:
            dist.destroy_process_group()
    return trainer


# The age probe learns from this many random training faces (UTKFace's own mix of ages, which is
# also the mix that its accuracy is judged on) plus an augmented copy of each.
PROBE_FACES = 9000
# Soft targets: UTKFace's ages are themselves estimates, and a 29-year-old is nearly as much 30-39
# as 19-29. On the tuning slice, soft targets of 4 years scored 62.2% against 61.0% for hard ones.
PROBE_LABEL_YEARS = 4.0


def group_soft_labels(ages: np.ndarray, sigma: float = PROBE_LABEL_YEARS) -> torch.Tensor:
    """(N, 6): a Gaussian of `sigma` years around each labelled age, its mass summed per group."""
    years = np.arange(0, 120)
    in_group = np.eye(NUM_GROUPS)[[AgeGroup.from_age(y) for y in years]]  # (120, 6)
    weights = np.exp(-0.5 * ((years[None] - np.asarray(ages, dtype=np.float64)[:, None]) / sigma) ** 2)
    labels = weights @ in_group
    return torch.from_numpy(labels / labels.sum(1, keepdims=True)).float()


def train_age_probe(
    faces: FaceSet, run: str | Path, steps: int = 800, n_faces: int = PROBE_FACES, seed: int = 0
) -> float:
    """Fit `AgeProbe`, the source-group estimate of inference, on the frozen identity network's
    features of training faces, clean and augmented. It goes into the run's checkpoint for
    `export`; the tuning slice's accuracy is returned."""
    from .data import augment, is_tuning

    checkpoint = Path(run) / "checkpoint.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    identity = load_identity()
    tuning_mask = np.array([is_tuning(n) for n in faces.names], dtype=bool)
    training = faces.subset(~faces.heldout & ~tuning_mask)
    chosen = rng.permutation(len(training.names))[:n_faces]
    images = training.images[chosen]
    augmented = np.stack([augment(image, rng) for image in images])
    features = torch.from_numpy(
        np.concatenate([identity_features(identity, images), identity_features(identity, augmented)])
    ).float()
    targets = group_soft_labels(np.concatenate([training.ages[chosen]] * 2))

    probe = AgeProbe()
    probe.mean.copy_(features.mean(0))
    probe.std.copy_(features.std(0) + 1e-6)
    optimizer = torch.optim.AdamW(probe.linear.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in tqdm(range(steps), desc="age probe", mininterval=10):
        batch = torch.randint(0, len(features), (min(512, len(features)),))
        loss = -(targets[batch] * probe(features[batch]).log_softmax(1)).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    state["age_probe"] = probe.state_dict()
    save_checkpoint(state, checkpoint)

    tuning = faces.subset(tuning_mask)
    if not tuning.names:
        return float("nan")
    with torch.inference_mode():
        found = probe(torch.from_numpy(identity_features(identity, tuning.images)).float()).argmax(1)
    return float((found.numpy() == tuning.groups).mean())


def export_weights(
    checkpoint: str | Path,
    out_dir: str | Path,
    half: bool = True,
    prior_gains: tuple[float, float, float] = EXPORT_PRIOR_GAINS,
) -> list[Path]:
    """Write the inference networks (E and G as moving averages, the age probe) as safetensors.

    The discriminator and the age classifier stay behind: they only steer training. `prior_gains`
    (shape, texture, colour) replace the gains the prior was trained with.
    """
    from safetensors.torch import save_file

    from ..weights import AGE_PROBE_FILE, ENCODER_FILE, GENERATOR_FILE

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "age_probe" not in state:
        raise ValueError(f"{checkpoint} has no age probe yet: run python -m faceaging train-probe on its run first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    meta = {"step": str(state["step"]), "train_seconds": f"{state['elapsed']:.0f}"}
    state["G_ema"]["prior.gains"] = torch.tensor(prior_gains)
    for key, name in (("E_ema", ENCODER_FILE), ("G_ema", GENERATOR_FILE), ("age_probe", AGE_PROBE_FILE)):
        tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state[key].items()}
        save_file(tensors, str(out_dir / name), metadata=meta)
        written.append(out_dir / name)
    return written
