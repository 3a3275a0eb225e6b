#!/usr/bin/python3
# Reference results for the brevitas backend's algo_config, made by real
# Brevitas: GPTQ (brevitas.graph.gptq.gptq_mode), GPFQ
# (brevitas.graph.gpfq.gpfq_mode) and bias correction
# (brevitas.graph.calibrate.bias_correction_mode) on one QuantLinear, set
# up as AMD Quark's Brevitas extension sets up its layers (weight
# quantizers with narrow_range and ParameterFromStatsFromParameterScaling,
# ParameterFromStatsFromParameterZeroPoint when asymmetric; calibration
# first, one forward pass that initializes the weight quantizers, then the
# algorithms in list order, GPTQ with use_quant_activations=False, GPFQ
# with use_quant_activations=True).
#
# The file records the layer's weight (and bias), the calibration batches,
# and what Brevitas ends with: the weight's integer codes (the base64 of
# int8 bytes; for FP8, the values of the format, value / scale), its scales
# and zero points (float32 arrays as the base64 of their little-endian
# bytes), and the corrected bias. tests/python/test_brevitas_algorithms.py
# feeds the same batches to a calibration session and compares.
#
# Regenerate (Brevitas at the commit named in the output; it runs on
# Debian's torch on the CPU; brevitas.graph.gpxq imports unfoldNd, which
# only convolutions use, so a stub module is put on the path):
#
#   BREVITAS_JIT=0 PYTHONPATH=../shared/oracles/brevitas/src:../shared/oracles/dependencies/src \
#     /usr/bin/python3 tests/brevitas/generate-algorithms.py > tests/data/brevitas/algorithms.json
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

from brevitas.core.scaling.standalone import ParameterFromStatsFromParameterScaling  # noqa: E402
from brevitas.core.zero_point import ParameterFromStatsFromParameterZeroPoint  # noqa: E402
from brevitas.graph.calibrate import bias_correction_mode, calibration_mode  # noqa: E402
from brevitas.graph.gpfq import gpfq_mode  # noqa: E402
from brevitas.graph.gptq import gptq_mode  # noqa: E402
from brevitas.nn import QuantLinear  # noqa: E402
import brevitas.quant.experimental.float_quant_ocp as bocp  # noqa: E402
import brevitas.quant.scaled_int as bint  # noqa: E402
import brevitas.quant.shifted_scaled_int as bshift  # noqa: E402
from brevitas_examples.common.generative import quantizers as bgen  # noqa: E402

BREVITAS_COMMIT = 'b106358c4169d8a9b68cb2a531aa795417d74887'
OUT, IN, BATCHES, TOKENS = 16, 96, 4, 32


def bits(a):
    a = np.ascontiguousarray(np.asarray(a, dtype='<f4')).reshape(-1)
    return base64.b64encode(a.tobytes()).decode('ascii')


def amd(quant, symmetric=True, **kw):
    """A weight quantizer as AMD Quark's Brevitas extension builds it"""
    p = dict(narrow_range=True, scaling_impl=ParameterFromStatsFromParameterScaling)
    if not symmetric:
        p['zero_point_impl'] = ParameterFromStatsFromParameterZeroPoint
    p.update(kw)
    return quant.let(**p)


def data():
    rng = np.random.default_rng(2026)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    bias = (rng.standard_normal(OUT) * 0.1).astype(np.float32)
    mix = (rng.standard_normal((IN, IN)) * 0.3 + np.eye(IN)).astype(np.float32)
    x = (rng.standard_normal((BATCHES, TOKENS, IN)).astype(np.float32) @ mix)
    x = (x * np.linspace(0.2, 2.5, IN, dtype=np.float32) + 0.3).astype(np.float32)
    x[:, :, 7] = 0.0            # an input feature that is never non-zero
    return w, bias, x


