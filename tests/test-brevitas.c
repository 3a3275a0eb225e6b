/* test-brevitas.c: the brevitas backend against hand-derived Brevitas cases
 * (ranges, thresholds, roundings, power-of-two scales, calibration running
 * means, biases and accumulator widths; tests/test-brevitas-vectors.c has
 * the cases real Brevitas computed), through the public API:
 * configs from JSON, quantize_tensor, quantize_model with calibration
 * sessions, and the kernels' division mode
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <math.h>
#include <string.h>

static guint32
bits_of (float f)
{
  guint32 u;
  memcpy (&u, &f, sizeof u);
  return u;
}

static QuarkQuantizationConfig *
config (const char *global)
{
  g_autofree char *json = g_strdup_printf ("{\"backend\": \"brevitas\", \"global_quant_config\": {%s}}", global);
  g_autoptr(GError) error = NULL;
  QuarkQuantizationConfig *c = quark_registry_config_from_string (quark_registry_get_default (), json, -1, &error);
  g_assert_no_error (error);
  g_assert_nonnull (c);
  return c;
}

/* A weight through the config's weight quantizer: codes (as int32), scales
 * and zero points. */
typedef struct {
  gint32 codes[256];
  float scales[64];
  gint32 zps[64];
  gsize n, n_scales;
} Q;

static gint32
element (QuarkTensor *t, gsize i)
{
  const guint8 *d = quark_tensor_peek_data (t, NULL);
  switch (quark_tensor_get_dtype (t))
    {
    case QUARK_DTYPE_I8: return ((const gint8 *) d)[i];
    case QUARK_DTYPE_U8: case QUARK_DTYPE_F8_E4M3: case QUARK_DTYPE_F8_E5M2: return d[i];
    case QUARK_DTYPE_I16: return ((const gint16 *) d)[i];
    case QUARK_DTYPE_U16: return ((const guint16 *) d)[i];
    default: return ((const gint32 *) d)[i];
    }
}

static void
quantize_weight (const char *weight_spec, const float *w, gint64 rows, gint64 cols, Q *q)
{
  g_autofree char *g = g_strdup_printf ("\"weight\": %s", weight_spec);
  g_autoptr(QuarkQuantizationConfig) c = config (g);
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), c, NULL);
  g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (c, "fc", "Linear", QUARK_ROLE_WEIGHT);
  const gint64 shape[] = { rows, cols };
  g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats ("fc.weight", shape, 2, w, (gsize) (rows * cols), NULL);
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(GError) error = NULL;
  QuarkTensor *codes, *scale, *zp;
  g_autofree float *s = NULL;

  out = quark_model_quantizer_quantize_tensor (quantizer, t, spec, &error);
  g_assert_no_error (error);
  codes = quark_model_get_tensor (out, "fc.weight");
  scale = quark_model_get_tensor (out, "fc.weight_scale");
  zp = quark_model_get_tensor (out, "fc.weight_zero_point");
  q->n = quark_tensor_get_n_elements (codes);
  for (gsize i = 0; i < q->n; i++)
    q->codes[i] = element (codes, i);
  s = quark_tensor_to_floats (scale, &q->n_scales, NULL);
  memcpy (q->scales, s, q->n_scales * sizeof (float));
  for (gsize i = 0; i < q->n_scales; i++)
    q->zps[i] = zp ? element (zp, i) : 0;
}

static void
assert_codes (const Q *q, const int *expected, gsize n)
{
  g_assert_cmpuint (q->n, ==, n);
  for (gsize i = 0; i < n; i++)
    if (q->codes[i] != expected[i])
      g_error ("code %" G_GSIZE_FORMAT ": %d, expected %d", i, q->codes[i], expected[i]);
}

/* ---- V1-V4: the integer core (kernels, Brevitas's division order) ------------ */

static void
test_v1_ranges (void)
{
  static const struct { int b; int lo[4]; int hi[4]; } table[] = {
    /* signed, signed narrow, unsigned, unsigned narrow */
    { 2, { -2, -1, 0, 0 }, { 1, 1, 3, 2 } },
    { 3, { -4, -3, 0, 0 }, { 3, 3, 7, 6 } },
    { 4, { -8, -7, 0, 0 }, { 7, 7, 15, 14 } },
    { 8, { -128, -127, 0, 0 }, { 127, 127, 255, 254 } },
    { 16, { -32768, -32767, 0, 0 }, { 32767, 32767, 65535, 65534 } },
  };
  const float w[] = { -1000, 1000, 0.5f, -0.5f };

  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    for (int v = 0; v < 4; v++)
      {
        /* extreme weights saturate to the ends of the range */
        g_autofree char *spec = g_strdup_printf ("{\"bit_width\": %d, \"signed\": %s, \"symmetric\": %s, "
                                                 "\"narrow_range\": %s}", table[i].b, v < 2 ? "true" : "false",
                                                 v < 2 ? "true" : "false", v % 2 ? "true" : "false");
        Q q;
        int lo = G_MAXINT, hi = G_MININT;
        quantize_weight (spec, w, 1, 4, &q);
        for (gsize k = 0; k < q.n; k++)
          {
            lo = MIN (lo, q.codes[k]);
            hi = MAX (hi, q.codes[k]);
          }
        g_assert_cmpint (lo, ==, table[i].lo[v]);
        g_assert_cmpint (hi, ==, table[i].hi[v]);
      }
}

