/* test-core.c: dtypes, tensors, models, errors, version
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <math.h>
#include <string.h>

static void
test_dtype_table (void)
{
  static const struct {
    QuarkDType dtype;
    const char *name;
    const char *safetensors;
    guint bits;
    gsize size;
    gboolean is_signed, is_float;
  } rows[] = {
    { QUARK_DTYPE_F64, "float64", "F64", 64, 8, TRUE, TRUE },
    { QUARK_DTYPE_F32, "float32", "F32", 32, 4, TRUE, TRUE },
    { QUARK_DTYPE_F16, "float16", "F16", 16, 2, TRUE, TRUE },
    { QUARK_DTYPE_BF16, "bfloat16", "BF16", 16, 2, TRUE, TRUE },
    { QUARK_DTYPE_I64, "int64", "I64", 64, 8, TRUE, FALSE },
    { QUARK_DTYPE_I32, "int32", "I32", 32, 4, TRUE, FALSE },
    { QUARK_DTYPE_I16, "int16", "I16", 16, 2, TRUE, FALSE },
    { QUARK_DTYPE_I8, "int8", "I8", 8, 1, TRUE, FALSE },
    { QUARK_DTYPE_U16, "uint16", "U16", 16, 2, FALSE, FALSE },
    { QUARK_DTYPE_U8, "uint8", "U8", 8, 1, FALSE, FALSE },
    { QUARK_DTYPE_F8_E4M3, "fp8_e4m3", "F8_E4M3", 8, 1, TRUE, TRUE },
    { QUARK_DTYPE_F8_E5M2, "fp8_e5m2", "F8_E5M2", 8, 1, TRUE, TRUE },
    { QUARK_DTYPE_F8_E4M3FNUZ, "fp8_e4m3fnuz", "F8_E4M3FNUZ", 8, 1, TRUE, TRUE },
    { QUARK_DTYPE_F8_E5M2FNUZ, "fp8_e5m2fnuz", "F8_E5M2FNUZ", 8, 1, TRUE, TRUE },
    { QUARK_DTYPE_F8_E8M0, "e8m0", "F8_E8M0", 8, 1, FALSE, TRUE },
    { QUARK_DTYPE_INT2, "int2", NULL, 2, 1, TRUE, FALSE },
    { QUARK_DTYPE_INT3, "int3", NULL, 3, 1, TRUE, FALSE },
    { QUARK_DTYPE_INT4, "int4", NULL, 4, 1, TRUE, FALSE },
    { QUARK_DTYPE_INT5, "int5", NULL, 5, 1, TRUE, FALSE },
    { QUARK_DTYPE_INT6, "int6", NULL, 6, 1, TRUE, FALSE },
    { QUARK_DTYPE_INT7, "int7", NULL, 7, 1, TRUE, FALSE },
    { QUARK_DTYPE_UINT2, "uint2", NULL, 2, 1, FALSE, FALSE },
    { QUARK_DTYPE_UINT3, "uint3", NULL, 3, 1, FALSE, FALSE },
    { QUARK_DTYPE_UINT4, "uint4", NULL, 4, 1, FALSE, FALSE },
    { QUARK_DTYPE_UINT5, "uint5", NULL, 5, 1, FALSE, FALSE },
    { QUARK_DTYPE_UINT6, "uint6", NULL, 6, 1, FALSE, FALSE },
    { QUARK_DTYPE_UINT7, "uint7", NULL, 7, 1, FALSE, FALSE },
    { QUARK_DTYPE_FP4_E2M1, "fp4", "F4", 4, 1, TRUE, TRUE },
    { QUARK_DTYPE_FP6_E2M3, "fp6_e2m3", "F6_E2M3", 6, 1, TRUE, TRUE },
    { QUARK_DTYPE_FP6_E3M2, "fp6_e3m2", "F6_E3M2", 6, 1, TRUE, TRUE },
    { QUARK_DTYPE_BOOL, "bool", "BOOL", 8, 1, FALSE, FALSE },
    { QUARK_DTYPE_U32, "uint32", "U32", 32, 4, FALSE, FALSE },
    { QUARK_DTYPE_U64, "uint64", "U64", 64, 8, FALSE, FALSE },
  };

  g_assert_cmpuint (G_N_ELEMENTS (rows), ==, QUARK_DTYPE_N_TYPES);
  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      QuarkDType back;

      g_assert_cmpstr (quark_dtype_get_name (rows[i].dtype), ==, rows[i].name);
      g_assert_true (quark_dtype_from_name (rows[i].name, &back));
      g_assert_cmpint (back, ==, rows[i].dtype);
      g_assert_cmpstr (quark_dtype_to_safetensors (rows[i].dtype), ==, rows[i].safetensors);
      if (rows[i].safetensors)
        {
          g_assert_true (quark_dtype_from_safetensors (rows[i].safetensors, &back));
          g_assert_cmpint (back, ==, rows[i].dtype);
        }
      g_assert_cmpuint (quark_dtype_get_bits (rows[i].dtype), ==, rows[i].bits);
      g_assert_cmpuint (quark_dtype_get_element_size (rows[i].dtype), ==, rows[i].size);
      g_assert_cmpint (quark_dtype_is_signed (rows[i].dtype), ==, rows[i].is_signed);
      g_assert_cmpint (quark_dtype_is_float (rows[i].dtype), ==, rows[i].is_float);
      g_assert_cmpint (quark_dtype_is_sub_byte (rows[i].dtype), ==, rows[i].bits < 8);
    }
  {
    QuarkDType d;
    g_assert_false (quark_dtype_from_safetensors ("bf16", &d));   /* case-sensitive */
    g_assert_false (quark_dtype_from_safetensors ("I4", &d));     /* no such dtype */
    g_assert_false (quark_dtype_from_name ("int9", &d));
  }
}

