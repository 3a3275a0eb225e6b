/* quark-brevitas-quant.c: Brevitas's quantizer arithmetic in float32
 * (numerics.md §3), on libquark's kernels
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-spec.h"

#include <math.h>
#include <string.h>

#define SCALING_MIN_VAL 1e-10f   /* the presets' scaling_min_val */

/* T of §3.2: IntScaling for float scales, PowerOfTwoIntScaling for pof2;
 * the format's maximum F for minifloats; 128 for MXInt8. */
float
bv_threshold (const BvSpec *s)
{
  switch (s->kind)
    {
    case BV_FLOAT:
    case BV_MX_FLOAT:
      return bv_fp_max (s);
    case BV_MX_INT:
      return 128.0f;
    case BV_INT:
    case BV_BIAS:
    default:
      if (s->is_signed)
        return s->pof2 ? ldexpf (1.0f, s->bits - 1)
                       : (float) ((1 << (s->bits - 1)) - (s->narrow ? 1 : 0));
      return s->pof2 ? ldexpf (1.0f, s->bits) : (float) ((1 << s->bits) - (s->narrow ? 2 : 1));
    }
}

void
bv_int_range (const BvSpec *s, gint32 *qmin, gint32 *qmax)
{
  int bits = s->kind == BV_MX_INT ? 8 : s->bits;

  if (s->is_signed)
    {
      gint64 half = (gint64) 1 << (bits - 1);
      *qmax = (gint32) (half - 1);
      *qmin = (gint32) (s->narrow ? -(half - 1) : -half);
    }
  else
    {
      *qmin = 0;
      *qmax = (gint32) (((gint64) 1 << bits) - (s->narrow ? 2 : 1));
    }
}

static float
round_log2 (float v, QuarkPow2Rounding r)
{
  float l = log2f (v);   /* float32, as torch.log2 */
  switch (r)
    {
    case QUARK_POW2_CEIL:
      return ceilf (l);
    case QUARK_POW2_FLOOR:
      return floorf (l);
    case QUARK_POW2_ROUND:
    default:
      return rintf (l);  /* half to even */
    }
}

/* §3.3: FP s = max (stat, 1e-10) / T; POWER_OF_TWO
 * s = max (2^R(log2 max (stat, 1e-10)), 1e-10) / 2^R(log2 T). */
float
bv_scale_from_stat (const BvSpec *s, float stat, float threshold)
{
  float v = fmaxf (fabsf (stat), SCALING_MIN_VAL);

  if (!s->pof2)
    return v / threshold;
  v = fmaxf (ldexpf (1.0f, (int) round_log2 (v, s->pof2_rounding)), SCALING_MIN_VAL);
  return v / ldexpf (1.0f, (int) round_log2 (threshold, s->pof2_rounding));
}

QuarkFpFormat
bv_fp_format (const BvSpec *s)
{
  QuarkFpFormat f = { (uint8_t) s->ebits, (uint8_t) s->mbits, 0, QUARK_FP_SPECIALS_NONE };

  if (s->ebits < 1)
    return f;   /* not a minifloat */
  switch (s->family)
    {
    case BV_FP_FNUZ:
      f.bias = (int16_t) (1 << (s->ebits - 1));
      f.specials = QUARK_FP_SPECIALS_FNUZ;
      break;
    case BV_FP_GENERIC:
      f.bias = (int16_t) ((1 << (s->ebits - 1)) - 1);
      break;
    case BV_FP_OCP:
    default:
      f.bias = (int16_t) ((1 << (s->ebits - 1)) - 1);
      if (s->ebits == 4 && s->mbits == 3)
        f.specials = QUARK_FP_SPECIALS_FN;
      else if (s->ebits == 5 && s->mbits == 2)
        f.specials = QUARK_FP_SPECIALS_IEEE;
      break;
    }
  return f;
}

/* F = min (max_float, max_available_float): the largest finite code */
float
bv_fp_max (const BvSpec *s)
{
  QuarkFpFormat f = bv_fp_format (s);
  return (float) quark_fp_format_max (&f);
}

/* §3.11 FloatQuant steps 3-5 on v = x / s: the nearest value of the
 * format (half to even, subnormals below the smallest normal), saturated. */
