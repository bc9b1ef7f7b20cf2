"""The synthetic ``shapes`` data set: determinism, exact masks/boxes, colour not the class."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data import DATASETS
from pipeline.data.shapes import CLASSES, mask_boxes


def cfg(**kw):
    return DATASETS.get("shapes")(**{"n_train": 300, "n_test": 100, **kw})


def test_same_seed_same_bytes_any_block_size():
    a = cfg().generate("train", 0, 300)
    b = np.concatenate([blk.images for blk in cfg().iter_blocks("train", 37)])
    assert a.images.shape == (300, 3, 32, 32) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b)
    c = cfg(seed=1).generate("train", 0, 300)
    assert (a.images != c.images).any() and (a.labels != c.labels).any()
    test = cfg().generate("test", 0, 100)
    assert (test.images != a.images[:100]).any()  # splits are distinct draws


def test_masks_and_boxes_are_exact():
    blk = cfg(resolution=24).generate("train", 0, 300)
    assert blk.has_mask.all() and blk.masks.shape == (300, 24, 24)
    area = blk.masks.sum((1, 2))
    assert area.min() >= 15  # every object is visible
    np.testing.assert_array_equal(blk.boxes, mask_boxes(blk.masks))
    for i in range(20):  # box = tight bounds of the mask
        ys, xs = np.nonzero(blk.masks[i])
        assert blk.boxes[i].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    # object pixels are uniform-ish in colour (one colour + shading + noise)
    i = int(np.argmax(area))
    obj = blk.images[i][:, blk.masks[i]].astype(float)
    assert obj.std(1).max() < 40


def test_classes_balanced_and_all_present():
    blk = cfg().generate("train", 0, 300)
    counts = np.bincount(blk.labels, minlength=len(CLASSES))
    assert counts.min() >= 15 and len(cfg().classes()) == 10


def test_mask_box_helper_matches_loops():
    rng = np.random.default_rng(0)
    m = rng.random((5, 9, 7)) > 0.8
    m[:, 4, 3] = True
    for i, box in enumerate(mask_boxes(m)):
        ys, xs = np.nonzero(m[i])
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


def _probe_accuracy(f_tr, y_tr, f_te, y_te) -> float:
    """A small MLP on the given features, trained to convergence; test accuracy."""
    torch.manual_seed(0)
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
    xtr, xte = (torch.tensor((f - mu) / sd, dtype=torch.float32) for f in (f_tr, f_te))
    net = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    ytr = torch.tensor(y_tr)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xtr), ytr).backward()
        opt.step()
    return float((net(xte).argmax(1).numpy() == y_te).mean())


def test_class_not_decodable_from_colour_statistics():
    c = cfg(n_train=1200, n_test=400)
    tr, te = c.generate("train", 0, 1200), c.generate("test", 0, 400)

    def feats(b):  # mean and std colour of the image, and the object's mean colour
        x = b.images.astype(np.float64) / 255
        obj = (x * b.masks[:, None]).sum((2, 3)) / b.masks.sum((1, 2))[:, None]
        return np.concatenate([x.mean((2, 3)), x.std((2, 3)), obj], 1)

    acc = _probe_accuracy(feats(tr), tr.labels, feats(te), te.labels)
    assert acc < 0.25, f"colour statistics give away the class ({acc:.2f}, chance 0.10)"
    # sanity of the probe itself: the same probe does learn from the mask area and box
    geo = lambda b: np.concatenate(
        [b.masks.sum((1, 2))[:, None], b.boxes[:, 2:] - b.boxes[:, :2]], 1).astype(float)
    assert _probe_accuracy(geo(tr), tr.labels, geo(te), te.labels) > 0.2
