/* test-float.c: minifloat and half-precision codecs, exhaustively and against
 * the reference vectors of the numerics reference (sections 5.1 V18, 5.2 Q5,
 * 5.3) and the packing reference
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <math.h>
#include <string.h>

typedef struct {
  QuarkDType dtype;
  double max;
  double min_subnormal;
} FormatRow;

static const FormatRow formats[] = {
  { QUARK_DTYPE_F8_E4M3, 448, 0x1p-9 },
  { QUARK_DTYPE_F8_E5M2, 57344, 0x1p-16 },
  { QUARK_DTYPE_F8_E4M3FNUZ, 240, 0x1p-10 },
  { QUARK_DTYPE_F8_E5M2FNUZ, 57344, 0x1p-17 },
  { QUARK_DTYPE_FP6_E2M3, 7.5, 0.125 },
  { QUARK_DTYPE_FP6_E3M2, 28, 0.0625 },
  { QUARK_DTYPE_FP4_E2M1, 6, 0.5 },
  { QUARK_DTYPE_F16, 65504, 0x1p-24 },
  { QUARK_DTYPE_BF16, 0x1.fep127, 0x1p-133 },
};

/* Every code decodes to a value that encodes back to the same code; NaN codes
 * decode to NaN; the decoded grid is strictly increasing in magnitude. */
static void
test_exhaustive_roundtrip (void)
{
  for (guint f = 0; f < G_N_ELEMENTS (formats); f++)
    {
      const QuarkFpFormat *fmt = quark_fp_format_for_dtype (formats[f].dtype);
      guint bits = 1 + fmt->ebits + fmt->mbits;
      guint count = 1u << bits;
      guint n_nan = 0;
      double previous = -1;

      g_assert_cmpfloat (quark_fp_format_max (fmt), ==, formats[f].max);
      g_assert_cmpfloat (quark_fp_format_min_subnormal (fmt), ==, formats[f].min_subnormal);

      for (guint code = 0; code < count; code++)
        {
          double v = quark_kernel_fp_decode (fmt, (guint16) code);
          guint16 back;

          if (isnan (v))
            {
              n_nan++;
              continue;
            }
          back = quark_kernel_fp_encode (fmt, v, FALSE);
          if (back != code)
            g_error ("%s: code 0x%x decodes to %a, which encodes to 0x%x",
                     quark_dtype_get_name (formats[f].dtype), code, v, back);
          /* positive codes in order are increasing values */
          if (code < count / 2)
            {
              g_assert_cmpfloat (v, >, previous);
              previous = v;
            }
        }
      switch (fmt->specials)
        {
        case QUARK_FP_SPECIALS_FN: g_assert_cmpuint (n_nan, ==, 2); break;
        case QUARK_FP_SPECIALS_FNUZ: g_assert_cmpuint (n_nan, ==, 1); break;
        case QUARK_FP_SPECIALS_NONE: g_assert_cmpuint (n_nan, ==, 0); break;
        case QUARK_FP_SPECIALS_IEEE: g_assert_cmpuint (n_nan, ==, 2 * ((1u << fmt->mbits) - 1)); break;
        default: g_assert_not_reached ();
        }
    }
}

/* The binary16 decoder of the core agrees with the generic decoder on every
 * pattern, and bfloat16 with the upper half of binary32. */
static void
test_half_decoders_agree (void)
{
  const QuarkFpFormat *f16 = quark_fp_format_for_dtype (QUARK_DTYPE_F16);
  const QuarkFpFormat *bf16 = quark_fp_format_for_dtype (QUARK_DTYPE_BF16);

  for (guint32 code = 0; code < 0x10000; code++)
    {
      double a = quark_kernel_fp_decode (f16, (guint16) code);
      double b = quark_kernel_f16_to_f32 ((guint16) code);
      double c = quark_kernel_fp_decode (bf16, (guint16) code);
      double d = quark_kernel_bf16_to_f32 ((guint16) code);
      g_assert_true ((isnan (a) && isnan (b)) || (a == b && signbit (a) == signbit (b)));
      g_assert_true ((isnan (c) && isnan (d)) || (c == d && signbit (c) == signbit (d)));
    }
}

/* quark_kernel_convert_to_f32() on float16 (the vector path, 16 lanes at a
 * time, with a scalar tail) gives the bits of quark_kernel_f16_to_f32() for
 * every pattern, whatever the start and length (so that each pattern goes
 * through the vector body and the tail), and a value equal to the generic
 * decoder's; NaNs keep sign and payload (the binary16 payload shifted into
 * the top of binary32's). */
