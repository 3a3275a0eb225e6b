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
#error "Only <quark/quark-kernels.h> can be included directly."
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "../quark-dtype.h"
#include "../quark-enums.h"

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
bool     quark_kernel_min_max_bf16              (const uint16_t *x,
                                                 size_t          n,
                                                 float          *min,
                                                 float          *max);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_abs_max_f32               (const float    *x,
                                                 size_t          n,
                                                 float          *amax);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_abs_max_bf16              (const uint16_t *x,
                                                 size_t          n,
                                                 float          *amax);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_group_abs_max_f32         (const float    *x,
                                                 size_t          n,
                                                 size_t          group,
                                                 float          *amax);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_group_abs_max_bf16        (const uint16_t *x,
                                                 size_t          n,
                                                 size_t          group,
                                                 float          *amax);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_group_min_max_bf16        (const uint16_t *x,
                                                 size_t          n,
                                                 size_t          group,
                                                 float          *min,
                                                 float          *max);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_group_min_max_f32         (const float    *x,
                                                 size_t          n,
                                                 size_t          group,
                                                 float          *min,
                                                 float          *max);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_channel_min_max_f32       (const float  *x,
                                                 size_t        outer,
                                                 size_t        channels,
                                                 size_t        inner,
                                                 float        *mins,
                                                 float        *maxs);

/* Parameter layouts ------------------------------------------------------------ */

/**
 * QuarkKernelLayout:
 * @qscheme: the granularity
 * @n: the number of elements
 * @n_params: the number of parameter sets (scales)
 * @outer: per channel: product of the dimensions before the channel axis
 * @channels: per channel: length of the channel axis
 * @inner: per channel: product of the dimensions after the channel axis
 * @rows: per group: product of the dimensions before the last axis
 * @cols: per group: length of the last axis
 * @group: per group: elements per group (the last group of a row may be
 *   shorter); per block: columns per block
 * @block_rows: per block: rows per block (the last blocks may be smaller)
 * @matrix_rows: per block: rows of each matrix (the second-to-last
 *   dimension); @cols is its columns
 * @param_shape: the shape of the scale tensor: [] per tensor, [C] per
 *   channel, the tensor's shape with the last dimension replaced by the
 *   number of groups per group, and with the last two replaced by the
 *   number of blocks along each per block
 * @param_n_dims: the number of dimensions of @param_shape
 *
 * How the elements of a tensor map to sets of quantization parameters.
 */
typedef struct {
  QuarkQScheme qscheme;
  size_t n;
  size_t n_params;
  size_t outer, channels, inner;
  size_t rows, cols, group;
  size_t block_rows, matrix_rows;
  int64_t param_shape[8];
  unsigned param_n_dims;
} QuarkKernelLayout;

/**
 * QuarkKernelChunkFunc:
 * @offset: the first element of the run
 * @len: the number of elements
 * @data: user data
 *
 * Called for each contiguous run of the elements of one parameter set.
 */
typedef void (*QuarkKernelChunkFunc) (size_t offset, size_t len, void *data);

QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_layout_init               (QuarkKernelLayout    *layout,
                                                 const int64_t        *shape,
                                                 unsigned              n_dims,
                                                 QuarkQScheme          qscheme,
                                                 int                   axis,
                                                 int                   group_size);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_layout_init_blocks        (QuarkKernelLayout    *layout,
                                                 const int64_t        *shape,
                                                 unsigned              n_dims,
                                                 int                   block_rows,
                                                 int                   block_cols);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_layout_foreach_chunk      (const QuarkKernelLayout *layout,
                                                 size_t                param,
                                                 QuarkKernelChunkFunc  func,
                                                 void                 *data);
QUARK_AVAILABLE_IN_1_0
size_t   quark_kernel_layout_gather_f32         (const QuarkKernelLayout *layout,
                                                 size_t                param,
                                                 const float          *x,
                                                 float                *out);

/* Observers ---------------------------------------------------------------------- */

