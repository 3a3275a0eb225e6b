#!/usr/bin/python3
# Reference vectors for the brevitas backend, made by real Brevitas.
#
# Every case is one quantizer (a brevitas-backend spec, and the Brevitas
# quantizer class it stands for, with the same overrides) applied to one
# float32 tensor. For weights Brevitas quantizes the tensor as the weight of
# a QuantLinear; for activations a QuantIdentity quantizes it, either
# uncalibrated (Brevitas's initial statistic), after calibration_mode() over
# the case's batches, or dynamically (MX). The file records the input, and
# Brevitas's scales, zero points, integer codes and dequantized values (float32
# arrays as the base64 of their little-endian bytes), so that tests/test-brevitas-vectors.c
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
import base64
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
import brevitas.quant.base as bquant_base  # noqa: E402
import brevitas.quant.fixed_point as bfixed  # noqa: E402
import brevitas.quant.scaled_int as bint  # noqa: E402
import brevitas.quant.shifted_scaled_int as bshift  # noqa: E402
from brevitas_examples.common.generative import quantizers as bgen  # noqa: E402

from brevitas.core.function_wrapper import FloorSte, RoundSte, CeilSte, RoundToZeroSte  # noqa: E402,F401

BREVITAS_COMMIT = 'b106358c4169d8a9b68cb2a531aa795417d74887'


def bits(a):
    """float32 values, exactly: their little-endian bytes in base64."""
    a = np.ascontiguousarray(np.asarray(a, dtype='<f4')).reshape(-1)
    return base64.b64encode(a.tobytes()).decode('ascii')


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


def large_inputs():
    """A wider weight: the summation orders of means and MSE losses over
    1000 elements, and a ragged last group (1000 = 31 * 32 + 8)."""
    rng = np.random.default_rng(77)
    x = (rng.standard_normal((4, 1000)) * np.array([[1.0], [0.01], [30.0], [1.0]])).astype(np.float32)
    x[3] = np.abs(x[3]) * -1   # an all-negative row
    return [('large', x)]


def nonfinite_inputs():
    """Weights holding NaN and infinities: one row each, the others finite."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[1, 5] = np.nan
    x[2, 7] = np.inf
    x[3, 9] = -np.inf
    return [('nonfinite', x)]


def with_large():
    return inputs() + large_inputs()


def act_inputs():
    rng = np.random.default_rng(99)
    x = (rng.standard_normal((8, 64)) * 2).astype(np.float32)
    x[0, :8] = [0.5, -0.5, 1.5, -2.5, 0, -0.0, 3.25, -3.75]
    return x


def inf_inputs():
    x = act_inputs()[:2].copy()
    x[0, 3] = np.inf
    x[1, 5] = -np.inf
    return x


def unscaled_inputs():
    """Inputs for quantizers with scale 1: values across the formats'
    ranges, ties between codes, subnormals, beyond the maximum."""
    rng = np.random.default_rng(4321)
    a = (rng.standard_normal((4, 64)) * np.array([[1e-2], [1.0], [50.0], [3e4]])).astype(np.float32)
    b = np.concatenate([np.array([0, -0.0, 448, 464, 465, 480, 500, -449, 57344, 61440, 65536, -1e6,
                                  2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -10, 2.0 ** -16, 2.0 ** -17, 1.0625, 1.1875],
                                 dtype=np.float32),
                        np.linspace(-20, 20, 45, dtype=np.float32)])
    return [('wide', a), ('edges', b.reshape(1, 64))]


def act3d_inputs():
    """[batch, tokens, features], as a transformer's linear layers see them."""
    return act_inputs().reshape(2, 4, 64)


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
    define_gap_cases(P)


def let(quant, desc=None, **kw):
    """quant.let(**kw), and a description of it for the vector file."""
    def show(v):
        return getattr(v, 'name', None) or getattr(v, '__name__', None) or repr(v)
    return quant.let(**kw), desc or '%s(%s)' % (quant.__name__, ', '.join('%s=%s' % (k, show(v)) for k, v in kw.items()))