static void
kernel (const float *x, gsize n, float s, float z, int qmin, int qmax, QuarkRoundMode round, gint32 *out)
{
  QuarkKernelIntParams p = { 1.0f / s, s, z, qmin, qmax, round, 0, 0, TRUE };
  g_assert_true (quark_kernel_quantize_int_f32 (x, n, &p, QUARK_DTYPE_I32, out));
}

static void
test_v2_v4_integer_core (void)
{
  const float v2[] = { 0.042f, -0.053f, 0.31f, -0.44f };
  const float v3[] = { -2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f };
  const float v4[] = { -2, -1, -0.04f, 0, 0.06f, 24.5f, 25, 30 };
  static const struct { QuarkRoundMode mode; int q[6]; } v3_rows[] = {
    { QUARK_ROUND_HALF_EVEN, { -2, -2, 0, 0, 2, 2 } },
    { QUARK_ROUND_FLOOR, { -3, -2, -1, 0, 1, 2 } },
    { QUARK_ROUND_CEIL, { -2, -1, 0, 1, 2, 3 } },
    { QUARK_ROUND_TOWARD_ZERO, { -2, -1, 0, 0, 1, 2 } },
    { QUARK_ROUND_DPU, { -2, -1, 0, 0, 2, 2 } },
  };
  const int v2_q[] = { 4, -5, 7, -7 }, v4_q[] = { 0, 0, 10, 10, 11, 255, 255, 255 };
  const float v4_deq[] = { -1, -1, 0, 0, 0.1f, 24.5f, 24.5f, 24.5f };
  gint32 q[8];
  float deq[8];

  kernel (v2, 4, 0.01f, 0, -7, 7, QUARK_ROUND_HALF_EVEN, q);
  for (int i = 0; i < 4; i++)
    g_assert_cmpint (q[i], ==, v2_q[i]);
  for (guint r = 0; r < G_N_ELEMENTS (v3_rows); r++)
    {
      kernel (v3, 6, 1.0f, 0, -128, 127, v3_rows[r].mode, q);
      for (int i = 0; i < 6; i++)
        g_assert_cmpint (q[i], ==, v3_rows[r].q[i]);
    }
  kernel (v4, 8, 0.1f, 10, 0, 255, QUARK_ROUND_HALF_EVEN, q);
  quark_kernel_dequantize_int_f32 (q, QUARK_DTYPE_I32, 8, 0.1f, 10, deq);
  for (int i = 0; i < 8; i++)
    {
      g_assert_cmpint (q[i], ==, v4_q[i]);
      g_assert_cmpfloat (fabsf (deq[i] - v4_deq[i]), <, 1e-5f);
    }
}

/* ---- V5-V9, V12, V14, V15: weights ------------------------------------------------ */

static const float V5_W[] = { 0.5f, -1.27f, 0.3f, 0.004f, 0.25f, 0.1f, -0.05f, 0.125f };

static void
test_v5_v8_int_weights (void)
{
  const float w3[] = { 1.28f, -1.28f, 0.64f };
  Q q;

  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloat\"}", V5_W, 2, 4, &q);
  assert_codes (&q, (const int[]) { 50, -127, 30, 0, 25, 10, -5, 12 }, 8);   /* 12.5 -> 12, the float32 trap */
  g_assert_cmphex (bits_of (q.scales[0]), ==, 0x3C23D70A);

  quantize_weight ("{\"preset\": \"Int8WeightPerChannelFloat\"}", V5_W, 2, 4, &q);
  assert_codes (&q, (const int[]) { 50, -127, 30, 0, 127, 51, -25, 64 }, 8);
  g_assert_cmpfloat (q.scales[1], ==, 0.25f / 127.0f);

  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloat\", \"bit_width\": 4}", V5_W, 2, 4, &q);
  assert_codes (&q, (const int[]) { 3, -7, 2, 0, 1, 1, 0, 1 }, 8);
  g_assert_cmpfloat (q.scales[0], ==, 1.27f / 7.0f);
  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloat\", \"bit_width\": 3}", w3, 1, 3, &q);
  assert_codes (&q, (const int[]) { 3, -3, 2 }, 3);
  g_assert_cmpfloat (q.scales[0], ==, 1.28f / 3.0f);
  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloat\", \"bit_width\": 2}", w3, 1, 3, &q);
  assert_codes (&q, (const int[]) { 1, -1, 0 }, 3);
  /* the A2Q-style toward-zero rounding: 0.3 / (1.28 / 3) = 0.703 -> 0 */
  {
    const float w4[] = { 1.28f, -1.28f, 0.3f, -0.64f };
    quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloat\", \"bit_width\": 3, \"rounding\": \"round_to_zero\"}",
                     w4, 1, 4, &q);
    assert_codes (&q, (const int[]) { 3, -3, 0, -1 }, 4);
  }
  /* V8: not narrow, T = 128 */
  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloat\", \"narrow_range\": false}", w3, 1, 3, &q);
  assert_codes (&q, (const int[]) { 127, -128, 64 }, 3);
  g_assert_cmpfloat (q.scales[0], ==, 1.28f / 128.0f);
}