QUARK_AVAILABLE_IN_1_0
float    quark_kernel_abs_percentile_f32        (const float          *x,
                                                 size_t                n,
                                                 double                percentile,
                                                 float                *scratch);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_abs_histogram_percentile_f32 (const float       *x,
                                                 size_t                n,
                                                 double                percentile,
                                                 unsigned              bins);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_mse_search_int_f32        (const float          *x,
                                                 size_t                n,
                                                 float                 init,
                                                 float                 threshold,
                                                 int32_t               qmin,
                                                 int32_t               qmax,
                                                 bool                  divide);

QUARK_AVAILABLE_IN_1_0
void     quark_kernel_percentile_interval_f32   (const float          *x,
                                                 size_t                n,
                                                 double                low_percentile,
                                                 double                high_percentile,
                                                 float                *scratch,
                                                 float                *low,
                                                 float                *high);

/* Integer quantization ------------------------------------------------------ */

/**
 * QuarkKernelIntParams:
 * @inv_scale: the binary32 reciprocal of the scale, fl(1 / s)
 * @scale: the scale s (for dequantization)
 * @zero_point: the zero point z, an integer held in a float
 * @qmin: smallest code
 * @qmax: largest code
 * @round: the rounding mode (0, the default, is half to even)
 * @seed: the seed of %QUARK_ROUND_STOCHASTIC
 * @offset: the index of the first element in the seeded stream, so that a
 *   tensor quantized in pieces draws the same numbers as in one call
 * @divide: divide by @scale instead of multiplying by @inv_scale (Brevitas's
 *   order, fl (x / s))
 *
 * Parameters of affine integer quantization with a zero point added before
 * rounding: q = clamp (R (fl (fl (x * inv_scale) + z)), qmin, qmax), or
 * with @divide, q = clamp (R (fl (fl (x / scale) + z)), qmin, qmax).
 */
