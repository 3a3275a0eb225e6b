/* test-quantize.c: the quark backend's integer arithmetic against the
 * reference vectors of the numerics reference (section 5.2), and the kernels'
 * vector path against their scalar path
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <float.h>
#include <math.h>
#include <string.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

static guint32
f32_bits (float f)
{
  guint32 u;
  memcpy (&u, &f, sizeof u);
  return u;
}

static float
f32_from_bits (guint32 u)
{
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

static QuarkQuantizationConfig *
config_for (const char *weight_spec)
{
  g_autofree char *json = g_strdup_printf ("{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": %s}}",
                                           weight_spec);
  g_autoptr(GError) error = NULL;
  QuarkQuantizationConfig *config;

  config = quark_registry_config_from_string (quark_registry_get_default (), json, -1, &error);
  g_assert_no_error (error);
  return config;
}

static QuarkModel *
quantize (const char   *weight_spec,
          const gint64 *shape,
          guint         n_dims,
          const float  *values,
          gsize         n)
{
  g_autoptr(QuarkQuantizationConfig) config = config_for (weight_spec);
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkTensor) tensor = NULL;
  g_autoptr(GError) error = NULL;
  QuarkModel *out;

  tensor = quark_tensor_new_from_floats ("fc.weight", shape, n_dims, values, n, &error);
  g_assert_no_error (error);
  g_assert_true (quark_model_add_tensor (model, tensor, &error));
  quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
  g_assert_no_error (error);
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (out);
  return out;
}

static void
assert_codes (QuarkModel *out, const char *name, QuarkDType dtype, const int *expected, gsize n)
{
  QuarkTensor *t = quark_model_get_tensor (out, name);
  g_autofree float *values = NULL;
  gsize count;

  g_assert_nonnull (t);
  g_assert_cmpint (quark_tensor_get_dtype (t), ==, dtype);
  values = quark_tensor_to_floats (t, &count, NULL);
  g_assert_cmpuint (count, ==, n);
  for (gsize i = 0; i < n; i++)
    if ((int) values[i] != expected[i])
      g_error ("%s[%" G_GSIZE_FORMAT "] = %d, expected %d", name, i, (int) values[i], expected[i]);
}

static float
scalar_f32 (QuarkModel *out, const char *name, guint index)
{
  QuarkTensor *t = quark_model_get_tensor (out, name);
  g_assert_nonnull (t);
  g_assert_cmpint (quark_tensor_get_dtype (t), ==, QUARK_DTYPE_F32);
  return ((const float *) quark_tensor_peek_data (t, NULL))[index];
}

/* Q1: symmetric int8 per tensor, amax 1.27 */
static const float q1_x[] = { 1.27f, -1.27f, 0.5f, 0.3f, 0.004f, 0.125f, -0.05f, 0.635f };

static void
test_q1_int8_per_tensor (void)
{
  static const int q[] = { 127, -128, 50, 30, 0, 13, -5, 64 };
  static const float deq[] = { 1.2650197f, -1.2749804f, 0.49803922f, 0.29882354f, 0.0f,
                               0.1294902f, -0.049803924f, 0.63749021f };
  const gint64 shape[] = { 2, 4 };
  g_autoptr(QuarkModel) out = quantize ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}",
                                        shape, 2, q1_x, 8);
  QuarkTensor *codes = quark_model_get_tensor (out, "fc.weight");
  float s = scalar_f32 (out, "fc.weight_scale", 0);
  float x_hat[8];

  assert_codes (out, "fc.weight", QUARK_DTYPE_I8, q, 8);
  g_assert_cmphex (f32_bits (s), ==, 0x3C23328F);
  g_assert_cmpuint (quark_tensor_get_n_dims (quark_model_get_tensor (out, "fc.weight_scale")), ==, 0);
  assert_codes (out, "fc.weight_zero_point", QUARK_DTYPE_I8, (const int[]) { 0 }, 1);

  g_assert_true (quark_kernel_dequantize_int_f32 (quark_tensor_peek_data (codes, NULL), QUARK_DTYPE_I8,
                                                  8, s, 0, x_hat));
  for (guint i = 0; i < 8; i++)
    g_assert_cmpfloat_with_epsilon (x_hat[i], deq[i], fabsf (deq[i]) * 1e-7f + 1e-12f);

  /* the metadata records the config that made the result */
  {
    JsonNode *meta = quark_model_get_metadata (out);
    g_assert_nonnull (meta);
    g_assert_cmpstr (json_object_get_string_member (
                       json_object_get_object_member (json_node_get_object (meta), "quantization_config"),
                       "backend"), ==, "quark");
  }
}

static QuarkModel *quantize_one (const char *spec_json, const gint64 *shape, guint n_dims, const float *x,
                                  gsize n, QuarkTensor **dequantized);

/* Q2: symmetric int4 per tensor, amax 1.27 (logical codes; checkpoints pack
 * them) */
static void
test_q2_int4_per_tensor (void)
{
  static const int q[] = { 7, -8, 3, 2, 0, 1, 0, 4 };
  const gint64 shape[] = { 8 , 1 };
  g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"int4\", \"qscheme\": \"per_tensor\"}",
                                            shape, 2, q1_x, 8, NULL);

  assert_codes (out, "w", QUARK_DTYPE_INT4, q, 8);
  g_assert_cmpfloat (scalar_f32 (out, "w_scale", 0), ==, 1.27f / 7.5f);
}

/* Q3: asymmetric uint4 and int4, min -1, max 3 */
static void
test_q3_asymmetric (void)
{
  static const float x[] = { -1.0f, 3.0f, 0.0f, 0.5f, 1.0f, 2.9f };
  static const int q_u4[] = { 0, 15, 4, 6, 8, 15 };
  static const int q_i4[] = { -8, 7, -4, -2, 0, 7 };
  const gint64 shape[] = { 1, 6 };
  g_autoptr(QuarkModel) u4 = quantize_one ("{\"dtype\": \"uint4\", \"qscheme\": \"per_tensor\", \"symmetric\": false}",
                                           shape, 2, x, 6, NULL);
  g_autoptr(QuarkModel) i4 = quantize_one ("{\"dtype\": \"int4\", \"qscheme\": \"per_tensor\", \"symmetric\": false}",
                                           shape, 2, x, 6, NULL);

  assert_codes (u4, "w", QUARK_DTYPE_UINT4, q_u4, 6);
  g_assert_cmphex (f32_bits (scalar_f32 (u4, "w_scale", 0)), ==, 0x3E888889);
  assert_codes (u4, "w_zero_point", QUARK_DTYPE_UINT4, (const int[]) { 4 }, 1);
  assert_codes (i4, "w", QUARK_DTYPE_INT4, q_i4, 6);
  assert_codes (i4, "w_zero_point", QUARK_DTYPE_INT4, (const int[]) { -4 }, 1);
}

/* Per channel on axis 0 and on a non-contiguous axis. */
static void
test_per_channel (void)
{
  /* rows: Q1's values, then the same values halved */
  float x[16];
  static const int q_rows[] = { 127, -128, 50, 30, 0, 13, -5, 64,
                                127, -128, 50, 30, 0, 13, -5, 64 };
  const gint64 shape[] = { 2, 8 };
  const gint64 shape_t[] = { 8, 2 };
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(QuarkModel) out_t = NULL;
  float xt[16];
  int q_t[16];

  for (guint i = 0; i < 8; i++)
    {
      x[i] = q1_x[i];
      x[8 + i] = q1_x[i] * 0.5f;
    }
  out = quantize ("{\"dtype\": \"int8\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}", shape, 2, x, 16);
  assert_codes (out, "fc.weight", QUARK_DTYPE_I8, q_rows, 16);
  g_assert_cmphex (f32_bits (scalar_f32 (out, "fc.weight_scale", 0)), ==, 0x3C23328F);
  g_assert_cmpfloat (scalar_f32 (out, "fc.weight_scale", 1), ==, (1.27f * 0.5f) / 127.5f);
  g_assert_cmpint (quark_tensor_get_dim (quark_model_get_tensor (out, "fc.weight_scale"), 0), ==, 2);

  /* the same data transposed, channels on the last axis (ch_axis -1) */
  for (guint r = 0; r < 2; r++)
    for (guint c = 0; c < 8; c++)
      {
        xt[c * 2 + r] = x[r * 8 + c];
        q_t[c * 2 + r] = q_rows[r * 8 + c];
      }
  out_t = quantize ("{\"dtype\": \"int8\", \"qscheme\": \"per_channel\", \"ch_axis\": -1}", shape_t, 2, xt, 16);
  assert_codes (out_t, "fc.weight", QUARK_DTYPE_I8, q_t, 16);
  g_assert_cmpfloat (scalar_f32 (out_t, "fc.weight_scale", 1), ==, (1.27f * 0.5f) / 127.5f);
}

/* The zero point is added before rounding (Quark's export order, Q6). */
static void
test_q6_order (void)
{
  const QuarkKernelIntParams p = { .inv_scale = 1.0f, .scale = 1.0f, .zero_point = 65.0f,
                                   .qmin = 0, .qmax = 255 };
  const QuarkKernelIntParams p64 = { .inv_scale = 1.0f, .scale = 1.0f, .zero_point = 64.0f,
                                     .qmin = 0, .qmax = 255 };
  float x = f32_from_bits (0x3EFFFFFF);
  guint8 q;

  g_assert_true (quark_kernel_quantize_int_f32 (&x, 1, &p, QUARK_DTYPE_U8, &q));
  g_assert_cmpuint (q, ==, 66);
  g_assert_true (quark_kernel_quantize_int_f32 (&x, 1, &p64, QUARK_DTYPE_U8, &q));
  g_assert_cmpuint (q, ==, 64);
}

static void
test_nan_rejected (void)
{
  const float x[] = { 1.0f, NAN, 2.0f, 3.0f };
  const gint64 shape[] = { 2, 2 };
  g_autoptr(QuarkQuantizationConfig) config = config_for ("{\"dtype\": \"int8\"}");
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, NULL);
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkTensor) tensor = quark_tensor_new_from_floats ("layer.weight", shape, 2, x, 4, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) out = NULL;

  quark_model_add_tensor (model, tensor, NULL);
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
  g_assert_null (out);
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR);
  g_assert_nonnull (strstr (error->message, "layer.weight"));
}

static void
test_all_zero_and_empty (void)
{
  const float zeros[] = { 0, 0, 0, 0 };
  const gint64 shape[] = { 2, 2 };
  const gint64 empty_shape[] = { 0, 4 };
  g_autoptr(QuarkModel) out = quantize ("{\"dtype\": \"int8\"}", shape, 2, zeros, 4);
  g_autoptr(QuarkModel) out_empty = NULL;

  /* scale floored at the float32 epsilon, codes 0 */
  g_assert_cmpfloat (scalar_f32 (out, "fc.weight_scale", 0), ==, 0x1p-23f);
  assert_codes (out, "fc.weight", QUARK_DTYPE_I8, (const int[]) { 0, 0, 0, 0 }, 4);

  out_empty = quantize ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}", empty_shape, 2, zeros, 0);
  g_assert_cmpuint (quark_tensor_get_n_elements (quark_model_get_tensor (out_empty, "fc.weight")), ==, 0);
  g_assert_cmpfloat (scalar_f32 (out_empty, "fc.weight_scale", 0), ==, 1.0f);
}

/* Tensors that are not weights of quantized layers pass through uncopied. */
static void
test_passthrough_and_exclude (void)
{
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(GError) error = NULL;
  const float w[] = { 1, -1, 0.5f, 0.25f };
  const gint64 shape2[] = { 2, 2 };
  const gint64 shape1[] = { 4 };
  const char *names[] = { "model.norm.weight", "lm_head.weight", "layers.0.fc.weight", "layers.0.fc.bias" };
  const gint64 *shapes[] = { shape1, shape2, shape2, shape1 };
  const guint dims[] = { 1, 2, 2, 1 };

  config = quark_registry_config_from_string (quark_registry_get_default (),
    "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\"}}, \"exclude\": [\"lm_head\"]}",
    -1, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats (names[i], shapes[i], dims[i], w, 4, &error);
      g_assert_true (quark_model_add_tensor (model, t, &error));
    }
  quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
  g_assert_no_error (error);

  {
    g_auto(GStrv) out_names = quark_model_get_tensor_names (out);
    const char *expected[] = { "model.norm.weight", "lm_head.weight", "layers.0.fc.weight",
                               "layers.0.fc.weight_scale", "layers.0.fc.weight_zero_point",
                               "layers.0.fc.bias", NULL };
    g_assert_cmpstrv (out_names, expected);
  }
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (i != 2)
      g_assert_true (quark_tensor_get_data (quark_model_get_tensor (out, names[i])) ==
                     quark_tensor_get_data (quark_model_get_tensor (model, names[i])));
  g_assert_cmpint (quark_tensor_get_dtype (quark_model_get_tensor (out, "lm_head.weight")), ==, QUARK_DTYPE_F32);
  /* the input model is unchanged */
  g_assert_cmpuint (quark_model_get_n_tensors (model), ==, 4);
}

static void
test_static_activation (void)
{
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(QuarkCalibration) calibration = quark_calibration_new ();
  g_autoptr(QuarkTensor) w = NULL, batch1 = NULL, batch2 = NULL;
  g_autoptr(GError) error = NULL;
  const gint64 shape[] = { 2, 2 };
  const float wv[] = { 1, -1, 0.5f, 0.25f };
  const float b1[] = { 1, -2, 0, 0 }, b2[] = { 4, 0.5f, 0, 0 };

  config = quark_registry_config_from_string (quark_registry_get_default (),
    "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\"},"
    " \"input_tensors\": {\"dtype\": \"uint8\", \"symmetric\": false}}}", -1, &error);
  g_assert_no_error (error);
  w = quark_tensor_new_from_floats ("fc.weight", shape, 2, wv, 4, NULL);
  quark_model_add_tensor (model, w, NULL);
  quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);

  /* without statistics: an error naming the layer */
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
  g_assert_null (out);
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION);
  g_assert_nonnull (strstr (error->message, "layer fc:"));
  g_clear_error (&error);

  batch1 = quark_tensor_new_from_floats ("x", shape, 2, b1, 4, NULL);
  batch2 = quark_tensor_new_from_floats ("x", shape, 2, b2, 4, NULL);
  g_assert_true (quark_calibration_observe (calibration, "fc", QUARK_ROLE_INPUT, batch1, &error));
  g_assert_true (quark_calibration_observe (calibration, "fc", QUARK_ROLE_INPUT, batch2, &error));
  g_assert_cmpuint (quark_calibration_get_n_batches (calibration, "fc", QUARK_ROLE_INPUT), ==, 2);
  out = quark_model_quantizer_quantize_model (quantizer, model, calibration, NULL, &error);
  g_assert_no_error (error);
  /* running min -2, max 4: s = 6/255, z = 0 - rne(-2/s) = 85 */
  g_assert_cmpfloat (scalar_f32 (out, "fc.input_scale", 0), ==, 6.0f / 255.0f);
  assert_codes (out, "fc.input_zero_point", QUARK_DTYPE_U8, (const int[]) { 85 }, 1);
}