/* The range table of the numerics reference, section 1.1 (V1). */
static void
test_integer_ranges (void)
{
  static const struct {
    QuarkDType s, u;
    gint64 smin, smax, snmin, umax, unmax;
  } rows[] = {
    { QUARK_DTYPE_INT2, QUARK_DTYPE_UINT2, -2, 1, -1, 3, 2 },
    { QUARK_DTYPE_INT3, QUARK_DTYPE_UINT3, -4, 3, -3, 7, 6 },
    { QUARK_DTYPE_INT4, QUARK_DTYPE_UINT4, -8, 7, -7, 15, 14 },
    { QUARK_DTYPE_I8, QUARK_DTYPE_U8, -128, 127, -127, 255, 254 },
    { QUARK_DTYPE_I16, QUARK_DTYPE_U16, -32768, 32767, -32767, 65535, 65534 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      gint64 lo, hi;
      g_assert_true (quark_dtype_get_integer_range (rows[i].s, FALSE, &lo, &hi));
      g_assert_cmpint (lo, ==, rows[i].smin);
      g_assert_cmpint (hi, ==, rows[i].smax);
      g_assert_true (quark_dtype_get_integer_range (rows[i].s, TRUE, &lo, &hi));
      g_assert_cmpint (lo, ==, rows[i].snmin);
      g_assert_cmpint (hi, ==, rows[i].smax);
      g_assert_true (quark_dtype_get_integer_range (rows[i].u, FALSE, &lo, &hi));
      g_assert_cmpint (lo, ==, 0);
      g_assert_cmpint (hi, ==, rows[i].umax);
      g_assert_true (quark_dtype_get_integer_range (rows[i].u, TRUE, &lo, &hi));
      g_assert_cmpint (hi, ==, rows[i].unmax);
    }
  g_assert_false (quark_dtype_get_integer_range (QUARK_DTYPE_F32, FALSE, NULL, NULL));
  g_assert_false (quark_dtype_get_integer_range (QUARK_DTYPE_BOOL, FALSE, NULL, NULL));
}

/* Every binary16 and bfloat16 pattern converts exactly. */
static void
test_half_conversions_exhaustive (void)
{
  for (guint32 bits = 0; bits < 0x10000; bits++)
    {
      float f16 = quark_kernel_f16_to_f32 ((guint16) bits);
      float bf16 = quark_kernel_bf16_to_f32 ((guint16) bits);
      guint32 bf_bits, exp = (bits >> 10) & 0x1f, mant = bits & 0x3ff;
      double expected;

      memcpy (&bf_bits, &bf16, 4);
      g_assert_cmphex (bf_bits, ==, bits << 16);

      if (exp == 0x1f)
        {
          if (mant == 0)
            g_assert_true (isinf (f16) && (signbit (f16) != 0) == ((bits & 0x8000) != 0));
          else
            g_assert_true (isnan (f16));
          continue;
        }
      /* independent oracle: the value from the definition, in double */
      expected = exp == 0 ? ldexp ((double) mant, -24) : ldexp (1.0 + mant / 1024.0, (int) exp - 15);
      if (bits & 0x8000)
        expected = -expected;
      g_assert_cmpfloat ((double) f16, ==, expected);
      g_assert_cmpint (signbit (f16) != 0, ==, (bits & 0x8000) != 0);
    }
}

static void
test_tensor (void)
{
  const gint64 shape[] = { 2, 3 };
  const float values[] = { 1, 2, 3, 4, 5, 6 };
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats ("w", shape, 2, values, 6, &error);
  g_autoptr(GBytes) short_data = g_bytes_new (values, 5 * sizeof (float));
  g_autoptr(GBytes) scalar_data = g_bytes_new (values, sizeof (float));
  g_autoptr(QuarkTensor) bad = NULL;
  g_autoptr(QuarkTensor) scalar = NULL;
  g_autofree char *shape_text = NULL;
  guint n_dims;

  g_assert_no_error (error);
  g_assert_cmpstr (quark_tensor_get_name (t), ==, "w");
  g_assert_cmpint (quark_tensor_get_dtype (t), ==, QUARK_DTYPE_F32);
  g_assert_cmpuint (quark_tensor_get_n_elements (t), ==, 6);
  g_assert_cmpint (quark_tensor_get_shape (t, &n_dims)[1], ==, 3);
  g_assert_cmpuint (n_dims, ==, 2);
  g_assert_cmpint (quark_tensor_get_dim (t, -1), ==, 3);
  g_assert_cmpint (quark_tensor_get_dim (t, 2), ==, -1);
  shape_text = quark_tensor_format_shape (t);
  g_assert_cmpstr (shape_text, ==, "[2, 3]");

  bad = quark_tensor_new ("w2", QUARK_DTYPE_F32, shape, 2, short_data, &error);
  g_assert_null (bad);
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "tensor w2"));
  g_clear_error (&error);

  {
    const gint64 huge[] = { G_MAXINT64, G_MAXINT64 };
    bad = quark_tensor_new ("huge", QUARK_DTYPE_F32, huge, 2, short_data, &error);
    g_assert_null (bad);
    g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "overflows"));
    g_clear_error (&error);
  }
  {
    const gint64 negative[] = { -1 };
    bad = quark_tensor_new ("neg", QUARK_DTYPE_F32, negative, 1, short_data, &error);
    g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  scalar = quark_tensor_new ("s", QUARK_DTYPE_F32, NULL, 0, scalar_data, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (quark_tensor_get_n_elements (scalar), ==, 1);
  g_clear_pointer (&shape_text, g_free);
  shape_text = quark_tensor_format_shape (scalar);
  g_assert_cmpstr (shape_text, ==, "[]");
}

static void
test_tensor_zero_copy_and_floats (void)
{
  guint16 bf16[] = { 0x3f80, 0xc000, 0x0000, 0x8000 };   /* 1, -2, 0, -0 */
  const gint64 shape[] = { 4 };
  g_autoptr(GBytes) data = g_bytes_new_static (bf16, sizeof bf16);
  g_autoptr(QuarkTensor) t = quark_tensor_new ("b", QUARK_DTYPE_BF16, shape, 1, data, NULL);
  g_autofree float *f = NULL;
  gsize n;

  g_assert_true (quark_tensor_peek_data (t, NULL) == (gconstpointer) bf16);
  f = quark_tensor_to_floats (t, &n, NULL);
  g_assert_cmpuint (n, ==, 4);
  g_assert_cmpfloat (f[0], ==, 1.0f);
  g_assert_cmpfloat (f[1], ==, -2.0f);
  g_assert_true (f[3] == 0.0f && signbit (f[3]));
}

static void
test_model (void)
{
  g_autoptr(QuarkModel) model = quark_model_new ();
  const gint64 shape[] = { 1 };
  const float v = 1;
  g_autoptr(QuarkTensor) a = quark_tensor_new_from_floats ("a", shape, 1, &v, 1, NULL);
  g_autoptr(QuarkTensor) b = quark_tensor_new_from_floats ("b", shape, 1, &v, 1, NULL);
  g_autoptr(QuarkTensor) a2 = quark_tensor_new_from_floats ("a", shape, 1, &v, 1, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) meta = quark_json_parse ("{\"model_type\": \"llama\"}", -1, NULL, NULL);
  g_auto(GStrv) names = NULL;

  g_assert_true (quark_model_add_tensor (model, b, &error));
  g_assert_true (quark_model_add_tensor (model, a, &error));
  g_assert_false (quark_model_add_tensor (model, a2, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (quark_model_get_n_tensors (model), ==, 2);
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (model)), ==, 2);
  g_assert_true (quark_model_get_tensor (model, "a") == a);
  g_assert_null (quark_model_get_tensor (model, "c"));
  g_assert_true (quark_model_get_tensor_at (model, 0) == b);
  names = quark_model_get_tensor_names (model);
  g_assert_cmpstrv (names, ((const char *[]) { "b", "a", NULL }));

  g_assert_null (quark_model_get_metadata (model));
  quark_model_set_metadata (model, meta);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (quark_model_get_metadata (model)),
                                                  "model_type"), ==, "llama");
}

