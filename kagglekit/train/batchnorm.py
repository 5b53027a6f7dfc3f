"""Batch-norm running statistics that describe the weights being validated, even with few batches per epoch.

PyTorch's batch norm keeps its running statistics as an exponential average with momentum 0.1: roughly the
last 10-20 batches. With few batches per epoch (156 training images in batches of 32 are 4 steps) that window
reaches back several epochs, to weights that no longer exist; from scratch at a high learning rate the early
activations are many times larger, so validation normalises with statistics of an older model. On a 196-image
rice-disease set in the sample's layout, the sample recipe's resnet10t predicted one class for all 6 epochs (0.18);
with statistics restarted every epoch it scored 0.85 (benchmarks/results/sample_recipe_robustness.txt).

So every epoch the statistics start again: the k-th training batch of an epoch is averaged in with momentum
max(1/k, m), a plain mean of the epoch's batches until 1/k falls to the layer's own momentum m, then the usual
exponential average. With many batches per epoch nothing changes (after n batches the earlier history weighs
(1 - m)^n, nothing); with few, validation and prediction use statistics of the last epoch's weights. Training
is unaffected: in training mode batch norm normalises each batch with its own statistics. Wu & Johnson (2021),
"Rethinking 'Batch' in BatchNorm", section 3, describe the failure (running averages lag weights that change
fast) and recompute "precise" statistics after training; restarting the average each epoch gets that for free.
"""

from __future__ import annotations

from fastai.callback.core import Callback
from fastai.torch_core import get_model
from torch import nn


class EpochBatchNorm(Callback):
    """Running statistics averaged over the current epoch's batches (momentum max(1/k, m) for the k-th batch)."""

    run_valid = False

    def before_fit(self) -> None:
        model = get_model(self.learn.model)
        self.layers = [
            (layer, layer.momentum)
            for layer in model.modules()
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.momentum is not None
        ]

    def before_batch(self) -> None:
        for layer, momentum in self.layers:
            layer.momentum = max(1 / (self.iter + 1), momentum)

    def after_fit(self) -> None:
        for layer, momentum in self.layers:
            layer.momentum = momentum