static void
test_f16_widening (void)
{
  const QuarkFpFormat *f16 = quark_fp_format_for_dtype (QUARK_DTYPE_F16);
  g_autofree guint16 *h = g_new (guint16, 65536 + 32);
  g_autofree guint32 *w = g_new (guint32, 65536 + 33);

  for (guint i = 0; i < 65536 + 32; i++)
    h[i] = (guint16) i;
  for (gsize start = 0; start < 17; start++)
    for (gsize trim = 0; trim < 17; trim += 5)
      {
        gsize n = 65536 + 16 - trim;
        memset (w, 0xAB, (65536 + 33) * sizeof (guint32));
        g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_F16, h + start, (float *) w + start, n));
        for (gsize i = start; i < start + n; i++)
          {
            float want = quark_kernel_f16_to_f32 (h[i]);
            guint32 bits;
            memcpy (&bits, &want, 4);
            if (w[i] != bits)
              g_error ("float16 0x%04x (start %zu, length %zu): 0x%08x, the scalar form 0x%08x", h[i], start, n,
                       w[i], bits);
          }
        if (w[start + n] != 0xABABABABu)
          g_error ("start %zu length %zu: 0x%08x written past the end", start, n, w[start + n]);
      }
  /* the last round (start 16, length 65 537) holds every pattern */
  for (gsize i = 16; i < 16 + 65537; i++)
    {
      guint32 code = h[i];
      float f;
      double ref = quark_kernel_fp_decode (f16, (guint16) code);
      memcpy (&f, &w[i], 4);
      if (isnan (ref))
        g_assert_cmphex (w[i], ==, ((code & 0x8000u) << 16) | 0x7f800000u | ((code & 0x3ffu) << 13));
      else
        g_assert_true (f == ref && !signbit (f) == !signbit (ref));
    }
}

/* quark_kernel_convert_from_f32() to float16 (the vector path, 16 lanes
 * at a time) against quark_kernel_fp_encode() one value at a time: around
 * every binary16 value (the value, one binary32 step either side, the tie
 * with the next value and one step either side of it; both signs), every
 * binary32 pattern's top half with ten patterns of the low half (ties and
 * sticky bits at each rounding position), two million random patterns,
 * infinities and NaNs with payloads. */
static void
test_f16_narrowing (void)
{
  const QuarkFpFormat *f16 = quark_fp_format_for_dtype (QUARK_DTYPE_F16);
  static const guint16 lows[] = { 0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x7fff, 0x8000, 0xffff };
  g_autoptr(GArray) bits = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261206);
  g_autofree guint16 *got = NULL;

  for (guint32 c = 0; c < 0x7c00; c++)
    for (guint32 s = 0; s < 2; s++)
      {
        const guint32 sign = s << 31;
        float v = quark_kernel_f16_to_f32 ((guint16) c), next = quark_kernel_f16_to_f32 ((guint16) (c + 1));
        float mid = (float) (((double) v + (double) next) / 2.0);   /* exact: binary16 has 11 bits */
        guint32 b[2];
        memcpy (&b[0], &v, 4);
        memcpy (&b[1], &mid, 4);
        for (guint k = 0; k < 2; k++)
          for (int d = -1; d <= 1; d++)
            {
              guint32 x = (b[k] + (guint32) d) | sign;
              if (b[k] == 0 && d < 0)
                continue;
              g_array_append_val (bits, x);
            }
      }
  for (guint32 hi = 0; hi < 0x10000; hi++)
    for (guint k = 0; k < G_N_ELEMENTS (lows); k++)
      {
        guint32 x = hi << 16 | lows[k];
        g_array_append_val (bits, x);
      }
  for (guint k = 0; k < 2000000; k++)
    {
      guint32 x = g_rand_int (rand);
      g_array_append_val (bits, x);
    }
  {
    static const guint32 special[] = { 0x7f800000u, 0xff800000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu,
                                       0x80000000u, 0x477fefffu, 0x477ff000u, 0x477ff001u, 0x33000000u,
                                       0x33000001u, 0xb3000000u };
    for (guint k = 0; k < G_N_ELEMENTS (special); k++)
      g_array_append_val (bits, special[k]);
  }
  got = g_new (guint16, bits->len + 16);
  for (gsize start = 0; start < 3; start++)
    {
      const float *x = (const float *) bits->data;
      gsize n = bits->len - start;
      g_assert_true (quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, x + start, got, n));
      for (gsize i = 0; i < n; i++)
        {
          guint16 want = (guint16) quark_kernel_fp_encode (f16, x[start + i], FALSE);
          if (got[i] != want)
            g_error ("binary32 0x%08x to float16: 0x%04x, one at a time 0x%04x", g_array_index (bits, guint32, start + i),
                     got[i], want);
        }
    }
}

static guint8
e4m3 (double x)
{
  return (guint8) quark_kernel_fp_encode (quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3), x, FALSE);
}

static guint8
e5m2 (double x)
{
  return (guint8) quark_kernel_fp_encode (quark_fp_format_for_dtype (QUARK_DTYPE_F8_E5M2), x, FALSE);
}

