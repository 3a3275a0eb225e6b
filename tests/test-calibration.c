/* test-calibration.c: calibration sessions, their observers and statistics
 * files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* A deterministic standard normal sample (Box-Muller over a fixed LCG). */
static void
fill_normal (float *x, gsize n, guint32 seed)
{
  GRand *rand = g_rand_new_with_seed (seed);
  for (gsize i = 0; i < n; i++)
    {
      double u1 = g_rand_double_range (rand, 1e-12, 1.0), u2 = g_rand_double (rand);
      x[i] = (float) (sqrt (-2 * log (u1)) * cos (2 * G_PI * u2));
    }
  g_rand_free (rand);
}

static QuarkTensorSpec *
activation_spec (QuarkDType dtype, gboolean symmetric, QuarkObserver observer, double percentile)
{
  return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", dtype, "qscheme", QUARK_QSCHEME_PER_TENSOR,
                       "symmetric", symmetric, "observer", observer, "percentile", percentile, NULL);
}

static void
observe (QuarkCalibration *c, const char *layer, QuarkRole role, const float *x, gsize n)
{
  g_autoptr(GError) error = NULL;
  const gint64 shape[] = { (gint64) n };
  g_assert_true (quark_calibration_observe_floats (c, layer, role, x, n, shape, 1, &error));
  g_assert_no_error (error);
}

static void
range (QuarkCalibration *c, const char *layer, QuarkTensorSpec *spec, float *lo, float *hi)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (quark_calibration_compute_range (c, layer, QUARK_ROLE_INPUT, spec, lo, hi, &error));
  g_assert_no_error (error);
}

/* ---- the streaming histogram -------------------------------------------------- */

static void
test_histogram_order_independent (void)
{
  enum { N = 6000 };
  g_autofree float *x = g_new (float, N);
  g_autofree QuarkKernelHist *a = g_new (QuarkKernelHist, 1);
  g_autofree QuarkKernelHist *b = g_new (QuarkKernelHist, 1);
  g_autofree QuarkKernelHist *c = g_new (QuarkKernelHist, 1);
  g_autofree QuarkKernelHist *d = g_new (QuarkKernelHist, 1);

  fill_normal (x, N, 1);
  /* growing magnitudes force the range to double between batches */
  for (gsize i = 0; i < N; i++)
    x[i] *= (float) (1 << (i / 1000));
  x[17] = 0.0f;
  x[18] = -0.0f;
  quark_kernel_hist_init (a);
  quark_kernel_hist_init (b);
  quark_kernel_hist_init (c);
  quark_kernel_hist_init (d);
  quark_kernel_hist_add (a, x, N);                      /* one pass */
  for (gsize i = 0; i < N; i += 1000)                    /* batches, ascending range */
    quark_kernel_hist_add (b, x + i, 1000);
  for (gssize i = N - 700; i > -700; i -= 700)           /* other batches, descending */
    quark_kernel_hist_add (c, x + MAX (i, 0), (gsize) (i < 0 ? i + 700 : 700));
  /* two halves merged */
  quark_kernel_hist_add (d, x, 2500);
  {
    g_autofree QuarkKernelHist *e = g_new (QuarkKernelHist, 1);
    quark_kernel_hist_init (e);
    quark_kernel_hist_add (e, x + 2500, N - 2500);
    quark_kernel_hist_merge (e, d);
    memcpy (d, e, sizeof *d);
  }
  g_assert_cmpint (memcmp (a, b, sizeof *a), ==, 0);
  g_assert_cmpint (memcmp (a, c, sizeof *a), ==, 0);
  g_assert_cmpint (memcmp (a, d, sizeof *a), ==, 0);
  g_assert_cmpuint (a->zeros, ==, 2);
}

static int
compare_floats (gconstpointer p, gconstpointer q)
{
  float x = *(const float *) p, y = *(const float *) q;
  return (x > y) - (x < y);
}

