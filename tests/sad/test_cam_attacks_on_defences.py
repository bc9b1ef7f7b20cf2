"""The interpretation attacks (aai, isa) on a wrapped defence (SAD) in every module an
evaluation view can hand them, the defence's CAM in closed form, and AAI as its reference
(AkhilanB/Proper-Interpretability, eval.py ``aai_topk``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.cam_maps import cam_maps, kendall_tau, logits_and_cam_maps
from pipeline.config.sad import SadConfig
from pipeline.core.seeds import derive_seed
from pipeline.models.base import ImageClassifier, Normalize
from pipeline.sad.model import SADModel

RATIO = 0.8


@pytest.fixture
def network(bn_model) -> nn.Module:
    """small_cnn width 8 (a 4 x 4 CAM on 16 x 16 images), fc scaled so predictions vary:
    the SAD tests' ``bn_model``."""
    return bn_model


def defence(network: nn.Module, saliency: str = "grad") -> SADModel:
    """The evaluated defence (grad mode from the saliency: exact for grad, else bpda)."""
    return SADModel(network, SadConfig(ratio=RATIO, saliency=saliency)).eval()


def attacked_modules(network: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """``(name, module an attack receives, defence the evaluation scores)``: the SAD model
    in both gradient modes and the inner network alone (the modules the views hand out
    before and after the views rewrite), and whatever pipeline/evaluate/views.py's
    ``view_model`` returns for every view it offers, for the grad and gbp saliencies."""
    from pipeline.evaluate.views import available_views, view_model

    sad, gbp = defence(network), defence(network, "gbp")
    out = [("sad_exact", sad, sad), ("sad_bpda", sad.with_grad_mode("bpda"), sad),
           ("inner", network, sad), ("sad_gbp_bpda", gbp, gbp)]
    for name, model in (("grad", sad), ("gbp", gbp)):
        out += [(f"view_{name}_{v}", view_model(model, v), model)
                for v in available_views(model)]
    return out


def in_range(t: torch.Tensor) -> bool:
    t = t[torch.isfinite(t)]
    return bool(((t >= -1 - 1e-9) & (t <= 1 + 1e-9)).all())


def test_aai_runs_on_every_module_a_view_hands_it(network):
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    eps = 8 / 255
    aai = ATTACKS.get("aai")(eps=eps, steps=3)
    for name, module, model in attacked_modules(network):
        x_adv = aai(module, x, y, index=torch.arange(4), seed=1)
        assert (x_adv - x).abs().max() <= eps + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1 and not torch.equal(x_adv, x), name
        tau = aai.example_metrics(model, x, x_adv, y)["kendall_tau"]
        assert tau.shape == (4,) and in_range(tau), name


def test_isa_runs_on_every_module_a_view_hands_it(network):
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    eps = 0.25
    isa = ATTACKS.get("isa")(eps=eps, steps=3, bisection=2)
    for name, module, model in attacked_modules(network):
        x_adv = isa(module, x, y)
        assert (x_adv - x).abs().max() <= eps + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
        m = isa.example_metrics(model, x, x_adv, y)
        assert set(m) == {"isa_success", "discrepancy_l1", "kendall_tau_true",
                          "kendall_tau_target"}, name
        ok = m["isa_success"] > 0
        assert ((m["isa_success"] == 0) | ok).all(), name
        assert (m["discrepancy_l1"][ok] >= 0).all(), name
        assert torch.isnan(m["discrepancy_l1"][~ok]).all(), name
        assert in_range(m["kendall_tau_true"]) and in_range(m["kendall_tau_target"]), name


def closed_form_purify(net: nn.Module, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """``clip(x + r * s / max|s|, 0, 1)``, s the predicted logit's input gradient."""
    xi = x if create_graph else x.detach().requires_grad_(True)
    logits = net(xi)
    top = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
    (s,) = torch.autograd.grad(top, xi, create_graph=create_graph)
    s = s / s.flatten(1).abs().amax(1)[:, None, None, None]
    return (x + RATIO * (s if create_graph else s.detach())).clamp(0, 1)


def closed_form_cam(net: nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    feats = net.body(net.normalize(z))
    return torch.einsum("nk,nkhw->nhw", net.fc.weight[c], feats) / feats[0, 0].numel()


def test_defence_cam_is_the_inner_cam_of_purify(network):
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    sad = SADModel(network, SadConfig(ratio=RATIO))
    with torch.no_grad():
        got = cam_maps(sad, x, y)
    with torch.enable_grad():
        want = closed_form_cam(network, closed_form_purify(network, x, False), y)
    torch.testing.assert_close(got, want.detach())
    assert not torch.allclose(got, cam_maps(network, x, y))  # the defence matters
    # completeness: the CAM sums to the defence's logit minus the bias, from one pass
    logits, (cam,) = logits_and_cam_maps(sad, x, y)
    torch.testing.assert_close(logits, sad(x).detach())
    torch.testing.assert_close(cam.flatten(1).sum(1) + network.fc.bias[y],
                               logits.gather(1, y[:, None]).squeeze(1))


class SmoothCNN(ImageClassifier):
    """An ImageClassifier with softplus activations: its saliency is smooth in x, so the
    exact (double-backprop) CAM gradient differs from the BPDA one."""

    def __init__(self):
        super().__init__()
        self.normalize = Normalize((0.5,) * 3, (0.25,) * 3)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(),
                                  nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Softplus())
        self.fc = nn.Linear(6, 3)


def test_defence_cam_gradient_follows_the_grad_mode():
    torch.manual_seed(2)
    net = SmoothCNN().double().eval()
    x0 = 0.3 + 0.4 * torch.rand(2, 3, 8, 8, dtype=torch.float64)
    c = torch.tensor([0, 2])
    sad = SADModel(net, SadConfig(ratio=RATIO, grad_mode="exact"))

    def grad(fn):
        x = x0.clone().requires_grad_(True)
        return torch.autograd.grad(fn(x).sum(), x)[0]

    bpda_sad = sad.with_grad_mode("bpda")
    exact = grad(lambda x: cam_maps(sad, x, c))
    bpda = grad(lambda x: cam_maps(bpda_sad, x, c))
    # exact: double backprop through the saliency step, in closed form
    torch.testing.assert_close(
        exact, grad(lambda x: closed_form_cam(net, closed_form_purify(net, x, True), c)))
    # bpda: the inner CAM at purify(x), back through purify's own (BPDA) backward
    torch.testing.assert_close(
        bpda, grad(lambda x: closed_form_cam(net, bpda_sad.purify(x), c)))
    assert (exact - bpda).abs().max() > 1e-3 * exact.abs().max()


def test_aai_defaults_are_the_reference():
    aai = ATTACKS.get("aai")()
    assert aai.steps == 200 and aai.random_start is True
    assert aai.step_size == 0.01  # 0.01 on the reference's [0, 1] inputs
    assert aai.eps == 8 / 255 and aai.cam_size is None
    assert round(aai.topk * 8 * 8) == 8  # k = 8 of the reference's 8 x 8 CIFAR CAM


def test_aai_equals_a_transcription_of_aai_topk(network):
    """Random start U(-eps, eps) clipped, then sign steps of 0.01 on -sum of the
    true-class CAM at the clean top-k positions, clipped to the ball and [0, 1]."""
    x, y = torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 2])
    eps, steps, seed, index = 8 / 255, 4, 7, torch.tensor([5, 6, 7])
    got = ATTACKS.get("aai")(eps=eps, steps=steps, topk=0.25)(network, x, y, index=index,
                                                               seed=seed)
    u = torch.stack([torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(
        derive_seed(seed, int(i)))) for i in index])
    with torch.no_grad():
        top = cam_maps(network, x, y).flatten(1).topk(4, dim=1).indices  # 0.25 of 16
    x_adv = (x + (-eps + 2 * eps * u)).clamp(0, 1)
    for _ in range(steps):
        xa = x_adv.clone().requires_grad_(True)
        loss = -cam_maps(network, xa, y).flatten(1).gather(1, top).sum(1).mean()
        (g,) = torch.autograd.grad(loss, xa)
        x_adv = torch.minimum(torch.maximum(x_adv + 0.01 * g.sign(), x - eps), x + eps)
        x_adv = x_adv.clamp(0, 1)
    torch.testing.assert_close(got, x_adv, atol=1e-6, rtol=0)


