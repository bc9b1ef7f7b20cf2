"""Small data sets written in the real on-disk formats (tmp_path), for the adapter tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def save_rgb(path: Path, w: int, h: int, seed: int, mode: str = "RGB") -> None:
    """A random image of size ``w x h`` (``mode`` RGB or L) at ``path``."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)


def write_cifar(root: Path, official: bool, n: int = 12, fine: int = 0) -> Path:
    """CIFAR-10 (``fine=0``) or CIFAR-100 (``fine`` = number of classes) batch folder."""
    rng = np.random.default_rng(0)
    k = fine or 10
    folder = root / ("cifar-100-python" if fine else "cifar-10-batches-py")
    folder.mkdir(parents=True)

    def dump(name, labels_key, extra=None):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             labels_key: [int(v) for v in rng.integers(0, k, n)], b"batch_label": b"x"}
        d.update(extra or {})
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)

    if fine:
        for name in ("train", "test"):
            dump(name, b"fine_labels", {b"coarse_labels": [0] * n})
        with open(folder / "meta", "wb") as f:
            pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(k)],
                         b"coarse_label_names": [b"all"]}, f, protocol=2)
        return folder
    names = (["data_batch_1", "data_batch_2", "test_batch"] if official
             else ["data_batch_1", "data_batch_2", "test_batch_1", "test_batch_2"])
    for name in names:
        dump(name, b"labels")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    return folder


@pytest.fixture
def tiny_tin(tmp_path) -> Path:
    """Tiny ImageNet tree: 2 classes x 3 train images, 2 val images each, 20x20 JPEGs."""
    d = tmp_path / "tiny-imagenet-200"
    wnids = ["n001", "n002"]
    (d).mkdir()
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (d / "words.txt").write_text("n001\tgoldfish, carp\nn002\tbucket\n")
    val = []
    for c, w in enumerate(wnids):
        lines = []
        for i in range(3):
            save_rgb(d / "train" / w / "images" / f"{w}_{i}.JPEG", 20, 20, 10 * c + i)
            lines.append(f"{w}_{i}.JPEG\t{i}\t{2 * i}\t{10 + i}\t19")
        (d / "train" / w / f"{w}_boxes.txt").write_text("\n".join(lines) + "\n")
        for i in range(2):
            name = f"val_{2 * c + i}.JPEG"
            save_rgb(d / "val" / "images" / name, 20, 20, 100 + 2 * c + i)
            val.append(f"{name}\t{w}\t0\t0\t9\t9")
    val.append("val_99.JPEG\tn999\t0\t0\t5\t5")  # another class: skipped
    (d / "val" / "val_annotations.txt").write_text("\n".join(val) + "\n")
    return tmp_path


@pytest.fixture
def tiny_cub(tmp_path) -> Path:
    """CUB tree: classes 3 and 7, 4 images each (one greyscale), segmentations for some."""
    d = tmp_path / "CUB_200_2011"
    classes = {3: "003.Sooty_Albatross", 7: "007.Parakeet_Auklet"}
    (d / "images").mkdir(parents=True)
    (d / "classes.txt").write_text("".join(f"{k} {v}\n" for k, v in classes.items()))
    rows = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": [],
            "bounding_boxes.txt": []}
    img_id = 0
    for cid, cname in classes.items():
        for i in range(4):
            img_id += 1
            rel = f"{cname}/img_{i}.jpg"
            save_rgb(d / "images" / rel, 30, 20, img_id, "L" if img_id == 2 else "RGB")
            rows["images.txt"].append(f"{img_id} {rel}")
            rows["image_class_labels.txt"].append(f"{img_id} {cid}")
            rows["train_test_split.txt"].append(f"{img_id} {int(i < 2)}")
            rows["bounding_boxes.txt"].append(f"{img_id} 3.0 2.0 15.5 10.0")
            if i != 3:
                seg = np.zeros((20, 30), np.uint8)
                seg[2:12, 3:18] = 255
                seg[0, 0] = 100  # soft value below the threshold
                (d / "segmentations" / cname).mkdir(parents=True, exist_ok=True)
                Image.fromarray(seg).save(d / "segmentations" / cname / f"img_{i}.png")
    for name, lines in rows.items():
        (d / name).write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.fixture
def tiny_flowers(tmp_path) -> Path:
    """Flowers-17 layout: 2 classes x 4 images (train, val, test, train), 24x24."""
    rows = ["filename,class_index,class_name,has_trimap,split"]
    splits = ["train", "val", "test", "train"]
    for c, name in enumerate(["Daffodil", "Snowdrop"]):
        for i in range(4):
            fn = f"image_{4 * c + i + 1:04d}.jpg"
            save_rgb(tmp_path / "jpg" / fn, 24, 24, 4 * c + i)
            has = int(i != 1)
            if has:
                lab = np.full((24, 24), 3, np.uint8)
                lab[4:14, 6:20] = 1
                lab[0, :] = 2
                im = Image.fromarray(lab, "P")
                im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] * 3)
                (tmp_path / "trimaps").mkdir(exist_ok=True)
                im.save(tmp_path / "trimaps" / fn.replace(".jpg", ".png"))
            rows.append(f"{fn},{c},{name},{has},{splits[i]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """ImageFolder: train/{cat,dog} x 3, test/{cat,dog} x 1; masks beside two images."""
    for split, n in (("train", 3), ("test", 1)):
        for c, cls in enumerate(["cat", "dog"]):
            for i in range(n):
                ext = ".png" if i % 2 else ".jpg"
                save_rgb(tmp_path / split / cls / f"{cls}{i}{ext}", 18, 12, 7 * c + i)
    m = np.zeros((12, 18), np.uint8)
    m[3:9, 4:10] = 200
    Image.fromarray(m).save(tmp_path / "train" / "cat" / "cat0.mask.png")
    Image.fromarray(m).save(tmp_path / "test" / "dog" / "dog0.mask.png")
    return tmp_path


@pytest.fixture
def image_writer():
    """:func:`save_rgb`, for tests that write or damage single images."""
    return save_rgb


@pytest.fixture
def cifar_writer():
    """:func:`write_cifar`."""
    return write_cifar