/* Section 5.3: PyTorch's float8 casts (non-saturating). */
static void
test_torch_cast_vectors (void)
{
  g_assert_cmphex (e4m3 (448), ==, 0x7E);
  g_assert_cmphex (e4m3 (464), ==, 0x7E);
  g_assert_cmphex (e4m3 (470), ==, 0x7F);
  g_assert_cmphex (e4m3 (480), ==, 0x7F);
  g_assert_cmphex (e4m3 (INFINITY), ==, 0x7F);
  g_assert_cmphex (e4m3 (-0.0), ==, 0x80);
  g_assert_cmphex (e4m3 (0x1p-10), ==, 0x00);
  g_assert_cmphex (e4m3 (3 * 0x1p-10), ==, 0x02);
  g_assert_cmphex (e5m2 (57344), ==, 0x7B);
  g_assert_cmphex (e5m2 (61440), ==, 0x7C);
  g_assert_cmphex (e5m2 (65536), ==, 0x7C);
  g_assert_cmphex (e5m2 (NAN), ==, 0x7F);
  g_assert_true (isnan (quark_kernel_fp_decode (quark_fp_format_for_dtype (QUARK_DTYPE_F8_E5M2), 0x7F)));
  g_assert_cmphex (e5m2 (-1e6), ==, 0xFC);
}

/* Section 5.1 V18: Brevitas' unscaled OCP E4M3, saturating. */
static void
test_v18_minifloat (void)
{
  const QuarkFpFormat *fmt = quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3);
  static const double in[] = { 0.3, 1.0625, 1.1875, 17, 19, 0x1p-10, 3 * 0x1p-10, 500 };
  static const double out[] = { 0.3125, 1.0, 1.25, 16, 20, 0, 0x1p-8, 448 };

  for (guint i = 0; i < G_N_ELEMENTS (in); i++)
    {
      double got = quark_kernel_fp_decode (fmt, quark_kernel_fp_encode (fmt, (float) in[i], TRUE));
      if (got != out[i])
        g_error ("E4M3 (%g) = %g, expected %g", in[i], got, out[i]);
    }
}

/* Section 5.2 Q5: FP8 E4M3 per tensor with AMD Quark's scale amax / 448. */
static void
test_q5_fp8_per_tensor (void)
{
  const QuarkFpFormat *fmt = quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3);
  const float x[] = { 1.27f, 0.5f, -0.3f, 0.001f, -1.27f };
  const guint8 expected[] = { 0x7E, 0x73, 0xED, 0x2B, 0xFE };
  const float deq[] = { 1.27f, 0.49892855f, -0.29482141f, 0.00097446982f, -1.27f };
  float s = 1.27f / 448.0f;
  guint8 codes[5];
  float back[5];

  g_assert_cmpfloat (s, ==, 0.0028348214f);
  g_assert_true (quark_kernel_fp_quantize_f32 (fmt, x, 5, s, codes));
  g_assert_cmpmem (codes, 5, expected, 5);
  quark_kernel_fp_dequantize_f32 (fmt, codes, 5, s, back);
  for (guint i = 0; i < 5; i++)
    g_assert_cmpfloat_with_epsilon (back[i], deq[i], fabsf (deq[i]) * 2e-7f);
}

static void
test_fp4_fp6_codes (void)
{
  const QuarkFpFormat *fp4 = quark_fp_format_for_dtype (QUARK_DTYPE_FP4_E2M1);
  const QuarkFpFormat *e2m3 = quark_fp_format_for_dtype (QUARK_DTYPE_FP6_E2M3);
  const QuarkFpFormat *e3m2 = quark_fp_format_for_dtype (QUARK_DTYPE_FP6_E3M2);
  static const double fp4_in[] = { 6, -3, 0.5, 1, 4, -0.5, 0, 2 };
  static const guint16 fp4_codes[] = { 0x7, 0xD, 0x1, 0x2, 0x6, 0x9, 0x0, 0x4 };
  static const double fp4_table[] = { 0, 0.5, 1, 1.5, 2, 3, 4, 6 };

  for (guint i = 0; i < 8; i++)
    {
      g_assert_cmphex (quark_kernel_fp_encode (fp4, fp4_in[i], TRUE), ==, fp4_codes[i]);
      g_assert_cmpfloat (quark_kernel_fp_decode (fp4, (guint16) i), ==, fp4_table[i]);
      g_assert_cmpfloat (quark_kernel_fp_decode (fp4, (guint16) (i | 8)), ==, -fp4_table[i]);
    }
  g_assert_cmphex (quark_kernel_fp_encode (fp4, -0.1, TRUE), ==, 0x8);   /* −0 keeps its sign */
  g_assert_cmphex (quark_kernel_fp_encode (fp4, 0.25, TRUE), ==, 0x0);   /* half the smallest: to even */
  g_assert_cmphex (quark_kernel_fp_encode (fp4, 5.0, TRUE), ==, 0x6);    /* tie 4/6 to even mantissa */
  g_assert_cmphex (quark_kernel_fp_encode (fp4, 100, TRUE), ==, 0x7);

  g_assert_cmphex (quark_kernel_fp_encode (e2m3, 0.125, TRUE), ==, 0x01);
  g_assert_cmphex (quark_kernel_fp_encode (e2m3, -1.0, TRUE), ==, 0x28);
  g_assert_cmphex (quark_kernel_fp_encode (e2m3, 7.5, TRUE), ==, 0x1F);
  g_assert_cmphex (quark_kernel_fp_encode (e2m3, 3.25, TRUE), ==, 0x15);
  g_assert_cmphex (quark_kernel_fp_encode (e3m2, 28, TRUE), ==, 0x1F);
  g_assert_cmphex (quark_kernel_fp_encode (e3m2, 0.0625, TRUE), ==, 0x01);
  g_assert_cmphex (quark_kernel_fp_encode (e3m2, -0.25, TRUE), ==, 0x24);
  g_assert_cmphex (quark_kernel_fp_encode (e3m2, 5.0, TRUE), ==, 0x15);
}