static void
test_error_domains (void)
{
  g_assert_cmpstr (g_quark_to_string (QUARK_ERROR), ==, "quark-error-quark");
  g_assert_cmpstr (g_quark_to_string (QUARK_CONFIG_ERROR), ==, "quark-config-error-quark");
  g_assert_cmpstr (g_quark_to_string (QUARK_BACKEND_ERROR), ==, "quark-backend-error-quark");
  /* codes are stable: pin a few */
  g_assert_cmpint (QUARK_ERROR_CANCELLED, ==, 8);
  g_assert_cmpint (QUARK_ERROR_NOT_FOUND, ==, 9);
  g_assert_cmpint (QUARK_ERROR_EXISTS, ==, 10);
  g_assert_cmpint (QUARK_CONFIG_ERROR_UNKNOWN_KEY, ==, 1);
  g_assert_cmpint (QUARK_BACKEND_ERROR_ABI_MISMATCH, ==, 3);
  g_assert_true (G_TYPE_IS_ENUM (QUARK_TYPE_ERROR));
  g_assert_true (G_TYPE_IS_ENUM (QUARK_TYPE_CONFIG_ERROR));
  g_assert_true (G_TYPE_IS_ENUM (QUARK_TYPE_BACKEND_ERROR));
}

static void
test_version (void)
{
  g_assert_true (QUARK_CHECK_VERSION (0, 0, 0));
  g_assert_false (QUARK_CHECK_VERSION (QUARK_MAJOR_VERSION + 1, 0, 0));
  g_assert_cmpint (QUARK_BACKEND_ABI_VERSION, >=, 1);
  g_assert_cmpstr (QUARK_API_VERSION_S, ==, "1.0");
}

