"""Hub: save/load round trips, strict loading errors, model cards, no pickle, and push/pull through the real
``huggingface_hub`` client talking HTTP to the local test server (tests/hub_server.py)."""
from __future__ import annotations

import ast
import copy
import json
import logging
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard, constants
from safetensors.torch import load_file, save_file

import pixelzoo
from pixelzoo import hub, registry
from pixelzoo.cli import main
from pixelzoo.hub import CheckpointError, ConfigError, DownloadError, ModelNotFoundError
from pixelzoo.model import FORMAT_VERSION, PixelZooModel

from hub_server import HubServer

REPO = "org/tiny"


# ------------------------------------------------------------------------------------------- helpers
def tiny(seed: int = 0, **kw) -> PixelZooModel:
    """A 9.6k-parameter model on 1x8x8 images; the seed sets its (random) weights."""
    torch.manual_seed(seed)
    args = dict(image_shape=(1, 8, 8), nr_filters=4, nr_resnet=1, num_mixtures=2, dropout=0.0)
    return pixelzoo.create_model(backbone="pixelcnnpp", head="dlogistic", **{**args, **kw}).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))


def same_model(a: PixelZooModel, b: PixelZooModel, x: torch.Tensor, labels=None) -> bool:
    """Identical weights (every tensor, bit for bit) and identical NLL on fixed images."""
    sa, sb = a.state_dict(), b.state_dict()
    with torch.no_grad():
        return (sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
                and torch.equal(a.eval().nll(x, labels), b.eval().nll(x, labels)))


@pytest.fixture(scope="module")
def server():
    s = HubServer().start()
    yield s
    s.stop()


@pytest.fixture
def hub_env(server, tmp_path, monkeypatch):
    """Point the real client at the test server, with an empty cache, online, and no local zoo copies."""
    server.reset()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_dummy_token")
    monkeypatch.setattr(hub, "local_hub_dirs", lambda: [p for p in [tmp_path / "zoo"] if p.is_dir()])
    return server


def cached_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts)


# -------------------------------------------------------------------------------- local round trips
def test_save_load_round_trip(tmp_path, images):
    m = tiny()
    folder = m.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text()) == m.config
    first_bytes = (folder / "model.safetensors").read_bytes()
    m.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == first_bytes  # reproducible: unchanged pushes are no-ops
    loaded = pixelzoo.from_pretrained(folder)
    assert isinstance(loaded, PixelZooModel) and not loaded.training
    assert same_model(m, loaded, images)
    assert same_model(m, PixelZooModel.from_pretrained(str(folder)), images)  # the mixin entry point


def test_config_json_round_trip_rebuilds_equal_outputs(images):
    m = tiny(seed=3, num_classes=3)
    config = json.loads(json.dumps(m.config))
    assert config["library"] == "pixelzoo" and config["format_version"] == FORMAT_VERSION
    assert config["library_version"] == pixelzoo.__version__
    assert (config["backbone"], config["head"], config["image_shape"], config["bits"], config["num_classes"]) == \
        ("pixelcnnpp", "dlogistic", [1, 8, 8], 8, 3)
    rebuilt = hub.model_from_config(config)
    rebuilt.load_state_dict(m.state_dict())
    labels = torch.tensor([0, 1, 2, 1])
    assert same_model(m, rebuilt.eval(), images, labels)


def test_ema_weights_are_published_and_raw_optional(tmp_path, images):
    m = tiny(seed=1)
    ema = copy.deepcopy(m)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)

    class Averaged(torch.nn.Module):  # the shape of timm's ModelEmaV3 / torch AveragedModel: weights in .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    folder = m.save_pretrained(tmp_path / "m", ema=Averaged(ema), include_raw=True, card={"ema_decay": 0.9995})
    assert same_model(ema, pixelzoo.from_pretrained(folder), images)
    raw = load_file(str(folder / "model_raw.safetensors"))
    assert raw.keys() == m.state_dict().keys() and all(torch.equal(raw[k], v) for k, v in m.state_dict().items())
    text = (folder / "README.md").read_text()
    assert "EMA" in text and "model_raw.safetensors" in text and "0.9995" in text
    m.save_pretrained(folder, ema=ema.state_dict())  # no raw this time: the stale raw file goes
    assert not (folder / "model_raw.safetensors").exists()
    bad = dict(ema.state_dict(), n_averaged=torch.tensor(3))
    with pytest.raises(CheckpointError, match="n_averaged"):
        m.save_pretrained(tmp_path / "bad", ema=bad)


