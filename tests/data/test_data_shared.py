"""Every adapter on the real subsets in ../shared/data (small ``limit`` keeps them fast)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cache.store import read_split, store_info
from pipeline.data import DATASETS


def first_block(cfg, split, n):
    blk = next(cfg.iter_blocks(split, n))
    r = cfg.resolution
    assert blk.images.shape == (min(n, cfg.split_size(split)), 3, r, r)
    assert blk.images.dtype == np.uint8 and blk.images.std() > 10
    assert 0 <= blk.labels.min() and blk.labels.max() < len(cfg.classes())
    if blk.boxes is not None:
        b = blk.boxes
        assert (b >= 0).all() and (b < r).all() and (b[:, :2] <= b[:, 2:]).all()
    return blk


def test_cifar10_split_files(shared_data):
    cfg = DATASETS.get("cifar10")(root=str(shared_data / "cifar10"), limit=64)
    assert cfg.classes()[:2] == ["airplane", "automobile"] and cfg.splits() == ["train", "test"]
    blk = first_block(cfg, "test", 64)
    assert blk.masks is None and blk.boxes is None
    full = DATASETS.get("cifar10")(root=str(shared_data / "cifar10" / "cifar-10-batches-py"))
    assert full.split_size("train") == 10000 and full.split_size("test") == 10000


def test_tinyimagenet(shared_data):
    cfg = DATASETS.get("tinyimagenet")(root=str(shared_data / "tinyimagenet"), limit=40)
    assert len(cfg.classes()) == 10 and cfg.classes()[0] == "goldfish"
    assert [len(cfg._scan()[s]) for s in ("train", "val")] == [5000, 500]
    for split in ("train", "val"):
        blk = first_block(cfg, split, 40)
        assert blk.boxes is not None and blk.masks is None


def test_flowers17(shared_data):
    cfg = DATASETS.get("flowers17")(root=str(shared_data / "flowers17"), limit=60)
    assert len(cfg.classes()) == 17 and cfg.splits() == ["train", "val", "test"]
    scan = cfg._scan()
    assert [len(scan[s]) for s in ("train", "val", "test")] == [680, 340, 340]
    assert sum(r.mask_path is not None for rs in scan.values() for r in rs) == 846
    blk = first_block(cfg, "train", 60)
    assert blk.has_mask.any() and not blk.has_mask.all()
    frac = blk.masks[blk.has_mask].mean()
    assert 0.1 < frac < 0.6  # flowers cover about a quarter of the image
    assert not blk.masks[~blk.has_mask].any()


def test_cub200(shared_data):
    cfg = DATASETS.get("cub200")(root=str(shared_data / "cub200"), limit=30, fit="crop")
    assert len(cfg.classes()) == 20 and cfg.classes()[0] == "001.Black_footed_Albatross"
    scan = cfg._scan()
    assert [len(scan[s]) for s in ("train", "test")] == [600, 515]
    blk = first_block(cfg, "train", 30)
    assert blk.boxes is not None and blk.masks is None  # this subset has no segmentations
    # birds fill a good part of the picture: boxes are not degenerate
    area = (blk.boxes[:, 2] - blk.boxes[:, 0] + 1) * (blk.boxes[:, 3] - blk.boxes[:, 1] + 1)
    assert np.median(area) > 0.1 * cfg.resolution**2


def test_imagefolder_on_real_jpegs(shared_data, tmp_path):
    """Real CUB JPEGs laid out class-per-folder (one greyscale) read by imagefolder."""
    import shutil

    src = shared_data / "cub200" / "CUB_200_2011" / "images"
    for split, sl in (("train", slice(0, 3)), ("test", slice(3, 4))):
        for cls in sorted(p.name for p in src.iterdir())[:2]:
            (tmp_path / split / cls).mkdir(parents=True)
            for f in sorted((src / cls).iterdir())[sl]:
                shutil.copy(f, tmp_path / split / cls / f.name)
    cfg = DATASETS.get("imagefolder")(root=str(tmp_path), resolution=24)
    assert cfg.split_size("train") == 6 and cfg.split_size("test") == 2
    assert not cfg.has_masks()
    first_block(cfg, "train", 6)


def test_cli_prepare_data_real_subset(shared_data, tmp_path):
    from cli import main

    out = tmp_path / "flowers17.zarr"
    args = ["prepare-data", "--dataset", "flowers17", "--root",
            str(shared_data / "flowers17"), "--store", str(out), "--resolution", "32",
            "-p", "limit=20", "--chunk", "8"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    info = store_info(out)
    assert info["split_sizes"] == {"train": 20, "val": 20, "test": 20}
    assert info["params"]["limit"] == 20 and info["resolution"] == [32, 32]
    got = read_split(out, "val")
    assert got.masks.shape == (20, 32, 32) and got.has_mask.any()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "up to date" in again.output
    bad = CliRunner().invoke(main, args[:-4] + ["-p", "limt=3"])
    assert bad.exit_code != 0 and "allowed keys: root, resolution, fit, limit" in bad.output
    other = CliRunner().invoke(main, args[:-4] + ["-p", "limit=5"])
    assert other.exit_code != 0 and "--overwrite" in other.output


@pytest.mark.parametrize("name", ["shapes"])
def test_cli_shapes_needs_no_root(tmp_path, name):
    from cli import main

    out = tmp_path / "s.zarr"
    res = CliRunner().invoke(main, ["prepare-data", "--dataset", name, "--store", str(out),
                                    "-p", "n_train=20", "-p", "n_test=10",
                                    "--resolution", "16"])
    assert res.exit_code == 0, res.output
    assert read_split(out, "test").images.shape == (10, 3, 16, 16)
