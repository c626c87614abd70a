"""Import of pclucas14/pixel-cnn-pp checkpoints.

The reference: tests/data/pclucas14/ holds checkpoints saved by the port's own code (one in torch's legacy
serialization) with the port's own raw outputs and per-image NLL, computed by the port in float64
(tests/data/pclucas14/README.md in ../shared/data; fixtures.json lists each file's architecture and sha256).
They were not made by pixelzoo.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import pixelzoo
from pixelzoo.cli import main
from pixelzoo.importers import CheckpointError, infer_pclucas14_architecture, read_pclucas14_state_dict

DATA = Path(__file__).parent / "data" / "pclucas14"
FIXTURES = json.loads((DATA / "fixtures.json").read_text())


def _expected(name):
    e = np.load(DATA / f"{name}_expected.npz")
    return torch.from_numpy(e["x_uint8"]), torch.from_numpy(e["l"]), torch.from_numpy(e["nll_nats"])


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_files_are_the_ports_own(name):
    digest = hashlib.sha256((DATA / f"{name}.pth").read_bytes()).hexdigest()
    assert digest == FIXTURES[name]["sha256"]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_float64_import_gives_the_ports_raw_output_and_nll(name):
    fx = FIXTURES[name]
    x, raw, nll = _expected(name)
    model = pixelzoo.from_pclucas14(DATA / f"{name}.pth", image_shape=fx["image_shape"], dtype="float64").eval()
    assert model.backbone_args["nr_resnet"] == fx["nr_resnet"]
    assert model.backbone_args["nr_filters"] == fx["nr_filters"]
    assert model.head_args["num_mixtures"] == fx["nr_logistic_mix"]
    assert model.image_shape[0] == fx["input_channels"]
    with torch.no_grad():
        out = model(x)
        ours = model.nll(x)
    assert out.dtype == torch.float64 and out.shape == raw.shape
    assert (out - raw).abs().max().item() < 1e-12
    np.testing.assert_allclose(ours.numpy(), nll.numpy(), rtol=1e-10, atol=0)
    np.testing.assert_allclose(ours.numpy(), fx["nll_nats"], rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_float32_import_gives_the_ports_nll(name):
    fx = FIXTURES[name]
    x, _, nll = _expected(name)
    model = pixelzoo.from_pclucas14(DATA / f"{name}.pth", image_shape=fx["image_shape"]).eval()
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        ours = model.nll(x)
    np.testing.assert_allclose(ours.double().numpy(), nll.numpy(), rtol=1e-5, atol=0)


def test_default_image_shapes_are_the_ports():
    rgb = pixelzoo.from_pclucas14(DATA / "rgb_r1_f8_m2.pth")
    gray = pixelzoo.from_pclucas14(DATA / "gray_r1_f8_m2.pth")
    assert rgb.image_shape == (3, 32, 32) and gray.image_shape == (1, 28, 28)


def test_module_prefix_and_wrapped_state_dicts_import_the_same():
    name = "rgb_r1_f8_m2"
    fx = FIXTURES[name]
    x, raw, _ = _expected(name)
    sd = torch.load(DATA / f"{name}.pth", map_location="cpu", weights_only=True)
    for variant in ({f"module.{k}": v for k, v in sd.items()}, {"state_dict": sd},
                    {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}):
        model = pixelzoo.from_pclucas14(variant, image_shape=fx["image_shape"], dtype="float64").eval()
        with torch.no_grad():
            assert (model(x) - raw).abs().max().item() < 1e-12


def _cuda_tagged(pickled: bytes) -> bytes:
    """Retag every storage location 'cpu' of a protocol-2 torch pickle as 'cuda:0' (BINUNICODE strings)."""
    old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    assert old in pickled
    return pickled.replace(old, new)


def test_cuda_saved_storages_load_on_the_cpu(tmp_path):
    """A file saved from CUDA tags each storage 'cuda:N'; torch.load then needs map_location on a CPU machine.

    Such a file is made here by retagging a CPU-saved one: the legacy format is a plain pickle stream, and the
    zip format keeps the same pickle in archive/data.pkl.
    """
    import zipfile

    name = "rgb_r1_f8_m2"
    fx = FIXTURES[name]
    x, raw, _ = _expected(name)
    sd = torch.load(DATA / f"{name}.pth", map_location="cpu", weights_only=True)
    legacy, zipped = tmp_path / "legacy.pth", tmp_path / "zip.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(_cuda_tagged(legacy.read_bytes()))
    torch.save(sd, tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "plain.pth") as src, zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, _cuda_tagged(data) if info.filename.endswith("data.pkl") else data)
    for path in (legacy, zipped):
        if not torch.cuda.is_available():
            with pytest.raises(RuntimeError, match="CUDA"):
                torch.load(path, weights_only=True)  # the tag is really there
        model = pixelzoo.from_pclucas14(path, image_shape=fx["image_shape"], dtype="float64").eval()
        assert model.device.type == "cpu"
        with torch.no_grad():
            assert (model(x) - raw).abs().max().item() < 1e-12


# ------------------------------------------------------------------------ the port's layout, written out here
def port_state_dict(nr_resnet, nr_filters, nr_mix, channels, seed=0):
    """Random tensors under the port's keys and shapes (its model.py: PixelCNN, gated_resnet, nin, wn layers)."""
    g = torch.Generator().manual_seed(seed)
    F = nr_filters
    sd = {}

    def layer(prefix, w_shape, transposed=False):
        sd[f"{prefix}.bias"] = torch.randn(w_shape[1] if transposed else w_shape[0], generator=g)
        sd[f"{prefix}.weight_g"] = torch.rand((w_shape[0],) + (1,) * (len(w_shape) - 1), generator=g) + 0.5
        sd[f"{prefix}.weight_v"] = torch.randn(w_shape, generator=g)

    def block(prefix, kernel, skip):
        layer(f"{prefix}.conv_input.conv", (F, 2 * F, *kernel))
        if skip:
            layer(f"{prefix}.nin_skip.lin_a", (F, 2 * skip * F))
        layer(f"{prefix}.conv_out.conv", (2 * F, 2 * F, *kernel))

    for i in range(3):
        for j in range(nr_resnet + (i > 0)):
            block(f"down_layers.{i}.u_stream.{j}", (2, 3), 1)
            block(f"down_layers.{i}.ul_stream.{j}", (2, 2), 2)
        for j in range(nr_resnet):
            block(f"up_layers.{i}.u_stream.{j}", (2, 3), 0)
            block(f"up_layers.{i}.ul_stream.{j}", (2, 2), 1)
    for i in range(2):
        layer(f"downsize_u_stream.{i}.conv", (F, F, 2, 3))
        layer(f"downsize_ul_stream.{i}.conv", (F, F, 2, 2))
        layer(f"upsize_u_stream.{i}.deconv", (F, F, 2, 3), transposed=True)
        layer(f"upsize_ul_stream.{i}.deconv", (F, F, 2, 2), transposed=True)
    layer("u_init.conv", (F, channels + 1, 2, 3))
    layer("ul_init.0.conv", (F, channels + 1, 1, 3))
    layer("ul_init.1.conv", (F, channels + 1, 2, 1))
    layer("nin_out.lin_a", (nr_mix * (10 if channels == 3 else 3), F))
    return sd


