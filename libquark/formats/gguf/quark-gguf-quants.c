/* quark-gguf-quants.c: llama.cpp's block types, as GGUF stores them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The reference quantizers of llama.cpp's ggml-quants.c (what llama-quantize
 * writes without an importance matrix), restated: per block of 32,
 *
 *   Q4_0: m = the element of largest magnitude (the first, on ties),
 *         d = m / -8, id = d ? 1/d : 0, q = min (15, (int8) (x·id + 8.5)),
 *         stored d (fp16), 16 bytes: element j in the low nibble of byte j,
 *         element j + 16 in the high nibble;
 *   Q4_1: d = (max − min) / 15, q = min (15, (int8) ((x − min)·id + 0.5)),
 *         stored d, min (fp16), nibbles as Q4_0;
 *   Q5_0: d = m / -16, q = min (31, (int8) (x·id + 16.5)), the low nibbles
 *         as Q4_0 and bit 4 of element j at bit j of a 32-bit qh;
 *   Q5_1: d = (max − min) / 31, q = (uint8) ((x − min)·id + 0.5);
 *   Q8_0: d = amax / 127, q = roundf (x·id) (ties away from zero);
 *   IQ4_NL: a scale searched over 15 candidates for the non-uniform grid
 *         of 16 values (kvalues_iq4nl), weighted by x², codes the nearest
 *         grid values (quantize_iq4_nl, what llama-quantize calls);
 *   MXFP4: e = floor (log2 amax) − 2 + 127 (E8M0), the nearest of the 16
 *         FP4 (E2M1) values times 2^(e−128) (the first of equals);
 *
 * fp16 conversion rounds to nearest, ties to even, as ggml's. Products and
 * sums are single binary32 operations (this file is compiled without
 * contraction), so the bytes equal llama.cpp's.
 */
#include "config.h"

#include "quark-gguf-quants.h"
#include "quark-gguf-quants-private.h"
#include "kernels/quark-kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* each product rounded before it is added (no fused multiply-adds), whatever the build's flags */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize ("fp-contract=off")
#endif

static const QuarkGgmlTypeInfo types[] = {
  { QUARK_GGML_F32, "F32", 1, 4, 0 },
  { QUARK_GGML_F16, "F16", 1, 2, 1 },
  { QUARK_GGML_BF16, "BF16", 1, 2, 32 },
  { QUARK_GGML_Q8_0, "Q8_0", 32, 34, 7 },
  { QUARK_GGML_Q4_0, "Q4_0", 32, 18, 2 },
  { QUARK_GGML_Q4_1, "Q4_1", 32, 20, 3 },
  { QUARK_GGML_Q5_0, "Q5_0", 32, 22, 8 },
  { QUARK_GGML_Q5_1, "Q5_1", 32, 24, 9 },
  /* the k-quants, in super-blocks of 256; the file type is that of
   * llama-quantize's name for the type (Q3_K is Q3_K_M, Q4_K Q4_K_M, Q5_K
   * Q5_K_M) */
  { QUARK_GGML_Q2_K, "Q2_K", 256, 84, 10 },
  { QUARK_GGML_Q3_K, "Q3_K", 256, 110, 12 },
  { QUARK_GGML_Q4_K, "Q4_K", 256, 144, 15 },
  { QUARK_GGML_Q5_K, "Q5_K", 256, 176, 17 },
  { QUARK_GGML_Q6_K, "Q6_K", 256, 210, 18 },
  { QUARK_GGML_IQ4_NL, "IQ4_NL", 32, 18, 25 },
  { QUARK_GGML_MXFP4, "MXFP4", 32, 17, 38 },
  { 0, NULL, 0, 0, 0 },
};

const QuarkGgmlTypeInfo *
_quark_ggml_types (void)
{
  return types;
}

const QuarkGgmlTypeInfo *
_quark_ggml_type_lookup (QuarkGgmlType type)
{
  for (guint i = 0; types[i].name; i++)
    if (types[i].type == type)
      return &types[i];
  return NULL;
}

const QuarkGgmlTypeInfo *
_quark_ggml_type_from_name (const char *name)
{
  for (guint i = 0; types[i].name; i++)
    if (g_ascii_strcasecmp (types[i].name, name) == 0)
      return &types[i];
  return NULL;
}

gsize
_quark_ggml_row_size (QuarkGgmlType type, gsize n)
{
  const QuarkGgmlTypeInfo *t = _quark_ggml_type_lookup (type);
  return t ? n / t->block * t->bytes : 0;
}

/* binary32 to binary16, nearest with ties to even (overflow to infinity,
 * NaN to a quiet NaN), by bits: the same results as ggml's conversion and
 * the F16 kernel, without their generic encoder's cost per block */
static guint16
f32_to_f16 (float f)
{
  guint32 x, sign, mant;
  int exp;

  memcpy (&x, &f, 4);
  sign = (x >> 16) & 0x8000;
  exp = (int) ((x >> 23) & 0xff);
  mant = x & 0x7fffff;
  if (exp == 0xff)
    return (guint16) (sign | 0x7c00 | (mant ? 0x200 : 0));
  exp = exp - 127 + 15;
  if (exp >= 0x1f)
    return (guint16) (sign | 0x7c00);
  if (exp <= 0)
    {
      /* subnormal (or zero): shift the full mantissa, round to even */
      guint32 m, shift, half, rest, q;
      if (exp < -10)
        return (guint16) sign;
      m = mant | 0x800000;
      shift = (guint32) (14 - exp);
      q = m >> shift;
      rest = m & ((1u << shift) - 1);
      half = 1u << (shift - 1);
      if (rest > half || (rest == half && (q & 1)))
        q++;
      return (guint16) (sign | q);
    }
  {
    guint32 h = ((guint32) exp << 10) | (mant >> 13), rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
      h++;   /* a carry into the exponent is the right rounding, up to infinity */
    return (guint16) (sign | h);
  }
}

static void
put_half (guint8 *p, float v)
{
  guint16 h = f32_to_f16 (v);
  p[0] = (guint8) (h & 0xff);
  p[1] = (guint8) (h >> 8);
}

/* roundf (halves away from zero) for |v| < 2^23, inline */
static inline int
round_away (float v)
{
  int t = (int) v;
  float r = v - (float) t;
  if (r >= 0.5f)
    t++;
  else if (r <= -0.5f)
    t--;
  return t;
}

static float
get_half (const guint8 *p)
{
  return quark_kernel_f16_to_f32 ((guint16) (p[0] | (p[1] << 8)));
}

/* the element of largest magnitude (the first of equals), and the
 * magnitude in *amax_out when given */
static float
signed_max_abs (const float *x, guint n, float *amax_out)
{
  float amax = 0.0f, max = 0.0f;
  for (guint j = 0; j < n; j++)
    if (amax < fabsf (x[j]))
      {
        amax = fabsf (x[j]);
        max = x[j];
      }
  if (amax_out)
    *amax_out = amax;
  return max;
}

static float
signed_max (const float *x, guint n)
{
  return signed_max_abs (x, n, NULL);
}

static void
min_max (const float *x, guint n, float *lo, float *hi)
{
  float mn = FLT_MAX, mx = -FLT_MAX;
  for (guint j = 0; j < n; j++)
    {
      if (x[j] < mn)
        mn = x[j];
      if (x[j] > mx)
        mx = x[j];
    }
  *lo = mn;
  *hi = mx;
}

static float e8m0_half (guint8 e);
static int best_index_mxfp4 (float x, float e);

/* The codes of one block of 32 as llama.cpp's reference quantizers make
 * them (the header says how), with the scale d and (Q4_1, Q5_1) the
 * minimum m; MXFP4's E8M0 byte as d. _quark_gguf_legacy_blocks()
 * (quark-gguf-search.c) is the same on vectors, packing included. */
