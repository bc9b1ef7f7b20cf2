"""SAD calibration: only BN running statistics move, to those of the processed data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.config.sad import SadConfig
from pipeline.sad.calibrate import (
    batchnorm_layers,
    calibrate,
    recalibrate_bn,
)
from pipeline.sad.model import SADModel

STATS = ("running_mean", "running_var", "num_batches_tracked")


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 16, 16)).astype(np.uint8),
            rng.integers(0, 4, n).astype(np.int64))


def _split(state):
    stats = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] in STATS}
    weights = {k: v for k, v in state.items() if k not in stats}
    return weights, stats


def test_weights_unchanged_bn_statistics_changed(bn_model):
    before = copy.deepcopy(bn_model.state_dict())
    images, labels = _data()
    cfg = SadConfig(attack_params={"steps": 2}, batch_size=8)
    network, used = calibrate(bn_model, images, labels, cfg)
    assert used == 3
    w0, s0 = _split(before)
    w1, s1 = _split(network.state_dict())
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    changed = [k for k in s0 if "running" in k and not torch.allclose(s0[k], s1[k])]
    assert len(changed) == 2 * len(batchnorm_layers(bn_model))
    # the original model is untouched; BN momentum restored; eval mode
    assert all(torch.equal(v, bn_model.state_dict()[k]) for k, v in before.items())
    assert all(m.momentum == 0.1 for m in batchnorm_layers(network))
    assert not network.training
    assert all(p.grad is None for p in network.parameters())


def test_statistics_are_the_processed_batch_statistics(bn_model):
    # PGD with 0 steps and no random start returns x: the processed input is then
    # clip(x + r * normalise(S0(x))) under the original model, and after one batch the
    # first BN layer's running mean/var are the batch mean/unbiased var of conv1(norm(x_s)).
    x = torch.rand(8, 3, 16, 16)
    y = torch.zeros(8, dtype=torch.long)
    from pipeline.attacks import ATTACKS

    attack = ATTACKS.get("pgd")(steps=0, random_start=False)
    spec = SadConfig(ratio=0.5)
    network = copy.deepcopy(bn_model)
    original = copy.deepcopy(bn_model)
    with torch.no_grad():
        x_s = SADModel(original, spec).purify(x)
    recalibrate_bn(network, [(x, y, torch.arange(8))], original, attack, spec)
    with torch.no_grad():
        h = bn_model.body[0](bn_model.normalize(x_s))
    bn = network.body[1]
    torch.testing.assert_close(bn.running_mean, h.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn.running_var, h.var(dim=(0, 2, 3), unbiased=True))
    assert int(bn.num_batches_tracked) == 1


def test_cumulative_average_over_batches(bn_model):
    from pipeline.attacks import ATTACKS

    attack = ATTACKS.get("pgd")(steps=0, random_start=False)
    spec = SadConfig(ratio=0.0)
    xs = [torch.rand(8, 3, 16, 16) for _ in range(3)]
    y = torch.zeros(8, dtype=torch.long)
    network = copy.deepcopy(bn_model)
    recalibrate_bn(network, [(x, y, torch.arange(8)) for x in xs], bn_model, attack, spec)
    with torch.no_grad():
        means = [bn_model.body[0](bn_model.normalize(x)).mean(dim=(0, 2, 3)) for x in xs]
    torch.testing.assert_close(network.body[1].running_mean, torch.stack(means).mean(0))


def test_the_seed_is_the_calibration_seed(bn_model):
    # the batch order and PGD's random starts follow the seed: a sweep's seed<k> jobs
    # are k different calibrations (they all used seed 0 before the seed was passed)
    images, labels = _data()

    def stats(seed):
        cfg = SadConfig(attack_params={"steps": 1}, batch_size=8, batches=2, seed=seed)
        return _split(calibrate(bn_model, images, labels, cfg)[0].state_dict())[1]

    s0, s0_again, s1 = stats(0), stats(0), stats(1)
    assert all(torch.equal(s0[k], s0_again[k]) for k in s0)  # deterministic per seed
    running = [k for k in s0 if "running" in k]
    assert running and all(not torch.allclose(s0[k], s1[k]) for k in running)


def test_saliency_only_keeps_the_model_and_r0_equals_base(bn_model):
    images, labels = _data()
    cfg = SadConfig(ratio=0.0, bn_update=False)
    network, used = calibrate(bn_model, images, labels, cfg)
    assert used == 0 and cfg.variant == "sad_saliency_only"
    assert all(torch.equal(v, bn_model.state_dict()[k])
               for k, v in network.state_dict().items())
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(SADModel(network, cfg)(x), bn_model(x))


def test_bn_only_variant_adds_no_saliency(bn_model):
    images, labels = _data()
    cfg = SadConfig(add_saliency=False, attack_params={"steps": 1}, batch_size=12)
    network, used = calibrate(bn_model, images, labels, cfg)
    assert cfg.variant == "sad_bn_only" and used == 2
    x = torch.rand(4, 3, 16, 16)
    sad = SADModel(network, cfg)
    assert torch.equal(sad(x), network(x))
    assert not torch.allclose(network(x), bn_model(x))


def test_config_errors():
    with pytest.raises(ValueError, match="neither"):
        SadConfig(bn_update=False, add_saliency=False)
    with pytest.raises(ValueError, match="batch"):
        SadConfig(batch_size=0)
    with pytest.raises(ValueError, match="ratio"):
        SadConfig(ratio=-1)


def test_unknown_attack_is_a_config_error_naming_it(bn_model):
    from pipeline.config import ConfigError

    images, labels = _data()
    with pytest.raises(ConfigError, match="sad.attack: unknown attack 'nope'"):
        calibrate(bn_model, images, labels, SadConfig(attack="nope", batch_size=8))


def test_model_without_batchnorm_is_refused(linear_model):
    from pipeline.attacks import ATTACKS

    with pytest.raises(ValueError, match="no BatchNorm"):
        recalibrate_bn(linear_model, [], linear_model, ATTACKS.get("pgd")(), SadConfig())