/* ---- vector path against scalar path ----------------------------------- */

static const gsize awkward_sizes[] = { 0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1023, 4099 };

static void
fill_random (GRand *rand, float *x, gsize n, float step)
{
  for (gsize i = 0; i < n; i++)
    {
      switch (g_rand_int_range (rand, 0, 4))
        {
        case 0:   /* exact half steps: ties */
          x[i] = (float) (g_rand_int_range (rand, -600, 600) * 0.5) * step;
          break;
        case 1:   /* far out of range */
          x[i] = (float) g_rand_double_range (rand, -1e6, 1e6);
          break;
        default:
          x[i] = (float) g_rand_double_range (rand, -300 * step, 300 * step);
        }
    }
}

static void
test_vector_matches_scalar_quantize (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261126);
  const QuarkDType dtypes[] = { QUARK_DTYPE_I8, QUARK_DTYPE_U8, QUARK_DTYPE_I16, QUARK_DTYPE_U16,
                                QUARK_DTYPE_I32, QUARK_DTYPE_INT4, QUARK_DTYPE_UINT2 };

  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++)
    for (guint s = 0; s < G_N_ELEMENTS (awkward_sizes); s++)
      for (guint rep = 0; rep < 4; rep++)
        {
          gsize n = awkward_sizes[s];
          gsize esize = quark_dtype_get_element_size (dtypes[d]);
          g_autofree float *x = g_new (float, n + 1);
          g_autofree guint8 *a = g_malloc0 ((n + 1) * esize);
          g_autofree guint8 *b = g_malloc0 ((n + 1) * esize);
          QuarkKernelIntParams p = { 0 };
          gint64 lo, hi;
          float step = (float) g_rand_double_range (rand, 1e-4, 2.0);

          if (dtypes[d] == QUARK_DTYPE_I32)
            lo = -(1 << 20), hi = (1 << 20);   /* the kernel's documented bound is 2^22 */
          else
            quark_dtype_get_integer_range (dtypes[d], FALSE, &lo, &hi);
          p.scale = step;
          p.inv_scale = 1.0f / step;
          p.zero_point = quark_dtype_is_signed (dtypes[d]) ? 0.0f : (float) ((lo + hi) / 2);
          p.qmin = (int32_t) lo;
          p.qmax = (int32_t) hi;
          p.divide = rep % 2 == 1;          /* Brevitas's fl (x / s) on odd rounds */
          fill_random (rand, x, n, step);
          if (rep == 2)   /* NaN lanes: qmin on both paths */
            for (gsize i = 0; i < n; i += 5)
              x[i] = i % 2 ? NAN : -NAN;
          g_assert_true (quark_kernel_quantize_int_f32 (x, n, &p, dtypes[d], a));
          g_assert_true (quark_kernel_quantize_int_f32_scalar (x, n, &p, dtypes[d], b));
          g_assert_cmpmem (a, n * esize, b, n * esize);
        }
}

/* quark_kernel_int_sq_error_f32(): the vector path gives the scalar
 * path's bits; each term is (x − (q − z) · s)² in binary32 with q the
 * quantize kernel's code, summed in sixteen binary64 partial sums (checked
 * here term by term from the codes, in that order, and against a long
 * double sum in element order) */
static void
test_vector_matches_scalar_sq_error (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261206);
  const QuarkDType dtypes[] = { QUARK_DTYPE_I8, QUARK_DTYPE_U8, QUARK_DTYPE_INT4, QUARK_DTYPE_I16, QUARK_DTYPE_I32 };

  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++)
    for (guint s = 0; s < G_N_ELEMENTS (awkward_sizes); s++)
      for (guint rep = 0; rep < 6; rep++)
        {
          gsize n = awkward_sizes[s];
          g_autofree float *x = g_new (float, n + 1);
          g_autofree gint32 *q = g_new (gint32, n + 1);
          QuarkKernelIntParams p = { 0 };
          double lanes[16] = { 0 }, expected = 0.0, vec, ref;
          long double plain = 0.0L;
          gint64 lo, hi;
          float step = (float) g_rand_double_range (rand, 1e-4, 2.0);

          quark_dtype_get_integer_range (dtypes[d], FALSE, &lo, &hi);   /* I32: the scalar path */
          p.scale = step;
          p.inv_scale = 1.0f / step;
          p.zero_point = quark_dtype_is_signed (dtypes[d]) ? (float) (rep % 3) - 1.0f : (float) ((lo + hi) / 2);
          p.qmin = (int32_t) lo;
          p.qmax = (int32_t) hi;
          p.divide = rep % 2 == 1;
          p.round = rep == 4 ? QUARK_ROUND_FLOOR : QUARK_ROUND_HALF_EVEN;   /* floor: the scalar path */
          fill_random (rand, x, n, step);
          vec = quark_kernel_int_sq_error_f32 (x, n, &p);
          ref = quark_kernel_int_sq_error_f32_scalar (x, n, &p);
          g_assert_cmpmem (&vec, sizeof vec, &ref, sizeof ref);

          g_assert_true (quark_kernel_quantize_int_f32_scalar (x, n, &p, QUARK_DTYPE_I32, q));
          for (gsize i = 0; i < n; i++)
            {
              float e = x[i] - ((float) q[i] - p.zero_point) * p.scale;
              lanes[i % 16] += (double) (e * e);
              plain += (long double) (e * e);
            }
          for (int k = 0; k < 16; k++)
            expected += lanes[k];
          g_assert_cmpmem (&ref, sizeof ref, &expected, sizeof expected);
          g_assert_cmpfloat_with_epsilon (ref, (double) plain, 1e-12 * (double) plain + 1e-300);
          if (n > 0 && n <= 16)   /* one term per partial sum: the plain sum's order */
            {
              double seq = 0.0;
              for (gsize i = 0; i < n; i++)
                seq += lanes[i];
              g_assert_cmpmem (&ref, sizeof ref, &seq, sizeof seq);
            }
        }
}

static void
test_vector_matches_scalar_min_max (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (7);

  for (guint s = 0; s < G_N_ELEMENTS (awkward_sizes); s++)
    for (guint rep = 0; rep < 8; rep++)
      {
        gsize n = awkward_sizes[s];
        g_autofree float *x = g_new (float, n + 1);
        float lo_v, hi_v, lo_s, hi_s;
        gboolean fin_v, fin_s;

        fill_random (rand, x, n, 0.01f);
        if (n > 0 && rep % 2 == 1)
          x[g_rand_int_range (rand, 0, (gint32) n)] = rep % 4 == 1 ? NAN : -INFINITY;
        fin_v = quark_kernel_min_max_f32 (x, n, &lo_v, &hi_v);
        fin_s = quark_kernel_min_max_f32_scalar (x, n, &lo_s, &hi_s);
        g_assert_cmpint (fin_v, ==, fin_s);
        g_assert_cmphex (f32_bits (lo_v), ==, f32_bits (lo_s));
        g_assert_cmphex (f32_bits (hi_v), ==, f32_bits (hi_s));
        if (n > 0 && rep % 2 == 1)
          g_assert_false (fin_v);
      }
}

/* Table 1.3 of the numerics reference (and Brevitas' V3). */
static void
test_rounding_modes (void)
{
  static const float in[] = { -2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f };
  static const struct { QuarkRoundMode mode; float out[6]; } rows[] = {
    { QUARK_ROUND_HALF_EVEN, { -2, -2, -0.0f, 0, 2, 2 } },
    { QUARK_ROUND_HALF_UP, { -2, -1, 0, 1, 2, 3 } },
    { QUARK_ROUND_HALF_AWAY, { -3, -2, -1, 1, 2, 3 } },
    { QUARK_ROUND_FLOOR, { -3, -2, -1, 0, 1, 2 } },
    { QUARK_ROUND_CEIL, { -2, -1, -0.0f, 1, 2, 3 } },
    { QUARK_ROUND_TOWARD_ZERO, { -2, -1, -0.0f, 0, 1, 2 } },
    { QUARK_ROUND_DPU, { -2, -1, -0.0f, 0, 2, 2 } },
  };

  for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
    for (guint i = 0; i < 6; i++)
      {
        float got = quark_kernel_round (in[i], rows[r].mode, 0, 0);
        g_assert_cmpfloat (got, ==, rows[r].out[i]);
        g_assert_cmpint (signbit (got) != 0, ==, signbit (rows[r].out[i]) != 0);
      }
  /* half_up in binary64: 0.49999997 + 0.5 is not 1 */
  g_assert_cmpfloat (quark_kernel_round (f32_from_bits (0x3EFFFFFF), QUARK_ROUND_HALF_UP, 0, 0), ==, 0.0f);

  /* the kernels apply every mode, codes as in the table (8-bit signed, s = 1) */
  for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
    {
      QuarkKernelIntParams p = { .inv_scale = 1, .scale = 1, .qmin = -128, .qmax = 127, .round = rows[r].mode };
      gint8 q[6];
      g_assert_true (quark_kernel_quantize_int_f32 (in, 6, &p, QUARK_DTYPE_I8, q));
      for (guint i = 0; i < 6; i++)
        g_assert_cmpint (q[i], ==, (int) rows[r].out[i]);
    }
}

static void
test_stochastic_rounding (void)
{
  gsize n = 100000, ups = 0;
  g_autofree float *x = g_new (float, n);
  g_autofree gint8 *a = g_new (gint8, n);
  g_autofree gint8 *b = g_new (gint8, n);
  QuarkKernelIntParams p = { .inv_scale = 1, .scale = 1, .qmin = -128, .qmax = 127,
                             .round = QUARK_ROUND_STOCHASTIC, .seed = 42 };

  for (gsize i = 0; i < n; i++)
    x[i] = 3.25f;
  g_assert_true (quark_kernel_quantize_int_f32 (x, n, &p, QUARK_DTYPE_I8, a));
  /* reproducible: the same seed gives the same codes, also in two pieces */
  g_assert_true (quark_kernel_quantize_int_f32 (x, n / 2, &p, QUARK_DTYPE_I8, b));
  p.offset = n / 2;
  g_assert_true (quark_kernel_quantize_int_f32 (x + n / 2, n - n / 2, &p, QUARK_DTYPE_I8, b + n / 2));
  g_assert_cmpmem (a, n, b, n);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_true (a[i] == 3 || a[i] == 4);
      ups += a[i] == 4;
    }
  /* P(up) = 0.25; 100000 draws: the count is within 6 standard deviations */
  g_assert_cmpuint (ups, >, 25000 - 6 * 137);
  g_assert_cmpuint (ups, <, 25000 + 6 * 137);
  /* another seed gives other codes */
  p.seed = 43;
  p.offset = 0;
  g_assert_true (quark_kernel_quantize_int_f32 (x, n, &p, QUARK_DTYPE_I8, b));
  g_assert_true (memcmp (a, b, n) != 0);
}

/* Section 2.7 (AMD Quark's rounding in the log domain) and V9 (Brevitas'
 * ceil). */
static void
test_pow2_scales (void)
{
  static const float sf[] = { 0.023529412f, 0.0099607846f, 0.0078431377f, 0.0070588235f, 0.0023529413f };
  static const float expected[] = { 0x1p-5f, 0x1p-7f, 0x1p-7f, 0x1p-7f, 0x1p-9f };
  static const float absmax[] = { 3.0f, 4.0f, 0.3f, 1.27f, 5.0001f };
  static const float ceil_expected[] = { 0x1p-5f, 0x1p-5f, 0x1p-8f, 0x1p-6f, 0x1p-4f };

  for (guint i = 0; i < G_N_ELEMENTS (sf); i++)
    g_assert_cmpfloat (quark_kernel_pow2_scale (sf[i], QUARK_POW2_ROUND), ==, expected[i]);
  for (guint i = 0; i < G_N_ELEMENTS (absmax); i++)
    g_assert_cmpfloat (quark_kernel_pow2_scale (absmax[i], QUARK_POW2_CEIL) / 128.0f, ==, ceil_expected[i]);
  g_assert_cmpfloat (quark_kernel_pow2_scale (3.0f, QUARK_POW2_FLOOR) / 128.0f, ==, 0x1p-6f);
  g_assert_cmpfloat (quark_kernel_pow2_scale (2.9f, QUARK_POW2_ROUND) / 128.0f, ==, 0x1p-5f);
  g_assert_cmpfloat (quark_kernel_pow2_scale (2.8f, QUARK_POW2_ROUND) / 128.0f, ==, 0x1p-6f);
  /* exact near powers of two, where binary32 log2 is wrong (1.4 item 7) */
  g_assert_cmpfloat (quark_kernel_pow2_scale (7.9999995f, QUARK_POW2_FLOOR), ==, 4.0f);
  g_assert_cmpfloat (quark_kernel_pow2_scale (16.000002f, QUARK_POW2_CEIL), ==, 32.0f);
}

/* ---- single tensors through the quark backend ----------------------------- */

static QuarkModelQuantizer *
quark_quantizer (void)
{
  g_autoptr(QuarkQuantizationConfig) config = config_for ("{\"dtype\": \"int8\"}");
  g_autoptr(GError) error = NULL;
  QuarkModelQuantizer *q = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
  g_assert_no_error (error);
  return q;
}

static QuarkTensorSpec *
spec_from_json (const char *json)
{
  g_autoptr(JsonNode) node = quark_json_parse (json, -1, "spec", NULL);
  g_autoptr(GError) error = NULL;
  QuarkTensorSpec *spec = (QuarkTensorSpec *) quark_json_new_object (QUARK_TYPE_TENSOR_SPEC, node, NULL, &error);
  g_assert_no_error (error);
  return spec;
}

