/* quark-brevitas-quant.c: Brevitas's quantizer arithmetic in float32
 * (numerics.md, "Brevitas semantics"), on libquark's kernels
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-spec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCALING_MIN_VAL 1e-10f   /* the presets' scaling_min_val */

/* T of numerics.md B2: IntScaling for float scales, PowerOfTwoIntScaling for pof2;
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
      return s->is_signed ? 128.0f : 256.0f;   /* PowerOfTwoIntScaling */
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

/* R (log2 v) with log2f in float32, as torch.log2. For a normal positive
 * v = m · 2^e with m in [1.01, 1.98], log2 v lies in [e + 0.014,
 * e + 0.986], so floor and ceil of log2f (v) (whose error is far below
 * 0.014) are e and e + 1, and rint is e up to m = 1.4003 (log2 0.4875)
 * and e + 1 from m = 1.42 (log2 0.506): those come from the exponent
 * without the call (MX weights take one per block). Checked against
 * log2f over every positive normal float and the three roundings. */
static float
round_log2 (float v, QuarkPow2Rounding r)
{
  guint32 bits, mant;
  float l;

  memcpy (&bits, &v, sizeof bits);
  mant = bits & 0x7fffffu;
  if (bits >> 31 == 0 && (bits >> 23) != 0 && (bits >> 23) != 255 && mant >= 0x0147aeu && mant <= 0x7d70a3u)
    {
      float e = (float) ((int) (bits >> 23) - 127);
      if (r == QUARK_POW2_FLOOR)
        return e;
      if (r == QUARK_POW2_CEIL)
        return e + 1.0f;
      if (mant <= 0x3374bcu)
        return e;
      if (mant >= 0x35c28fu)
        return e + 1.0f;
    }
  l = log2f (v);
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

/* 2^@e, ldexpf (1, e) without its call: the bits of a normal float made
 * directly (MX weights take two per block) */
static inline float
pow2f (int e)
{
  guint32 bits;
  float f;

  if (e < -126 || e > 127)
    return ldexpf (1.0f, e);
  bits = (guint32) (e + 127) << 23;
  memcpy (&f, &bits, sizeof f);
  return f;
}

/* numerics.md B3: FP s = max (stat, 1e-10) / T; POWER_OF_TWO
 * s = max (2^R(log2 max (stat, 1e-10)), 1e-10) / 2^R(log2 T). */
float
bv_scale_from_stat (const BvSpec *s, float stat, float threshold)
{
  float v, p;

  if (s->restrict_type == BV_RESTRICT_UNSCALED)
    return 1.0f;
  if (!isfinite (stat))
    return fabsf (stat) / threshold;   /* NaN and Inf propagate, as through torch's clamp and log2 */
  /* max (|stat|, 1e-10): both finite, so a comparison is fmaxf (an MX
   * weight takes one per block, and fmaxf is a call) */
  v = fabsf (stat) > SCALING_MIN_VAL ? fabsf (stat) : SCALING_MIN_VAL;
  if (s->restrict_type == BV_RESTRICT_LOG_FP)
    {
      /* stored in log2, applied as 2^v, in float32 as torch.log2 / exp2 */
      v = fabsf (fmaxf (exp2f (log2f (v)), SCALING_MIN_VAL));
      return v / fabsf (exp2f (log2f (threshold)));
    }
  if (!s->pof2)
    return v / threshold;
  p = pow2f ((int) round_log2 (v, s->pof2_rounding));
  return (p > SCALING_MIN_VAL ? p : SCALING_MIN_VAL) / pow2f ((int) round_log2 (threshold, s->pof2_rounding));
}

/**
 * bv_fp_defaults:
 *
 * A minifloat family's exponent bias and NaN/Inf mantissa codes (bit i:
 * code i at the all-ones exponent): bias 2^(e-1) - 1, FNUZ 2^(e-1); OCP
 * E4M3 has NaN 111, OCP E5M2 Inf 00 and NaN 01, 10, 11, the others none.
 */
void
bv_fp_defaults (BvFpFamily family, int ebits, int mbits, int *bias, guint64 *inf_codes, guint64 *nan_codes)
{
  *bias = family == BV_FP_FNUZ ? 1 << (ebits - 1) : (1 << (ebits - 1)) - 1;
  *inf_codes = *nan_codes = 0;
  if (family == BV_FP_OCP && ebits == 4 && mbits == 3)
    *nan_codes = 1u << 7;
  if (family == BV_FP_OCP && ebits == 5 && mbits == 2)
    {
      *inf_codes = 1u << 0;
      *nan_codes = (1u << 1) | (1u << 2) | (1u << 3);
    }
}

/* The kernels' format of the spec's minifloat: its bias, and the special
 * codes of its family (custom NaN/Inf codes are bv_float_encode()'s). */
QuarkFpFormat
bv_fp_format (const BvSpec *s)
{
  QuarkFpFormat f = { (uint8_t) s->ebits, (uint8_t) s->mbits, 0, QUARK_FP_SPECIALS_NONE };

  if (s->ebits < 1)
    return f;   /* not a minifloat */
  f.bias = (int16_t) s->exponent_bias;
  if (s->family == BV_FP_FNUZ)
    f.specials = QUARK_FP_SPECIALS_FNUZ;
  else if (s->family == BV_FP_OCP && s->ebits == 4 && s->mbits == 3)
    f.specials = QUARK_FP_SPECIALS_FN;
  else if (s->family == BV_FP_OCP && s->ebits == 5 && s->mbits == 2)
    f.specials = QUARK_FP_SPECIALS_IEEE;
  return f;
}

/* F = min (max_float, max_available_float) (numerics.md B9): the all-ones exponent
 * counts as normal; in the OCP family the largest code below the smallest
 * NaN/Inf mantissa code is the largest finite one. Brevitas's generic and
 * FNUZ quantizers have no max_available_float: F is max_float whatever
 * their NaN/Inf codes (which then only name what non-saturating
 * quantization produces). */
float
bv_fp_max (const BvSpec *s)
{
  int top = (1 << s->ebits) - 1;
  double max_mantissa = 2.0 - ldexp (1.0, -s->mbits);
  double max_float = ldexp (max_mantissa, top - s->exponent_bias);
  guint64 special = s->inf_codes | s->nan_codes;
  double available = max_float;

  if (special && s->family == BV_FP_OCP)
    {
      int lowest = 0;
      while (!(special & ((guint64) 1 << lowest)))
        lowest++;
      if (lowest == 0)
        available = ldexp (max_mantissa, top - 1 - s->exponent_bias);
      else
        available = ldexp (1.0 + (double) (lowest - 1) / (double) (1 << s->mbits), top - s->exponent_bias);
    }
  return (float) MIN (max_float, available);
}

/* Whether the spec's minifloat differs from the kernels' format of its
 * family (an exponent bias or NaN/Inf codes of its own): its codes are
 * then made by bv_float_encode(). */
gboolean
bv_spec_is_custom_float (const BvSpec *s)
{
  guint64 inf, nan;
  int bias;

  if (s->kind != BV_FLOAT && s->kind != BV_MX_FLOAT)
    return FALSE;
  bv_fp_defaults (s->family, s->ebits, s->mbits, &bias, &inf, &nan);
  return s->exponent_bias != bias || s->inf_codes != inf || s->nan_codes != nan;
}

/* The code of a value of the spec's format (sign, exponent, mantissa with
 * its own bias; Inf and NaN as the first of their mantissa codes at the
 * all-ones exponent). */
guint16
bv_float_encode (const BvSpec *s, float v)
{
  int top = (1 << s->ebits) - 1;
  guint16 sign = signbit (v) ? (guint16) (1u << (s->ebits + s->mbits)) : 0;
  guint64 codes;
  float a = fabsf (v);
  int e, lowest = 0;

  if (isnan (v) || isinf (v))
    {
      codes = isinf (v) && s->inf_codes ? s->inf_codes : s->nan_codes;
      if (codes == 0)
        return sign | (guint16) ((top << s->mbits) | ((1 << s->mbits) - 1));
      while (!(codes & ((guint64) 1 << lowest)))
        lowest++;
      return sign | (guint16) ((top << s->mbits) | lowest);
    }
  if (a == 0)
    return sign;
  frexpf (a, &e);
  e -= 1;                                   /* a = 1.f * 2^e */
  if (e < 1 - s->exponent_bias)             /* subnormal */
    return sign | (guint16) lrintf (ldexpf (a, s->exponent_bias - 1 + s->mbits));
  return sign | (guint16) (((e + s->exponent_bias) << s->mbits) |
                           (lrintf (ldexpf (a, s->mbits - e)) - (1 << s->mbits)));
}

/* The value of a code of the spec's format. */
float
bv_float_decode (const BvSpec *s, guint16 code)
{
  int top = (1 << s->ebits) - 1;
  int m = code & ((1 << s->mbits) - 1);
  int e = (code >> s->mbits) & top;
  float sign = (code >> (s->ebits + s->mbits)) & 1 ? -1.0f : 1.0f;

  if (e == top && (s->nan_codes & ((guint64) 1 << m)))
    return NAN;
  if (e == top && (s->inf_codes & ((guint64) 1 << m)))
    return sign * INFINITY;
  if (e == 0)
    return sign * ldexpf ((float) m, 1 - s->exponent_bias - s->mbits);
  return sign * ldexpf ((float) ((1 << s->mbits) + m), e - s->exponent_bias - s->mbits);
}

/* numerics.md B9, FloatQuant steps 3-5 on v = x / s: the nearest value of the
 * format (half to even, subnormals below the smallest normal), then the
 * clamp: saturating to ±F, otherwise beyond F to ±Inf where the format
 * has Inf codes and to NaN where it has not. Inf and NaN become NaN (the
 * step of an infinite value is infinite). */
static float
float_round (float v, const BvSpec *s, float max)
{
  float e, step;

  if (!isfinite (v))
    return NAN;
  e = floorf (log2f (fabsf (v) + 0x1p-126f)) - (float) s->mbits;
  e = fmaxf (e, (float) (1 - s->exponent_bias - s->mbits));
  step = ldexpf (1.0f, (int) e);
  v = step * rintf (v / step);
  if (s->saturating)
    return fminf (fmaxf (v, -max), max);
  if (fabsf (v) > max)
    return s->inf_codes ? copysignf (INFINITY, v) : NAN;
  return v;
}

void
bv_result_clear (BvResult *r)
{
  /* codes, values and parameters may be pool buffers (result_alloc(),
   * params_alloc()) or g_malloc()'s: quark_buffer_free() takes both */
  g_clear_pointer (&r->codes, quark_buffer_free);
  g_clear_pointer (&r->dequantized, quark_buffer_free);
  g_clear_pointer (&r->scales, quark_buffer_free);
  g_clear_pointer (&r->zero_points, quark_buffer_free);
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
  gboolean custom;
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
      if (r->dequantized)
        quark_kernel_dequantize_int_f32 (r->codes + offset, QUARK_DTYPE_I32, len, a->scale, a->zero_point,
                                         r->dequantized + offset);
      return;
    }
  if (!a->custom && a->spec->saturating)
    {
      /* a format of the kernels: their vector encoder rounds x / s to the
       * nearest value, ties to even, saturating, which is FloatQuant's
       * rounding; only Brevitas's NaN for infinite inputs is added */
      guint8 codes[256];
      for (gsize done = 0; done < len; done += sizeof codes)
        {
          gsize m = MIN (len - done, sizeof codes);
          const float *x = a->x + offset + done;
          quark_kernel_fp_quantize_f32 (&a->fmt, x, m, a->scale, codes);
          for (gsize i = 0; i < m; i++)
            if (isinf (x[i]))
              codes[i] = (guint8) quark_kernel_fp_encode (&a->fmt, NAN, FALSE);
          if (r->dequantized)
            quark_kernel_fp_dequantize_f32 (&a->fmt, codes, m, a->scale, r->dequantized + offset + done);
          for (gsize i = 0; i < m; i++)
            {
              r->codes[offset + done + i] = codes[i];
              if (r->dequantized && isinf (x[i]))
                r->dequantized[offset + done + i] = NAN;   /* formats without a NaN code too */
            }
        }
      return;
    }
  for (gsize i = offset; i < offset + len; i++)
    {
      float v = float_round (a->x[i] / a->scale, a->spec, a->fmax);
      if (r->dequantized)
        r->dequantized[i] = v * a->scale;
      /* v is a value of the format (or Inf/NaN where the format says) */
      r->codes[i] = a->custom || !a->spec->saturating ? bv_float_encode (a->spec, v)
                                                      : quark_kernel_fp_encode (&a->fmt, v, TRUE);
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

/* Room for @l's parameters (zero), from the buffer pool: MX weights have
 * one per block of 32, which fresh memory would fault in for every weight */
static void
params_alloc (BvResult *r, const QuarkKernelLayout *l)
{
  gsize n = MAX (l->n_params, 1);

  r->n_params = l->n_params;
  r->scales = quark_buffer_alloc (n * sizeof (float));
  r->zero_points = quark_buffer_alloc (n * sizeof (gint32));
  memset (r->scales, 0, n * sizeof (float));
  memset (r->zero_points, 0, n * sizeof (gint32));
  memcpy (r->param_shape, l->param_shape, sizeof r->param_shape);
  r->param_n_dims = l->param_n_dims;
}

/* Room for @n codes (and values) in @l's layout: the codes and values from
 * the buffer pool (a model's weights reuse a few buffers instead of
 * faulting in fresh pages for each), not cleared, as every parameter set
 * writes all of its elements */
static void
result_alloc (BvResult *r, gsize n, const QuarkKernelLayout *l)
{
  r->n = n;
  r->codes = quark_buffer_alloc (MAX (n, 1) * sizeof (gint32));
  r->dequantized = r->want_values ? quark_buffer_alloc (MAX (n, 1) * sizeof (float)) : NULL;
  params_alloc (r, l);
}

/* The elements of @l's largest parameter set */
static gsize
largest_set (const QuarkKernelLayout *l)
{
  switch (l->qscheme)
    {
    case QUARK_QSCHEME_PER_CHANNEL:
      return l->outer * l->inner;
    case QUARK_QSCHEME_PER_GROUP:
      return l->group;
    case QUARK_QSCHEME_PER_BLOCK:
      return l->block_rows * l->group;
    case QUARK_QSCHEME_PER_TENSOR:
    default:
      return l->n;
    }
}

/* ascending, NaN last (torch's sort order) */
static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  if (isnan (x) || isnan (y))
    return isnan (x) - isnan (y);
  return x < y ? -1 : x > y;
}

/* The k-th smallest (1-based, clamped to 1..n) of @n values, sorting @work. */
static float
kth (float *work, gsize n, gint64 k)
{
  qsort (work, n, sizeof (float), cmp_float);
  k = CLAMP (k, 1, (gint64) n);
  return work[k - 1];
}

/* torch.sum of @n contiguous float32 values in PyTorch's own order (CPU,
 * 8-lane vectors: aten/src/ATen/native/cpu/SumKernel.cpp, inner sum):
 * whole vectors go round-robin into four vector accumulators, cascaded
 * every 16 steps through four levels; leftover vectors join the first
 * accumulator; the scalar tail is summed first and the eight lanes are
 * then added to it in order. Brevitas's AbsAve and MeanSigmaStd take
 * torch.mean = this sum / n, so their statistics match bit for bit. */
enum { TS_W = 8, TS_ILP = 4, TS_LEVELS = 4 };

/* acc[k] += the k-th of ILP vectors of ILP-row @i */
static inline void
torch_sum_row (float acc[TS_ILP][TS_W], const float *x, gsize i)
{
  for (int k = 0; k < TS_ILP; k++)
    for (int l = 0; l < TS_W; l++)
      acc[k][l] += x[(i * TS_ILP + (gsize) k) * TS_W + (gsize) l];
}

static float
torch_sum (const float *x, gsize n)
{
  enum { W = TS_W, ILP = TS_ILP, LEVELS = TS_LEVELS };
  gsize n_vec = n / W, n_ilp = n_vec / ILP, i = 0;
  float acc[LEVELS][ILP][W] = { { { 0 } } };
  float total = 0;
  int power = 4, bits = 0;
  gsize step, mask;

  /* level_power = max (4, CeilLog2 (n_ilp) / 4) */
  if (n_ilp > 2)
    for (gsize v = n_ilp - 1; v; v >>= 1)
      bits++;
  else
    bits = 1;
  power = MAX (4, bits / LEVELS);
  step = (gsize) 1 << power;
  mask = step - 1;
  while (i + step <= n_ilp)
    {
      for (gsize j = 0; j < step; j++, i++)
        torch_sum_row (acc[0], x, i);
      for (int j = 1; j < LEVELS; j++)
        {
          for (int k = 0; k < ILP; k++)
            for (int l = 0; l < W; l++)
              {
                acc[j][k][l] += acc[j - 1][k][l];
                acc[j - 1][k][l] = 0;
              }
          if ((i & (mask << (j * power))) != 0)
            break;
        }
    }
  for (; i < n_ilp; i++)
    torch_sum_row (acc[0], x, i);
  for (int j = 1; j < LEVELS; j++)
    for (int k = 0; k < ILP; k++)
      for (int l = 0; l < W; l++)
        acc[0][k][l] += acc[j][k][l];
  for (gsize v = n_ilp * ILP; v < n_vec; v++)
    for (int l = 0; l < W; l++)
      acc[0][0][l] += x[v * W + (gsize) l];
  for (int k = 1; k < ILP; k++)
    for (int l = 0; l < W; l++)
      acc[0][0][l] += acc[0][k][l];
  for (gsize t = n_vec * W; t < n; t++)
    total += x[t];
  for (int l = 0; l < W; l++)
    total += acc[0][0][l];
  return total;
}

/* Whether @s is a shifted (asymmetric) integer quantizer, with a zero point */
static gboolean
is_shifted (const BvSpec *s)
{
  return (s->kind == BV_INT || s->kind == BV_MX_INT) && !s->symmetric;
}

/* Whether @op is a statistic of the values' range alone (abs max, min-max) */
static gboolean
is_range_stat (BvStatsOp op)
{
  return op == BV_STATS_MAX || op == BV_STATS_DEFAULT || op == BV_STATS_MIN_MAX;
}

/* is_range_stat()'s statistic of finite values whose smallest is @lo and
 * largest @hi (from the min/max kernel, whose selections give the scalar
 * loop's values, the sign of a zero aside, which neither statistic keeps) */
static float
range_stat (BvStatsOp op, float lo, float hi)
{
  return op == BV_STATS_MIN_MAX ? fabsf (hi - fminf (lo, 0.0f)) : fmaxf (fabsf (lo), fabsf (hi));
}

/* The statistic of one parameter set (numerics.md B4): @v holds its @n values, a
 * ragged last group already padded with zeros; @work has room for @n. */
static float
weight_stat (const BvSpec *spec, BvStatsOp op, const float *v, gsize n, float *work)
{
  float amax = 0.0f, mn = INFINITY, mx = -INFINITY;

  if (n == 0)
    return 0.0f;
  if (is_range_stat (op) && quark_kernel_min_max_f32 (v, n, &mn, &mx))
    return range_stat (op, mn, mx);
  mn = INFINITY;
  mx = -INFINITY;
  for (gsize i = 0; i < n; i++)
    {
      if (isnan (v[i]) && op != BV_STATS_PERCENTILE && op != BV_STATS_PERCENTILE_INTERVAL)
        return NAN;   /* torch's max, min and mean propagate NaN */
      amax = fmaxf (amax, fabsf (v[i]));
      mn = fminf (mn, v[i]);
      mx = fmaxf (mx, v[i]);
    }
  switch (op)
    {
    case BV_STATS_MIN_MAX:
      return fabsf (mx - fminf (mn, 0.0f));
    case BV_STATS_PERCENTILE:
      for (gsize i = 0; i < n; i++)
        work[i] = fabsf (v[i]);
      return kth (work, n, (gint64) floor (0.01 * spec->percentile * (double) n + 0.5));
    case BV_STATS_PERCENTILE_INTERVAL:
      {
        float lo, hi;
        memcpy (work, v, n * sizeof (float));
        hi = kth (work, n, (gint64) floor (0.01 * spec->percentile * (double) n + 0.5));
        lo = kth (work, n, (gint64) ceil (0.01 * spec->low_percentile * (double) n));
        return fabsf (hi - fminf (lo, 0.0f));
      }
    case BV_STATS_AVE:
    case BV_STATS_MEAN_SIGMA_STD:
      {
        double mean64 = 0, var = 0;
        float mean;
        for (gsize i = 0; i < n; i++)
          {
            work[i] = fabsf (v[i]);
            mean64 += work[i];
          }
        mean = torch_sum (work, n) / (float) n;
        if (op == BV_STATS_AVE)
          return mean;
        /* torch.var: unbiased, accumulated in binary64 */
        mean64 /= (double) n;
        for (gsize i = 0; i < n; i++)
          var += ((double) work[i] - mean64) * ((double) work[i] - mean64);
        var = n > 1 ? var / (double) (n - 1) : NAN;
        return mean + (float) spec->sigma * sqrtf ((float) var + 1e-8f);
      }
    case BV_STATS_MAX:
    case BV_STATS_DEFAULT:
    default:
      return amax;
    }
}

/* The zero point of a shifted quantizer from its float zero point
 * -min (min, 0) (numerics.md B5): clamp (R (zf / s + qmin)), with the quantizer's
 * own rounding R (Brevitas quantizes the zero point with the integer
 * quantizer it belongs to: floor, ceil and round_to_zero apply to it). */
gint32
bv_shifted_zero_point (const BvSpec *spec, float neg, float scale)
{
  gint32 qmin, qmax;
  float y = -neg / scale;

  bv_int_range (spec, &qmin, &qmax);
  y = y + (float) qmin;
  return (gint32) fminf (fmaxf (quark_kernel_round (y, spec->rounding, 0, 0), (float) qmin), (float) qmax);
}

/* Whether @spec is a saturating minifloat of the kernels' formats (FP8
 * OCP and FNUZ, MX elements), which quark_kernel_fp_quantize_f32() and its
 * kin round as float_round() does */
static gboolean
kernel_minifloat (const BvSpec *spec)
{
  return (spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT) && spec->saturating &&
         !bv_spec_is_custom_float (spec) && 1 + spec->ebits + spec->mbits <= 8;
}

/* The values of a minifloat's codes, for set_loss(): TRUE when @spec is
 * a kernel_minifloat() */
static gboolean
loss_fp_table (const BvSpec *spec, float table[256])
{
  QuarkFpFormat f = bv_fp_format (spec);

  if (!kernel_minifloat (spec))
    return FALSE;
  for (unsigned c = 0; c < 256; c++)
    table[c] = (float) quark_kernel_fp_decode (&f, (uint16_t) (c & ((1u << (1 + f.ebits + f.mbits)) - 1)));
  return TRUE;
}

/* Σ (x − x̂)² of one parameter set quantized with @scale and @zero_point,
 * each term in binary32 as torch's mse_loss, summed in binary64 (integers:
 * quark_kernel_int_sq_error_f32(), in its order of sixteen partial sums;
 * minifloats in element order, their codes from the vector kernel and
 * their values from @fp_table when loss_fp_table() made one). */
static double
set_loss (const BvSpec *spec, const float *v, gsize n, float scale, gint32 zero_point, float fmax,
          const float *fp_table)
{
  QuarkKernelIntParams p = { 0 };
  double loss = 0;

  if (fp_table)
    {
      QuarkFpFormat f = bv_fp_format (spec);
      guint8 codes[256];

      for (gsize i = 0; i < n; i += sizeof codes)
        {
          gsize m = MIN (sizeof codes, n - i);
          quark_kernel_fp_quantize_f32 (&f, v + i, m, scale, codes);
          for (gsize j = 0; j < m; j++)
            {
              float d = v[i + j] - fp_table[codes[j]] * scale;
              loss += (double) (d * d);
            }
        }
      return loss;
    }
  if (spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT)
    {
      for (gsize i = 0; i < n; i++)
        {
          float d = v[i] - float_round (v[i] / scale, spec, fmax) * scale;
          loss += (double) (d * d);
        }
      return loss;
    }
  /* q = clamp (rint (fl (x / s) + z)), whatever the quantizer's rounding */
  bv_int_range (spec, &p.qmin, &p.qmax);
  p.scale = scale;
  p.zero_point = (float) zero_point;
  p.round = QUARK_ROUND_HALF_EVEN;
  p.divide = TRUE;
  return quark_kernel_int_sq_error_f32 (v, n, &p);
}

/* The scale and zero point of one parameter set of a weight (numerics.md
 * B3-B7): the statistic (or Brevitas's MSE grid over candidate
 * statistics, then for shifted quantizers over candidate zero points)
 * through the restriction of the scale. */
static void
weight_params (const BvSpec *spec, const float *v, gsize n, float threshold, float *work,
               float *scale, gint32 *zero_point)
{
  gboolean shifted = is_shifted (spec);
  BvStatsOp op = bv_spec_stats_op (spec);
  float neg = 0.0f, best, lo, hi, stat;

  *zero_point = 0;
  if (!spec->mse)
    {
      if (n > 0 && is_range_stat (op) && quark_kernel_min_max_f32 (v, n, &lo, &hi))
        {
          /* finite: one pass gives the statistic and the zero point's
           * NegativeMinOrZero */
          stat = range_stat (op, lo, hi);
          neg = fminf (lo, 0.0f);
        }
      else
        {
          stat = weight_stat (spec, op, v, n, work);
          for (gsize i = 0; shifted && i < n; i++)
            neg = fminf (neg, v[i]);   /* NegativeMinOrZero */
        }
      *scale = bv_scale_from_stat (spec, stat, threshold);
      if (shifted)
        *zero_point = bv_shifted_zero_point (spec, neg, *scale);
      return;
    }
  bv_mse_search (spec, v, n, threshold, work, NAN, &best, &neg);
  *scale = bv_scale_from_stat (spec, best, threshold);
  if (shifted)
    *zero_point = bv_shifted_zero_point (spec, neg, *scale);
}

/**
 * bv_mse_search:
 *
 * Brevitas's MSE grid (numerics.md B7) over @n values: the statistic
 * (candidates fl (fl (init / 20) · i), i = 2 … 20, a candidate winning only
 * with a strictly smaller loss) and, for shifted quantizers, then the
 * float zero point's statistic min (min, 0) the same way with the scale
 * found (*neg; 0 for symmetric quantizers). During the scale search a
 * shifted quantizer's zero point comes from @scale_search_neg, or when it
 * is NaN from the values' min (min, 0).
 */
void
bv_mse_search (const BvSpec *spec, const float *v, gsize n, float threshold, float *work, float scale_search_neg,
               float *stat, float *neg)
{
  gboolean shifted = is_shifted (spec);
  float fmax = spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT ? bv_fp_max (spec) : 0.0f;
  float init, base, best, best_neg, scale, low = 0.0f, table[256];
  const float *fp_table = loss_fp_table (spec, table) ? table : NULL;
  double best_loss = INFINITY;

  for (gsize i = 0; i < n; i++)
    low = fminf (low, v[i]);   /* NegativeMinOrZero */
  init = weight_stat (spec, shifted ? BV_STATS_MIN_MAX : BV_STATS_MAX, v, n, work);
  base = init / 20.0f;
  best = base;
  if (isnan (scale_search_neg))
    scale_search_neg = low;
  for (int i = 2; i <= 20; i++)
    {
      float c = base * (float) i;
      float sc = bv_scale_from_stat (spec, c, threshold);
      double loss = set_loss (spec, v, n, sc, shifted ? bv_shifted_zero_point (spec, scale_search_neg, sc) : 0, fmax,
                              fp_table);
      if (loss < best_loss)
        {
          best_loss = loss;
          best = c;
        }
    }
  *stat = best;
  *neg = 0.0f;
  if (!shifted)
    return;
  scale = bv_scale_from_stat (spec, best, threshold);
  base = low / 20.0f;
  best_neg = base;
  best_loss = INFINITY;
  for (int i = 2; i <= 20; i++)
    {
      float c = base * (float) i;
      double loss = set_loss (spec, v, n, scale, bv_shifted_zero_point (spec, c, scale), fmax, fp_table);
      if (loss < best_loss)
        {
          best_loss = loss;
          best_neg = c;
        }
    }
  *neg = best_neg;
}

BvStatsOp
bv_spec_stats_op (const BvSpec *spec)
{
  gboolean act = spec->role == QUARK_ROLE_INPUT || spec->role == QUARK_ROLE_OUTPUT;
  gboolean shifted = is_shifted (spec);

  if (spec->stats_op != BV_STATS_DEFAULT)
    return spec->stats_op;
  if (act && spec->dynamic)
    /* MX activations take the block's abs max, the LLM examples' dynamic
     * quantizers the min-max range (symmetric ones too) */
    return spec->kind == BV_MX_FLOAT || spec->kind == BV_MX_INT ? BV_STATS_MAX : BV_STATS_MIN_MAX;
  if (act)
    return shifted ? BV_STATS_PERCENTILE_INTERVAL : spec->percentile < 100 ? BV_STATS_PERCENTILE : BV_STATS_MAX;
  return shifted ? BV_STATS_MIN_MAX : BV_STATS_MAX;
}

/* The quantizer's constants; the parameters come with apply_set () */
static void
apply_init (Apply *a, const BvSpec *spec, const float *x, BvResult *r)
{
  memset (a, 0, sizeof *a);
  a->spec = spec;
  a->x = x;
  a->r = r;
  a->fmt = bv_fp_format (spec);
  a->custom = bv_spec_is_custom_float (spec);
  if (spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT)
    a->fmax = bv_fp_max (spec);
  else
    {
      bv_int_range (spec, &a->ip.qmin, &a->ip.qmax);
      a->ip.round = spec->rounding;
      a->ip.divide = TRUE;
    }
}

/* An integer quantizer's scale and zero point, in the kernel's form */
static void
int_params_set (QuarkKernelIntParams *ip, float scale, gint32 zero_point)
{
  ip->scale = scale;
  ip->inv_scale = 1.0f / scale;
  ip->zero_point = (float) zero_point;
}

static void
apply_set (Apply *a, float scale, gint32 zero_point)
{
  a->scale = scale;
  a->zero_point = zero_point;
  int_params_set (&a->ip, scale, zero_point);
}

static void
apply_params (const BvSpec *spec, const float *x, const QuarkKernelLayout *l, gsize p, float scale,
              gint32 zero_point, BvResult *r)
{
  Apply a;

  apply_init (&a, spec, x, r);
  apply_set (&a, scale, zero_point);
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
  g_autoptr(BvBuffer) buf = NULL, work = NULL, amax = NULL;
  float threshold = bv_threshold (spec);
  gboolean shifted = is_shifted (spec);
  gboolean row_maxima, finite_row = FALSE;
  gsize n = 1, room, per_row = 1;
  Apply a;

  for (guint d = 0; d < n_dims; d++)
    n *= (gsize) shape[d];
  if (!init_layout (spec, shape, n_dims, name, &l, error))
    return FALSE;
  row_maxima = l.qscheme == QUARK_QSCHEME_PER_GROUP && l.cols > 0 && !spec->mse && !shifted &&
               bv_spec_stats_op (spec) == BV_STATS_MAX;
  if (row_maxima)
    per_row = (l.cols + l.group - 1) / l.group;
  result_alloc (r, n, &l);
  /* a parameter set's values (and the statistics' scratch): the largest
   * set, not the tensor */
  room = MAX (largest_set (&l), 1) + (spec->qscheme == QUARK_QSCHEME_PER_GROUP ? (gsize) spec->group_size : 0);
  buf = quark_buffer_alloc (room * sizeof (float));
  work = quark_buffer_alloc (room * sizeof (float));
  apply_init (&a, spec, x, r);
  if (row_maxima)
    amax = quark_buffer_alloc (MAX (per_row, 1) * sizeof (float));
  for (gsize p = 0; p < l.n_params; p++)
    {
      float scale;
      gint32 zero_point = 0;

      /* groups with the abs max statistic: a row's maxima in one kernel
       * call, when the row is finite (the zero padding of a ragged last
       * group changes no maximum) */
      if (row_maxima && p % per_row == 0)
        finite_row = quark_kernel_group_abs_max_f32 (x + p / per_row * l.cols, l.cols, l.group, amax);
      if (row_maxima && finite_row)
        scale = bv_scale_from_stat (spec, amax[p % per_row], threshold);
      else
        {
          gsize n_p = quark_kernel_layout_gather_f32 (&l, p, x, buf);

          /* a ragged last group is zero-padded, and the padding is part of
           * its statistics (numerics.md B6) */
          if (spec->qscheme == QUARK_QSCHEME_PER_GROUP && n_p < (gsize) spec->group_size)
            {
              memset (buf + n_p, 0, ((gsize) spec->group_size - n_p) * sizeof (float));
              n_p = (gsize) spec->group_size;
            }
          weight_params (spec, buf, n_p, threshold, work, &scale, &zero_point);
        }
      apply_set (&a, scale, zero_point);
      r->scales[p] = scale;
      r->zero_points[p] = zero_point;
      quark_kernel_layout_foreach_chunk (&l, p, apply_chunk, &a);
    }
  return TRUE;
}

/**
 * bv_requantize_weight:
 *
 * Quantizes @x again with the scales and zero points @r holds (a
 * weight's, fixed when its quantizer was initialized, as Brevitas's
 * parameter_from_stats scaling keeps them): new codes (and values), the
 * same parameters.
 */
gboolean
bv_requantize_weight (const BvSpec *spec, const float *x, const gint64 *shape, guint n_dims, const char *name,
                      BvResult *r, GError **error)
{
  QuarkKernelLayout l;

  if (!init_layout (spec, shape, n_dims, name, &l, error))
    return FALSE;
  g_return_val_if_fail (l.n_params == r->n_params && l.n == r->n, FALSE);
  for (gsize p = 0; p < l.n_params; p++)
    apply_params (spec, x, &l, p, r->scales[p], r->zero_points[p], r);
  return TRUE;
}

/* The parameter set of element [row, col] of a 2-D weight in @r's layout */
gsize
bv_param_index (const BvSpec *spec, const BvResult *r, gsize row, gsize col)
{
  switch (spec->qscheme)
    {
    case QUARK_QSCHEME_PER_CHANNEL: return row;
    case QUARK_QSCHEME_PER_GROUP: return row * (gsize) r->param_shape[1] + col / (gsize) spec->group_size;
    default: return 0;
    }
}

/**
 * bv_fake_quantize_each:
 *
 * @n values, each through the quantizer with its own scale and zero
 * point (GPTQ's columns): the values the quantizer dequantizes them to,
 * computed as bv_quantize_weight() computes them.
 */
void
bv_fake_quantize_each (const BvSpec *spec, const float *x, gsize n, const float *scales, const gint32 *zero_points,
                       float *out)
{
  g_autofree gint32 *codes = g_new (gint32, MAX (n, 1));
  BvResult r = { 0 };
  Apply a;

  r.n = n;
  r.codes = codes;
  r.dequantized = out;
  apply_init (&a, spec, x, &r);
  for (gsize i = 0; i < n; i++)
    {
      apply_set (&a, scales[i], zero_points[i]);
      apply_chunk (i, 1, &a);
    }
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

/**
 * bv_uncalibrated_params:
 *
 * The parameters of a static activation quantizer that has seen no data:
 * Brevitas's statistic buffer starts at 1.0, so s = 1 / T through the
 * restriction (1/128 for Int8ActPerTensorFloat, 1/448 for OCP E4M3), zero
 * point 0; unscaled minifloats have s = 1.
 */
void
bv_uncalibrated_params (const BvSpec *spec, float *scale, gint32 *zero_point)
{
  *scale = bv_scale_from_stat (spec, 1.0f, bv_threshold (spec));
  *zero_point = 0;
}

/**
 * bv_quantize_activation:
 *
 * An activation through its quantizer: dynamic specs (MX) compute a scale
 * per group of the last dimension from the values (abs max, zero-padded
 * ragged groups, as weights); static ones use the one scale and zero point
 * given. Brevitas's order: y = x / s + z, q = clamp (round (y)).
 */
gboolean
bv_quantize_activation (const BvSpec *spec, const float *x, const gint64 *shape, guint n_dims,
                        const float *scales, const gint32 *zero_points, gsize n_scales, const char *name,
                        BvResult *r, GError **error)
{
  gsize n = 1;

  for (guint d = 0; d < n_dims; d++)
    n *= (gsize) shape[d];
  if (spec->dynamic)
    {
      /* the leading dimensions are tokens: a 2-D view [tokens, features] */
      gint64 view[2] = { 1, n_dims ? shape[n_dims - 1] : 1 };
      view[0] = view[1] ? (gint64) n / view[1] : 0;
      if (!bv_quantize_weight (spec, x, view, 2, name, r, error))
        return FALSE;
      if (n_dims != 2)
        {
          /* scales shaped like the tensor with groups in the last dimension */
          for (guint d = 0; d + 1 < n_dims; d++)
            r->param_shape[d] = shape[d];
          r->param_shape[n_dims ? n_dims - 1 : 0] = (gint64) (r->n_params / (gsize) MAX (view[0], 1));
          r->param_n_dims = MAX (n_dims, 1);
        }
      return TRUE;
    }
  if (!bv_quantize_with_scales (spec, x, shape, n_dims, scales, zero_points, n_scales, r))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: %" G_GSIZE_FORMAT " scales do not fit it", name, n_scales);
      return FALSE;
    }
  return TRUE;
}

/* ---- weights a block of rows at a time ---------------------------------- */

/**
 * bv_weight_rows_fit:
 *
 * Whether bv_quantize_weight_rows() takes a weight of @spec: integer
 * quantizers of up to 8 bits (MXInt8 included) and saturating minifloats
 * of the kernels' formats (MX elements included), whose statistic is the
 * range (abs max or min-max), per tensor, per output channel or per group,
 * or the MSE grid per output channel or per group; bfloat16, float16 and
 * float32 weights with at least one element.
 */
gboolean
bv_weight_rows_fit (const BvSpec *spec, QuarkTensor *t)
{
  gboolean integer = (spec->kind == BV_INT && spec->bits <= 8) || spec->kind == BV_MX_INT;

  return (integer || kernel_minifloat (spec)) && (!spec->mse || spec->qscheme != QUARK_QSCHEME_PER_TENSOR) &&
         is_range_stat (bv_spec_stats_op (spec)) &&
         spec->rounding != QUARK_ROUND_STOCHASTIC &&
         (quark_tensor_get_dtype (t) == QUARK_DTYPE_BF16 || quark_tensor_get_dtype (t) == QUARK_DTYPE_F16 ||
          quark_tensor_get_dtype (t) == QUARK_DTYPE_F32) &&
         quark_tensor_get_n_elements (t) > 0 && G_BYTE_ORDER == G_LITTLE_ENDIAN;
}

typedef struct {
  const BvSpec *spec;
  QuarkKernelLayout l;
  BvStatsOp op;
  gboolean shifted;
  float threshold;
  QuarkKernelIntParams ip;
  QuarkDType dtype;
  gboolean fp;           /* minifloat codes (QuarkFpFormat), else integers */
  QuarkFpFormat fmt;
  BvResult *r;
  guint8 *codes;
  float *amax, *zps;     /* per group: a row's maxima, its zero points as floats */
  float lo, hi;          /* per tensor: the range so far */
  gboolean wide;         /* the rows are float32 (float32 or widened float16), else bfloat16 */
  float pow2_divisor;    /* power-of-two scales: 2^R(log2 T), else 0 */
  gboolean fast_params;  /* rows_params_fast() takes the groups' parameters */
  gboolean mx;           /* MX blocks through quark_kernel_mx_quantize_*() (rows_mx()) */
  QuarkMxParams mx_params;
  guint8 *mx_bytes;      /* a block of rows' E8M0 bytes */
  int mx_byte_min;       /* the smallest byte whose scale is Brevitas's */
  gboolean *redo;        /* its rows that rows_mx() leaves to the general form */
  float *vals, *set, *work;  /* MSE grids: a row in float32, a zero-padded group, scratch */
} Rows;

/* The kernels on a run of the rows' elements: bfloat16 ones, or float32
 * ones (@x is the block's first element; @at, @n count elements from it) */
#define ROWS_X(b, x, at) ((b)->wide ? (const void *) ((const float *) (x) + (at)) \
                                    : (const void *) ((const guint16 *) (x) + (at)))

