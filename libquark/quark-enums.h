/* quark-enums.h: enumerations shared by every backend
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-version-macros.h"

G_BEGIN_DECLS

/**
 * QuarkRole:
 * @QUARK_ROLE_WEIGHT: a layer's weight
 * @QUARK_ROLE_INPUT: a layer's input activation
 * @QUARK_ROLE_OUTPUT: a layer's output activation
 * @QUARK_ROLE_BIAS: a layer's bias
 *
 * The tensor of a layer a #QuarkTensorSpec applies to. The nicks ("weight",
 * "input", "output", "bias") name roles in configs and tools.
 */
typedef enum {
  QUARK_ROLE_WEIGHT, /*< nick=weight >*/
  QUARK_ROLE_INPUT,  /*< nick=input >*/
  QUARK_ROLE_OUTPUT, /*< nick=output >*/
  QUARK_ROLE_BIAS,   /*< nick=bias >*/
} QuarkRole;

/**
 * QuarkQScheme:
 * @QUARK_QSCHEME_PER_TENSOR: one scale (and zero point) for the whole tensor
 * @QUARK_QSCHEME_PER_CHANNEL: one per index of the channel axis
 * @QUARK_QSCHEME_PER_GROUP: one per group of consecutive elements along the
 *   channel axis
 * @QUARK_QSCHEME_PER_BLOCK: one per two-dimensional block
 *
 * Granularity of the quantization parameters.
 */
typedef enum {
  QUARK_QSCHEME_PER_TENSOR,  /*< nick=per_tensor >*/
  QUARK_QSCHEME_PER_CHANNEL, /*< nick=per_channel >*/
  QUARK_QSCHEME_PER_GROUP,   /*< nick=per_group >*/
  QUARK_QSCHEME_PER_BLOCK,   /*< nick=per_block >*/
} QuarkQScheme;

/**
 * QuarkRoundMode:
 * @QUARK_ROUND_HALF_EVEN: nearest, ties to even (the default everywhere)
 * @QUARK_ROUND_HALF_UP: floor (v + 0.5)
 * @QUARK_ROUND_HALF_AWAY: nearest, ties away from zero (C `round()`)
 * @QUARK_ROUND_FLOOR: toward negative infinity
 * @QUARK_ROUND_CEIL: toward positive infinity
 * @QUARK_ROUND_TOWARD_ZERO: toward zero
 * @QUARK_ROUND_STOCHASTIC: floor plus a seeded Bernoulli draw of the fraction
 * @QUARK_ROUND_DPU: nearest, ties to even, except that negative exact halves
 *   go toward +∞ (Brevitas's DPU mode)
 *
 * How a scaled value becomes an integer code. The table of the numerics
 * reference (section 1.3) defines each mode exactly.
 */
typedef enum {
  QUARK_ROUND_HALF_EVEN,   /*< nick=half_even >*/
  QUARK_ROUND_HALF_UP,     /*< nick=half_up >*/
  QUARK_ROUND_HALF_AWAY,   /*< nick=half_away >*/
  QUARK_ROUND_FLOOR,       /*< nick=floor >*/
  QUARK_ROUND_CEIL,        /*< nick=ceil >*/
  QUARK_ROUND_TOWARD_ZERO, /*< nick=toward_zero >*/
  QUARK_ROUND_STOCHASTIC,  /*< nick=stochastic >*/
  QUARK_ROUND_DPU,         /*< nick=dpu >*/
} QuarkRoundMode;

/**
 * QuarkQuantOrder:
 * @QUARK_QUANT_ORDER_QUARK: q = clamp (R (fl (x · fl (1/s)) + z)): the
 *   reciprocal multiplied, the zero point added before rounding (AMD
 *   Quark's real quantization, the default)
 * @QUARK_QUANT_ORDER_BREVITAS: q = clamp (R (fl (x / s) + z)): true
 *   division, the zero point added before rounding (Brevitas)
 * @QUARK_QUANT_ORDER_TORCH: q = clamp (R (fl (x · fl (1/s))) + z): the zero
 *   point added after rounding (PyTorch's `fake_quantize_per_*_affine`,
 *   AMD Quark's per-channel and per-group fake quantization)
 *
 * The float32 order in which an activation is scaled, shifted and rounded
 * by quark_tensor_spec_fake_quantize(). The three agree in exact
 * arithmetic; in float32 they differ at values whose scaled form lands
 * within rounding error of a .5 tie (docs/numerics.md).
 */