static void
test_v9_power_of_two (void)
{
  static const struct { float amax; int exp; } ceil_rows[] = {
    { 3.0f, -5 }, { 4.0f, -5 }, { 0.3f, -8 }, { 1.27f, -6 }, { 5.0001f, -4 },
  };
  static const struct { const char *rounding; float amax; int exp; } other[] = {
    { "round", 3.0f, -5 }, { "round", 2.9f, -5 }, { "round", 2.8f, -6 }, { "floor", 3.0f, -6 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (ceil_rows); i++)
    {
      const float w[] = { ceil_rows[i].amax, -0.01f };
      Q q;
      quantize_weight ("{\"preset\": \"Int8WeightPerTensorFixedPoint\"}", w, 1, 2, &q);
      g_assert_cmpfloat (q.scales[0], ==, ldexpf (1.0f, ceil_rows[i].exp));
      if (ceil_rows[i].amax == 4.0f)
        g_assert_cmpint (q.codes[0], ==, 127);                    /* 128, clipped */
    }
  for (guint i = 0; i < G_N_ELEMENTS (other); i++)
    {
      const float w[] = { other[i].amax, 0.5f };
      g_autofree char *spec = g_strdup_printf ("{\"preset\": \"Int8WeightPerTensorFixedPoint\", "
                                               "\"pof2_rounding\": \"%s\"}", other[i].rounding);
      Q q;
      quantize_weight (spec, w, 1, 2, &q);
      g_assert_cmpfloat (q.scales[0], ==, ldexpf (1.0f, other[i].exp));
    }
}

static void
test_v12_shifted_weights (void)
{
  const float w[] = { -1, 3, 0.5f, 0, 1, 2, -0.5f, 0.25f };
  const float neg[] = { -1, -3, -2, -0.5f, 1, 2, 3, 4 };
  Q q;

  quantize_weight ("{\"preset\": \"ShiftedUint8WeightPerTensorFloat\"}", w, 2, 4, &q);
  g_assert_cmpfloat (q.scales[0], ==, 4.0f / 255.0f);
  g_assert_cmpint (q.zps[0], ==, 64);
  assert_codes (&q, (const int[]) { 0, 255, 96, 64, 128, 192, 32, 80 }, 8);

  /* per channel: an all-negative row keeps its maximum (not clamped to 0) */
  quantize_weight ("{\"preset\": \"ShiftedUint8WeightPerChannelFloat\"}", neg, 2, 4, &q);
  g_assert_cmpfloat (q.scales[0], ==, 2.5f / 255.0f);
  g_assert_cmpint (q.zps[0], ==, 255);
  g_assert_cmpint (q.codes[0], ==, 153);
  g_assert_cmpint (q.codes[1], ==, 0);
  g_assert_cmpint (q.codes[2], ==, 51);
  g_assert_cmpint (q.codes[3], ==, 204);
}

static void
test_v14_groups (void)
{
  const float row[] = { 1, -0.5f, 0.25f, 0.1f, 7, 3.5f, -1, 0, 0.7f, 0.1f };
  Q q;

  quantize_weight ("{\"preset\": \"IntWeightSymmetricGroupQuant\", \"group_size\": 4}", row, 1, 10, &q);
  g_assert_cmpuint (q.n_scales, ==, 3);
  g_assert_cmpfloat (q.scales[0], ==, 1.0f / 7.0f);
  g_assert_cmpfloat (q.scales[1], ==, 1.0f);
  g_assert_cmpfloat (q.scales[2], ==, 0.7f / 7.0f);
  assert_codes (&q, (const int[]) { 7, -3, 2, 1, 7, 4, -1, 0, 7, 1 }, 10);

  quantize_weight ("{\"preset\": \"ShiftedUint8WeightGroupQuantFloat\", \"bit_width\": 4, \"group_size\": 4}",
                   row, 1, 10, &q);
  g_assert_cmpfloat (q.scales[0], ==, 0.1f);
  g_assert_cmpfloat (q.scales[1], ==, 8.0f / 15.0f);
  g_assert_cmpfloat (q.scales[2], ==, 0.7f / 15.0f);
  g_assert_cmpint (q.zps[0], ==, 5);
  g_assert_cmpint (q.zps[1], ==, 2);
  g_assert_cmpint (q.zps[2], ==, 0);
  assert_codes (&q, (const int[]) { 15, 0, 8, 6, 15, 9, 0, 2, 15, 2 }, 10);
}

static void
test_v15_mse (void)
{
  float x[102];
  Q q;

  for (int i = 0; i <= 100; i++)
    x[i] = -1.0f + 2.0f * (float) i / 100.0f;
  x[101] = 10;
  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloatMSE\"}", x, 1, 102, &q);
  g_assert_cmpfloat (fabsf (q.scales[0] - 10.0f / 127.0f), <, 1e-7f);
  quantize_weight ("{\"preset\": \"Int8WeightPerTensorFloatMSE\", \"bit_width\": 4}", x, 1, 102, &q);
  g_assert_cmpfloat (fabsf (q.scales[0] - 8.0f / 7.0f), <, 1e-6f);
}