static QuarkModel *
quantize_one (const char *spec_json, const gint64 *shape, guint n_dims, const float *x, gsize n,
              QuarkTensor **dequantized)
{
  g_autoptr(QuarkModelQuantizer) q = quark_quantizer ();
  g_autoptr(QuarkTensorSpec) spec = spec_from_json (spec_json);
  g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats ("w", shape, n_dims, x, n, NULL);
  g_autoptr(GError) error = NULL;
  QuarkModel *out = quark_model_quantizer_quantize_tensor (q, t, spec, &error);

  g_assert_no_error (error);
  if (dequantized)
    {
      *dequantized = quark_tensor_spec_dequantize (spec, quark_model_get_tensor (out, "w"),
                                                   quark_model_get_tensor (out, "w_scale"),
                                                   quark_model_get_tensor (out, "w_zero_point"), &error);
      g_assert_no_error (error);
    }
  return out;
}

static void
test_backend_fp8_q5 (void)
{
  const float x[] = { 1.27f, 0.5f, -0.3f, 0.001f, -1.27f };
  const gint64 shape[] = { 1, 5 };
  const guint8 expected[] = { 0x7E, 0x73, 0xED, 0x2B, 0xFE };
  g_autoptr(QuarkTensor) deq = NULL;
  g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_tensor\"}",
                                            shape, 2, x, 5, &deq);

  g_assert_cmpmem (quark_tensor_peek_data (quark_model_get_tensor (out, "w"), NULL), 5, expected, 5);
  g_assert_cmpint (quark_tensor_get_dtype (quark_model_get_tensor (out, "w")), ==, QUARK_DTYPE_F8_E4M3);
  g_assert_cmpfloat (scalar_f32 (out, "w_scale", 0), ==, 0.0028348214f);
  g_assert_null (quark_model_get_tensor (out, "w_zero_point"));
  g_assert_cmpfloat (((const float *) quark_tensor_peek_data (deq, NULL))[0], ==, 1.27f);
}

static void
test_backend_mx_block_a (void)
{
  float x[2 * 32] = { 7.0f, -3.3f, 0.26f, 1.25f, 5.0f, -0.74f, 0.0f, 2.5f };   /* row 1: all zero */
  const gint64 shape[] = { 2, 32 };
  const guint8 even_codes[] = { 0x6, 0xB, 0x0, 0x1, 0x4, 0x9, 0x0, 0x2 };
  const float even_dec[] = { 8, -3, 0, 1, 4, -1, 0, 2 };
  g_autoptr(QuarkTensor) deq = NULL;
  g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"fp4\", \"qscheme\": \"per_group\", \"ch_axis\": -1,"
                                            " \"group_size\": 32, \"scale_format\": \"e8m0\"}",
                                            shape, 2, x, 64, &deq);
  QuarkTensor *scale = quark_model_get_tensor (out, "w_scale");
  const guint8 *bytes = quark_tensor_peek_data (scale, NULL);

  g_assert_cmpint (quark_tensor_get_dtype (scale), ==, QUARK_DTYPE_F8_E8M0);
  g_assert_cmpint (quark_tensor_get_dim (scale, 0), ==, 2);
  g_assert_cmpint (quark_tensor_get_dim (scale, 1), ==, 1);
  g_assert_cmphex (bytes[0], ==, 0x80);
  g_assert_cmphex (bytes[1], ==, 0x01);   /* Quark's all-zero block in even mode */
  g_assert_cmpmem (quark_tensor_peek_data (quark_model_get_tensor (out, "w"), NULL), 8, even_codes, 8);
  for (guint i = 0; i < 8; i++)
    g_assert_cmpfloat (((const float *) quark_tensor_peek_data (deq, NULL))[i], ==, even_dec[i]);
  for (guint i = 32; i < 64; i++)
    g_assert_cmpfloat (((const float *) quark_tensor_peek_data (deq, NULL))[i], ==, 0.0f);
}

/* FP4 per group with unsigned E5M3 group scales: amax 7 gives 7/6, which
 * E5M3 rounds to 1.125 (code 0x79); elements are quantized with the decoded
 * scale. An all-zero group gets the smallest nonzero scale, never zero. */
static void
test_backend_fp4_e5m3 (void)
{
  float x[2 * 32] = { 7.0f, -3.3f, 0.26f, 1.25f, 5.0f, -0.74f, 0.0f, 2.5f };   /* row 1: all zero */
  const gint64 shape[] = { 2, 32 };
  const guint8 codes[] = { 0x7, 0xD, 0x0, 0x2, 0x6, 0x9, 0x0, 0x4 };
  const float dec[] = { 6.75f, -3.375f, 0, 1.125f, 4.5f, -0.5625f, 0, 2.25f };
  g_autoptr(QuarkTensor) deq = NULL;
  g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"fp4\", \"qscheme\": \"per_group\", \"ch_axis\": -1,"
                                            " \"group_size\": 32, \"scale_format\": \"e5m3\"}",
                                            shape, 2, x, 64, &deq);
  QuarkTensor *scale = quark_model_get_tensor (out, "w_scale");
  const guint8 *bytes = quark_tensor_peek_data (scale, NULL);
  g_autoptr(QuarkTensorSpec) bad = spec_from_json ("{\"dtype\": \"int8\", \"scale_format\": \"e5m3\"}");
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (quark_tensor_get_dtype (scale), ==, QUARK_DTYPE_U8);
  g_assert_cmpint (quark_tensor_get_n_elements (scale), ==, 2);
  g_assert_cmphex (bytes[0], ==, 0x79);
  g_assert_cmphex (bytes[1], ==, 0x01);
  g_assert_cmpmem (quark_tensor_peek_data (quark_model_get_tensor (out, "w"), NULL), 8, codes, 8);
  for (guint i = 0; i < 8; i++)
    g_assert_cmpfloat (((const float *) quark_tensor_peek_data (deq, NULL))[i], ==, dec[i]);
  for (guint i = 32; i < 64; i++)
    g_assert_cmpfloat (((const float *) quark_tensor_peek_data (deq, NULL))[i], ==, 0.0f);

  g_assert_false (quark_tensor_spec_validate (bad, "weight", &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_COMBINATION);
  g_assert_nonnull (strstr (error->message, "weight.scale_format"));
}

/* AMD Quark's power-of-two int8 table (numerics reference 2.7). */
static void
test_backend_pow2 (void)
{
  static const struct { float amax; float scale; int code_of_amax; } rows[] = {
    { 3.0f, 0x1p-5f, 96 }, { 1.27f, 0x1p-7f, 127 }, { 1.0f, 0x1p-7f, 127 }, { 0.9f, 0x1p-7f, 115 },
    { 0.3f, 0x1p-9f, 127 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      const float x[] = { rows[i].amax, -0.5f * rows[i].amax };
      const gint64 shape[] = { 1, 2 };
      g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\","
                                                " \"scale_type\": \"pof2\"}", shape, 2, x, 2, NULL);
      g_assert_cmpfloat (scalar_f32 (out, "w_scale", 0), ==, rows[i].scale);
      g_assert_cmpint (((const gint8 *) quark_tensor_peek_data (quark_model_get_tensor (out, "w"), NULL))[0],
                       ==, rows[i].code_of_amax);
      assert_codes (out, "w_zero_point", QUARK_DTYPE_I8, (const int[]) { 0 }, 1);
    }
}

/* A checkpoint format that asks for int4 and uint4 codes packed along rows
 * in their natural nibbles (QUARK_CODE_LAYOUT_INT4_ROWS: no built-in
 * format asks for it, compressed-tensors takes its stored words,
 * QUARK_CODE_LAYOUT_UINT4_ROWS) and writes the logical tensors as the
 * backend gives them. */
typedef struct { QuarkCheckpointFormat parent; } TestRowsFormat;
typedef struct { QuarkCheckpointFormatClass parent_class; } TestRowsFormatClass;
static GType test_rows_format_get_type (void);
G_DEFINE_TYPE (TestRowsFormat, test_rows_format, QUARK_TYPE_CHECKPOINT_FORMAT)

static QuarkCodeLayout
test_rows_get_code_layout (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec,
                           const gint64 *shape, guint n_dims)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);

  (void) self, (void) name;
  return (dtype == QUARK_DTYPE_INT4 || dtype == QUARK_DTYPE_UINT4) && n_dims == 2 && shape[1] % 8 == 0
         ? QUARK_CODE_LAYOUT_INT4_ROWS : QUARK_CODE_LAYOUT_BYTES;
}

static gboolean
test_rows_write_weight (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec, QuarkModel *logical,
                        QuarkModel *out, GError **error)
{
  (void) self, (void) name, (void) spec;
  for (guint i = 0; i < quark_model_get_n_tensors (logical); i++)
    if (!quark_model_add_tensor (out, quark_model_get_tensor_at (logical, i), error))
      return FALSE;
  return TRUE;
}

static JsonNode *
test_rows_build_quantization_config (QuarkCheckpointFormat *self, GError **error)
{
  JsonObject *o = json_object_new ();
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);

  (void) self, (void) error;
  json_object_set_string_member (o, "quant_method", "test-int4-rows");
  json_node_take_object (node, o);
  return node;
}

static void
test_rows_format_class_init (TestRowsFormatClass *klass)
{
  QuarkCheckpointFormatClass *format_class = QUARK_CHECKPOINT_FORMAT_CLASS (klass);

  format_class->name = "test-int4-rows";
  format_class->description = "int4 codes packed along rows (test)";
  format_class->quant_method = "test-int4-rows";
  format_class->get_code_layout = test_rows_get_code_layout;
  format_class->write_weight = test_rows_write_weight;
  format_class->build_quantization_config = test_rows_build_quantization_config;
}

static void
test_rows_format_init (TestRowsFormat *self)
{
  (void) self;
}

/* The quark backend's row path writes int4 and uint4 codes (per group and
 * per output channel, bfloat16 and float32 weights, one and two threads)
 * straight into QUARK_CODE_LAYOUT_INT4_ROWS words when a format asks for
 * them: the words of quark_kernel_pack_int4() on the codes the general
 * path (allow-nonfinite) gives one per element, int4's nibbles as two's
 * complement (not flipped, as QUARK_CODE_LAYOUT_UINT4_ROWS has them). */
static void
test_backend_int4_rows_layout (void)
{
  static const char * const specs[] = {
    "{\"dtype\": \"int4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32}",
    ("{\"dtype\": \"uint4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 64, "
     "\"symmetric\": false}"),
    "{\"dtype\": \"int4\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}",
  };
  const gsize rows = 24, cols = 128, n = rows * cols;
  const gint64 shape[2] = { (gint64) rows, (gint64) cols };
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261206);
  g_autofree float *w = g_new (float, n);
  g_autofree guint16 *wb = g_new (guint16, n);
  QuarkRegistry *registry = quark_registry_get_default ();

  if (!quark_registry_add_format (registry, test_rows_format_get_type (), &error))
    {
      /* registered by an earlier run in this process */
      g_assert_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS);
      g_clear_error (&error);
    }
  for (gsize i = 0; i < n; i++)
    {
      float v = (float) g_rand_double_range (rand, -1.0, 1.0) * (float) (1 + i % 7);
      guint32 bits;
      memcpy (&bits, &v, 4);
      wb[i] = (guint16) (bits >> 16);
      w[i] = f32_from_bits (bits & 0xffff0000u);   /* the same values in both dtypes */
    }
  for (guint s = 0; s < G_N_ELEMENTS (specs); s++)
    for (guint bf16 = 0; bf16 < 2; bf16++)
      for (guint threads = 1; threads <= 2; threads++)
        {
          g_autoptr(QuarkQuantizationConfig) config = config_for (specs[s]);
          g_autoptr(QuarkModel) model = quark_model_new ();
          g_autoptr(QuarkTensor) tensor = NULL;
          g_autoptr(QuarkModel) rows_out = NULL, general_out = NULL;
          g_autofree gint32 *expected = g_new (gint32, n / 8);
          QuarkTensor *words, *codes;
          gsize size;

          g_autoptr(GBytes) bytes = g_bytes_new_static (wb, n * 2);

          tensor = bf16 ? quark_tensor_new ("fc.weight", QUARK_DTYPE_BF16, shape, 2, bytes, &error)
                        : quark_tensor_new_from_floats ("fc.weight", shape, 2, w, n, &error);
          g_assert_no_error (error);
          g_assert_true (quark_model_add_tensor (model, tensor, &error));
          for (guint general = 0; general < 2; general++)
            {
              g_autoptr(QuarkModelQuantizer) q = quark_registry_new_quantizer (registry, config, &error);
              QuarkModel *out;
              g_assert_no_error (error);
              g_object_set (q, "export-format", "test-int4-rows", "threads", threads, "allow-nonfinite",
                            (gboolean) general, NULL);
              out = quark_model_quantizer_quantize_model (q, model, NULL, NULL, &error);
              g_assert_no_error (error);
              if (general)
                general_out = out;
              else
                rows_out = out;
            }
          words = quark_model_get_tensor (rows_out, "fc.weight");
          codes = quark_model_get_tensor (general_out, "fc.weight");
          g_assert_nonnull (words);
          g_assert_nonnull (codes);
          g_assert_cmpint (quark_tensor_get_dtype (words), ==, QUARK_DTYPE_I32);
          g_assert_cmpint (quark_tensor_get_shape (words, NULL)[0], ==, (gint64) rows);
          g_assert_cmpint (quark_tensor_get_shape (words, NULL)[1], ==, (gint64) cols / 8);
          g_assert_cmpint (quark_dtype_get_element_size (quark_tensor_get_dtype (codes)), ==, 1);
          g_assert_true (quark_kernel_pack_int4 (quark_tensor_peek_data (codes, &size), rows, cols, FALSE, expected));
          g_assert_cmpuint (size, ==, n);
          g_assert_cmpmem (quark_tensor_peek_data (words, &size), n / 2, expected, n / 2);
          g_assert_cmpuint (size, ==, n / 2);
          /* and the scales alike */
          {
            QuarkTensor *a = quark_model_get_tensor (rows_out, "fc.weight_scale");
            QuarkTensor *b = quark_model_get_tensor (general_out, "fc.weight_scale");
            gsize sa, sb;
            const void *da = quark_tensor_peek_data (a, &sa), *db = quark_tensor_peek_data (b, &sb);
            g_assert_cmpmem (da, sa, db, sb);
          }
        }
}

/* Per group along the last axis, with a ragged last group: each group's
 * parameters are those of the group alone (Q3's numbers in the second group). */
