"""The v2 generator: an edit of the input that is exact at the face's own age, the prototype
prior it starts from, and the augmentations that show it faces as users' photos do."""

import numpy as np
import torch
import torch.nn.functional as F

from faceaging.ages import NUM_GROUPS
from faceaging.align import CANONICAL_LANDMARKS
from faceaging.edit import band_amplitude, luma_bands, split_bands, warp_by_flow
from faceaging.models import Generator
from faceaging.training.data import FaceSet, augment
from faceaging.training.prototypes import build_prior, demographic_cells


def _faces_by_group(make) -> FaceSet:
    """Eight synthetic 128 px faces per group; `make(group, rng)` draws one."""
    rng = np.random.default_rng(0)
    images, ages = [], []
    for g, age in enumerate([10, 25, 35, 45, 55, 70]):
        for _ in range(8):
            images.append(make(g, rng))
            ages.append(age)
    names = [f"{a}_{i % 2}_{i % 3}_2017{i:08d}.jpg.chip.jpg" for i, a in enumerate(ages)]
    return FaceSet(np.stack(images), np.array(ages, np.float32), names)


def _blob(g: int, rng: np.random.Generator) -> np.ndarray:
    """A bright disc whose centre moves down 1.5 px per group, with finer noise for older groups."""
    yy, xx = np.mgrid[:128, :128]
    disc = ((xx - 64) ** 2 + (yy - 54 - 1.5 * g) ** 2 < 30**2) * 150.0 + 50
    noise = rng.normal(0, 4 * g + 1, (128, 128))
    return np.repeat(np.clip(disc + noise, 0, 255)[..., None], 3, -1).astype(np.uint8)


def test_bands_sum_back_to_the_image():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    bands, base = split_bands(x)
    assert torch.allclose(sum(bands) + base, x, atol=1e-5)


def test_prior_measures_the_groups_shape_and_texture():
    prior, prototypes = build_prior(_faces_by_group(_blob))
    assert prototypes.shape == (NUM_GROUPS, 128, 128, 3)
    # Sent from the youngest to the oldest group, a young face's disc moves down (7.5 px in the data).
    generator = Generator()
    generator.prior.load_state_dict(prior.state_dict())
    generator.prior.gains.copy_(torch.tensor([1.0, 0.0, 0.0]))  # shape alone
    young = torch.from_numpy(prototypes[0]).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        old = generator(young, torch.zeros(1, 32, 16, 16), torch.eye(6)[:1], torch.eye(6)[5:])

    def centre_row(image: torch.Tensor) -> float:
        bright = (image[0, 0] > 0).float()
        return float((bright.sum(1) * torch.arange(128)).sum() / bright.sum())

    assert 4 < centre_row(old) - centre_row(young) < 10
    # Older groups carry more fine texture.
    fine = prior.log_amplitude[:, 0].mean(dim=(1, 2))
    assert torch.all(fine[1:] > fine[:-1])


def test_generator_is_the_input_at_its_own_age_and_changes_it_elsewhere():
    generator = Generator()
    generator.prior.load_state_dict(build_prior(_faces_by_group(_blob))[0].state_dict())
    torch.nn.init.normal_(generator.to_edit.weight, std=0.01)  # a learned edit that is not zero
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    z = torch.randn(3, 32, 16, 16)
    own = F.one_hot(torch.tensor([0, 2, 5]), NUM_GROUPS).float()
    with torch.no_grad():
        same = generator(x, z, own, own)
        old = generator(x, z, own, F.one_hot(torch.tensor([5, 5, 0]), NUM_GROUPS).float())
    assert torch.allclose(same, x.clamp(-1, 1), atol=1e-5)
    assert (old - x).abs().mean() > 0.01


def test_demographic_cells_read_gender_and_ethnicity_from_utkface_names():
    cells = demographic_cells(["25_0_1_20170116.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg"])
    assert cells.tolist() == ["0_1", "?"]


def test_augment_keeps_the_crop_format_and_is_repeatable():
    image = _blob(3, np.random.default_rng(1))
    a = augment(image, np.random.default_rng(5))
    b = augment(image, np.random.default_rng(5))
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - image.astype(int)).mean() > 1


