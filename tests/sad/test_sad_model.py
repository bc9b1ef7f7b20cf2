"""The SAD inference wrapper: no_grad inference, exact vs finite differences, BPDA, r=0."""

from __future__ import annotations

import pytest
import torch

from pipeline.config.sad import NORMALISATIONS, SadConfig
from pipeline.sad.model import (
    SADModel,
    predicted_class_gradient,
    spec_from_meta,
    wrapper_block,
)
from pipeline.saliency.transforms import normalise


@pytest.mark.parametrize("how", ["maxabs", "minmax", "sign", "raw"])
def test_sad_uses_the_one_per_image_normalisation(how):
    from pipeline.saliency import transforms

    assert NORMALISATIONS == transforms.NORMALISATIONS
    attr = torch.randn(3, 3, 5, 5)
    attr[1] = 0.7  # a constant map becomes 0 (maxabs: 1), never NaN
    out = normalise(attr, how)
    assert torch.isfinite(out).all() and out.shape == attr.shape
    if how in ("maxabs", "minmax"):
        assert torch.all(out[1] == (1.0 if how == "maxabs" else 0.0))
    # dtype-preserving (the float64 gradient check runs through it), any batch size
    assert normalise(attr.double(), how).dtype == torch.float64
    assert normalise(attr[:0], how).shape == (0, 3, 5, 5)


def test_predicted_class_gradient_equals_registry_grad(bn_model):
    from pipeline.saliency import SALIENCY

    x = torch.rand(4, 3, 16, 16)
    pred = bn_model(x).argmax(1)
    ref = SALIENCY.get("grad")().attribute(bn_model, x, pred)
    torch.testing.assert_close(predicted_class_gradient(bn_model, x, False), ref)


def test_forward_matches_definition_and_works_under_no_grad(bn_model):
    x = torch.rand(4, 3, 16, 16)
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    s = predicted_class_gradient(bn_model, x, False)
    manual = bn_model((x + 0.8 * s / s.flatten(1).abs().amax(1)[:, None, None, None])
                      .clamp(0, 1))
    with torch.no_grad():
        out = sad(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, manual)
    assert all(p.grad is None for p in bn_model.parameters())
    assert not sad.training and not bn_model.training
    # the saliency step changes the prediction input: SAD differs from the network
    assert not torch.allclose(out, bn_model(x))


def test_exact_gradient_matches_finite_differences(smooth_net):
    # ratio small and x inside [0.3, 0.7] so that clip(x + r * S) never clips
    x = (0.3 + 0.4 * torch.rand(2, 3, 4, 4, dtype=torch.float64)).requires_grad_(True)
    sad = SADModel(smooth_net, SadConfig(ratio=0.1, grad_mode="exact")).eval()
    assert torch.autograd.gradcheck(sad, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_bpda_differs_from_exact_and_treats_saliency_as_constant(smooth_net):
    x = 0.3 + 0.4 * torch.rand(2, 3, 4, 4, dtype=torch.float64)
    w = torch.randn(2, 3, dtype=torch.float64)

    def grad(mode):
        xi = x.clone().requires_grad_(True)
        out = SADModel(smooth_net, SadConfig(ratio=0.1, grad_mode=mode))(xi)
        return torch.autograd.grad((out * w).sum(), xi)[0]

    exact, bpda = grad("exact"), grad("bpda")
    s = normalise(predicted_class_gradient(smooth_net, x, False), "maxabs")
    xi = x.clone().requires_grad_(True)
    ref = torch.autograd.grad((smooth_net((xi + 0.1 * s).clamp(0, 1)) * w).sum(), xi)[0]
    torch.testing.assert_close(bpda, ref)
    assert (exact - bpda).abs().max() > 1e-3 * exact.abs().max()
    # same forward in both modes
    torch.testing.assert_close(SADModel(smooth_net, SadConfig(ratio=0.1, grad_mode="bpda"))(x),
                               SADModel(smooth_net, SadConfig(ratio=0.1))(x))


def test_ratio_zero_and_bn_only_equal_the_network(bn_model):
    x = torch.rand(4, 3, 16, 16)
    for spec in (SadConfig(ratio=0.0), SadConfig(ratio=0.8, add_saliency=False)):
        sad = SADModel(bn_model, spec)
        assert torch.equal(sad(x), bn_model(x))


def test_with_grad_mode_shares_the_network(bn_model):
    sad = SADModel(bn_model, SadConfig())
    bpda = sad.with_grad_mode("bpda")
    assert bpda.network is bn_model and bpda.spec.grad_mode == "bpda"
    assert sad.spec.grad_mode == "exact"


def test_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match="grad_mode"):
        SadConfig(grad_mode="magic")
    with pytest.raises(ValueError, match="normalise"):
        SadConfig(normalise="l2")
    with pytest.raises(ValueError, match="exact.*grad"):
        SadConfig(saliency="gbp", grad_mode="exact")
    with pytest.raises(KeyError, match="saliency"):  # the registry is checked when built
        SADModel(torch.nn.Identity(), SadConfig(saliency="nope"))


