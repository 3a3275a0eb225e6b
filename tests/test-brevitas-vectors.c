/* test-brevitas-vectors.c: the brevitas backend against real Brevitas.
 *
 * tests/data/brevitas/vectors.json is written by
 * tests/brevitas/generate-vectors.py, which runs Brevitas's own quantizers
 * (the commit it names) on the inputs it records. Every case runs here
 * through the public API: a config with the case's spec, then
 * quantize_tensor() for weights, or for activations a calibration session
 * made for the config (observing the case's batches),
 * get_activation_params() and quantize_activation() (uncalibrated and
 * dynamic cases without the session). Float32 arrays are stored as the
 * base64 of their little-endian bytes. Scales are compared as float32
 * bits, zero points and integer codes exactly, and the dequantized values
 * as float32 bits: (q - z) * s for integers, the code's value (decoded here
 * from the format the config reports) times s for minifloats.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static JsonObject *inputs;

/* Reports a mismatch and ends the case (the other cases still run). */
#define FAIL(...) G_STMT_START { g_test_message (__VA_ARGS__); g_test_fail (); return; } G_STMT_END

static guint32
bits_of (float f)
{
  guint32 u;
  memcpy (&u, &f, sizeof u);
  return u;
}

/* A float32 array: the base64 of its little-endian bytes. */
static float *
floats_of (const char *b64, gsize *n)
{
  gsize size = 0;
  g_autofree guchar *bytes = g_base64_decode (b64, &size);
  float *v = g_new (float, MAX (size / 4, 1));

  g_assert_cmpuint (size % 4, ==, 0);
  for (gsize i = 0; i < size / 4; i++)
    {
      guint32 u = (guint32) bytes[4 * i] | (guint32) bytes[4 * i + 1] << 8 | (guint32) bytes[4 * i + 2] << 16 |
                  (guint32) bytes[4 * i + 3] << 24;
      memcpy (&v[i], &u, sizeof u);
    }
  *n = size / 4;
  return v;
}

/* An input of the file's table as a float32 tensor. */
static QuarkTensor *
input_tensor (const char *key, const char *name)
{
  JsonObject *o = json_object_get_object_member (inputs, key);
  JsonArray *shape_a = json_object_get_array_member (o, "shape");
  gint64 shape[8];
  gsize n;
  g_autofree float *x = floats_of (json_object_get_string_member (o, "x"), &n);
  g_autoptr(GError) error = NULL;
  QuarkTensor *t;

  for (guint d = 0; d < json_array_get_length (shape_a); d++)
    shape[d] = json_array_get_int_element (shape_a, d);
  t = quark_tensor_new_from_floats (name, shape, json_array_get_length (shape_a), x, n, &error);
  g_assert_no_error (error);
  return t;
}

static gint64
element (QuarkTensor *t, gsize i)
{
  const guint8 *d = quark_tensor_peek_data (t, NULL);
  switch (quark_tensor_get_dtype (t))
    {
    case QUARK_DTYPE_I8: return ((const gint8 *) d)[i];
    case QUARK_DTYPE_I16: return ((const gint16 *) d)[i];
    case QUARK_DTYPE_U16: return ((const guint16 *) d)[i];
    case QUARK_DTYPE_I32: return ((const gint32 *) d)[i];
    default: return d[i];   /* U8, FP8 and one minifloat code per byte */
    }
}

/* The minifloat format a config reports for its spec (bv_spec_to_json). */
typedef struct {
  int e, m, bias;
  guint64 inf, nan;
  gboolean fnuz;
} Format;

static guint64
codes_of (JsonObject *spec, const char *key)
{
  JsonArray *a = json_object_get_array_member (spec, key);
  guint64 mask = 0;
  for (guint i = 0; a && i < json_array_get_length (a); i++)
    mask |= (guint64) 1 << strtoul (json_array_get_string_element (a, i), NULL, 2);
  return mask;
}