static void
legacy_codes (QuarkGgmlType type, const float *x, guint8 *codes, float *d_out, float *m_out)
{
  float d = 0, id, mn = 0, mx;

  switch (type)
    {
    case QUARK_GGML_Q4_0:
    case QUARK_GGML_Q5_0:
      {
        const int top = type == QUARK_GGML_Q4_0 ? 15 : 31;
        const float offset = type == QUARK_GGML_Q4_0 ? 8.5f : 16.5f;
        d = signed_max (x, 32) / (type == QUARK_GGML_Q4_0 ? -8 : -16);
        id = d ? 1.0f / d : 0.0f;
        for (guint j = 0; j < 32; j++)
          codes[j] = (guint8) MIN (top, (gint8) (x[j] * id + offset));
      }
      break;
    case QUARK_GGML_Q4_1:
    case QUARK_GGML_Q5_1:
      min_max (x, 32, &mn, &mx);
      d = (mx - mn) / (type == QUARK_GGML_Q4_1 ? (1 << 4) - 1 : (1 << 5) - 1);
      id = d ? 1.0f / d : 0.0f;
      for (guint j = 0; j < 32; j++)
        codes[j] = type == QUARK_GGML_Q4_1 ? (guint8) MIN (15, (gint8) ((x[j] - mn) * id + 0.5f))
                                           : (guint8) ((x[j] - mn) * id + 0.5f);
      break;
    case QUARK_GGML_Q8_0:
      {
        float amax = 0.0f;
        for (guint j = 0; j < 32; j++)
          amax = MAX (amax, fabsf (x[j]));
        d = amax / ((1 << 7) - 1);
        id = d ? 1.0f / d : 0.0f;
        for (guint j = 0; j < 32; j++)
          codes[j] = (guint8) (gint8) round_away (x[j] * id);   /* |x·id| <= 127: roundf */
      }
      break;
    default:   /* MXFP4 */
      {
        float amax = 0.0f, half;
        guint8 e;
        for (int j = 0; j < 32; j++)
          if (amax < fabsf (x[j]))
            amax = fabsf (x[j]);
        e = amax > 0.0f ? (guint8) (floorf (log2f (amax)) - 2 + 127) : 0;
        half = e8m0_half (e);
        for (int j = 0; j < 32; ++j)
          codes[j] = (guint8) best_index_mxfp4 (x[j], half);
        d = e;
      }
      break;
    }
  *d_out = d;
  *m_out = mn;
}

/* A block of the legacy types (or MXFP4) from its codes: the fp16 scale
 * (and minimum), element j in the low nibble of byte j and j + 16 in the
 * high one (Q8_0: one byte each), bit 4 of the 5-bit types' element j at
 * bit j of a 32-bit qh */