def define_gap_cases(P):
    # 1. the MSE search beyond symmetric float-scale integers
    for n in ('ShiftedUint8WeightPerTensorFloatMSE', 'ShiftedUint8WeightPerChannelFloatMSE'):
        W(n, P(n), getattr(bshift, n), x_sets=with_large)
    for n in ('Int8WeightPerTensorFixedPointMSE', 'Int8WeightPerChannelFixedPointMSE'):
        W(n, P(n), getattr(bfixed, n), x_sets=with_large)
    W('Int8WeightPerChannelFloatMSE-large', P('Int8WeightPerChannelFloatMSE'), bint.Int8WeightPerChannelFloatMSE,
      x_sets=large_inputs)
    W('MXInt8WeightMSE-large', P('MXInt8WeightMSE'), bmx.MXInt8WeightMSE, x_sets=large_inputs)
    W('MXFloat4e2m1Weight-large', P('MXFloat4e2m1Weight'),
      bmx.MXFloat8e4m3Weight.let(bit_width=4, exponent_bit_width=2, mantissa_bit_width=1), kind='float',
      desc='MXFloat8e4m3Weight(e2m1)', x_sets=large_inputs)
    q, d = let(bshift.ShiftedUint8WeightGroupQuantFloat, group_size=32, bit_width=4)
    W('ShiftedUint8WeightGroupQuantFloat-large', dict(P('ShiftedUint8WeightGroupQuantFloat'), group_size=32, bit_width=4),
      q, desc=d, x_sets=large_inputs)
    for n in ('Fp8e4m3OCPWeightPerTensorFloatMSE', 'Fp8e4m3OCPWeightPerChannelFloatMSE'):
        W(n, P(n), getattr(bocp, n), kind='float')
    W('Fp8e5m2OCPWeightPerChannelFloatMSE', {'preset': 'Fp8e4m3OCPWeightPerChannelFloatMSE', 'exponent_bit_width': 5,
                                             'mantissa_bit_width': 2}, bocp.Fp8e5m2OCPWeightPerChannelFloatMSE,
      kind='float')
    W('Fp8e4m3WeightPerChannelFloatMSE', {'quant_type': 'float', 'float_format': 'generic', 'qscheme': 'per_channel',
                                          'param_type': 'mse'},
      bfloat.Fp8e4m3WeightPerChannelFloatMSE, kind='float')
    W('MXFloat8e4m3WeightMSE', P('MXFloat8e4m3WeightMSE'), bmx.MXFloat8e4m3WeightMSE, kind='float')
    W('MXInt8WeightMSE', P('MXInt8WeightMSE'), bmx.MXInt8WeightMSE)
    q, d = let(bint.Int8WeightPerChannelFloatMSE, bit_width=4)
    W('Int4WeightPerChannelFloatMSE', dict(P('Int8WeightPerChannelFloatMSE'), bit_width=4), q, desc=d)
    q, d = let(bgen.IntWeightSymmetricGroupQuant, group_size=32, bit_width=4, scaling_impl_type='parameter_from_stats',
               desc='IntWeightSymmetricGroupQuant + MSESymmetricScale(4 bits, group 32)')
    W('IntWeightSymmetricGroupQuantMSE', dict(P('IntWeightSymmetricGroupQuant'), group_size=32, param_type='mse'),
      type('IntWeightSymmetricGroupQuantMSE', (bquant_base.MSESymmetricScale, bgen.IntWeightSymmetricGroupQuant), {})
      .let(group_size=32, bit_width=4), desc=d)
    # activations: the MSE search on every calibration batch
    for n, mod, kind in (('Int8ActPerTensorFloatMSE', bint, 'int'), ('Uint8ActPerTensorFloatMSE', bint, 'int'),
                         ('Int8ActPerTensorFixedPointMSE', bfixed, 'int'),
                         ('Uint8ActPerTensorFixedPointMSE', bfixed, 'int'),
                         ('ShiftedUint8ActPerTensorFloatMSE', bshift, 'int'),
                         ('ShiftedUint8ActPerTensorFixedPointMSE', bshift, 'int'),
                         ('Fp8e4m3OCPActPerTensorFloatMSE', bocp, 'float'),
                         ('Fp8e5m2OCPActPerTensorFloatMSE', bocp, 'float')):
        q = getattr(mod, n)
        if 'Shifted' in n:
            # Brevitas's MSE zero point needs the dtype and device the layer usually provides
            q = q.let(dtype=torch.float32, device='cpu')
        A(n, P(n), q, kind=kind, desc=n)
    # 6. shifted MX
    W('ShiftedMXUInt8Weight', P('ShiftedMXUInt8Weight'), bmx.ShiftedMXUInt8Weight)

    # 2. unscaled minifloats and the float overrides
    for n in ('Fp8e4m3OCPWeight', 'Fp8e5m2OCPWeight'):
        W(n, P(n), getattr(bocp, n), kind='float', x_sets=unscaled_inputs)
    for n in ('Fp8e4m3Weight', 'Fp8e5m2Weight'):
        W(n, P(n), getattr(bfloat, n), kind='float', x_sets=unscaled_inputs)
    for n in ('Fp8e4m3OCPAct', 'Fp8e5m2OCPAct'):
        A(n, P(n), getattr(bocp, n), kind='float', mode='uncalibrated')
        A(n + '-special', P(n), getattr(bocp, n), kind='float', mode='uncalibrated', x='special')
    q, d = let(bocp.Fp8e4m3OCPWeight, saturating=False)
    W('Fp8e4m3OCPWeight-nonsaturating', dict(P('Fp8e4m3OCPWeight'), saturating=False), q, kind='float', desc=d,
      x_sets=unscaled_inputs)
    q, d = let(bocp.Fp8e5m2OCPWeight, saturating=False)
    W('Fp8e5m2OCPWeight-nonsaturating', dict(P('Fp8e5m2OCPWeight'), saturating=False), q, kind='float', desc=d,
      x_sets=unscaled_inputs)
    q, d = let(bocp.Fp8e4m3OCPAct, saturating=False)
    A('Fp8e4m3OCPAct-nonsaturating', dict(P('Fp8e4m3OCPAct'), saturating=False), q, kind='float', desc=d,
      mode='uncalibrated', x='special')
    q, d = let(bocp.Fp8e4m3OCPWeightPerTensorFloat, saturating=False)
    W('Fp8e4m3OCPWeightPerTensorFloat-nonsaturating', dict(P('Fp8e4m3OCPWeightPerTensorFloat'), saturating=False), q,
      kind='float', desc=d)
    q, d = let(bocp.Fp8e4m3OCPWeight, exponent_bias=4)
    W('Fp8e4m3OCPWeight-bias4', dict(P('Fp8e4m3OCPWeight'), exponent_bias=4), q, kind='float', desc=d,
      x_sets=unscaled_inputs)
    q, d = let(bfloat.Fp8e4m3Weight, exponent_bias=9)
    W('Fp8e4m3Weight-bias9', dict(P('Fp8e4m3Weight'), exponent_bias=9), q, kind='float', desc=d,
      x_sets=unscaled_inputs)
    q, d = let(bfloat.Fp8e4m3Weight, nan_values=('111', '110'), inf_values=('101',), saturating=False)
    W('Fp8e4m3Weight-codes', dict(P('Fp8e4m3Weight'), nan_values=['111', '110'], inf_values=['101'], saturating=False),
      q, kind='float', desc=d, x_sets=unscaled_inputs)
    q, d = let(bfloat.Fp8e5m2Weight, nan_values=('11',), inf_values=('10',), saturating=True)
    W('Fp8e5m2Weight-codes', dict(P('Fp8e5m2Weight'), nan_values=['11'], inf_values=['10']),
      q, kind='float', desc=d, x_sets=unscaled_inputs)
    q, d = let(bfloat.Fp8e4m3WeightPerTensorFloat, nan_values=('0',), saturating=True, bit_width=6,
               exponent_bit_width=4, mantissa_bit_width=1)
    W('Fp6e4m1WeightPerTensorFloat-codes', {'quant_type': 'float', 'float_format': 'generic', 'exponent_bit_width': 4,
                                            'mantissa_bit_width': 1, 'nan_values': ['0']}, q, kind='float', desc=d)

    # 3. weight statistics other than abs max and min-max; 8. weight percentiles
    for q_hi in (99.0, 90.0):
        q, d = let(bint.Int8WeightPerTensorFloat, scaling_stats_op=StatsOp.PERCENTILE, high_percentile_q=q_hi)
        W('Int8WeightPerTensorFloat-p%g' % q_hi, dict(P('Int8WeightPerTensorFloat'), percentile=q_hi), q, desc=d)
        q, d = let(bint.Int8WeightPerChannelFloat, scaling_stats_op=StatsOp.PERCENTILE, high_percentile_q=q_hi)
        W('Int8WeightPerChannelFloat-p%g' % q_hi, dict(P('Int8WeightPerChannelFloat'), scaling_stats_op='percentile',
                                                      percentile=q_hi), q, desc=d, x_sets=with_large)
    q, d = let(bint.Int8WeightPerTensorFloat, scaling_stats_op=StatsOp.AVE)
    W('Int8WeightPerTensorFloat-ave', dict(P('Int8WeightPerTensorFloat'), scaling_stats_op='ave'), q, desc=d, x_sets=with_large)
    q, d = let(bint.Int8WeightPerChannelFloat, scaling_stats_op=StatsOp.AVE)
    W('Int8WeightPerChannelFloat-ave', dict(P('Int8WeightPerChannelFloat'), scaling_stats_op='ave'), q, desc=d, x_sets=with_large)
    q, d = let(bint.Int8WeightPerTensorFloat, scaling_stats_op=StatsOp.MEAN_SIGMA_STD, sigma=3.0)
    W('Int8WeightPerTensorFloat-msd', dict(P('Int8WeightPerTensorFloat'), scaling_stats_op='mean_sigma_std', sigma=3.0),
      q, desc=d, x_sets=with_large)
    q, d = let(bint.Int8WeightPerChannelFloat, scaling_stats_op=StatsOp.MEAN_SIGMA_STD, sigma=2.0)
    W('Int8WeightPerChannelFloat-msd', dict(P('Int8WeightPerChannelFloat'), sigma=2.0), q, desc=d, x_sets=with_large)
    q, d = let(bshift.ShiftedUint8WeightPerTensorFloat, scaling_stats_op=StatsOp.PERCENTILE_INTERVAL,
               high_percentile_q=95.0, low_percentile_q=10.0)
    W('ShiftedUint8WeightPerTensorFloat-pi', dict(P('ShiftedUint8WeightPerTensorFloat'), percentile=95.0,
                                                  low_percentile=10.0), q, desc=d)
    q, d = let(bshift.ShiftedUint8WeightPerChannelFloat, scaling_stats_op=StatsOp.PERCENTILE_INTERVAL,
               high_percentile_q=99.0, low_percentile_q=1.0)
    W('ShiftedUint8WeightPerChannelFloat-pi', dict(P('ShiftedUint8WeightPerChannelFloat'), percentile=99.0), q,
      desc=d)
    q, d = let(bocp.Fp8e4m3OCPWeightPerChannelFloat, scaling_stats_op=StatsOp.PERCENTILE, high_percentile_q=99.0)
    W('Fp8e4m3OCPWeightPerChannelFloat-p99', dict(P('Fp8e4m3OCPWeightPerChannelFloat'), percentile=99.0), q,
      kind='float', desc=d)

    # 4. LOG_FP
    for n, mod, kind in (('Int8WeightPerTensorFloat', bint, 'int'), ('Int8WeightPerChannelFloat', bint, 'int'),
                         ('Fp8e4m3OCPWeightPerChannelFloat', bocp, 'float'),
                         ('ShiftedUint8WeightPerChannelFloat', bshift, 'int')):
        q, d = let(getattr(mod, n), restrict_scaling_type=RestrictValueType.LOG_FP)
        W(n + '-log_fp', dict(P(n), scale_type='log_fp'), q, kind=kind, desc=d)
    q, d = let(bint.Int8ActPerTensorFloat, restrict_scaling_type=RestrictValueType.LOG_FP)
    A('Int8ActPerTensorFloat-log_fp', dict(P('Int8ActPerTensorFloat'), scale_type='log_fp'), q, desc=d)

    # 5. activations without calibration
    for n, mod, kind in (('Int8ActPerTensorFloat', bint, 'int'), ('Uint8ActPerTensorFloat', bint, 'int'),
                         ('ShiftedUint8ActPerTensorFloat', bshift, 'int'), ('Int8ActPerTensorFixedPoint', bfixed, 'int'),
                         ('Uint8ActPerTensorFixedPoint', bfixed, 'int'), ('Fp8e4m3OCPActPerTensorFloat', bocp, 'float'),
                         ('Fp8e5m2OCPActPerTensorFloat', bocp, 'float'), ('Fp8e4m3FNUZActPerTensorFloat', bfnuz, 'float')):
        A(n + '-uncalibrated', P(n), getattr(mod, n), kind=kind, mode='uncalibrated')

    # 6. dynamic activations: MX blocks, and the LLM examples' per tensor / row / group
    for n, q, kind in (('MXFloat8e4m3Act', bmx.MXFloat8e4m3Act, 'float'), ('MXInt8Act', bmx.MXInt8Act, 'int')):
        q, d = let(q, group_dim=-1)
        A(n, P(n), q, kind=kind, mode='dynamic', desc=d)
    q, d = let(bmx.MXFloat8e4m3Act, group_dim=-1, bit_width=4, exponent_bit_width=2, mantissa_bit_width=1)
    A('MXFloat4e2m1Act', P('MXFloat4e2m1Act'), q, kind='float', mode='dynamic', desc=d)
    q, d = let(bmx.MXFloat8e4m3Act, group_dim=-1, bit_width=6, exponent_bit_width=3, mantissa_bit_width=2)
    A('MXFloat6e3m2Act', dict(P('MXFloat8e4m3Act'), exponent_bit_width=3, mantissa_bit_width=2), q, kind='float',
      mode='dynamic', desc=d)
    for n in ('Int8DynamicActPerTensorFloat', 'ShiftedUint8DynamicActPerTensorFloat',
              'Fp8e4m3FNUZDynamicActPerTensorFloat'):
        A(n, P(n), getattr(bgen, n), kind='float' if 'Fp8' in n or 'FP8' in n else 'int', mode='dynamic')
    for n in ('Int8DynamicActPerRowFloat', 'Int8DynamicActPerRowFixedPoint', 'ShiftedUint8DynamicActPerRowFloat',
              'FP8e4m3OCPDynamicActPerRowFloat', 'FP8e4m3OCPDynamicActPerRowFixedPoint'):
        # per row (token) as the LLM example sets it up (quantize.py, input_quant_granularity 'per_row')
        q = getattr(bgen, n).let(dynamic_scaling_broadcastable_fn=lambda x, shape: x.view(*shape[:-1], 1),
                                 permute_dims=None, stats_reduce_dim=1)
        A(n, P(n), q, kind='float' if 'FP8' in n else 'int', mode='dynamic', x='act3d',
          desc=n + '(per row as in brevitas_examples/common/generative/quantize.py)')
    # (ShiftedUint8DynamicActPerGroupFloat fails inside Brevitas at this commit: its zero point does not broadcast)
    for n in ('Int8DynamicActPerGroupFloat', 'Fp8e4m3OCPDynamicActPerGroupFloat'):
        q, d = let(getattr(bgen, n), group_dim=-1, group_size=16)
        A(n, dict(P(n), group_size=16), q, kind='float' if 'Fp8' in n else 'int', mode='dynamic', desc=d, x='act3d')

    # generic unscaled activations, generic dynamic groups
    for n in ('Fp8e4m3Act', 'Fp8e5m2Act'):
        A(n, P(n), getattr(bfloat, n), kind='float', mode='uncalibrated', x='wide_act')
    q, d = let(bgen.Fp8e4m3DynamicActPerGroupFloat, group_dim=-1, group_size=16)
    A('Fp8e4m3DynamicActPerGroupFloat', dict(P('Fp8e4m3DynamicActPerGroupFloat'), group_size=16), q, kind='float',
      mode='dynamic', desc=d, x='act3d')

    # biases: s = input scale * weight scale, in a layer calibrated on the case's batches
    for w, a, b in (('Int8WeightPerTensorFloat', 'Int8ActPerTensorFloat', 'Int32Bias'),
                    ('Int8WeightPerChannelFloat', 'Int8ActPerTensorFloat', 'Int16Bias'),
                    ('Int8WeightPerChannelFixedPoint', 'Int8ActPerTensorFixedPoint', 'Int8Bias'),
                    ('Int8WeightPerTensorFloat', 'Uint8ActPerTensorFloat', 'Int24Bias')):
        mods = {n: m for m in (bint, bfixed) for n in (w, a, b) if hasattr(m, n)}
        CASES.append(dict(name='%s+%s+%s' % (w, a, b), role='bias', spec={'weight': P(w), 'input_tensors': P(a),
                                                                         'bias': P(b)},
                          quant=(getattr(mods[w], w), getattr(mods[a], a), getattr(mods[b], b)), kind='int',
                          x_sets=None, mode='calibrated', act_kw={}, desc='QuantLinear(%s, %s, %s)' % (w, a, b)))

    # NaN and infinities in weights
    for n, mod, kind in (('Int8WeightPerTensorFloat', bint, 'int'), ('Int8WeightPerChannelFloat', bint, 'int'),
                         ('ShiftedUint8WeightPerChannelFloat', bshift, 'int'),
                         ('Int8WeightPerChannelFixedPoint', bfixed, 'int'),
                         ('Fp8e4m3OCPWeightPerChannelFloat', bocp, 'float'), ('MXInt8Weight', bmx, 'int'),
                         ('MXFloat8e4m3Weight', bmx, 'float')):
        W(n + '-nonfinite', P(n), getattr(mod, n), kind=kind, x_sets=nonfinite_inputs)

    # 7. infinities and NaN in float activations
    for n, mod in (('Fp8e4m3OCPActPerTensorFloat', bocp), ('Fp8e5m2OCPActPerTensorFloat', bocp),
                   ('Fp8e4m3FNUZActPerTensorFloat', bfnuz)):
        A(n + '-special', P(n), getattr(mod, n), kind='float', x='special')
    A('Int8ActPerTensorFloat-inf', P('Int8ActPerTensorFloat'), bint.Int8ActPerTensorFloat, x='inf')
    A('ShiftedUint8ActPerTensorFloat-inf', P('ShiftedUint8ActPerTensorFloat'), bshift.ShiftedUint8ActPerTensorFloat,
      x='inf')