static void
test_histogram_percentile (void)
{
  enum { N = 20000 };
  g_autofree float *x = g_new (float, N);
  g_autofree float *s = g_new (float, N);
  g_autofree QuarkKernelHist *h = g_new (QuarkKernelHist, 1);
  const double qs[] = { 50, 90, 99, 99.9, 100 };

  fill_normal (x, N, 2);
  quark_kernel_hist_init (h);
  quark_kernel_hist_add (h, x, N);
  for (gsize i = 0; i < N; i++)
    s[i] = fabsf (x[i]);
  qsort (s, N, sizeof *s, compare_floats);
  for (guint i = 0; i < G_N_ELEMENTS (qs); i++)
    {
      /* the exact statistic, by sorting: the value at rank q % of N */
      gsize k = (gsize) ceil (qs[i] / 100 * N);
      double exact = s[MAX (k, 1) - 1];
      double got = quark_kernel_hist_abs_percentile (h, qs[i]);
      g_assert_cmpfloat (fabs (got - exact), <=, quark_kernel_hist_bin_width (h));
    }
  /* the interval: as much mass below lo as above hi */
  {
    double lo, hi;
    gsize below = 0, above = 0;
    quark_kernel_hist_interval (h, 99, &lo, &hi);
    for (gsize i = 0; i < N; i++)
      {
        below += x[i] < lo;
        above += x[i] > hi;
      }
    g_assert_cmpfloat (fabs ((double) below - 0.005 * N), <=, 0.002 * N);
    g_assert_cmpfloat (fabs ((double) above - 0.005 * N), <=, 0.002 * N);
  }
}

/* ---- observers through a session -------------------------------------------------- */

static void
test_brevitas_running_mean (void)
{
  /* numerics.md 3.4: per-batch abs-percentile statistics 2 and 4, mean 3 */
  g_autoptr(QuarkCalibration) c = quark_calibration_new ();
  g_autoptr(QuarkTensorSpec) spec = activation_spec (QUARK_DTYPE_I8, TRUE, QUARK_OBSERVER_PERCENTILE, 99.999);
  const float b1[] = { 1, -2 }, b2[] = { 4, 0.5f };
  float lo, hi;

  observe (c, "fc", QUARK_ROLE_INPUT, b1, 2);
  observe (c, "fc", QUARK_ROLE_INPUT, b2, 2);
  range (c, "fc", spec, &lo, &hi);
  g_assert_cmpfloat (hi, ==, 3.0f);
  g_assert_cmpfloat (lo, ==, -3.0f);
  /* asymmetric: the running means of the interval ends, (-2 + 0.5)/2 and (1 + 4)/2 */
  g_object_set (spec, "symmetric", FALSE, NULL);
  range (c, "fc", spec, &lo, &hi);
  g_assert_cmpfloat (lo, ==, -0.75f);
  g_assert_cmpfloat (hi, ==, 2.5f);
}

static void
test_moving_average (void)
{
  g_autoptr(QuarkCalibration) c = quark_calibration_new ();
  g_autoptr(QuarkTensorSpec) spec = activation_spec (QUARK_DTYPE_I8, TRUE,
                                                     QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX, 99.999);
  const float b1[] = { -1, 2 }, b2[] = { -3, 4 }, b3[] = { 0.5f, 1 };
  volatile float emin = -1, emax = 2;
  float lo, hi;

  observe (c, "fc", QUARK_ROLE_INPUT, b1, 2);
  observe (c, "fc", QUARK_ROLE_INPUT, b2, 2);
  observe (c, "fc", QUARK_ROLE_INPUT, b3, 2);
  /* min += 0.01 (batch min - min), in float32 */
  emin = emin + 0.01f * (-3.0f - emin);
  emax = emax + 0.01f * (4.0f - emax);
  emin = emin + 0.01f * (0.5f - emin);
  emax = emax + 0.01f * (1.0f - emax);
  range (c, "fc", spec, &lo, &hi);
  g_assert_cmpfloat (lo, ==, emin);
  g_assert_cmpfloat (hi, ==, emax);
  g_assert_true (quark_calibration_get_min_max (c, "fc", QUARK_ROLE_INPUT, &lo, &hi));
  g_assert_cmpfloat (lo, ==, -3.0f);
  g_assert_cmpfloat (hi, ==, 4.0f);
}

