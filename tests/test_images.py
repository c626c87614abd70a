"""PNG grids and atomic writes."""
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from pixelzoo.images import atomic_write_bytes, make_grid, save_grid


def test_grid_places_each_image_and_scales_levels():
    imgs = torch.stack([torch.full((1, 2, 2), k) for k in range(5)])  # 5 images at 3 bits: levels 0..4
    grid = make_grid(imgs, bits=3, nrow=3, padding=1)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1)
    for k in range(5):
        r, c = divmod(k, 3)
        block = grid[1 + 3 * r:3 + 3 * r, 1 + 3 * c:3 + 3 * c]
        assert (block == round(k * 255 / 7)).all()
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()  # padding is white


def test_save_grid_writes_a_readable_png_with_normal_permissions(tmp_path):
    imgs = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    path = save_grid(imgs, tmp_path / "sub" / "g.png", scale=2, nrow=2)
    with Image.open(path) as im:
        arr = np.asarray(im)
    assert arr.shape == (2 * 12 + 2, 2 * 12 + 2, 3)
    np.testing.assert_array_equal(arr[2:12, 2:12], imgs[0].repeat_interleave(2, 1).repeat_interleave(2, 2)
                                  .permute(1, 2, 0).numpy())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["g.png"]  # no temp file left behind


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    class Boom:
        def __len__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, Boom())
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="1 or 3"):
        make_grid(torch.zeros(2, 2, 4, 4, dtype=torch.uint8))