/* ---- V18, V19, V21: minifloats and MX ------------------------------------------------ */

static float
decode (QuarkDType dtype, gint32 code, float scale)
{
  return (float) quark_kernel_fp_decode (quark_fp_format_for_dtype (dtype), (uint16_t) code) * scale;
}

static void
test_v18_minifloats (void)
{
  const float w[] = { 1.27f, 0.5f, -0.3f, 0.001f };
  g_autofree float *all = g_new (float, 256);
  const QuarkFpFormat *e4m3 = quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3);
  gsize n = 0;
  Q q;

  quantize_weight ("{\"preset\": \"Fp8e4m3OCPWeightPerTensorFloat\"}", w, 1, 4, &q);
  g_assert_cmpfloat (q.scales[0], ==, 1.27f / 448.0f);
  /* x / s = 448, 176.38, -105.83, 0.353 -> 448, 176, -104, 0.34375 in E4M3 */
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[0], 1), ==, 448);
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[1], 1), ==, 176);
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[2], 1), ==, -104);
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[3], 1), ==, 0.34375f);

  /* V21: FloatQuant is the identity on every value of the format (s = 1
   * when the maximum 448 is present) */
  for (guint c = 0; c < 256; c++)
    if (c != 0x7f && c != 0xff)
      all[n++] = (float) quark_kernel_fp_decode (e4m3, (uint16_t) c);
  quantize_weight ("{\"preset\": \"Fp8e4m3OCPWeightPerTensorFloat\"}", all, 1, (gint64) n, &q);
  g_assert_cmpfloat (q.scales[0], ==, 1.0f);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[i], 1), ==, all[i]);

  /* generic E4M3 (no reserved codes): maximum 480; 470 rounds to 480 */
  {
    const float g[] = { 480, 470, 17, 19 };
    quantize_weight ("{\"quant_type\": \"float\", \"float_format\": \"generic\"}", g, 1, 4, &q);
    g_assert_cmpfloat (q.scales[0], ==, 1.0f);
    g_assert_cmpint (q.codes[0], ==, 0x7f);    /* S.1111.111 is a number here */
    g_assert_cmpint (q.codes[1], ==, 0x7f);
  }
  /* FNUZ E4M3: bias 8, maximum 240 */
  {
    const float f[] = { 2.4f, 1.0f };
    quantize_weight ("{\"preset\": \"Fp8e4m3FNUZWeightPerTensorFloat\"}", f, 1, 2, &q);
    g_assert_cmpfloat (q.scales[0], ==, 2.4f / 240.0f);
  }
}

static void
test_v19_mx (void)
{
  float block[32] = { 3.9f, 3.0f, 0.01f, 1e-6f };
  float fp4[32] = { 6, 5, 2.5f, 0.25f, 0.75f, -3.1f };
  float mxint[32] = { 1.5f, -1, 0.3f };
  const float fp4_expected[] = { 6, 4, 2, 0, 1, -3 };
  const QuarkFpFormat *e2m1 = quark_fp_format_for_dtype (QUARK_DTYPE_FP4_E2M1);
  Q q;

  quantize_weight ("{\"preset\": \"MXFloat8e4m3Weight\"}", block, 1, 32, &q);
  g_assert_cmpfloat (q.scales[0], ==, ldexpf (1.0f, -7));
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[0], q.scales[0]), ==, 3.5f);   /* 448 * 2^-7 */
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[1], q.scales[0]), ==, 3.0f);
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[2], q.scales[0]), ==, 0.009765625f);
  g_assert_cmpfloat (decode (QUARK_DTYPE_F8_E4M3, q.codes[3], q.scales[0]), ==, 0.0f);

  quantize_weight ("{\"preset\": \"MXFloat4e2m1Weight\"}", fp4, 1, 32, &q);
  g_assert_cmpfloat (q.scales[0], ==, 1.0f);
  for (int i = 0; i < 6; i++)
    g_assert_cmpfloat ((float) quark_kernel_fp_decode (e2m1, (uint16_t) q.codes[i]) * q.scales[0], ==, fp4_expected[i]);

  /* Brevitas's MXInt8: s = 2^(floor(log2 amax) - 7); 1.5 -> 192 -> 127 */
  quantize_weight ("{\"preset\": \"MXInt8Weight\"}", mxint, 1, 32, &q);
  g_assert_cmpfloat (q.scales[0], ==, ldexpf (1.0f, -7));
  g_assert_cmpfloat (q.codes[0] * q.scales[0], ==, 0.9921875f);
  g_assert_cmpfloat (q.codes[1] * q.scales[0], ==, -1.0f);
  g_assert_cmpfloat (q.codes[2] * q.scales[0], ==, 0.296875f);

  /* an all-zero block: scale 1e-10 / 2^8 (scaling_min_val after the floor) */
  memset (block, 0, sizeof block);
  quantize_weight ("{\"preset\": \"MXFloat8e4m3Weight\"}", block, 1, 32, &q);
  g_assert_cmpfloat (q.scales[0], ==, 1e-10f / 256.0f);
}

