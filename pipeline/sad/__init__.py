"""SAD, the saliency adversarial defence with BatchNorm recalibration (paper 001).

``calibrate`` (Alg. 1 model update: BN statistics of processed adversarial training
data) and ``model`` (the inference-time wrapper, exact or BPDA gradients); both read
one :class:`~pipeline.config.sad.SadConfig`. The stage is
:mod:`pipeline.stages.sad_calibrate`; the attack views of a defence are
:mod:`pipeline.evaluate.views`.

:data:`WRAPPERS` maps a checkpoint sidecar's ``wrapper`` block name to the factory
``(network, block) -> nn.Module`` that rebuilds the defence around the inner network
(:func:`pipeline.stages.loading.load_model` calls it).
"""

from pipeline.core.registry import Registry

WRAPPERS = Registry("model wrapper")

from pipeline.config.sad import SadConfig
from pipeline.sad.calibrate import build_attack, calibrate, check_names, recalibrate_bn
from pipeline.sad.model import SADModel, spec_from_meta, wrapper_block


@WRAPPERS.register("sad")
def wrap_sad(network, wrapper: dict) -> SADModel:
    """The SAD defence around ``network`` as the sidecar's ``wrapper`` block says."""
    return SADModel(network, spec_from_meta(wrapper))


__all__ = ["WRAPPERS", "SADModel", "SadConfig", "build_attack", "calibrate", "check_names",
           "recalibrate_bn", "spec_from_meta", "wrapper_block"]
