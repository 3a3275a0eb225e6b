/* test-config.c: loading, validating and querying configs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark.h>

#include <string.h>

typedef struct {
  const char *file;
  const char *domain;     /* "config", "backend" or "quark" */
  int code;
  const char *fragment;   /* must appear in the message */
} InvalidCase;

static const InvalidCase invalid_cases[] = {
  { "unknown-top-key", "config", QUARK_CONFIG_ERROR_UNKNOWN_KEY, "algo: unknown key" },
  { "unknown-spec-key", "config", QUARK_CONFIG_ERROR_UNKNOWN_KEY, "global_quant_config.weight.bit_width: unknown key (expected one of: dtype, qscheme, ch_axis, group_size, block_size, symmetric, is_dynamic, round_method, scale_type, scale_format, scale_calculation_mode, mx_element_dtype, observer_cls" },
  { "brevitas-key-narrow-range", "config", QUARK_CONFIG_ERROR_UNKNOWN_KEY, "global_quant_config.weight.narrow_range: unknown key" },
  { "unknown-layer-key", "config", QUARK_CONFIG_ERROR_UNKNOWN_KEY, "global_quant_config.weights: unknown key" },
  { "bad-dtype", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.dtype: unknown value \"int9\"" },
  { "bad-qscheme", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.qscheme: unknown value \"per_row\"" },
  { "group-size-negative", "config", QUARK_CONFIG_ERROR_OUT_OF_RANGE, "global_quant_config.weight.group_size: expected an integer from -1 to 2147483647, got -3" },
  { "group-size-string", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "global_quant_config.weight.group_size: expected an integer from -1 to 2147483647, got a string" },
  { "group-size-float", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "global_quant_config.weight.group_size: expected an integer" },
  { "ch-axis-range", "config", QUARK_CONFIG_ERROR_OUT_OF_RANGE, "global_quant_config.weight.ch_axis: expected an integer from -8 to 7, got 9" },
  { "symmetric-string", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "global_quant_config.weight.symmetric: expected true or false, got a string" },
  { "spec-not-object", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "global_quant_config.weight: expected an object, got a string" },
  { "missing-backend", "config", QUARK_CONFIG_ERROR_MISSING_KEY, "backend: missing" },
  { "unknown-backend", "backend", QUARK_BACKEND_ERROR_NOT_FOUND, "backend: unknown backend \"tensorrt\" (registered backends: quark" },
  { "backend-not-string", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "backend: expected a string" },
  { "missing-global", "config", QUARK_CONFIG_ERROR_MISSING_KEY, "global_quant_config: missing" },
  { "per-group-no-size", "config", QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.group_size: qscheme per_group needs" },
  { "float-dtype", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.dtype: float32 is not a quantized element type" },
  { "unsupported-bias", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "global_quant_config.bias: bias quantization is not supported" },
  { "unsupported-per-block", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "global_quant_config.weight.qscheme: per_block applies to integer and fp8 weights" },
  { "per-block-no-size", "config", QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.block_size: qscheme per_block needs block_size" },
  { "block-size-float", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "global_quant_config.weight.block_size[1]: expected an integer, got a number" },
  { "fp4-per-tensor", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "global_quant_config.weight.qscheme: fp4 weights are quantized per_group" },
  { "mx-per-tensor", "config", QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.qscheme: e8m0 (OCP MX) scales need qscheme per_group" },
  { "group-axis-0", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "global_quant_config.weight.ch_axis: the quark backend groups along the last axis" },
  { "dynamic-weight", "config", QUARK_CONFIG_ERROR_INVALID_COMBINATION, "global_quant_config.weight.is_dynamic" },
  { "bad-layer-type", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "layer_type_quant_config.Lienar: unknown layer type" },
  { "bad-regex", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "exclude[0]: invalid regular expression" },
  { "exclude-not-string", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "exclude[1]: expected a string" },
  { "nested-error-path", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "layer_quant_config[\"*.k_proj\"].weight.round_method: expected one of: half_even, round, floor" },
  { "bad-observer", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.observer_cls: \"KLObserver\" is not supported" },
  { "mx-without-element", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "global_quant_config.weight.mx_element_dtype: dtype mx needs" },
  { "scale-quant", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "global_quant_config.weight.is_scale_quant: two-stage scale quantization" },
  { "algo-config", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "algo_config[0].name: the quarot algorithm is not implemented" },
  { "algo-config-unknown", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "algo_config[0].name: unknown algorithm \"gtpq\"" },
  { "quant-method", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "quant_method: expected \"quark\"" },
  { "pack-method", "config", QUARK_CONFIG_ERROR_INVALID_VALUE, "export.pack_method: unknown value \"zigzag\"" },
  { "two-stage", "quark", QUARK_ERROR_UNSUPPORTED_SCHEME, "global_quant_config.weight: two-stage specs" },
  { "syntax-trailing-comma", "config", QUARK_CONFIG_ERROR_PARSE, ":1:21: trailing comma in an object" },
  { "syntax-comment", "config", QUARK_CONFIG_ERROR_PARSE, ":1:13: comments are not allowed" },
  { "syntax-single-quote", "config", QUARK_CONFIG_ERROR_PARSE, ":1:2: expected a member name in double quotes" },
  { "syntax-hex", "config", QUARK_CONFIG_ERROR_PARSE, "expected ',' or '}' in an object" },
  { "syntax-trailing-text", "config", QUARK_CONFIG_ERROR_PARSE, "trailing text after the JSON value" },
  { "syntax-big-int", "config", QUARK_CONFIG_ERROR_OUT_OF_RANGE, "global_quant_config.weight.group_size: integer 9223372036854775808 does not fit in 64 bits" },
  { "syntax-huge-double", "config", QUARK_CONFIG_ERROR_OUT_OF_RANGE, "x: number 1e400 is too large" },
  { "syntax-duplicate-key", "config", QUARK_CONFIG_ERROR_DUPLICATE_KEY, ":1:22: backend: duplicate key" },
  { "syntax-empty", "config", QUARK_CONFIG_ERROR_PARSE, "unexpected end of input" },
  { "syntax-root-array", "config", QUARK_CONFIG_ERROR_TYPE_MISMATCH, "(root): expected an object" },
  { "syntax-unterminated", "config", QUARK_CONFIG_ERROR_PARSE, "unterminated string" },
  { "syntax-lone-surrogate", "config", QUARK_CONFIG_ERROR_PARSE, "unpaired high surrogate" },
  { "syntax-bad-utf8", "config", QUARK_CONFIG_ERROR_PARSE, "invalid UTF-8" },
};

static GQuark
domain_of (const char *name)
{
  if (g_str_equal (name, "config"))
    return QUARK_CONFIG_ERROR;
  if (g_str_equal (name, "backend"))
    return QUARK_BACKEND_ERROR;
  return QUARK_ERROR;
}

static void
test_invalid (gconstpointer data)
{
  const InvalidCase *c = data;
  g_autofree char *base = g_strconcat (c->file, ".json", NULL);
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", "invalid", base, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autofree char *before = NULL, *after = NULL;
  gsize before_len, after_len;

  g_assert_true (g_file_get_contents (path, &before, &before_len, NULL));

  config = quark_registry_config_from_file (quark_registry_get_default (), path, &error);
  g_assert_null (config);
  g_assert_error (error, domain_of (c->domain), c->code);
  g_test_message ("%s", error->message);
  /* the message starts with the file name and names the JSON path */
  g_assert_true (g_str_has_prefix (error->message, path));
  if (strstr (error->message, c->fragment) == NULL)
    g_error ("message \"%s\" lacks \"%s\"", error->message, c->fragment);

  /* the input is never modified */
  g_assert_true (g_file_get_contents (path, &after, &after_len, NULL));
  g_assert_cmpmem (before, before_len, after, after_len);
}

static void
test_invalid_corpus_complete (void)
{
  /* every file under data/invalid has a row, so none goes unchecked */
  g_autofree char *dir_path = g_test_build_filename (G_TEST_DIST, "data", "invalid", NULL);
  g_autoptr(GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *name;
  guint n = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      gboolean found = FALSE;
      for (guint i = 0; i < G_N_ELEMENTS (invalid_cases); i++)
        {
          g_autofree char *base = g_strconcat (invalid_cases[i].file, ".json", NULL);
          found |= g_str_equal (base, name);
        }
      if (!found)
        g_error ("data/invalid/%s has no row in the table", name);
      n++;
    }
  g_assert_cmpuint (n, ==, G_N_ELEMENTS (invalid_cases));
}

static QuarkQuantizationConfig *
load_valid (const char *name)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", "valid", name, NULL);
  g_autoptr(GError) error = NULL;
  QuarkQuantizationConfig *config;

  config = quark_registry_config_from_file (quark_registry_get_default (), path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (config);
  return config;
}

static void
test_valid_roundtrip (void)
{
  const char *files[] = { "int8-per-channel.json", "precedence.json", "asymmetric-uint8.json",
                          "quark-export-int4-wo-128.json", "quark-mxfp4-legacy-mx.json" };

  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autoptr(QuarkQuantizationConfig) config = load_valid (files[i]);
      g_autoptr(QuarkQuantizationConfig) again = NULL;
      g_autofree char *text = quark_quantization_config_to_string (config);
      g_autofree char *text2 = NULL;
      g_autoptr(GError) error = NULL;

      g_assert_cmpstr (quark_quantization_config_get_backend_name (config), ==, "quark");
      again = quark_registry_config_from_string (quark_registry_get_default (), text, -1, &error);
      g_assert_no_error (error);
      text2 = quark_quantization_config_to_string (again);
      g_assert_cmpstr (text, ==, text2);
      g_assert_true (g_str_has_prefix (text, "{\n  \"backend\" : \"quark\""));
    }
}

static void
assert_spec (QuarkQuantizationConfig *config,
             const char              *layer,
             const char              *type,
             QuarkRole                role,
             int                      expected_dtype)  /* -1: no spec */
{
  g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (config, layer, type, role);

  if (expected_dtype < 0)
    {
      if (spec != NULL)
        g_error ("%s (%s) role %d: expected no spec, got %s", layer, type, role,
                 quark_dtype_get_name (quark_tensor_spec_get_dtype (spec)));
      return;
    }
  if (spec == NULL)
    g_error ("%s (%s) role %d: expected %s, got no spec", layer, type, role,
             quark_dtype_get_name (expected_dtype));
  g_assert_cmpint (quark_tensor_spec_get_dtype (spec), ==, expected_dtype);
}

static void
test_precedence (void)
{
  g_autoptr(QuarkQuantizationConfig) config = load_valid ("precedence.json");

  /* global */
  assert_spec (config, "model.layers.1.self_attn.q_proj", "Linear", QUARK_ROLE_WEIGHT, QUARK_DTYPE_I8);
  assert_spec (config, "model.layers.1.self_attn.q_proj", "Linear", QUARK_ROLE_INPUT, QUARK_DTYPE_I8);
  assert_spec (config, "model.layers.1.self_attn.q_proj", "Linear", QUARK_ROLE_OUTPUT, -1);
  assert_spec (config, "model.layers.1.self_attn.q_proj", "Linear", QUARK_ROLE_BIAS, -1);
  /* type beats global */
  assert_spec (config, "vision.conv1", "Conv2d", QUARK_ROLE_WEIGHT, QUARK_DTYPE_U8);
  /* a type entry's missing input spec inherits the global one */
  assert_spec (config, "vision.conv1", "Conv2d", QUARK_ROLE_INPUT, QUARK_DTYPE_I8);
  /* name beats type and global; the first matching pattern wins */
  assert_spec (config, "model.layers.1.mlp.down_proj", "Linear", QUARK_ROLE_WEIGHT, QUARK_DTYPE_INT4);
  assert_spec (config, "model.layers.0.mlp.down_proj", "Linear", QUARK_ROLE_WEIGHT, QUARK_DTYPE_INT4);
  assert_spec (config, "model.layers.0.mlp.up_proj", "Linear", QUARK_ROLE_WEIGHT, QUARK_DTYPE_I16);
  assert_spec (config, "model.layers.0.conv", "Conv2d", QUARK_ROLE_WEIGHT, QUARK_DTYPE_I16);
  /* null in a name entry inherits */
  assert_spec (config, "model.layers.1.mlp.down_proj", "Linear", QUARK_ROLE_INPUT, QUARK_DTYPE_I8);
  /* without a type, the type level is skipped */
  assert_spec (config, "vision.conv1", NULL, QUARK_ROLE_WEIGHT, QUARK_DTYPE_I8);
  /* exclude beats everything: exact (with submodules), regex, glob */
  assert_spec (config, "lm_head", "Linear", QUARK_ROLE_WEIGHT, -1);
  assert_spec (config, "lm_head.inner", "Linear", QUARK_ROLE_WEIGHT, -1);
  assert_spec (config, "lm_headx", "Linear", QUARK_ROLE_WEIGHT, QUARK_DTYPE_I8);
  assert_spec (config, "model.layers.3.mlp.gate", "Linear", QUARK_ROLE_WEIGHT, -1);
  assert_spec (config, "model.layers.3.mlp.gate_proj", "Linear", QUARK_ROLE_WEIGHT, QUARK_DTYPE_I8);
  assert_spec (config, "model.embed_tokens", "Linear", QUARK_ROLE_WEIGHT, -1);
  assert_spec (config, "model.layers.0.mlp.down_proj", "Linear", QUARK_ROLE_INPUT, QUARK_DTYPE_I8);
  g_assert_true (quark_quantization_config_is_excluded (config, "lm_head"));
  g_assert_false (quark_quantization_config_is_excluded (config, "model.norm"));
}

static void
test_patterns (void)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (quark_pattern_match ("lm_head", "lm_head"));
  g_assert_true (quark_pattern_match ("lm_head", "lm_head.0"));
  g_assert_false (quark_pattern_match ("lm_head", "lm_head2"));
  g_assert_false (quark_pattern_match ("lm_head", "model.lm_head"));
  g_assert_true (quark_pattern_match ("*.k_proj", "model.layers.0.self_attn.k_proj"));
  g_assert_false (quark_pattern_match ("*.k_proj", "model.layers.0.self_attn.q_proj"));
  g_assert_true (quark_pattern_match ("layers.?.mlp", "layers.3.mlp"));
  g_assert_true (quark_pattern_match ("re:model\\.layers\\.[0-9]+\\.mlp", "model.layers.12.mlp.up"));
  g_assert_false (quark_pattern_match ("re:layers", "model.layers"));   /* anchored at the start */
  g_assert_false (quark_pattern_match ("re:(", "("));
  g_assert_false (quark_pattern_validate ("", &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE);
}

static void
test_default_config (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkTensorSpec) spec = NULL;

  config = quark_registry_new_config (quark_registry_get_default (), "quark", &error);
  g_assert_no_error (error);
  g_assert_true (quark_quantization_config_validate (config, &error));
  spec = quark_quantization_config_get_tensor_spec (config, "fc", "Linear", QUARK_ROLE_WEIGHT);
  g_assert_nonnull (spec);
  g_assert_cmpint (quark_tensor_spec_get_dtype (spec), ==, QUARK_DTYPE_I8);
  g_assert_cmpint (quark_tensor_spec_get_qscheme (spec), ==, QUARK_QSCHEME_PER_CHANNEL);
  g_assert_true (quark_tensor_spec_get_symmetric (spec));

  g_assert_null (quark_registry_new_config (quark_registry_get_default (), "nope", &error));
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_NOT_FOUND);
}

static void
test_string_source (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;

  config = quark_registry_config_from_string (quark_registry_get_default (),
    "{\"backend\":\"quark\",\"global_quant_config\":{\"weight\":{\"dtype\":\"int8\",\"group_size\":-7}}}", -1, &error);
  g_assert_null (config);
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE);
  g_assert_true (g_str_has_prefix (error->message, "global_quant_config.weight.group_size: "));
  g_clear_error (&error);

  config = quark_registry_config_from_string (quark_registry_get_default (), "{\"a\" 1}", -1, &error);
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_PARSE);
  g_assert_true (g_str_has_prefix (error->message, "<data>:1:6: "));
}

