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
 *
 * fp16 conversion rounds to nearest, ties to even, as ggml's. Products and
 * sums are single binary32 operations (this file is compiled without
 * contraction), so the bytes equal llama.cpp's.
 */
#include "config.h"

#include "quark-gguf-quants.h"
#include "kernels/quark-kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

#pragma GCC optimize ("fp-contract=off")

static const QuarkGgmlTypeInfo types[] = {
  { QUARK_GGML_F32, "F32", 1, 4, 0 },
  { QUARK_GGML_F16, "F16", 1, 2, 1 },
  { QUARK_GGML_BF16, "BF16", 1, 2, 32 },
  { QUARK_GGML_Q8_0, "Q8_0", 32, 34, 7 },
  { QUARK_GGML_Q4_0, "Q4_0", 32, 18, 2 },
  { QUARK_GGML_Q4_1, "Q4_1", 32, 20, 3 },
  { QUARK_GGML_Q5_0, "Q5_0", 32, 22, 8 },
  { QUARK_GGML_Q5_1, "Q5_1", 32, 24, 9 },
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

static void
put_half (guint8 *p, float v)
{
  guint16 h;
  quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, &v, &h, 1);
  p[0] = (guint8) (h & 0xff);
  p[1] = (guint8) (h >> 8);
}

static float
get_half (const guint8 *p)
{
  return quark_kernel_f16_to_f32 ((guint16) (p[0] | (p[1] << 8)));
}

/* the element of largest magnitude (the first of equals) */
static float
signed_max (const float *x, guint n)
{
  float amax = 0.0f, max = 0.0f;
  for (guint j = 0; j < n; j++)
    if (amax < fabsf (x[j]))
      {
        amax = fabsf (x[j]);
        max = x[j];
      }
  return max;
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

static void
q4_0 (const float *x, guint8 *y)
{
  const float d = signed_max (x, 32) / -8;
  const float id = d ? 1.0f / d : 0.0f;

  put_half (y, d);
  for (guint j = 0; j < 16; j++)
    {
      const float x0 = x[j] * id, x1 = x[j + 16] * id;
      const guint8 q0 = MIN (15, (gint8) (x0 + 8.5f)), q1 = MIN (15, (gint8) (x1 + 8.5f));
      y[2 + j] = (guint8) (q0 | (q1 << 4));
    }
}

static void
q4_1 (const float *x, guint8 *y)
{
  float mn, mx, d, id;

  min_max (x, 32, &mn, &mx);
  d = (mx - mn) / ((1 << 4) - 1);
  id = d ? 1.0f / d : 0.0f;
  put_half (y, d);
  put_half (y + 2, mn);
  for (guint j = 0; j < 16; j++)
    {
      const float x0 = (x[j] - mn) * id, x1 = (x[j + 16] - mn) * id;
      const guint8 q0 = MIN (15, (gint8) (x0 + 0.5f)), q1 = MIN (15, (gint8) (x1 + 0.5f));
      y[4 + j] = (guint8) (q0 | (q1 << 4));
    }
}

static void
q5_0 (const float *x, guint8 *y)
{
  const float d = signed_max (x, 32) / -16;
  const float id = d ? 1.0f / d : 0.0f;
  guint32 qh = 0;

  put_half (y, d);
  for (guint j = 0; j < 16; j++)
    {
      const float x0 = x[j] * id, x1 = x[j + 16] * id;
      const guint8 q0 = MIN (31, (gint8) (x0 + 16.5f)), q1 = MIN (31, (gint8) (x1 + 16.5f));
      y[6 + j] = (guint8) ((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
  for (guint b = 0; b < 4; b++)
    y[2 + b] = (guint8) (qh >> (8 * b));
}

static void
q5_1 (const float *x, guint8 *y)
{
  float mn, mx, d, id;
  guint32 qh = 0;

  min_max (x, 32, &mn, &mx);
  d = (mx - mn) / ((1 << 5) - 1);
  id = d ? 1.0f / d : 0.0f;
  put_half (y, d);
  put_half (y + 2, mn);
  for (guint j = 0; j < 16; j++)
    {
      const float x0 = (x[j] - mn) * id, x1 = (x[j + 16] - mn) * id;
      const guint8 q0 = (guint8) (x0 + 0.5f), q1 = (guint8) (x1 + 0.5f);
      y[8 + j] = (guint8) ((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
  for (guint b = 0; b < 4; b++)
    y[4 + b] = (guint8) (qh >> (8 * b));
}

static void
q8_0 (const float *x, guint8 *y)
{
  float amax = 0.0f, d, id;

  for (guint j = 0; j < 32; j++)
    amax = MAX (amax, fabsf (x[j]));
  d = amax / ((1 << 7) - 1);
  id = d ? 1.0f / d : 0.0f;
  put_half (y, d);
  for (guint j = 0; j < 32; j++)
    y[2 + j] = (guint8) (gint8) roundf (x[j] * id);
}

void
_quark_ggml_quantize_row (QuarkGgmlType type, const float *x, gsize n, guint8 *out)
{
  switch (type)
    {
    case QUARK_GGML_F32:
      memcpy (out, x, n * 4);
      return;
    case QUARK_GGML_F16:
      quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, x, out, n);
      return;
    case QUARK_GGML_BF16:
      quark_kernel_convert_from_f32 (QUARK_DTYPE_BF16, x, out, n);
      return;
    default:
      break;
    }
  for (gsize b = 0; b < n / 32; b++)
    switch (type)
      {
      case QUARK_GGML_Q4_0: q4_0 (x + 32 * b, out + 18 * b); break;
      case QUARK_GGML_Q4_1: q4_1 (x + 32 * b, out + 20 * b); break;
      case QUARK_GGML_Q5_0: q5_0 (x + 32 * b, out + 22 * b); break;
      case QUARK_GGML_Q5_1: q5_1 (x + 32 * b, out + 24 * b); break;
      case QUARK_GGML_Q8_0: q8_0 (x + 32 * b, out + 34 * b); break;
      default: g_assert_not_reached ();
      }
}

void
_quark_ggml_dequantize_row (QuarkGgmlType type, const guint8 *in, gsize n, float *y)
{
  switch (type)
    {
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
      const float d = get_half (p);
      switch (type)
        {
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