static void
test_fnuz (void)
{
  const QuarkFpFormat *fmt = quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3FNUZ);

  g_assert_cmphex (quark_kernel_fp_encode (fmt, -0.0, FALSE), ==, 0x00);   /* no −0 */
  g_assert_cmphex (quark_kernel_fp_encode (fmt, NAN, FALSE), ==, 0x80);
  g_assert_cmphex (quark_kernel_fp_encode (fmt, 240, FALSE), ==, 0x7F);
  g_assert_cmphex (quark_kernel_fp_encode (fmt, 1000, FALSE), ==, 0x80);   /* overflow: NaN */
  g_assert_cmphex (quark_kernel_fp_encode (fmt, 1000, TRUE), ==, 0x7F);
  /* every fn byte but 0x80 and NaN decodes in fnuz to half its fn value */
  for (guint c = 0; c < 256; c++)
    {
      double fn = quark_kernel_fp_decode (quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3), (guint16) c);
      double fnuz = quark_kernel_fp_decode (fmt, (guint16) c);
      if (c == 0x80 || isnan (fn))
        continue;
      g_assert_cmpfloat (fnuz, ==, fn / 2);
    }
}

/* Binary32 to bfloat16 and binary16 against independent formulas. */
static void
test_conversions_from_f32 (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (99);

  for (guint i = 0; i < 200000; i++)
    {
      guint32 bits = g_rand_int (rand);
      float f;
      guint16 bf, h;
      double bf_value, h_value, exact;

      memcpy (&f, &bits, 4);
      g_assert_true (quark_kernel_convert_from_f32 (QUARK_DTYPE_BF16, &f, &bf, 1));
      g_assert_true (quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, &f, &h, 1));
      if (isnan (f))
        {
          g_assert_true (isnan (quark_kernel_bf16_to_f32 (bf)));
          g_assert_true (isnan (quark_kernel_f16_to_f32 (h)));
          continue;
        }
      exact = f;
      bf_value = quark_kernel_bf16_to_f32 (bf);
      h_value = quark_kernel_f16_to_f32 (h);
      /* nearest: no representable neighbour is closer (checked through the
       * codes one step up and down), ties to an even code */
      {
        const QuarkDType dts[] = { QUARK_DTYPE_BF16, QUARK_DTYPE_F16 };
        const guint16 codes[] = { bf, h };
        const double values[] = { bf_value, h_value };
        for (guint k = 0; k < 2; k++)
          {
            const QuarkFpFormat *fmt = quark_fp_format_for_dtype (dts[k]);
            double d = fabs (values[k] - exact);
            if (isinf (values[k]))
              {
                g_assert_true (fabs (exact) >= quark_fp_format_max (fmt));
                continue;
              }
            for (int step = -1; step <= 1; step += 2)
              {
                guint16 other = (guint16) (codes[k] + step);
                double ov = quark_kernel_fp_decode (fmt, other);
                if (isnan (ov) || isinf (ov) || ((other ^ codes[k]) & 0x8000))
                  continue;
                g_assert_cmpfloat (fabs (ov - exact), >=, d);
                if (fabs (ov - exact) == d)
                  g_assert_cmpuint (codes[k] & 1, ==, 0);
              }
          }
      }
    }
  /* binary64 rounds once: 1 + 2^-8 + 2^-30 is just above a bf16 tie */
  {
    double x = 1.0 + 0x1p-8 + 0x1p-30;
    guint16 bf;
    float via_f32 = (float) x;
    guint16 bf_double_rounded;
    quark_kernel_convert_from_f64 (QUARK_DTYPE_BF16, &x, &bf, 1);
    quark_kernel_convert_from_f32 (QUARK_DTYPE_BF16, &via_f32, &bf_double_rounded, 1);
    g_assert_cmphex (bf, ==, 0x3f81);
    g_assert_cmphex (bf_double_rounded, ==, 0x3f80);
  }
}

