"""Train the aging networks: E and G jointly as a conditional autoencoder with a conditional GAN.

Age-cGAN trains G from noise, then E on G's samples, and only fixes identity afterwards by
latent optimisation. Training E and G together on real faces (reconstruction) keeps identity
from the start; the projection discriminator and the age classifier make G obey the age
condition; stage 3, the identity-preserving latent optimisation, stays at inference time.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import save_image
from tqdm import tqdm

from ..ages import NUM_GROUPS
from ..identity import distance
from ..models import AgeClassifier, Discriminator, Encoder, Generator, LatentAgeCritic, resolve_device
from ..weights import load_identity
from .data import AgedFaces, FaceSet


@dataclass
class TrainConfig:
    steps: int = 4800
    batch_size: int = 16
    lr: float = 2e-4
    rec_weight: float = 10.0
    cls_weight: float = 1.0
    adv_weight: float = 1.0
    layout_weight: float = 2.0
    identity_weight: float = 2.0
    identity_faces: int = 8  # per batch: the identity network is the costliest part of a step
    classifier_warmup: int = 500
    # Curriculum: first learn to reconstruct (identity), then force age out of z and let the
    # aged face leave the input's fine layout, so that age must come from the condition.
    age_focus_from: int = 3250
    latent_critic_weight: float = 1.0
    layout_pool_before: int = 8  # layout compared on 16 x 16 averages ...
    layout_pool_after: int = 32  # ... then on 4 x 4: pose and lighting, not face shape or hair colour
    sample_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0


_CHECKPOINTED = ("E", "G", "D", "C", "A", "opt_g", "opt_d", "opt_c", "opt_a")


class Trainer:
    def __init__(
        self, faces: FaceSet, out: Path, config: TrainConfig, device: torch.device, identity_weights: str | None = None
    ):
        self.out, self.config, self.device = out, config, device
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed)
        train = faces.subset(~faces.heldout)
        self.data = AgedFaces(train)
        # Sample grids show held-out faces, so they reveal over-fitting; tiny sets may have none.
        shown = faces.subset(faces.heldout) if faces.heldout.any() else train
        self.sample_faces = _sample_faces(shown, config.seed)
        self.E, self.G = Encoder().to(device), Generator().to(device)
        # The identity network may be a training loss (the judge of age may not): it is what
        # stage 3 optimises at inference, so training G to respect it makes that stage cheap.
        self.identity = load_identity(identity_weights, device).requires_grad_(False)
        self.D, self.C = Discriminator().to(device), AgeClassifier().to(device)
        self.A = LatentAgeCritic().to(device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam([*self.E.parameters(), *self.G.parameters()], config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), config.lr, betas=betas)
        self.opt_c = torch.optim.Adam(self.C.parameters(), config.lr, betas=(0.9, 0.999))
        self.opt_a = torch.optim.Adam(self.A.parameters(), config.lr, betas=(0.9, 0.999))
        self.step = 0
        self.elapsed = 0.0

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "config": asdict(self.config),
            "rng": torch.get_rng_state(),
            **{name: getattr(self, name).state_dict() for name in _CHECKPOINTED},
        }
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "checkpoint.pt")  # atomic: an interrupted save never corrupts the last one

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        for name in _CHECKPOINTED:
            if name in state:  # checkpoints from before the latent critic existed lack A
                getattr(self, name).load_state_dict(state[name])
        self.step, self.elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["rng"])

    # -- one step ---------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, source: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        y_src = F.one_hot(source, NUM_GROUPS).float()
        target = torch.randint(0, NUM_GROUPS, source.shape, device=self.device)
        y_tgt = F.one_hot(target, NUM_GROUPS).float()

        # Age classifier on real faces: it is a training signal for G, so it must see real labels only.
        self.C.train()
        cls_loss = F.cross_entropy(self.C(x), source)
        self.opt_c.zero_grad(set_to_none=True)
        cls_loss.backward()
        self.opt_c.step()

        z = self.E(x)
        age_focus = self.step >= cfg.age_focus_from
        critic_loss = confusion_loss = torch.zeros(())
        if age_focus:
            critic_loss = F.cross_entropy(self.A(z.detach()), source)
            self.opt_a.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.opt_a.step()
            # Push the critic towards a uniform guess rather than reversing its gradient: the
            # reversed cross-entropy is unbounded and destabilises the encoder.
            confusion_loss = -F.log_softmax(self.A(z), dim=1).mean()
        recon = self.G(z, y_src)
        aged = self.G(z, y_tgt)

        # Discriminator, hinge loss: real faces with their true group, generated faces with the target.
        d_real = self.D(x, y_src)
        d_fake = self.D(aged.detach(), y_tgt)
        d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # Encoder + generator.
        self.C.eval()
        rec_loss = F.l1_loss(recon, x)
        adv_loss = -self.D(aged, y_tgt).mean()
        age_loss = F.cross_entropy(self.C(aged), target) if self.step >= cfg.classifier_warmup else torch.zeros(())
        # Keep pose, colours and lighting of the input at a coarse scale; age lives in finer detail.
        pool = cfg.layout_pool_after if age_focus else cfg.layout_pool_before
        layout_loss = F.l1_loss(F.avg_pool2d(aged, pool), F.avg_pool2d(x, pool))
        n = cfg.identity_faces
        with torch.no_grad():
            real_identity = self.identity.embed_crops(x[:n])
        identity_loss = distance(self.identity.embed_crops(aged[:n]), real_identity).mean()
        g_loss = (
            cfg.rec_weight * rec_loss
            + cfg.adv_weight * adv_loss
            + cfg.cls_weight * age_loss
            + cfg.layout_weight * layout_loss
            + cfg.identity_weight * identity_loss
            + cfg.latent_critic_weight * confusion_loss
        )
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.C.zero_grad(set_to_none=True)
        self.D.zero_grad(set_to_none=True)
        self.A.zero_grad(set_to_none=True)
        return {
            "loss/latent_critic": critic_loss.item(),
            "loss/classifier": cls_loss.item(),
            "loss/discriminator": d_loss.item(),
            "loss/reconstruction": rec_loss.item(),
            "loss/adversarial": adv_loss.item(),
            "loss/age": age_loss.item(),
            "loss/layout": layout_loss.item(),
            "loss/identity": identity_loss.item(),
        }

    @torch.inference_mode()
    def save_samples(self, path: Path) -> None:
        """Rows = held-out faces; columns = input, then the six age groups."""
        self.E.eval(), self.G.eval()
        x = self.sample_faces.to(self.device)
        z = self.E(x)
        columns = [x] + [self.G(z, F.one_hot(torch.full((len(x),), g), NUM_GROUPS).float()) for g in range(NUM_GROUPS)]
        grid = torch.stack(columns, dim=1).flatten(0, 1)
        save_image(grid * 0.5 + 0.5, path, nrow=NUM_GROUPS + 1)
        self.E.train(), self.G.train()

    def run(self, max_minutes: float | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.config
        writer = SummaryWriter(str(self.out / "tensorboard"))
        generator = torch.Generator().manual_seed(cfg.seed + self.step)  # a resumed run draws fresh batches
        sampler = self.data.balanced_sampler((cfg.steps - self.step) * cfg.batch_size, generator)
        loader = torch.utils.data.DataLoader(self.data, cfg.batch_size, sampler=sampler, drop_last=True)
        started = time.monotonic()
        base_elapsed = self.elapsed
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            unit="step",
            mininterval=10,
        )
        for x, source in loader:
            losses = self.train_step(x.to(self.device), source.to(self.device))
            self.step += 1
            self.elapsed = base_elapsed + time.monotonic() - started
            bar.update(1)
            if self.step % 25 == 0:
                for k, v in losses.items():
                    writer.add_scalar(k, v, self.step)
                bar.set_postfix(
                    rec=f"{losses['loss/reconstruction']:.3f}",
                    age=f"{losses['loss/age']:.2f}",
                    id=f"{losses['loss/identity']:.2f}",
                )
            if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                self.save_samples(self.out / "samples" / f"step_{self.step:06d}.png")
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
                (self.out / "progress.json").write_text(json.dumps({"step": self.step, "elapsed_s": self.elapsed}))
            if max_minutes is not None and time.monotonic() - started > max_minutes * 60:
                self.save_checkpoint()
                break
        bar.close()
        writer.close()


def _sample_faces(faces: FaceSet, seed: int, per_group: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    picks = []
    for g in range(NUM_GROUPS):
        idx = np.flatnonzero(faces.groups == g)
        picks.extend(rng.choice(idx, size=min(per_group, len(idx)), replace=False))
    return torch.from_numpy(faces.images[picks]).permute(0, 3, 1, 2).float() / 127.5 - 1


def train(
    faces: FaceSet,
    out: str | Path,
    config: TrainConfig,
    device: str = "auto",
    resume: bool = False,
    max_minutes: float | None = None,
    identity_weights: str | None = None,
) -> Trainer:
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    trainer = Trainer(faces, out, config, resolve_device(device), identity_weights)
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
        print(f"resumed from step {trainer.step} ({trainer.elapsed / 60:.1f} min trained)")
    if trainer.step < config.steps:
        trainer.run(max_minutes)
    return trainer


def export_weights(checkpoint: str | Path, out_dir: str | Path, half: bool = True) -> list[Path]:
    """Write the inference networks (E, G, age classifier) of a checkpoint as safetensors.

    The discriminator stays behind: inference never needs it.
    """
    from safetensors.torch import save_file

    from ..weights import AGE_CLASSIFIER_FILE, ENCODER_FILE, GENERATOR_FILE

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    meta = {"step": str(state["step"]), "train_seconds": f"{state['elapsed']:.0f}"}
    for key, name in (("E", ENCODER_FILE), ("G", GENERATOR_FILE), ("C", AGE_CLASSIFIER_FILE)):
        tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state[key].items()}
        save_file(tensors, str(out_dir / name), metadata=meta)
        written.append(out_dir / name)
    return written