static void
test_backend_int_per_group (void)
{
  const float x[] = { 1.27f, -1.27f, 0.5f, 0.3f,   -1.0f, 3.0f, 0.0f, 0.5f,   1.0f, 2.9f };
  const gint64 shape[] = { 1, 10 };
  g_autoptr(QuarkTensor) deq = NULL;
  g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"uint4\", \"qscheme\": \"per_group\", \"ch_axis\": -1,"
                                            " \"group_size\": 4, \"symmetric\": false}", shape, 2, x, 10, &deq);
  QuarkTensor *scale = quark_model_get_tensor (out, "w_scale");
  const float *s = quark_tensor_peek_data (scale, NULL);
  const float *xh = quark_tensor_peek_data (deq, NULL);

  g_assert_cmpint (quark_tensor_get_dim (scale, 1), ==, 3);
  g_assert_cmphex (f32_bits (s[1]), ==, 0x3E888889);    /* Q3: 4 / 15 */
  assert_codes (out, "w_zero_point", QUARK_DTYPE_UINT4, (const int[]) { 8, 4, 0 }, 3);
  {
    const guint8 *q = quark_tensor_peek_data (quark_model_get_tensor (out, "w"), NULL);
    g_assert_cmpuint (q[4], ==, 0);
    g_assert_cmpuint (q[5], ==, 15);
    g_assert_cmpuint (q[6], ==, 4);
    g_assert_cmpuint (q[7], ==, 6);
  }
  /* every element within half a step of its group's scale (plus the clip of
   * +amax, 255 * 2^-24 relative) */
  for (guint i = 0; i < 10; i++)
    g_assert_cmpfloat (fabsf (xh[i] - x[i]), <=, s[i / 4] * 0.5f * (1.0f + 1e-5f));
}

/* Per block: 2-D blocks over [rows, cols], ragged at the ends; each block's
 * scale is its own amax / 127.5 (int8) or amax / 448 (fp8). */
static void
test_backend_per_block (void)
{
  float x[5 * 7];
  const gint64 shape[] = { 5, 7 };
  const char *specs[] = {
    "{\"dtype\": \"int8\", \"qscheme\": \"per_block\", \"block_size\": [2, 4]}",
    "{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_block\", \"block_size\": [2, 4]}",
  };
  const float divisor[] = { 127.5f, 448.0f };

  for (guint i = 0; i < G_N_ELEMENTS (x); i++)
    x[i] = sinf ((float) i * 1.7f) * (float) (1 + i % 5);
  for (guint k = 0; k < 2; k++)
    {
      g_autoptr(QuarkTensor) deq = NULL;
      g_autoptr(QuarkModel) out = quantize_one (specs[k], shape, 2, x, 35, &deq);
      QuarkTensor *scale = quark_model_get_tensor (out, "w_scale");
      const float *s = quark_tensor_peek_data (scale, NULL);

      g_assert_cmpint (quark_tensor_get_dim (scale, 0), ==, 3);
      g_assert_cmpint (quark_tensor_get_dim (scale, 1), ==, 2);
      for (guint bi = 0; bi < 3; bi++)
        for (guint bj = 0; bj < 2; bj++)
          {
            float amax = 0;
            for (guint r = bi * 2; r < MIN (bi * 2 + 2, 5); r++)
              for (guint c = bj * 4; c < MIN (bj * 4 + 4, 7); c++)
                amax = fmaxf (amax, fabsf (x[r * 7 + c]));
            g_assert_cmpfloat (s[bi * 2 + bj], ==, amax / divisor[k]);
          }
      /* the dequantized maximum of each block is within the format's error */
      g_assert_cmpfloat (fabsf (((const float *) quark_tensor_peek_data (deq, NULL))[0] - x[0]), <=,
                         fabsf (x[0]) * 0.07f + s[0]);
    }
}

/* int32 (scalar path, clamped in binary64) and float16/bfloat16 casts. */
static void
test_backend_int32_and_casts (void)
{
  const float x[] = { 1.27f, -1.27f, 0.5f, 1e-30f, 1.0f / 3.0f, -0.0f };
  const gint64 shape[] = { 1, 6 };
  g_autoptr(QuarkTensor) deq = NULL;
  g_autoptr(QuarkModel) out = quantize_one ("{\"dtype\": \"int32\", \"qscheme\": \"per_tensor\"}",
                                            shape, 2, x, 6, &deq);
  const gint32 *q = quark_tensor_peek_data (quark_model_get_tensor (out, "w"), NULL);
  float s = scalar_f32 (out, "w_scale", 0);

  /* amax / 2147483647.5 is below Quark's floor of 2^-23 */
  g_assert_cmpfloat (s, ==, 0x1p-23f);
  for (guint i = 0; i < 6; i++)
    {
      double t = rintf (x[i] * (1.0f / s));
      gint64 expected = (gint64) CLAMP (t, (double) G_MININT32, (double) G_MAXINT32);
      g_assert_cmpint (q[i], ==, expected);
    }
  g_assert_cmpint (q[0], ==, (gint64) rintf (1.27f * 0x1p23f));

  for (guint k = 0; k < 2; k++)
    {
      QuarkDType dt = k ? QUARK_DTYPE_BF16 : QUARK_DTYPE_F16;
      g_autoptr(QuarkTensor) back = NULL;
      g_autoptr(QuarkModel) cast = quantize_one (k ? "{\"dtype\": \"bfloat16\"}" : "{\"dtype\": \"float16\"}",
                                                 shape, 2, x, 6, &back);
      guint16 expected[6];
      g_assert_true (quark_kernel_convert_from_f32 (dt, x, expected, 6));
      g_assert_cmpmem (quark_tensor_peek_data (quark_model_get_tensor (cast, "w"), NULL), 12, expected, 12);
      g_assert_null (quark_model_get_tensor (cast, "w_scale"));
      g_assert_cmpfloat (((const float *) quark_tensor_peek_data (back, NULL))[0], ==, k ? 1.2734375f : 1.26953125f);
    }
}

static void
test_backend_rejects_bad_spec (void)
{
  g_autoptr(QuarkModelQuantizer) q = quark_quantizer ();
  g_autoptr(QuarkTensorSpec) spec = spec_from_json ("{\"dtype\": \"fp4\", \"qscheme\": \"per_block\", \"block_size\": [2, 2]}");
  const float x[] = { 1, 2, 3, 4 };
  const gint64 shape[] = { 2, 2 };
  g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats ("w", shape, 2, x, 4, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) out = quark_model_quantizer_quantize_tensor (q, t, spec, &error);

  g_assert_null (out);
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME);
}

/* The absolute maxima read long rows in steps aligned to the cache line,
 * between one unaligned vector at each end (qk_line_head()): at every
 * start within two lines and every length around the vector widths, a
 * largest magnitude (a finite value, infinity or NaN) planted at any
 * element is found, by the whole-row, per-group (one group) and binary32
 * kernels alike. */
static void
test_abs_max_every_alignment (void)
{
  const gsize lengths[] = { 0, 1, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 66, 95, 96, 97, 127, 128, 129, 200, 257, 1000 };
  const guint16 planted_bf16[] = { 0x4000, 0x7f80, 0x7fc1 };   /* 2, +inf, NaN */
  const gsize room = 1000 + 128;
  g_autofree guint16 *hb = g_new (guint16, room + 64);
  g_autofree float *fb = g_new (float, room + 64);
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261206);
  /* line-aligned bases inside the buffers */
  guint16 *h0 = (guint16 *) (((guintptr) hb + 63) & ~(guintptr) 63);
  float *f0 = (float *) (((guintptr) fb + 63) & ~(guintptr) 63);

  for (gsize start = 0; start < 64; start++)
    for (guint l = 0; l < G_N_ELEMENTS (lengths); l++)
      {
        gsize n = lengths[l];
        guint16 *h = h0 + start;
        float *f = f0 + start;

        for (gsize i = 0; i < n; i++)
          {
            float v = (float) g_rand_double_range (rand, -1.0, 1.0);
            guint32 bits;
            memcpy (&bits, &v, 4);
            h[i] = (guint16) (bits >> 16);
            memcpy (&f[i], &(guint32) { bits & 0xffff0000u }, 4);
          }
        for (gsize at = 0; at < n; at++)
          {
            guint kind = (guint) (at + start) % G_N_ELEMENTS (planted_bf16);
            guint16 keep_h = h[at];
            float keep_f = f[at], am_h, am_f, am_g;
            guint32 want = (guint32) planted_bf16[kind] << 16;
            gboolean ok_h, ok_f, ok_g;

            /* negative on odd elements: the sign is ignored */
            h[at] = planted_bf16[kind] | (at % 2 ? 0x8000 : 0);
            memcpy (&f[at], &(guint32) { (guint32) h[at] << 16 }, 4);
            ok_h = quark_kernel_abs_max_bf16 (h, n, &am_h);
            ok_f = quark_kernel_abs_max_f32 (f, n, &am_f);
            ok_g = quark_kernel_group_abs_max_bf16 (h, n, n, &am_g);
            g_assert_cmpint (ok_h, ==, kind == 0);
            g_assert_cmpint (ok_f, ==, kind == 0);
            g_assert_cmpint (ok_g, ==, kind == 0);
            g_assert_cmphex (f32_bits (am_h), ==, want);
            g_assert_cmphex (f32_bits (am_f), ==, want);
            g_assert_cmphex (f32_bits (am_g), ==, want);
            h[at] = keep_h;
            f[at] = keep_f;
          }
      }
}

/* A group's reference statistics: the largest magnitude's bits, the
 * extremes and finiteness from quark_kernel_min_max_f32_scalar() on the
 * widened values */
typedef struct {
  guint16 top;
  float lo, hi;
  gboolean finite;
} GroupRef;

static GroupRef
group_ref (const guint16 *h, gsize m)
{
  GroupRef r = { 0 };
  g_autofree float *widened = g_new (float, m);

  for (gsize i = 0; i < m; i++)
    {
      r.top = MAX (r.top, h[i] & 0x7fff);
      memcpy (&widened[i], &(guint32) { (guint32) h[i] << 16 }, 4);
    }
  r.finite = quark_kernel_min_max_f32_scalar (widened, m, &r.lo, &r.hi);
  return r;
}

/* The per-group statistics of bfloat16 rows that start between cache
 * lines read them in line-aligned steps, each group's first and last line
 * split between it and its neighbour by lane masks
 * (qk_bf16_block_keys_lines()): at every start within a line, for groups
 * of 64, 96, 128 and 256 in rows of 16, 17 and 33 groups with and without
 * a short last group, a value planted in the lanes the masks divide (next
 * to each line boundary and each group boundary) of the groups that begin
 * and end a row and a run of 16 (a finite magnitude above the rest, either
 * sign, infinity or NaN) lands in its own group's maximum, minimum and
 * finiteness, and in no other. The elements around the row (the rest of
 * its first and last lines) hold larger values than any in it, which
 * would show if a group took them, and under AddressSanitizer they are
 * poisoned, so that reading them at all fails (the lines a row starts and
 * ends in are parts of whole pages, so such a read never faults, but it
 * reads outside the caller's array). */
static void
test_group_stats_every_alignment (void)
{
  const gsize group_sizes[] = { 64, 96, 128, 256 };
  const guint16 planted_bf16[] = { 0x4000, 0xc000, 0x7f80, 0xff80, 0x7fc1 };   /* 2, -2, +inf, -inf, NaN */
  const gsize room = 33 * 256 + 200;
  g_autofree guint16 *hb = g_new (guint16, room + 128);
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261207);
  guint16 *h0 = (guint16 *) (((guintptr) hb + 63) & ~(guintptr) 63);
  g_autofree float *amax = g_new (float, room), *lo = g_new (float, room), *hi = g_new (float, room);
  g_autofree GroupRef *ref = g_new (GroupRef, room);
  guint plants = 0;

  for (guint gs = 0; gs < G_N_ELEMENTS (group_sizes); gs++)
    for (guint shape = 0; shape < 4; shape++)
      {
        const gsize group = group_sizes[gs];
        const gsize n = shape == 0 ? 16 * group : shape == 1 ? 16 * group + 37 : shape == 2 ? 17 * group
                        : 33 * group - 5;
        const gsize groups = (n + group - 1) / group;
        const gsize chosen[] = { 0, 1, 14, 15, 16, 17, groups - 2, groups - 1 };

        for (gsize start = 0; start < 32; start++)
          {
            guint16 *h = h0 + 32 + start;
            const gsize head = (32 - start) % 32;   /* elements before a group's first line boundary */

            /* the rest of the first and last lines: 100, -100 */
            for (gsize i = 0; i < 32 + start; i++)
              h0[i] = i % 2 ? 0x42c8 : 0xc2c8;
            for (gsize i = n; i < n + 64; i++)
              h[i] = i % 2 ? 0x42c8 : 0xc2c8;
            for (gsize i = 0; i < n; i++)
              {
                float v = (float) g_rand_double_range (rand, -1.0, 1.0);
                guint32 bits;
                memcpy (&bits, &v, 4);
                h[i] = (guint16) (bits >> 16);
              }
            for (gsize g = 0; g < groups; g++)
              ref[g] = group_ref (h + g * group, MIN (group, n - g * group));
#ifdef __SANITIZE_ADDRESS__
            ASAN_POISON_MEMORY_REGION (h0, (32 + start) * sizeof *h);
            ASAN_POISON_MEMORY_REGION (h + n, 64 * sizeof *h);
#endif
            for (guint c = 0; c < G_N_ELEMENTS (chosen); c++)
              {
                const gsize g = chosen[c], m = g < groups ? MIN (group, n - g * group) : 0;
                const gsize offsets[] = { 0, 1, head - 1, head, head + 1, 31, 32, 33, m - 34, m - 33, m - 32,
                                          m - start - 1, m - start, m - start + 1, m - 2, m - 1 };

                if (g >= groups || (c > 0 && g == chosen[c - 1]))
                  continue;
                for (guint k = 0; k < G_N_ELEMENTS (offsets); k++)
                  {
                    const gsize at = g * group + offsets[k];
                    const GroupRef keep_ref = ref[g];
                    guint16 keep;
                    guint kind;
                    gboolean ok_a, ok_m, all_finite = TRUE;

                    if (offsets[k] >= m)   /* (a short group's offsets, and head - 1 at start 0, wrap around) */
                      continue;
                    keep = h[at];
                    kind = plants++ % G_N_ELEMENTS (planted_bf16);
                    h[at] = planted_bf16[kind];
                    ref[g] = group_ref (h + g * group, m);
                    g_assert_cmpint (ref[g].finite, ==, kind < 2);
                    ok_a = quark_kernel_group_abs_max_bf16 (h, n, group, amax);
                    ok_m = quark_kernel_group_min_max_bf16 (h, n, group, lo, hi);
                    for (gsize j = 0; j < groups; j++)
                      {
                        all_finite &= ref[j].finite;
                        if (ref[j].finite && (f32_bits (amax[j]) != (guint32) ref[j].top << 16 ||
                                              lo[j] != ref[j].lo || hi[j] != ref[j].hi))
                          g_error ("group %zu of %zu, length %zu, start %zu, planted %04x at %zu: max |x| %a, "
                                   "[%a, %a]; scalar max |x| bits %04x, [%a, %a]", j, group, n, start,
                                   planted_bf16[kind], at, amax[j], lo[j], hi[j], ref[j].top, ref[j].lo, ref[j].hi);
                      }
                    g_assert_cmpint (ok_a, ==, all_finite);
                    g_assert_cmpint (ok_m, ==, all_finite);
                    h[at] = keep;
                    ref[g] = keep_ref;
                  }
              }
#ifdef __SANITIZE_ADDRESS__
            ASAN_UNPOISON_MEMORY_REGION (h0, (32 + start) * sizeof *h);
            ASAN_UNPOISON_MEMORY_REGION (h + n, 64 * sizeof *h);
#endif
          }
      }
  g_assert_cmpuint (plants, >, 10000);
}