static void
test_v21_grid_round_trip (void)
{
  /* every code k of every width, signedness and narrowness, with zero
   * points 0, rne(0.3 (2^(b-1) - 1)), rne(0.7 (2^(b-1) - 1)), comes back
   * from x = s (k - z) */
  for (int b = 2; b <= 16; b++)
    for (int sgn = 0; sgn < 2; sgn++)
      for (int narrow = 0; narrow < 2; narrow++)
        for (int zi = 0; zi < 3; zi++)
          {
            int half = 1 << (b - 1);
            int qmin = sgn ? (narrow ? -half + 1 : -half) : 0;
            int qmax = sgn ? half - 1 : (narrow ? 2 * half - 2 : 2 * half - 1);
            float z = zi == 0 ? 0 : rintf ((zi == 1 ? 0.3f : 0.7f) * (float) (half - 1));
            gsize n = (gsize) (qmax - qmin + 1);
            g_autofree float *x = g_new (float, n);
            g_autofree gint32 *q = g_new (gint32, n);
            g_autofree float *back = g_new (float, n);
            for (gsize i = 0; i < n; i++)
              x[i] = 0.0625f * ((float) (qmin + (int) i) - z);
            kernel (x, n, 0.0625f, z, qmin, qmax, QUARK_ROUND_HALF_EVEN, q);
            quark_kernel_dequantize_int_f32 (q, QUARK_DTYPE_I32, n, 0.0625f, (int32_t) z, back);
            for (gsize i = 0; i < n; i++)
              {
                g_assert_cmpint (q[i], ==, qmin + (int) i);
                g_assert_cmpfloat (back[i], ==, x[i]);
              }
          }
}

/* ---- V10, V11, V13, V16, V20: activations and biases through quantize_model ------- */

static QuarkModel *
linear_model (const float *w, gint64 rows, gint64 cols, const float *bias)
{
  QuarkModel *m = quark_model_new ();
  const gint64 shape[] = { rows, cols };
  g_autoptr(QuarkTensor) wt = quark_tensor_new_from_floats ("fc.weight", shape, 2, w, (gsize) (rows * cols), NULL);
  quark_model_add_tensor (m, wt, NULL);
  if (bias)
    {
      g_autoptr(QuarkTensor) bt = quark_tensor_new_from_floats ("fc.bias", shape, 1, bias, (gsize) rows, NULL);
      quark_model_add_tensor (m, bt, NULL);
    }
  return m;
}

static float
scalar (QuarkModel *m, const char *name)
{
  QuarkTensor *t = quark_model_get_tensor (m, name);
  g_autofree float *v = NULL;
  gsize n;
  g_assert_nonnull (t);
  v = quark_tensor_to_floats (t, &n, NULL);
  g_assert_cmpuint (n, >=, 1);
  return v[0];
}

/* quantize_model with an input quantizer calibrated on @batches */
static QuarkModel *
calibrated (const char *input_spec, const float *const *batches, const gsize *sizes, guint n_batches,
            const char *extra, const float *w, gint64 rows, gint64 cols, const float *bias)
{
  g_autofree char *g = g_strdup_printf ("\"weight\": {\"preset\": \"Int8WeightPerTensorFloat\"}, "
                                        "\"input_tensors\": %s%s", input_spec, extra ? extra : "");
  g_autoptr(QuarkQuantizationConfig) c = config (g);
  g_autoptr(QuarkModel) model = linear_model (w, rows, cols, bias);
  g_autoptr(QuarkCalibration) session = quark_calibration_new_for_config (c, model);
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), c, NULL);
  g_autoptr(GError) error = NULL;
  QuarkModel *out;

  for (guint b = 0; b < n_batches; b++)
    {
      g_assert_true (quark_calibration_observe_floats (session, "fc", QUARK_ROLE_INPUT, batches[b], sizes[b],
                                                       NULL, 0, &error));
      g_assert_no_error (error);
    }
  out = quark_model_quantizer_quantize_model (quantizer, model, session, NULL, &error);
  g_assert_no_error (error);
  return out;
}