/* Every named format of at most 8 bits, and generic ones: E3M4, E4M3 with
 * IEEE specials, E6M1 "fn", E2M1 with bias 0. */
static const QuarkDType minifloat_dtypes[] = { QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2,
                                               QUARK_DTYPE_F8_E4M3FNUZ, QUARK_DTYPE_F8_E5M2FNUZ,
                                               QUARK_DTYPE_FP6_E2M3, QUARK_DTYPE_FP6_E3M2,
                                               QUARK_DTYPE_FP4_E2M1 };
static const QuarkFpFormat generic_formats[] = { { 3, 4, 3, QUARK_FP_SPECIALS_NONE },
                                                 { 4, 3, 7, QUARK_FP_SPECIALS_IEEE },
                                                 { 6, 1, 31, QUARK_FP_SPECIALS_FN },
                                                 { 2, 1, 0, QUARK_FP_SPECIALS_NONE } };
#define N_MINIFLOATS (G_N_ELEMENTS (minifloat_dtypes) + G_N_ELEMENTS (generic_formats))

static const QuarkFpFormat *
minifloat_format (guint d)
{
  return d < G_N_ELEMENTS (minifloat_dtypes) ? quark_fp_format_for_dtype (minifloat_dtypes[d])
                                             : &generic_formats[d - G_N_ELEMENTS (minifloat_dtypes)];
}

/* Fisher-Yates over @n values */
static void
shuffle_u16 (guint16 *h, gsize n, GRand *rand)
{
  for (gsize i = n ? n - 1 : 0; i > 0; i--)
    {
      gsize j = (gsize) g_rand_int_range (rand, 0, (gint32) i + 1);
      guint16 t = h[i];
      h[i] = h[j];
      h[j] = t;
    }
}

/* Every bfloat16 pattern in @h (room for 65536) and, in @w, its value */
static void
bf16_patterns (guint16 *h, float *w)
{
  for (guint i = 0; i < 65536; i++)
    h[i] = (guint16) i;
  g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, w, 65536));
}

/* Vector path against scalar path for every format of at most 8 bits. */
static void
test_vector_matches_scalar (void)
{
  static const gsize sizes[] = { 0, 1, 7, 8, 9, 31, 33, 1000, 4097 };
  g_autoptr(GRand) rand = g_rand_new_with_seed (5);

  for (guint d = 0; d < N_MINIFLOATS; d++)
    {
      const QuarkFpFormat *fmt = minifloat_format (d);
      const char *name = d < G_N_ELEMENTS (minifloat_dtypes) ? quark_dtype_get_name (minifloat_dtypes[d]) : "generic";
      double maxv = quark_fp_format_max (fmt);

      /* every bfloat16 pattern, unscaled and scaled */
      {
        g_autofree guint16 *h = g_new (guint16, 65536);
        g_autofree float *w = g_new (float, 65536);
        g_autofree guint8 *a = g_new0 (guint8, 65536);
        g_autofree guint8 *b = g_new0 (guint8, 65536);
        bf16_patterns (h, w);
        for (guint k = 0; k < 2; k++)
          {
            float scale = k ? 0.3f : 1.0f;
            g_assert_true (quark_kernel_fp_quantize_bf16 (fmt, h, 65536, scale, a));
            g_assert_true (quark_kernel_fp_quantize_f32_scalar (fmt, w, 65536, scale, b));
            for (guint i = 0; i < 65536; i++)
              if (a[i] != b[i])
                g_error ("%s (e%dm%d bias %d): bf16 0x%04x, scale %g: vector 0x%02x, scalar 0x%02x",
                         name, fmt->ebits, fmt->mbits, fmt->bias, i, scale, a[i], b[i]);
          }
      }

      for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
        for (guint rep = 0; rep < 3; rep++)
          {
            gsize n = sizes[s];
            g_autofree float *x = g_new (float, n + 1);
            g_autofree guint8 *a = g_new0 (guint8, n + 1);
            g_autofree guint8 *b = g_new0 (guint8, n + 1);
            float scale = rep == 0 ? 1.0f : (float) g_rand_double_range (rand, 1e-3, 10);

            for (gsize i = 0; i < n; i++)
              {
                switch (g_rand_int_range (rand, 0, 6))
                  {
                  case 0:  /* a representable value or a midpoint, times the scale */
                    {
                      guint16 c = (guint16) g_rand_int_range (rand, 0, 1 << (1 + fmt->ebits + fmt->mbits));
                      guint16 c2 = (guint16) (c + 1);
                      double v1 = quark_kernel_fp_decode (fmt, c), v2 = quark_kernel_fp_decode (fmt, c2);
                      double v = g_rand_boolean (rand) || !isfinite (v2) ? v1 : (v1 + v2) / 2;
                      x[i] = (float) (isfinite (v) ? v * scale : v);
                    }
                    break;
                  case 1:
                    x[i] = (float) g_rand_double_range (rand, -2 * maxv, 2 * maxv) * scale;
                    break;
                  case 2:
                    x[i] = (float) (g_rand_double_range (rand, -1, 1) * quark_fp_format_min_subnormal (fmt) * 4);
                    break;
                  case 3:
                    {
                      const float specials[] = { 0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1e30f, -1e-30f };
                      x[i] = specials[g_rand_int_range (rand, 0, 8)];
                    }
                    break;
                  default:
                    x[i] = (float) g_rand_double_range (rand, -maxv, maxv) * scale;
                  }
              }
            g_assert_true (quark_kernel_fp_quantize_f32 (fmt, x, n, scale, a));
            g_assert_true (quark_kernel_fp_quantize_f32_scalar (fmt, x, n, scale, b));
            for (gsize i = 0; i < n; i++)
              if (a[i] != b[i])
                g_error ("%s: x = %a, scale %a: vector 0x%02x, scalar 0x%02x",
                         name, x[i], scale, a[i], b[i]);
          }
    }
}

