"""Cheap parameters for every registered attack (so the contract tests stay fast)."""

from __future__ import annotations

# Registering an attack enrols it in the contract tests: add its cheap params here (tests/attacks/cheap_attacks.py).
CHEAP = {
    "aai": {"steps": 3},
    "autoattack": {"version": "custom", "attacks": ("apgd-ce",)},
    "eot_pgd": {"steps": 2, "eot_samples": 2},
    "fgsm": {},
    "isa": {"steps": 2, "bisection": 2},
    "pgd": {"steps": 3},
    "saliency": {},
    "square": {"queries": 20},
    "trades_kl": {"steps": 2},
    "transfer": {"attack_params": {"steps": 2}},
    "uniform_noise": {"samples": 2},
}


def build_cheap(name: str, eps: float, source=None):
    from pipeline.attacks import ATTACKS
    from pipeline.config import build_method

    params = {**CHEAP[name], "eps": eps}
    if name == "transfer":
        from pipeline.stages.loading import load_model

        params["source"] = str(source)
        params["source_model"] = load_model(source)[0]
    return build_method(ATTACKS, name, params, name)
