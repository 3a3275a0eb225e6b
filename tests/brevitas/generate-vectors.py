#!/usr/bin/python3
# Reference vectors for the brevitas backend, made by real Brevitas.
#
# Every case is one quantizer (a brevitas-backend spec, and the Brevitas
# quantizer class it stands for, with the same overrides) applied to one
# float32 tensor. For weights Brevitas quantizes the tensor as the weight of
# a QuantLinear; for activations a QuantIdentity quantizes it, either
# uncalibrated (Brevitas's initial statistic), after calibration_mode() over
# the case's batches, or dynamically (MX). The file records the input, and
# Brevitas's scales, zero points, integer codes and dequantized values, all
# float32 values as their bit patterns, so that tests/test-brevitas-vectors.c
# compares them exactly without Brevitas.
#
# Regenerate (Brevitas at the commit named in the output; it runs on
# Debian's torch on the CPU):
#
#   BREVITAS_JIT=0 PYTHONPATH=../shared/oracles/brevitas/src:../shared/oracles/dependencies/src \
#     /usr/bin/python3 tests/brevitas/generate-vectors.py > tests/data/brevitas/vectors.json
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import struct
import sys
import warnings

warnings.filterwarnings('ignore')

import numpy as np  # noqa: E402
import torch  # noqa: E402

from brevitas.graph.calibrate import calibration_mode  # noqa: E402
from brevitas.inject.enum import RestrictValueType, StatsOp  # noqa: E402
from brevitas.nn import QuantIdentity, QuantLinear  # noqa: E402
import brevitas.quant.experimental.float as bfloat  # noqa: E402
import brevitas.quant.experimental.float_quant_fnuz as bfnuz  # noqa: E402
import brevitas.quant.experimental.float_quant_ocp as bocp  # noqa: E402
import brevitas.quant.experimental.mx_quant_ocp as bmx  # noqa: E402
import brevitas.quant.fixed_point as bfixed  # noqa: E402
import brevitas.quant.scaled_int as bint  # noqa: E402
import brevitas.quant.shifted_scaled_int as bshift  # noqa: E402
from brevitas_examples.common.generative import quantizers as bgen  # noqa: E402

from brevitas.core.function_wrapper import FloorSte, RoundSte, CeilSte, RoundToZeroSte  # noqa: E402,F401

BREVITAS_COMMIT = 'b106358c4169d8a9b68cb2a531aa795417d74887'


def bits(a):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32)).reshape(-1)
    return ['%08x' % struct.unpack('<I', struct.pack('<f', float(v)))[0] for v in a]


def f32(values):
    return np.asarray(values, dtype=np.float32)


# ---- inputs ---------------------------------------------------------------------------------

def inputs(cols=64):
    """Weight-shaped inputs: [name, array]. Rows cover random values, exact
    ties, zero, all-negative and all-positive rows, tiny and huge values."""
    rng = np.random.default_rng(1234)
    out = []
    out.append(('normal', rng.standard_normal((4, cols)).astype(np.float32)))
    # half-integer multiples of max/127: x / s lands on .5 (ties), the max on 127
    t = np.arange(cols, dtype=np.float32) - cols / 2 + 0.5
    ties = np.stack([t, t * 2, -t, np.where(np.arange(cols) == 0, 127, t / 3)]).astype(np.float32)
    out.append(('ties', ties))
    zn = np.stack([np.zeros(cols), -np.abs(rng.standard_normal(cols)) - 0.5,
                   np.abs(rng.standard_normal(cols)) + 0.25, rng.standard_normal(cols) * 1e-3]).astype(np.float32)
    out.append(('zero_neg_pos', zn))
    th = np.stack([rng.standard_normal(cols) * 1e-30, rng.standard_normal(cols) * 1e30,
                   rng.standard_normal(cols) * 1e-41, np.where(np.arange(cols) % 7 == 0, 3e4, 0.01)]).astype(np.float32)
    out.append(('tiny_huge', th))
    return out


def act_inputs():
    rng = np.random.default_rng(99)
    x = (rng.standard_normal((8, 64)) * 2).astype(np.float32)
    x[0, :8] = [0.5, -0.5, 1.5, -2.5, 0, -0.0, 3.25, -3.75]
    return x


def special_inputs():
    x = act_inputs()[:2].copy()
    x[0, 3] = np.inf
    x[0, 5] = -np.inf
    x[1, 7] = np.nan
    return x


def batches():
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((4, 64)) * s + o).astype(np.float32) for s, o in ((1, 0), (3, 0.5), (0.5, -1))]


# ---- Brevitas -------------------------------------------------------------------------------

def weight_case(quant, x):
    layer = QuantLinear(x.shape[1], x.shape[0], bias=False, weight_quant=quant)
    layer.weight.data = torch.from_numpy(x.copy())
    layer.eval()
    with torch.no_grad():
        return layer.quant_weight()