def test_grad_mode_defaults_to_the_saliency_policy():
    assert SadConfig().grad_mode == "exact"
    assert SadConfig(saliency="gbp").grad_mode == "bpda"
    assert SadConfig(saliency="gbp", ratio=0.0, grad_mode="exact").grad_mode == "exact"


def test_wrapper_block_keys_and_round_trip():
    cfg = SadConfig(ratio=0.6, saliency="gbp", normalise="minmax", batch_size=4, seed=3)
    block = wrapper_block(cfg)
    assert list(block) == ["name", "ratio", "saliency", "saliency_params", "normalise",
                           "grad_mode", "add_saliency"]
    assert block == {"name": "sad", "ratio": 0.6, "saliency": "gbp", "saliency_params": {},
                     "normalise": "minmax", "grad_mode": "bpda", "add_saliency": True}
    back = spec_from_meta(block)
    assert isinstance(back, SadConfig) and wrapper_block(back) == block


def test_other_saliency_methods_run_in_bpda_mode(bn_model):
    x = torch.rand(2, 3, 16, 16)
    sad = SADModel(bn_model, SadConfig(saliency="gbp", grad_mode="bpda"))
    with torch.no_grad():
        out = sad(x)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    xi = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(sad(xi).sum(), xi)
    assert g.abs().sum() > 0


def test_train_mode_never_reaches_the_network(bn_model):
    sad = SADModel(bn_model, SadConfig()).train()
    before = {k: v.clone() for k, v in bn_model.state_dict().items()}
    sad(torch.rand(4, 3, 16, 16))
    assert sad.training and not bn_model.training
    assert all(torch.equal(v, bn_model.state_dict()[k]) for k, v in before.items())


def test_bpda_is_not_exact_on_a_relu_network(bn_model):
    # A piecewise-linear network's input gradient is locally constant (zero Hessian a.e.),
    # so the saliency term has zero derivative: exact gradients equal those with only the
    # saliency term detached, and the clip zeroes the gradient of clipped pixels. BPDA
    # replaces the whole transformation (saliency step and clip) by the identity: the
    # gradient is the network's at T(x), clipped pixels included.
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64) * 0.3 + 0.7
    net = bn_model.double()

    def grad(mode):
        xi = x.clone().requires_grad_(True)
        out = SADModel(net, SadConfig(ratio=0.8, grad_mode=mode))(xi)
        return torch.autograd.grad(out.logsumexp(1).sum(), xi)[0]

    sad = SADModel(net, SadConfig(ratio=0.8))
    tx = sad.purify(x).detach().requires_grad_(True)
    at_tx = torch.autograd.grad(net(tx).logsumexp(1).sum(), tx)[0]
    torch.testing.assert_close(grad("bpda"), at_tx)
    clipped = (tx.detach() == 1) | (tx.detach() == 0)
    assert clipped.any() and (grad("exact")[clipped] == 0).all()
    assert (grad("bpda")[clipped] != 0).any()