/* The bfloat16 kernels equal widening first and running the binary32
 * scalar references. */
static void
test_bf16_kernels_match_widened (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (31);

  for (guint s = 0; s < G_N_ELEMENTS (awkward_sizes); s++)
    for (guint rep = 0; rep < 4; rep++)
      {
        gsize n = awkward_sizes[s];
        g_autofree guint16 *h = g_new (guint16, n + 1);
        g_autofree float *f = g_new (float, n + 1);
        g_autofree gint8 *a = g_new0 (gint8, n + 1);
        g_autofree gint8 *b = g_new0 (gint8, n + 1);
        float lo1, hi1, lo2, hi2;
        gboolean fin1, fin2;
        QuarkKernelIntParams p = { .qmin = -128, .qmax = 127 };

        for (gsize i = 0; i < n; i++)
          {
            h[i] = (guint16) g_rand_int_range (rand, 0, 65536);
            if (rep == 3 && i % 7 == 0)
              h[i] = 0x7fc0;   /* NaN */
          }
        g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, f, n));
        fin1 = quark_kernel_min_max_bf16 (h, n, &lo1, &hi1);
        fin2 = quark_kernel_min_max_f32_scalar (f, n, &lo2, &hi2);
        g_assert_cmpint (fin1, ==, fin2);
        g_assert_cmphex (f32_bits (lo1), ==, f32_bits (lo2));
        g_assert_cmphex (f32_bits (hi1), ==, f32_bits (hi2));
        /* absolute maxima on the bits, binary32 and bfloat16 */
        {
          float am_h, am_f;
          gboolean ok_h = quark_kernel_abs_max_bf16 (h, n, &am_h);
          gboolean ok_f = quark_kernel_abs_max_f32 (f, n, &am_f);
          g_assert_cmpint (ok_h, ==, fin2);
          g_assert_cmpint (ok_f, ==, fin2);
          if (fin2)
            {
              float expected = n ? fmaxf (fabsf (lo2), fabsf (hi2)) : 0.0f;
              g_assert_cmpfloat (am_h, ==, expected);
              g_assert_cmpfloat (am_f, ==, expected);
            }
        }
        if (rep == 3)
          continue;
        /* finite data for quantization */
        for (gsize i = 0; i < n; i++)
          if (!isfinite (f[i]))
            {
              h[i] = 0x3f80;
              f[i] = 1.0f;
            }
        p.scale = (float) g_rand_double_range (rand, 1e-3, 1e3);
        p.inv_scale = 1.0f / p.scale;
        p.zero_point = (float) g_rand_int_range (rand, -3, 4);
        g_assert_true (quark_kernel_quantize_int_bf16 (h, n, &p, QUARK_DTYPE_I8, a));
        g_assert_true (quark_kernel_quantize_int_f32_scalar (f, n, &p, QUARK_DTYPE_I8, b));
        g_assert_cmpmem (a, n, b, n);
        /* every storage width, with and without a zero point, multiplying
         * and dividing (the 8- and 16-bit bfloat16 paths take even and odd
         * elements apart) */
        {
          const QuarkDType dts[] = { QUARK_DTYPE_I8, QUARK_DTYPE_U8, QUARK_DTYPE_I16,
                                     QUARK_DTYPE_U16, QUARK_DTYPE_I32, QUARK_DTYPE_INT4 };
          for (guint d = 0; d < G_N_ELEMENTS (dts); d++)
            for (guint v = 0; v < 4; v++)
              {
                gsize es = quark_dtype_get_element_size (dts[d]);
                g_autofree guint8 *qa = g_malloc0 ((n + 1) * es);
                g_autofree guint8 *qb = g_malloc0 ((n + 1) * es);
                gint64 lo, hi;
                QuarkKernelIntParams q = p;
                quark_dtype_get_integer_range (dts[d], FALSE, &lo, &hi);
                if (dts[d] == QUARK_DTYPE_I32)
                  lo = -(1 << 20), hi = 1 << 20;
                q.qmin = (int32_t) lo;
                q.qmax = (int32_t) hi;
                q.zero_point = v % 2 ? (float) ((lo + hi) / 2 + g_rand_int_range (rand, -2, 3)) : 0.0f;
                q.divide = v >= 2;
                g_assert_true (quark_kernel_quantize_int_bf16 (h, n, &q, dts[d], qa));
                g_assert_true (quark_kernel_quantize_int_f32_scalar (f, n, &q, dts[d], qb));
                g_assert_cmpmem (qa, n * es, qb, n * es);
              }
        }
      }
}

/* The quantizer hands bfloat16 weights to the kernels as they are: every
 * output tensor equals that of the same values widened to float32, for
 * each kind of spec (integers per tensor, channel, group and block, with
 * and without zero points and power-of-two scales, FP8 per tensor and
 * channel, OCP MX FP4, FP6 and INT8), on rows long enough for the vector
 * and table paths, with zeros, tiny and negative values. */
static void
test_bf16_weights_as_f32 (void)
{
  static const char *specs[] = {
    "{\"dtype\": \"int8\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}",
    "{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}",
    "{\"dtype\": \"uint8\", \"qscheme\": \"per_channel\", \"ch_axis\": 0, \"symmetric\": false}",
    "{\"dtype\": \"int8\", \"qscheme\": \"per_channel\", \"ch_axis\": 0, \"scale_type\": \"pof2\"}",
    "{\"dtype\": \"int4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 128}",
    "{\"dtype\": \"uint4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32, \"symmetric\": false}",
    "{\"dtype\": \"int8\", \"qscheme\": \"per_block\", \"block_size\": [4, 64]}",
    "{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_tensor\"}",
    "{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}",
    "{\"dtype\": \"fp8_e5m2\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}",
    "{\"dtype\": \"fp4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32, \"scale_format\": \"e8m0\"}",
    "{\"dtype\": \"fp6_e2m3\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32, \"scale_format\": \"e8m0\"}",
    "{\"dtype\": \"int8\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32, \"scale_format\": \"e8m0\"}",
  };
  const gint64 shape[2] = { 8, 1152 };
  const gsize n = 8 * 1152;
  g_autoptr(GRand) rand = g_rand_new_with_seed (1606);
  g_autofree guint16 *h = g_new (guint16, n);
  g_autofree float *w = g_new (float, n);

  for (gsize i = 0; i < n; i++)
    {
      float v = (float) (g_rand_double_range (rand, -1, 1) * pow (2, g_rand_int_range (rand, -12, 2)));
      if (i % 97 == 0)
        v = 0.0f;
      else if (i % 89 == 0)
        v = -0.0f;
      h[i] = (guint16) (f32_bits (v) >> 16);
    }
  g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, w, n));

  for (guint k = 0; k < G_N_ELEMENTS (specs); k++)
    {
      g_autoptr(QuarkQuantizationConfig) config = config_for (specs[k]);
      g_autoptr(QuarkModelQuantizer) quantizer = NULL;
      g_autoptr(QuarkModel) in_h = quark_model_new (), in_w = quark_model_new ();
      g_autoptr(QuarkModel) out_h = NULL, out_w = NULL;
      g_autoptr(QuarkTensor) th = NULL, tw = NULL;
      g_autoptr(GBytes) bytes = g_bytes_new (h, n * 2);
      g_autoptr(GError) error = NULL;
      g_auto(GStrv) names = NULL;

      th = quark_tensor_new ("fc.weight", QUARK_DTYPE_BF16, shape, 2, bytes, &error);
      g_assert_no_error (error);
      tw = quark_tensor_new_from_floats ("fc.weight", shape, 2, w, n, &error);
      g_assert_no_error (error);
      g_assert_true (quark_model_add_tensor (in_h, th, &error));
      g_assert_true (quark_model_add_tensor (in_w, tw, &error));
      quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
      g_assert_no_error (error);
      out_h = quark_model_quantizer_quantize_model (quantizer, in_h, NULL, NULL, &error);
      g_assert_no_error (error);
      out_w = quark_model_quantizer_quantize_model (quantizer, in_w, NULL, NULL, &error);
      g_assert_no_error (error);
      names = quark_model_get_tensor_names (out_w);
      g_assert_cmpuint (g_strv_length (names), >=, 2);
      for (guint i = 0; names[i]; i++)
        {
          QuarkTensor *a = quark_model_get_tensor (out_h, names[i]), *b = quark_model_get_tensor (out_w, names[i]);
          gsize size_a, size_b;
          gconstpointer da, db;
          g_test_message ("%s: %s", specs[k], names[i]);
          g_assert_nonnull (a);
          g_assert_cmpint (quark_tensor_get_dtype (a), ==, quark_tensor_get_dtype (b));
          da = quark_tensor_peek_data (a, &size_a);
          db = quark_tensor_peek_data (b, &size_b);
          g_assert_cmpmem (da, size_a, db, size_b);
        }
    }
}

/* One group min/max kernel (bfloat16 or float32 input) over rows of
 * every length from @n down by 2999 while above n - 3000, in every group
 * size, against its one-group kernel called on each group: equal minima
 * and maxima (a zero may differ in sign only: -0 == +0), and finite
 * exactly when each group is and as @finite_data says. */
static void
check_group_min_max (const guint16 *h, const float *f, gsize n, const gsize *group_sizes, guint n_sizes,
                     gboolean finite_data, const char *what)
{
  g_autofree float *lo = g_new (float, n + 1), *hi = g_new (float, n + 1);

  for (guint gs = 0; gs < n_sizes; gs++)
    for (gsize len = n; len + 3000 > n && len > 0; len = len > 2999 ? len - 2999 : 0)
      {
        gsize group = group_sizes[gs], groups = (len + group - 1) / group;
        gboolean ok = h ? quark_kernel_group_min_max_bf16 (h, len, group, lo, hi)
                        : quark_kernel_group_min_max_f32 (f, len, group, lo, hi);
        gboolean all_finite = TRUE;

        for (gsize g = 0; g < groups; g++)
          {
            float rlo, rhi;
            gsize m = MIN (group, len - g * group);
            gboolean finite = h ? quark_kernel_min_max_bf16 (h + g * group, m, &rlo, &rhi)
                                : quark_kernel_min_max_f32 (f + g * group, m, &rlo, &rhi);
            all_finite &= finite;
            if (finite && (lo[g] != rlo || hi[g] != rhi))
              g_error ("%s, group %zu, length %zu, group %zu: [%a, %a], one call per group [%a, %a]", what, group,
                       len, g, lo[g], hi[g], rlo, rhi);
          }
        g_assert_cmpint (ok, ==, all_finite);
        g_assert_cmpint (all_finite, ==, finite_data);
      }
}

/* quark_kernel_group_min_max_bf16() and _f32() (sixteen groups at a time
 * by integer keys when a group is a multiple of 32 up to 512, or of 16 for
 * float32 with AVX-512, else a call per group) against
 * quark_kernel_min_max_bf16() and _f32() on each group
 * (check_group_min_max()), on every finite bfloat16 pattern shuffled (for
 * float32 each widened with random low mantissa bits), on random values,
 * on groups of negative values only and of signed zeros only, and with
 * each kind of non-finite value placed once; group sizes on and off the
 * fast paths, row lengths that end in a short group and cross the
 * kernels' 256-group stride. */
static void
test_group_min_max (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261206);
  const gsize group_sizes[] = { 32, 64, 96, 128, 256, 512, 8, 100, 544, 1024 };
  const gsize group_sizes_f32[] = { 16, 32, 48, 64, 128, 512, 1040, 8, 100, 520 };
  const guint16 bad_values[] = { 0x7f80, 0xff80, 0x7fc0, 0xffc1 };
  const guint32 bad_values_f32[] = { 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001 };
  const gsize n_max = 70000;
  g_autofree guint16 *h = g_new (guint16, n_max);
  g_autofree float *f = g_new (float, n_max);

  for (guint data = 0; data < 4 + G_N_ELEMENTS (bad_values_f32); data++)
    {
      gsize n = 0;
      char what[64];

      if (data == 0)
        {
          /* every finite pattern */
          for (guint32 b = 0; b < 0x10000; b++)
            if ((b & 0x7f80) != 0x7f80)
              h[n++] = (guint16) b;
          for (gsize i = n - 1; i > 0; i--)
            {
              gsize j = (gsize) g_rand_int_range (rand, 0, (gint32) i + 1);
              guint16 t = h[i];
              h[i] = h[j];
              h[j] = t;
            }
        }
      else
        {
          n = 69999;
          for (gsize i = 0; i < n; i++)
            {
              float v = (float) g_rand_double_range (rand, -3.0, 3.0);
              guint32 bits;
              memcpy (&bits, &v, 4);
              h[i] = (guint16) (bits >> 16);
              if (data == 1 && i < n / 2)
                h[i] &= 0x7fff;                                   /* positive only, then mixed */
              else if (data == 2)
                h[i] |= 0x8000;                                   /* negative only */
              else if (data == 3)
                h[i] = g_rand_boolean (rand) ? 0x8000 : 0x0000;   /* signed zeros */
            }
        }
      /* float32: the same values with random low bits (not for zeros) */
      for (gsize i = 0; i < n; i++)
        {
          guint32 bits = (guint32) h[i] << 16;
          if (data != 3)
            bits |= g_rand_int (rand) & 0xffff;
          memcpy (&f[i], &bits, 4);
        }
      if (data >= 4)
        {
          /* in every length below */
          gsize at = (gsize) g_rand_int_range (rand, 0, (gint32) n - 3000);
          memcpy (&f[at], &bad_values_f32[data - 4], 4);
          if (data - 4 < G_N_ELEMENTS (bad_values))
            h[at] = bad_values[data - 4];
        }
      g_snprintf (what, sizeof what, "float32, data %u", data);
      check_group_min_max (NULL, f, n, group_sizes_f32, G_N_ELEMENTS (group_sizes_f32), data < 4, what);
      if (data < 4 + G_N_ELEMENTS (bad_values))
        {
          g_snprintf (what, sizeof what, "bfloat16, data %u", data);
          check_group_min_max (h, NULL, n, group_sizes, G_N_ELEMENTS (group_sizes), data < 4, what);
        }
    }
}

