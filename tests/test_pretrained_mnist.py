"""The zoo's published MNIST checkpoint (hub/pixelcnnpp-mnist) loads and scores what it scored when published."""
import json
from pathlib import Path

import pytest
import torch

import pixelzoo
from pixelzoo.data import load_bundled
from pixelzoo.evaluation import evaluate

REPO = Path(__file__).resolve().parents[1] / "hub" / "pixelcnnpp-mnist"


def test_repo_folder_is_complete_and_small():
    names = {p.name for p in REPO.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "eval.json"} <= names
    assert (REPO / "model.safetensors").stat().st_size <= 10 * 2**20
    card = (REPO / "README.md").read_text()
    assert "library_name: pixelzoo" in card and "bits" in card
    recorded = json.loads((REPO / "eval.json").read_text())
    assert recorded["mnist_test"]["num_images"] == 10_000
    assert f"{recorded['mnist_test']['bits_per_dim']:.4f}" in card


def test_bits_per_dim_on_the_bundled_test_images_matches_the_published_figure():
    model = pixelzoo.from_pretrained(str(REPO))
    recorded = json.loads((REPO / "eval.json").read_text())["bundled_test"]
    result = evaluate(model, load_bundled("test"), batch_size=250, progress=False)
    assert result["num_images"] == recorded["num_images"] == 1000
    assert result["exact"] is True
    assert abs(result["bits_per_dim"] - recorded["bits_per_dim"]) < 1e-3, (result, recorded)
    # and it is a trained model: far below the 8 bits/dim of a uniform model and its own untrained start
    assert result["bits_per_dim"] < 1.5


def test_preset_resolves_to_the_local_repo_when_offline(monkeypatch, caplog):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = pixelzoo.create_model("pixelcnnpp_mnist", pretrained=True)
    reference = pixelzoo.from_pretrained(str(REPO))
    x = load_bundled("test").images[:4]
    model.eval()
    assert torch.equal(model.nll(x), reference.nll(x))
