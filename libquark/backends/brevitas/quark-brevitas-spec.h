/* quark-brevitas-spec.h: one Brevitas quantizer (a preset with overrides),
 * and its arithmetic
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark/quark.h>
#include <quark/quark-kernels.h>

G_BEGIN_DECLS

/* float32 scratch from the buffer pool (quark_buffer_alloc()), given back
 * when it goes out of scope */
typedef float BvBuffer;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BvBuffer, quark_buffer_free)
/* integer codes of up to 8 bits, likewise */
typedef guint8 BvCodes;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BvCodes, quark_buffer_free)

typedef enum {
  BV_INT,         /* IntQuant / RescalingIntQuant */
  BV_FLOAT,       /* FloatQuant (minifloats) */
  BV_MX_FLOAT,    /* OCP MX with minifloat elements, Brevitas's scales */
  BV_MX_INT,      /* MXInt8 with Brevitas's PowerOfTwoIntScaling */
  BV_BIAS,        /* IntBias: s = input scale · weight scale */
} BvKind;

typedef enum {
  BV_FP_OCP,      /* OCP FP8/FP6/FP4: E4M3 "fn", E5M2 with Inf */
  BV_FP_FNUZ,     /* AMD FNUZ: bias 2^(e-1) */
  BV_FP_GENERIC,  /* every code a number (Brevitas's quant/experimental/float.py) */
} BvFpFamily;

/* The statistic a scale is computed from (Brevitas's StatsOp). */
typedef enum {
  BV_STATS_DEFAULT,              /* the role's: MAX / MIN_MAX, PERCENTILE / PERCENTILE_INTERVAL */
  BV_STATS_MAX,                  /* AbsMax */
  BV_STATS_MIN_MAX,              /* AbsMinMax: |max - min (min, 0)| */
  BV_STATS_PERCENTILE,           /* AbsPercentile at q */
  BV_STATS_PERCENTILE_INTERVAL,  /* high q - min (low q, 0) */
  BV_STATS_AVE,                  /* mean |x| */
  BV_STATS_MEAN_SIGMA_STD,       /* mean |x| + sigma sqrt (var |x| + 1e-8) */
} BvStatsOp;

/* How the scale is restricted (Brevitas's RestrictValueType), or none. */
typedef enum {
  BV_RESTRICT_FP,
  BV_RESTRICT_POW2,
  BV_RESTRICT_LOG_FP,
  BV_RESTRICT_UNSCALED,          /* minifloats with the scale fixed at 1 */
} BvRestrict;

/* A Brevitas quantizer. Weights are scaled from statistics of the tensor
 * (recomputed), activations from calibration statistics. */
typedef struct {
  char *preset;              /* the preset it started from, or NULL */
  QuarkRole role;
  BvKind kind;
  int bits;                  /* integers, bias */
  gboolean is_signed;
  gboolean narrow;
  gboolean symmetric;        /* FALSE: shifted, an unsigned grid with a zero point */
  QuarkQScheme qscheme;      /* per tensor, channel or group */
  int group_size;
  gboolean pof2;             /* restrict the scale to a power of two */
  QuarkPow2Rounding pof2_rounding;
  gboolean mse;              /* param_type "mse": the MSE grid search */
  gboolean dynamic;          /* MX activations: scales per call, nothing stored */
  QuarkRoundMode rounding;   /* float_to_int_impl_type of integer quantizers */
  int ebits, mbits;          /* minifloats and MX elements */
  BvFpFamily family;
  double percentile;         /* activations: q of the per-batch statistic (100: the maximum) */
  BvStatsOp stats_op;        /* resolved by bv_spec_stats_op() */
  double low_percentile;     /* low q of PERCENTILE_INTERVAL (default 100 - percentile) */
  double sigma;              /* MEAN_SIGMA_STD */
  BvRestrict restrict_type;  /* FP, POW2 (== pof2), LOG_FP, unscaled */
  gboolean saturating;       /* minifloats: clamp to ±max (else Inf or NaN) */
  int exponent_bias;         /* minifloats */
  guint64 inf_codes, nan_codes;  /* mantissa codes at the all-ones exponent (bit i: code i) */
  QuarkTensorSpec *tspec;    /* the generic description; carries this struct */
} BvSpec;

/* A node holding @object, taking the caller's reference (json-glib's
 * json_node_init_object() takes a reference of its own). */
static inline JsonNode *
bv_node_take (JsonObject *object)
{
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);
  json_node_take_object (node, object);
  return node;
}

BvSpec *         bv_spec_from_json      (JsonNode     *node,
                                         QuarkRole     role,
                                         const char   *path,
                                         GError      **error);
