/* quark-kernels.h: tensor kernels (plain C)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The arithmetic of libquark lives here, in plain C with no GObject
 * machinery, so that backends and tools share one implementation of each
 * numeric rule. Every kernel with a vector path also exports its scalar
 * reference path (suffix _scalar); the two produce identical bits, which the
 * test suite checks.
 *
 * Numerics follow the libquark numeric reference: inputs are converted to
 * binary32 first, every operation is a binary32 operation rounded to nearest
 * even, and no multiply-add is contracted.
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "../quark-dtype.h"

G_BEGIN_DECLS

/* Element conversion ----------------------------------------------------- */

QUARK_AVAILABLE_IN_1_0
float    quark_kernel_f16_to_f32                (uint16_t      bits);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_bf16_to_f32               (uint16_t      bits);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_convert_to_f32            (QuarkDType    src_dtype,
                                                 const void   *src,
                                                 float        *dst,
                                                 size_t        n);

/* Statistics ---------------------------------------------------------------- */

QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_min_max_f32               (const float  *x,
                                                 size_t        n,
                                                 float        *min,
                                                 float        *max);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_min_max_f32_scalar        (const float  *x,
                                                 size_t        n,
                                                 float        *min,
                                                 float        *max);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_channel_min_max_f32       (const float  *x,
                                                 size_t        outer,
                                                 size_t        channels,
                                                 size_t        inner,
                                                 float        *mins,
                                                 float        *maxs);

/* Integer quantization ------------------------------------------------------ */

/**
 * QuarkKernelIntParams:
 * @inv_scale: the binary32 reciprocal of the scale, fl(1 / s)
 * @scale: the scale s (for dequantization)
 * @zero_point: the zero point z, an integer held in a float
 * @qmin: smallest code
 * @qmax: largest code
 *
 * Parameters of affine integer quantization with a zero point added before
 * rounding: q = clamp (rne (fl (fl (x * inv_scale) + z)), qmin, qmax).
 */
typedef struct {
  float   inv_scale;
  float   scale;
  float   zero_point;
  int32_t qmin;
  int32_t qmax;
} QuarkKernelIntParams;

QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_quantize_int_f32          (const float                *x,
                                                 size_t                      n,
                                                 const QuarkKernelIntParams *params,
                                                 QuarkDType                  out_dtype,
                                                 void                       *out);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_quantize_int_f32_scalar   (const float                *x,
                                                 size_t                      n,
                                                 const QuarkKernelIntParams *params,
                                                 QuarkDType                  out_dtype,
                                                 void                       *out);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_dequantize_int_f32        (const void                 *q,
                                                 QuarkDType                  q_dtype,
                                                 size_t                      n,
                                                 float                       scale,
                                                 int32_t                     zero_point,
                                                 float                      *out);

G_END_DECLS