# ------------------------------------------------------------------------------------ strict errors
def _saved(tmp_path) -> Path:
    return tiny().save_pretrained(tmp_path / "m")


def _edit_weights(folder: Path, edit) -> None:
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


KEY = "proj.bias"


def test_missing_key_is_listed(tmp_path):
    folder = _saved(tmp_path)
    _edit_weights(folder, lambda s: s.pop(KEY))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): proj\.bias") as e:
        pixelzoo.from_pretrained(folder)
    assert e.value.missing == [KEY] and not e.value.unexpected


def test_unexpected_key_is_listed(tmp_path):
    folder = _saved(tmp_path)
    _edit_weights(folder, lambda s: s.update({"extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): extra\.weight") as e:
        pixelzoo.from_pretrained(folder)
    assert e.value.unexpected == ["extra.weight"]


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    folder = _saved(tmp_path)
    n = tiny().state_dict()[KEY].shape[0]
    _edit_weights(folder, lambda s: s.update({KEY: torch.zeros(n + 1)}))
    with pytest.raises(CheckpointError, match=rf"proj\.bias: checkpoint \[{n + 1}\] .*, model \[{n}\]") as e:
        pixelzoo.from_pretrained(folder)
    assert e.value.mismatched == [(KEY, (n + 1,), (n,))]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(backbone="pixelcnnp"), r"Unknown backbone 'pixelcnnp'.*pixelcnnpp"),
    (lambda c: c.update(head="dlogistc"), r"Unknown head 'dlogistc'.*dlogistic"),
    (lambda c: c.update(library="transformers", model_type="gpt2"), r"not a pixelzoo config.*transformers"),
    (lambda c: c.pop("library"), r"not a pixelzoo config \(library=None"),
    (lambda c: c.update(format_version=FORMAT_VERSION + 1), r"format_version 2 .*upgrade pixelzoo"),
    (lambda c: c.update(format_version="1"), r"'format_version' must be a JSON int"),
    (lambda c: c.update(nr_filters=4), r"unknown field\(s\) \['nr_filters'\]"),
    (lambda c: c.pop("image_shape"), r"missing field\(s\) \['image_shape'\]"),
    (lambda c: c["backbone_args"].update(nr_filter=4), r"takes no argument\(s\) \['nr_filter'\]"),
])
def test_bad_config_is_a_config_error(tmp_path, edit, message):
    folder = _saved(tmp_path)
    _edit_config(folder, edit)
    with pytest.raises(ConfigError, match=message):
        pixelzoo.from_pretrained(folder)