def act_case(quant, x, mode, calib, kw):
    ident = QuantIdentity(act_quant=quant, return_quant_tensor=True, **kw)
    with torch.no_grad():
        if mode == 'calibrated':
            ident.train()
            with calibration_mode(ident):
                for b in calib:
                    ident(torch.from_numpy(b))
        ident.eval()
        return ident(torch.from_numpy(x.copy()))


def record(qt, kind):
    # groupwise tensors keep one scale per group (scale_); .scale expands it
    scale = qt.scale_ if hasattr(qt, 'scale_') else qt.scale
    zero_point = qt.zero_point_ if hasattr(qt, 'zero_point_') else qt.zero_point
    r = {'scale': bits(scale.detach().numpy()), 'value': bits(qt.value.detach().numpy())}
    zp = zero_point.detach().numpy().astype(np.float32).reshape(-1)
    r['zero_point'] = [int(v) if np.isfinite(v) else None for v in zp]
    if kind == 'int':
        v = qt.value.detach().numpy()
        q = torch.round(qt.value / qt.scale + qt.zero_point).detach().numpy()
        r['int'] = [int(c) if np.isfinite(c) else None for c in q.reshape(-1)]
        assert v.shape == q.shape
    return r


# ---- the cases -------------------------------------------------------------------------------

CASES = []


def case(name, role, spec, quant, kind='int', x_sets=None, mode=None, act_kw=None, desc=None):
    CASES.append(dict(name=name, role=role, spec=spec, quant=quant, kind=kind, x_sets=x_sets, mode=mode,
                      act_kw=act_kw or {}, desc=desc or quant.__name__))


def W(name, spec, quant, kind='int', desc=None, x_sets=None):
    case(name, 'weight', spec, quant, kind, x_sets=x_sets, desc=desc)


def A(name, spec, quant, kind='int', mode='calibrated', desc=None, x='act', act_kw=None):
    case(name, 'input', spec, quant, kind, x_sets=x, mode=mode, desc=desc, act_kw=act_kw)


def define_cases():
    P = lambda n: {'preset': n}  # noqa: E731
    # every weight preset of the backend
    for n in ('Int8WeightPerTensorFloat', 'Int8WeightPerChannelFloat', 'Int8WeightPerTensorFloatMSE',
              'Int8WeightPerChannelFloatMSE'):
        W(n, P(n), getattr(bint, n))
    for n in ('ShiftedUint8WeightPerTensorFloat', 'ShiftedUint8WeightPerChannelFloat'):
        W(n, P(n), getattr(bshift, n))
    for n in ('Int8WeightPerTensorFixedPoint', 'Int8WeightPerChannelFixedPoint'):
        W(n, P(n), getattr(bfixed, n))
    W('IntWeightSymmetricGroupQuant', dict(P('IntWeightSymmetricGroupQuant'), group_size=32),
      bgen.IntWeightSymmetricGroupQuant.let(group_size=32, bit_width=4), desc='IntWeightSymmetricGroupQuant(4 bits, group 32)')
    W('ShiftedUint8WeightGroupQuantFloat', dict(P('ShiftedUint8WeightGroupQuantFloat'), group_size=16, bit_width=4),
      bshift.ShiftedUint8WeightGroupQuantFloat.let(group_size=16, bit_width=4), desc='ShiftedUint8WeightGroupQuantFloat(4 bits, group 16)')
    for n in ('Fp8e4m3OCPWeightPerTensorFloat', 'Fp8e4m3OCPWeightPerChannelFloat', 'Fp8e5m2OCPWeightPerTensorFloat',
              'Fp8e5m2OCPWeightPerChannelFloat'):
        W(n, P(n), getattr(bocp, n), kind='float')
    for n in ('Fp8e4m3FNUZWeightPerTensorFloat', 'Fp8e4m3FNUZWeightPerChannelFloat', 'Fp8e5m2FNUZWeightPerTensorFloat',
              'Fp8e5m2FNUZWeightPerChannelFloat'):
        W(n, P(n), getattr(bfnuz, n), kind='float')
    W('MXFloat8e4m3Weight', P('MXFloat8e4m3Weight'), bmx.MXFloat8e4m3Weight, kind='float')
    W('MXFloat4e2m1Weight', P('MXFloat4e2m1Weight'),
      bmx.MXFloat8e4m3Weight.let(bit_width=4, exponent_bit_width=2, mantissa_bit_width=1), kind='float',
      desc='MXFloat8e4m3Weight(e2m1)')
    W('MXInt8Weight', P('MXInt8Weight'), bmx.MXInt8Weight)
    # generic minifloats (every code a number)
    W('Fp8e4m3WeightPerTensorFloat', {'quant_type': 'float', 'float_format': 'generic'},
      bfloat.Fp8e4m3WeightPerTensorFloat, kind='float')
    W('Fp8e5m2WeightPerChannelFloat', {'quant_type': 'float', 'float_format': 'generic', 'exponent_bit_width': 5,
                                        'mantissa_bit_width': 2, 'qscheme': 'per_channel'},
      bfloat.Fp8e5m2WeightPerChannelFloat, kind='float')
    # integer rounding overrides
    for r, impl in (('floor', 'floor'), ('ceil', 'ceil'), ('round_to_zero', 'round_to_zero')):
        W('Int8WeightPerChannelFloat-' + r, dict(P('Int8WeightPerChannelFloat'), rounding=r),
          bint.Int8WeightPerChannelFloat.let(float_to_int_impl_type=impl),
          desc='Int8WeightPerChannelFloat(float_to_int_impl_type=%s)' % impl)
        W('ShiftedUint8WeightPerTensorFloat-' + r, dict(P('ShiftedUint8WeightPerTensorFloat'), rounding=r),
          bshift.ShiftedUint8WeightPerTensorFloat.let(float_to_int_impl_type=impl),
          desc='ShiftedUint8WeightPerTensorFloat(float_to_int_impl_type=%s)' % impl)
    # power-of-two rounding of FixedPoint scales
    for r, ste in (('round', RoundSte), ('floor', FloorSte)):
        W('Int8WeightPerChannelFixedPoint-' + r, dict(P('Int8WeightPerChannelFixedPoint'), pof2_rounding=r),
          bfixed.Int8WeightPerChannelFixedPoint.let(restrict_value_float_to_int_impl=ste),
          desc='Int8WeightPerChannelFixedPoint(restrict_value_float_to_int_impl=%s)' % ste.__name__)
    # other bit widths
    for b in (2, 4, 6):
        W('Int%dWeightPerChannelFloat' % b, dict(P('Int8WeightPerChannelFloat'), bit_width=b),
          bint.Int8WeightPerChannelFloat.let(bit_width=b), desc='Int8WeightPerChannelFloat(bit_width=%d)' % b)

    # ---- activations -------------------------------------------------------------------------
    for n in ('Int8ActPerTensorFloat', 'Uint8ActPerTensorFloat', 'ShiftedUint8ActPerTensorFloat'):
        A(n, P(n), getattr(bint if 'Shifted' not in n else bshift, n))
    for n in ('Int8ActPerTensorFixedPoint', 'Uint8ActPerTensorFixedPoint'):
        A(n, P(n), getattr(bfixed, n))
    A('ShiftedUint8ActPerTensorFixedPoint', P('ShiftedUint8ActPerTensorFixedPoint'),
      bshift.ShiftedUint8ActPerTensorFixedPoint)
    for n in ('Fp8e4m3OCPActPerTensorFloat', 'Fp8e5m2OCPActPerTensorFloat'):
        A(n, P(n), getattr(bocp, n), kind='float')
    for n in ('Fp8e4m3FNUZActPerTensorFloat', 'Fp8e5m2FNUZActPerTensorFloat'):
        A(n, P(n), getattr(bfnuz, n), kind='float')
    A('Int8ActPerTensorFloat-p99', dict(P('Int8ActPerTensorFloat'), percentile=99.0),
      bint.Int8ActPerTensorFloat.let(high_percentile_q=99.0), desc='Int8ActPerTensorFloat(high_percentile_q=99)')


