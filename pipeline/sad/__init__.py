"""SAD, the saliency adversarial defence with BatchNorm recalibration (paper 001).

``calibrate`` (Alg. 1 model update: BN statistics of processed adversarial training
data), ``model`` (the inference-time wrapper, exact or BPDA gradients), ``stage``
(``run_sad_calibrate``, ``load_sad_model``) and ``evaluate`` (attack views:
adaptive / adaptive_bpda / nonadaptive, sanity-curve checks).
"""

from pipeline.sad.calibrate import SADCalibration, calibrate, recalibrate_bn
from pipeline.sad.model import SADModel, SADSpec, normalise_map
from pipeline.sad.stage import load_sad_model, run_sad_calibrate

__all__ = ["SADCalibration", "SADModel", "SADSpec", "calibrate", "load_sad_model",
           "normalise_map", "recalibrate_bn", "run_sad_calibrate"]