@pytest.mark.parametrize("nr_resnet,nr_filters,nr_mix,channels", [
    (1, 4, 1, 1), (2, 6, 3, 3), (3, 5, 10, 3), (5, 16, 7, 1), (5, 160, 10, 3)])
def test_architecture_is_inferred_from_the_tensors(nr_resnet, nr_filters, nr_mix, channels):
    sd = port_state_dict(nr_resnet, nr_filters, nr_mix, channels)
    assert infer_pclucas14_architecture(sd) == {"nr_resnet": nr_resnet, "nr_filters": nr_filters,
                                                "num_mixtures": nr_mix, "input_channels": channels}
    if nr_filters <= 16:
        model = pixelzoo.from_pclucas14(sd, image_shape=(channels, 8, 8))
        assert model.backbone_args == {"nr_resnet": nr_resnet, "nr_filters": nr_filters, "dropout": 0.5}
        assert model.head_args == {"num_mixtures": nr_mix}


_RENAMES = [  # port layer -> pixelzoo module, in order
    (r"^u_init\.conv$", "backbone.u_init"), (r"^ul_init\.0\.conv$", "backbone.ul_init_down"),
    (r"^ul_init\.1\.conv$", "backbone.ul_init_right"), (r"^nin_out\.lin_a$", "proj"),
    (r"^(down|up)size_(u|ul)_stream\.(\d)\.(de)?conv$", r"backbone.\1size_\2.\3"),
    (r"^(up|down)_layers\.(.*)\.conv_input\.conv$", r"backbone.\1_layers.\2.conv_in"),
    (r"^(up|down)_layers\.(.*)\.conv_out\.conv$", r"backbone.\1_layers.\2.conv_out"),
    (r"^(up|down)_layers\.(.*)\.nin_skip\.lin_a$", r"backbone.\1_layers.\2.nin_aux"),
]


