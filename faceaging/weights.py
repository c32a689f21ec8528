"""Where weights come from: a local folder (the bundled weights/ by default) or a Hugging Face Hub repo.

A spec is a folder path, or `owner/name` with an optional `@revision`. FACEAGING_WEIGHTS sets the
default spec. Hub files land in the standard huggingface_hub cache, so HF_HUB_OFFLINE=1 works
once a repo has been fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .models import AgeProbe, Encoder, Generator

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_ENV = "FACEAGING_WEIGHTS"

IDENTITY_FILE = "identity_dlib_resnet_v1.safetensors"
ENCODER_FILE = "encoder.safetensors"
GENERATOR_FILE = "generator.safetensors"
AGE_PROBE_FILE = "age_probe.safetensors"
AGING_FILES = (ENCODER_FILE, GENERATOR_FILE, AGE_PROBE_FILE)
MODEL_CARD = "README.md"

_HUB_REPO = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")


class WeightsError(RuntimeError):
    """Weights could not be found or fetched; the message names the spec and what to do."""


_REMEDY = {
    IDENTITY_FILE: "create it with: python -m faceaging convert-judges",
    ENCODER_FILE: "train and export a model: python -m faceaging train, then python -m faceaging export",
    AGE_PROBE_FILE: "fit it on a run: python -m faceaging train-probe, then python -m faceaging export",
}


def resolve_weights(
    spec: str | Path | None = None,
    files: tuple[str, ...] = (IDENTITY_FILE, *AGING_FILES),
) -> Path:
    """The local folder holding `files` for a spec, downloading from the Hub if needed."""
    spec = str(spec or os.environ.get(WEIGHTS_ENV) or BUNDLED_WEIGHTS)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        for name in files:
            if not (folder / name).is_file():
                remedy = _REMEDY.get(name, _REMEDY[ENCODER_FILE])
                raise WeightsError(f"weights {spec!r}: {name} is missing; {remedy}")
        return folder
    if not _HUB_REPO.match(spec):
        raise WeightsError(f"weights {spec!r}: not a folder, and not a Hub repo of the form owner/name[@revision]")
    return _download(spec, files)


def _download(spec: str, files: tuple[str, ...]) -> Path:
    from huggingface_hub import hf_hub_download

    repo, _, revision = spec.partition("@")
    paths = []
    for name in files:
        try:
            paths.append(Path(hf_hub_download(repo, name, revision=revision or None)))
        except Exception as err:  # every Hub failure (missing repo, offline, HTTP) becomes one clear message
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightsError(
                f"weights {spec!r}: could not fetch {name} from the Hugging Face Hub ({reason})"
            ) from err
    return paths[0].parent


def load_weights(module: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a safetensors file into a module (fp16 files are upcast), in eval mode.

    Only safetensors: a weights file can never run code, whoever made it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable safetensors file ({err}); download or export it again") from None
    reference = module.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit {type(module).__name__}: {str(err).splitlines()[0]}") from None
    return module.eval()


def load_identity(spec: str | Path | None = None, device: torch.device | str = "cpu") -> torch.nn.Module:
    from .identity import IdentityNet

    folder = resolve_weights(spec, (IDENTITY_FILE,))
    return load_weights(IdentityNet(), folder / IDENTITY_FILE).to(device)


def load_aging_models(
    spec: str | Path | None = None, device: torch.device | str = "cpu"
) -> tuple[Encoder, Generator, AgeProbe]:
    folder = resolve_weights(spec, AGING_FILES)
    return (
        load_weights(Encoder(), folder / ENCODER_FILE).to(device),
        load_weights(Generator(), folder / GENERATOR_FILE).to(device),
        load_weights(AgeProbe(), folder / AGE_PROBE_FILE).to(device),
    )