static gboolean
rows_min_max (const Rows *b, const void *x, gsize at, gsize n, float *lo, float *hi)
{
  return b->wide ? quark_kernel_min_max_f32 (ROWS_X (b, x, at), n, lo, hi)
                 : quark_kernel_min_max_bf16 (ROWS_X (b, x, at), n, lo, hi);
}

static gboolean
rows_group_abs_max (const Rows *b, const void *x, gsize at, gsize n, gsize group, float *amax)
{
  return b->wide ? quark_kernel_group_abs_max_f32 (ROWS_X (b, x, at), n, group, amax)
                 : quark_kernel_group_abs_max_bf16 (ROWS_X (b, x, at), n, group, amax);
}

static gboolean
rows_group_min_max (const Rows *b, const void *x, gsize at, gsize n, gsize group, float *lo, float *hi)
{
  return b->wide ? quark_kernel_group_min_max_f32 (ROWS_X (b, x, at), n, group, lo, hi)
                 : quark_kernel_group_min_max_bf16 (ROWS_X (b, x, at), n, group, lo, hi);
}

/* A parameter set's scale and zero point from the smallest and largest of
 * its (finite) values, as weight_params() has them. Power-of-two scales
 * (MX blocks, fixed point) are bv_scale_from_stat()'s last two lines with
 * the threshold's power of two found once per weight: the function's
 * checks and the threshold's rounding cost an MX weight a third of its
 * time. */