def test_config_that_is_not_json(tmp_path):
    folder = _saved(tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        pixelzoo.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncate", "header", "empty"])
def test_truncated_or_corrupt_weights(tmp_path, damage):
    folder = _saved(tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "header": b"\xff" * 8 + data[8:], "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        pixelzoo.from_pretrained(folder)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file_in_folder(tmp_path, name):
    folder = _saved(tmp_path)
    (folder / name).unlink()
    with pytest.raises(ModelNotFoundError, match=f"has no {name}") as e:
        pixelzoo.from_pretrained(folder)
    assert isinstance(e.value, FileNotFoundError)


def test_pickle_checkpoints_are_never_read(tmp_path):
    # The stock mixin falls back to pytorch_model.bin; pixelzoo's override does not.
    folder = _saved(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        PixelZooModel.from_pretrained(str(folder))
    with pytest.raises(ValueError, match="strictly"):
        PixelZooModel._from_pretrained(model_id=str(folder), revision=None, cache_dir=None, force_download=False,
                                       local_files_only=False, token=None, strict=False)


def test_not_a_model_spec():
    with pytest.raises(ModelNotFoundError, match="neither a folder, a preset with weights, nor a Hub repo id"):
        pixelzoo.from_pretrained("no_such_thing")
    with pytest.raises(ModelNotFoundError, match="no published weights"):
        pixelzoo.from_pretrained("pixelcnnpp_small")  # a preset without a hub_id
    with pytest.raises(ModelNotFoundError, match="no published weights"):
        pixelzoo.create_model("pixelcnnpp_small", pretrained=True)


# --------------------------------------------------------------------------------------- no pickle
_PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# The one pickle use allowed: a restricted unpickler (a pickle.Unpickler subclass that overrides find_class,
# as data.py does for CIFAR-10's pickled batches), and the pickle exception classes.
_PICKLE_OK_ATTRS = {"UnpicklingError", "PickleError", "PicklingError"}


def pickle_uses(source: str, filename: str = "<src>") -> list[str]:
    """Every unrestricted unpickling path: ``torch.load`` without ``weights_only=True``, ``np.load`` with
    ``allow_pickle``, and any pickle-module use other than a ``find_class``-restricted ``Unpickler`` subclass."""
    tree = ast.parse(source, filename)
    found, aliases, restricted_bases = [], set(), set()

    def const_kw(call: ast.Call, name: str):
        kw = next((k for k in call.keywords if k.arg == name), None)
        return kw.value.value if kw is not None and isinstance(kw.value, ast.Constant) else None

    def dotted(node) -> str:
        return f"{dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else getattr(node, "id", "?")

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.FunctionDef) and b.name == "find_class" for b in node.body):
            restricted_bases.update(id(base) for base in node.bases)
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == "pickle")
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names
                      if a.name.split(".")[0] in _PICKLERS and a.name != "pickle"]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in _PICKLERS:
                found.append(f"{where} from {module} import ...")
            if module.split(".")[0] == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where} from {module} import load")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr not in _PICKLE_OK_ATTRS and not (node.attr == "Unpickler" and id(node) in restricted_bases):
                found.append(f"{where} pickle.{node.attr} (only a find_class-restricted Unpickler is allowed)")
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name.split(".")[-1] == "load" and name.split(".")[0] == "torch" and \
                    const_kw(node, "weights_only") is not True:
                found.append(f"{where} {name}(...) without weights_only=True")
            if name in ("np.load", "numpy.load") and any(k.arg == "allow_pickle" for k in node.keywords) and \
                    const_kw(node, "allow_pickle") is not False:
                found.append(f"{where} {name}(..., allow_pickle=...)")
    return found


def test_the_pickle_scanner_catches_each_pattern():
    bad = ["import pickle\npickle.loads(b)", "import pickle as p\np.load(f)", "from pickle import loads",
           "import dill", "import pickle\npickle.Unpickler(f).load()",
           "import pickle\nclass U(pickle.Unpickler):\n    pass", "import torch\ntorch.load(f)",
           "torch.load(f, weights_only=False)", "from torch import load", "torch.serialization.load(f)",
           "import numpy as np\nnp.load(f, allow_pickle=True)"]
    for src in bad:
        assert pickle_uses(src), src
    good = ("import pickle\nclass U(pickle.Unpickler):\n    def find_class(self, module, name):\n"
            "        raise pickle.UnpicklingError(name)\n"
            "torch.load(f, map_location='cpu', weights_only=True)\nnp.load(f)\nnp.load(f, allow_pickle=False)")
    assert not pickle_uses(good)