def test_aai_tau_is_one_without_a_budget(network):
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    aai = ATTACKS.get("aai")(eps=0.0, steps=3)
    assert aai.random_start
    for name, module, model in attacked_modules(network):
        x_adv = aai(module, x, y, index=torch.arange(4))
        assert torch.equal(x_adv, x), name
        tau = aai.example_metrics(model, x, x_adv, y)["kendall_tau"]
        assert torch.equal(tau, torch.ones(4, dtype=tau.dtype)), name


def test_aai_tau_excludes_changed_predictions(network):
    x = torch.rand(8, 3, 16, 16) * torch.linspace(0.1, 1, 8)[:, None, None, None]
    with torch.no_grad():
        pred = network(x).argmax(1)
    assert pred.unique().numel() > 1
    x_adv = x.roll(1, 0)  # each image replaced by its neighbour
    changed = pred != pred.roll(1, 0)
    tau = ATTACKS.get("aai")().example_metrics(network, x, x_adv, pred)["kendall_tau"]
    assert torch.isnan(tau[changed]).all() and torch.isfinite(tau[~changed]).all()
    with torch.no_grad():
        want = kendall_tau(cam_maps(network, x, pred), cam_maps(network, x_adv, pred))
    torch.testing.assert_close(tau[~changed], want[~changed])


def test_aai_cam_size_resizes_the_measured_map(network):
    x, y = torch.rand(2, 3, 16, 16), torch.arange(2)
    aai = ATTACKS.get("aai")(cam_size=8)
    assert aai.resize(cam_maps(network, x, y)).shape == (2, 8, 8)
    x_adv = ATTACKS.get("aai")(eps=4 / 255, steps=2, cam_size=8)(network, x, y)
    assert aai.example_metrics(network, x, x_adv, y)["kendall_tau"].shape == (2,)


def test_cam_without_features_says_what_it_needs():
    with pytest.raises(TypeError, match="purify"):
        cam_maps(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), torch.rand(1, 3, 4, 4),
                 torch.tensor([0]))