static void
test_json_strict (void)
{
  static const char *valid[] = {
    "{}", "[]", "0", "-0", "1.5e-3", "\"\\u00e9\\ud83d\\ude00\"", "  {\"a\": [1, 2, {\"b\": null}]}\n",
    "true", "9223372036854775807", "-9223372036854775808",
  };
  for (guint i = 0; i < G_N_ELEMENTS (valid); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) node = quark_json_parse (valid[i], -1, "t", &error);
      g_assert_no_error (error);
      g_assert_nonnull (node);
    }

  {
    GString *deep = g_string_new (NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) node = NULL;
    for (guint i = 0; i < QUARK_JSON_MAX_DEPTH + 1; i++)
      g_string_append_c (deep, '[');
    for (guint i = 0; i < QUARK_JSON_MAX_DEPTH + 1; i++)
      g_string_append_c (deep, ']');
    node = quark_json_parse (deep->str, -1, "deep", &error);
    g_assert_null (node);
    g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_PARSE);
    g_string_free (deep, TRUE);
  }
  {
    g_autoptr(GError) error = NULL;
    g_assert_null (quark_json_parse ("{\"a\": 01}", -1, "t", &error));
    g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_PARSE);
  }
  {
    g_autoptr(GError) error = NULL;
    g_assert_null (quark_json_parse ("\"a\0b\"", 5, "t", &error));
    g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_PARSE);
  }
  {
    g_autofree char *p = quark_json_path_join ("layer_quant_config", "*.k_proj");
    g_autofree char *q = quark_json_path_join (NULL, "weight");
    g_autofree char *r = quark_json_path_index ("exclude", 3);
    g_assert_cmpstr (p, ==, "layer_quant_config[\"*.k_proj\"]");
    g_assert_cmpstr (q, ==, "weight");
    g_assert_cmpstr (r, ==, "exclude[3]");
  }
}

