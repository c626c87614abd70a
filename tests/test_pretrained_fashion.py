"""The zoo's Fashion-MNIST models (the OOD study's foreground, local and background models) load and score on the
first 500 Fashion-MNIST test images (shipped in tests/data) what they scored when published."""
import json
from pathlib import Path

import pytest

import pixelzoo
from pixelzoo.data import load_dataset
from pixelzoo.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"pixelcnnpp-fashion-mnist": "pixelcnnpp_fashion_mnist",
         "pixelcnnpp-fashion-mnist-local": "small_plain_local_28",
         "pixelcnnpp-fashion-mnist-background": "pixelcnnpp_fashion_mnist_background"}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_published_fashion_model_scores_its_recorded_figure(name):
    repo = ROOT / "hub" / name
    recorded = json.loads((repo / "eval.json").read_text())
    card = (repo / "README.md").read_text()
    assert recorded["fashion_mnist_test"]["num_images"] == 10_000
    assert f"{recorded['fashion_mnist_test']['bits_per_dim']:.4f}" in card
    assert "command" in card and "steps" in card and "wall time" in card and "hardware" in card
    model = pixelzoo.from_pretrained(str(repo))
    assert model.config == pixelzoo.create_model(NAMES[name]).config  # the preset's architecture
    data = load_dataset(ROOT / "tests" / "data" / "fashion_mnist_test_500.npz")
    result = evaluate(model, data, batch_size=500, progress=False)
    assert result["num_images"] == 500
    assert abs(result["bits_per_dim"] - recorded["fashion_mnist_test_first_500"]["bits_per_dim"]) < 1e-3
    assert result["bits_per_dim"] < 4.5  # trained: far below the 8 bits/dim of a uniform model
