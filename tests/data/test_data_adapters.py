"""Every adapter on small fixtures written in its real on-disk format (see conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ConfigError, build_method
from pipeline.data import DATASETS, DataError


def blocks(cfg, split, block=3):
    out = list(cfg.iter_blocks(split, block))
    assert all(len(b) <= block for b in out)
    assert sum(len(b) for b in out) == cfg.split_size(split)
    cat = lambda k: None if getattr(out[0], k) is None else np.concatenate(
        [getattr(b, k) for b in out])
    return {k: cat(k) for k in ("images", "labels", "masks", "has_mask", "boxes")}


@pytest.mark.parametrize("official", [True, False])
def test_cifar10_both_file_layouts(tmp_path, official, cifar_writer):
    folder = cifar_writer(tmp_path, official)
    cfg = build_method(DATASETS, "cifar10", {"root": str(tmp_path)}, "dataset")
    assert cfg.classes() == [f"c{i}" for i in range(10)]
    assert cfg.splits() == ["train", "test"]
    assert cfg.split_size("train") == 24 and cfg.split_size("test") == (12 if official else 24)
    got = blocks(cfg, "train", 5)
    import pickle

    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(got["images"][:12].reshape(12, -1), first[b"data"])
    np.testing.assert_array_equal(got["labels"][:12], first[b"labels"])
    assert got["masks"] is None and got["boxes"] is None
    # the batches folder itself works as root too
    assert DATASETS.get("cifar10")(root=str(folder)).split_size("train") == 24


def test_cifar100_fine_coarse_resize_limit(tmp_path, cifar_writer):
    cifar_writer(tmp_path, True, n=10, fine=100)
    cfg = DATASETS.get("cifar100")(root=str(tmp_path), resolution=16, limit=4)
    assert len(cfg.classes()) == 100 and cfg.split_size("test") == 4
    assert blocks(cfg, "test")["images"].shape == (4, 3, 16, 16)
    coarse = DATASETS.get("cifar100")(root=str(tmp_path), labels="coarse")
    assert coarse.classes() == ["all"] and set(blocks(coarse, "train")["labels"]) == {0}


def test_cifar_errors_name_the_file(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, True)
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_2"):
        DATASETS.get("cifar10")(root=str(tmp_path)).split_size("train")
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        DATASETS.get("cifar10")(root=str(tmp_path)).split_size("test")


def test_cifar_refuses_arbitrary_pickle_globals(tmp_path, cifar_writer):
    folder = cifar_writer(tmp_path, True)
    import collections
    import pickle

    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(collections.OrderedDict(a=1), f)
    with pytest.raises(DataError, match="not allowed"):
        DATASETS.get("cifar10")(root=str(tmp_path)).split_size("train")


def test_tinyimagenet(tiny_tin):
    cfg = DATASETS.get("tinyimagenet")(root=str(tiny_tin), resolution=10)
    assert cfg.classes() == ["goldfish", "bucket"] and cfg.splits() == ["train", "val"]
    tr, va = blocks(cfg, "train"), blocks(cfg, "val")
    assert tr["images"].shape == (6, 3, 10, 10) and va["labels"].tolist() == [0, 0, 1, 1]
    # inclusive (1, 2, 11, 19) on 20 px -> half scale: (0, 1, 5, 9)
    assert tr["boxes"][1].tolist() == [0, 1, 5, 9]
    assert va["boxes"][0].tolist() == [0, 0, 4, 4]


def test_tinyimagenet_errors(tiny_tin):
    d = tiny_tin / "tiny-imagenet-200"
    box_file = d / "train" / "n002" / "n002_boxes.txt"
    box_file.write_text("n002_0.JPEG\t0\t0\t40\t10\n")
    cfg = DATASETS.get("tinyimagenet")(root=str(tiny_tin))
    with pytest.raises(DataError, match="n002_boxes.txt line 1"):
        list(cfg.iter_blocks("train", 8))
    (d / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt"):
        DATASETS.get("tinyimagenet")(root=str(tiny_tin)).splits()
    box_file.unlink()
    with pytest.raises(DataError, match="n002_boxes.txt"):
        DATASETS.get("tinyimagenet")(root=str(tiny_tin)).splits()


def test_cub_boxes_masks_greyscale(tiny_cub):
    cfg = DATASETS.get("cub200")(root=str(tiny_cub), resolution=10)
    assert cfg.classes() == ["003.Sooty_Albatross", "007.Parakeet_Auklet"]
    assert cfg.has_masks() and cfg.has_boxes()
    tr = blocks(cfg, "train")
    assert tr["labels"].tolist() == [0, 0, 1, 1] and tr["images"].shape == (4, 3, 10, 10)
    # image 2 is greyscale: converted to RGB, all channels equal
    assert (tr["images"][1, 0] == tr["images"][1, 1]).all()
    # box x 3..18.5 of 30 px, y 2..12 of 20 px -> at 10 px: (1, 1, 6, 5) inclusive
    assert tr["boxes"][0].tolist() == [1, 1, 6, 5]
    te = blocks(cfg, "test")
    assert te["has_mask"].tolist() == [True, False, True, False]
    assert not te["masks"][1].any()
    # the segmentation covers x 3..17, y 2..11 of 30x20 -> rows 1..5, cols 1..5 at 10 px
    ys, xs = np.nonzero(tr["masks"][0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (1, 5, 1, 5)


def test_cub_crop_fit(tiny_cub):
    cfg = DATASETS.get("cub200")(root=str(tiny_cub), resolution=10, fit="crop")
    tr = blocks(cfg, "train")
    # 30x20 -> 15x10, crop x 2..12; box x 1.5..9.25 -> 0..7 after the shift
    assert tr["boxes"][0].tolist() == [0, 1, 7, 5]
    assert tr["masks"].shape == (4, 10, 10)


def test_cub_errors(tiny_cub):
    d = tiny_cub / "CUB_200_2011"
    seg = d / "segmentations" / "003.Sooty_Albatross" / "img_0.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(seg)
    with pytest.raises(DataError, match="img_0.png.*5x5"):
        list(DATASETS.get("cub200")(root=str(tiny_cub)).iter_blocks("train", 8))
    list(DATASETS.get("cub200")(root=str(tiny_cub)).iter_blocks("test", 1))  # untouched
    seg.unlink()
    (d / "images" / "007.Parakeet_Auklet" / "img_1.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError, match="img_1.jpg"):
        list(DATASETS.get("cub200")(root=str(tiny_cub)).iter_blocks("train", 8))
    with open(d / "classes.txt", "a") as f:
        f.write("9 009.Empty_Bird\n")
    with pytest.raises(DataError, match="009.Empty_Bird.*classes.txt"):
        DATASETS.get("cub200")(root=str(tiny_cub)).splits()
    (d / "train_test_split.txt").unlink()
    with pytest.raises(DataError, match="train_test_split.txt"):
        DATASETS.get("cub200")(root=str(tiny_cub)).splits()


def test_flowers17(tiny_flowers):
    cfg = DATASETS.get("flowers17")(root=str(tiny_flowers), resolution=12)
    assert cfg.classes() == ["Daffodil", "Snowdrop"]
    assert [cfg.split_size(s) for s in ("train", "val", "test")] == [4, 2, 2]
    tr, va = blocks(cfg, "train"), blocks(cfg, "val")
    assert tr["has_mask"].all() and not va["has_mask"].any() and not va["masks"].any()
    # label 1 covers rows 4..13, cols 6..19 of 24 -> rows 2..6, cols 3..9 at 12 px
    ys, xs = np.nonzero(tr["masks"][0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2, 6, 3, 9)
    assert tr["boxes"] is None
    # a subset without any masked image keeps the data set's layout (mask arrays present)
    val_only = DATASETS.get("flowers17")(root=str(tiny_flowers), limit=1, seed=0)
    assert val_only.has_masks() and blocks(val_only, "val")["masks"] is not None


def test_flowers17_errors(tiny_flowers, image_writer):
    image_writer(tiny_flowers / "trimaps" / "image_0001.png", 10, 10, 0, "L")
    with pytest.raises(DataError, match="image_0001.png"):
        list(DATASETS.get("flowers17")(root=str(tiny_flowers)).iter_blocks("train", 4))
    image_writer(tiny_flowers / "trimaps" / "image_0001.png", 24, 24, 0, "L")
    (tiny_flowers / "jpg" / "image_0004.jpg").unlink()
    with pytest.raises(DataError, match="image_0004.jpg"):
        list(DATASETS.get("flowers17")(root=str(tiny_flowers)).iter_blocks("train", 4))


def test_imagefolder(tiny_folder):
    cfg = DATASETS.get("imagefolder")(root=str(tiny_folder), resolution=6)
    assert cfg.classes() == ["cat", "dog"] and cfg.splits() == ["test", "train"]
    tr = blocks(cfg, "train")
    assert tr["labels"].tolist() == [0, 0, 0, 1, 1, 1]
    assert tr["has_mask"].tolist() == [True] + [False] * 5 and tr["masks"][0].any()
    assert blocks(cfg, "test")["has_mask"].tolist() == [False, True]


def test_imagefolder_errors(tiny_folder):
    (tiny_folder / "train" / "bird").mkdir()
    with pytest.raises(DataError, match="bird"):
        DATASETS.get("imagefolder")(root=str(tiny_folder)).splits()
    (tiny_folder / "train" / "bird").rmdir()
    (tiny_folder / "test" / "fish").mkdir()
    with pytest.raises(DataError, match="fish"):
        DATASETS.get("imagefolder")(root=str(tiny_folder)).splits()


def test_config_errors_list_allowed_keys(tmp_path):
    with pytest.raises(ConfigError, match="allowed keys: root, resolution, fit"):
        build_method(DATASETS, "cub200", {"root": "x", "resolutoin": 3}, "dataset")
    with pytest.raises(ConfigError, match="allowed values: resize, crop"):
        build_method(DATASETS, "flowers17", {"root": "x", "fit": "pad"}, "dataset")
    with pytest.raises(ConfigError, match="resolution"):
        build_method(DATASETS, "imagefolder", {"root": "x", "resolution": 1}, "dataset")