def _our_layer(port_prefix):
    for pattern, repl in _RENAMES:
        name, n = re.subn(pattern, repl, port_prefix)
        if n:
            return name
    raise AssertionError(port_prefix)


def test_every_layer_gets_the_ports_effective_weight():
    """Each imported layer's weight equals the port's g·v/‖v‖ with the norm over dim 0 (written here)."""
    sd = port_state_dict(2, 6, 3, 3, seed=3)
    model = pixelzoo.from_pclucas14(sd, image_shape=(3, 8, 8), dtype="float64")
    ours = dict(model.named_modules())
    checked = 0
    for key in sd:
        if not key.endswith(".weight_v"):
            continue
        prefix = key[: -len(".weight_v")]
        v, gain = sd[key].double(), sd[f"{prefix}.weight_g"].double()
        norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(gain.shape)
        port_w = gain * v / norm
        name = _our_layer(prefix)
        w = ours[name].weight
        assert w.shape == port_w.reshape(w.shape).shape
        torch.testing.assert_close(w, port_w.reshape(w.shape), rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(ours[name].bias, sd[f"{prefix}.bias"].double())
        checked += 1
    assert checked == len([k for k in sd if k.endswith(".weight_v")]) > 40


def test_plain_weights_without_weight_norm_import_too():
    sd = port_state_dict(1, 4, 2, 3, seed=5)
    plain = {}
    for key, value in sd.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            prefix = key[: -len(".weight_v")]
            gain, value = sd[f"{prefix}.weight_g"].double(), value.double()
            value = gain * value / value.reshape(value.shape[0], -1).norm(dim=1).reshape(gain.shape)
            key = f"{prefix}.weight"
        plain[key] = value.double()
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    a = pixelzoo.from_pclucas14(sd, image_shape=(3, 8, 8), dtype="float64").eval()
    b = pixelzoo.from_pclucas14(plain, image_shape=(3, 8, 8), dtype="float64").eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------ bad input
def test_a_pickled_model_object_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match=r"state_dict\(\)"):
        pixelzoo.from_pclucas14(path)


def test_another_networks_state_dict_names_its_keys():
    sd = {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}
    with pytest.raises(CheckpointError, match=r"not a pclucas14.*conv1\.weight"):
        pixelzoo.from_pclucas14(sd)


def test_missing_and_extra_keys_are_named():
    sd = port_state_dict(1, 4, 2, 3)
    del sd["downsize_u_stream.1.conv.weight_v"], sd["downsize_u_stream.1.conv.weight_g"]
    del sd["downsize_u_stream.1.conv.bias"]
    with pytest.raises(CheckpointError, match=r"missing 1 layer.*downsize_u_stream\.1\.conv"):
        pixelzoo.from_pclucas14(sd, image_shape=(3, 8, 8))
    sd = port_state_dict(1, 4, 2, 3)
    sd["extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected key.*extra_head\.weight"):
        pixelzoo.from_pclucas14(sd, image_shape=(3, 8, 8))