static void
rows_params (Rows *b, gsize p, float lo, float hi)
{
  float stat = range_stat (b->op, lo, hi), scale;

  if (b->pow2_divisor > 0.0f)
    {
      float v = fabsf (stat) > SCALING_MIN_VAL ? fabsf (stat) : SCALING_MIN_VAL;
      float num = pow2f ((int) round_log2 (v, b->spec->pof2_rounding));
      scale = (num > SCALING_MIN_VAL ? num : SCALING_MIN_VAL) / b->pow2_divisor;
    }
  else
    scale = bv_scale_from_stat (b->spec, stat, b->threshold);

  b->r->scales[p] = scale;
  b->r->zero_points[p] = b->shifted ? bv_shifted_zero_point (b->spec, fminf (lo, 0.0f), scale) : 0;
}

/* rows_params () of @n groups [p0, p0 + n) at once, 4 at a time in
 * 128-bit vector registers (SSE2, which the module is built for: 64-byte
 * generic vectors GCC splits there into a compare and a conditional move
 * per lane), for the common form (b->fast_params: float scales,
 * neither of a power of two nor in log2; zero points, when shifted,
 * rounded half to even within a code range of at most 2^21); returns the
 * groups done, a multiple of 4, and leaves the rest to rows_params ().
 * The same operations in the same order, so the same bits: stat as
 * range_stat (), s = max (|stat|, min_val) / T as bv_scale_from_stat ()
 * (an infinite stat gives |stat| / T either way), z = clamp (R (-min (lo,
 * 0) / s + qmin)) as bv_shifted_zero_point () (fminf () and fmaxf () of
 * finite values are selections; where min (lo, 0) is a zero of the other
 * sign, z is the same). R is the 1.5 · 2^23 addition, exact below 2^22;
 * y = -min (lo, 0) / s + qmin is at least qmin, so only a y past 2^22 can
 * round otherwise, to within one of it, and that clamps to qmax all the
 * same. */