INPUTS = {}


def share(name, x):
    """The name of input @x in the file's table of inputs (written once)."""
    key = '%s-%s' % (name, 'x'.join(str(d) for d in x.shape))
    entry = dict(shape=list(x.shape), x=bits(x))
    assert INPUTS.setdefault(key, entry) == entry, key
    return key


def bias_case(c):
    rng = np.random.default_rng(2024)
    w = (rng.standard_normal((4, 64)) * 0.1).astype(np.float32)
    b = (rng.standard_normal((1, 4)) * np.float32(0.05)).astype(np.float32)
    b[0, 0] = 1e-6
    calib = batches()
    wq, aq, bq = c['quant']
    layer = QuantLinear(64, 4, bias=True, weight_quant=wq, input_quant=aq, bias_quant=bq)
    layer.weight.data = torch.from_numpy(w.copy())
    layer.bias.data = torch.from_numpy(b.reshape(-1).copy())
    with torch.no_grad():
        layer.train()
        with calibration_mode(layer):
            for x in calib:
                layer(torch.from_numpy(x))
        layer.eval()
        xq = layer.input_quant(torch.from_numpy(calib[0]))
        qt = layer.bias_quant(layer.bias, xq, layer.quant_weight())
    r = dict(name=c['name'], role='bias', spec=c['spec'], brevitas=c['desc'], mode='calibrated',
             weight=share('bias_weight', w), input=share('bias', b),
             calibration=[share('batch%d' % i, x) for i, x in enumerate(calib)])
    r.update(record(qt, 'int'))
    return [r]