def test_no_pickle_anywhere_in_the_package():
    root = Path(pixelzoo.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    found = [hit for f in files for hit in pickle_uses(f.read_text(encoding="utf-8"), str(f.relative_to(root)))]
    assert not found, found


# ---------------------------------------------------------------------------------------- model card
def test_model_card_metadata_and_text(tmp_path):
    m = tiny()
    card = {"dataset": "mnist", "dataset_id": "ylecun/mnist", "split": "test", "num_images": 1000,
            "bits_per_dim": 1.23456, "steps": 5000, "epochs": 2.5, "wall_time": 7200.0, "hardware": "1x H200",
            "command": "pixelzoo train --preset pixelcnnpp_mnist"}
    folder = m.save_pretrained(tmp_path / "m", card=card, repo_id="pixelzoo/tiny")
    parsed = ModelCard.load(folder / "README.md")
    data = parsed.data
    assert data.library_name == "pixelzoo" and data.license == "mit"
    assert {"pixelcnn", "autoregressive", "image-generation", "pixelcnnpp", "dlogistic"} <= set(data.tags)
    assert data.datasets == ["ylecun/mnist"]
    (result,) = data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_split, result.dataset_name) == \
        ("bits_per_dim", 1.2346, "test", "mnist")
    assert result.metric_args == {"num_images": 1000, "exact": True} and result.metric_name == "bits/dim"
    text = parsed.text
    assert "bits/dim = **1.2346** on the `test` split of mnist (1,000 images" in text
    assert 'pixelzoo.from_pretrained("pixelzoo/tiny")' in text
    assert "- steps: 5,000\n- epochs: 2.50\n- wall time: 2.00 h" in text
    assert "5,000" in text and "2.00 h" in text and "1x H200" in text and card["command"] in text
    conditional = ModelCard.load(tiny(num_classes=10).save_pretrained(tmp_path / "c") / "README.md").text
    assert "A class-conditional (10 classes)" in conditional and "labels = torch.arange(16) % 10" in conditional


def test_model_card_of_a_bound_says_so(tmp_path):
    card = {"dataset": "cifar10", "split": "test", "num_images": 10, "bits_per_dim": 3.0, "exact": False}
    parsed = ModelCard.load(tiny().save_pretrained(tmp_path / "m", card=card) / "README.md")
    assert "bits/dim ≤ **3.0000**" in parsed.text and "upper bound" in parsed.text
    assert parsed.data.eval_results[0].metric_args["exact"] is False