typedef float BvVf __attribute__ ((vector_size (16)));
typedef gint32 BvVi __attribute__ ((vector_size (16)));
#define BV_LANES 4

static inline BvVf
bv_select (BvVi mask, BvVf a, BvVf b)
{
  return (BvVf) (((BvVi) a & mask) | ((BvVi) b & ~mask));
}

static gsize
rows_params_fast (Rows *b, gsize p0, const float *lo, const float *hi, gsize n)
{
  const BvVf zero = { 0 }, min_val = zero + SCALING_MIN_VAL, threshold = zero + b->threshold;
  const BvVf qmin = zero + (float) b->ip.qmin, qmax = zero + (float) b->ip.qmax, magic = zero + 12582912.0f;
  const gboolean range = b->op == BV_STATS_MIN_MAX;
  gsize g = 0;

  if (!b->fast_params)
    return 0;
  for (; g + BV_LANES <= n; g += BV_LANES)
    {
      BvVf l, h, neg, stat, v, s;
      memcpy (&l, lo + g, sizeof l);
      memcpy (&h, hi + g, sizeof h);
      neg = bv_select (l < zero, l, zero);
      if (range)
        stat = h - neg;
      else
        {
          const BvVf al = bv_select (l < zero, -l, l), ah = bv_select (h < zero, -h, h);
          stat = bv_select (al > ah, al, ah);
        }
      stat = bv_select (stat < zero, -stat, stat);
      v = bv_select (stat > min_val, stat, min_val);
      s = v / threshold;
      memcpy (b->r->scales + p0 + g, &s, sizeof s);
      if (b->shifted)
        {
          BvVf y = -neg / s + qmin;
          BvVi z;
          y = (y + magic) - magic;
          y = bv_select (y >= qmin, y, qmin);
          y = bv_select (y > qmax, qmax, y);
          z = __builtin_convertvector (y, BvVi);
          memcpy (b->r->zero_points + p0 + g, &z, sizeof z);
        }
      else
        memset (b->r->zero_points + p0 + g, 0, BV_LANES * sizeof (gint32));
    }
  return g;
}

