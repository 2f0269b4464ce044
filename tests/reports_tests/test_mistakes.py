"""The data section's test images that the trials get wrong, from their stored predictions (fast, synthetic)."""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch
from reports_tests.simulate_images import SCENARIOS, population, simulate

from cnn.data import ImageSet
from reports import blocks, figures, overview
from reports.blocks import Section


def _frames(seed: int = 0):
    rng = np.random.default_rng(seed)
    s = dataclasses.replace(SCENARIOS[0], n_images=300, replicates=2)
    return simulate(rng, population(rng, s), s)


def test_mistakes_are_the_images_every_trial_or_every_trial_of_an_option_gets_wrong():
    frames = _frames()
    found = overview.mistakes(frames)
    last = np.stack([frames.predictions[n][-1] for n in sorted(frames.predictions)])
    right = last == frames.labels[None, :]
    assert found.trials == len(last) == 8
    assert found.everyone == np.flatnonzero(~right.any(axis=0)).tolist() and found.everyone
    activation = frames.trials.sort_values("number")["activation"].to_numpy()
    for image, factor, options in found.split:
        # Every tanh (or relu) trial right on it, every trial of the other wrong: only the activation differs here.
        assert factor == "activation" and len(options) == 1
        assert right[activation == options[0], image].all() and not right[activation != options[0], image].any()
    assert found.split
    for image, said in found.said.items():
        # The wrong class predicted most: a split image is right in some trials, and its title must not say its true class.
        wrong = last[:, image][last[:, image] != frames.labels[image]]
        assert said != frames.labels[image] and np.bincount(wrong, minlength=10)[said] == np.bincount(wrong).max()


def test_no_mistakes_without_predictions_or_learned_trials():
    frames = _frames()
    assert overview.mistakes(dataclasses.replace(frames, predictions={}, labels=None)) is None
    # At chance: no trial learned, so no image is called hard.
    chance = frames.trials.assign(final_test_acc=10.0)
    assert overview.mistakes(dataclasses.replace(frames, trials=chance)) is None


def test_image_grid_titles_every_image():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    fig = figures.image_grid(images, ["true cat\nsaid dog", "a", "b"], "hard")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["true cat\nsaid dog", "a", "b"] and len(fig.axes) == 8
    plt.close(fig)


def test_mistakes_grids_both_render(tmp_path):
    frames = _frames()
    found = overview.mistakes(frames)
    assert found.everyone and found.split  # both grids are set up before either is drawn
    images = torch.randint(0, 256, (len(frames.labels), 3, 32, 32), dtype=torch.uint8)
    test = ImageSet(images, torch.as_tensor(frames.labels, dtype=torch.int64))
    section = Section("data")
    overview._mistakes(section, frames, test=test)
    blocks.write("t", [], [section], tmp_path)
    assert (tmp_path / "hard_images.png").is_file() and (tmp_path / "split_images.png").is_file()