def test_model_card_input_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"unknown card metadata key\(s\) \['bpd'\]"):
        tiny().save_pretrained(tmp_path / "a", card={"bpd": 3.0})
    with pytest.raises(ValueError, match=r"not \['split', 'num_images'\]"):
        tiny().save_pretrained(tmp_path / "b", card={"bits_per_dim": 3.0, "dataset": "mnist"})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_readme_is_kept_unless_asked(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text("hand-written card\n")
    tiny().save_pretrained(folder)
    assert (folder / "README.md").read_text() == "hand-written card\n"
    tiny().save_pretrained(folder, overwrite_card=True)
    assert "library_name: pixelzoo" in (folder / "README.md").read_text()


# ----------------------------------------------------------------------------------- through the Hub
def test_push_then_pull_into_an_empty_cache(hub_env, tmp_path, images):
    m = tiny(seed=2)
    commit = m.push_to_hub(REPO, card={"dataset": "mnist", "split": "test", "num_images": 4, "bits_per_dim": 8.0})
    assert len(commit.oid) == 40 and hub_env.commits(REPO)[0] == commit.oid
    files = hub_env.files(REPO)
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert json.loads(files["config.json"]) == m.config
    # Only regular commits travelled: no LFS or Xet endpoints were touched.
    assert not [p for _, p in hub_env.state.requests if "lfs" in p or "xet" in p]
    cache = tmp_path / "fresh-cache"
    loaded = pixelzoo.from_pretrained(REPO, cache_dir=cache)
    assert same_model(m, loaded, images)
    assert any(f.endswith("model.safetensors") for f in cached_files(cache))


def test_pull_a_given_revision(hub_env, images):
    first, second = tiny(seed=10), tiny(seed=11)
    c1 = first.push_to_hub(REPO)
    c2 = second.push_to_hub(REPO)
    assert c1.oid != c2.oid and hub_env.commits(REPO)[:2] == [c2.oid, c1.oid]
    assert same_model(first, pixelzoo.from_pretrained(REPO, revision=c1.oid), images)
    assert same_model(second, pixelzoo.from_pretrained(REPO), images)
    with pytest.raises(ModelNotFoundError, match="has no revision 'nope'"):
        pixelzoo.from_pretrained(REPO, revision="nope")


def test_push_to_a_branch(hub_env, images):
    main_model, branch_model = tiny(seed=12), tiny(seed=13)
    main_model.push_to_hub(REPO)
    branch_model.push_to_hub(REPO, revision="experiment")
    assert same_model(branch_model, pixelzoo.from_pretrained(REPO, revision="experiment"), images)
    assert same_model(main_model, pixelzoo.from_pretrained(REPO), images)


def test_missing_repo_or_file_is_a_clear_error(hub_env):
    with pytest.raises(ModelNotFoundError, match="no model repo 'org/absent'.*nor is there a local folder"):
        pixelzoo.from_pretrained("org/absent")
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo("org/half")
    api.upload_file(path_or_fileobj=json.dumps(tiny().config).encode(), path_in_repo="config.json",
                    repo_id="org/half")
    api.upload_file(path_or_fileobj=b"not a pickle either", path_in_repo="pytorch_model.bin", repo_id="org/half")
    with pytest.raises(ModelNotFoundError, match="'org/half' .*has no model.safetensors"):
        pixelzoo.from_pretrained("org/half")


@pytest.mark.parametrize("fault", ["500", "truncate"])
def test_failed_download_leaves_nothing_half_written(hub_env, monkeypatch, images, fault):
    # The client resumes a cut download 5 times, 1 s apart; its only use of `time` is that sleep.
    from huggingface_hub import file_download

    monkeypatch.setattr(file_download, "time", SimpleNamespace(sleep=lambda seconds: None))
    m = tiny(seed=4)
    m.push_to_hub(REPO)
    cache = Path(constants.HF_HUB_CACHE)
    injected = hub_env.add_fault("GET", "/model.safetensors", fault)  # config.json downloads, the weights fail
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="downloading model.safetensors of 'org/tiny'.* failed.*Nothing half"):
        pixelzoo.from_pretrained(REPO)
    assert time.perf_counter() - start < 5 and injected.hits >= 1
    files = cached_files(cache)
    assert any(f.endswith("config.json") for f in files)
    assert not [f for f in files if f.endswith(("model.safetensors", ".incomplete"))], files
    assert len([f for f in files if "/blobs/" in f]) == 1, files  # the config's blob only
    hub_env.state.faults.clear()
    assert same_model(m, pixelzoo.from_pretrained(REPO), images)  # and the cache then works


def test_offline_loads_from_the_cache(hub_env, monkeypatch, images):
    m = tiny(seed=5)
    m.push_to_hub(REPO)
    pixelzoo.from_pretrained(REPO)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub_env.state.requests.clear()
    assert same_model(m, pixelzoo.from_pretrained(REPO), images)
    assert hub_env.state.requests == []
    with pytest.raises(DownloadError, match="offline mode is on.*not in the local cache"):
        pixelzoo.from_pretrained("org/never-downloaded")


def test_second_push_of_unchanged_files_is_a_no_op(hub_env):
    m = tiny(seed=6)
    first = m.push_to_hub(REPO, card={"description": "first card"})
    n_commits = len(hub_env.commits(REPO))
    hub_env.state.requests.clear()
    again = m.push_to_hub(REPO, card={"description": "another card"})
    assert len(hub_env.commits(REPO)) == n_commits and again.oid == first.oid
    assert not [p for method, p in hub_env.state.requests if method == "POST" and "/commit/" in p]
    # New weights make a commit, but the README already on the Hub is never replaced by push_to_hub.
    tiny(seed=7).push_to_hub(REPO, card={"description": "a third card"})
    assert len(hub_env.commits(REPO)) == n_commits + 1
    assert b"first card" in hub_env.files(REPO)["README.md"]