/* The codes of @len elements of the block @x from its element @i, element
 * @at of the tensor on, with parameter set @p's scale and zero point */
static void
rows_encode (Rows *b, const void *x, gsize i, gsize len, gsize at, gsize p)
{
  if (b->fp)
    {
      if (b->wide)
        quark_kernel_fp_quantize_f32 (&b->fmt, ROWS_X (b, x, i), len, b->r->scales[p], b->codes + at);
      else
        quark_kernel_fp_quantize_bf16 (&b->fmt, ROWS_X (b, x, i), len, b->r->scales[p], b->codes + at);
      return;
    }
  int_params_set (&b->ip, b->r->scales[p], b->r->zero_points[p]);
  b->ip.offset = at;
  if (b->wide)
    quark_kernel_quantize_int_f32 (ROWS_X (b, x, i), len, &b->ip, b->dtype, b->codes + at);
  else
    quark_kernel_quantize_int_bf16 (ROWS_X (b, x, i), len, &b->ip, b->dtype, b->codes + at);
}

/* A row's groups (@len elements of the block @x from its element @i,
 * element @at of the tensor on, parameter sets from @p0) */
static void
rows_encode_groups (Rows *b, const void *x, gsize i, gsize len, gsize at, gsize p0, gsize per_row)
{
  const BvResult *r = b->r;

  if (b->fp)
    {
      /* one call for the row: MX scales are powers of two, which the
       * kernel multiplies by their exact inverses */
      if (b->wide)
        quark_kernel_fp_quantize_blocks_f32 (&b->fmt, ROWS_X (b, x, i), len, b->l.group, r->scales + p0,
                                             b->codes + at);
      else
        quark_kernel_fp_quantize_blocks_bf16 (&b->fmt, ROWS_X (b, x, i), len, b->l.group, r->scales + p0,
                                              b->codes + at);
      return;
    }
  for (gsize g = 0; b->shifted && g < per_row; g++)
    b->zps[g] = (float) r->zero_points[p0 + g];
  b->ip.offset = at;
  if (b->wide)
    quark_kernel_quantize_int_groups_f32 (ROWS_X (b, x, i), len, b->l.group, &b->ip, r->scales + p0,
                                          b->shifted ? b->zps : NULL, b->dtype, b->codes + at);
  else
    quark_kernel_quantize_int_groups_bf16 (ROWS_X (b, x, i), len, b->l.group, &b->ip, r->scales + p0,
                                           b->shifted ? b->zps : NULL, b->dtype, b->codes + at);
}