static void
test_v10_v13_activations (void)
{
  const float w[] = { 1.27f, -0.5f };
  float lin[1001];
  const float *one[] = { lin };
  const gsize n1[] = { 1001 };
  static const struct { const char *preset; float scale; int zp; } rows[] = {
    { "Int8ActPerTensorFloat", 4.0f / 128.0f, -1 },
    { "Uint8ActPerTensorFloat", 4.0f / 255.0f, -1 },
    { "Int8ActPerTensorFixedPoint", 0x1p-5f, -1 },
    { "Uint8ActPerTensorFixedPoint", 0x1p-6f, -1 },
    { "ShiftedUint8ActPerTensorFloat", 6.0f / 255.0f, 85 },   /* V13 */
  };

  for (int i = 0; i <= 1000; i++)
    lin[i] = -2.0f + 6.0f * (float) i / 1000.0f;
  for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
    {
      g_autofree char *spec = g_strdup_printf ("{\"preset\": \"%s\"}", rows[r].preset);
      g_autoptr(QuarkModel) out = calibrated (spec, one, n1, 1, NULL, w, 1, 2, NULL);
      g_assert_cmpfloat (scalar (out, "fc.input_scale"), ==, rows[r].scale);
      if (rows[r].zp >= 0)
        g_assert_cmpint ((int) scalar (out, "fc.input_zero_point"), ==, rows[r].zp);
      else
        g_assert_null (quark_model_get_tensor (out, "fc.input_zero_point"));
    }

  /* V11: the running mean of per-batch statistics, 2 and 4 */
  {
    const float b1[] = { 1, -2 }, b2[] = { 4, 0.5f };
    const float *two[] = { b1, b2 };
    const gsize n2[] = { 2, 2 };
    g_autoptr(QuarkModel) out = calibrated ("{\"preset\": \"Int8ActPerTensorFloat\"}", two, n2, 2, NULL, w, 1, 2, NULL);
    g_assert_cmpfloat (scalar (out, "fc.input_scale"), ==, 3.0f / 128.0f);
  }
}

static void
test_v20_calibration_scales (void)
{
  const float relu[] = { 0.0f, 0.0f, 1.1971f };
  const float matmul[] = { 1.7445338f, -0.3f, 0.9f };
  const float *b1[] = { relu }, *b2[] = { matmul };
  const gsize n[] = { 3 };
  const float w[] = { 1, -1 };
  static const struct { const char *spec; double s1, s2; } rows[] = {
    { "{\"preset\": \"Int8ActPerTensorFloat\"}", 0.00935234408825635910, 0.01362917013466358185 },
    { "{\"quant_type\": \"float\", \"float_format\": \"generic\"}", 0.00249395845457911491, 0.00363444536924362183 },
    { "{\"preset\": \"Int8ActPerTensorFixedPoint\"}", 0.015625, 0.015625 },
    { "{\"quant_type\": \"float\", \"float_format\": \"generic\", \"scale_type\": \"pof2\", "
      "\"pof2_rounding\": \"round\"}", 0.001953125, 0.00390625 },
  };

  for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
    {
      g_autoptr(QuarkModel) o1 = calibrated (rows[r].spec, b1, n, 1, NULL, w, 1, 2, NULL);
      g_autoptr(QuarkModel) o2 = calibrated (rows[r].spec, b2, n, 1, NULL, w, 1, 2, NULL);
      g_assert_cmpfloat (scalar (o1, "fc.input_scale"), ==, (float) rows[r].s1);
      g_assert_cmpfloat (scalar (o2, "fc.input_scale"), ==, (float) rows[r].s2);
    }
}

static void
test_v16_bias (void)
{
  const float w[] = { 1.27f, -0.5f };
  const float bias[] = { 0.123456f };
  const float batch[] = { 2.0f, -1.0f };
  const float *b[] = { batch };
  const gsize n[] = { 2 };
  g_autoptr(QuarkModel) out = calibrated ("{\"preset\": \"Int8ActPerTensorFloat\"}", b, n, 1,
                                          ", \"bias\": {\"preset\": \"Int32Bias\"}", w, 1, 2, bias);
  QuarkTensor *codes = quark_model_get_tensor (out, "fc.bias");
  JsonNode *meta = quark_model_get_metadata (out);
  JsonObject *layer;

  g_assert_cmpfloat (scalar (out, "fc.input_scale"), ==, 2.0f / 128.0f);
  g_assert_cmpfloat (scalar (out, "fc.bias_scale"), ==, (2.0f / 128.0f) * (1.27f / 127.0f));
  g_assert_cmpint (quark_tensor_get_dtype (codes), ==, QUARK_DTYPE_I32);
  g_assert_cmpint (((const gint32 *) quark_tensor_peek_data (codes, NULL))[0], ==, 790);
  /* numerics.md B11: a 2-input 8b x 8b linear with an Int32Bias accumulates in 33 bits */
  layer = json_object_get_object_member (json_object_get_object_member (json_object_get_object_member (
            json_object_get_object_member (json_node_get_object (meta), "quantization_config"), "brevitas"),
            "layers"), "fc");
  g_assert_cmpint (json_object_get_int_member (layer, "accumulator_bit_width"), ==, 33);
}

/* ---- configs ------------------------------------------------------------------------- */