def test_cli_push_and_pull(hub_env, tmp_path, images, capsys):
    m = tiny(seed=8)
    folder = m.save_pretrained(tmp_path / "m", repo_id=REPO)
    assert main(["push", str(folder), "--repo-id", REPO]) == 0
    assert REPO in capsys.readouterr().out
    to = tmp_path / "pulled"
    assert main(["pull", REPO, "--to", str(to)]) == 0
    assert sorted(p.name for p in to.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    for name in ("README.md", "config.json", "model.safetensors"):
        assert (to / name).read_bytes() == (folder / name).read_bytes()
    assert same_model(m, pixelzoo.from_pretrained(to), images)
    from pixelzoo.cli.common import load_model

    assert same_model(m, load_model(str(to)), images)
    assert main(["pull", REPO, "--to", str(to)]) == 1  # not empty
    assert "not an empty folder" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    assert main(["push", str(tmp_path / "junk"), "--repo-id", REPO]) == 1
    assert "has no config.json or model.safetensors" in capsys.readouterr().err


# ------------------------------------------------------------------------------- presets and the zoo
ZOO = "pixelzoo-test/tiny-zoo"


@pytest.fixture
def zoo_preset(hub_env, tmp_path, monkeypatch):
    """A preset whose Hub id has a local copy in <tmp>/zoo/tiny-zoo; removed from the registry afterwards."""
    m = tiny(seed=20)
    preset = registry.Preset("tiny_zoo_test", "pixelcnnpp", "dlogistic", (1, 8, 8),
                             backbone_args=dict(nr_filters=4, nr_resnet=1, dropout=0.0),
                             head_args=dict(num_mixtures=2), metadata=dict(hub_id=ZOO))
    monkeypatch.setitem(registry._PRESETS, preset.name, preset)
    m.save_pretrained(tmp_path / "zoo" / "tiny-zoo", repo_id=ZOO)
    return m


def test_zoo_falls_back_to_the_local_copy_when_offline(zoo_preset, monkeypatch, caplog, images):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with caplog.at_level(logging.WARNING, logger="pixelzoo.hub"):
        loaded = pixelzoo.from_pretrained("tiny_zoo_test")
    assert same_model(zoo_preset, loaded, images) and loaded.preset_name == "tiny_zoo_test"
    assert "using the local copy" in caplog.text and "tiny-zoo" in caplog.text
    assert same_model(zoo_preset, pixelzoo.create_model("tiny_zoo_test", pretrained=True).eval(), images)


def test_zoo_falls_back_fast_when_the_hub_is_unreachable(zoo_preset, monkeypatch, caplog, images):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="pixelzoo.hub"):
        loaded = pixelzoo.from_pretrained(ZOO)
    assert time.perf_counter() - start < 5  # the client's own retries would take ~25 s
    assert same_model(zoo_preset, loaded, images) and "cannot be reached" in caplog.text


def test_zoo_prefers_the_hub_when_it_answers(zoo_preset, hub_env, caplog, images):
    published = tiny(seed=21)
    published.push_to_hub(ZOO)
    with caplog.at_level(logging.INFO, logger="pixelzoo.hub"):
        loaded = pixelzoo.from_pretrained("tiny_zoo_test")
    assert same_model(published, loaded, images) and "Hub cache" in caplog.text
    model = pixelzoo.create_model("tiny_zoo_test", pretrained=True).eval()
    assert same_model(published, model, images)
    with pytest.raises(CheckpointError, match=r"differs from the published .* backbone_args\.nr_filters: model 8"):
        pixelzoo.create_model("tiny_zoo_test", pretrained=True, nr_filters=8)


def test_zoo_uses_the_local_copy_when_the_hub_lacks_the_repo(zoo_preset, hub_env, caplog, images):
    with caplog.at_level(logging.WARNING, logger="pixelzoo.hub"):
        loaded = pixelzoo.from_pretrained(ZOO)
    assert same_model(zoo_preset, loaded, images)
    assert "no model repo 'pixelzoo-test/tiny-zoo'" in caplog.text and "using the local copy" in caplog.text
    from pixelzoo.cli.common import load_model

    assert same_model(zoo_preset, load_model("tiny_zoo_test"), images)  # the CLI's presets load weights too