/* Brevitas's MX scale is max (2^floor (log2 max (amax, 1e-10)), 1e-10) /
 * 2^emax: the kernels' 2^(floor (log2 amax) − emax) when 2^floor (log2
 * amax) >= 1e-10, that is for a block maximum of at least 2^−33 (1e-10 lies
 * in (2^−34, 2^−33)), whose E8M0 byte is at least 127 − 33 − emax. Below, the
 * scale is 1e-10 / 2^emax, not a power of two. */
#define MX_LOG2_MIN (-33)

/* Whether rows_mx() may take @spec's MX weights: an OCP element format,
 * the abs max of each block, scales 2^floor (log2 amax) / 2^emax (the
 * floor power of two of the threshold being the element's 2^emax), and
 * bfloat16 or float16 values: floor (log2f (v)) in float32, as Brevitas
 * takes it, is the exponent of v when v has at most 10 mantissa bits (for
 * a float32 v just below a power of two log2f rounds up to it). */
static gboolean
rows_mx_fit (const Rows *b, QuarkDType in, QuarkMxParams *params, int *byte_min)
{
  static const QuarkDType elements[] = { QUARK_DTYPE_FP4_E2M1, QUARK_DTYPE_FP6_E2M3, QUARK_DTYPE_FP6_E3M2,
                                         QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2 };
  const BvSpec *s = b->spec;

  if (s->kind != BV_MX_FLOAT || s->mse || b->shifted || b->op == BV_STATS_MIN_MAX || b->pow2_divisor <= 0.0f ||
      s->pof2_rounding != QUARK_POW2_FLOOR || (in != QUARK_DTYPE_BF16 && in != QUARK_DTYPE_F16))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (elements); i++)
    {
      const QuarkFpFormat *f = quark_fp_format_for_dtype (elements[i]);
      int emax, mbits;
      if (f && f->ebits == b->fmt.ebits && f->mbits == b->fmt.mbits && f->bias == b->fmt.bias &&
          f->specials == b->fmt.specials && quark_kernel_mx_element_info (elements[i], &emax, &mbits) &&
          b->pow2_divisor == pow2f (emax))
        {
          *params = (QuarkMxParams) { elements[i], QUARK_MX_SCALE_FLOOR, b->l.group, FALSE };
          *byte_min = 127 + MX_LOG2_MIN - emax;
          return TRUE;
        }
    }
  return FALSE;
}