static void
test_config_errors (void)
{
  static const struct { const char *json; int code; const char *needle; } rows[] = {
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\"}}}",
      QUARK_CONFIG_ERROR_UNKNOWN_KEY, "global_quant_config.weight.dtype: unknown key" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {}, \"quant_method\": \"quark\"}",
      QUARK_CONFIG_ERROR_UNKNOWN_KEY, "quant_method: unknown key" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"preset\": \"Int8ActPerTensorFloat\"}}}",
      QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.preset: \"Int8ActPerTensorFloat\" is not a Brevitas weight preset" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"bias\": {\"bit_width\": 12}}}",
      QUARK_CONFIG_ERROR_OUT_OF_RANGE, "global_quant_config.bias.bit_width" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"symmetric\": false, \"signed\": true}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.signed" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"input_tensors\": {\"qscheme\": \"per_channel\"}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.input_tensors.qscheme" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"quant_type\": \"float\", "
      "\"exponent_bit_width\": 3, \"mantissa_bit_width\": 4}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.float_format" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"param_type\": \"mse\", "
      "\"scaling_stats_op\": \"percentile\"}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.scaling_stats_op" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"input_tensors\": {\"param_type\": \"mse\", "
      "\"dynamic\": true}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.input_tensors.param_type" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"quant_type\": \"float\", "
      "\"float_format\": \"generic\", \"saturating\": false}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.saturating: a non-saturating minifloat needs NaN codes" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"quant_type\": \"float\", "
      "\"float_format\": \"generic\", \"inf_values\": [\"00\"]}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.inf_values" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"quant_type\": \"float\", "
      "\"nan_values\": [\"1111\"]}}}",
      QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.nan_values" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"quant_type\": \"float\", "
      "\"nan_values\": [\"1x1\"]}}}",
      QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.nan_values: a mantissa code" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"percentile\": 99, "
      "\"high_percentile_q\": 98}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.high_percentile_q: the same field as percentile" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"scale_type\": \"unscaled\"}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.scale_type: only minifloats are unscaled" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"scaling_stats_op\": \"mean_sigma_std\"}}}",
      QUARK_CONFIG_ERROR_OUT_OF_RANGE, "global_quant_config.weight.sigma" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": {\"scaling_stats_op\": \"min_max\"}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.scaling_stats_op" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {\"input_tensors\": {\"scaling_stats_op\": \"ave\"}}}",
      QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.input_tensors.scaling_stats_op" },
    { "{\"backend\": \"brevitas\", \"global_quant_config\": {}, \"layer_type_quant_config\": {\"Embedding\": {}}}",
      QUARK_CONFIG_ERROR_INVALID_VALUE, "layer_type_quant_config.Embedding: unknown layer type" },
    /* a Brevitas-only key given to the quark backend */
    { "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\", \"bit_width\": 8}}}",
      QUARK_CONFIG_ERROR_UNKNOWN_KEY, "global_quant_config.weight.bit_width: unknown key" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(QuarkQuantizationConfig) c = quark_registry_config_from_string (quark_registry_get_default (),
                                                                                rows[i].json, -1, &error);
      g_assert_null (c);
      g_assert_error (error, QUARK_CONFIG_ERROR, rows[i].code);
      if (strstr (error->message, rows[i].needle) == NULL)
        g_error ("row %u: \"%s\" does not contain \"%s\"", i, error->message, rows[i].needle);
    }
}

static void
test_config_round_trip (void)
{
  g_autoptr(QuarkQuantizationConfig) c = quark_registry_config_from_string (quark_registry_get_default (),
    "{\"backend\": \"brevitas\", \"global_quant_config\": {"
    "  \"weight\": {\"preset\": \"IntWeightSymmetricGroupQuant\", \"group_size\": 64, \"bit_width\": 3},"
    "  \"input_tensors\": {\"preset\": \"ShiftedUint8ActPerTensorFixedPoint\"}},"
    " \"layer_type_quant_config\": {\"Conv2d\": {\"weight\": {\"preset\": \"Int8WeightPerChannelFixedPoint\"},"
    "  \"bias\": {\"preset\": \"Int16Bias\"}}},"
    " \"exclude\": [\"lm_head\"]}", -1, NULL);
  g_autofree char *text = quark_quantization_config_to_string (c);
  g_autoptr(QuarkQuantizationConfig) again = quark_registry_config_from_string (quark_registry_get_default (),
                                                                                text, -1, NULL);
  g_autofree char *text2 = NULL;
  g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (c, "x", "Linear", QUARK_ROLE_WEIGHT);

  g_assert_nonnull (again);
  text2 = quark_quantization_config_to_string (again);
  g_assert_cmpstr (text, ==, text2);
  /* the generic description other code reads */
  g_assert_cmpint (quark_tensor_spec_get_dtype (spec), ==, QUARK_DTYPE_INT3);
  g_assert_cmpint (quark_tensor_spec_get_qscheme (spec), ==, QUARK_QSCHEME_PER_GROUP);
  g_assert_cmpint (quark_tensor_spec_get_group_size (spec), ==, 64);
  g_assert_true (quark_tensor_spec_get_narrow_range (spec));
}

static void
test_static_activation_needs_calibration (void)
{
  g_autoptr(QuarkQuantizationConfig) c = config ("\"weight\": {\"preset\": \"Int8WeightPerTensorFloat\"}, "
                                                 "\"input_tensors\": {\"preset\": \"Int8ActPerTensorFloat\"}");
  g_autoptr(QuarkModel) model = linear_model (V5_W, 2, 4, NULL);
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), c, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);

  g_assert_null (out);
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION);
  g_assert_nonnull (strstr (error->message, "layer fc:"));
}