static void
test_spec_validate (void)
{
  g_autoptr(QuarkTensorSpec) spec = quark_tensor_spec_new (QUARK_DTYPE_F8_E4M3, QUARK_QSCHEME_PER_TENSOR);
  g_autoptr(QuarkTensorSpec) copy = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_true (quark_tensor_spec_validate (spec, "w", &error));
  g_object_set (spec, "narrow-range", TRUE, NULL);
  g_assert_false (quark_tensor_spec_validate (spec, "w", &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_COMBINATION);
  g_assert_cmpstr (error->message, ==, "w.narrow_range: narrow range applies to integer dtypes, not fp8_e4m3");
  copy = quark_tensor_spec_copy (spec);
  g_assert_true (quark_tensor_spec_equal (spec, copy));
  g_object_set (copy, "ch-axis", -1, NULL);
  g_assert_false (quark_tensor_spec_equal (spec, copy));
}

/* Every preset of every backend loads and validates; an unknown name lists
 * the presets. */
static void
test_presets (void)
{
  g_autoptr(GPtrArray) backends = quark_registry_list_backends (quark_registry_get_default ());
  guint total = 0;

  for (guint b = 0; b < backends->len; b++)
    {
      QuarkBackend *backend = g_ptr_array_index (backends, b);
      g_auto(GStrv) names = quark_backend_list_presets (backend);
      for (guint i = 0; names[i]; i++)
        {
          g_autoptr(GError) error = NULL;
          g_autoptr(QuarkQuantizationConfig) config = quark_backend_new_config_for_preset (backend, names[i], &error);
          if (config == NULL)
            g_error ("preset %s of %s: %s", names[i], quark_backend_get_name (backend), error->message);
          g_assert_nonnull (quark_backend_get_preset_description (backend, names[i]));
          g_assert_true (quark_quantization_config_is_excluded (config, "lm_head"));
          total++;
        }
    }
  g_assert_cmpuint (total, >=, 14);
  {
    QuarkBackend *quark = quark_registry_lookup_backend (quark_registry_get_default (), "quark");
    g_autoptr(GError) error = NULL;
    g_autoptr(QuarkQuantizationConfig) int4 = quark_backend_new_config_for_preset (quark, "int4_wo_128", NULL);
    g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (int4, "model.layers.0.mlp.up_proj",
                                                                                  "Linear", QUARK_ROLE_WEIGHT);
    g_assert_cmpint (quark_tensor_spec_get_dtype (spec), ==, QUARK_DTYPE_INT4);
    g_assert_cmpint (quark_tensor_spec_get_group_size (spec), ==, 128);
    g_assert_null (quark_backend_new_config_for_preset (quark, "int3_magic", &error));
    g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE);
    g_assert_nonnull (strstr (error->message, "presets: int8, fp8, ptpc_fp8"));
  }
}

