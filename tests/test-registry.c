/* test-registry.c: module discovery, broken modules, runtime registration
 *
 * Runs with QUARK_BACKEND_PATH = <quark backend dir>:<tests/modules> and no
 * system directory, so it sees exactly the in-tree modules.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark.h>

#include <string.h>
#include <glib/gstdio.h>

static QuarkBackendModule *
find_module (const char *file)
{
  g_autoptr(GPtrArray) modules = quark_registry_list_modules (quark_registry_get_default ());

  for (guint i = 0; i < modules->len; i++)
    {
      QuarkBackendModule *m = g_ptr_array_index (modules, i);
      g_autofree char *base = g_path_get_basename (quark_backend_module_get_path (m));
      if (g_str_equal (base, file))
        return m;
    }
  g_error ("module %s was not tried", file);
}

static void
test_backends_listed (void)
{
  g_autoptr(GPtrArray) backends = quark_registry_list_backends (quark_registry_get_default ());
  g_autoptr(GString) names = g_string_new (NULL);

  for (guint i = 0; i < backends->len; i++)
    g_string_append_printf (names, "%s ", quark_backend_get_name (g_ptr_array_index (backends, i)));
  /* quark and brevitas from the first two directories (QUARK_BACKEND_PATH
   * order); test-good and test-unavailable from the third, in file order;
   * the broken ones nowhere */
  g_assert_cmpstr (names->str, ==, "quark brevitas test-good test-unavailable ");
}

static void
test_quark_backend_metadata (void)
{
  QuarkBackend *quark = quark_registry_lookup_backend (quark_registry_get_default (), "quark");
  g_autoptr(JsonNode) description = NULL;
  g_autofree char *text = NULL;
  guint n;

  g_assert_nonnull (quark);
  g_assert_cmpstr (quark_backend_get_version (quark), ==, QUARK_VERSION_S);
  g_assert_nonnull (quark_backend_get_description (quark));
  g_assert_true (g_str_has_suffix (quark_backend_get_module_path (quark), "libquark-backend-quark.so"));
  g_assert_true (quark_backend_supports_dtype (quark, QUARK_DTYPE_I8));
  g_assert_false (quark_backend_supports_dtype (quark, QUARK_DTYPE_F32));
  g_assert_cmpuint (quark_backend_get_supported_qschemes (quark, &n)[0], ==, QUARK_QSCHEME_PER_TENSOR);
  g_assert_true (quark_backend_is_registered (quark));
  g_assert_true (quark_backend_check_available (quark, NULL));

  description = quark_backend_describe (quark);
  text = json_to_string (description, FALSE);
  g_assert_nonnull (strstr (text, "\"name\":\"quark\""));
  g_assert_nonnull (strstr (text, "\"qschemes\":[\"per_tensor\",\"per_channel\",\"per_group\",\"per_block\"]"));
  g_assert_nonnull (strstr (text, "{\"name\":\"int4_wo_128\",\"description\":"));
  g_assert_nonnull (strstr (text, "\"available\":true"));
}

static void
assert_module_error (const char *file, int code, const char *fragment)
{
  QuarkBackendModule *module = find_module (file);
  const GError *error = quark_backend_module_get_error (module);

  g_assert_nonnull (error);
  g_test_message ("%s: %s", file, error->message);
  g_assert_error ((GError *) error, QUARK_BACKEND_ERROR, code);
  g_assert_nonnull (strstr (error->message, file));
  if (strstr (error->message, fragment) == NULL)
    g_error ("\"%s\" lacks \"%s\"", error->message, fragment);
}

static void
test_broken_modules (void)
{
  assert_module_error ("libquark-test-noentry.so", QUARK_BACKEND_ERROR_NO_ENTRY_POINT,
                       "quark_test_noentry_register");
  assert_module_error ("libquark-test-wrongabi.so", QUARK_BACKEND_ERROR_ABI_MISMATCH,
                       "rebuild the module or remove the file");
  assert_module_error ("libquark-test-noabi.so", QUARK_BACKEND_ERROR_ABI_MISMATCH,
                       "quark_backend_module_check_abi");
  assert_module_error ("libquark-test-fails.so", QUARK_BACKEND_ERROR_LOAD_FAILED, "deliberately broken");
  assert_module_error ("libquark-test-garbage.so", QUARK_BACKEND_ERROR_LOAD_FAILED, "cannot load module");
  assert_module_error ("libquark-test-duplicate.so", QUARK_BACKEND_ERROR_DUPLICATE, "already registered");

  g_assert_false (quark_backend_module_is_loaded (find_module ("libquark-test-wrongabi.so")));
  g_assert_cmpuint (quark_backend_module_get_abi_version (find_module ("libquark-test-wrongabi.so")), ==,
                    QUARK_BACKEND_ABI_VERSION + 1);
  g_assert_true (quark_backend_module_is_loaded (find_module ("libquark-test-good.so")));
  g_assert_null (quark_backend_module_get_error (find_module ("libquark-test-good.so")));
  g_assert_null (quark_registry_lookup_backend (quark_registry_get_default (), "test-noabi"));

  /* the surviving quark backend is the real one */
  g_assert_true (g_str_has_suffix (quark_backend_get_module_path (
                   quark_registry_lookup_backend (quark_registry_get_default (), "quark")),
                   "libquark-backend-quark.so"));
}