static float
decode (const Format *f, guint code)
{
  int top = (1 << f->e) - 1;
  int m = (int) code & ((1 << f->m) - 1);
  int e = ((int) code >> f->m) & top;
  float sign = (code >> (f->e + f->m)) & 1 ? -1.0f : 1.0f;

  if (f->fnuz && code == 1u << (f->e + f->m))
    return NAN;   /* FNUZ's one NaN code, "-0" */
  if (e == top && (f->nan & ((guint64) 1 << m)))
    return NAN;
  if (e == top && (f->inf & ((guint64) 1 << m)))
    return sign * INFINITY;
  if (e == 0)
    return sign * ldexpf ((float) m, 1 - f->bias - f->m);
  return sign * ldexpf ((float) ((1 << f->m) + m), e - f->bias - f->m);
}

/* A brevitas config whose global_quant_config is @global (taken), and its
 * quantizer. */
static QuarkQuantizationConfig *
config_for (JsonNode *global, QuarkModelQuantizer **quantizer)
{
  g_autoptr(JsonObject) root = json_object_new ();
  g_autoptr(JsonNode) root_node = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *json = NULL;
  g_autoptr(GError) error = NULL;
  QuarkQuantizationConfig *config;

  json_object_set_string_member (root, "backend", "brevitas");
  json_object_set_member (root, "global_quant_config", global);
  json_node_set_object (root_node, root);
  json = json_to_string (root_node, FALSE);
  config = quark_registry_config_from_string (quark_registry_get_default (), json, -1, &error);
  g_assert_no_error (error);
  *quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
  g_assert_no_error (error);
  return config;
}

/* A bias: the weight, the bias and the input quantizer's calibration in
 * one layer, through quantize_model (s = input scale * weight scale). */
static void
run_bias_case (JsonObject *c)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(QuarkCalibration) cal = NULL;
  g_autoptr(QuarkTensor) w = input_tensor (json_object_get_string_member (c, "weight"), "fc.weight");
  g_autoptr(QuarkTensor) b2 = input_tensor (json_object_get_string_member (c, "input"), "fc.bias");
  g_autoptr(QuarkTensor) b = NULL;
  g_autofree float *scales = NULL, *expected_scales = NULL, *expected_values = NULL;
  JsonArray *batches = json_object_get_array_member (c, "calibration");
  JsonArray *ints = json_object_get_array_member (c, "int");
  gint64 n_bias = (gint64) quark_tensor_get_n_elements (b2);
  gsize n_scales, n_expected, n_values;
  QuarkTensor *codes;

  config = config_for (json_node_copy (json_object_get_member (c, "spec")), &quantizer);
  b = quark_tensor_new ("fc.bias", quark_tensor_get_dtype (b2), &n_bias, 1, quark_tensor_get_data (b2), &error);
  g_assert_no_error (error);
  g_assert_true (quark_model_add_tensor (model, w, NULL) && quark_model_add_tensor (model, b, NULL));
  cal = quark_calibration_new_for_config (config, model);
  for (guint i = 0; i < json_array_get_length (batches); i++)
    {
      g_autoptr(QuarkTensor) t = input_tensor (json_array_get_string_element (batches, i), "batch");
      g_assert_true (quark_calibration_observe (cal, "fc", QUARK_ROLE_INPUT, t, &error));
    }
  out = quark_model_quantizer_quantize_model (quantizer, model, cal, NULL, &error);
  g_assert_no_error (error);
  codes = quark_model_get_tensor (out, "fc.bias");
  scales = quark_tensor_to_floats (quark_model_get_tensor (out, "fc.bias_scale"), &n_scales, &error);
  g_assert_no_error (error);
  expected_scales = floats_of (json_object_get_string_member (c, "scale"), &n_expected);
  expected_values = floats_of (json_object_get_string_member (c, "value"), &n_values);
  /* Brevitas's per-tensor bias scale is one value */
  g_assert_true (n_expected == n_scales || n_expected == 1);
  for (gsize i = 0; i < n_scales; i++)
    if (bits_of (scales[i]) != bits_of (expected_scales[n_expected == 1 ? 0 : i]))
      FAIL ("bias scale %" G_GSIZE_FORMAT ": %a, Brevitas %a", i, scales[i], expected_scales[n_expected == 1 ? 0 : i]);
  g_assert_cmpuint (quark_tensor_get_n_elements (codes), ==, n_values);
  for (gsize i = 0; i < n_values; i++)
    {
      gint64 q = element (codes, i);
      float v = (float) q * scales[n_scales == 1 ? 0 : i];
      if (q != json_array_get_int_element (ints, (guint) i))
        FAIL ("bias code %" G_GSIZE_FORMAT ": %" G_GINT64_FORMAT ", Brevitas %" G_GINT64_FORMAT, i, q,
              json_array_get_int_element (ints, (guint) i));
      if (v != expected_values[i])
        FAIL ("bias value %" G_GSIZE_FORMAT ": %a, Brevitas %a", i, v, expected_values[i]);
    }
}