/* Generic formats (exponent bits, mantissa bits, bias, specials): the maxima
 * of the numerics reference 3.11 and exhaustive round trips. */
static void
test_generic_formats (void)
{
  static const struct { QuarkFpFormat fmt; double max; } rows[] = {
    { { 3, 4, 3, QUARK_FP_SPECIALS_NONE }, 31 },
    { { 2, 5, 1, QUARK_FP_SPECIALS_NONE }, 7.875 },
    { { 1, 6, 0, QUARK_FP_SPECIALS_NONE }, 3.96875 },
    { { 6, 1, 31, QUARK_FP_SPECIALS_NONE }, 6442450944.0 },
    { { 7, 0, 63, QUARK_FP_SPECIALS_NONE }, 0x1p64 },
    { { 4, 3, 7, QUARK_FP_SPECIALS_NONE }, 480 },        /* Brevitas' generic E4M3 */
    { { 5, 2, 15, QUARK_FP_SPECIALS_NONE }, 114688 },    /* Brevitas' generic E5M2 */
    { { 4, 3, 7, QUARK_FP_SPECIALS_FN }, 448 },
    { { 5, 2, 15, QUARK_FP_SPECIALS_IEEE }, 57344 },
  };

  for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
    {
      const QuarkFpFormat *fmt = &rows[r].fmt;
      guint count = 1u << (1 + fmt->ebits + fmt->mbits);

      g_assert_cmpfloat (quark_fp_format_max (fmt), ==, rows[r].max);
      for (guint code = 0; code < count; code++)
        {
          double v = quark_kernel_fp_decode (fmt, (guint16) code);
          if (!isfinite (v))
            continue;   /* saturating encoding maps infinities to the maximum */
          g_assert_cmpuint (quark_kernel_fp_encode (fmt, v, TRUE), ==, code);
        }
      /* saturation at the maximum, for finite and infinite inputs */
      g_assert_cmpfloat (quark_kernel_fp_decode (fmt, quark_kernel_fp_encode (fmt, rows[r].max * 4, TRUE)), ==,
                         rows[r].max);
      g_assert_cmpfloat (quark_kernel_fp_decode (fmt, quark_kernel_fp_encode (fmt, -INFINITY, TRUE)), ==,
                         -rows[r].max);
    }
}

/* Unsigned E5M3 scales against the formula, exhaustively: every code
 * decodes to (1 + m/8) 2^(e-15) (or m/8 2^-14 when e is 0), re-encodes to
 * itself, the midpoints between neighbours round to the even code, and
 * values beyond 114688 saturate. */
static double
e5m3_oracle (guint code)
{
  guint e = code >> 3, m = code & 7;
  return e == 0 ? ldexp (m / 8.0, -14) : ldexp (1.0 + m / 8.0, (int) e - 15);
}

static void
test_e5m3_scales (void)
{
  for (guint c = 0; c < 255; c++)
    {
      g_assert_cmpfloat ((double) quark_kernel_e5m3_to_f32 ((guint8) c), ==, e5m3_oracle (c));
      g_assert_cmphex (quark_kernel_e5m3_from_f32 ((float) e5m3_oracle (c)), ==, c);
      if (c + 1 < 255)
        {
          float mid = (float) ((e5m3_oracle (c) + e5m3_oracle (c + 1)) / 2);
          g_assert_cmphex (quark_kernel_e5m3_from_f32 (mid), ==, (c & 1) ? c + 1 : c);
        }
    }
  g_assert_true (isnan (quark_kernel_e5m3_to_f32 (0xFF)));
  g_assert_cmpfloat (quark_kernel_e5m3_to_f32 (0xFE), ==, 114688.0f);
  g_assert_cmphex (quark_kernel_e5m3_from_f32 (1e9f), ==, 0xFE);
  g_assert_cmphex (quark_kernel_e5m3_from_f32 (0x1p-19f), ==, 0x00);
  g_assert_cmphex (quark_kernel_e5m3_from_f32 (-1.0f), ==, 0x78);
}