typedef enum {
  QUARK_QUANT_ORDER_QUARK,     /*< nick=quark >*/
  QUARK_QUANT_ORDER_BREVITAS,  /*< nick=brevitas >*/
  QUARK_QUANT_ORDER_TORCH,     /*< nick=torch >*/
} QuarkQuantOrder;

/**
 * QuarkScaleType:
 * @QUARK_SCALE_FLOAT: any positive float scale
 * @QUARK_SCALE_POW2: scales restricted to powers of two
 *
 * What values a scale may take.
 */
typedef enum {
  QUARK_SCALE_FLOAT, /*< nick=float >*/
  QUARK_SCALE_POW2,  /*< nick=pof2 >*/
} QuarkScaleType;

/**
 * QuarkScaleFormat:
 * @QUARK_SCALE_FORMAT_FLOAT32: binary32 scales
 * @QUARK_SCALE_FORMAT_E8M0: E8M0 power-of-two scales of OCP MX blocks
 * @QUARK_SCALE_FORMAT_E5M3: unsigned E5M3 minifloat scales (bias 15, largest
 *   114688), as AMD Quark's FP4 spec with group scales stores them
 * @QUARK_SCALE_FORMAT_E4M3: NVFP4's two-level scales: FP8 E4M3 group scales
 *   over a float32 per-tensor global scale (effective scale = E4M3 value /
 *   global scale)
 *
 * How scales are stored.
 */
typedef enum {
  QUARK_SCALE_FORMAT_FLOAT32, /*< nick=float32 >*/
  QUARK_SCALE_FORMAT_E8M0,    /*< nick=e8m0 >*/
  QUARK_SCALE_FORMAT_E5M3,    /*< nick=e5m3 >*/
  QUARK_SCALE_FORMAT_E4M3,    /*< nick=e4m3 >*/
} QuarkScaleFormat;

/**
 * QuarkMxScaleMode:
 * @QUARK_MX_SCALE_FLOOR: X = 2^(floor(log2 amax) − emax), the OCP baseline
 * @QUARK_MX_SCALE_EVEN: AMD Quark's "even": amax rounded up at the element's
 *   mantissa width before the floor, so the block maximum rounds instead of
 *   saturating
 * @QUARK_MX_SCALE_CEIL: X = 2^(ceil(log2 amax) − emax)
 *
 * How the shared exponent of an MX block is chosen (a spec's
 * `scale_calculation_mode`).
 */
typedef enum {
  QUARK_MX_SCALE_FLOOR, /*< nick=floor >*/
  QUARK_MX_SCALE_EVEN,  /*< nick=even >*/
  QUARK_MX_SCALE_CEIL,  /*< nick=ceil >*/
} QuarkMxScaleMode;

/**
 * QuarkObserver:
 * @QUARK_OBSERVER_MIN_MAX: the minimum and maximum
 * @QUARK_OBSERVER_PERCENTILE: the exact percentile of |x| (the k-th smallest,
 *   k = floor (0.01 · q · n + 0.5))
 * @QUARK_OBSERVER_HISTOGRAM_PERCENTILE: a percentile of |x| read from a
 *   4200-bin histogram that skips zeros (AMD Quark's form)
 * @QUARK_OBSERVER_MSE: the statistic among 19 candidates below the absolute
 *   maximum that minimizes the squared quantization error (weights); for
 *   activations, the range among 2048 shrinkings of the observed one that
 *   minimizes the expected squared error over the calibration histogram
 * @QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX: activations only: the exponential
 *   moving average of each batch's minimum and maximum (averaging constant
 *   0.01, the first batch taken as is)
 * @QUARK_OBSERVER_KL: activations only: the threshold that minimizes the
 *   Kullback-Leibler divergence between the calibration histogram of |x|
 *   and its quantized form (entropy calibration); integer specs only
 *
 * Which statistic of a tensor sets its range. The percentile observers use
 * the spec's #QuarkTensorSpec:percentile.
 */
typedef enum {
  QUARK_OBSERVER_MIN_MAX,              /*< nick=min_max >*/
  QUARK_OBSERVER_PERCENTILE,           /*< nick=percentile >*/
  QUARK_OBSERVER_HISTOGRAM_PERCENTILE, /*< nick=histogram_percentile >*/
  QUARK_OBSERVER_MSE,                  /*< nick=mse >*/
  QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX, /*< nick=moving_average_min_max >*/
  QUARK_OBSERVER_KL,                   /*< nick=kl >*/
} QuarkObserver;