static float
float_round (float v, const QuarkFpFormat *format, float max)
{
  float e = floorf (log2f (fabsf (v) + 0x1p-126f)) - (float) format->mbits;
  float step;

  e = fmaxf (e, (float) (1 - format->bias - format->mbits));
  step = ldexpf (1.0f, (int) e);
  v = step * rintf (v / step);
  return fminf (fmaxf (v, -max), max);
}

/* §3.11 FloatQuant, saturating: the dequantized value. */
float
bv_float_quantize_one (float x, float scale, const QuarkFpFormat *format, float max)
{
  return float_round (x / scale, format, max) * scale;
}

void
bv_result_clear (BvResult *r)
{
  g_clear_pointer (&r->codes, g_free);
  g_clear_pointer (&r->dequantized, g_free);
  g_clear_pointer (&r->scales, g_free);
  g_clear_pointer (&r->zero_points, g_free);
  memset (r, 0, sizeof *r);
}

/* ---- per parameter set -------------------------------------------------- */

typedef struct {
  const BvSpec *spec;
  const float *x;
  BvResult *r;
  QuarkKernelIntParams ip;
  QuarkFpFormat fmt;
  float fmax;
  float scale;
  gint32 zero_point;
} Apply;

static void
apply_chunk (size_t offset, size_t len, void *data)
{
  Apply *a = data;
  BvResult *r = a->r;

  if (a->spec->kind == BV_INT || a->spec->kind == BV_MX_INT || a->spec->kind == BV_BIAS)
    {
      a->ip.offset = offset;
      quark_kernel_quantize_int_f32 (a->x + offset, len, &a->ip, QUARK_DTYPE_I32, r->codes + offset);
      quark_kernel_dequantize_int_f32 (r->codes + offset, QUARK_DTYPE_I32, len, a->scale, a->zero_point,
                                       r->dequantized + offset);
      return;
    }
  for (gsize i = offset; i < offset + len; i++)
    {
      float v = float_round (a->x[i] / a->scale, &a->fmt, a->fmax);
      r->dequantized[i] = v * a->scale;
      r->codes[i] = quark_kernel_fp_encode (&a->fmt, v, TRUE);   /* v is a value of the format */
    }
}

static gboolean
init_layout (const BvSpec *spec, const gint64 *shape, guint n_dims, const char *name,
             QuarkKernelLayout *l, GError **error)
{
  int axis = spec->qscheme == QUARK_QSCHEME_PER_GROUP ? -1 : 0;

  if (spec->qscheme == QUARK_QSCHEME_PER_GROUP && n_dims != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "tensor %s: the brevitas backend groups 2-D weights along their input features, "
                   "not shape %s", name, "of another rank");
      return FALSE;
    }
  if (!quark_kernel_layout_init (l, shape, n_dims, spec->qscheme, axis, spec->group_size))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "tensor %s: its shape does not fit the %s quantizer", name, bv_spec_describe (spec));
      return FALSE;
    }
  return TRUE;
}

gboolean
bv_check_layout (const BvSpec *spec, const gint64 *shape, guint n_dims, const char *name, GError **error)
{
  QuarkKernelLayout l;
  return init_layout (spec, shape, n_dims, name, &l, error);
}

static void
result_alloc (BvResult *r, gsize n, const QuarkKernelLayout *l)
{
  r->n = n;
  r->codes = g_new0 (gint32, MAX (n, 1));
  r->dequantized = g_new0 (float, MAX (n, 1));
  r->n_params = l->n_params;
  r->scales = g_new0 (float, MAX (l->n_params, 1));
  r->zero_points = g_new0 (gint32, MAX (l->n_params, 1));
  memcpy (r->param_shape, l->param_shape, sizeof r->param_shape);
  r->param_n_dims = l->param_n_dims;
}