static void
test_unavailable (void)
{
  QuarkBackend *backend = quark_registry_lookup_backend (quark_registry_get_default (), "test-unavailable");
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(JsonNode) description = NULL;

  g_assert_nonnull (backend);
  g_assert_false (quark_backend_check_available (backend, &error));
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (error->message, "needs a device this machine lacks"));
  g_clear_error (&error);

  config = quark_registry_config_from_string (quark_registry_get_default (),
                                              "{\"backend\": \"test-unavailable\"}", -1, &error);
  g_assert_null (config);
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_UNAVAILABLE);

  description = quark_backend_describe (backend);
  g_assert_false (json_object_get_boolean_member (json_node_get_object (description), "available"));
}

/* The interface defaults, through a backend that overrides almost nothing. */
static void
test_interface_defaults (void)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkQuantizationConfig) again = NULL;
  g_autoptr(QuarkTensorSpec) spec = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autofree char *text = NULL;
  guint bits = 0;

  config = quark_registry_config_from_string (registry,
    "{\"backend\": \"test-good\", \"bit_width\": 4, \"scheme\": \"per_channel\", \"note\": null}", -1, &error);
  g_assert_no_error (error);
  g_object_get (config, "bit-width", &bits, NULL);
  g_assert_cmpuint (bits, ==, 4);
  g_assert_cmpstr (quark_quantization_config_get_backend_name (config), ==, "test-good");
  spec = quark_quantization_config_get_tensor_spec (config, "fc", "Linear", QUARK_ROLE_WEIGHT);
  g_assert_cmpint (quark_tensor_spec_get_dtype (spec), ==, QUARK_DTYPE_INT4);
  g_assert_null (quark_quantization_config_get_tensor_spec (config, "fc", "Linear", QUARK_ROLE_INPUT));

  text = quark_quantization_config_to_string (config);
  g_assert_nonnull (strstr (text, "\"bit_width\" : 4"));
  g_assert_nonnull (strstr (text, "\"scheme\" : \"per_channel\""));
  again = quark_registry_config_from_string (registry, text, -1, &error);
  g_assert_no_error (error);

  g_assert_null (quark_registry_config_from_string (registry,
                 "{\"backend\": \"test-good\", \"bit_width\": 17}", -1, &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE);
  g_assert_cmpstr (error->message, ==, "bit_width: expected an integer from 2 to 16, got 17");
  g_clear_error (&error);
  g_assert_null (quark_registry_config_from_string (registry,
                 "{\"backend\": \"test-good\", \"bits\": 4}", -1, &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_UNKNOWN_KEY);
  g_assert_cmpstr (error->message, ==, "bits: unknown key (expected one of: bit_width, scheme, note)");
  g_clear_error (&error);

  quantizer = quark_registry_new_quantizer (registry, config, &error);
  g_assert_no_error (error);
  g_assert_true (quark_model_quantizer_get_config (quantizer) == config);
}

/* Runtime registration from code. */
#define CODE_TYPE_CONFIG (code_config_get_type ())
G_DECLARE_FINAL_TYPE (CodeConfig, code_config, CODE, CONFIG, GObject)
struct _CodeConfig { GObject parent_instance; };
static void code_config_iface_init (QuarkQuantizationConfigInterface *iface) { }
G_DEFINE_FINAL_TYPE_WITH_CODE (CodeConfig, code_config, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_QUANTIZATION_CONFIG, code_config_iface_init))
static void code_config_class_init (CodeConfigClass *klass) { }
static void code_config_init (CodeConfig *self) { }