/* MX rows (rows_mx_fit()) in one kernel call for the block: codes, E8M0
 * bytes, and from them the scales, which are Brevitas's for every block
 * whose byte is at least mx_byte_min. A row with a block below (all zeros,
 * or tiny values) is marked in b->redo for rows_block()'s general form.
 * FALSE if a value is not finite. */
static gboolean
rows_mx (Rows *b, const void *x, gsize first, gsize n_rows, gsize len)
{
  gboolean *redo = b->redo;
  gsize per_row = (len + b->l.group - 1) / b->l.group;
  guint8 *codes = b->codes + first * len, *bytes = b->mx_bytes;

  if (!(b->wide ? quark_kernel_mx_quantize_f32 (&b->mx_params, x, n_rows, len, codes, bytes)
                : quark_kernel_mx_quantize_bf16 (&b->mx_params, x, n_rows, len, codes, bytes)))
    {
      /* parameters the kernel refuses (rows_mx_fit() admits none) */
      for (gsize i = 0; i < n_rows; i++)
        redo[i] = TRUE;
      return TRUE;
    }
  for (gsize i = 0; i < n_rows; i++)
    {
      gsize p0 = (first + i) * per_row;
      redo[i] = FALSE;
      for (gsize g = 0; g < per_row; g++)
        {
          guint8 byte = bytes[i * per_row + g];
          if (byte == 0xFF)
            return FALSE;
          redo[i] |= byte < b->mx_byte_min;
          b->r->scales[p0 + g] = pow2f ((int) byte - 127);
          b->r->zero_points[p0 + g] = 0;
        }
    }
  return TRUE;
}

/* The MSE grid (numerics.md B7) for each parameter set of a row (@len
 * elements of the block @x from its element @row; its sets from @p0):
 * weight_params() on the row's values in float32 (bfloat16 widened into
 * b->vals; float32 rows as they are), a ragged last group zero-padded, as bv_quantize_weight() has
 * them. FALSE if a value is not finite. */
static gboolean
rows_mse_params (Rows *b, const void *x, gsize row, gsize len, gsize p0)
{
  const QuarkKernelLayout *l = &b->l;
  const float *v = b->vals;
  gsize group = l->qscheme == QUARK_QSCHEME_PER_GROUP ? l->group : len;
  float lo, hi;

  if (!rows_min_max (b, x, row, len, &lo, &hi))
    return FALSE;
  if (b->wide)
    v = (const float *) x + row;
  else
    quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, (const guint16 *) x + row, b->vals, len);
  for (gsize start = 0, p = p0; start < len; start += group, p++)
    {
      gsize m = MIN (group, len - start);
      const float *set = v + start;
      if (m < group)
        {
          memcpy (b->set, set, m * sizeof (float));
          memset (b->set + m, 0, (group - m) * sizeof (float));
          set = b->set;
        }
      weight_params (b->spec, set, group, b->threshold, b->work, &b->r->scales[p], &b->r->zero_points[p]);
    }
  return TRUE;
}

/* Rows [@first, @first + @n_rows) of @len elements, at @x: per channel and
 * per group, their parameters and codes; per tensor with @stats, the
 * range only (the codes come in a second pass). FALSE if a value is not
 * finite. */