/* The statistic and scale of one parameter set of a weight (§3.3, §3.6-3.8). */
static void
weight_params (const BvSpec *spec, const float *v, gsize n, gboolean padded, float threshold,
               float *scale, gint32 *zero_point)
{
  gint32 qmin, qmax;
  float amax = 0.0f, mn = INFINITY, mx = -INFINITY;

  for (gsize i = 0; i < n; i++)
    {
      amax = fmaxf (amax, fabsf (v[i]));
      mn = fminf (mn, v[i]);
      mx = fmaxf (mx, v[i]);
    }
  if (n == 0 || padded)
    {
      /* the zero padding of a ragged last group is part of its statistics */
      mn = fminf (mn, 0.0f);
      mx = fmaxf (mx, 0.0f);
    }
  *zero_point = 0;
  if (spec->kind != BV_INT || spec->symmetric)
    {
      float stat = amax;
      if (spec->mse)
        {
          bv_int_range (spec, &qmin, &qmax);
          stat = quark_kernel_mse_search_int_f32 (v, n, amax, threshold, qmin, qmax, TRUE);
        }
      *scale = bv_scale_from_stat (spec, stat, threshold);
      return;
    }
  /* ShiftedMinUintQuant: AbsMinMax, NegativeMinOrZero quantized */
  mn = fminf (mn, 0.0f);
  *scale = bv_scale_from_stat (spec, fabsf (mx - mn), threshold);
  bv_int_range (spec, &qmin, &qmax);
  *zero_point = (gint32) fminf (fmaxf (rintf (-mn / *scale + (float) qmin), (float) qmin), (float) qmax);
}

static void
apply_params (const BvSpec *spec, const float *x, const QuarkKernelLayout *l, gsize p, float scale,
              gint32 zero_point, BvResult *r)
{
  Apply a;

  memset (&a, 0, sizeof a);
  a.spec = spec;
  a.x = x;
  a.r = r;
  a.fmt = bv_fp_format (spec);
  a.scale = scale;
  a.zero_point = zero_point;

  if (spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT)
    a.fmax = bv_fp_max (spec);
  else
    {
      bv_int_range (spec, &a.ip.qmin, &a.ip.qmax);
      a.ip.scale = scale;
      a.ip.inv_scale = 1.0f / scale;
      a.ip.zero_point = (float) zero_point;
      a.ip.round = spec->rounding;
      a.ip.divide = TRUE;
    }
  r->scales[p] = scale;
  r->zero_points[p] = zero_point;
  quark_kernel_layout_foreach_chunk (l, p, apply_chunk, &a);
}

/**
 * bv_quantize_weight:
 *
 * A weight through its quantizer: per parameter set the statistic (abs max,
 * AbsMinMax for shifted quantizers, the MSE grid), the scale and zero
 * point, then y = x / s + z, q = clamp (round (y)), x̂ = (q − z) · s; for
 * minifloats FloatQuant, for MX the shared power-of-two scale per block.
 */
gboolean
bv_quantize_weight (const BvSpec *spec, const float *x, const gint64 *shape, guint n_dims, const char *name,
                    BvResult *r, GError **error)
{
  QuarkKernelLayout l;
  g_autofree float *buf = NULL;
  float threshold = bv_threshold (spec);
  gsize n = 1;

  for (guint d = 0; d < n_dims; d++)
    n *= (gsize) shape[d];
  if (!init_layout (spec, shape, n_dims, name, &l, error))
    return FALSE;
  result_alloc (r, n, &l);
  buf = g_new (float, MAX (n, 1));
  for (gsize p = 0; p < l.n_params; p++)
    {
      gsize n_p = quark_kernel_layout_gather_f32 (&l, p, x, buf);
      float scale;
      gint32 zero_point;
      gboolean padded;

      padded = spec->qscheme == QUARK_QSCHEME_PER_GROUP && n_p < (gsize) spec->group_size;
      weight_params (spec, buf, n_p, padded, threshold, &scale, &zero_point);
      apply_params (spec, x, &l, p, scale, zero_point, r);
    }
  return TRUE;
}

/**
 * bv_quantize_with_scales:
 *
 * Quantizes @x with given scales and zero points (calibrated activations,
 * biases), one per parameter set of @spec's granularity.
 */
gboolean
bv_quantize_with_scales (const BvSpec *spec, const float *x, const gint64 *shape, guint n_dims,
                         const float *scales, const gint32 *zero_points, gsize n_params, BvResult *r)
{
  QuarkKernelLayout l;
  QuarkQScheme qscheme = n_params == 1 ? QUARK_QSCHEME_PER_TENSOR : QUARK_QSCHEME_PER_CHANNEL;
  gsize n = 1;

  for (guint d = 0; d < n_dims; d++)
    n *= (gsize) shape[d];
  if (!quark_kernel_layout_init (&l, shape, n_dims, qscheme, 0, 0) || l.n_params != n_params)
    return FALSE;
  result_alloc (r, n, &l);
  for (gsize p = 0; p < n_params; p++)
    apply_params (spec, x, &l, p, scales[p], zero_points ? zero_points[p] : 0, r);
  return TRUE;
}