/**
 * QuarkSequentialSteps:
 * @QUARK_SEQUENTIAL_STEPS_LAYER: all linear layers of a decoder layer are
 *   observed with the float layer and quantized together
 * @QUARK_SEQUENTIAL_STEPS_BLOCKS: the attention block (q, k, v and o_proj,
 *   with the norm before them), then the MLP block (gate, up and
 *   down_proj, with theirs), whose inputs then come through the quantized
 *   attention
 * @QUARK_SEQUENTIAL_STEPS_LINEARS: q/k/v_proj, then o_proj, then
 *   gate/up_proj, then down_proj, each observed through the ones quantized
 *   before it; for quantizers that fold nothing from one into another
 *   (AWQ's v → o and up → down groups need both of a pair in one step)
 *
 * How [method@Quark.Executor.calibrate_sequential] steps through a decoder
 * layer ([property@Quark.Executor:sequential-steps]).
 */
typedef enum {
  QUARK_SEQUENTIAL_STEPS_LAYER,   /*< nick=layer >*/
  QUARK_SEQUENTIAL_STEPS_BLOCKS,  /*< nick=blocks >*/
  QUARK_SEQUENTIAL_STEPS_LINEARS, /*< nick=linears >*/
} QuarkSequentialSteps;

/**
 * QuarkCodeLayout:
 * @QUARK_CODE_LAYOUT_BYTES: one code per element, in the element size of
 *   its dtype, in the weight's shape (the logical layout)
 * @QUARK_CODE_LAYOUT_INT4_COLUMNS: int4 or uint4 codes of a 2-D weight
 *   [out, in], eight to an int32 along the output channels: an int32
 *   tensor [in, out / 8] whose word (c, w) holds codes (8w + k, c) in
 *   nibble k, nibble 0 the least significant (quark_kernel_pack_int4_columns())
 * @QUARK_CODE_LAYOUT_INT4_COLUMNS_REORDERED: the same with the AutoAWQ
 *   interleave: nibble k holds code (8w + {0, 2, 4, 6, 1, 3, 5, 7}[k], c)
 * @QUARK_CODE_LAYOUT_INT4_ROWS: int4 or uint4 codes of a 2-D weight
 *   [out, in], eight to an int32 along each row: an int32 tensor
 *   [out, in / 8] whose word (r, w) holds code (r, 8w + k) in nibble k,
 *   nibble 0 the least significant (quark_kernel_pack_int4())
 * @QUARK_CODE_LAYOUT_UINT8_ROWS: int8 or uint8 codes of a 2-D weight
 *   [out, in], in a multiple of 4, as unsigned bytes four to an int32
 *   along each row: an int32 tensor [out, in / 4] whose word (r, w) holds
 *   in byte k, byte 0 the least significant, code (r, 4w + k) plus 128
 *   for int8 codes (their top bit flipped) and as it is for uint8 codes
 *   (compressed-tensors' 8-bit `pack-quantized` words)
 * @QUARK_CODE_LAYOUT_UINT4_ROWS: int4 or uint4 codes of a 2-D weight
 *   [out, in] as unsigned nibbles eight to an int32 along each row: the
 *   words of %QUARK_CODE_LAYOUT_INT4_ROWS with each int4 code's nibble
 *   holding q + 8 (its top bit flipped) and each uint4 code's as it is
 *   (compressed-tensors' 4-bit `pack-quantized` words)
 *
 * The layout a checkpoint format stores a weight's codes in, when a
 * backend can write them so directly
 * ([method@Quark.CheckpointFormat.get_code_layout]).
 */
typedef enum {
  QUARK_CODE_LAYOUT_BYTES,                 /*< nick=bytes >*/
  QUARK_CODE_LAYOUT_INT4_COLUMNS,          /*< nick=int4_columns >*/
  QUARK_CODE_LAYOUT_INT4_COLUMNS_REORDERED, /*< nick=int4_columns_reordered >*/
  QUARK_CODE_LAYOUT_INT4_ROWS,             /*< nick=int4_rows >*/
  QUARK_CODE_LAYOUT_UINT8_ROWS,            /*< nick=uint8_rows >*/
  QUARK_CODE_LAYOUT_UINT4_ROWS,            /*< nick=uint4_rows >*/
} QuarkCodeLayout;

G_END_DECLS