def run_case(c):
    out = []
    if c['role'] == 'bias':
        return bias_case(c)
    if c['role'] == 'weight':
        sets = inputs() if c['x_sets'] is None else c['x_sets']()
        for xname, x in sets:
            qt = weight_case(c['quant'], x)
            r = dict(name='%s/%s' % (c['name'], xname), role='weight', spec=c['spec'], brevitas=c['desc'],
                     input=share(xname, x))
            r.update(record(qt, c['kind']))
            out.append(r)
        return out
    x = {'act': act_inputs, 'special': special_inputs, 'inf': inf_inputs, 'act3d': act3d_inputs,
         'wide_act': lambda: unscaled_inputs()[0][1]}[c['x_sets']]()
    calib = batches() if c['mode'] == 'calibrated' else []
    qt = act_case(c['quant'], x, c['mode'], calib, c['act_kw'])
    xname = c['x_sets']
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
    failed = False
    for c in CASES:
        if only and not any(o in c['name'] for o in only):
            continue
        try:
            vectors.extend(run_case(c))
        except Exception as e:  # a case Brevitas itself cannot run is a bug in this script
            sys.stderr.write('case %s (%s): %s: %s\n' % (c['name'], c['desc'], type(e).__name__, e))
            failed = True
    json.dump({'generator': 'tests/brevitas/generate-vectors.py',
               'brevitas_commit': BREVITAS_COMMIT,
               'torch': torch.__version__,
               'inputs': INPUTS,
               'cases': vectors}, sys.stdout, indent=None, separators=(',', ':'))
    sys.stdout.write('\n')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
