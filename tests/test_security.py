"""Loading never runs code: weights are safetensors only, and our own checkpoints load with weights_only."""

import pickle

import pytest
import torch

from faceaging.models import Encoder
from faceaging.training.train import export_weights
from faceaging.weights import ENCODER_FILE, WeightsError, load_weights


class Payload:
    """Unpickling this would create the marker file: the classic pickle exploit."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the pickle payload ran"


def test_checkpoint_with_a_pickle_payload_is_refused(tmp_path, marker):
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"E": Payload(marker)}, checkpoint, _use_new_zipfile_serialization=True)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        export_weights(checkpoint, tmp_path / "weights")


def test_raw_pickle_renamed_as_checkpoint_is_refused(tmp_path, marker):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(pickle.dumps({"E": Payload(marker)}))
    with pytest.raises(pickle.UnpicklingError):
        export_weights(checkpoint, tmp_path / "weights")


def test_pickle_posing_as_safetensors_weights_is_a_weights_error(tmp_path, marker):
    fake = tmp_path / ENCODER_FILE
    fake.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_weights(Encoder(), fake)


def test_weights_for_another_network_are_a_weights_error(tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / ENCODER_FILE
    save_file({"net.0.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(WeightsError, match="does not fit Encoder"):
        load_weights(Encoder(), wrong)