static void
test_runtime_registration (void)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  GType quantizer_type = quark_backend_get_quantizer_type (
    quark_registry_lookup_backend (registry, "test-good"));
  g_autoptr(QuarkBackend) backend = quark_backend_new ("from-code", CODE_TYPE_CONFIG, quantizer_type);
  g_autoptr(QuarkBackend) dup = quark_backend_new ("from-code", CODE_TYPE_CONFIG, quantizer_type);
  g_autoptr(QuarkBackend) bad_type = quark_backend_new ("bad-type", G_TYPE_OBJECT, quantizer_type);
  g_autoptr(QuarkBackend) bad_name = quark_backend_new ("Bad Name", CODE_TYPE_CONFIG, quantizer_type);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;

  g_assert_true (quark_registry_add_backend (registry, backend, &error));
  g_assert_no_error (error);
  g_assert_null (quark_backend_get_module_path (backend));
  g_assert_true (quark_registry_lookup_backend (registry, "from-code") == backend);

  g_assert_false (quark_registry_add_backend (registry, dup, &error));
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_DUPLICATE);
  g_clear_error (&error);
  g_assert_false (quark_registry_add_backend (registry, bad_type, &error));
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (quark_registry_add_backend (registry, bad_name, &error));
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID);
  g_clear_error (&error);

  /* the default loader of a config without properties refuses every key */
  config = quark_registry_config_from_string (registry, "{\"backend\": \"from-code\"}", -1, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (quark_quantization_config_get_backend_name (config), ==, "from-code");
  g_assert_null (quark_registry_config_from_string (registry, "{\"backend\": \"from-code\", \"x\": 1}", -1, &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_UNKNOWN_KEY);
}

static void
test_search_path (void)
{
  g_auto(GStrv) path = quark_registry_get_search_path (quark_registry_get_default ());
  g_auto(GStrv) env = g_strsplit (g_getenv ("QUARK_BACKEND_PATH"), ":", -1);

  /* QUARK_BACKEND_SYSTEM_PATH is empty in the test environment */
  g_assert_cmpstrv (path, env);
}

static void
test_entry_names (void)
{
  /* the file-derived entry point name is documented; pin it through the
   * error message of a module without one */
  const GError *error = quark_backend_module_get_error (find_module ("libquark-test-noentry.so"));
  g_assert_nonnull (strstr (error->message, "neither quark_test_noentry_register nor quark_backend_module_register"));
}

/* A backend that sets no metadata gets the input's config.json with its
 * config's quantization_config, in memory and on disk. */
static void
test_default_metadata (void)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = quark_registry_config_from_string (
    registry, "{\"backend\": \"test-good\", \"bit_width\": 8}", -1, &error);
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) out = NULL, back = NULL;
  g_autoptr(QuarkCheckpointWriter) writer = NULL;
  g_autoptr(JsonNode) meta = quark_json_parse ("{\"model_type\": \"llama\"}", -1, NULL, NULL);
  g_autofree char *tmp = g_dir_make_tmp ("quark-registry-XXXXXX", NULL);
  g_autofree char *dir = g_build_filename (tmp, "out", NULL);
  const float w[4] = { 1, 2, 3, 4 };
  const gint64 shape[2] = { 2, 2 };
  g_autoptr(QuarkTensor) t = quark_tensor_new_from_floats ("fc.weight", shape, 2, w, 4, NULL);
  JsonObject *o, *qc;

  g_assert_no_error (error);
  quark_model_add_tensor (model, t, NULL);
  quark_model_set_metadata (model, meta);
  quantizer = quark_registry_new_quantizer (registry, config, &error);
  g_assert_no_error (error);
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
  g_assert_no_error (error);
  o = json_node_get_object (quark_model_get_metadata (out));
  g_assert_cmpstr (json_object_get_string_member (o, "model_type"), ==, "llama");
  qc = json_object_get_object_member (o, "quantization_config");
  g_assert_cmpstr (json_object_get_string_member (qc, "backend"), ==, "test-good");
  g_assert_cmpint (json_object_get_int_member (qc, "bit_width"), ==, 8);

  writer = quark_checkpoint_writer_new (dir, 0, FALSE, &error);
  g_assert_no_error (error);
  quark_model_quantizer_quantize_model_to_writer (quantizer, model, NULL, writer, NULL, &error);
  g_assert_no_error (error);
  quark_checkpoint_writer_finish (writer, NULL, &error);
  g_assert_no_error (error);
  back = quark_model_load (dir, NULL, &error);
  g_assert_no_error (error);
  o = json_node_get_object (quark_model_get_metadata (back));
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (o, "quantization_config"), "backend"),
                   ==, "test-good");
  g_clear_object (&back);
  {
    g_autofree char *f1 = g_build_filename (dir, "model.safetensors", NULL);
    g_autofree char *f2 = g_build_filename (dir, "config.json", NULL);
    g_unlink (f1);
    g_unlink (f2);
    g_rmdir (dir);
    g_rmdir (tmp);
  }
}