/* The true squared error of symmetric b-bit fake quantization of @x with
 * the range [-t, t], as the grid search models it (s = 2t / (2^b - 1)). */
static double
true_mse (const float *x, gsize n, double t, int bits)
{
  double qmax = (1 << (bits - 1)) - 1, s = 2 * t / (2 * qmax + 1), err = 0;
  for (gsize i = 0; i < n; i++)
    {
      double q = fmin (fmax (nearbyint (x[i] / s), -qmax - 1), qmax) * s;
      err += (q - x[i]) * (q - x[i]);
    }
  return err;
}

static void
test_mse_and_kl (void)
{
  enum { N = 20000 };
  g_autoptr(QuarkCalibration) c = quark_calibration_new ();
  g_autoptr(QuarkTensorSpec) mse = activation_spec (QUARK_DTYPE_I8, TRUE, QUARK_OBSERVER_MSE, 99.999);
  g_autoptr(QuarkTensorSpec) kl = activation_spec (QUARK_DTYPE_I8, TRUE, QUARK_OBSERVER_KL, 99.999);
  g_autoptr(QuarkTensorSpec) fp8 = activation_spec (QUARK_DTYPE_F8_E4M3, TRUE, QUARK_OBSERVER_KL, 99.999);
  g_autofree float *x = g_new (float, N);
  g_autoptr(GError) error = NULL;
  float lo, hi;

  /* four outliers at 60 stretch a normal sample */
  fill_normal (x, N, 3);
  x[0] = 60;
  x[1] = -60;
  x[2] = 59;
  x[3] = -58;
  observe (c, "fc", QUARK_ROLE_INPUT, x, N);

  /* An independent check: the chosen range's true error is within 10 % of
   * the best over the same 2048 candidates, each fake-quantized exactly.
   * With 8 bits keeping the four outliers is cheaper than clipping them;
   * with 4 bits clipping wins. */
  for (int bits = 4; bits <= 8; bits += 4)
    {
      g_autoptr(QuarkTensorSpec) spec = activation_spec (bits == 8 ? QUARK_DTYPE_I8 : QUARK_DTYPE_INT4, TRUE,
                                                         QUARK_OBSERVER_MSE, 99.999);
      double best = INFINITY, chosen;
      range (c, "fc", spec, &lo, &hi);
      g_assert_cmpfloat (lo, ==, -hi);
      for (int k = 1; k <= 2048; k++)
        best = fmin (best, true_mse (x, N, 60.0 * k / 2048, bits));
      chosen = true_mse (x, N, hi, bits);
      g_assert_cmpfloat (chosen, <=, 1.10 * best);
      if (bits == 4)
        {
          g_assert_cmpfloat (hi, <, 10.0f);
          g_assert_cmpfloat (chosen, <, 0.75 * true_mse (x, N, 60.0, bits));   /* below min/max's */
        }
    }

  range (c, "fc", kl, &lo, &hi);
  g_assert_cmpfloat (hi, >, 2.0f);
  g_assert_cmpfloat (hi, <, 60.0f);
  g_assert_cmpfloat (lo, ==, -hi);

  g_assert_false (quark_calibration_compute_range (c, "fc", QUARK_ROLE_INPUT, fp8, &lo, &hi, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME);
  g_assert_nonnull (strstr (error->message, "layer fc:"));
  g_clear_error (&error);

  /* uniform data has nothing to clip: both keep nearly the whole range */
  {
    g_autoptr(QuarkCalibration) u = quark_calibration_new ();
    for (gsize i = 0; i < N; i++)
      x[i] = -1.0f + 2.0f * (float) i / (N - 1);
    observe (u, "fc", QUARK_ROLE_INPUT, x, N);
    range (u, "fc", mse, &lo, &hi);
    g_assert_cmpfloat (hi, >=, 0.95f);
    range (u, "fc", kl, &lo, &hi);
    g_assert_cmpfloat (hi, >=, 0.9f);
  }
}

static void
test_errors (void)
{
  g_autoptr(QuarkCalibration) c = quark_calibration_new ();
  g_autoptr(QuarkTensorSpec) spec = activation_spec (QUARK_DTYPE_I8, TRUE, QUARK_OBSERVER_MIN_MAX, 99.999);
  g_autoptr(GError) error = NULL;
  const float bad[] = { 1, NAN };
  const gint64 shape[] = { 3 };
  float lo, hi;

  g_assert_false (quark_calibration_observe_floats (c, "fc", QUARK_ROLE_INPUT, bad, 2, NULL, 0, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR);
  g_assert_nonnull (strstr (error->message, "layer fc:"));
  g_clear_error (&error);
  g_assert_false (quark_calibration_observe_floats (c, "fc", QUARK_ROLE_WEIGHT, bad, 1, NULL, 0, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (quark_calibration_observe_floats (c, "fc", QUARK_ROLE_INPUT, bad, 1, shape, 1, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (quark_calibration_compute_range (c, "fc", QUARK_ROLE_INPUT, spec, &lo, &hi, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION);
  g_assert_nonnull (strstr (error->message, "layer fc:"));
  g_assert_cmpuint (quark_calibration_get_n_batches (c, "fc", QUARK_ROLE_INPUT), ==, 0);
}

/* ---- sessions for a config ------------------------------------------------------------ */

static QuarkQuantizationConfig *
config_from (const char *json)
{
  g_autoptr(GError) error = NULL;
  QuarkQuantizationConfig *config = quark_registry_config_from_string (quark_registry_get_default (), json, -1, &error);
  g_assert_no_error (error);
  return config;
}

static QuarkModel *
one_linear (const char *name, gint64 out_features, gint64 in_features)
{
  QuarkModel *model = quark_model_new ();
  g_autofree float *w = g_new0 (float, out_features * in_features);
  const gint64 shape[] = { out_features, in_features };
  g_autoptr(QuarkTensor) t = NULL;

  for (gint64 i = 0; i < out_features * in_features; i++)
    w[i] = (float) ((i % 7) - 3) / 8.0f;
  t = quark_tensor_new_from_floats (name, shape, 2, w, (gsize) (out_features * in_features), NULL);
  quark_model_add_tensor (model, t, NULL);
  return model;
}

static void
test_per_channel_session (void)
{
  g_autoptr(QuarkQuantizationConfig) config = config_from (
    "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\", \"qscheme\": \"per_channel\"},"
    " \"input_tensors\": {\"dtype\": \"int8\", \"qscheme\": \"per_channel\", \"ch_axis\": -1}}}");
  g_autoptr(QuarkModel) model = one_linear ("fc.weight", 4, 3);
  g_autoptr(QuarkCalibration) c = quark_calibration_new_for_config (config, model);
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, NULL);
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(GError) error = NULL;
  const float b1[] = { 1, -2, 0.5f, 3, 0, -0.25f }, b2[] = { -4, 1, 0.75f }, b3[] = { 1, 2, 3, 4 };
  const gint64 s1[] = { 2, 3 }, s2[] = { 1, 3 }, s3[] = { 1, 4 };
  g_autofree float *mins = NULL, *maxs = NULL;
  gsize n = 0;
  int axis;
  QuarkTensor *scale;
  const float *sv;

  g_assert_true (quark_calibration_observe_floats (c, "fc", QUARK_ROLE_INPUT, b1, 6, s1, 2, &error));
  g_assert_true (quark_calibration_observe_floats (c, "fc", QUARK_ROLE_INPUT, b2, 3, s2, 2, &error));
  g_assert_no_error (error);
  g_assert_false (quark_calibration_observe_floats (c, "fc", QUARK_ROLE_INPUT, b3, 4, s3, 2, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR);
  g_clear_error (&error);

  g_assert_true (quark_calibration_get_channel_min_max (c, "fc", QUARK_ROLE_INPUT, &axis, &mins, &maxs, &n));
  g_assert_cmpint (axis, ==, 1);
  g_assert_cmpuint (n, ==, 3);
  g_assert_cmpfloat (mins[0], ==, -4.0f);
  g_assert_cmpfloat (maxs[0], ==, 3.0f);
  g_assert_cmpfloat (mins[1], ==, -2.0f);
  g_assert_cmpfloat (maxs[1], ==, 1.0f);
  g_assert_cmpfloat (mins[2], ==, -0.25f);
  g_assert_cmpfloat (maxs[2], ==, 0.75f);

  out = quark_model_quantizer_quantize_model (quantizer, model, c, NULL, &error);
  g_assert_no_error (error);
  scale = quark_model_get_tensor (out, "fc.input_scale");
  g_assert_nonnull (scale);
  g_assert_cmpint (quark_tensor_get_dim (scale, 0), ==, 3);
  sv = quark_tensor_peek_data (scale, NULL);
  /* Quark's symmetric int8: amax / 127.5 per channel */
  g_assert_cmpfloat (sv[0], ==, 4.0f / 127.5f);
  g_assert_cmpfloat (sv[1], ==, 2.0f / 127.5f);
  g_assert_cmpfloat (sv[2], ==, 0.75f / 127.5f);
}

static void
test_static_scales_through_the_backend (void)
{
  /* an fp8 KV-cache output and an int8 input, calibrated with observers
   * named by AMD Quark's config */
  g_autoptr(QuarkQuantizationConfig) config = config_from (
    "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\"},"
    " \"input_tensors\": {\"dtype\": \"int8\", \"observer_cls\": \"PerTensorMSEObserver\"}},"
    " \"layer_quant_config\": {\"*k_proj\": {\"weight\": {\"dtype\": \"int8\"},"
    "   \"input_tensors\": {\"dtype\": \"int8\", \"observer_cls\": \"PerTensorEntropyObserver\"},"
    "   \"output_tensors\": {\"dtype\": \"fp8_e4m3\"}}}}");
  g_autoptr(QuarkModel) model = one_linear ("attn.k_proj.weight", 4, 3);
  g_autoptr(QuarkCalibration) c = quark_calibration_new_for_config (config, model);
  g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, NULL);
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(QuarkTensorSpec) kl = activation_spec (QUARK_DTYPE_I8, TRUE, QUARK_OBSERVER_KL, 99.999);
  g_autoptr(GError) error = NULL;
  g_autofree float *x = g_new (float, 3000);
  const float y[] = { -1.5f, 7.0f, 2.0f };
  float lo, hi;

  fill_normal (x, 3000, 4);
  x[0] = 40;
  observe (c, "attn.k_proj", QUARK_ROLE_INPUT, x, 3000);
  observe (c, "attn.k_proj", QUARK_ROLE_OUTPUT, y, 3);
  out = quark_model_quantizer_quantize_model (quantizer, model, c, NULL, &error);
  g_assert_no_error (error);
  range (c, "attn.k_proj", kl, &lo, &hi);
  g_assert_cmpfloat (((const float *) quark_tensor_peek_data (quark_model_get_tensor (out, "attn.k_proj.input_scale"), NULL))[0],
                     ==, hi / 127.5f);
  g_assert_cmpfloat (((const float *) quark_tensor_peek_data (quark_model_get_tensor (out, "attn.k_proj.output_scale"), NULL))[0],
                     ==, 7.0f / 448.0f);
  g_assert_null (quark_model_get_tensor (out, "attn.k_proj.output_zero_point"));

  /* export.min_kv_scale bounds the scales of the kv_cache_group layers */
  {
    g_autoptr(QuarkQuantizationConfig) kv = config_from (
      "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\"}},"
      " \"layer_quant_config\": {\"*k_proj\": {\"weight\": {\"dtype\": \"int8\"},"
      "   \"output_tensors\": {\"dtype\": \"fp8_e4m3\"}}},"
      " \"export\": {\"kv_cache_group\": [\"*k_proj\"], \"min_kv_scale\": 0.5}}");
    g_autoptr(QuarkModelQuantizer) q = quark_registry_new_quantizer (quark_registry_get_default (), kv, NULL);
    g_autoptr(QuarkModel) o = quark_model_quantizer_quantize_model (q, model, c, NULL, &error);
    g_autoptr(JsonNode) json = quark_quantization_config_to_json (kv);
    g_assert_no_error (error);
    g_assert_cmpfloat (((const float *) quark_tensor_peek_data (quark_model_get_tensor (o, "attn.k_proj.output_scale"), NULL))[0],
                       ==, 0.5f);
    g_assert_cmpfloat (json_object_get_double_member (json_object_get_object_member (json_node_get_object (json), "export"),
                                                      "min_kv_scale"), ==, 0.5);
  }
}

/* ---- statistics files --------------------------------------------------------------------- */

static void
assert_same_ranges (QuarkCalibration *a, QuarkCalibration *b, const char *layer)
{
  const QuarkObserver observers[] = { QUARK_OBSERVER_MIN_MAX, QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX,
                                      QUARK_OBSERVER_PERCENTILE, QUARK_OBSERVER_HISTOGRAM_PERCENTILE,
                                      QUARK_OBSERVER_MSE, QUARK_OBSERVER_KL };
  for (guint i = 0; i < G_N_ELEMENTS (observers); i++)
    for (int sym = 0; sym < 2; sym++)
      {
        g_autoptr(QuarkTensorSpec) spec = activation_spec (sym ? QUARK_DTYPE_I8 : QUARK_DTYPE_U8, sym,
                                                           observers[i], 99.999);
        float alo, ahi, blo, bhi;
        range (a, layer, spec, &alo, &ahi);
        range (b, layer, spec, &blo, &bhi);
        g_assert_cmpfloat (alo, ==, blo);
        g_assert_cmpfloat (ahi, ==, bhi);
      }
}

static void
test_save_load (void)
{
  g_autoptr(QuarkCalibration) c = quark_calibration_new ();
  g_autoptr(QuarkCalibration) loaded = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("quark-calib-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "stats.json", NULL);
  g_autofree char *path2 = g_build_filename (dir, "again.json", NULL);
  g_autofree char *text1 = NULL, *text2 = NULL;
  g_autofree float *x = g_new (float, 5000);
  g_auto(GStrv) layers = NULL;

  for (int b = 0; b < 4; b++)
    {
      fill_normal (x, 5000, 10 + b);
      observe (c, "model.layers.0.mlp.up_proj", QUARK_ROLE_INPUT, x, 5000);
      for (gsize i = 0; i < 5000; i++)
        x[i] = fmaxf (x[i], 0.0f) * 3;
      observe (c, "model.layers.0.mlp.down_proj", QUARK_ROLE_INPUT, x, 5000);
      observe (c, "model.layers.0.self_attn.k_proj", QUARK_ROLE_OUTPUT, x, 100);
    }
  g_assert_true (quark_calibration_save (c, path, &error));
  g_assert_no_error (error);
  loaded = quark_calibration_load (path, &error);
  g_assert_no_error (error);
  assert_same_ranges (c, loaded, "model.layers.0.mlp.up_proj");
  assert_same_ranges (c, loaded, "model.layers.0.mlp.down_proj");
  g_assert_cmpuint (quark_calibration_get_n_batches (loaded, "model.layers.0.mlp.up_proj", QUARK_ROLE_INPUT), ==, 4);
  layers = quark_calibration_list_layers (loaded, QUARK_ROLE_INPUT);
  g_assert_cmpuint (g_strv_length (layers), ==, 2);
  g_assert_cmpstr (layers[0], ==, "model.layers.0.mlp.down_proj");
  g_clear_pointer (&layers, g_strfreev);
  layers = quark_calibration_list_layers (loaded, QUARK_ROLE_OUTPUT);
  g_assert_cmpstr (layers[0], ==, "model.layers.0.self_attn.k_proj");

  /* saving what was loaded writes the same bytes */
  g_assert_true (quark_calibration_save (loaded, path2, &error));
  g_assert_true (g_file_get_contents (path, &text1, NULL, NULL));
  g_assert_true (g_file_get_contents (path2, &text2, NULL, NULL));
  g_assert_cmpstr (text1, ==, text2);
  g_unlink (path);
  g_unlink (path2);
  g_rmdir (dir);
}

typedef struct {
  const char *name;
  const char *from;      /* replaced in a valid file (first occurrence) */
  const char *to;
  int code;
  const char *needle;    /* in the message, after the file name */
} BadFile;

static const BadFile bad_files[] = {
  { "not-json", "{\"format\"", "[\"format\"", QUARK_ERROR_INVALID_FILE, "" },
  { "wrong-format", "\"libquark-calibration\"", "\"quark-config\"", QUARK_ERROR_INVALID_FILE, "format:" },
  { "version", "\"version\":1", "\"version\":2", QUARK_ERROR_INVALID_FILE, "version: version 2 is not supported" },
  { "unknown-key", "\"batches\":", "\"batchez\":", QUARK_ERROR_INVALID_FILE, "entries[0].batchez: unknown key" },
  { "role", "\"role\":\"input\"", "\"role\":\"weight\"", QUARK_ERROR_INVALID_FILE, "entries[0].role:" },
  { "short-histogram", "\"positive\":[", "\"positive\":[7,", QUARK_ERROR_INVALID_FILE,
    "entries[0].histogram.positive: expected 2048 elements" },
  { "negative-count", "\"negative\":[0", "\"negative\":[-1", QUARK_ERROR_INVALID_FILE,
    "entries[0].histogram.negative[0]: expected a count" },
  { "min-above-max", "\"min\":", "\"min\":1e30,\"x\":", QUARK_ERROR_INVALID_FILE, "entries[0]" },
  { "range-exp", "\"range_exp\":", "\"range_exp\":1000,\"x\":", QUARK_ERROR_INVALID_FILE, "entries[0]" },
  { "float-overflow", "\"max\":", "\"max\":1e300,\"y\":", QUARK_ERROR_INVALID_FILE, "entries[0]" },
};

static void
test_load_errors (void)
{
  g_autoptr(QuarkCalibration) c = quark_calibration_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("quark-calib-XXXXXX", NULL);
  g_autofree char *good = g_build_filename (dir, "good.json", NULL);
  g_autofree char *text = NULL;
  const float x[] = { -1, 2, 3 };

  observe (c, "fc", QUARK_ROLE_INPUT, x, 3);
  g_assert_true (quark_calibration_save (c, good, &error));
  g_assert_true (g_file_get_contents (good, &text, NULL, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad_files); i++)
    {
      g_autofree char *path = g_build_filename (dir, bad_files[i].name, NULL);
      const char *at = strstr (text, bad_files[i].from);
      g_autofree char *bad = NULL;
      g_autoptr(QuarkCalibration) loaded = NULL;
      g_autofree char *prefix = g_strconcat (path, ":", NULL);

      g_assert_nonnull (at);
      bad = g_strdup_printf ("%.*s%s%s", (int) (at - text), text, bad_files[i].to, at + strlen (bad_files[i].from));
      g_assert_true (g_file_set_contents (path, bad, -1, NULL));
      loaded = quark_calibration_load (path, &error);
      g_assert_null (loaded);
      g_assert_error (error, QUARK_ERROR, bad_files[i].code);
      g_assert_true (g_str_has_prefix (error->message, prefix));
      g_assert_nonnull (strstr (error->message, bad_files[i].needle));
      g_clear_error (&error);
      g_unlink (path);
    }
  g_assert_null (quark_calibration_load ("/nonexistent/stats.json", &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND);
  g_unlink (good);
  g_rmdir (dir);
}

/* ---- threads ---------------------------------------------------------------------------------- */

typedef struct {
  QuarkCalibration *c;
  const float *x;
  gsize n;
} Part;

static gpointer
observe_part (gpointer data)
{
  Part *p = data;
  for (gsize i = 0; i < p->n; i += 500)
    quark_calibration_observe_floats (p->c, "fc", QUARK_ROLE_INPUT, p->x + i, MIN (500, p->n - i), NULL, 0, NULL);
  return NULL;
}

static void
test_threads (void)
{
  enum { N = 40000, T = 4 };
  g_autoptr(QuarkCalibration) shared = quark_calibration_new ();
  g_autoptr(QuarkCalibration) serial = quark_calibration_new ();
  g_autofree float *x = g_new (float, N);
  GThread *threads[T];
  Part parts[T];
  const QuarkObserver exact[] = { QUARK_OBSERVER_MIN_MAX, QUARK_OBSERVER_HISTOGRAM_PERCENTILE,
                                  QUARK_OBSERVER_MSE, QUARK_OBSERVER_KL };

  fill_normal (x, N, 7);
  for (int t = 0; t < T; t++)
    {
      parts[t] = (Part) { shared, x + t * (N / T), N / T };
      threads[t] = g_thread_new ("observe", observe_part, &parts[t]);
    }
  for (int t = 0; t < T; t++)
    g_thread_join (threads[t]);
  observe (serial, "fc", QUARK_ROLE_INPUT, x, N);
  g_assert_cmpuint (quark_calibration_get_n_batches (shared, "fc", QUARK_ROLE_INPUT), ==, N / 500);
  /* the statistics that do not depend on batch order agree exactly */
  for (guint i = 0; i < G_N_ELEMENTS (exact); i++)
    {
      g_autoptr(QuarkTensorSpec) spec = activation_spec (QUARK_DTYPE_I8, TRUE, exact[i], 99.9);
      float alo, ahi, blo, bhi;
      range (shared, "fc", spec, &alo, &ahi);
      range (serial, "fc", spec, &blo, &bhi);
      g_assert_cmpfloat (alo, ==, blo);
      g_assert_cmpfloat (ahi, ==, bhi);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/calibration/histogram/order-independent", test_histogram_order_independent);
  g_test_add_func ("/calibration/histogram/percentile", test_histogram_percentile);
  g_test_add_func ("/calibration/observers/brevitas-running-mean", test_brevitas_running_mean);
  g_test_add_func ("/calibration/observers/moving-average", test_moving_average);
  g_test_add_func ("/calibration/observers/mse-and-kl", test_mse_and_kl);
  g_test_add_func ("/calibration/errors", test_errors);
  g_test_add_func ("/calibration/session/per-channel", test_per_channel_session);
  g_test_add_func ("/calibration/session/static-scales", test_static_scales_through_the_backend);
  g_test_add_func ("/calibration/file/save-load", test_save_load);
  g_test_add_func ("/calibration/file/errors", test_load_errors);
  g_test_add_func ("/calibration/threads", test_threads);
  return g_test_run ();
}