static void
run_case (gconstpointer data)
{
  JsonObject *c = (JsonObject *) data;
  const char *role = json_object_get_string_member (c, "role");
  gboolean weight = g_str_equal (role, "weight");
  const char *mode = json_object_has_member (c, "mode") ? json_object_get_string_member (c, "mode") : NULL;
  g_autoptr(JsonNode) spec_node = json_node_copy (json_object_get_member (c, "spec"));
  g_autoptr(JsonObject) global = json_object_new ();
  JsonNode *global_node;
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkTensorSpec) spec = NULL;
  g_autoptr(QuarkTensor) x = NULL;
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(QuarkTensor) act_scale = NULL, act_zp = NULL;
  g_autoptr(JsonNode) normalized = NULL;
  JsonObject *nspec;
  const char *name = weight ? "fc.weight" : "fc.input";
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  QuarkTensor *codes, *scale_t, *zp_t;
  g_autofree float *scales = NULL, *expected_scales = NULL, *expected_values = NULL;
  gsize n_scales, n_values, n_expected_scales, n_expected_values, rows, cols, group = 0;
  JsonArray *ints = json_object_has_member (c, "int") ? json_object_get_array_member (c, "int") : NULL;
  JsonArray *zps = json_object_get_array_member (c, "zero_point");
  const gint64 *shape;
  guint n_dims;
  gboolean is_float, signed_zero = TRUE, ocp = FALSE, saturating = TRUE, standard_codes = FALSE, finite = TRUE;
  Format f = { 0 };

  if (g_str_equal (role, "bias"))
    {
      run_bias_case (c);
      return;
    }
  json_object_set_member (global, weight ? "weight" : "input_tensors", g_steal_pointer (&spec_node));
  global_node = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (global_node, global);
  config = config_for (global_node, &quantizer);
  spec = quark_quantization_config_get_tensor_spec (config, "fc", "Linear",
                                                    weight ? QUARK_ROLE_WEIGHT : QUARK_ROLE_INPUT);
  g_assert_nonnull (spec);
  normalized = quark_quantization_config_to_json (config);
  nspec = json_object_get_object_member (json_object_get_object_member (json_node_get_object (normalized),
                                                                        "global_quant_config"),
                                         weight ? "weight" : "input_tensors");
  g_assert_nonnull (nspec);
  is_float = json_object_has_member (nspec, "exponent_bit_width");
  if (is_float)
    {
      f.e = (int) json_object_get_int_member (nspec, "exponent_bit_width");
      f.m = (int) json_object_get_int_member (nspec, "mantissa_bit_width");
      f.bias = (int) json_object_get_int_member (nspec, "exponent_bias");
      f.inf = codes_of (nspec, "inf_values");
      f.nan = codes_of (nspec, "nan_values");
      /* FNUZ has no -0 code (its bits are NaN) */
      f.fnuz = g_str_equal (json_object_get_string_member (nspec, "float_format"), "fnuz");
      signed_zero = !f.fnuz;
      ocp = g_str_equal (json_object_get_string_member (nspec, "float_format"), "ocp");
      saturating = json_object_get_boolean_member (nspec, "saturating");
      standard_codes = f.e == 4 && f.m == 3 ? f.nan == 1u << 7 && f.inf == 0
                       : f.e == 5 && f.m == 2 ? f.nan == 0xe && f.inf == 1 : f.nan == 0 && f.inf == 0;
    }
  else
    signed_zero = FALSE;
  if (json_object_has_member (nspec, "group_size"))
    group = (gsize) json_object_get_int_member (nspec, "group_size");

  x = input_tensor (json_object_get_string_member (c, "input"), name);
  if (weight)
    out = quark_model_quantizer_quantize_tensor (quantizer, x, spec, &error);
  else
    {
      g_autoptr(QuarkCalibration) cal = NULL;

      if (g_str_equal (mode, "calibrated"))
        {
          JsonArray *batches = json_object_get_array_member (c, "calibration");
          cal = quark_calibration_new_for_config (config, NULL);
          for (guint b = 0; b < json_array_get_length (batches); b++)
            {
              g_autoptr(QuarkTensor) t = input_tensor (json_array_get_string_element (batches, b), "batch");
              g_assert_true (quark_calibration_observe (cal, "fc", QUARK_ROLE_INPUT, t, &error));
              g_assert_no_error (error);
            }
        }
      if (!g_str_equal (mode, "dynamic"))
        {
          g_assert_true (quark_model_quantizer_get_activation_params (quantizer, spec, cal, cal ? "fc" : NULL,
                                                                      QUARK_ROLE_INPUT, &act_scale, &act_zp, &error));
          g_assert_no_error (error);
        }
      out = quark_model_quantizer_quantize_activation (quantizer, x, spec, act_scale, act_zp, &error);
      g_assert_no_error (error);
      if (g_str_equal (mode, "uncalibrated"))
        {
          /* no scale given: the uncalibrated quantizer, the same numbers */
          g_autoptr(QuarkModel) again = quark_model_quantizer_quantize_activation (quantizer, x, spec, NULL, NULL,
                                                                                   &error);
          g_assert_no_error (error);
          gsize size_a, size_b;
          gconstpointer a = quark_tensor_peek_data (quark_model_get_tensor (again, name), &size_a);
          gconstpointer b = quark_tensor_peek_data (quark_model_get_tensor (out, name), &size_b);
          g_assert_cmpmem (a, size_a, b, size_b);
        }
    }
  g_assert_no_error (error);
  g_assert_nonnull (out);

  codes = quark_model_get_tensor (out, name);
  scale_t = quark_model_get_tensor (out, scale_name);
  zp_t = quark_model_get_tensor (out, zp_name);
  g_assert_nonnull (codes);
  g_assert_nonnull (scale_t);
  scales = quark_tensor_to_floats (scale_t, &n_scales, &error);
  g_assert_no_error (error);
  expected_scales = floats_of (json_object_get_string_member (c, "scale"), &n_expected_scales);
  expected_values = floats_of (json_object_get_string_member (c, "value"), &n_expected_values);
  if (n_scales != n_expected_scales)
    FAIL ("%" G_GSIZE_FORMAT " scales, Brevitas %" G_GSIZE_FORMAT, n_scales, n_expected_scales);
  for (gsize i = 0; i < n_scales; i++)
    if (bits_of (scales[i]) != bits_of (expected_scales[i]) && !(isnan (scales[i]) && isnan (expected_scales[i])))
      FAIL ("scale %" G_GSIZE_FORMAT ": %a (0x%08x), Brevitas %a (0x%08x)", i, scales[i], bits_of (scales[i]),
               expected_scales[i], bits_of (expected_scales[i]));
  /* Brevitas's zero point of a symmetric quantizer is one scalar 0 */
  g_assert_true (json_array_get_length (zps) == n_scales || json_array_get_length (zps) == 1);
  for (gsize i = 0; i < n_scales; i++)
    {
      gint64 z = zp_t ? element (zp_t, i) : 0;
      JsonNode *e = json_array_get_element (zps, json_array_get_length (zps) == 1 ? 0 : (guint) i);
      gint64 expected = JSON_NODE_HOLDS_NULL (e) ? z : json_node_get_int (e);   /* null: Brevitas's NaN */
      if (z != expected)
        FAIL ("zero point %" G_GSIZE_FORMAT ": %" G_GINT64_FORMAT ", Brevitas %" G_GINT64_FORMAT, i, z, expected);
    }

  shape = quark_tensor_get_shape (x, &n_dims);
  cols = (gsize) shape[n_dims - 1];
  {
    g_autofree float *xv = quark_tensor_to_floats (x, &n_values, NULL);
    for (gsize i = 0; i < n_values; i++)
      finite = finite && isfinite (xv[i]);
  }
  n_values = quark_tensor_get_n_elements (x);
  rows = n_values / cols;
  g_assert_cmpuint (n_values, ==, n_expected_values);
  g_assert_cmpuint (quark_tensor_get_n_elements (codes), ==, n_values);
  for (gsize i = 0; i < n_values; i++)
    {
      gsize row = i / cols, col = i % cols;
      gsize p = n_scales == 1 ? 0 : n_scales == rows ? row : row * (n_scales / rows) + col / group;
      gint64 q = element (codes, i);
      gint64 z = zp_t ? element (zp_t, p) : 0;
      float v;

      if (is_float)
        {
          v = decode (&f, (guint) q) * scales[p];
          /* Brevitas's generic and FNUZ quantizers saturate at the
           * all-ones code whatever NaN/Inf codes they name: a finite value
           * there reads as the plain bits */
          if (!ocp && !isfinite (v) && isfinite (expected_values[i]))
            {
              Format plain = f;
              plain.inf = plain.nan = 0;
              plain.fnuz = FALSE;
              v = decode (&plain, (guint) q) * scales[p];
            }
        }
      else
        {
          JsonNode *e = json_array_get_element (ints, (guint) i);
          /* Brevitas's NaN codes (x / s with s infinite or NaN) exist in no
           * integer format: nothing to compare */
          if (JSON_NODE_HOLDS_NULL (e))
            continue;
          if (q != json_node_get_int (e))
            FAIL ("code %" G_GSIZE_FORMAT ": %" G_GINT64_FORMAT ", Brevitas %" G_GINT64_FORMAT, i, q,
                     json_node_get_int (e));
          v = (float) (q - z) * scales[p];
        }
      /* integer codes carry no sign of zero (Brevitas's (q - z) * s is -0
       * where round () gave -0), nor do FNUZ codes */
      if (!(isnan (v) && isnan (expected_values[i])) && bits_of (v) != bits_of (expected_values[i]) &&
          !(!signed_zero && v == 0 && expected_values[i] == 0))
        FAIL ("value %" G_GSIZE_FORMAT ": %a, Brevitas %a", i, v, expected_values[i]);
    }

  if (weight && finite)
    {
      /* the checkpoint path (which refuses NaN and infinite weights): a
       * model with this weight quantized and read back (what quark verify
       * compares) gives Brevitas's values too */
      g_autoptr(QuarkModel) model = quark_model_new ();
      g_autoptr(QuarkModel) ckpt = NULL, back = NULL;
      g_autofree float *bv = NULL;
      gsize n_bv;
      g_assert_true (quark_model_add_tensor (model, x, NULL));
      ckpt = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
      g_assert_no_error (error);
      back = quark_model_quantizer_dequantize_model (quantizer, ckpt, &error);
      g_assert_no_error (error);
      bv = quark_tensor_to_floats (quark_model_get_tensor (back, name), &n_bv, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (n_bv, ==, n_expected_values);
      for (gsize i = 0; i < n_bv; i++)
        if (bits_of (bv[i]) != bits_of (expected_values[i]) && !(isnan (bv[i]) && isnan (expected_values[i])) &&
            !(!signed_zero && bv[i] == 0 && expected_values[i] == 0) &&
            !(!ocp && is_float && !isfinite (bv[i]) && isfinite (expected_values[i])))   /* as for the codes */
          FAIL ("read back from the checkpoint, value %" G_GSIZE_FORMAT ": %a, Brevitas %a", i, bv[i],
                expected_values[i]);
    }
  if (!weight)
    {
      /* the backend's fake quantization gives Brevitas's values, dynamic
       * specs included (integers without the sign of zero) */
      g_autoptr(QuarkTensor) fq = quark_model_quantizer_fake_quantize_activation (quantizer, x, spec, act_scale,
                                                                                   act_zp, &error);
      g_autofree float *fqv = NULL;
      gsize n_fq;
      g_assert_no_error (error);
      fqv = quark_tensor_to_floats (fq, &n_fq, &error);
      g_assert_cmpuint (n_fq, ==, n_expected_values);
      for (gsize i = 0; i < n_fq; i++)
        if (bits_of (fqv[i]) != bits_of (expected_values[i]) && !(isnan (fqv[i]) && isnan (expected_values[i])) &&
            !(!signed_zero && fqv[i] == 0 && expected_values[i] == 0))
          FAIL ("fake_quantize_activation, value %" G_GSIZE_FORMAT ": %a, Brevitas %a", i, fqv[i],
                expected_values[i]);
    }
  if (act_scale && (ints || (ocp && saturating && standard_codes)))
    {
      /* the spec's fake quantization follows Brevitas's order too
       * (integers, and OCP E4M3 and E4M3/E2M1-style formats the core
       * kernels encode; generic and custom minifloats only through
       * quantize_activation) */
      g_autoptr(QuarkTensor) fq = quark_tensor_spec_fake_quantize (spec, x, act_scale, act_zp, &error);
      g_autofree float *fqv = NULL, *want = NULL;
      gsize n_fq, n_want;
      g_assert_no_error (error);
      g_assert_cmpint (quark_tensor_spec_get_quant_order (spec), ==, QUARK_QUANT_ORDER_BREVITAS);
      fqv = quark_tensor_to_floats (fq, &n_fq, &error);
      want = floats_of (json_object_get_string_member (c, "value"), &n_want);
      g_assert_cmpuint (n_fq, ==, n_want);
      for (gsize i = 0; i < n_fq; i++)
        if (fqv[i] != want[i] && !(isnan (fqv[i]) && isnan (want[i])))
          FAIL ("fake quantization, value %" G_GSIZE_FORMAT ": %a, Brevitas %a", i, fqv[i], want[i]);
    }
}

int
main (int argc, char **argv)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  JsonArray *cases;

  g_test_init (&argc, &argv, NULL);
  path = g_test_build_filename (G_TEST_DIST, "data", "brevitas", "vectors.json", NULL);
  json_parser_load_from_mapped_file (parser, path, &error);
  g_assert_no_error (error);
  inputs = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)), "inputs");
  cases = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), "cases");
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonObject *c = json_array_get_object_element (cases, i);
      g_autofree char *test = g_strdup_printf ("/brevitas-vectors/%s/%s", json_object_get_string_member (c, "role"),
                                               json_object_get_string_member (c, "name"));
      g_test_add_data_func (test, c, run_case);
    }
  return g_test_run ();
}