def test_a_black_and_white_face_stays_black_and_white_while_a_colour_one_gets_the_colour_shift():
    generator = Generator().eval()
    torch.manual_seed(0)
    generator.prior.colour.copy_(torch.randn_like(generator.prior.colour) * 0.2)  # a coloured prior
    grey = torch.rand(1, 1, 128, 128).repeat(1, 3, 1, 1) * 2 - 1
    colour = torch.rand(1, 3, 128, 128) * 2 - 1
    source, target = torch.eye(NUM_GROUPS)[1:2], torch.eye(NUM_GROUPS)[5:6]

    def spread(x: torch.Tensor) -> float:
        return (x - x.mean(1, keepdim=True)).abs().mean().item()

    with torch.inference_mode():
        aged_grey = generator(grey, torch.zeros(1, 32, 16, 16), source, target)
        aged_colour = generator(colour, torch.zeros(1, 32, 16, 16), source, target)
    assert spread(aged_grey) < 1e-3
    assert not torch.allclose(aged_grey, grey, atol=0.01)  # it still ages: the shift's luma is kept
    change = aged_colour - colour
    assert spread(change) > 0.05  # the colour photo gets the prior's chroma


def test_the_texture_prior_scales_the_details_luma_and_leaves_its_colour_alone():
    generator = Generator().eval()
    # Texture only: the target group has three times the detail everywhere, and no shape or colour change.
    generator.prior.log_amplitude[5] = float(np.log(3.0))
    generator.prior.gains.copy_(torch.tensor([0.0, 1.0, 0.0]))
    torch.manual_seed(0)
    detail = torch.randn(1, 1, 128, 128) * 0.05
    tint = torch.randn(1, 3, 128, 128) * 0.05  # fine colour detail, such as rosy cheeks
    face = (detail + tint - tint.mean(1, keepdim=True)).clamp(-1, 1)
    source, target = torch.eye(NUM_GROUPS)[1:2], torch.eye(NUM_GROUPS)[5:6]
    with torch.inference_mode():
        aged = generator.prior.edit(face, source, target, torch.zeros(1, 5, 128, 128))[1]

    def luma_detail(x: torch.Tensor) -> torch.Tensor:
        return sum(split_bands(x.mean(1, keepdim=True))[0])

    def chroma(x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(1, keepdim=True)

    gain = (luma_detail(aged) * luma_detail(face)).sum() / (luma_detail(face) ** 2).sum()
    assert 2.0 < gain < 3.5  # the luma of the detail is amplified
    assert torch.allclose(chroma(aged), chroma(face), atol=1e-4)  # its colour is not


def test_the_texture_prior_amplifies_smooth_skin_but_not_edges_already_as_strong_as_old_faces():
    generator = Generator().eval()
    # Texture only: old faces have three times the young ones' detail, 0.03 against 0.01 per band.
    generator.prior.log_amplitude[1] = float(np.log(0.01))
    generator.prior.log_amplitude[5] = float(np.log(0.03))
    generator.prior.gains.copy_(torch.tensor([0.0, 1.0, 0.0]))
    torch.manual_seed(0)
    detail = torch.randn(1, 1, 128, 128)
    detail[..., :64] *= 0.005  # smooth young skin on the left
    detail[..., 64:] *= 0.3  # strong edges on the right (eyelids, glasses, hairline)
    face = detail.expand(1, 3, 128, 128).clamp(-1, 1)
    source, target = torch.eye(NUM_GROUPS)[1:2], torch.eye(NUM_GROUPS)[5:6]
    with torch.inference_mode():
        aged = generator.prior.edit(face, source, target, torch.zeros(1, 5, 128, 128))[1]

    def gain(columns: slice) -> float:
        before, after = (sum(split_bands(x.mean(1, keepdim=True))[0])[..., 16:112, columns] for x in (face, aged))
        return float((before * after).sum() / (before**2).sum())

    assert 2.5 < gain(slice(8, 48)) < 3.5  # the ratio of the groups' amplitudes
    assert 0.9 < gain(slice(80, 120)) < 1.1  # already above what old faces have: left as it is


def test_the_finest_detail_may_reach_twice_the_older_groups_amplitude_and_coarser_bands_one_and_a_half():
    generator = Generator().eval()
    generator.prior.gains.copy_(torch.tensor([0.0, 1.0, 0.0]))
    torch.manual_seed(0)
    face = (torch.randn(1, 1, 128, 128) * 0.05).expand(1, 3, 128, 128)
    # The older group's typical amplitude in each band is the face's own, three times the younger
    # group's: the groups' ratio (3) is above every cap, so the caps alone set the gains.
    own = torch.stack([band_amplitude(band, b).mean() for b, band in enumerate(luma_bands(face))])
    generator.prior.log_amplitude[5] = own.log().view(-1, 1, 1)
    generator.prior.log_amplitude[1] = (own / 3).log().view(-1, 1, 1)
    source, target = torch.eye(NUM_GROUPS)[1:2], torch.eye(NUM_GROUPS)[5:6]
    with torch.inference_mode():
        edit, _ = generator.prior.edit(face, source, target, torch.zeros(1, 5, 128, 128))
    finest, middle, coarse = (float(edit.gains[0, b, 16:112, 16:112].median()) for b in range(3))
    assert 1.8 < finest < 2.1
    assert 1.2 < middle < 1.6 and 1.2 < coarse < 1.6


def test_the_flow_keeps_fine_detail_at_fractional_offsets():
    # A pattern of a 4 px period moved by half a pixel: bilinear sampling would average neighbours
    # and keep 0.71 of its amplitude.
    columns = torch.arange(32, dtype=torch.float32)
    pattern = torch.cos(2 * np.pi * columns / 4).expand(1, 1, 32, 32)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 0.5 * 2 / 32  # half a pixel in grid_sample units
    moved = warp_by_flow(pattern, flow)[..., 4:-4, 4:-4]
    expected = torch.cos(2 * np.pi * (columns + 0.5) / 4).expand(1, 1, 32, 32)[..., 4:-4, 4:-4]
    assert float(moved.std() / expected.std()) > 0.9
    assert float((moved - expected).abs().max()) < 0.05


def test_towards_older_ages_the_colour_prior_leaves_the_eyes_alone():
    generator = Generator().eval()
    generator.prior.gains.copy_(torch.tensor([0.0, 0.0, 1.0]))
    # The older mean face is paler across the eyes (ghost spectacles), the same elsewhere.
    generator.prior.colour[5, :, 20:56] = 0.3
    face = torch.zeros(1, 3, 128, 128)
    eyes = [(int(y * 128), int(x * 128)) for x, y in CANONICAL_LANDMARKS[:2]]  # (row, column)
    young, old = torch.eye(NUM_GROUPS)[1:2], torch.eye(NUM_GROUPS)[5:6]
    with torch.inference_mode():
        aged = generator.prior.edit(face, young, old, torch.zeros(1, 5, 128, 128))[1]
        rejuvenated = generator.prior.edit(face, old, young, torch.zeros(1, 5, 128, 128))[1]
    for row, column in eyes:
        assert aged[0, :, row, column].abs().max() < 0.01
        assert rejuvenated[0, :, row, column].min() < -0.1
    assert aged[0, :, 20, 64].min() > 0.1  # between and beside the eyes the change stays


def test_the_colour_prior_never_tints_teeth_but_still_tints_a_closed_mouth():
    generator = Generator().eval()
    generator.prior.gains.copy_(torch.tensor([0.0, 0.0, 1.0]))
    # The older mean face has a darker, less red mouth (the young groups smile, showing teeth).
    mouth_row = int(CANONICAL_LANDMARKS[3, 1] * 128)
    generator.prior.colour[5, :, mouth_row - 4 : mouth_row + 5, 44:84] = torch.tensor([-0.6, -0.3, -0.3]).view(3, 1, 1)
    skin = torch.tensor([0.5, 0.1, -0.1]).view(1, 3, 1, 1)  # warm skin, in [-1, 1] units
    smiling, closed = skin.expand(1, 3, 128, 128).clone(), skin.expand(1, 3, 128, 128).clone()
    smiling[..., mouth_row - 3 : mouth_row + 4, 48:80] = 0.8  # white teeth
    closed[..., mouth_row - 3 : mouth_row + 4, 48:80] = torch.tensor([0.4, -0.2, -0.2]).view(1, 3, 1, 1)  # lips
    young, old = torch.eye(NUM_GROUPS)[1:2], torch.eye(NUM_GROUPS)[5:6]
    with torch.inference_mode():
        aged = generator.prior.edit(
            torch.cat([smiling, closed]), young.repeat(2, 1), old.repeat(2, 1), torch.zeros(2, 5, 128, 128)
        )[1]
    change = aged - torch.cat([smiling, closed])
    middle = change[..., mouth_row - 2 : mouth_row + 3, 54:74]
    tint = middle - middle.mean(1, keepdim=True)  # the change's colour, its brightness taken out
    assert tint[0].abs().max() < 0.02  # teeth: no grey-green
    assert tint[1, 0].mean() < -0.1  # lips: paler red, as the older mean face's
    assert middle[0].mean() < -0.2 and middle[1].mean() < -0.2  # both darker: that reads as age


def test_the_edit_keeps_the_learned_part_apart_from_the_prior():
    """The photo renderer treats the learned brightness change and the prior's colour apart, so
    the edit carries the learned part; with the head's edit zero, the rest is the prior alone."""
    generator = Generator().eval()
    generator.prior.colour[5] = 0.2 * torch.linspace(-1, 1, 128).view(1, 1, 128)
    face = torch.zeros(2, 3, 128, 128)
    young, old = torch.eye(NUM_GROUPS)[[1, 1]], torch.eye(NUM_GROUPS)[[5, 5]]
    learned = torch.zeros(2, 5, 128, 128)
    learned[:, 2, 40:60] = 0.3
    with torch.inference_mode():
        edit, _ = generator.prior.edit(face, young, old, learned)
        prior_only, _ = generator.prior.edit(face, young, old, torch.zeros_like(learned))
    assert torch.equal(edit.learned, learned[:, 2:3])
    assert torch.allclose(edit.shift - edit.learned, prior_only.shift, atol=1e-6)
    assert torch.equal(type(edit).cat([edit[:1], edit[1:]]).learned, edit.learned)


def test_towards_younger_ages_spectacles_stay_straight():
    """Across the band that holds spectacles the flow is made affine towards younger groups, so a
    straight frame stays straight; towards older groups the flow keeps its local part."""
    generator = Generator().eval()
    generator.prior.gains.copy_(torch.tensor([1.0, 0.0, 0.0]))
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 128), torch.linspace(-1, 1, 128), indexing="ij")
    # The mean faces' flow differs locally around the eyes (a bump of 4 crop pixels under each eye).
    bump = sum(torch.exp(-(((cols - x) / 0.15) ** 2 + ((rows + 0.42) / 0.15) ** 2)) for x in (-0.4, 0.4))
    generator.prior.flow[0, 1] = 4 / 64 * bump
    glasses = torch.zeros(1, 3, 128, 128)
    frame_row = int(CANONICAL_LANDMARKS[0, 1] * 128) + 8
    glasses[..., frame_row : frame_row + 2, 16:112] = 1.0  # the frames' lower rim, straight across
    adult, child, old = (torch.eye(NUM_GROUPS)[g : g + 1] for g in (3, 0, 5))
    generator.prior.flow[5] = -generator.prior.flow[0]

    def frame_rows(target: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            aged = generator.prior.edit(glasses, adult, target, torch.zeros(1, 5, 128, 128))[1][0].mean(0)
        weights = aged[:, 24:104].clamp(min=0)  # where the rim is, column by column
        return (weights * torch.arange(128.0).view(128, 1)).sum(0) / weights.sum(0)

    young_rows, old_rows = frame_rows(child), frame_rows(old)
    assert young_rows.max() - young_rows.min() < 0.3  # straight: under a third of a pixel of bend
    assert old_rows.max() - old_rows.min() > 1.0  # the local flow, where nothing needs to stay rigid
