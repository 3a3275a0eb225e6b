#!/usr/bin/python3
# Reference results for the brevitas backend's activation equalization
# (pre_quant_opt_config "activation_equalization"), made by real Brevitas:
# brevitas.graph.equalize.activation_equalization_mode in its graph mode
# (layerwise=False, add_mul_node=False) on small traced models, so that the
# scale of each region is folded into the layer that feeds it, as libquark
# folds it:
#
#   "linear": fc0 (with a bias) feeds fc1 (no bias) and fc2 (with one);
#   "norm":   a LayerNorm (weight and bias) feeds fc3 and fc4;
#
# each with a sink column that is all zero and an input feature that is
# never non-zero (Brevitas leaves both alone), at alpha 0.5 (square roots)
# and 0.8 (powers).
#
# The file records the tensors before, the calibration batches (the
# sources' outputs are the sinks' inputs, recorded as they are), Brevitas's
# scale factors and the tensors after, as the base64 of little-endian
# float32 bytes. tests/python/test_brevitas_equalization.py feeds the
# batches to a calibration session and compares bit for bit.
#
# Regenerate (Brevitas at the commit named in the output; it runs on
# Debian's torch on the CPU):
#
#   BREVITAS_JIT=0 PYTHONPATH=../shared/oracles/brevitas/src:../shared/oracles/dependencies/src \
#     /usr/bin/python3 tests/brevitas/generate-equalization.py > tests/data/brevitas/equalization.json
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import base64
import json
import sys
import types
import warnings

warnings.filterwarnings('ignore')
sys.modules.setdefault('unfoldNd', types.ModuleType('unfoldNd'))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from brevitas.fx import symbolic_trace  # noqa: E402
from brevitas.graph.equalize import activation_equalization_mode  # noqa: E402

BREVITAS_COMMIT = 'b106358c4169d8a9b68cb2a531aa795417d74887'
IN, MID, BATCHES, TOKENS = 24, 40, 4, 12


def bits(t):
    a = np.ascontiguousarray(t.detach().numpy().astype('<f4')).reshape(-1)
    return base64.b64encode(a.tobytes()).decode('ascii')


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(IN, MID)
        self.fc1 = nn.Linear(MID, 8, bias=False)
        self.fc2 = nn.Linear(MID, 16)

    def forward(self, x):
        h = self.fc0(x)
        return self.fc1(h).sum(-1) + self.fc2(h).sum(-1)


class Norm(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(MID)
        self.fc3 = nn.Linear(MID, 8)
        self.fc4 = nn.Linear(MID, 16, bias=False)

    def forward(self, x):
        h = self.norm(x)
        return self.fc3(h).sum(-1) + self.fc4(h).sum(-1)


def case(kind, alpha, seed):
    torch.manual_seed(seed)
    model = (Linear if kind == 'linear' else Norm)().eval()
    src, sinks = ('fc0', ['fc1', 'fc2']) if kind == 'linear' else ('norm', ['fc3', 'fc4'])
    with torch.no_grad():
        s = getattr(model, src)
        if kind == 'linear':
            s.weight[5].zero_()         # input feature 5 of the sinks is never non-zero
            s.bias[5] = 0.0
        else:
            s.weight.copy_(torch.rand(MID) * 2 + 0.1)
            s.bias.copy_(torch.randn(MID) * 0.2)
            s.weight[5] = 0.0
            s.bias[5] = 0.0
        s.weight.mul_(torch.linspace(0.2, 3.0, MID).reshape(-1, *([1] * (s.weight.dim() - 1))))
        for name in sinks:              # a sink column that is zero in every sink
            getattr(model, name).weight[:, 9] = 0.0
    x = torch.randn(BATCHES, TOKENS, IN if kind == 'linear' else MID)
    if kind == 'norm':
        x = x * torch.linspace(0.5, 4.0, MID) + 0.3
    before = {n: bits(p) for n, p in model.named_parameters()}
    with torch.no_grad():
        inputs = [model.fc0(b) if kind == 'linear' else model.norm(b) for b in x]
    graph = symbolic_trace(model)
    with torch.no_grad():
        with activation_equalization_mode(graph, alpha=alpha, add_mul_node=False, layerwise=False) as eq:
            for b in x:
                graph(b)
    (scale,) = eq.scale_factors
    after = {n: bits(p) for n, p in graph.named_parameters()}
    return {'name': '%s-alpha%g' % (kind, alpha), 'alpha': alpha, 'source': src, 'sinks': sinks,
            'shapes': {n: list(p.shape) for n, p in model.named_parameters()},
            'batch_shape': [TOKENS, MID], 'sink_inputs': bits(torch.stack(inputs)),
            'before': before, 'scale': bits(scale), 'after': after}


def main():
    out = {'generator': 'tests/brevitas/generate-equalization.py', 'brevitas_commit': BREVITAS_COMMIT,
           'torch': torch.__version__, 'cases': []}
    for seed, (kind, alpha) in enumerate([('linear', 0.5), ('linear', 0.8), ('norm', 0.5), ('norm', 0.8)]):
        out['cases'].append(case(kind, alpha, 100 + seed))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write('\n')


main()