INPUTS = {}


def share(name, x):
    """The name of input @x in the file's table of inputs (written once)."""
    key = '%s-%dx%d' % (name, x.shape[0], x.shape[1])
    entry = dict(shape=list(x.shape), x=bits(x))
    assert INPUTS.setdefault(key, entry) == entry, key
    return key


def run_case(c):
    out = []
    if c['role'] == 'weight':
        sets = inputs() if c['x_sets'] is None else c['x_sets']()
        for xname, x in sets:
            qt = weight_case(c['quant'], x)
            r = dict(name='%s/%s' % (c['name'], xname), role='weight', spec=c['spec'], brevitas=c['desc'],
                     input=share(xname, x))
            r.update(record(qt, c['kind']))
            out.append(r)
        return out
    x = act_inputs() if c['x_sets'] == 'act' else special_inputs()
    calib = batches() if c['mode'] == 'calibrated' else []
    qt = act_case(c['quant'], x, c['mode'], calib, c['act_kw'])
    xname = 'act' if c['x_sets'] == 'act' else 'special'
    r = dict(name=c['name'], role='input', spec=c['spec'], brevitas=c['desc'], mode=c['mode'],
             input=share(xname, x))
    if calib:
        r['calibration'] = [share('batch%d' % i, b) for i, b in enumerate(calib)]
    r.update(record(qt, c['kind']))
    out.append(r)
    return out


def main():
    torch.manual_seed(0)
    define_cases()
    only = sys.argv[1:]
    vectors = []
    for c in CASES:
        if only and not any(o in c['name'] for o in only):
            continue
        vectors.extend(run_case(c))
    json.dump({'generator': 'tests/brevitas/generate-vectors.py',
               'brevitas_commit': BREVITAS_COMMIT,
               'torch': torch.__version__,
               'inputs': INPUTS,
               'cases': vectors}, sys.stdout, indent=None, separators=(',', ':'))
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