/* A row's extremes @lo, @hi and finiteness @fin against the scalar
 * reference on its float32 values @f: equal (a zero may differ in sign),
 * finite exactly when nothing was planted (@place 0) */
static void
check_row_extremes (const char *what, guint data, gsize len, guint place, gboolean fin, float lo, float hi,
                    const float *f)
{
  float rlo, rhi;
  gboolean rfin = quark_kernel_min_max_f32_scalar (f, len, &rlo, &rhi);

  if (fin != rfin || lo != rlo || hi != rhi)
    g_error ("%s, data %u, length %" G_GSIZE_FORMAT ", place %u: [%a, %a] finite %d, scalar [%a, %a] finite %d",
             what, data, len, place, lo, hi, fin, rlo, rhi, rfin);
  g_assert_cmpint (fin, ==, place == 0);
}

/* quark_kernel_min_max_bf16() and _f32() (keys with AVX-512 for rows of
 * 64 and 32 values or more, else and for rows with an infinity or NaN the
 * float way) against the scalar float32 reference on the widened row (for
 * float32, with random low bits): equal extremes (a zero may
 * differ in sign only) and the same finiteness, on every finite bfloat16
 * pattern shuffled in rows of every length class around the 64-value step,
 * on positive-only, negative-only, all-zero and constant rows, and with an
 * infinity or NaN at the start, the end, the middle and inside the last
 * (overlapping) step. */
static void
test_min_max_rows (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261208);
  const gsize lengths[] = { 1, 63, 64, 65, 95, 96, 127, 128, 129, 1000, 2048, 5632, 65000 };
  const guint16 bad[] = { 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81 };
  const gsize n_max = 65536;
  g_autofree guint16 *h = g_new (guint16, n_max);
  g_autofree float *f = g_new (float, n_max);
  guint checked = 0;

  for (guint data = 0; data < 6; data++)
    {
      gsize n = 0;

      for (guint32 b = 0; b < 0x10000 && n < n_max; b++)
        {
          guint16 v;
          if (data == 0)
            {
              if ((b & 0x7f80) == 0x7f80)
                continue;
              v = (guint16) b;   /* every finite pattern */
            }
          else
            {
              float x = (float) g_rand_double_range (rand, -3.0, 3.0);
              guint32 bits;
              memcpy (&bits, &x, 4);
              v = (guint16) (bits >> 16);
              if (data == 1)
                v &= 0x7fff;                                  /* positive only */
              else if (data == 2)
                v |= 0x8000;                                  /* negative only */
              else if (data == 3)
                v = g_rand_boolean (rand) ? 0x8000 : 0x0000;  /* signed zeros */
              else if (data == 4)
                v = 0x3f80;                                   /* constant 1.0 */
            }
          h[n++] = v;
        }
      for (gsize i = n - 1; i > 0; i--)
        {
          gsize j = (gsize) g_rand_int_range (rand, 0, (gint32) i + 1);
          guint16 t = h[i];
          h[i] = h[j];
          h[j] = t;
        }
      for (guint li = 0; li < G_N_ELEMENTS (lengths); li++)
        for (guint place = 0; place < 5; place++)
          {
            const gsize len = MIN (lengths[li], n);
            const gsize start = (gsize) g_rand_int_range (rand, 0, (gint32) (n - len + 1));
            guint16 *row = h + start;
            guint16 saved = 0;
            gsize at = 0;
            float lo, hi;
            gboolean fin;

            /* place 0: finite; else a non-finite value at the start, the
             * end, the middle, or 10 from the end (the last step's window) */
            if (place > 0)
              {
                at = place == 1 ? 0 : place == 2 ? len - 1 : place == 3 ? len / 2 : len > 10 ? len - 10 : 0;
                saved = row[at];
                row[at] = bad[g_rand_int_range (rand, 0, G_N_ELEMENTS (bad))];
              }
            g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, row, f, len));
            fin = quark_kernel_min_max_bf16 (row, len, &lo, &hi);
            check_row_extremes ("bfloat16", data, len, place, fin, lo, hi, f);
            /* float32: the same values with random low bits (not for
             * zeros and infinities) */
            for (gsize i = 0; i < len; i++)
              if ((row[i] & 0x7fff) != 0 && (row[i] & 0x7fff) != 0x7f80)
                {
                  guint32 bits;
                  memcpy (&bits, &f[i], 4);
                  bits |= g_rand_int (rand) & 0xffff;
                  memcpy (&f[i], &bits, 4);
                }
            fin = quark_kernel_min_max_f32 (f, len, &lo, &hi);
            check_row_extremes ("float32", data, len, place, fin, lo, hi, f);
            if (place > 0)
              row[at] = saved;
            checked++;
          }
    }
  g_assert_cmpuint (checked, ==, 6 * G_N_ELEMENTS (lengths) * 5);
}

/* The min/max observer's parameters, binary32, as numerics reference 1.2
 * gives them (fminf, fmaxf, rintf): the oracle of the group parameters */
static void
oracle_int_params (float min, float max, gboolean symmetric, gint32 qmin, gint32 qmax, float eps, float *scale,
                   float *zero_point)
{
  const float lo = fminf (min, 0.0f), hi = fmaxf (max, 0.0f), span = (float) ((gint64) qmax - qmin);

  if (symmetric)
    {
      *scale = fmaxf (fmaxf (-lo, hi) / (span / 2.0f), eps);
      *zero_point = 0.0f;
    }
  else
    {
      *scale = fmaxf ((hi - lo) / span, eps);
      *zero_point = fminf (fmaxf ((float) qmin - rintf (lo / *scale), (float) qmin), (float) qmax);
    }
}

/* quark_kernel_int_group_params_f32() against its scalar reference, bit for
 * bit for every input (NaN and infinities too), and against the oracle for
 * finite ones (by value: fmaxf () may give either zero): code ranges of 1 to 32 bits (the 32-bit ones take the
 * scalar path), every bfloat16 pattern as a minimum, exact ties of lo / s,
 * ranges that collapse to the smallest scale or overflow, group counts
 * that end in every tail length */
static void
test_int_group_params (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261207);
  const gint32 ranges[][2] = { { 0, 15 }, { -8, 7 }, { -7, 7 }, { 0, 255 }, { -128, 127 }, { 0, 1 }, { -2, 1 },
                               { 0, 65535 }, { -32768, 32767 }, { 0, 1 << 21 }, { G_MININT32, G_MAXINT32 },
                               { 0, G_MAXINT32 } };
  const float epsilons[] = { 0x1p-23f, 1e-8f, 0.0f };
  const float specials[] = { INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, 0x1p-149f, -0.0f };
  const gsize n_max = 0x10000 + 64;
  g_autofree float *mn = g_new (float, n_max), *mx = g_new (float, n_max);
  g_autofree float *s_vec = g_new (float, n_max), *z_vec = g_new (float, n_max);
  g_autofree float *s_ref = g_new (float, n_max), *z_ref = g_new (float, n_max);
  guint ties = 0;

  for (guint data = 0; data < 6; data++)
    {
      gsize n = 0;

      if (data == 0)
        /* every bfloat16 pattern as the minimum, a random maximum */
        for (guint32 b = 0; b < 0x10000; b++)
          {
            guint32 bits = b << 16;
            memcpy (&mn[n], &bits, 4);
            mx[n++] = (float) g_rand_double_range (rand, -1.0, 4.0);
          }
      else if (data == 1)
        /* random ranges across the signs */
        for (; n < 4099; n++)
          {
            mn[n] = (float) g_rand_double_range (rand, -3.0, 1.0);
            mx[n] = mn[n] + (float) g_rand_double_range (rand, 0.0, 4.0);
          }
      else if (data == 2)
        /* exact ties: lo = -(k + 1/2) 2^e, hi = (15 - k - 1/2) 2^e, so that
         * with codes 0..15 s = 2^e and lo / s = -(k + 1/2) */
        for (; n < 1024; n++)
          {
            gint k = g_rand_int_range (rand, 0, 15), e = g_rand_int_range (rand, -20, 20);
            mn[n] = ldexpf (-(k + 0.5f), e);
            mx[n] = ldexpf (15 - k - 0.5f, e);
          }
      else if (data == 3)
        /* ranges too small for a scale above eps, and equal ends */
        for (; n < 1000; n++)
          {
            mn[n] = ldexpf ((float) g_rand_double_range (rand, -1.0, 0.0), -g_rand_int_range (rand, 20, 140));
            mx[n] = n % 3 == 0 ? mn[n] : ldexpf ((float) g_rand_double_range (rand, 0.0, 1.0), -g_rand_int_range (rand, 20, 140));
          }
      else
        {
          /* specials (data 4) and huge ranges whose span overflows (data 5) */
          for (; n < 1000; n++)
            {
              mn[n] = (float) g_rand_double_range (rand, -2.0, 0.0);
              mx[n] = (float) g_rand_double_range (rand, 0.0, 2.0);
              if (data == 5)
                {
                  mn[n] *= 0x1p126f;
                  mx[n] *= 0x1p126f;
                }
              else if (n % 7 == 0)
                mn[n] = specials[g_rand_int_range (rand, 0, G_N_ELEMENTS (specials))];
              else if (n % 7 == 3)
                mx[n] = specials[g_rand_int_range (rand, 0, G_N_ELEMENTS (specials))];
            }
        }

      for (guint r = 0; r < G_N_ELEMENTS (ranges); r++)
        for (guint e = 0; e < G_N_ELEMENTS (epsilons); e++)
          for (guint sym = 0; sym < 2; sym++)
            {
              const gint32 qmin = ranges[r][0], qmax = ranges[r][1];

              if (data == 2 && !(qmin == 0 && qmax == 15))
                continue;
              /* the whole run, then every tail length at a shifted start */
              for (gsize len = 0; len <= 40; len++)
                {
                  const gsize count = len == 40 ? n : len, at = len == 40 ? 0 : len % 5;
                  if (at + count > n)
                    continue;
                  memset (s_vec, 0xa5, count * sizeof (float));
                  quark_kernel_int_group_params_f32 (mn + at, mx + at, count, sym, qmin, qmax, epsilons[e],
                                                     s_vec, z_vec);
                  quark_kernel_int_group_params_f32_scalar (mn + at, mx + at, count, sym, qmin, qmax,
                                                            epsilons[e], s_ref, z_ref);
                  for (gsize i = 0; i < count; i++)
                    {
                      float so, zo;
                      if (f32_bits (s_vec[i]) != f32_bits (s_ref[i]) || f32_bits (z_vec[i]) != f32_bits (z_ref[i]))
                        g_error ("data %u, codes %d..%d, eps %g, %s, group %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                                 ": min %a max %a: vector (%a, %a), scalar (%a, %a)",
                                 data, qmin, qmax, epsilons[e], sym ? "symmetric" : "asymmetric", i, count,
                                 mn[at + i], mx[at + i], s_vec[i], z_vec[i], s_ref[i], z_ref[i]);
                      if (!isfinite (mn[at + i]) || !isfinite (mx[at + i]))
                        continue;
                      oracle_int_params (mn[at + i], mx[at + i], sym, qmin, qmax, epsilons[e], &so, &zo);
                      if (so != s_ref[i] || zo != z_ref[i])   /* a zero scale (eps 0) of either sign */
                        g_error ("data %u, codes %d..%d, eps %g, %s: min %a max %a: kernel (%a, %a), oracle (%a, %a)",
                                 data, qmin, qmax, epsilons[e], sym ? "symmetric" : "asymmetric", mn[at + i],
                                 mx[at + i], s_ref[i], z_ref[i], so, zo);
                      if (data == 2 && !sym && len == 40)
                        {
                          /* the tie went to the even code */
                          g_assert_cmpfloat (so, ==, ldexpf (1.0f, (int) ilogbf (so)));
                          g_assert_cmpfloat (fmodf (-mn[at + i] / so - 0.5f, 1.0f), ==, 0.0f);
                          g_assert_cmpfloat (fmodf (zo, 2.0f), ==, 0.0f);
                          ties++;
                        }
                    }
                }
            }
    }
  /* every tie met in each epsilon's run */
  g_assert_cmpuint (ties, ==, 1024 * G_N_ELEMENTS (epsilons));
}

