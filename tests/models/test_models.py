"""Every registered model: shapes, features/CAM layer, own ReLU modules, inner normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import MODELS, ImageClassifier, build_model

# narrow widths keep every architecture (even WRN-34-10) to a fraction of a second
WIDTH = {"wrn34_10": 1}


def _build(name, num_classes=7, **kw):
    return build_model(name, num_classes, width=WIDTH.get(name, 8), **kw).eval()


@pytest.mark.parametrize("name", MODELS.names())
def test_shapes(name):
    model = _build(name)
    assert isinstance(model, ImageClassifier)
    x = torch.rand(2, 3, 16, 16)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    feats = model.features(x)
    assert feats.ndim == 4 and feats.shape[:2] == (2, model.fc.in_features)
    assert (feats >= 0).all()  # post-ReLU feature map
    # logits are the linear layer on the global average of the features (CAM holds)
    torch.testing.assert_close(model.fc(feats.mean((2, 3))), logits)
    # cam_layer's output is the feature map
    seen = []
    h = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    model(x)
    h.remove()
    torch.testing.assert_close(seen[0], feats)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_relu_is_its_own_module_used_once(name, monkeypatch):
    model = _build(name)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not m.inplace for m in relus)
    calls = {id(m): 0 for m in relus}
    for m in relus:
        m.register_forward_hook(
            lambda mod, i, o: calls.__setitem__(id(mod), calls[id(mod)] + 1)
        )
    functional = []
    real_relu = F.relu

    def counting_relu(*a, **kw):
        functional.append(1)
        return real_relu(*a, **kw)

    monkeypatch.setattr(F, "relu", counting_relu)
    model(torch.rand(2, 3, 16, 16))
    assert set(calls.values()) == {1}, "a ReLU module is shared or unused"
    # nn.ReLU calls F.relu itself: any extra call would be a functional ReLU in forward
    assert len(functional) == len(relus)


@pytest.mark.parametrize("name", MODELS.names())
def test_normalisation_inside_model(name):
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.4, 0.3)
    torch.manual_seed(0)
    model = _build(name, mean=mean, std=std)
    torch.manual_seed(0)
    plain = _build(name, mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.rand(2, 3, 16, 16)
    x_norm = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    # same weights; the first model normalises x itself
    torch.testing.assert_close(model(x), plain(x_norm), rtol=1e-4, atol=1e-5)
    assert "normalize.mean" in model.state_dict()  # travels with the checkpoint
