"""The zoo's published models (hub/) load and score, on the first test images shipped in tests/data, what they
scored when scripts/publish_zoo.py published them; their cards give the full-test-set figure and the recipe.

tests/data/fashion_mnist_test_500.npz and cifar10_test_100.npz are the first 500 / 100 images (and labels) of the
official Fashion-MNIST / CIFAR-10 test sets, in order."""
import json
from pathlib import Path

import pytest

import pixelzoo
from pixelzoo.data import load_dataset
from pixelzoo.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]
# hub folder -> (preset, dataset, images in the shipped test subset)
ZOO = {"pixelcnnpp-fashion-mnist": ("pixelcnnpp_fashion_mnist", "fashion_mnist", 500),
       "pixelcnnpp-fashion-mnist-local": ("small_plain_local_28", "fashion_mnist", 500),
       "pixelcnnpp-fashion-mnist-background": ("pixelcnnpp_fashion_mnist_background", "fashion_mnist", 500),
       "pixelcnnpp-cifar10-small": ("pixelcnnpp_cifar10_small", "cifar10", 100)}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_published_model_scores_its_recorded_figure(name):
    preset, dataset, n = ZOO[name]
    repo = ROOT / "hub" / name
    recorded = json.loads((repo / "eval.json").read_text())
    card = (repo / "README.md").read_text()
    full = recorded[f"{dataset}_test"]
    assert full["num_images"] == 10_000 and full["exact"] is True
    assert f"{full['bits_per_dim']:.4f}" in card and f"({full['num_images']:,} images" in card
    assert f"steps: {recorded['steps']:,}" in card and "wall time" in card and "hardware" in card
    assert recorded["command"] in card
    model = pixelzoo.from_pretrained(str(repo))
    assert model.config == pixelzoo.create_model(preset).config  # the preset's architecture
    data = load_dataset(ROOT / "tests" / "data" / f"{dataset}_test_{n}.npz")
    result = evaluate(model, data, batch_size=100, progress=False)
    assert result["num_images"] == n
    assert abs(result["bits_per_dim"] - recorded[f"{dataset}_test_first_{n}"]["bits_per_dim"]) < 1e-3
    assert result["bits_per_dim"] < 4.5  # trained: far below the 8 bits/dim of a uniform model


def test_cifar10_card_reports_epochs_of_the_full_training_set():
    recorded = json.loads((ROOT / "hub" / "pixelcnnpp-cifar10-small" / "eval.json").read_text())
    card = (ROOT / "hub" / "pixelcnnpp-cifar10-small" / "README.md").read_text()
    # 50,000 training images at batch 32; the trainer's epoch is 50,000 // 32 = 1,562 full batches (drop_last)
    assert recorded["epochs"] == pytest.approx(recorded["steps"] / (50_000 // 32), rel=1e-9)
    assert f"epochs: {recorded['epochs']:.2f}" in card
    assert "--data cifar10" in recorded["command"] and "pixelcnnpp_cifar10_small" in recorded["command"]