static void
legacy_pack (QuarkGgmlType type, const guint8 *codes, float d, float m, guint8 *y)
{
  gboolean five = type == QUARK_GGML_Q5_0 || type == QUARK_GGML_Q5_1;
  gboolean with_min = type == QUARK_GGML_Q4_1 || type == QUARK_GGML_Q5_1;
  guint8 *qs;
  guint32 qh = 0;

  if (type == QUARK_GGML_MXFP4)
    {
      y[0] = (guint8) d;
      for (int j = 0; j < 16; ++j)
        y[1 + j] = (guint8) (codes[j] | (codes[16 + j] << 4));
      return;
    }
  put_half (y, d);
  if (type == QUARK_GGML_Q8_0)
    {
      memcpy (y + 2, codes, 32);
      return;
    }
  if (with_min)
    put_half (y + 2, m);
  qs = y + 2 + (with_min ? 2 : 0) + (five ? 4 : 0);
  for (guint j = 0; j < 16; j++)
    {
      const guint8 q0 = codes[j], q1 = codes[j + 16];
      qs[j] = (guint8) ((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
  if (five)
    for (guint b = 0; b < 4; b++)
      y[2 + (with_min ? 2 : 0) + b] = (guint8) (qh >> (8 * b));
}

void
_quark_ggml_pack_block (QuarkGgmlType type, const guint8 *codes, float d, float m, guint8 *out)
{
  legacy_pack (type, codes, d, m, out);
}

guint16
_quark_ggml_f32_to_f16 (float f)
{
  return f32_to_f16 (f);
}


/* ---- the k-quants (super-blocks of 256) ---------------------------------- */

#define QK_K 256

/* round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int) */
static inline int
nearest_int (float fval)
{
  float val = fval + 12582912.f;
  int i;
  memcpy (&i, &val, sizeof (int));
  return (i & 0x007fffff) - 0x00400000;
}

/* ggml's make_qx_quants: a signed scale for n values in [-nmax, nmax), with
 * a search of 18 nearby scales weighted by @qw, or without by x^2
 * (rmse_type 1) */
static float
make_qx_quants (int n, int nmax, const float *x, gint8 *L, int rmse_type, const float *qw)
{
  float max = 0, amax = 0, iscale, sumlx = 0, suml2 = 0, scale, best;

  max = signed_max_abs (x, (guint) n, &amax);
  if (amax < GROUP_MAX_EPS)
    {
      for (int i = 0; i < n; ++i)
        L[i] = 0;
      return 0.f;
    }
  iscale = -nmax / max;
  for (int i = 0; i < n; ++i)
    {
      int l = nearest_int (iscale * x[i]);
      float w;
      l = MAX (-nmax, MIN (nmax - 1, l));
      L[i] = (gint8) (l + nmax);
      w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : 1;
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  scale = suml2 ? sumlx / suml2 : 0.0f;
  best = scale * sumlx;
  for (int is = -9; is <= 9; ++is)
    {
      if (is == 0)
        continue;
      iscale = -(nmax + 0.1f * is) / max;
      sumlx = suml2 = 0;
      for (int i = 0; i < n; ++i)
        {
          int l = nearest_int (iscale * x[i]);
          float w;
          l = MAX (-nmax, MIN (nmax - 1, l));
          w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : 1;
          sumlx += w * x[i] * l;
          suml2 += w * l * l;
        }
      if (suml2 > 0 && sumlx * sumlx > best * suml2)
        {
          for (int i = 0; i < n; ++i)
            {
              int l = nearest_int (iscale * x[i]);
              L[i] = (gint8) (nmax + MAX (-nmax, MIN (nmax - 1, l)));
            }
          scale = sumlx / suml2;
          best = scale * sumlx;
        }
    }
  return scale;
}

/* ggml's make_q3_quants with do_rmse: signed codes refined five rounds */
static float
make_q3_quants (int n, int nmax, const float *x, gint8 *L)
{
  float max = 0, amax = 0, iscale, sumlx = 0, suml2 = 0;

  max = signed_max_abs (x, (guint) n, &amax);
  if (amax < GROUP_MAX_EPS)
    {
      for (int i = 0; i < n; ++i)
        L[i] = 0;
      return 0.f;
    }
  iscale = -nmax / max;
  for (int i = 0; i < n; ++i)
    {
      int l = nearest_int (iscale * x[i]);
      float w = x[i] * x[i];
      l = MAX (-nmax, MIN (nmax - 1, l));
      L[i] = (gint8) l;
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  for (int itry = 0; itry < 5; ++itry)
    {
      int n_changed = 0;
      for (int i = 0; i < n; ++i)
        {
          float w = x[i] * x[i];
          float slx = sumlx - w * x[i] * L[i];
          if (slx > 0)
            {
              float sl2 = suml2 - w * L[i] * L[i];
              int new_l = nearest_int (x[i] * sl2 / slx);
              new_l = MAX (-nmax, MIN (nmax - 1, new_l));
              if (new_l != L[i])
                {
                  slx += w * x[i] * new_l;
                  sl2 += w * new_l * new_l;
                  if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                    {
                      L[i] = (gint8) new_l;
                      sumlx = slx;
                      suml2 = sl2;
                      ++n_changed;
                    }
                }
            }
        }
      if (!n_changed)
        break;
    }
  for (int i = 0; i < n; ++i)
    L[i] = (gint8) (L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ggml's make_qkx2_quants: an unsigned scale and a minimum for n values in
 * [0, nmax], searched over nstep + 1 scales, weighted errors */
static float
make_qkx2_quants (int n, int nmax, const float *x, const float *weights, guint8 *L, float *the_min, guint8 *Laux,
                  float rmin, float rdelta, int nstep, gboolean use_mad)
{
  float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0], iscale, scale, best_error = 0;

  for (int i = 1; i < n; ++i)
    {
      float w;
      if (x[i] < min)
        min = x[i];
      if (x[i] > max)
        max = x[i];
      w = weights[i];
      sum_w += w;
      sum_x += w * x[i];
    }
  if (min > 0)
    min = 0;
  if (max == min)
    {
      for (int i = 0; i < n; ++i)
        L[i] = 0;
      *the_min = -min;
      return 0.f;
    }
  iscale = nmax / (max - min);
  scale = 1 / iscale;
  for (int i = 0; i < n; ++i)
    {
      int l = nearest_int (iscale * (x[i] - min));
      float diff;
      L[i] = (guint8) MAX (0, MIN (nmax, l));
      diff = scale * L[i] + min - x[i];
      diff = use_mad ? fabsf (diff) : diff * diff;
      best_error += weights[i] * diff;
    }
  if (nstep < 1)
    {
      *the_min = -min;
      return scale;
    }
  for (int is = 0; is <= nstep; ++is)
    {
      float sum_l = 0, sum_l2 = 0, sum_xl = 0, D;
      iscale = (rmin + rdelta * is + nmax) / (max - min);
      for (int i = 0; i < n; ++i)
        {
          int l = nearest_int (iscale * (x[i] - min));
          float w;
          l = MAX (0, MIN (nmax, l));
          Laux[i] = (guint8) l;
          w = weights[i];
          sum_l += w * l;
          sum_l2 += w * l * l;
          sum_xl += w * l * x[i];
        }
      D = sum_w * sum_l2 - sum_l * sum_l;
      if (D > 0)
        {
          float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
          float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
          float cur_error = 0;
          if (this_min > 0)
            {
              this_min = 0;
              this_scale = sum_xl / sum_l2;
            }
          for (int i = 0; i < n; ++i)
            {
              float diff = this_scale * Laux[i] + this_min - x[i];
              diff = use_mad ? fabsf (diff) : diff * diff;
              cur_error += weights[i] * diff;
            }
          if (cur_error < best_error)
            {
              for (int i = 0; i < n; ++i)
                L[i] = Laux[i];
              best_error = cur_error;
              scale = this_scale;
              min = this_min;
            }
        }
    }
  *the_min = -min;
  return scale;
}

/* ggml's make_qkx3_quants, which the importance paths call with weights:
 * with weights given it computes what make_qkx2_quants does with rmin
 * -0.9, rdelta 0.05, 36 steps and squared errors (its flat case max <= min
 * is max == min here, its nstep < 1 case unreachable) */
static float
make_qkx3_quants (int n, int nmax, const float *x, const float *weights, guint8 *L, float *the_min, guint8 *Laux)
{
  return make_qkx2_quants (n, nmax, x, weights, L, the_min, Laux, -0.9f, 0.05f, 36, FALSE);
}

/* ggml's make_qp_quants: an unsigned scale for n non-negative values (the
 * k-quants' sub-block scales and minima) in [0, nmax], the best of nine
 * weighted by @qw, then five rounds of refining single codes */
static float
make_qp_quants (int n, int nmax, const float *x, guint8 *L, const float *qw)
{
  float max = 0, iscale, scale, best_mse = 0, sumlx = 0, suml2 = 0;

  for (int i = 0; i < n; ++i)
    max = MAX (max, x[i]);
  if (max < GROUP_MAX_EPS)
    {
      for (int i = 0; i < n; ++i)
        L[i] = 0;
      return 0.f;
    }
  iscale = nmax / max;
  for (int i = 0; i < n; ++i)
    L[i] = (guint8) nearest_int (iscale * x[i]);
  scale = 1 / iscale;
  for (int i = 0; i < n; ++i)
    {
      float diff = x[i] - scale * L[i];
      best_mse += qw[i] * diff * diff;
    }
  for (int is = -4; is <= 4; ++is)
    {
      float iscale_is, scale_is, mse = 0;
      if (is == 0)
        continue;
      iscale_is = (0.1f * is + nmax) / max;
      scale_is = 1 / iscale_is;
      for (int i = 0; i < n; ++i)
        {
          int l = MIN (nmax, nearest_int (iscale_is * x[i]));
          float diff = x[i] - scale_is * l;
          mse += qw[i] * diff * diff;
        }
      if (mse < best_mse)
        {
          best_mse = mse;
          iscale = iscale_is;
        }
    }
  for (int i = 0; i < n; ++i)
    {
      int l = MIN (nmax, nearest_int (iscale * x[i]));
      L[i] = (guint8) l;
      sumlx += qw[i] * x[i] * l;
      suml2 += qw[i] * l * l;
    }
  for (int itry = 0; itry < 5; ++itry)
    {
      int n_changed = 0;
      for (int i = 0; i < n; ++i)
        {
          float w = qw[i];
          float slx = sumlx - w * x[i] * L[i];
          float sl2 = suml2 - w * L[i] * L[i];
          if (slx > 0 && sl2 > 0)
            {
              int new_l = MIN (nmax, nearest_int (x[i] * sl2 / slx));
              if (new_l != L[i])
                {
                  slx += w * x[i] * new_l;
                  sl2 += w * new_l * new_l;
                  if (slx * slx * suml2 > sumlx * sumlx * sl2)
                    {
                      L[i] = (guint8) new_l;
                      sumlx = slx;
                      suml2 = sl2;
                      ++n_changed;
                    }
                }
            }
        }
      if (!n_changed)
        break;
    }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* QUARK_GGUF_SCALAR=1 in the environment: the searches one sub-block at a
 * time, as the scalar reference, instead of sixteen in vector lanes */
static gboolean
use_scalar (void)
{
  static int scalar = -1;

  if (g_atomic_int_get (&scalar) < 0)
    g_atomic_int_set (&scalar, g_strcmp0 (g_getenv ("QUARK_GGUF_SCALAR"), "1") == 0);
  return g_atomic_int_get (&scalar);
}

/* make_qx_quants (rmse_type 1) for @count sub-blocks of @n values at
 * x + j·n, weighted by @qw (laid out as @x) or by x²: sixteen at a time in
 * vector lanes (quark-gguf-search.c; a last group padded with zeros), the
 * same bits as one at a time */
static void
qx_many (int count, int n, int nmax, const float *x, const float *qw, gint8 *L, float *sc)
{
  int j = 0;

  if (use_scalar ())
    {
      for (; j < count; j++)
        sc[j] = make_qx_quants (n, nmax, x + j * n, L + j * n, 1, qw ? qw + j * n : NULL);
      return;
    }
  for (; j + 16 <= count; j += 16)
    _quark_gguf_qx_x16 (n, nmax, x + j * n, qw ? qw + j * n : NULL, L + j * n, sc + j);
  if (j < count)
    {
      float px[16 * 32] = { 0 }, pw[16 * 32] = { 0 }, psc[16];
      gint8 pL[16 * 32];
      memcpy (px, x + j * n, (gsize) (count - j) * n * sizeof (float));
      if (qw)
        memcpy (pw, qw + j * n, (gsize) (count - j) * n * sizeof (float));
      _quark_gguf_qx_x16 (n, nmax, px, qw ? pw : NULL, pL, psc);
      memcpy (L + j * n, pL, (gsize) (count - j) * n);
      memcpy (sc + j, psc, (gsize) (count - j) * sizeof (float));
    }
}

/* L[i] = offset + clamp (nearest_int ((x[i] (+ m[j])) / d[j]), lo, hi) for
 * the values of @count sub-blocks of @n, sub-block j at x + j·n: the
 * k-quants' codes from their stored scales; sub-blocks whose d[j] is 0
 * keep their codes */
static void
requantize (const float *x, int count, int n, const float *m, const float *d, int lo, int hi, int offset,
            guint8 *L)
{
  if (!use_scalar ())
    {
      _quark_gguf_requantize (x, count, n, m, d, lo, hi, offset, L);
      return;
    }
  for (int j = 0; j < count; j++)
    {
      if (!d[j])
        continue;
      for (int i = j * n; i < (j + 1) * n; ++i)
        {
          int l = nearest_int (m ? (x[i] + m[j]) / d[j] : x[i] / d[j]);
          L[i] = (guint8) (MAX (lo, MIN (hi, l)) + offset);
        }
    }
}

/* the importance of x's elements to the k-quants and the legacy types:
 * qw · sqrt (sigma2 + x²) */
static void
importance_weights (const float *x, const float *qw, int n, float sigma2, float *weights)
{
  for (int l = 0; l < n; ++l)
    weights[l] = qw[l] * sqrtf (sigma2 + x[l] * x[l]);
}

static float
sum_squares (const float *x, gsize n)
{
  float s = 0;
  for (gsize j = 0; j < n; ++j)
    s += x[j] * x[j];
  return s;
}

/* the 6-bit scale and minimum of sub-block j into the 12 bytes of Q4_K and
 * Q5_K (call in order of j) */
static void
put_scale_min_k4 (int j, guint8 ls, guint8 lm, guint8 *q)
{
  if (j < 4)
    {
      q[j] = ls;
      q[j + 4] = lm;
    }
  else
    {
      q[j + 4] = (guint8) ((ls & 0xF) | ((lm & 0xF) << 4));
      q[j - 4] |= (guint8) ((ls >> 4) << 6);
      q[j - 0] |= (guint8) ((lm >> 4) << 6);
    }
}

static void
get_scale_min_k4 (int j, const guint8 *q, guint8 *d, guint8 *m)
{
  if (j < 4)
    {
      *d = q[j] & 63;
      *m = q[j + 4] & 63;
    }
  else
    {
      *d = (guint8) ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
      *m = (guint8) ((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static void q2_k_finish (const float *x, guint8 *y, guint8 *L);

/* block_q2_K: scales[16], qs[64], d, dmin. The sub-blocks' scales sc,
 * minima and codes L are searched before (kquant_search); here their 4-bit
 * codes as quantize_row_q2_K_ref makes them, or with importance as
 * quantize_row_q2_K_impl (make_qp_quants weighted by the sub-blocks'
 * summed weights sw) */
static void
q2_k (const float *x, guint8 *y, guint8 *L, const float *sc, const float *mins, const float *sw)
{
  guint8 *scales = y;
  float max_scale = 0, max_min = 0;
  const float q4scale = 15.f;

  if (sw)
    {
      guint8 Ls[QK_K / 16], Lm[QK_K / 16];
      float dm = make_qp_quants (QK_K / 16, 15, sc, Ls, sw);
      float mm = make_qp_quants (QK_K / 16, 15, mins, Lm, sw);
      put_half (y + 80, dm);
      put_half (y + 82, mm);
      for (int j = 0; j < QK_K / 16; ++j)
        y[j] = (guint8) (Ls[j] | (Lm[j] << 4));
      q2_k_finish (x, y, L);
      return;
    }
  for (int j = 0; j < QK_K / 16; ++j)
    {
      if (sc[j] > max_scale)
        max_scale = sc[j];
      if (mins[j] > max_min)
        max_min = mins[j];
    }
  if (max_scale > 0)
    {
      float iscale = q4scale / max_scale;
      for (int j = 0; j < QK_K / 16; ++j)
        scales[j] = (guint8) nearest_int (iscale * sc[j]);
      put_half (y + 80, max_scale / q4scale);
    }
  else
    {
      memset (scales, 0, 16);
      put_half (y + 80, 0.f);
    }
  if (max_min > 0)
    {
      float iscale = q4scale / max_min;
      for (int j = 0; j < QK_K / 16; ++j)
        scales[j] |= (guint8) (nearest_int (iscale * mins[j]) << 4);
      put_half (y + 82, max_min / q4scale);
    }
  else
    put_half (y + 82, 0.f);
  q2_k_finish (x, y, L);
}

/* 32 codes at a time, for the k-quants' packing */
typedef guint8 bytes32 __attribute__ ((vector_size (32)));

/* a super-block's 256 codes as eight vectors of 32 */
static void
load_codes (const void *L, bytes32 *v)
{
  for (int k = 0; k < QK_K / 32; k++)
    memcpy (&v[k], (const guint8 *) L + 32 * k, 32);
}

/* 2-bit codes (Q2_K's, Q3_K's low bits) of l, l + 32, l + 64 and l + 96
 * of each half into bits 0-1, 2-3, 4-5 and 6-7 of qs[l] */
static void
pack_2bit (const bytes32 *v, guint8 *qs)
{
  for (int h = 0; h < 2; h++)
    {
      bytes32 q = v[4 * h] | (v[4 * h + 1] << 2) | (v[4 * h + 2] << 4) | (v[4 * h + 3] << 6);
      memcpy (qs + 32 * h, &q, 32);
    }
}

/* Q2_K's codes again from the stored scales and minima, packed */
static void
q2_k_finish (const float *x, guint8 *y, guint8 *L)
{
  const guint8 *scales = y;
  const float d_all = get_half (y + 80), m_all = get_half (y + 82);
  float d[QK_K / 16], dm[QK_K / 16];
  bytes32 v[QK_K / 32];

  for (int j = 0; j < QK_K / 16; ++j)
    {
      d[j] = d_all * (scales[j] & 0xF);
      dm[j] = m_all * (scales[j] >> 4);
    }
  requantize (x, QK_K / 16, 16, dm, d, 0, 3, 0, L);
  load_codes (L, v);
  pack_2bit (v, y + 16);
}

static void q3_k_finish (const float *x, guint8 *y, gint8 *L);

static void q3_k_from (const float *x, guint8 *y, gint8 *L, const float *sc);

/* Q3_K for @nb (1 to QUARK_GGUF_Q3_MAX / 16) super-blocks: the
 * sub-blocks' searches (the vector form takes them all at once), then each
 * super-block's scales and codes */
static void
q3_k (const float *x, guint8 *y, int nb)
{
  gint8 L[QUARK_GGUF_Q3_MAX * 16];
  float sc[QUARK_GGUF_Q3_MAX];

  if (use_scalar ())
    for (int j = 0; j < nb * QK_K / 16; ++j)
      sc[j] = make_q3_quants (16, 4, x + 16 * j, L + 16 * j);
  else
    _quark_gguf_q3_many (4, nb * QK_K / 16, x, L, sc);
  for (int b = 0; b < nb; b++)
    q3_k_from (x + QK_K * b, y + _quark_ggml_row_size (QUARK_GGML_Q3_K, QK_K) * b, L + QK_K * b,
               sc + QK_K / 16 * b);
}

/* block_q3_K: hmask[32], qs[64], scales[12], d. One super-block from its
 * sub-blocks' searches: L (changed to the final codes) and the scales sc */
static void
q3_k_from (const float *x, guint8 *y, gint8 *L, const float *sc)
{
  float max_scale = 0, amax = 0;
  guint8 *scales = y + 96;

  for (int j = 0; j < QK_K / 16; ++j)
    {
      float scale;
      scale = fabsf (sc[j]);
      if (scale > amax)
        {
          amax = scale;
          max_scale = sc[j];
        }
    }
  memset (scales, 0, 12);
  if (max_scale)
    {
      float iscale = -32.f / max_scale;
      for (int j = 0; j < QK_K / 16; ++j)
        {
          gint8 l = (gint8) nearest_int (iscale * sc[j]);
          l = (gint8) (MAX (-32, MIN (31, l)) + 32);
          if (j < 8)
            scales[j] = l & 0xF;
          else
            scales[j - 8] |= (guint8) ((l & 0xF) << 4);
          l >>= 4;
          scales[j % 4 + 8] |= (guint8) (l << (2 * (j / 4)));
        }
      put_half (y + 108, 1 / iscale);
    }
  else
    put_half (y + 108, 0.f);
  q3_k_finish (x, y, L);
}

/* quantize_row_q3_K_impl: with importance, sub-block scales from
 * make_qx_quants weighted by it, and their 6-bit codes by the sums of
 * the weights */
static void
q3_k_weighted (const float *x, guint8 *y, const float *qw)
{
  gint8 L[QK_K], Ls[QK_K / 16];
  float sc[QK_K / 16], sw[QK_K / 16], weight[QK_K], d_block;
  guint8 *scales = y + 96;
  const float sigma2 = 2 * sum_squares (x, QK_K) / QK_K;

  importance_weights (x, qw, QK_K, sigma2, weight);
  for (int j = 0; j < QK_K / 16; ++j)
    {
      float sumw = 0;
      for (int l = 0; l < 16; ++l)
        sumw += weight[16 * j + l];
      sw[j] = sumw;
    }
  qx_many (QK_K / 16, 16, 4, x, weight, L, sc);
  memset (scales, 0, 12);
  d_block = make_qx_quants (QK_K / 16, 32, sc, Ls, 1, sw);
  for (int j = 0; j < QK_K / 16; ++j)
    {
      int l = Ls[j];
      if (j < 8)
        scales[j] = (guint8) (l & 0xF);
      else
        scales[j - 8] |= (guint8) ((l & 0xF) << 4);
      l >>= 4;
      scales[j % 4 + 8] |= (guint8) (l << (2 * (j / 4)));
    }
  put_half (y + 108, d_block);
  q3_k_finish (x, y, L);
}

/* Q3_K's codes again from the stored scales, high bits and packing */
static void
q3_k_finish (const float *x, guint8 *y, gint8 *L)
{
  guint8 *hmask = y, *qs = y + 32, *scales = y + 96;
  const float d_all = get_half (y + 108);
  bytes32 v[QK_K / 32], hm = { 0 };
  float d[QK_K / 16];

  for (int j = 0; j < QK_K / 16; ++j)
    {
      gint8 s = (gint8) (j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4);
      s = (gint8) ((s | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
      d[j] = d_all * s;
    }
  requantize (x, QK_K / 16, 16, NULL, d, -4, 3, 4, (guint8 *) L);
  /* codes 0..7: bit 2 of element j into bit j / 32 of hmask[j % 32] (the
   * reference's "L > 3: set, subtract 4", without its branch on every
   * element); the low two bits of l, l + 32, l + 64 and l + 96 of each
   * half into qs[l] */
  load_codes (L, v);
  for (int k = 0; k < QK_K / 32; k++)
    {
      hm |= ((v[k] >> 2) & 1) << k;
      v[k] &= 3;
    }
  memcpy (hmask, &hm, 32);
  pack_2bit (v, qs);
}

static void q45_k_finish (const float *x, guint8 *y, guint8 *L, gboolean five);

/* block_q4_K and block_q5_K: d, dmin, scales[12], (qh[32],) qs[128]. The
 * sub-blocks' scales sc, minima and codes L are searched before
 * (kquant_search); here their 6-bit codes as quantize_row_q4_K_ref and
 * _q5_K_ref make them, or with importance as quantize_row_q4_K_impl and
 * _q5_K_impl (make_qp_quants weighted by the sub-blocks' summed weights sw) */
static void
q45_k (const float *x, guint8 *y, gboolean five, guint8 *L, const float *sc, const float *mins, const float *sw)
{
  guint8 *scales = y + 4;
  float max_scale = 0, max_min = 0, inv_scale, inv_min;

  if (sw)
    {
      guint8 Ls[QK_K / 32], Lm[QK_K / 32];
      float d_block = make_qp_quants (QK_K / 32, 63, sc, Ls, sw);
      float m_block = make_qp_quants (QK_K / 32, 63, mins, Lm, sw);
      for (int j = 0; j < QK_K / 32; ++j)
        {
          guint8 ls = Ls[j], lm = Lm[j];
          if (five)
            {
              ls = MIN (63, ls);   /* Q5_K only, as llama.cpp */
              lm = MIN (63, lm);
            }
          put_scale_min_k4 (j, ls, lm, scales);
        }
      put_half (y, d_block);
      put_half (y + 2, m_block);
      q45_k_finish (x, y, L, five);
      return;
    }
  for (int j = 0; j < QK_K / 32; ++j)
    {
      if (sc[j] > max_scale)
        max_scale = sc[j];
      if (mins[j] > max_min)
        max_min = mins[j];
    }
  inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < QK_K / 32; ++j)
    {
      guint8 ls = (guint8) nearest_int (inv_scale * sc[j]);
      guint8 lm = (guint8) nearest_int (inv_min * mins[j]);
      ls = MIN (63, ls);
      lm = MIN (63, lm);
      put_scale_min_k4 (j, ls, lm, scales);
    }
  put_half (y, max_scale / 63.f);
  put_half (y + 2, max_min / 63.f);
  q45_k_finish (x, y, L, five);
}

/* Q4_K's and Q5_K's codes again from the stored scales and minima, packed */
static void
q45_k_finish (const float *x, guint8 *y, guint8 *L, gboolean five)
{
  const guint8 *scales = y + 4;
  const int nmax = five ? 31 : 15;
  const float d_all = get_half (y), m_all = get_half (y + 2);
  bytes32 v[QK_K / 32], hm = { 0 };
  float d[QK_K / 32], dm[QK_K / 32];

  for (int j = 0; j < QK_K / 32; ++j)
    {
      guint8 s, m;
      get_scale_min_k4 (j, scales, &s, &m);
      d[j] = d_all * s;
      dm[j] = m_all * m;
    }
  requantize (x, QK_K / 32, 32, dm, d, 0, nmax, 0, L);
  /* 32 codes at a time: Q4_K's low and high nibbles are sub-blocks 2k and
   * 2k + 1; Q5_K's codes 0..31 put bit 4 of sub-block k into bit k of qh
   * (the reference's "> 15: set, subtract 16") and the low four bits as
   * Q4_K's */
  load_codes (L, v);
  for (int k = 0; five && k < QK_K / 32; k++)
    {
      hm |= ((v[k] >> 4) & 1) << k;
      v[k] &= 15;
    }
  if (five)
    memcpy (y + 16, &hm, 32);
  for (int k = 0; k < QK_K / 64; k++)
    {
      bytes32 q = v[2 * k] | (v[2 * k + 1] << 4);
      memcpy (y + (five ? 48 : 16) + 32 * k, &q, 32);
    }
}

/* block_q6_K: ql[128], qh[64], scales[16] (int8), d; with importance
 * @qw (quantize_row_q6_K_impl) the sub-block scales are searched with it
 * as the weights */
static void
q6_k (const float *x, guint8 *y, const float *qw)
{
  gint8 L[QK_K];
  float sc[QK_K / 16], d[QK_K / 16], max_scale = 0, max_abs_scale = 0, iscale, d_all;
  bytes32 v[QK_K / 32], high[QK_K / 32];
  guint8 *ql = y, *qh = y + 128;
  gint8 *scales = (gint8 *) (y + 192);

  qx_many (QK_K / 16, 16, 32, x, qw, L, sc);
  for (int ib = 0; ib < QK_K / 16; ++ib)
    {
      float abs_scale;
      abs_scale = fabsf (sc[ib]);
      if (abs_scale > max_abs_scale)
        {
          max_abs_scale = abs_scale;
          max_scale = sc[ib];
        }
    }
  if (max_abs_scale < GROUP_MAX_EPS)
    {
      memset (y, 0, 210);
      put_half (y + 208, 0.f);
      return;
    }
  iscale = -128.f / max_scale;
  put_half (y + 208, 1 / iscale);
  d_all = get_half (y + 208);
  for (int ib = 0; ib < QK_K / 16; ++ib)
    scales[ib] = (gint8) MIN (127, nearest_int (iscale * sc[ib]));
  for (int j = 0; j < QK_K / 16; ++j)
    d[j] = d_all * scales[j];
  requantize (x, QK_K / 16, 16, NULL, d, -32, 31, 32, (guint8 *) L);
  /* the codes (0 … 63) of each half: low nibbles of l and l + 64 into ql[l],
   * of l + 32 and l + 96 into ql[l + 32], the high two bits of all four
   * into qh[l] (packed as Q2_K's codes); 32 bytes at a time */
  load_codes (L, v);
  for (int k = 0; k < QK_K / 32; k++)
    high[k] = v[k] >> 4;
  pack_2bit (high, qh);
  for (int h = 0; h < 2; h++)
    {
      bytes32 lo1 = (v[4 * h] & 0xF) | (v[4 * h + 2] << 4), lo2 = (v[4 * h + 1] & 0xF) | (v[4 * h + 3] << 4);
      memcpy (ql + 64 * h, &lo1, 32);
      memcpy (ql + 64 * h + 32, &lo2, 32);
    }
}

/* the k-quants back to floats, as ggml's dequantize_row_*_K */
static void
dequantize_k (QuarkGgmlType type, const guint8 *p, float *y)
{
  switch (type)
    {
    case QUARK_GGML_Q2_K:
      {
        const float d = get_half (p + 80), min = get_half (p + 82);
        for (int e = 0; e < QK_K; e++)
          {
            int n = e / 128, r = e % 128;
            guint8 s = p[e / 16];
            float dl = d * (s & 0xF), ml = min * (s >> 4);
            y[e] = dl * ((gint8) ((p[16 + n * 32 + r % 32] >> (2 * (r / 32))) & 3)) - ml;
          }
      }
      break;
    case QUARK_GGML_Q3_K:
      {
        const float d_all = get_half (p + 108);
        const guint8 *hm = p, *qs = p + 32, *sc = p + 96;
        for (int e = 0; e < QK_K; e++)
          {
            int j = e / 16, n = e / 128, r = e % 128;
            int s = (j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4) | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
            float dl = d_all * (s - 32);
            int q = (qs[n * 32 + r % 32] >> (2 * (r / 32))) & 3;
            y[e] = dl * ((gint8) q - ((hm[e % 32] & (1 << (e / 32))) ? 0 : 4));
          }
      }
      break;
    case QUARK_GGML_Q4_K:
    case QUARK_GGML_Q5_K:
      {
        gboolean five = type == QUARK_GGML_Q5_K;
        const float d = get_half (p), min = get_half (p + 2);
        const guint8 *qh = p + 16, *ql = p + (five ? 48 : 16);
        for (int e = 0; e < QK_K; e++)
          {
            int chunk = e / 64, r = e % 64, is = 2 * chunk + r / 32, l = r % 32;
            guint8 s, m;
            int q;
            get_scale_min_k4 (is, p + 4, &s, &m);
            q = r < 32 ? ql[chunk * 32 + l] & 0xF : ql[chunk * 32 + l] >> 4;
            if (five && (qh[l] & ((r < 32 ? 1 : 2) << (2 * chunk))))
              q += 16;
            y[e] = d * s * q - min * m;
          }
      }
      break;
    case QUARK_GGML_Q6_K:
      {
        const float d = get_half (p + 208);
        const guint8 *ql = p, *qh = p + 128;
        const gint8 *sc = (const gint8 *) (p + 192);
        for (int e = 0; e < QK_K; e++)
          {
            int n = e / 128, r = e % 128, k = r / 32, l = r % 32, is = n * 8 + l / 16 + 2 * k;
            int low = (k == 0 || k == 1) ? ql[n * 64 + l + 32 * k] & 0xF : ql[n * 64 + l + 32 * (k - 2)] >> 4;
            int q = (gint8) ((low | (((qh[n * 32 + l] >> (2 * k)) & 3) << 4))) - 32;
            y[e] = d * sc[is] * q;
          }
      }
      break;
    default:
      g_assert_not_reached ();
    }
}


/* ---- IQ4_NL and MXFP4 (blocks of 32) ------------------------------------- */

static const gint8 kvalues_iq4nl[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
static const gint8 kvalues_mxfp4[16] = { 0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12 };

/* the index of the grid value nearest x (ggml's best_index_int8) */
static int
best_index_int8 (int n, const gint8 *val, float x)
{
  int ml = 0, mu = n - 1;

  if (x <= val[0])
    return 0;
  if (x >= val[n - 1])
    return n - 1;
  while (mu - ml > 1)
    {
      int mav = (ml + mu) / 2;
      if (x < val[mav])
        mu = mav;
      else
        ml = mav;
    }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* quantize_row_iq4_nl_impl for one block of 32, ntry 7: the scale
 * searched with errors weighted by x², or with importance @qw by
 * qw · sqrt (sigma2 + x²), sigma2 = 2 Σx² / 32 */
static void
iq4_nl (const float *x, guint8 *y, const float *qw)
{
  const int ntry = 7;
  guint8 L[32];
  float weight[32], amax = 0, max, d, id, sumqx = 0, sumq2 = 0, best, scale;

  memset (y + 2, 0, 16);
  if (qw)
    {
      float sigma2 = sum_squares (x, 32);
      sigma2 *= 2.f / 32;
      importance_weights (x, qw, 32, sigma2, weight);
    }
  else
    for (int j = 0; j < 32; ++j)
      weight[j] = x[j] * x[j];
  max = signed_max_abs (x, 32, &amax);
  if (amax < GROUP_MAX_EPS)
    scale = 0;
  else
    {
      d = -max / kvalues_iq4nl[0];
      id = 1 / d;
      for (int j = 0; j < 32; ++j)
        {
          float al = id * x[j];
          int l = best_index_int8 (16, kvalues_iq4nl, al);
          float q = kvalues_iq4nl[l], w = weight[j];
          L[j] = (guint8) l;
          sumqx += w * q * x[j];
          sumq2 += w * q * q;
        }
      d = sumqx / sumq2;
      best = d * sumqx;
      for (int itry = -ntry; itry <= ntry; ++itry)
        {
          id = (itry + kvalues_iq4nl[0]) / max;
          sumqx = sumq2 = 0;
          for (int j = 0; j < 32; ++j)
            {
              float al = id * x[j];
              int l = best_index_int8 (16, kvalues_iq4nl, al);
              float q = kvalues_iq4nl[l], w = weight[j];
              sumqx += w * q * x[j];
              sumq2 += w * q * q;
            }
          if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
              d = sumqx / sumq2;
              best = d * sumqx;
            }
        }
      scale = d;
    }
  put_half (y, scale);
  id = scale ? 1 / scale : 0;
  for (int j = 0; j < 32; ++j)
    L[j] = (guint8) best_index_int8 (16, kvalues_iq4nl, id * x[j]);
  for (int j = 0; j < 16; ++j)
    y[2 + j] = (guint8) (L[j] | (L[16 + j] << 4));
}

/* IQ4_NL for @nb (<= 16) blocks: their weights as iq4_nl () makes them,
 * the searches in the lanes of vectors (_quark_gguf_iq4nl_x16 (), a last
 * group padded with zero blocks), then the blocks stored */
static void
iq4_nl_blocks (const float *x, guint8 *y, const float *qw, int nb)
{
  float px[16 * 32] = { 0 }, weight[16 * 32] = { 0 }, scales[16];
  guint8 L[16 * 32];

  memcpy (px, x, (gsize) nb * 32 * sizeof (float));
  for (int b = 0; b < nb; b++)
    {
      const float *xb = x + 32 * b;
      if (qw)
        {
          float sigma2 = sum_squares (xb, 32);
          sigma2 *= 2.f / 32;
          importance_weights (xb, qw + 32 * b, 32, sigma2, weight + 32 * b);
        }
      else
        for (int j = 0; j < 32; ++j)
          weight[32 * b + j] = xb[j] * xb[j];
    }
  _quark_gguf_iq4nl_x16 (px, weight, scales, L);
  for (int b = 0; b < nb; b++)
    {
      guint8 *yb = y + 18 * b;
      put_half (yb, scales[b]);
      for (int j = 0; j < 16; ++j)
        yb[2 + j] = (guint8) (L[32 * b + j] | (L[32 * b + 16 + j] << 4));
    }
}

/* 2^(e - 128): half the E8M0 value (ggml_e8m0_to_fp32_half) */
static float
e8m0_half (guint8 e)
{
  guint32 bits = e < 2 ? 0x00200000u << e : (guint32) (e - 1) << 23;
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

static int
best_index_mxfp4 (float x, float e)
{
  int best_index = 0;
  float best_err = fabsf (kvalues_mxfp4[0] * e - x);
  for (int i = 1; i < 16; i++)
    {
      float err = fabsf (kvalues_mxfp4[i] * e - x);
      if (err < best_err)
        {
          best_index = i;
          best_err = err;
        }
    }
  return best_index;
}


/* quantize_row_q4_0_impl / _q5_0_impl with importance, for @nb (<= 16)
 * blocks of 32: a signed scale for [-nmax, nmax) searched by
 * make_qx_quants, weighted by qw · sqrt (sigma2 + x²) with sigma2 the
 * row's Σx² / n; no rounding of the codes again after the scale is
 * stored */
static void
q4_0_q5_0_weighted (const float *x, guint8 *y, const float *qw, float sigma2, gboolean five, int nb)
{
  float weight[16 * 32] = { 0 }, d[16];
  gint8 L[16 * 32];
  const gsize bytes = five ? 22 : 18;

  importance_weights (x, qw, 32 * nb, sigma2, weight);
  qx_many (nb, 32, five ? 16 : 8, x, weight, L, d);
  for (int b = 0; b < nb; b++)
    legacy_pack (five ? QUARK_GGML_Q5_0 : QUARK_GGML_Q4_0, (const guint8 *) L + 32 * b, d[b], 0.f, y + bytes * b);
}

/* quantize_row_q4_1_impl / _q5_1_impl with importance: scale and minimum
 * from make_qkx3_quants with the same weights */
static void
q4_1_q5_1_weighted (const float *x, guint8 *y, const float *qw, float sigma2, gboolean five)
{
  float weight[32], d, min;
  guint8 L[32], Laux[32];

  importance_weights (x, qw, 32, sigma2, weight);
  d = make_qkx3_quants (32, five ? 31 : 15, x, weight, L, &min, Laux);
  legacy_pack (five ? QUARK_GGML_Q5_1 : QUARK_GGML_Q4_1, L, d, -min, y);
}

/* make_qkx2_quants for @count sub-blocks of @n values at x + j·n (weights
 * alike): sixteen at a time in the lanes of vectors (quark-gguf-search.c;
 * a last group padded with zeros), or one at a time with
 * QUARK_GGUF_SCALAR=1 in the environment; the same bits either way */
static void
qkx2_many (int count, int n, int nmax, const float *x, const float *w, guint8 *L, float *sc, float *mins,
           float rmin, float rdelta, int nstep, gboolean use_mad)
{
  int j = 0;

  if (use_scalar ())
    {
      guint8 Laux[32];
      for (; j < count; j++)
        sc[j] = make_qkx2_quants (n, nmax, x + j * n, w + j * n, L + j * n, &mins[j], Laux, rmin, rdelta, nstep,
                                  use_mad);
      return;
    }
  for (; j + 64 <= count; j += 64)
    _quark_gguf_qkx2_x64 (n, nmax, x + j * n, w + j * n, L + j * n, sc + j, mins + j, rmin, rdelta, nstep, use_mad);
  for (; j + 32 <= count; j += 32)
    _quark_gguf_qkx2_x32 (n, nmax, x + j * n, w + j * n, L + j * n, sc + j, mins + j, rmin, rdelta, nstep, use_mad);
  for (; j + 16 <= count; j += 16)
    _quark_gguf_qkx2_x16 (n, nmax, x + j * n, w + j * n, L + j * n, sc + j, mins + j, rmin, rdelta, nstep, use_mad);
  if (j < count)
    {
      float px[16 * 32] = { 0 }, pw[16 * 32] = { 0 }, psc[16], pmins[16];
      guint8 pL[16 * 32];
      memcpy (px, x + j * n, (gsize) (count - j) * n * sizeof (float));
      memcpy (pw, w + j * n, (gsize) (count - j) * n * sizeof (float));
      _quark_gguf_qkx2_x16 (n, nmax, px, pw, pL, psc, pmins, rmin, rdelta, nstep, use_mad);
      memcpy (L + j * n, pL, (gsize) (count - j) * n);
      memcpy (sc + j, psc, (gsize) (count - j) * sizeof (float));
      memcpy (mins + j, pmins, (gsize) (count - j) * sizeof (float));
    }
}

/* Q2_K, Q4_K and Q5_K for @nb (at most 8) super-blocks: each sub-block's
 * weights as the reference (Q2_K |x|, Q4_K/Q5_K the sub-block's rms + |x|)
 * or the importance path (qw · sqrt (sigma2 + x²), sigma2 of the
 * super-block) compute them, the sub-block searches together, then each
 * super-block's scales and codes */
static void
kquant_blocks (QuarkGgmlType type, const float *x, int nb, const float *qw, guint8 *y)
{
  const int sub = type == QUARK_GGML_Q2_K ? 16 : 32, per = QK_K / sub, count = nb * per;
  const int nmax = type == QUARK_GGML_Q2_K ? 3 : type == QUARK_GGML_Q4_K ? 15 : 31;
  const gboolean five = type == QUARK_GGML_Q5_K;
  const gsize bytes = _quark_ggml_row_size (type, QK_K);
  float w[8 * QK_K], sc[8 * QK_K / 16], mins[8 * QK_K / 16], sw[8 * QK_K / 16];
  guint8 L[8 * QK_K];

  for (int b = 0; b < nb; b++)
    {
      const float *xb = x + QK_K * b;
      float *wb = w + QK_K * b;
      if (qw)
        {
          /* Q2_K: Σx² / 256; Q4_K, Q5_K: 2 Σx² / 256 */
          const float sigma2 = (type == QUARK_GGML_Q2_K ? 1 : 2) * sum_squares (xb, QK_K) / QK_K;
          importance_weights (xb, qw + QK_K * b, QK_K, sigma2, wb);
          for (int j = 0; j < per; ++j)
            {
              float sumw = 0;
              for (int l = 0; l < sub; ++l)
                sumw += wb[sub * j + l];
              sw[per * b + j] = sumw;
            }
        }
      else if (type == QUARK_GGML_Q2_K)
        for (int l = 0; l < QK_K; ++l)
          wb[l] = fabsf (xb[l]);
      else
        {
          /* each sub-block's Σx², element by element as sum_squares ()
           * adds them, the eight sums side by side (eight independent
           * chains of additions instead of one after another) */
          float s2[QK_K / 32] = { 0 };
          for (int l = 0; l < 32; ++l)
#pragma GCC unroll 8
            for (int j = 0; j < QK_K / 32; ++j)
              s2[j] += xb[32 * j + l] * xb[32 * j + l];
          for (int j = 0; j < QK_K / 32; ++j)
            {
              float av_x = sqrtf (s2[j] / 32);
              for (int l = 0; l < 32; ++l)
                wb[32 * j + l] = av_x + fabsf (xb[32 * j + l]);
            }
        }
    }
  if (qw)   /* make_qkx3_quants */
    qkx2_many (count, sub, nmax, x, w, L, sc, mins, -0.9f, 0.05f, 36, FALSE);
  else if (type == QUARK_GGML_Q2_K)
    qkx2_many (count, sub, nmax, x, w, L, sc, mins, -0.5f, 0.1f, 15, TRUE);
  else
    qkx2_many (count, sub, nmax, x, w, L, sc, mins, five ? -0.5f : -1.f, 0.1f, five ? 15 : 20, FALSE);
  for (int b = 0; b < nb; b++)
    {
      const float *swb = qw ? sw + per * b : NULL;
      if (type == QUARK_GGML_Q2_K)
        q2_k (x + QK_K * b, y + bytes * b, L + QK_K * b, sc + per * b, mins + per * b, swb);
      else
        q45_k (x + QK_K * b, y + bytes * b, five, L + QK_K * b, sc + per * b, mins + per * b, swb);
    }
}

void
_quark_ggml_quantize_row (QuarkGgmlType type, const float *x, gsize n, const float *qw, guint8 *out)
{
  float sigma2 = 0;

  switch (type)
    {
    case QUARK_GGML_F32:
      memcpy (out, x, n * 4);
      return;
    case QUARK_GGML_F16:
      for (gsize i = 0; i < n; i++)
        put_half (out + 2 * i, x[i]);
      return;
    case QUARK_GGML_BF16:
      quark_kernel_convert_from_f32 (QUARK_DTYPE_BF16, x, out, n);
      return;
    case QUARK_GGML_Q2_K: case QUARK_GGML_Q3_K: case QUARK_GGML_Q4_K: case QUARK_GGML_Q5_K: case QUARK_GGML_Q6_K:
      /* Q2_K, Q4_K and Q5_K eight super-blocks at a time (their searches
       * on up to four groups of 16 sub-blocks at once), Q3_K up to 64 (its
       * search gathers the sub-blocks still going across them), Q3_K with
       * importance and Q6_K two */
      for (gsize b = 0, step = type == QUARK_GGML_Q6_K || (type == QUARK_GGML_Q3_K && qw) ? 2
                                : type == QUARK_GGML_Q3_K ? QUARK_GGUF_Q3_MAX / 16 : 8; b < n / QK_K; b += step)
        {
          const float *xb = x + QK_K * b, *wb = qw ? qw + QK_K * b : NULL;
          guint8 *yb = out + _quark_ggml_row_size (type, QK_K) * b;
          switch (type)
            {
            case QUARK_GGML_Q3_K:
              if (wb == NULL)
                {
                  q3_k (xb, yb, (int) MIN ((gsize) QUARK_GGUF_Q3_MAX / 16, n / QK_K - b));
                  break;
                }
              /* fall through */
            case QUARK_GGML_Q6_K:
              for (gsize k = 0; k < 2 && b + k < n / QK_K; k++)
                {
                  const float *xk = xb + QK_K * k, *wk = wb ? wb + QK_K * k : NULL;
                  guint8 *yk = yb + _quark_ggml_row_size (type, QK_K) * k;
                  if (type == QUARK_GGML_Q6_K)
                    q6_k (xk, yk, wk);
                  else
                    q3_k_weighted (xk, yk, wk);
                }
              break;
            default:
              kquant_blocks (type, xb, (int) MIN ((gsize) 8, n / QK_K - b), wb, yb);
              break;
            }
        }
      return;
    case QUARK_GGML_Q4_0: case QUARK_GGML_Q4_1: case QUARK_GGML_Q5_0: case QUARK_GGML_Q5_1:
      /* the legacy types' importance paths weigh by the whole row's mean square */
      if (qw)
        sigma2 = sum_squares (x, n) / (float) n;
      if (qw && (type == QUARK_GGML_Q4_0 || type == QUARK_GGML_Q5_0))
        {
          /* 16 blocks at a time: their scale searches run together */
          const gsize bytes = type == QUARK_GGML_Q5_0 ? 22 : 18;
          for (gsize b = 0; b < n / 32; b += 16)
            q4_0_q5_0_weighted (x + 32 * b, out + bytes * b, qw + 32 * b, sigma2, type == QUARK_GGML_Q5_0,
                                (int) MIN ((gsize) 16, n / 32 - b));
          return;
        }
      if (qw)
        {
          const gsize bytes = _quark_ggml_row_size (type, 32);
          for (gsize b = 0; b < n / 32; b++)
            q4_1_q5_1_weighted (x + 32 * b, out + bytes * b, qw + 32 * b, sigma2, type == QUARK_GGML_Q5_1);
          return;
        }
      break;
    case QUARK_GGML_IQ4_NL:
      if (use_scalar ())
        for (gsize b = 0; b < n / 32; b++)
          iq4_nl (x + 32 * b, out + 18 * b, qw ? qw + 32 * b : NULL);
      else
        for (gsize b = 0; b < n / 32; b += 16)
          iq4_nl_blocks (x + 32 * b, out + 18 * b, qw ? qw + 32 * b : NULL, (int) MIN ((gsize) 16, n / 32 - b));
      return;
    default:
      break;
    }
  /* the reference quantizers of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and MXFP4
   * (Q8_0 and MXFP4 take no importance, as llama.cpp's): 64 blocks at a
   * time on vectors, or with QUARK_GGUF_SCALAR=1 one at a time, the codes
   * then packed */
  {
    const gsize bytes = _quark_ggml_row_size (type, 32);
    guint8 codes[64 * 32];
    float scales[2 * 64];

    for (gsize b = 0; b < n / 32; b += 64)
      {
        gsize nb = MIN ((gsize) 64, n / 32 - b);
        if (use_scalar ())
          {
            for (gsize k = 0; k < nb; k++)
              {
                legacy_codes (type, x + 32 * (b + k), codes + 32 * k, &scales[2 * k], &scales[2 * k + 1]);
                legacy_pack (type, codes + 32 * k, scales[2 * k], scales[2 * k + 1], out + bytes * (b + k));
              }
            continue;
          }
        _quark_gguf_legacy_blocks ((int) type, x + 32 * b, nb, out + bytes * b, scales);
        for (gsize k = 0; k < nb; k++)
          {
            guint8 *y = out + bytes * (b + k);
            if (type == QUARK_GGML_MXFP4)
              y[0] = (guint8) scales[2 * k];
            else
              put_half (y, scales[2 * k]);
            if (type == QUARK_GGML_Q4_1 || type == QUARK_GGML_Q5_1)
              put_half (y + 2, scales[2 * k + 1]);
          }
      }
  }
}

void
_quark_ggml_dequantize_row (QuarkGgmlType type, const guint8 *in, gsize n, float *y)
{
  switch (type)
    {
    case QUARK_GGML_Q2_K: case QUARK_GGML_Q3_K: case QUARK_GGML_Q4_K: case QUARK_GGML_Q5_K: case QUARK_GGML_Q6_K:
      for (gsize b = 0; b < n / QK_K; b++)
        dequantize_k (type, in + _quark_ggml_row_size (type, QK_K) * b, y + QK_K * b);
      return;
    case QUARK_GGML_F32:
      memcpy (y, in, n * 4);
      return;
    case QUARK_GGML_F16:
      quark_kernel_convert_to_f32 (QUARK_DTYPE_F16, in, y, n);
      return;
    case QUARK_GGML_BF16:
      quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, in, y, n);
      return;
    default:
      break;
    }
  for (gsize b = 0; b < n / 32; b++)
    {
      const guint8 *p = in + b * _quark_ggml_row_size (type, 32);
      float *o = y + 32 * b;
      const float d = type == QUARK_GGML_MXFP4 ? e8m0_half (p[0]) : get_half (p);
      switch (type)
        {
        case QUARK_GGML_IQ4_NL:
          for (guint j = 0; j < 16; j++)
            {
              o[j] = d * kvalues_iq4nl[p[2 + j] & 0x0f];
              o[j + 16] = d * kvalues_iq4nl[p[2 + j] >> 4];
            }
          break;
        case QUARK_GGML_MXFP4:
          for (guint j = 0; j < 16; j++)
            {
              o[j] = kvalues_mxfp4[p[1 + j] & 0x0f] * d;
              o[j + 16] = kvalues_mxfp4[p[1 + j] >> 4] * d;
            }
          break;
        case QUARK_GGML_Q4_0:
          for (guint j = 0; j < 16; j++)
            {
              o[j] = (float) ((p[2 + j] & 0x0f) - 8) * d;
              o[j + 16] = (float) ((p[2 + j] >> 4) - 8) * d;
            }
          break;
        case QUARK_GGML_Q4_1:
          {
            const float m = get_half (p + 2);
            for (guint j = 0; j < 16; j++)
              {
                o[j] = (float) (p[4 + j] & 0x0f) * d + m;
                o[j + 16] = (float) (p[4 + j] >> 4) * d + m;
              }
          }
          break;
        case QUARK_GGML_Q5_0:
        case QUARK_GGML_Q5_1:
          {
            gboolean one = type == QUARK_GGML_Q5_1;
            const float m = one ? get_half (p + 2) : 0.0f;
            const guint8 *qhp = p + (one ? 4 : 2), *qs = qhp + 4;
            guint32 qh = (guint32) qhp[0] | ((guint32) qhp[1] << 8) | ((guint32) qhp[2] << 16) | ((guint32) qhp[3] << 24);
            for (guint j = 0; j < 16; j++)
              {
                const int x0 = (qs[j] & 0x0f) | (int) (((qh >> j) << 4) & 0x10);
                const int x1 = (qs[j] >> 4) | (int) ((qh >> (j + 12)) & 0x10);
                o[j] = one ? (float) x0 * d + m : (float) (x0 - 16) * d;
                o[j + 16] = one ? (float) x1 * d + m : (float) (x1 - 16) * d;
              }
          }
          break;
        case QUARK_GGML_Q8_0:
          for (guint j = 0; j < 32; j++)
            o[j] = (float) (gint8) p[2 + j] * d;
          break;
        default:
          g_assert_not_reached ();
        }
    }
}