/* quark_json_to_string writes what quark_json_parse reads back equal,
 * including the doubles json-glib's generator spells as invalid JSON
 * ("2e+20.0", found by the json fuzz target). */
static void
test_json_writer_roundtrip (void)
{
  const char *inputs[] = {
    "2E20", "[1e300, -0.0, 0.1, 5e-324, 1.7976931348623157e308, 3.0, 12345678901234567]",
    "{\"a\\u00e9\\n\\\"\\u0001\": [true, false, null, {}], \"b\": -9223372036854775808, \"c\": \"\\ud83d\\ude00\"}",
    "{\"nested\": {\"x\": [[], [1, [2.5]]]}}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (inputs); i++)
    for (int pretty = 0; pretty <= 1; pretty++)
      {
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) node = quark_json_parse (inputs[i], -1, "input", &error);
        g_autofree char *text = NULL;
        g_autoptr(JsonNode) again = NULL;

        g_assert_no_error (error);
        text = quark_json_to_string (node, pretty);
        again = quark_json_parse (text, -1, "written", &error);
        g_assert_no_error (error);
        g_assert_true (json_node_equal (node, again));
      }
  {
    g_autoptr(JsonNode) node = quark_json_parse ("[2E20, 7, 0.5]", -1, "input", NULL);
    g_autofree char *text = quark_json_to_string (node, FALSE);
    g_assert_cmpstr (text, ==, "[2e+20,7,0.5]");
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (invalid_cases); i++)
    {
      g_autofree char *test_path = g_strdup_printf ("/config/invalid/%s", invalid_cases[i].file);
      g_test_add_data_func (test_path, &invalid_cases[i], test_invalid);
    }
  g_test_add_func ("/config/invalid-corpus-complete", test_invalid_corpus_complete);
  g_test_add_func ("/config/valid-roundtrip", test_valid_roundtrip);
  g_test_add_func ("/config/precedence", test_precedence);
  g_test_add_func ("/config/patterns", test_patterns);
  g_test_add_func ("/config/default", test_default_config);
  g_test_add_func ("/config/string-source", test_string_source);
  g_test_add_func ("/config/spec-validate", test_spec_validate);
  g_test_add_func ("/config/presets", test_presets);
  g_test_add_func ("/config/json-writer-roundtrip", test_json_writer_roundtrip);

  return g_test_run ();
}