/* Row-of-groups kernels against one call per group on the scalar path. */
static void
test_group_kernels (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261127);
  const gsize sizes[] = { 0, 8, 24, 128, 200, 256, 1024, 4104, 8704 };
  const gsize group_sizes[] = { 1, 7, 8, 12, 32, 40, 64, 128, 100, 256, 512 };
  const QuarkDType dts[] = { QUARK_DTYPE_I8, QUARK_DTYPE_INT4, QUARK_DTYPE_UINT4, QUARK_DTYPE_U8, QUARK_DTYPE_I16 };

  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
    for (guint gs = 0; gs < G_N_ELEMENTS (group_sizes); gs++)
      for (guint rep = 0; rep < 3; rep++)
        {
          gsize n = sizes[s], group = group_sizes[gs], groups = (n + group - 1) / group;
          g_autofree guint16 *h = g_new (guint16, n + 1);
          g_autofree float *f = g_new (float, n + 1);
          g_autofree float *am_h = g_new (float, groups + 1);
          g_autofree float *am_f = g_new (float, groups + 1);
          g_autofree float *scales = g_new (float, groups + 1);
          g_autofree float *zps = g_new (float, groups + 1);

          for (gsize i = 0; i < n; i++)
            {
              float v = (float) g_rand_double_range (rand, -2.0, 2.0) * (float) (1 + i % 5);
              guint32 bits;
              memcpy (&bits, &v, 4);
              h[i] = (guint16) (bits >> 16);
            }
          if (rep == 2 && n > 3)
            h[n / 2] = 0x7f80;   /* +inf: not finite */
          g_assert_true (quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, f, n));
          /* per-group absolute maxima */
          {
            gboolean ok_h = quark_kernel_group_abs_max_bf16 (h, n, group, am_h);
            gboolean ok_f = quark_kernel_group_abs_max_f32 (f, n, group, am_f);
            gboolean all_finite = TRUE;
            for (gsize g = 0; g < groups; g++)
              {
                float expected;
                gsize len = MIN (group, n - g * group);
                all_finite &= quark_kernel_abs_max_f32 (f + g * group, len, &expected);
                g_assert_cmphex (f32_bits (am_h[g]), ==, f32_bits (expected));
                g_assert_cmphex (f32_bits (am_f[g]), ==, f32_bits (expected));
              }
            g_assert_cmpint (ok_h, ==, all_finite);
            g_assert_cmpint (ok_f, ==, all_finite);
            if (!all_finite)
              continue;
          }
          /* v: 0 multiply, 1 divide with zero points, 2 stochastic,
           * 3 divide without zero points (signed types) */
          for (guint d = 0; d < G_N_ELEMENTS (dts); d++)
            for (guint v = 0; v < 4; v++)
              {
                gsize es = quark_dtype_get_element_size (dts[d]);
                g_autofree guint8 *a = g_malloc0 ((n + 1) * es);
                g_autofree guint8 *b = g_malloc0 ((n + 1) * es);
                g_autofree guint8 *c = g_malloc0 ((n + 1) * es);
                QuarkKernelIntParams p = { 0 };
                gint64 lo, hi;
                gboolean with_zp = quark_dtype_is_signed (dts[d]) ? v == 1 : TRUE;

                quark_dtype_get_integer_range (dts[d], FALSE, &lo, &hi);
                p.qmin = (int32_t) lo;
                p.qmax = (int32_t) hi;
                p.divide = v == 1 || v == 3;
                p.round = v == 2 ? QUARK_ROUND_STOCHASTIC : QUARK_ROUND_HALF_EVEN;
                p.seed = 7;
                p.offset = 1000;
                for (gsize g = 0; g < groups; g++)
                  {
                    scales[g] = fmaxf (am_f[g] / (float) (hi - lo) * 2.0f, 1e-6f);
                    zps[g] = with_zp ? (float) ((lo + hi + 1) / 2 + g_rand_int_range (rand, -1, 2)) : 0.0f;
                  }
                g_assert_true (quark_kernel_quantize_int_groups_bf16 (h, n, group, &p, scales,
                                                                      with_zp ? zps : NULL, dts[d], a));
                g_assert_true (quark_kernel_quantize_int_groups_f32 (f, n, group, &p, scales,
                                                                     with_zp ? zps : NULL, dts[d], c));
                for (gsize g = 0; g < groups; g++)
                  {
                    QuarkKernelIntParams q = p;
                    gsize start = g * group;
                    q.scale = scales[g];
                    q.inv_scale = 1.0f / scales[g];
                    q.zero_point = with_zp ? zps[g] : 0.0f;
                    q.offset = p.offset + start;
                    g_assert_true (quark_kernel_quantize_int_f32_scalar (f + start, MIN (group, n - start), &q,
                                                                         dts[d], b + start * es));
                  }
                g_assert_cmpmem (a, n * es, b, n * es);
                g_assert_cmpmem (c, n * es, b, n * es);
                /* quantized and packed in one pass, both nibble orders */
                if (es == 1 && (dts[d] == QUARK_DTYPE_INT4 || dts[d] == QUARK_DTYPE_UINT4))
                  for (int reorder = 0; reorder < 2; reorder++)
                    {
                      g_autofree gint32 *w1 = g_new0 (gint32, n / 8 + 1);
                      g_autofree gint32 *w2 = g_new0 (gint32, n / 8 + 1);
                      g_assert_true (quark_kernel_pack_int4 ((const gint8 *) b, 1, n, reorder, w1));
                      g_assert_true (quark_kernel_quantize_pack_int4_groups_bf16 (h, n, group, &p, scales,
                                                                                  with_zp ? zps : NULL, dts[d],
                                                                                  reorder, w2));
                      g_assert_cmpmem (w1, n / 2, w2, n / 2);
                    }
              }
        }
  /* what the packed form refuses */
  {
    guint16 h[9] = { 0 };
    float sc = 1.0f;
    gint32 w[2];
    QuarkKernelIntParams p = { .qmin = -8, .qmax = 7 };
    g_assert_false (quark_kernel_quantize_pack_int4_groups_bf16 (h, 9, 8, &p, &sc, NULL, QUARK_DTYPE_INT4, FALSE, w));
    g_assert_false (quark_kernel_quantize_pack_int4_groups_bf16 (h, 8, 8, &p, &sc, NULL, QUARK_DTYPE_I8, FALSE, w));
    g_assert_false (quark_kernel_quantize_pack_int4_groups_bf16 (h, 8, 0, &p, &sc, NULL, QUARK_DTYPE_INT4, FALSE, w));
  }
}

/* ---- progress, cancellation, async ------------------------------------- */

typedef struct {
  guint64 last_done;
  guint64 total;
  guint count;
  GThread *thread;
} Progress;

static void
on_progress (QuarkModelQuantizer *q, guint64 done, guint64 total, const char *item, gpointer user_data)
{
  Progress *p = user_data;
  g_assert_cmpuint (done, >=, p->last_done);
  g_assert_cmpuint (done, <=, total);
  g_assert_nonnull (item);
  p->last_done = done;
  p->total = total;
  p->count++;
  p->thread = g_thread_self ();
}

static QuarkModel *
big_model (guint n_layers)
{
  QuarkModel *model = quark_model_new ();
  const gint64 shape[] = { 64, 64 };
  g_autofree float *w = g_new (float, 64 * 64);

  for (guint i = 0; i < 64 * 64; i++)
    w[i] = sinf ((float) i);
  for (guint l = 0; l < n_layers; l++)
    {
      g_autofree char *name = g_strdup_printf ("layers.%u.fc.weight", l);
      g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats (name, shape, 2, w, 64 * 64, NULL);
      quark_model_add_tensor (model, t, NULL);
    }
  return model;
}

static void
on_async_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  QuarkModel **out = user_data;
  g_autoptr(GError) error = NULL;

  *out = quark_model_quantizer_quantize_model_finish (QUARK_MODEL_QUANTIZER (source), result, &error);
  g_assert_no_error (error);
}

static void
test_async_progress (void)
{
  g_autoptr(QuarkQuantizationConfig) config = config_for ("{\"dtype\": \"int8\", \"qscheme\": \"per_channel\"}");
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, NULL);
  g_autoptr(QuarkModel) model = big_model (6);
  g_autoptr(QuarkModel) sync_out = NULL;
  QuarkModel *async_out = NULL;
  Progress progress = { 0 };

  g_signal_connect (quantizer, "progress", G_CALLBACK (on_progress), &progress);
  sync_out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, NULL);
  g_assert_cmpuint (progress.count, ==, 6);
  g_assert_cmpuint (progress.last_done, ==, 6 * 64 * 64);
  g_assert_cmpuint (progress.total, ==, 6 * 64 * 64);

  memset (&progress, 0, sizeof progress);
  quark_model_quantizer_quantize_model_async (quantizer, model, NULL, NULL, on_async_done, &async_out);
  while (async_out == NULL)
    g_main_context_iteration (NULL, TRUE);
  /* progress arrived in this thread, all of it */
  g_assert_cmpuint (progress.count, ==, 6);
  g_assert_true (progress.thread == g_thread_self ());
  g_assert_cmpuint (progress.last_done, ==, progress.total);

  /* the async result equals the sync one */
  for (guint i = 0; i < quark_model_get_n_tensors (sync_out); i++)
    {
      QuarkTensor *a = quark_model_get_tensor_at (sync_out, i);
      QuarkTensor *b = quark_model_get_tensor (async_out, quark_tensor_get_name (a));
      g_assert_nonnull (b);
      g_assert_true (g_bytes_equal (quark_tensor_get_data (a), quark_tensor_get_data (b)));
    }
  g_object_unref (async_out);
}

static void
cancel_on_progress (QuarkModelQuantizer *q, guint64 done, guint64 total, const char *item, gpointer user_data)
{
  g_cancellable_cancel (user_data);
}

static void
test_cancel (void)
{
  g_autoptr(QuarkQuantizationConfig) config = config_for ("{\"dtype\": \"int8\"}");
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, NULL);
  g_autoptr(QuarkModel) model = big_model (4);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) out = NULL;

  g_signal_connect (quantizer, "progress", G_CALLBACK (cancel_on_progress), cancellable);
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, cancellable, &error);
  g_assert_null (out);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* The three float32 orders of fake quantization (numerics.md "Where the
 * zero point goes"): x = 0.49999997 with s = 1, z = 65 rounds to 66 when z
 * is added first (AMD Quark, Brevitas) and to 65 when it is added after
 * rounding (PyTorch); x = 8.25 with s = fl(1.1) is an exact tie 7.5 -> 8
 * under division (Brevitas) but 8.25 * fl(1/s) = 7.4999995 -> 7 under the
 * reciprocal (AMD Quark, PyTorch). Expected: q - z per order. */
static void
test_fake_quantize_orders (void)
{
  static const struct { float x, s, z; int expect[3]; } rows[] = {
    /*                         quark brevitas torch */
    { 0x1.fffffep-2f, 1.0f, 65.0f, { 1, 1, 0 } },
    { 8.25f, 1.1f, 0.0f, { 7, 8, 7 } },
    { -8.25f, 1.1f, 0.0f, { 0, 0, 0 } },       /* below qmin = 0: clamped */
    { -8.25f, 1.1f, 100.0f, { -8, -8, -7 } },  /* fl (-7.4999995 + 100) = 92.5 -> 92 */
    /* clamping follows the order too: with z = 250, 10 / 1 -> 260 -> 255 */
    { 10.0f, 1.0f, 250.0f, { 5, 5, 5 } },
  };
  static const QuarkQuantOrder orders[] = { QUARK_QUANT_ORDER_QUARK, QUARK_QUANT_ORDER_BREVITAS,
                                            QUARK_QUANT_ORDER_TORCH };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    for (guint o = 0; o < G_N_ELEMENTS (orders); o++)
      {
        g_autoptr(GError) error = NULL;
        g_autoptr(QuarkTensorSpec) spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_U8,
                                                        "symmetric", FALSE, "quant-order", orders[o], NULL);
        const gint64 one[] = { 1 };
        g_autoptr(QuarkTensor) x = quark_tensor_new_from_floats ("x", one, 1, &rows[i].x, 1, NULL);
        g_autoptr(QuarkTensor) s = quark_tensor_new_from_floats ("s", NULL, 0, &rows[i].s, 1, NULL);
        g_autoptr(QuarkTensor) z = quark_tensor_new_from_floats ("z", NULL, 0, &rows[i].z, 1, NULL);
        g_autoptr(QuarkTensor) y = NULL;
        g_autofree float *v = NULL;
        gsize n;

        g_assert_cmpint (quark_tensor_spec_get_quant_order (spec), ==, orders[o]);
        y = quark_tensor_spec_fake_quantize (spec, x, s, z, &error);
        g_assert_no_error (error);
        v = quark_tensor_to_floats (y, &n, NULL);
        if (v[0] != (float) rows[i].expect[o] * rows[i].s)
          g_error ("row %u, order %u: %g, expected %g", i, o, v[0], (float) rows[i].expect[o] * rows[i].s);
      }
}

/* quark_gptq_update_weight() with a rounding of the test's own: to whole
 * numbers, noting which columns and rows were asked for */
typedef struct {
  guint calls[4];
  gsize rows_seen;
} RoundLog;

static void
round_whole (const float *values, gsize n, gsize column, gsize first_row, float *rounded, gpointer data)
{
  RoundLog *log = data;
  g_assert_cmpuint (column, <, 4);
  log->calls[column]++;
  log->rows_seen += n;
  g_assert_cmpuint (first_row + n, <=, 3);
  for (gsize i = 0; i < n; i++)
    rounded[i] = rintf (values[i]);
}

static QuarkTensor *
gram_of (const double *h, gsize n)
{
  gint64 shape[2] = { (gint64) n, (gint64) n };
  g_autoptr(GBytes) bytes = g_bytes_new (h, n * n * sizeof (double));
  return quark_tensor_new ("fc", QUARK_DTYPE_F64, shape, 2, bytes, NULL);
}