/* bfloat16 rows of 256 and more go through a table of the 128 quotients
 * 1.f / s (formats of 1 to 3 mantissa bits, scales in [2^-100, 2^100]),
 * chunks with a lane outside its reach through the lane encoder. Every
 * bfloat16 pattern, shuffled so that chunks mix zeros, subnormal elements
 * and results, infinities, NaN and normal lanes, at scales drawn over the
 * whole range (and at its ends, just beyond them, at powers of two and
 * three times powers of two, where quotients fall on ties), against the
 * scalar reference. (The table is taken only where the processor has
 * AVX512BW; elsewhere the same inputs check the lane encoder.) */
static void
test_bf16_table_path (void)
{
  const float fixed[] = { 1.0f, 0x1p-100f, 0x1p100f, 0x1.fffffep-101f, 0x1.000002p100f, 0x1p-7f, 3 * 0x1p-9f,
                          0.1f / 448.0f, 1.0f / 3.0f };
  g_autoptr(GRand) rand = g_rand_new_with_seed (2718);
  g_autofree guint16 *all = g_new (guint16, 65536);
  g_autofree float *w = g_new (float, 65536);
  g_autofree guint16 *h = g_new (guint16, 65536);
  g_autofree guint16 *others = g_new (guint16, 65536);
  g_autofree guint8 *a = g_new (guint8, 65536);
  g_autofree guint8 *ref = g_new (guint8, 65536);
  guint8 c[1000];

  bf16_patterns (all, w);
  for (guint d = 0; d < N_MINIFLOATS; d++)
    {
      const QuarkFpFormat *fmt = minifloat_format (d);
      for (guint k = 0; k < G_N_ELEMENTS (fixed) + 4; k++)
        {
          float scale = k < G_N_ELEMENTS (fixed) ? fixed[k]
                                                 : (float) ldexp (g_rand_double_range (rand, 1, 2),
                                                                  g_rand_int_range (rand, -110, 110));
          /* the reference code of every pattern, once */
          g_assert_true (quark_kernel_fp_quantize_f32_scalar (fmt, w, 65536, scale, ref));
          for (guint order = 0; order < 4; order++)
            {
              /* 0: every pattern in order (long runs of one exponent);
               * 1: shuffled; 2: only zeros and elements whose quotient is a
               * normal of the format or beyond, shuffled (chunks the table
               * finishes); 3: those, shuffled, with one of the others
               * (a subnormal quotient or element, an infinity, a NaN) in
               * every 300: chunks the table fails whose other runs of 32
               * keep the table's codes, as on heavy-tailed weights */
              gsize n = 0, n_other = 0;
              for (guint i = 0; i < 65536; i++)
                if (order < 2 || (i & 0x7fff) == 0 ||
                    (isfinite (w[i]) && fabsf (w[i]) >= 0x1p-126f &&
                     fabsf (w[i]) / scale >= 1.001 * ldexp (1, 1 - fmt->bias)))
                  h[n++] = (guint16) i;
                else if (order == 3)
                  others[n_other++] = (guint16) i;
              if (order)
                shuffle_u16 (h, n, rand);
              if (order == 3 && n_other > 0)
                {
                  shuffle_u16 (others, n_other, rand);
                  for (gsize i = 0, o = 0; i < n; i += 300, o++)
                    h[i] = others[o % n_other];
                }
              /* whole, and from an odd offset (a tail after the chunks) */
              g_assert_true (quark_kernel_fp_quantize_bf16 (fmt, h, n, scale, a));
              for (gsize i = 0; i < n; i++)
                if (a[i] != ref[h[i]])
                  g_error ("e%dm%d bias %d: bf16 0x%04x, scale %a: vector 0x%02x, scalar 0x%02x",
                           fmt->ebits, fmt->mbits, fmt->bias, h[i], scale, a[i], ref[h[i]]);
              g_assert_true (quark_kernel_fp_quantize_bf16 (fmt, h + 1, MIN (n - 1, 1000), scale, c));
              g_assert_cmpmem (c, MIN (n - 1, 1000), a + 1, MIN (n - 1, 1000));
            }
        }
    }
}

/* The scalar reference's codes of @x (@n values in blocks of @block, with
 * their @scales) into @ref, the blocks kernel's (on @h, the bfloat16
 * patterns of @x, or on @x) into @a, and the two compared */