/* Brevitas's own field names and upper-case enum values are the backend's
 * fields: the same spec either way. */
static void
test_brevitas_names (void)
{
  static const char * const pairs[][2] = {
    { "{\"preset\": \"ShiftedUint8WeightPerTensorFloat\", \"scaling_stats_op\": \"PERCENTILE_INTERVAL\", "
      "\"high_percentile_q\": 99.0, \"low_percentile_q\": 2.0, \"float_to_int_impl_type\": \"ROUND_TO_ZERO\", "
      "\"restrict_scaling_type\": \"LOG_FP\", \"scaling_per_output_type\": \"CHANNEL\"}",
      "{\"preset\": \"ShiftedUint8WeightPerTensorFloat\", \"scaling_stats_op\": \"percentile_interval\", "
      "\"percentile\": 99.0, \"low_percentile\": 2.0, \"rounding\": \"round_to_zero\", "
      "\"scale_type\": \"log_fp\", \"qscheme\": \"per_channel\"}" },
    { "{\"quant_type\": \"float\", \"restrict_scaling_type\": \"POWER_OF_TWO\", \"saturating\": false, "
      "\"nan_values\": [\"111\"]}",
      "{\"quant_type\": \"float\", \"scale_type\": \"pof2\", \"saturating\": false, \"nan_values\": [\"111\"]}" },
  };
  /* every spec the config writes reads back to the same config (dynamic
   * per-row activations, MSE, statistics, minifloat codes) */
  static const char * const round_trips[] = {
    "\"input_tensors\": {\"quant_type\": \"int\", \"dynamic\": true, \"qscheme\": \"per_channel\"}",
    "\"input_tensors\": {\"preset\": \"Int8ActPerTensorFloatMSE\"}",
    "\"weight\": {\"preset\": \"ShiftedUint8WeightPerChannelFloat\", \"percentile\": 99.0, \"low_percentile\": 3.0}",
    "\"weight\": {\"scaling_stats_op\": \"mean_sigma_std\", \"sigma\": 2.5, \"scale_type\": \"log_fp\"}",
    ("\"weight\": {\"quant_type\": \"float\", \"float_format\": \"generic\", \"exponent_bias\": 9, "
     "\"nan_values\": [\"111\", \"110\"], \"inf_values\": [\"101\"], \"saturating\": false}"),
  };

  for (guint i = 0; i < G_N_ELEMENTS (round_trips); i++)
    {
      g_autoptr(QuarkQuantizationConfig) c1 = config (round_trips[i]);
      g_autofree char *j1 = quark_quantization_config_to_string (c1);
      g_autoptr(GError) error = NULL;
      g_autoptr(QuarkQuantizationConfig) c2 = quark_registry_config_from_string (quark_registry_get_default (), j1,
                                                                                 -1, &error);
      g_autofree char *j2 = NULL;
      g_assert_no_error (error);
      j2 = quark_quantization_config_to_string (c2);
      g_assert_cmpstr (j1, ==, j2);
    }

  for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
    {
      g_autofree char *a = g_strdup_printf ("\"weight\": %s", pairs[i][0]);
      g_autofree char *b = g_strdup_printf ("\"weight\": %s", pairs[i][1]);
      g_autoptr(QuarkQuantizationConfig) ca = config (a);
      g_autoptr(QuarkQuantizationConfig) cb = config (b);
      g_autofree char *ja = quark_quantization_config_to_string (ca);
      g_autofree char *jb = quark_quantization_config_to_string (cb);
      g_assert_cmpstr (ja, ==, jb);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/brevitas/v1-ranges", test_v1_ranges);
  g_test_add_func ("/brevitas/v2-v4-integer-core", test_v2_v4_integer_core);
  g_test_add_func ("/brevitas/v5-v8-int-weights", test_v5_v8_int_weights);
  g_test_add_func ("/brevitas/v9-power-of-two", test_v9_power_of_two);
  g_test_add_func ("/brevitas/v10-v13-activations", test_v10_v13_activations);
  g_test_add_func ("/brevitas/v12-shifted-weights", test_v12_shifted_weights);
  g_test_add_func ("/brevitas/v14-groups", test_v14_groups);
  g_test_add_func ("/brevitas/v15-mse", test_v15_mse);
  g_test_add_func ("/brevitas/v16-bias", test_v16_bias);
  g_test_add_func ("/brevitas/v18-minifloats", test_v18_minifloats);
  g_test_add_func ("/brevitas/v19-mx", test_v19_mx);
  g_test_add_func ("/brevitas/v20-calibration-scales", test_v20_calibration_scales);
  g_test_add_func ("/brevitas/v21-grid-round-trip", test_v21_grid_round_trip);
  g_test_add_func ("/brevitas/config/errors", test_config_errors);
  g_test_add_func ("/brevitas/config/round-trip", test_config_round_trip);
  g_test_add_func ("/brevitas/needs-calibration", test_static_activation_needs_calibration);
  g_test_add_func ("/brevitas/config/brevitas-names", test_brevitas_names);
  return g_test_run ();
}