# name, the brevitas-backend weight spec, the Brevitas quantizer, algo_config, with a bias
CASES = [
    ('gptq-int4-channel', {'preset': 'Int8WeightPerChannelFloat', 'bit_width': 4},
     amd(bint.Int8WeightPerChannelFloat, bit_width=4), [{'name': 'gptq'}], False),
    ('gptq-int4-channel-act-order', {'preset': 'Int8WeightPerChannelFloat', 'bit_width': 4},
     amd(bint.Int8WeightPerChannelFloat, bit_width=4), [{'name': 'gptq', 'act_order': True}], False),
    ('gptq-uint4-channel-shifted', {'preset': 'ShiftedUint8WeightPerChannelFloat', 'bit_width': 4,
                                    'narrow_range': True},
     amd(bshift.ShiftedUint8WeightPerChannelFloat, symmetric=False, bit_width=4), [{'name': 'gptq'}], False),
    ('gptq-int4-group32', {'preset': 'IntWeightSymmetricGroupQuant', 'group_size': 32},
     amd(bgen.IntWeightSymmetricGroupQuant, bit_width=4, group_size=32), [{'name': 'gptq', 'act_order': True}],
     False),
    ('gptq-int8-tensor-blocks', {'preset': 'Int8WeightPerTensorFloat'},
     amd(bint.Int8WeightPerTensorFloat), [{'name': 'gptq', 'num_blocks': 8}], False),
    ('gptq-fp8-channel', {'preset': 'Fp8e4m3OCPWeightPerChannelFloat'},
     amd(bocp.Fp8e4m3OCPWeightPerChannelFloat), [{'name': 'gptq'}], False),
    ('bias-correction-int4-channel', {'preset': 'Int8WeightPerChannelFloat', 'bit_width': 4},
     amd(bint.Int8WeightPerChannelFloat, bit_width=4), [{'name': 'bias_correction'}], True),
    ('gptq-then-bias-correction', {'preset': 'Int8WeightPerChannelFloat', 'bit_width': 4},
     amd(bint.Int8WeightPerChannelFloat, bit_width=4), [{'name': 'gptq'}, {'name': 'bias_correction'}], False),
    ('gpfq-int4-channel', {'preset': 'Int8WeightPerChannelFloat', 'bit_width': 4},
     amd(bint.Int8WeightPerChannelFloat, bit_width=4), [{'name': 'gpfq'}], False),
    ('gpfq-int4-group32-act-order', {'preset': 'IntWeightSymmetricGroupQuant', 'group_size': 32},
     amd(bgen.IntWeightSymmetricGroupQuant, bit_width=4, group_size=32), [{'name': 'gpfq', 'act_order': True}],
     False),
    ('gpfq-uint4-channel-shifted-then-bias-correction', {'preset': 'ShiftedUint8WeightPerChannelFloat',
                                                         'bit_width': 4, 'narrow_range': True},
     amd(bshift.ShiftedUint8WeightPerChannelFloat, symmetric=False, bit_width=4),
     [{'name': 'gpfq'}, {'name': 'bias_correction'}], True),
    ('bias-correction-then-gptq', {'preset': 'ShiftedUint8WeightPerChannelFloat', 'bit_width': 4,
                                   'narrow_range': True},
     amd(bshift.ShiftedUint8WeightPerChannelFloat, symmetric=False, bit_width=4),
     [{'name': 'bias_correction'}, {'name': 'gptq', 'act_order': True}], True),
]


def run(quant, algos, with_bias, w, bias, x):
    torch.manual_seed(0)
    layer = QuantLinear(IN, OUT, bias=with_bias, weight_quant=quant)
    layer.weight.data = torch.from_numpy(w.copy())
    if with_bias:
        layer.bias.data = torch.from_numpy(bias.copy())
    model = torch.nn.Sequential(layer)
    model.eval()
    batches = [torch.from_numpy(x[b:b + 1].copy()) for b in range(BATCHES)]
    with torch.no_grad():
        with calibration_mode(model):
            for b in batches:
                model(b)
        # the forward pass Brevitas asks for before GPTQ: it initializes
        # the weight quantizers' parameters from the weights
        model(batches[0])
        for a in algos:
            if a['name'] == 'gptq':
                with gptq_mode(model, act_order=a.get('act_order', False), use_quant_activations=False,
                               num_blocks=a.get('num_blocks', 100)) as g:
                    for _ in range(g.num_layers):
                        for b in batches:
                            g.model(b)
                        g.update()
            elif a['name'] == 'gpfq':
                # AMD Quark's GPFQ: quantized activations on (none here)
                with gpfq_mode(model, act_order=a.get('act_order', False), use_quant_activations=True) as g:
                    for _ in range(g.num_layers):
                        for b in batches:
                            g.model(b)
                        g.update()
            else:
                with bias_correction_mode(model):
                    for b in batches:
                        model(b)
        q = layer.quant_weight()
    scale = q.scale_ if hasattr(q, 'scale_') else q.scale
    zp = q.zero_point_ if hasattr(q, 'zero_point_') else q.zero_point
    if 'Fp8' in quant.__name__:
        # minifloats: the format's values, value / scale
        r = {'levels': bits((q.value / q.scale).detach().numpy())}
    else:
        codes = torch.round(q.value / q.scale + q.zero_point).detach().numpy().astype(np.int64)
        r = {'codes': base64.b64encode(codes.reshape(-1).astype('<i1').tobytes()).decode('ascii')}
    r.update({'scale': bits(scale.detach().numpy()),
              'zero_point': [int(v) for v in zp.detach().numpy().reshape(-1)]})
    if layer.bias is not None:
        r['bias'] = bits(layer.bias.detach().numpy())
    return r


def main():
    w, bias, x = data()
    out = {'brevitas_commit': BREVITAS_COMMIT, 'out_features': OUT, 'in_features': IN,
           'weight': bits(w), 'bias': bits(bias), 'batches': bits(x), 'batch_shape': [1, TOKENS, IN],
           'cases': []}
    names = sys.argv[1:]
    for name, spec, quant, algos, with_bias in CASES:
        if names and name not in names:
            continue
        case = {'name': name, 'weight_spec': spec, 'algo_config': algos, 'with_bias': with_bias}
        case['round_to_nearest'] = run(quant, [], with_bias, w, bias, x)
        case['result'] = run(quant, algos, with_bias, w, bias, x)
        out['cases'].append(case)
    json.dump(out, sys.stdout)
    sys.stdout.write('\n')


main()