static void
check_fp_blocks (const QuarkFpFormat *fmt, const float *x, const guint16 *h, gsize n, gsize block,
                 const float *scales, guint8 *a, guint8 *ref)
{
  for (gsize start = 0; start < n; start += block)
    g_assert_true (quark_kernel_fp_quantize_f32_scalar (fmt, x + start, MIN (block, n - start), scales[start / block],
                                                        ref + start));
  g_assert_true (h ? quark_kernel_fp_quantize_blocks_bf16 (fmt, h, n, block, scales, a)
                   : quark_kernel_fp_quantize_blocks_f32 (fmt, x, n, block, scales, a));
  for (gsize i = 0; i < n; i++)
    if (a[i] != ref[i])
      g_error ("e%dm%d bias %d, %s blocks of %" G_GSIZE_FORMAT ": %a, scale %a: 0x%02x, scalar 0x%02x", fmt->ebits,
               fmt->mbits, fmt->bias, h ? "bfloat16" : "float32", block, x[i], scales[i / block], a[i], ref[i]);
}

/* quark_kernel_fp_quantize_blocks_bf16() and _f32(): every bfloat16 pattern,
 * shuffled, in blocks of 32, 96 and 7 (not a whole vector) with a ragged
 * last block, each block's scale a power of two (from 2^-126 to 2^127,
 * the ends of the exact inverses, in runs longer than the kernel's 64) or
 * not (3 · 2^k, a random value, 2^-127 and 2^128's neighbour below, whose
 * inverses are not exact), against the scalar reference block by block. */
static void
test_fp_blocks_bf16 (void)
{
  const gsize blocks[] = { 32, 96, 7 };
  const gsize n = 65536 - 17;
  g_autoptr(GRand) rand = g_rand_new_with_seed (1618);
  g_autofree guint16 *h = g_new (guint16, 65536);
  g_autofree float *w = g_new (float, 2 * 65536);
  g_autofree guint8 *a = g_new (guint8, 2 * 65536);
  g_autofree float *wide = g_new (float, 65536);
  float *scales = w + 65536;     /* one per block */
  guint8 *ref = a + 65536;       /* the scalar reference's codes */

  bf16_patterns (h, w);
  shuffle_u16 (h, 65536, rand);
  g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, w, 65536));
  for (guint d = 0; d < N_MINIFLOATS; d++)
    {
      const QuarkFpFormat *fmt = minifloat_format (d);
      for (guint k = 0; k < G_N_ELEMENTS (blocks); k++)
        {
          gsize block = blocks[k], n_blocks = (n + block - 1) / block;
          for (gsize b = 0; b < n_blocks; b++)
            {
              /* runs of 100 powers of two, then 20 blocks of anything */
              guint kind = b % 120 < 100 ? 0 : (guint) g_rand_int_range (rand, 0, 6);
              scales[b] = kind == 0 ? ldexpf (1.0f, g_rand_int_range (rand, -126, 128))
                        : kind == 1 ? 3.0f * ldexpf (1.0f, g_rand_int_range (rand, -40, 40))
                        : kind == 2 ? (float) g_rand_double_range (rand, 1e-6, 1e3)
                        : kind == 3 ? 0x1p-127f
                        : kind == 4 ? 0x1.fffffep127f
                        : b % 2 ? 0x1p-126f : 0x1p127f;
            }
          check_fp_blocks (fmt, w, h, n, block, scales, a, ref);
          /* float32 input, the widened values with low mantissa bits set */
          for (gsize i = 0; i < n; i++)
            wide[i] = isfinite (w[i]) ? w[i] * (1.0f + (float) (i % 7) * 0x1p-20f) : w[i];
          check_fp_blocks (fmt, wide, NULL, n, block, scales, a, ref);
        }
    }
  g_assert_false (quark_kernel_fp_quantize_blocks_bf16 (minifloat_format (0), h, 64, 0, scales, a));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/float/exhaustive-roundtrip", test_exhaustive_roundtrip);
  g_test_add_func ("/float/half-decoders-agree", test_half_decoders_agree);
  g_test_add_func ("/float/f16-widening", test_f16_widening);
  g_test_add_func ("/float/f16-narrowing", test_f16_narrowing);
  g_test_add_func ("/float/torch-cast-vectors", test_torch_cast_vectors);
  g_test_add_func ("/float/v18-minifloat", test_v18_minifloat);
  g_test_add_func ("/float/q5-fp8-per-tensor", test_q5_fp8_per_tensor);
  g_test_add_func ("/float/fp4-fp6-codes", test_fp4_fp6_codes);
  g_test_add_func ("/float/fnuz", test_fnuz);
  g_test_add_func ("/float/conversions-from-f32", test_conversions_from_f32);
  g_test_add_func ("/float/vector-matches-scalar", test_vector_matches_scalar);
  g_test_add_func ("/float/bf16-table-path", test_bf16_table_path);
  g_test_add_func ("/float/fp-blocks-bf16", test_fp_blocks_bf16);
  g_test_add_func ("/float/generic-formats", test_generic_formats);
  g_test_add_func ("/float/e5m3-scales", test_e5m3_scales);

  return g_test_run ();
}