/* Tensor buffers: 64 KiB or more comes from the pool and is handed out
 * again once given back (directly or by the last reference of its GBytes);
 * less is plain g_malloc() memory; any g_malloc() memory may be given back. */
static gpointer
buffer_churn (gpointer data)
{
  for (guint i = 0; i < 200; i++)
    {
      gsize size = ((gsize) 1 << 20) + 4096 * (i % 7);
      guint8 *p = quark_buffer_alloc (size);
      p[0] = (guint8) i;
      p[size - 1] = (guint8) i;
      g_assert_cmpuint (p[0], ==, p[size - 1]);
      if (i % 2)
        quark_buffer_free (p);
      else
        g_bytes_unref (quark_buffer_to_bytes (p, size));
    }
  return data;
}

static void
test_buffer_pool (void)
{
  gsize big = 3u << 20;
  guint8 *a = quark_buffer_alloc (big), *b, *small;
  GBytes *bytes;
  GThread *threads[4];

  g_assert_cmpuint (GPOINTER_TO_SIZE (a) % (2u << 20), ==, 0);
  memset (a, 7, big);
  quark_buffer_free (a);
  b = quark_buffer_alloc (big - 1000);           /* about the same size: the same buffer */
  g_assert_true (b == a);
  bytes = quark_buffer_to_bytes (b, big - 1000);
  g_assert_cmpuint (g_bytes_get_size (bytes), ==, big - 1000);
  g_bytes_unref (bytes);                         /* back to the pool */
  a = quark_buffer_alloc (big);
  g_assert_true (a == b);
  b = quark_buffer_alloc (big);                  /* the first is in use: another one */
  g_assert_true (b != a);
  quark_buffer_free (a);
  quark_buffer_free (b);
  a = quark_buffer_alloc (big / 2);              /* under half the idle ones: a new buffer */
  g_assert_true (a != b && GPOINTER_TO_SIZE (a) % (2u << 20) == 0);
  quark_buffer_free (a);

  /* from 256 KiB to 2 MiB one huge page serves any size: keys, values and
   * scales of different sizes share it */
  a = quark_buffer_alloc (300u << 10);
  g_assert_cmpuint (GPOINTER_TO_SIZE (a) % (2u << 20), ==, 0);
  memset (a, 1, 300u << 10);
  quark_buffer_free (a);
  b = quark_buffer_alloc (1500u << 10);
  g_assert_true (b == a);
  memset (b, 2, 1500u << 10);
  quark_buffer_free (b);
  /* below 256 KiB, powers of two, of their own */
  a = quark_buffer_alloc (100u << 10);
  g_assert_true (a != b);
  memset (a, 3, 100u << 10);
  quark_buffer_free (a);
  small = quark_buffer_alloc (120u << 10);       /* the same 128 KiB buffer */
  g_assert_true (small == a);
  quark_buffer_free (small);

  small = quark_buffer_alloc (100);
  small[99] = 1;
  quark_buffer_free (small);
  g_bytes_unref (quark_buffer_to_bytes (g_malloc (64), 64));   /* g_malloc() memory */
  quark_buffer_free (NULL);

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("churn", buffer_churn, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  quark_buffer_trim ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/core/dtype/table", test_dtype_table);
  g_test_add_func ("/core/dtype/integer-ranges", test_integer_ranges);
  g_test_add_func ("/core/dtype/half-conversions-exhaustive", test_half_conversions_exhaustive);
  g_test_add_func ("/core/tensor/basics", test_tensor);
  g_test_add_func ("/core/tensor/buffer-pool", test_buffer_pool);
  g_test_add_func ("/core/tensor/zero-copy-and-floats", test_tensor_zero_copy_and_floats);
  g_test_add_func ("/core/model", test_model);
  g_test_add_func ("/core/error-domains", test_error_domains);
  g_test_add_func ("/core/version", test_version);
  g_test_add_func ("/core/json/strict", test_json_strict);

  return g_test_run ();
}