static void
test_gptq_update_weight (void)
{
  g_autoptr(GError) error = NULL;

  {
    /* H the identity, no damping: each column on its own, which is
     * round-to-nearest, and every column asked for once over all rows */
    double h[9] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 };
    float w[9] = { 0.4f, 1.6f, -2.2f, 0.51f, -0.49f, 7.9f, 3.0f, -1.5f, 0.2f };
    g_autoptr(QuarkTensor) gram = gram_of (h, 3);
    RoundLog log = { { 0 }, 0 };
    g_assert_true (quark_gptq_update_weight (w, 3, 3, gram, 0.0, 1, FALSE, round_whole, &log, &error));
    g_assert_no_error (error);
    g_assert_cmpfloat (w[0], ==, 0.0f);
    g_assert_cmpfloat (w[1], ==, 2.0f);
    g_assert_cmpfloat (w[2], ==, -2.0f);
    g_assert_cmpfloat (w[3], ==, 1.0f);
    g_assert_cmpfloat (w[5], ==, 8.0f);
    g_assert_cmpfloat (w[7], ==, -2.0f);   /* rintf: half to even */
    g_assert_cmpuint (log.rows_seen, ==, 9);
  }
  {
    /* H = [[1, a], [a, 1]], no damping: U = [[1/√(1−a²), −a/√(1−a²)], [0, 1]],
     * so column 0's error (w0 − q0) / U00 moves column 1 by a (w0 − q0).
     * w = [0.45, 0.3], a = 0.5: q0 = 0, w1 = 0.525, q1 = 1 (round-to-nearest: 0) */
    double h[4] = { 1, 0.5, 0.5, 1 };
    float w[2] = { 0.45f, 0.3f };
    g_autoptr(QuarkTensor) gram = gram_of (h, 2);
    RoundLog log = { { 0 }, 0 };
    g_assert_true (quark_gptq_update_weight (w, 1, 2, gram, 0.0, 2, FALSE, round_whole, &log, &error));
    g_assert_cmpfloat (w[0], ==, 0.0f);
    g_assert_cmpfloat (w[1], ==, 1.0f);
    /* in descending order of the diagonal column 1 comes first: with
     * H = [[1, a], [a, 4]] and w = [0.3, 0.45], q1 = 0 and column 0 moves by
     * a (w1 − q1) = 0.225, to 0.525: q0 = 1. In the columns' own order
     * column 1 moves by (a / 4)(w0 − q0) = 0.0375 only: both stay 0 */
    {
      double h2[4] = { 1, 0.5, 0.5, 4 };
      float w2[2] = { 0.3f, 0.45f }, w3[2] = { 0.3f, 0.45f };
      g_autoptr(QuarkTensor) gram2 = gram_of (h2, 2);
      g_assert_true (quark_gptq_update_weight (w2, 1, 2, gram2, 0.0, 1, TRUE, round_whole, &log, &error));
      g_assert_cmpfloat (w2[0], ==, 1.0f);
      g_assert_cmpfloat (w2[1], ==, 0.0f);
      g_assert_true (quark_gptq_update_weight (w3, 1, 2, gram2, 0.0, 1, FALSE, round_whole, &log, &error));
      g_assert_cmpfloat (w3[0], ==, 0.0f);
      g_assert_cmpfloat (w3[1], ==, 0.0f);
    }
  }
  {
    /* an input feature never non-zero (H[1][1] = 0): its weights become 0
     * before rounding, and the others are as with the identity */
    double h[4] = { 1, 0, 0, 0 };
    float w[2] = { 1.4f, 5.0f };
    g_autoptr(QuarkTensor) gram = gram_of (h, 2);
    RoundLog log = { { 0 }, 0 };
    g_assert_true (quark_gptq_update_weight (w, 1, 2, gram, 0.01, 1, FALSE, round_whole, &log, &error));
    g_assert_cmpfloat (w[0], ==, 1.0f);
    g_assert_cmpfloat (w[1], ==, 0.0f);
  }
  {
    /* a Gram matrix of the wrong size, or not positive definite */
    double h[4] = { 1, 2, 2, 1 };
    float w[2] = { 0, 0 };
    g_autoptr(QuarkTensor) gram = gram_of (h, 2);
    RoundLog log = { { 0 }, 0 };
    g_assert_false (quark_gptq_update_weight (w, 1, 3, gram, 0.0, 1, FALSE, round_whole, &log, &error));
    g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
    g_assert_false (quark_gptq_update_weight (w, 1, 2, gram, 0.0, 1, FALSE, round_whole, &log, &error));
    g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR);
  }
}

/* GPFQ with the test's rounding to whole numbers: column t becomes
 * w_t + Σ_{s<t} (H[t][s] / H[t][t]) (w_s − q_s), then rounded */
static void
test_gpfq_update_weight (void)
{
  g_autoptr(GError) error = NULL;
  {
    /* the identity: round-to-nearest */
    double h[4] = { 1, 0, 0, 1 };
    float w[4] = { 0.4f, 1.6f, -2.6f, 0.49f };
    g_autoptr(QuarkTensor) gram = gram_of (h, 2);
    RoundLog log = { { 0 }, 0 };
    g_assert_true (quark_gpfq_update_weight (w, 2, 2, gram, FALSE, round_whole, &log, &error));
    g_assert_no_error (error);
    g_assert_cmpfloat (w[0], ==, 0.0f);
    g_assert_cmpfloat (w[1], ==, 2.0f);
    g_assert_cmpfloat (w[2], ==, -3.0f);
    g_assert_cmpfloat (w[3], ==, 0.0f);
  }
  {
    /* H = [[1, 0.5], [0.5, 2]]: column 1 gains (0.5 / 2)(w0 − q0); with
     * act_order column 1 (H = 2) comes first and column 0 gains
     * (0.5 / 1)(w1 − q1) */
    double h[4] = { 1, 0.5, 0.5, 2 };
    float w[2] = { 0.45f, 0.4f }, v[2] = { 0.3f, 0.45f };
    g_autoptr(QuarkTensor) gram = gram_of (h, 2);
    RoundLog log = { { 0 }, 0 };
    g_assert_true (quark_gpfq_update_weight (w, 1, 2, gram, FALSE, round_whole, &log, &error));
    g_assert_cmpfloat (w[0], ==, 0.0f);
    g_assert_cmpfloat (w[1], ==, 1.0f);      /* 0.4 + 0.25 · 0.45 = 0.5125 */
    g_assert_true (quark_gpfq_update_weight (v, 1, 2, gram, TRUE, round_whole, &log, &error));
    g_assert_cmpfloat (v[1], ==, 0.0f);
    g_assert_cmpfloat (v[0], ==, 1.0f);      /* 0.3 + 0.5 · 0.45 = 0.525 */
  }
  {
    /* a feature never non-zero: its weights become 0 */
    double h[4] = { 1, 0, 0, 0 };
    float w[2] = { 1.4f, 5.0f };
    g_autoptr(QuarkTensor) gram = gram_of (h, 2);
    RoundLog log = { { 0 }, 0 };
    g_assert_true (quark_gpfq_update_weight (w, 1, 2, gram, FALSE, round_whole, &log, &error));
    g_assert_cmpfloat (w[0], ==, 1.0f);
    g_assert_cmpfloat (w[1], ==, 0.0f);
    g_assert_false (quark_gpfq_update_weight (w, 1, 3, gram, FALSE, round_whole, &log, &error));
    g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
  }
}

static void
round_nearest (const float *values, gsize n, gsize column, gsize first_row, float *rounded, gpointer data)
{
  for (gsize i = 0; i < n; i++)
    rounded[i] = rintf (values[i]);
}

/* GPFQ on a layer wide enough for several blocks of columns and tall
 * enough for two threads of several row tiles each, against the formula
 * taken one column at a time. The values are chosen so that every sum is
 * exact whatever its order (weights in eighths, L in powers of two, few
 * terms per column), so the codes must be equal, not close: a block's
 * product, the order within it, the tiles and the threads may regroup the
 * terms but lose none. Some features are dead (H[t][t] = 0), and with
 * act_order the diagonal (1, 2 or 4) sets the order, ties by index. */
static void
test_gpfq_blocks (void)
{
  enum { ROWS = 150, COLS = 300 };
  g_autofree double *h = g_new0 (double, COLS * COLS);
  g_autofree float *w0 = g_new (float, ROWS * COLS), *w = g_new (float, ROWS * COLS);
  g_autofree double *e = g_new (double, ROWS * COLS), *want = g_new (double, ROWS * COLS);
  GRand *rand = g_rand_new_with_seed (16);

  for (gsize i = 0; i < COLS; i++)
    h[i * COLS + i] = i % 37 == 5 ? 0.0 : (double) (1u << g_rand_int_range (rand, 0, 3));
  for (gsize i = 0; i < COLS; i++)
    for (int k = 0; k < 3; k++)
      {
        gsize j = (gsize) g_rand_int_range (rand, 0, COLS);
        /* H[i][j] / H[i][i] and H[j][i] / H[j][j] both powers of two of
         * at most 1/8, so that each column's terms sum to at most 3/8 of
         * the errors: they stay small */
        double v = (g_rand_boolean (rand) ? 1.0 : -1.0) / 8.0;
        if (j == i || h[i * COLS + i] == 0.0 || h[j * COLS + j] == 0.0)
          continue;
        h[i * COLS + j] = h[j * COLS + i] = v * MIN (h[i * COLS + i], h[j * COLS + j]) / 4.0;
      }
  for (gsize i = 0; i < ROWS * COLS; i++)
    w0[i] = (float) g_rand_int_range (rand, -32, 33) / 8.0f;

  for (int act_order = 0; act_order < 2; act_order++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(QuarkTensor) gram = gram_of (h, COLS);
      gsize perm[COLS];

      /* the order: descending diagonal (ties by index), or the columns' own */
      for (gsize i = 0; i < COLS; i++)
        perm[i] = i;
      for (gsize i = 0; act_order && i < COLS; i++)
        for (gsize k = i + 1; k < COLS; k++)
          if (h[perm[k] * COLS + perm[k]] > h[perm[i] * COLS + perm[i]] ||
              (h[perm[k] * COLS + perm[k]] == h[perm[i] * COLS + perm[i]] && perm[k] < perm[i]))
            {
              gsize x = perm[i];
              perm[i] = perm[k];
              perm[k] = x;
            }
      for (gsize r = 0; r < ROWS; r++)
        for (gsize t = 0; t < COLS; t++)
          {
            gsize c = perm[t];
            double d = h[c * COLS + c], arg = d == 0.0 ? 0.0 : w0[r * COLS + c];
            for (gsize s = 0; d != 0.0 && s < t; s++)
              arg += h[c * COLS + perm[s]] / d * e[r * COLS + s];
            want[r * COLS + c] = rint (arg);
            e[r * COLS + t] = w0[r * COLS + c] - want[r * COLS + c];
          }

      memcpy (w, w0, sizeof (float) * ROWS * COLS);
      g_assert_true (quark_gpfq_update_weight (w, ROWS, COLS, gram, act_order, round_nearest, NULL, &error));
      g_assert_no_error (error);
      for (gsize i = 0; i < ROWS * COLS; i++)
        if (w[i] != (float) want[i])
          g_error ("act_order %d, row %zu, column %zu: %g, not %g", act_order, i / COLS, i % COLS, w[i], want[i]);
    }
  g_rand_free (rand);
}

/* NVFP4's two-level scales, by hand: global g = 2688 / amax (1 for zeros),
 * group code E4M3 (g · amax / 6) clamped to 448 and rounded to nearest
 * even, 0 replaced by 0.125, effective scale E4M3 value / g */
static void
test_nvfp4_scales (void)
{
  guint8 c = 0;

  g_assert_cmpfloat (quark_kernel_nvfp4_global_scale (0.0f), ==, 1.0f);
  g_assert_cmpfloat (quark_kernel_nvfp4_global_scale (NAN), ==, 1.0f);
  g_assert_cmpfloat (quark_kernel_nvfp4_global_scale (2688.0f), ==, 1.0f);
  g_assert_cmpfloat (quark_kernel_nvfp4_global_scale (6.0f), ==, 448.0f);
  /* a group of zeros: 0.125 (E4M3 0x20), not a zero scale */
  g_assert_cmpfloat (quark_kernel_nvfp4_group_scale (0.0f, 1.0f, &c), ==, 0.125f);
  g_assert_cmpuint (c, ==, 0x20);
  /* beyond 448: clamped (0x7E); 448 / 448 = 1 */
  g_assert_cmpfloat (quark_kernel_nvfp4_group_scale (6.0f * 896.0f, 1.0f, &c), ==, 448.0f);
  g_assert_cmpuint (c, ==, 0x7E);
  g_assert_cmpfloat (quark_kernel_nvfp4_group_scale (6.0f, 448.0f, &c), ==, 1.0f);
  g_assert_cmpuint (c, ==, 0x7E);
  /* 1.0625 lies halfway between 1 (0x38) and 1.125 (0x39): the even code */
  g_assert_cmpfloat (quark_kernel_nvfp4_group_scale (6.375f, 1.0f, &c), ==, 1.0f);
  g_assert_cmpuint (c, ==, 0x38);
  g_assert_cmpfloat (quark_kernel_nvfp4_scale_to_f32 (0x39, 2.0f), ==, 0.5625f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/quantize/q1-int8-per-tensor", test_q1_int8_per_tensor);
  g_test_add_func ("/quantize/q2-int4-per-tensor", test_q2_int4_per_tensor);
  g_test_add_func ("/quantize/q3-asymmetric", test_q3_asymmetric);
  g_test_add_func ("/quantize/per-channel", test_per_channel);
  g_test_add_func ("/quantize/q6-zero-point-order", test_q6_order);
  g_test_add_func ("/quantize/fake-quantize-orders", test_fake_quantize_orders);
  g_test_add_func ("/quantize/nan-rejected", test_nan_rejected);
  g_test_add_func ("/quantize/all-zero-and-empty", test_all_zero_and_empty);
  g_test_add_func ("/quantize/passthrough-and-exclude", test_passthrough_and_exclude);
  g_test_add_func ("/quantize/static-activation", test_static_activation);
  g_test_add_func ("/backend/int4-rows-layout", test_backend_int4_rows_layout);
  g_test_add_func ("/backend/fp8-q5", test_backend_fp8_q5);
  g_test_add_func ("/backend/mx-block-a", test_backend_mx_block_a);
  g_test_add_func ("/backend/fp4-e5m3", test_backend_fp4_e5m3);
  g_test_add_func ("/backend/pow2", test_backend_pow2);
  g_test_add_func ("/backend/int-per-group", test_backend_int_per_group);
  g_test_add_func ("/backend/per-block", test_backend_per_block);
  g_test_add_func ("/backend/int32-and-casts", test_backend_int32_and_casts);
  g_test_add_func ("/backend/rejects-bad-spec", test_backend_rejects_bad_spec);
  g_test_add_func ("/kernels/rounding-modes", test_rounding_modes);
  g_test_add_func ("/kernels/stochastic-rounding", test_stochastic_rounding);
  g_test_add_func ("/kernels/pow2-scales", test_pow2_scales);
  g_test_add_func ("/kernels/vector-matches-scalar/quantize", test_vector_matches_scalar_quantize);
  g_test_add_func ("/kernels/vector-matches-scalar/min-max", test_vector_matches_scalar_min_max);
  g_test_add_func ("/kernels/vector-matches-scalar/sq-error", test_vector_matches_scalar_sq_error);
  g_test_add_func ("/kernels/abs-max-every-alignment", test_abs_max_every_alignment);
  g_test_add_func ("/kernels/bf16-match-widened", test_bf16_kernels_match_widened);
  g_test_add_func ("/kernels/groups", test_group_kernels);
  g_test_add_func ("/kernels/group-min-max", test_group_min_max);
  g_test_add_func ("/kernels/group-stats-every-alignment", test_group_stats_every_alignment);
  g_test_add_func ("/kernels/int-group-params", test_int_group_params);
  g_test_add_func ("/kernels/min-max", test_min_max_rows);
  g_test_add_func ("/quantize/bf16-weights-as-f32", test_bf16_weights_as_f32);
  g_test_add_func ("/quantizer/async-progress", test_async_progress);
  g_test_add_func ("/quantizer/cancel", test_cancel);
  g_test_add_func ("/algorithms/gptq-update-weight", test_gptq_update_weight);
  g_test_add_func ("/algorithms/gpfq-blocks", test_gpfq_blocks);
  g_test_add_func ("/kernels/nvfp4-scales", test_nvfp4_scales);
  g_test_add_func ("/algorithms/gpfq-update-weight", test_gpfq_update_weight);

  return g_test_run ();
}