static gboolean
rows_block (Rows *b, const void *x, gsize first, gsize n_rows, gsize len, gboolean stats)
{
  const QuarkKernelLayout *l = &b->l;

  if (l->qscheme == QUARK_QSCHEME_PER_TENSOR)
    {
      float lo, hi;
      if (stats)
        {
          if (!rows_min_max (b, x, 0, n_rows * len, &lo, &hi))
            return FALSE;
          b->lo = fminf (b->lo, lo);
          b->hi = fmaxf (b->hi, hi);
          return TRUE;
        }
      rows_encode (b, x, 0, n_rows * len, first * len, 0);
      return TRUE;
    }
  if (b->mx && !rows_mx (b, x, first, n_rows, len))
    return FALSE;
  for (gsize i = 0; i < n_rows; i++)
    {
      gsize row = i * len, at = (first + i) * len;

      if (b->mx && !b->redo[i])
        continue;
      if (l->qscheme == QUARK_QSCHEME_PER_CHANNEL)
        {
          float lo, hi;
          if (b->spec->mse)
            {
              if (!rows_mse_params (b, x, row, len, first + i))
                return FALSE;
            }
          else
            {
              if (!rows_min_max (b, x, row, len, &lo, &hi))
                return FALSE;
              rows_params (b, first + i, lo, hi);
            }
          rows_encode (b, x, row, len, at, first + i);
          continue;
        }
      {
        /* per group: the row's groups, the last one maybe shorter (its
         * statistics count the zero padding of numerics.md B6) */
        gsize per_row = (len + l->group - 1) / l->group, p0 = (first + i) * per_row;
        gboolean max_only = b->op != BV_STATS_MIN_MAX && !b->shifted;

        if (b->spec->mse)
          {
            if (!rows_mse_params (b, x, row, len, p0))
              return FALSE;
          }
        else if (max_only)
          {
            /* the padding changes no abs max */
            if (!rows_group_abs_max (b, x, row, len, l->group, b->amax))
              return FALSE;
            for (gsize g = 0; g < per_row; g++)
              b->zps[g] = -b->amax[g];
            for (gsize g = rows_params_fast (b, p0, b->zps, b->amax, per_row); g < per_row; g++)
              rows_params (b, p0 + g, -b->amax[g], b->amax[g]);
          }
        else
          {
            /* the minima and maxima go into the zero points' and maxima's
             * room, which rows_params() does not read; the padding of a
             * short last group counts */
            float *lo = b->zps, *hi = b->amax;
            if (!rows_group_min_max (b, x, row, len, l->group, lo, hi))
              return FALSE;
            if (len % l->group)
              lo[per_row - 1] = fminf (lo[per_row - 1], 0.0f), hi[per_row - 1] = fmaxf (hi[per_row - 1], 0.0f);
            for (gsize g = rows_params_fast (b, p0, lo, hi, per_row); g < per_row; g++)
              rows_params (b, p0 + g, lo[g], hi[g]);
          }
        rows_encode_groups (b, x, row, len, at, p0, per_row);
      }
    }
  return TRUE;
}

/**
 * bv_quantize_weight_rows:
 *
 * bv_quantize_weight() for a weight bv_weight_rows_fit() takes, with the
 * same statistics, scales and codes: the weight is read a block of rows at
 * a time into a buffer (quark_tensor_read_data(): no float32 copy of the
 * tensor, no page of the input's mapping touched), bfloat16 and float32
 * blocks going to the kernels as they are (bfloat16 widened in registers,
 * exactly), float16 blocks widened into a second buffer; each row's
 * statistics and parameters,
 * then its codes straight into one byte each: integers in @dtype (I8 or
 * U8), minifloats as their format's codes. Per tensor
 * the range comes from a first pass over the blocks. @r gets the
 * parameters, not the codes; *@codes the codes, a pool buffer.
 */
gboolean
bv_quantize_weight_rows (const BvSpec *spec, QuarkTensor *t, QuarkDType dtype, BvResult *r, guint8 **codes,
                         GError **error)
{
  const char *name = quark_tensor_get_name (t);
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (t, &n_dims);
  gsize n = quark_tensor_get_n_elements (t), len, n_rows, block;
  g_autoptr(BvBuffer) amax = NULL, zps = NULL, widened = NULL, mx_bytes = NULL, redo = NULL;
  g_autoptr(BvBuffer) vals = NULL, set = NULL, work = NULL;
  QuarkDType in = quark_tensor_get_dtype (t);
  gsize esize = quark_dtype_get_element_size (in);
  guint8 *x;
  Rows b = { 0 };
  gboolean ok = TRUE;

  g_return_val_if_fail (bv_weight_rows_fit (spec, t), FALSE);
  if (!init_layout (spec, shape, n_dims, name, &b.l, error))
    return FALSE;
  b.spec = spec;
  b.op = bv_spec_stats_op (spec);
  b.shifted = is_shifted (spec);
  b.threshold = bv_threshold (spec);
  b.dtype = dtype;
  b.fp = spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT;
  b.fmt = bv_fp_format (spec);
  b.r = r;
  b.wide = in != QUARK_DTYPE_BF16;
  if (spec->pof2 && spec->restrict_type != BV_RESTRICT_LOG_FP && spec->restrict_type != BV_RESTRICT_UNSCALED)
    b.pow2_divisor = pow2f ((int) round_log2 (b.threshold, spec->pof2_rounding));
  bv_int_range (spec, &b.ip.qmin, &b.ip.qmax);
  b.fast_params = spec->restrict_type == BV_RESTRICT_FP && !spec->pof2 && b.pow2_divisor == 0.0f &&
                  is_range_stat (b.op) &&
                  (!b.shifted || (spec->rounding == QUARK_ROUND_HALF_EVEN &&
                                  (gint64) b.ip.qmax - b.ip.qmin <= (1 << 21)));
  b.lo = INFINITY;
  b.hi = -INFINITY;
  b.ip.round = spec->rounding;
  b.ip.divide = TRUE;
  switch (b.l.qscheme)
    {
    case QUARK_QSCHEME_PER_CHANNEL:
      len = b.l.inner;      /* axis 0: outer is 1, a channel is a row */
      break;
    case QUARK_QSCHEME_PER_GROUP:
      len = b.l.cols;
      amax = quark_buffer_alloc (((len + b.l.group - 1) / b.l.group) * sizeof (float));
      zps = quark_buffer_alloc (((len + b.l.group - 1) / b.l.group) * sizeof (float));
      b.amax = amax;
      b.zps = zps;
      break;
    case QUARK_QSCHEME_PER_TENSOR:
    default:
      len = 1;              /* any run of elements will do */
      break;
    }
  n_rows = n / len;
  /* about 512 Ki elements (1 MiB) per read, whole rows */
  block = MAX ((gsize) 1, ((gsize) 1 << 19) / len);
  block = MIN (block, n_rows);
  if (b.l.qscheme == QUARK_QSCHEME_PER_GROUP && rows_mx_fit (&b, in, &b.mx_params, &b.mx_byte_min))
    {
      b.mx = TRUE;
      mx_bytes = quark_buffer_alloc (block * ((len + b.l.group - 1) / b.l.group));
      redo = quark_buffer_alloc (block * sizeof (gboolean));
      b.mx_bytes = (guint8 *) mx_bytes;
      b.redo = (gboolean *) redo;
    }
  if (spec->mse)
    {
      /* per channel or per group (bv_weight_rows_fit()) */
      gsize room = MAX (len, b.l.qscheme == QUARK_QSCHEME_PER_GROUP ? b.l.group : 1);
      if (!b.wide)
        vals = quark_buffer_alloc (len * sizeof (float));
      set = quark_buffer_alloc (room * sizeof (float));
      work = quark_buffer_alloc (room * sizeof (float));
      b.vals = vals;
      b.set = set;
      b.work = work;
    }
  x = quark_buffer_alloc (block * len * esize);
  if (in == QUARK_DTYPE_F16)
    widened = quark_buffer_alloc (block * len * sizeof (float));
  r->n = n;
  params_alloc (r, &b.l);
  b.codes = quark_buffer_alloc (n);
  for (int pass = b.l.qscheme == QUARK_QSCHEME_PER_TENSOR ? 0 : 1; ok && pass < 2; pass++)
    {
      if (pass == 1 && b.l.qscheme == QUARK_QSCHEME_PER_TENSOR)
        rows_params (&b, 0, b.lo, b.hi);
      for (gsize first = 0; ok && first < n_rows; first += block)
        {
          gsize m = MIN (block, n_rows - first);
          ok = quark_tensor_read_data (t, (guint64) first * len * esize, x, m * len * esize, error);
          if (ok && widened)
            quark_kernel_convert_to_f32 (QUARK_DTYPE_F16, x, widened, m * len);
          if (ok && !rows_block (&b, widened ? (const void *) widened : x, first, m, len, pass == 0))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                           "tensor %s: holds NaN or infinity, which cannot be quantized", name);
              ok = FALSE;
            }
        }
    }
  quark_buffer_free (x);
  if (!ok)
    {
      g_clear_pointer (&b.codes, quark_buffer_free);
      return FALSE;
    }
  *codes = b.codes;
  return TRUE;
}