def test_inconsistent_shapes_are_refused():
    sd = port_state_dict(1, 4, 2, 3)
    sd["up_layers.1.u_stream.0.conv_out.conv.weight_v"] = torch.zeros(8, 6, 2, 3)
    with pytest.raises(CheckpointError, match=r"up_layers\.1\.u_stream\.0\.conv_out\.conv.*inconsistent"):
        pixelzoo.from_pclucas14(sd, image_shape=(3, 8, 8))
    sd = port_state_dict(1, 4, 2, 3)
    sd["nin_out.lin_a.weight_v"] = torch.zeros(21, 4)
    with pytest.raises(CheckpointError, match="not a multiple of 10"):
        pixelzoo.from_pclucas14(sd, image_shape=(3, 8, 8))


def test_truncated_and_missing_files_are_clear_errors(tmp_path):
    for name in ("rgb_r1_f8_m2", "rgb_r2_f12_m3"):  # zip and legacy
        data = (DATA / f"{name}.pth").read_bytes()
        cut = tmp_path / f"{name}_cut.pth"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            pixelzoo.from_pclucas14(cut)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        pixelzoo.from_pclucas14(tmp_path / "nope.pth")


def test_wrong_image_shape_and_dtype_are_refused():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        pixelzoo.from_pclucas14(DATA / "rgb_r1_f8_m2.pth", image_shape=(1, 16, 16))
    with pytest.raises(ValueError, match="float32"):
        pixelzoo.from_pclucas14(DATA / "rgb_r1_f8_m2.pth", dtype="float16")


def test_read_state_dict_strips_prefixes_only():
    sd = read_pclucas14_state_dict({"module.module.a": torch.zeros(1), "b": torch.ones(1)})
    assert sorted(sd) == ["a", "b"]


# ------------------------------------------------------------------------ the command line
def test_convert_writes_a_model_folder_that_loads_and_records_provenance(tmp_path, capsys):
    name = "gray_r1_f8_m2"
    x, _, nll = _expected(name)
    data = tmp_path / "eval.npz"
    images = torch.randint(0, 256, (5, 12, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    np.savez(data, images=images.numpy())
    out = tmp_path / "models" / "gray"
    assert main(["convert", "pclucas14", str(DATA / f"{name}.pth"), "--out", str(out), "--image-shape", "1", "12",
                 "12", "--eval-data", str(data)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    model = pixelzoo.from_pretrained(out).eval()
    with torch.no_grad():
        np.testing.assert_allclose(model.nll(x).double().numpy(), nll.numpy(), rtol=1e-5)
        expected_bpd = float(model.nll(images[:, None]).double().sum()) / (5 * 144 * np.log(2))
    card = (out / "README.md").read_text()
    assert FIXTURES[name]["sha256"] in card and f"{name}.pth" in card
    assert "converted from a pclucas14/pixel-cnn-pp checkpoint" in card.lower()
    assert f"{expected_bpd:.4f}" in card and "5 images" in card
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("setup,message", [
    ("file", "is a file"), ("nonempty", "not empty"), ("corrupt", "truncated or corrupt"),
    ("shape", "pass --image-shape 1 12 12")])
def test_convert_bad_input_writes_nothing(tmp_path, capsys, setup, message):
    src = DATA / "gray_r1_f8_m2.pth"
    out = tmp_path / "out"
    extra = []
    if setup == "file":
        out.write_text("x")
    elif setup == "nonempty":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    elif setup == "corrupt":
        src = tmp_path / "bad.pth"
        src.write_bytes((DATA / "gray_r1_f8_m2.pth").read_bytes()[:1000])
    elif setup == "shape":
        data = tmp_path / "eval.npz"
        np.savez(data, images=np.zeros((2, 12, 12), np.uint8))
        extra = ["--eval-data", str(data)]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["convert", "pclucas14", str(src), "--out", str(out), *extra]) == 1
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_save_pretrained_onto_a_file_is_a_clear_error(tmp_path):
    model = pixelzoo.create_model("pixelcnnpp_mnist")
    target = tmp_path / "model"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        model.save_pretrained(target)
    assert target.read_text() == "not a folder"
