"""Training under torchrun: two gloo processes stay in step, and match one process with their
two batches as one."""

import subprocess
import sys

import pytest
import torch
from conftest import ROOT

# One process, then torchrun's two: each writes its parameters (E, G, D) after every step.
SCRIPT = """
import sys
import torch
sys.path.insert(0, {root!r})
from faceaging.training import train as T
from faceaging.training.data import FaceSet

cache, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
# No augmentation, and no adversarial phase: the age classifier's BatchNorm statistics and
# dropout are per process, as in any data-parallel run without SyncBatchNorm, and it only
# reaches E and G in that phase.
config = T.TrainConfig(steps=3, batch_size=batch, sample_every=100, checkpoint_every=100,
                       identity_faces=64, adversarial_from=100, augment=False)
seen = []
step = T.Trainer.train_step
def recorded(self, *args):
    losses = step(self, *args)
    seen.append(torch.cat([p.detach().flatten().clone() for m in (self.E, self.G, self.D) for p in m.parameters()]))
    return losses
T.Trainer.train_step = recorded
trainer = T.train(FaceSet.load(cache), out, config, device="cpu")
torch.save(torch.stack(seen), f"{{out}}/params_rank{{trainer.rank}}.pt")
"""


@pytest.fixture(scope="module")
def runs(utk_dir, tmp_path_factory):
    from faceaging.training.data import build_utkface

    folder = tmp_path_factory.mktemp("distributed")
    cache = folder / "cache.npz"
    build_utkface(utk_dir).save(cache)
    script = folder / "run.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command, out, batch in (([sys.executable], "one", 4), (launch, "two", 2)):
        proc = subprocess.run(
            [*command, str(script), str(cache), str(folder / out), str(batch)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_two_processes_hold_identical_parameters_after_every_step(runs):
    rank0, rank1 = (torch.load(runs / "two" / f"params_rank{r}.pt") for r in (0, 1))
    assert rank0.shape[0] == 3  # three steps
    assert torch.equal(rank0, rank1)
    assert (runs / "two" / "checkpoint.pt").is_file()  # written by rank 0
    assert not (runs / "two" / "params_rank2.pt").exists()


def test_two_processes_of_batch_two_match_one_process_of_batch_four(runs):
    """The same faces and targets in the same steps (DistributedSampler shards one schedule), so
    the averaged gradients are the big batch's, equal up to float summation order. Adam turns
    that noise into visible steps where a gradient is near zero (its first step moves every
    weight by about lr = 2e-4 times the gradient's sign), so the tolerance is stated in Adam
    steps: after one step every parameter within 2e-5 (a tenth of a step); after three, 99.9%
    within 1e-4 and none further than three steps apart (1.2e-3). Different faces or targets
    on either side move most weights a whole step apart at once."""
    one = torch.load(runs / "one" / "params_rank0.pt")
    two = torch.load(runs / "two" / "params_rank0.pt")
    assert (one[-1] - one[0]).abs().max() > 1e-4  # the parameters did move
    apart = (one - two).abs()
    assert apart[0].max() < 2e-5
    assert torch.quantile(apart[-1][::7], 0.999) < 1e-4 and apart[-1].max() < 1.2e-3


def test_the_train_command_under_torchrun_resumes_as_it_does_alone(runs):
    """`torchrun -m faceaging train`, as a user starts it, then --resume for one more step."""
    out = runs / "cli"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    common = ["-m", "faceaging", "train", "--cache", str(runs / "cache.npz"), "--out", str(out), "--batch-size", "2"]
    # then --max-minutes 0: rank 0's clock stops both processes after one more step
    for steps, extra in (("2", []), ("3", ["--resume"]), ("10", ["--resume", "--max-minutes", "0"])):
        proc = subprocess.run(
            [*launch, *common, "--steps", steps, *extra], cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 3" in proc.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    assert (out / "samples" / "step_000003.png").is_file()