JsonNode *       bv_spec_to_json        (const BvSpec *spec);
void             bv_spec_free           (BvSpec       *spec);
BvSpec *         bv_spec_from_tensor_spec (QuarkTensorSpec *tspec);
gboolean         bv_preset_exists       (const char   *name);
const char *     bv_spec_describe       (const BvSpec *spec);

/* ---- arithmetic (numerics.md, "Brevitas semantics") ---------------------------------------- */

float            bv_threshold           (const BvSpec *spec);
BvStatsOp        bv_spec_stats_op       (const BvSpec *spec);
gboolean         bv_spec_is_custom_float (const BvSpec *spec);
guint16          bv_float_encode        (const BvSpec *spec,
                                         float         v);
float            bv_float_decode        (const BvSpec *spec,
                                         guint16       code);
void             bv_int_range           (const BvSpec *spec,
                                         gint32       *qmin,
                                         gint32       *qmax);
float            bv_scale_from_stat     (const BvSpec *spec,
                                         float         stat,
                                         float         threshold);
void             bv_fp_defaults         (BvFpFamily    family,
                                         int           ebits,
                                         int           mbits,
                                         int          *bias,
                                         guint64      *inf_codes,
                                         guint64      *nan_codes);
QuarkFpFormat    bv_fp_format           (const BvSpec *spec);
float            bv_fp_max              (const BvSpec *spec);

/* The result of quantizing one tensor: codes (one per element, as int32
 * for integers, as format codes for minifloats), the dequantized values,
 * one scale (and zero point) per parameter set. */
typedef struct {
  gboolean want_values;      /* set before quantizing: fill @dequantized too */
  gsize n;
  gint32 *codes;
  float *dequantized;        /* NULL unless want_values */
  gsize n_params;
  float *scales;
  gint32 *zero_points;
  gint64 param_shape[8];
  guint param_n_dims;
} BvResult;

void             bv_result_clear        (BvResult     *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (BvResult, bv_result_clear)
/* Whether a weight of this shape fits @spec's layout (checked for every
 * weight before any is quantized). */
gboolean         bv_check_layout        (const BvSpec *spec,
                                         const gint64 *shape,
                                         guint         n_dims,
                                         const char   *name,
                                         GError      **error);
gboolean         bv_quantize_weight     (const BvSpec *spec,
                                         const float  *x,
                                         const gint64 *shape,
                                         guint         n_dims,
                                         const char   *name,
                                         BvResult     *r,
                                         GError      **error);
gboolean         bv_weight_rows_fit     (const BvSpec *spec,
                                         QuarkTensor  *t);
gboolean         bv_quantize_weight_rows (const BvSpec *spec,
                                         QuarkTensor  *t,
                                         QuarkDType    dtype,
                                         BvResult     *r,
                                         guint8      **codes,
                                         GError      **error);
gboolean         bv_quantize_activation (const BvSpec *spec,
                                         const float  *x,
                                         const gint64 *shape,
                                         guint         n_dims,
                                         const float  *scales,
                                         const gint32 *zero_points,
                                         gsize         n_scales,
                                         const char   *name,
                                         BvResult     *r,
                                         GError      **error);
void             bv_mse_search          (const BvSpec *spec,
                                         const float  *v,
                                         gsize         n,
                                         float         threshold,
                                         float        *work,
                                         float         scale_search_neg,
                                         float        *stat,
                                         float        *neg);
gint32           bv_shifted_zero_point  (const BvSpec *spec,
                                         float         neg,
                                         float         scale);
void             bv_uncalibrated_params (const BvSpec *spec,
                                         float        *scale,
                                         gint32       *zero_point);
gboolean         bv_quantize_with_scales (const BvSpec *spec,
                                         const float  *x,
                                         const gint64 *shape,
                                         guint         n_dims,
                                         const float  *scales,
                                         const gint32 *zero_points,
                                         gsize         n_params,
                                         BvResult     *r);

gboolean         bv_requantize_weight   (const BvSpec *spec,
                                         const float  *x,
                                         const gint64 *shape,
                                         guint         n_dims,
                                         const char   *name,
                                         BvResult     *r,
                                         GError      **error);
gsize            bv_param_index         (const BvSpec *spec,
                                         const BvResult *r,
                                         gsize         row,
                                         gsize         col);
void             bv_fake_quantize_each  (const BvSpec *spec,
                                         const float  *x,
                                         gsize         n,
                                         const float  *scales,
                                         const gint32 *zero_points,
                                         float        *out);

G_END_DECLS