/* Presets in one call, by name or alias, with suggestions when unknown. */
static void
test_config_for_preset (void)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) a = quark_registry_config_for_preset (registry, NULL, "fp8", &error);
  g_autoptr(QuarkQuantizationConfig) b = quark_registry_config_for_preset (registry, "quark", "w_fp8_a_fp8", &error);
  g_autoptr(QuarkQuantizationConfig) c = NULL;
  g_autoptr(JsonNode) ja = NULL, jb = NULL;
  g_auto(GStrv) aliases = NULL;

  g_assert_no_error (error);
  ja = quark_quantization_config_to_json (a);
  jb = quark_quantization_config_to_json (b);
  g_assert_true (json_node_equal (ja, jb));
  aliases = quark_backend_list_preset_aliases (quark_registry_lookup_backend (registry, "quark"), "fp8");
  g_assert_cmpstrv (aliases, ((const char * const[]) { "w_fp8_a_fp8", NULL }));

  c = quark_registry_config_for_preset (registry, NULL, "w8a8", &error);   /* brevitas's */
  g_assert_no_error (error);
  g_assert_cmpstr (quark_quantization_config_get_backend_name (c), ==, "brevitas");

  g_assert_null (quark_registry_config_for_preset (registry, NULL, "int4_wo128", &error));
  g_assert_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE);
  g_assert_nonnull (strstr (error->message, "did you mean \"int4_wo_128\"?"));
  g_clear_error (&error);
  g_assert_null (quark_registry_config_for_preset (registry, "quark", "w8a8", &error));
  g_assert_nonnull (strstr (error->message, "is a preset of the brevitas backend"));
  g_clear_error (&error);
  g_assert_null (quark_registry_config_for_preset (registry, "nosuch", "int8", &error));
  g_assert_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_NOT_FOUND);
}

/* A per_group spec groups along the last axis unless told otherwise. */
static void
test_per_group_default_axis (void)
{
  g_autoptr(QuarkTensorSpec) group = quark_tensor_spec_new (QUARK_DTYPE_INT4, QUARK_QSCHEME_PER_GROUP);
  g_autoptr(QuarkTensorSpec) channel = quark_tensor_spec_new (QUARK_DTYPE_I8, QUARK_QSCHEME_PER_CHANNEL);
  g_autoptr(QuarkTensorSpec) copy = NULL;

  g_assert_cmpint (quark_tensor_spec_get_ch_axis (group), ==, -1);
  g_assert_cmpint (quark_tensor_spec_get_ch_axis (channel), ==, 0);
  g_object_set (group, "ch-axis", 0, NULL);
  g_assert_cmpint (quark_tensor_spec_get_ch_axis (group), ==, 0);
  copy = quark_tensor_spec_copy (group);
  g_assert_cmpint (quark_tensor_spec_get_ch_axis (copy), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  /* Loading happens once, in file order within each directory; each broken
   * module produces exactly one warning, and any other warning fails. */
  g_test_expect_message ("Quark", G_LOG_LEVEL_WARNING, "Skipping backend from *libquark-test-duplicate.so: backend quark*already registered*");
  g_test_expect_message ("Quark", G_LOG_LEVEL_WARNING, "Skipping backend module: *libquark-test-fails.so: deliberately broken");
  g_test_expect_message ("Quark", G_LOG_LEVEL_WARNING, "Skipping backend module: *libquark-test-garbage.so: cannot load module*");
  g_test_expect_message ("Quark", G_LOG_LEVEL_WARNING, "Skipping backend module: *libquark-test-noabi.so*");
  g_test_expect_message ("Quark", G_LOG_LEVEL_WARNING, "Skipping backend module: *libquark-test-noentry.so: no backend entry point*");
  g_test_expect_message ("Quark", G_LOG_LEVEL_WARNING, "Skipping backend module: *libquark-test-wrongabi.so was built for backend ABI*");
  g_ptr_array_unref (quark_registry_list_backends (quark_registry_get_default ()));
  g_test_assert_expected_messages ();

  g_test_add_func ("/registry/backends-listed", test_backends_listed);
  g_test_add_func ("/registry/quark-backend-metadata", test_quark_backend_metadata);
  g_test_add_func ("/registry/broken-modules", test_broken_modules);
  g_test_add_func ("/registry/unavailable", test_unavailable);
  g_test_add_func ("/registry/interface-defaults", test_interface_defaults);
  g_test_add_func ("/registry/runtime-registration", test_runtime_registration);
  g_test_add_func ("/registry/search-path", test_search_path);
  g_test_add_func ("/registry/entry-names", test_entry_names);
  g_test_add_func ("/registry/default-metadata", test_default_metadata);
  g_test_add_func ("/registry/config-for-preset", test_config_for_preset);
  g_test_add_func ("/registry/per-group-default-axis", test_per_group_default_axis);

  return g_test_run ();
}