typedef struct {
  float          inv_scale;
  float          scale;
  float          zero_point;
  int32_t        qmin;
  int32_t        qmax;
  QuarkRoundMode round;
  uint64_t       seed;
  uint64_t       offset;
  bool           divide;
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
double   quark_kernel_int_sq_error_f32          (const float                *x,
                                                 size_t                      n,
                                                 const QuarkKernelIntParams *params);
QUARK_AVAILABLE_IN_1_0
double   quark_kernel_int_sq_error_f32_scalar   (const float                *x,
                                                 size_t                      n,
                                                 const QuarkKernelIntParams *params);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_quantize_int_bf16         (const uint16_t             *x,
                                                 size_t                      n,
                                                 const QuarkKernelIntParams *params,
                                                 QuarkDType                  out_dtype,
                                                 void                       *out);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_quantize_int_groups_f32   (const float                *x,
                                                 size_t                      n,
                                                 size_t                      group,
                                                 const QuarkKernelIntParams *params,
                                                 const float                *scales,
                                                 const float                *zero_points,
                                                 QuarkDType                  out_dtype,
                                                 void                       *out);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_quantize_int_groups_bf16  (const uint16_t             *x,
                                                 size_t                      n,
                                                 size_t                      group,
                                                 const QuarkKernelIntParams *params,
                                                 const float                *scales,
                                                 const float                *zero_points,
                                                 QuarkDType                  out_dtype,
                                                 void                       *out);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_quantize_pack_int4_groups_bf16 (const uint16_t             *x,
                                                      size_t                      n,
                                                      size_t                      group,
                                                      const QuarkKernelIntParams *params,
                                                      const float                *scales,
                                                      const float                *zero_points,
                                                      QuarkDType                  dtype,
                                                      bool                        reorder,
                                                      int32_t                    *words);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_dequantize_int_f32        (const void                 *q,
                                                 QuarkDType                  q_dtype,
                                                 size_t                      n,
                                                 float                       scale,
                                                 int32_t                     zero_point,
                                                 float                      *out);

/**
 * QuarkPow2Rounding:
 * @QUARK_POW2_ROUND: the nearest power of two in the log domain (AMD Quark:
 *   pos = rne (−log2 s))
 * @QUARK_POW2_CEIL: the next power of two at or above
 * @QUARK_POW2_FLOOR: the next power of two at or below
 *
 * How a scale is restricted to a power of two.
 */
typedef enum {
  QUARK_POW2_ROUND,
  QUARK_POW2_CEIL,
  QUARK_POW2_FLOOR,
} QuarkPow2Rounding;

QUARK_AVAILABLE_IN_1_0
void     quark_kernel_int_group_params_f32      (const float          *min,
                                                 const float          *max,
                                                 size_t                n,
                                                 bool                  symmetric,
                                                 int32_t               qmin,
                                                 int32_t               qmax,
                                                 float                 eps,
                                                 float                *scales,
                                                 float                *zero_points);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_int_group_params_f32_scalar (const float        *min,
                                                   const float        *max,
                                                   size_t              n,
                                                   bool                symmetric,
                                                   int32_t             qmin,
                                                   int32_t             qmax,
                                                   float               eps,
                                                   float              *scales,
                                                   float              *zero_points);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_pow2_scale                (float                 scale,
                                                 QuarkPow2Rounding     rounding);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_round                     (float                 v,
                                                 QuarkRoundMode        mode,
                                                 uint64_t              seed,
                                                 uint64_t              index);

/* Minifloats and IEEE half formats --------------------------------------------- */

/**
 * QuarkFpSpecials:
 * @QUARK_FP_SPECIALS_NONE: every code is a finite number (FP4, FP6)
 * @QUARK_FP_SPECIALS_IEEE: the all-ones exponent holds infinities (mantissa
 *   0) and NaNs (other mantissas): FP8 E5M2, binary16, bfloat16
 * @QUARK_FP_SPECIALS_FN: only the all-ones code S.1…1.1…1 is NaN; no
 *   infinities (OCP FP8 E4M3, "fn")
 * @QUARK_FP_SPECIALS_FNUZ: the negative-zero code is the single NaN; no
 *   infinities, no negative zero (AMD FP8 "fnuz")
 *
 * Which codes of a float format are not finite numbers.
 */
typedef enum {
  QUARK_FP_SPECIALS_NONE,
  QUARK_FP_SPECIALS_IEEE,
  QUARK_FP_SPECIALS_FN,
  QUARK_FP_SPECIALS_FNUZ,
} QuarkFpSpecials;

/**
 * QuarkFpFormat:
 * @ebits: exponent bits (1 to 8)
 * @mbits: mantissa bits (0 to 10)
 * @bias: exponent bias
 * @specials: which codes are Inf or NaN
 *
 * A signed binary floating-point format of at most 16 bits: a sign bit, then
 * @ebits of biased exponent, then @mbits of mantissa. A zero exponent field
 * is subnormal: value = ±2^(1 − bias) · mantissa / 2^mbits.
 */
typedef struct {
  uint8_t ebits;
  uint8_t mbits;
  int16_t bias;
  QuarkFpSpecials specials;
} QuarkFpFormat;

QUARK_AVAILABLE_IN_1_0
const QuarkFpFormat *quark_fp_format_for_dtype  (QuarkDType            dtype);
QUARK_AVAILABLE_IN_1_0
double   quark_fp_format_max                    (const QuarkFpFormat  *format);
QUARK_AVAILABLE_IN_1_0
double   quark_fp_format_min_subnormal          (const QuarkFpFormat  *format);
QUARK_AVAILABLE_IN_1_0
uint16_t quark_fp_format_nan_code               (const QuarkFpFormat  *format);
QUARK_AVAILABLE_IN_1_0
uint16_t quark_kernel_fp_encode                 (const QuarkFpFormat  *format,
                                                 double                x,
                                                 bool                  saturate);
QUARK_AVAILABLE_IN_1_0
double   quark_kernel_fp_decode                 (const QuarkFpFormat  *format,
                                                 uint16_t              code);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_fp_quantize_f32           (const QuarkFpFormat  *format,
                                                 const float          *x,
                                                 size_t                n,
                                                 float                 scale,
                                                 uint8_t              *codes);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_fp_quantize_f32_scalar    (const QuarkFpFormat  *format,
                                                 const float          *x,
                                                 size_t                n,
                                                 float                 scale,
                                                 uint8_t              *codes);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_fp_quantize_bf16          (const QuarkFpFormat  *format,
                                                 const uint16_t       *x,
                                                 size_t                n,
                                                 float                 scale,
                                                 uint8_t              *codes);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_fp_quantize_blocks_bf16   (const QuarkFpFormat  *format,
                                                 const uint16_t       *x,
                                                 size_t                n,
                                                 size_t                block,
                                                 const float          *scales,
                                                 uint8_t              *codes);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_fp_quantize_blocks_f32    (const QuarkFpFormat  *format,
                                                 const float          *x,
                                                 size_t                n,
                                                 size_t                block,
                                                 const float          *scales,
                                                 uint8_t              *codes);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_fp_dequantize_f32         (const QuarkFpFormat  *format,
                                                 const uint8_t        *codes,
                                                 size_t                n,
                                                 float                 scale,
                                                 float                *out);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_convert_from_f32          (QuarkDType            dst_dtype,
                                                 const float          *src,
                                                 void                 *dst,
                                                 size_t                n);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_convert_from_f64          (QuarkDType            dst_dtype,
                                                 const double         *src,
                                                 void                 *dst,
                                                 size_t                n);

/* OCP microscaling (MX) -------------------------------------------------------- */

/**
 * QuarkMxParams:
 * @element: the element type: %QUARK_DTYPE_F8_E4M3, %QUARK_DTYPE_F8_E5M2,
 *   %QUARK_DTYPE_FP6_E2M3, %QUARK_DTYPE_FP6_E3M2, %QUARK_DTYPE_FP4_E2M1 or
 *   %QUARK_DTYPE_I8 (MXINT8)
 * @mode: how the shared exponent is chosen
 * @block_size: elements per block (32 in OCP MX)
 * @quark_zero_blocks: store AMD Quark's bytes for all-zero blocks (0x01 in
 *   "even" mode, 0x68 in "floor" and "ceil" modes) instead of OCP's 0x00
 *
 * Parameters of MX quantization.
 */
typedef struct {
  QuarkDType element;
  QuarkMxScaleMode mode;
  size_t block_size;
  bool quark_zero_blocks;
} QuarkMxParams;

QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_mx_element_info          (QuarkDType            element,
                                                int                  *emax,
                                                int                  *mbits);
QUARK_AVAILABLE_IN_1_0
uint8_t  quark_kernel_mx_shared_exponent       (const QuarkMxParams  *params,
                                                float                 amax);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_mx_quantize_f32          (const QuarkMxParams  *params,
                                                const float          *x,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                uint8_t              *codes,
                                                uint8_t              *scales);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_mx_quantize_bf16         (const QuarkMxParams  *params,
                                                const uint16_t       *x,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                uint8_t              *codes,
                                                uint8_t              *scales);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_mx_quantize_packed_bf16  (const QuarkMxParams  *params,
                                                const uint16_t       *x,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                uint8_t              *packed,
                                                uint8_t              *scales);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_mx_dequantize_f32        (const QuarkMxParams  *params,
                                                const uint8_t        *codes,
                                                const uint8_t        *scales,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                float                *out);
QUARK_AVAILABLE_IN_1_0
uint8_t  quark_kernel_e5m3_from_f32            (float                 scale);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_e5m3_to_f32              (uint8_t               code);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_nvfp4_global_scale       (float                 amax);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_nvfp4_group_scale        (float                 group_amax,
                                                float                 global_scale,
                                                uint8_t              *code);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_nvfp4_scale_to_f32       (uint8_t               code,
                                                float                 global_scale);
QUARK_AVAILABLE_IN_1_0
uint8_t  quark_kernel_e8m0_from_f32            (float                 scale);
QUARK_AVAILABLE_IN_1_0
float    quark_kernel_e8m0_to_f32              (uint8_t               byte);

/* Packing ------------------------------------------------------------------------ */

QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_pack_int4                (const int8_t         *codes,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                bool                  reorder,
                                                int32_t              *words);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_pack_int4_columns        (const int8_t         *codes,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                bool                  reorder,
                                                int32_t              *words);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_pack_int4_columns_block  (const int8_t         *codes,
                                                size_t                first_row,
                                                size_t                n_rows,
                                                size_t                total_rows,
                                                size_t                row_len,
                                                bool                  reorder,
                                                int32_t              *words);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_unpack_int4              (const int32_t        *words,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                bool                  reorder,
                                                bool                  is_signed,
                                                int8_t               *codes);
QUARK_AVAILABLE_IN_1_0
size_t   quark_kernel_pack_offset_binary       (const int8_t         *codes,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                unsigned              bits,
                                                bool                  is_signed,
                                                int32_t              *words);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_unpack_offset_binary     (const int32_t        *words,
                                                size_t                n_rows,
                                                size_t                row_len,
                                                unsigned              bits,
                                                bool                  is_signed,
                                                int8_t               *codes);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_pack_fp4                 (const uint8_t        *codes,
                                                size_t                n,
                                                uint8_t              *bytes);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_unpack_fp4               (const uint8_t        *bytes,
                                                size_t                n,
                                                uint8_t              *codes);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_pack_fp6                 (const uint8_t        *codes,
                                                size_t                n,
                                                uint8_t              *bytes);
QUARK_AVAILABLE_IN_1_0
bool     quark_kernel_unpack_fp6               (const uint8_t        *bytes,
                                                size_t                n,
                                                uint8_t              *codes);

/* Error metrics ------------------------------------------------------------------ */

/**
 * QuarkErrorMetrics:
 * @mse: mean squared error
 * @max_abs: largest absolute error
 * @sqnr_db: signal to quantization noise ratio in decibels,
 *   10 log10 (Σ x² / Σ (x̂ − x)²); +infinity when the error is zero
 *
 * How far a quantize-dequantize result is from the original.
 */
typedef struct {
  double mse;
  double max_abs;
  double sqnr_db;
} QuarkErrorMetrics;

QUARK_AVAILABLE_IN_1_0
void     quark_kernel_error_metrics            (const float          *x,
                                                const float          *x_hat,
                                                size_t                n,
                                                QuarkErrorMetrics    *metrics);

/* Streaming histograms (activation calibration) --------------------------------- */

#define QUARK_KERNEL_HIST_BITS 11
#define QUARK_KERNEL_HIST_BINS (1u << QUARK_KERNEL_HIST_BITS)

/**
 * QuarkKernelHist: (skip)
 * @range_exp: R = 2^range_exp bounds every |x| seen (INT32_MIN: none yet)
 * @zeros: how many exact zeros were seen
 * @pos: counts of positive values in bins of width R / bins over (0, R)
 * @neg: counts of negative values by |x|, the same bins
 *
 * A histogram that widens by merging bins, so its contents do not depend
 * on the order or the split of the batches.
 */
typedef struct {
  int32_t  range_exp;
  uint64_t zeros;
  uint64_t pos[QUARK_KERNEL_HIST_BINS];
  uint64_t neg[QUARK_KERNEL_HIST_BINS];
} QuarkKernelHist;

/**
 * QuarkKernelGrid: (skip)
 * @qmin: smallest integer code
 * @qmax: largest integer code
 * @symmetric: whether the range is symmetric about zero
 * @fp: (nullable): the minifloat format, or %NULL for integers
 *
 * The codes a range is quantized to, for range searches.
 */
typedef struct {
  int32_t qmin;
  int32_t qmax;
  bool    symmetric;
  const QuarkFpFormat *fp;
} QuarkKernelGrid;

QUARK_AVAILABLE_IN_1_0
void     quark_kernel_hist_init                 (QuarkKernelHist       *h);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_hist_add                  (QuarkKernelHist       *h,
                                                 const float           *x,
                                                 size_t                 n);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_hist_merge                (QuarkKernelHist       *h,
                                                 const QuarkKernelHist *other);
QUARK_AVAILABLE_IN_1_0
double   quark_kernel_hist_bin_width            (const QuarkKernelHist *h);
QUARK_AVAILABLE_IN_1_0
double   quark_kernel_hist_abs_percentile       (const QuarkKernelHist *h,
                                                 double                 percentile);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_hist_interval             (const QuarkKernelHist *h,
                                                 double                 percentile,
                                                 double                *lo,
                                                 double                *hi);
QUARK_AVAILABLE_IN_1_0
void     quark_kernel_hist_mse_range            (const QuarkKernelHist *h,
                                                 const QuarkKernelGrid *grid,
                                                 double                *lo,
                                                 double                *hi);
QUARK_AVAILABLE_IN_1_0
double   quark_kernel_hist_kl_threshold         (const QuarkKernelHist *h,
                                                 unsigned               levels);

G_END_DECLS
