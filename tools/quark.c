/* quark: the libquark command-line tool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Exit status: 0 on success, 1 on failure, 2 on bad usage.
 */
#include "quark-tool.h"

#include <quark/quark-kernels.h>

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>


typedef struct {
  const char *name;
  const char *summary;
  int (*run) (int argc, char **argv);
} Command;

static int cmd_backends (int argc, char **argv);
static int cmd_demo (int argc, char **argv);
static int cmd_quantize (int argc, char **argv);
static int cmd_presets (int argc, char **argv);
static int cmd_inspect (int argc, char **argv);
static int cmd_verify (int argc, char **argv);

static const Command commands[] = {
  { "quantize", "Quantize a model directory or .safetensors file into a checkpoint", cmd_quantize },
  { "inspect", "List a checkpoint's tensors and its quantization config", cmd_inspect },
  { "verify", "Compare a quantized checkpoint with its original, layer by layer", cmd_verify },
  { "eval", "Perplexity of a model on a text (and KL divergence against another), natively", cmd_eval },
  { "imatrix", "llama.cpp's importance matrix of a model on a text, natively", cmd_imatrix },
  { "presets", "List the backends' named configs", cmd_presets },
  { "backends", "List the registered backends and module files", cmd_backends },
  { "formats", "List the checkpoint formats --export-format writes", cmd_formats },
  { "demo", "Quantize the built-in example model and print a per-tensor summary", cmd_demo },
};

void
print_json (JsonNode *node)
{
  g_autofree char *text = quark_json_to_string (node, TRUE);

  g_print ("%s\n", text);
}

/* An error's domain and code by name, for scripts to branch on:
 * "quark-error" and "not-found", "g-io-error" and "cancelled". */
static void
error_names (const GError *error, char **domain, const char **code)
{
  static const struct { GQuark (*domain) (void); GType (*type) (void); } enums[] = {
    { quark_error_quark, quark_error_get_type },
    { quark_config_error_quark, quark_config_error_get_type },
    { quark_backend_error_quark, quark_backend_error_get_type },
    { g_io_error_quark, g_io_error_enum_get_type },
  };
  const char *name = g_quark_to_string (error->domain);

  *domain = g_str_has_suffix (name, "-quark") ? g_strndup (name, strlen (name) - strlen ("-quark")) : g_strdup (name);
  *code = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (enums); i++)
    if (error->domain == enums[i].domain ())
      {
        GEnumClass *klass = g_type_class_ref (enums[i].type ());
        GEnumValue *value = g_enum_get_value (klass, error->code);
        *code = value ? value->value_nick : NULL;
        g_type_class_unref (klass);   /* enum classes stay alive once made */
      }
}

/* A failed command: the message on stderr and, with --json, the error's
 * stable domain and code by name on stdout for scripts. Returns the exit
 * status. */
int
report_failure (const char *command, const GError *error, gboolean json)
{
  g_printerr ("quark %s: %s\n", command, error->message);
  if (json)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();
      g_autoptr(JsonNode) root = NULL;
      g_autofree char *domain = NULL;
      const char *code;

      error_names (error, &domain, &code);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "error");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "domain");
      json_builder_add_string_value (b, domain);
      json_builder_set_member_name (b, "code");
      if (code)
        json_builder_add_string_value (b, code);
      else
        json_builder_add_int_value (b, error->code);
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, error->message);
      json_builder_end_object (b);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      print_json (root);
    }
  return 1;
}

/* Parses the options of a subcommand; returns FALSE with the exit status in
 * *status on --help or bad usage. */
gboolean
parse_options (const char   *command,
               const char   *parameters,
               const char   *description,
               GOptionEntry *entries,
               int          *argc,
               char       ***argv,
               int          *status)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *prgname = g_strdup_printf ("quark %s", command);

  /* usage reads "quark COMMAND [OPTION…] PARAMETERS" */
  g_set_prgname (prgname);
  context = g_option_context_new (parameters);
  g_option_context_set_summary (context, description);
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, argc, argv, &error))
    {
      g_printerr ("quark %s: %s\n", command, error->message);
      g_printerr ("Try \"quark %s --help\".\n", command);
      *status = EXIT_USAGE;
      return FALSE;
    }
  /* a command without parameters takes no positional arguments */
  if (parameters == NULL && *argc > 1)
    {
      g_printerr ("quark %s: unexpected argument \"%s\"\n", command, (*argv)[1]);
      *status = EXIT_USAGE;
      return FALSE;
    }
  return TRUE;
}

/* ---- backends -------------------------------------------------------------- */

static int
cmd_backends (int argc, char **argv)
{
  gboolean json = FALSE;
  gboolean modules = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    { "modules", 0, 0, G_OPTION_ARG_NONE, &modules, "Also list every module file tried, with its error", NULL },
    G_OPTION_ENTRY_NULL
  };
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(GPtrArray) backends = NULL;
  g_autoptr(GPtrArray) module_list = NULL;
  int status = 0;

  if (!parse_options ("backends", NULL,
                      "Lists the backends of the registry: built-in modules, modules found\n"
                      "through QUARK_BACKEND_PATH, and the installed backend directory.",
                      entries, &argc, &argv, &status))
    return status;

  backends = quark_registry_list_backends (registry);
  module_list = quark_registry_list_modules (registry);

  if (json)
    {
      JsonArray *array = json_array_new ();
      JsonObject *root = json_object_new ();
      g_autoptr(JsonNode) node = NULL;

      for (guint i = 0; i < backends->len; i++)
        json_array_add_element (array, quark_backend_describe (g_ptr_array_index (backends, i)));
      json_object_set_array_member (root, "backends", array);
      if (modules)
        {
          JsonArray *marray = json_array_new ();
          for (guint i = 0; i < module_list->len; i++)
            {
              QuarkBackendModule *m = g_ptr_array_index (module_list, i);
              JsonObject *mo = json_object_new ();
              const GError *error = quark_backend_module_get_error (m);
              json_object_set_string_member (mo, "path", quark_backend_module_get_path (m));
              json_object_set_boolean_member (mo, "loaded", quark_backend_module_is_loaded (m));
              if (error)
                json_object_set_string_member (mo, "error", error->message);
              else
                json_object_set_null_member (mo, "error");
              json_array_add_object_element (marray, mo);
            }
          json_object_set_array_member (root, "modules", marray);
        }
      node = json_node_init_object (json_node_alloc (), root);
      json_object_unref (root);
      print_json (node);
      return 0;
    }

  for (guint i = 0; i < backends->len; i++)
    {
      QuarkBackend *b = g_ptr_array_index (backends, i);
      g_autoptr(GError) error = NULL;
      g_autoptr(GString) dtypes = g_string_new (NULL);
      guint n;
      const QuarkDType *list = quark_backend_get_supported_dtypes (b, &n);

      for (guint k = 0; k < n; k++)
        g_string_append_printf (dtypes, "%s%s", k ? ", " : "", quark_dtype_get_name (list[k]));
      g_print ("%s %s\n", quark_backend_get_name (b),
               quark_backend_get_version (b) ? quark_backend_get_version (b) : "");
      if (quark_backend_get_description (b))
        g_print ("  %s\n", quark_backend_get_description (b));
      g_print ("  dtypes: %s\n", dtypes->len ? dtypes->str : "(none declared)");
      {
        g_auto(GStrv) presets = quark_backend_list_presets (b);
        g_autofree char *joined = g_strjoinv (", ", presets);
        g_print ("  presets: %s\n", presets[0] ? joined : "(none)");
      }
      g_print ("  module: %s\n", quark_backend_get_module_path (b) ? quark_backend_get_module_path (b)
                                                                  : "(registered by code)");
      if (!quark_backend_check_available (b, &error))
        g_print ("  UNAVAILABLE: %s\n", error->message);
    }
  if (backends->len == 0)
    g_print ("No backends found. Search path:\n");
  if (modules || backends->len == 0)
    {
      g_auto(GStrv) path = quark_registry_get_search_path (registry);
      if (backends->len == 0)
        for (guint i = 0; path[i]; i++)
          g_print ("  %s\n", path[i]);
      for (guint i = 0; i < module_list->len; i++)
        {
          QuarkBackendModule *m = g_ptr_array_index (module_list, i);
          const GError *error = quark_backend_module_get_error (m);
          g_print ("module %s: %s\n", quark_backend_module_get_path (m),
                   error ? error->message : "loaded");
        }
    }
  return backends->len == 0 ? 1 : 0;
}

/* ---- demo ------------------------------------------------------------------ */

/* A small Llama-shaped model: embeddings, one decoder layer, a norm and the
 * LM head, with deterministic weights (a fixed-seed GRand, scaled per row
 * so that per-channel scales differ). */
static QuarkModel *
builtin_model (void)
{
  static const struct { const char *name; gint64 rows, cols; } tensors[] = {
    { "model.embed_tokens.weight", 128, 64 },
    { "model.layers.0.input_layernorm.weight", 64, 0 },
    { "model.layers.0.self_attn.q_proj.weight", 64, 64 },
    { "model.layers.0.self_attn.k_proj.weight", 32, 64 },
    { "model.layers.0.self_attn.v_proj.weight", 32, 64 },
    { "model.layers.0.self_attn.o_proj.weight", 64, 64 },
    { "model.layers.0.mlp.gate_proj.weight", 172, 64 },
    { "model.layers.0.mlp.up_proj.weight", 172, 64 },
    { "model.layers.0.mlp.down_proj.weight", 64, 172 },
    { "model.norm.weight", 64, 0 },
    { "lm_head.weight", 128, 64 },
  };
  QuarkModel *model = quark_model_new ();
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);
  g_autoptr(JsonNode) metadata = quark_json_parse (
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64,"
    " \"intermediate_size\": 172, \"num_hidden_layers\": 1, \"vocab_size\": 128}", -1, "builtin", NULL);

  for (guint t = 0; t < G_N_ELEMENTS (tensors); t++)
    {
      gint64 shape[2] = { tensors[t].rows, tensors[t].cols };
      guint n_dims = tensors[t].cols ? 2 : 1;
      gsize n = (gsize) tensors[t].rows * (tensors[t].cols ? (gsize) tensors[t].cols : 1);
      g_autofree guint16 *bf16 = g_new (guint16, n);
      g_autoptr(GBytes) bytes = NULL;
      g_autoptr(QuarkTensor) tensor = NULL;

      for (gsize i = 0; i < n; i++)
        {
          /* rough normal values via the sum of uniforms, row-scaled */
          double row_scale = 0.02 * (1.0 + (double) ((i / MAX (tensors[t].cols, 1)) % 7));
          double v = (g_rand_double (rand) + g_rand_double (rand) + g_rand_double (rand) - 1.5) * row_scale;
          float f = n_dims == 1 ? 1.0f + (float) v : (float) v;
          guint32 bits;
          memcpy (&bits, &f, 4);
          bf16[i] = (guint16) ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);   /* round to nearest even */
        }
      bytes = g_bytes_new_take (g_steal_pointer (&bf16), n * 2);
      tensor = quark_tensor_new (tensors[t].name, QUARK_DTYPE_BF16, shape, n_dims, bytes, NULL);
      quark_model_add_tensor (model, tensor, NULL);
    }
  quark_model_set_metadata (model, metadata);
  return model;
}

static const char *builtin_config =
  "{\n"
  "  \"backend\": \"quark\",\n"
  "  \"global_quant_config\": {\n"
  "    \"weight\": {\"dtype\": \"int8\", \"qscheme\": \"per_channel\", \"ch_axis\": 0, \"symmetric\": true}\n"
  "  },\n"
  "  \"exclude\": [\"lm_head\", \"model.embed_tokens\"]\n"
  "}\n";

typedef struct {
  double mse;
  double max_abs;
  double sqnr_db;
} ErrorStats;

/* Dequantizes NAME with NAME_scale and NAME_zero_point (per tensor or per
 * channel on axis 0) and compares with the original. */
static gboolean
measure (QuarkTensor *original, QuarkModel *out, ErrorStats *stats, GError **error)
{
  const char *name = quark_tensor_get_name (original);
  QuarkTensor *codes = quark_model_get_tensor (out, name);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  QuarkTensor *scale = quark_model_get_tensor (out, scale_name);
  QuarkTensor *zp = quark_model_get_tensor (out, zp_name);
  g_autofree float *x = NULL, *zps = NULL, *x_hat = NULL;
  const float *scales;
  gsize n, n_zp, channels, inner;
  double signal = 0, noise = 0;

  x = quark_tensor_to_floats (original, &n, error);
  if (x == NULL || (zps = quark_tensor_to_floats (zp, &n_zp, error)) == NULL)
    return FALSE;
  scales = quark_tensor_peek_data (scale, NULL);
  channels = quark_tensor_get_n_elements (scale);
  inner = n / MAX (channels, 1);
  x_hat = g_new (float, MAX (n, 1));
  for (gsize c = 0; c < channels; c++)
    quark_kernel_dequantize_int_f32 ((const guint8 *) quark_tensor_peek_data (codes, NULL) +
                                     c * inner * quark_dtype_get_element_size (quark_tensor_get_dtype (codes)),
                                     quark_tensor_get_dtype (codes), inner, scales[c],
                                     (int32_t) zps[c], x_hat + c * inner);
  stats->max_abs = 0;
  for (gsize i = 0; i < n; i++)
    {
      double d = (double) x_hat[i] - (double) x[i];
      signal += (double) x[i] * x[i];
      noise += d * d;
      stats->max_abs = MAX (stats->max_abs, fabs (d));
    }
  stats->mse = n ? noise / n : 0;
  stats->sqnr_db = noise > 0 ? 10 * log10 (signal / noise) : INFINITY;
  return TRUE;
}

static int
cmd_demo (int argc, char **argv)
{
  g_autofree char *config_file = NULL;
  gboolean json = FALSE;
  gboolean show_config = FALSE;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "Quantize with this config instead of the built-in one", "FILE" },
    { "show-config", 0, 0, G_OPTION_ARG_NONE, &show_config, "Print the built-in config and exit", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  int status = 0;

  if (!parse_options ("demo", NULL,
                      "Builds a small Llama-shaped BF16 model in memory (one decoder layer,\n"
                      "deterministic weights), quantizes it with the built-in config (int8\n"
                      "per-channel symmetric weights, AMD Quark semantics; embeddings and\n"
                      "lm_head left in float) or with --config, and prints, per tensor, the\n"
                      "output dtype, scales, and the error of the dequantized weights.",
                      entries, &argc, &argv, &status))
    return status;
  if (show_config)
    {
      g_print ("%s", builtin_config);
      return 0;
    }

  config = config_file ? quark_registry_config_from_file (registry, config_file, &error)
                       : quark_registry_config_from_string (registry, builtin_config, -1, &error);
  if (config == NULL)
    {
      g_printerr ("quark demo: %s\n", error->message);
      return 1;
    }
  quantizer = quark_registry_new_quantizer (registry, config, &error);
  if (quantizer == NULL)
    {
      g_printerr ("quark demo: %s\n", error->message);
      return 1;
    }
  model = builtin_model ();
  out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
  if (out == NULL)
    {
      g_printerr ("quark demo: %s\n", error->message);
      return 1;
    }

  if (!json)
    {
      g_print ("Backend %s, built-in model of %u tensors\n\n",
               quark_quantization_config_get_backend_name (config), quark_model_get_n_tensors (model));
      g_print ("%-42s %-10s %-9s %-9s %-21s %9s %11s\n", "tensor", "shape", "in", "out",
               "scale min..max", "SQNR dB", "max |err|");
    }
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "tensors");
  json_builder_begin_array (builder);

  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      QuarkTensor *q = quark_model_get_tensor (out, quark_tensor_get_name (t));
      g_autofree char *shape = quark_tensor_format_shape (t);
      g_autofree char *scale_name = g_strconcat (quark_tensor_get_name (t), "_scale", NULL);
      QuarkTensor *scale = quark_model_get_tensor (out, scale_name);
      gboolean quantized = scale != NULL;
      ErrorStats stats = { 0 };
      float smin = INFINITY, smax = -INFINITY;

      if (quantized)
        {
          const float *s = quark_tensor_peek_data (scale, NULL);
          for (guint64 k = 0; k < quark_tensor_get_n_elements (scale); k++)
            {
              smin = MIN (smin, s[k]);
              smax = MAX (smax, s[k]);
            }
          if (!measure (t, out, &stats, &error))
            {
              g_printerr ("quark demo: %s\n", error->message);
              return 1;
            }
        }

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "name");
      json_builder_add_string_value (builder, quark_tensor_get_name (t));
      json_builder_set_member_name (builder, "shape");
      json_builder_add_string_value (builder, shape);
      json_builder_set_member_name (builder, "dtype_in");
      json_builder_add_string_value (builder, quark_dtype_get_name (quark_tensor_get_dtype (t)));
      json_builder_set_member_name (builder, "dtype_out");
      json_builder_add_string_value (builder, quark_dtype_get_name (quark_tensor_get_dtype (q)));
      json_builder_set_member_name (builder, "quantized");
      json_builder_add_boolean_value (builder, quantized);
      if (quantized)
        {
          json_builder_set_member_name (builder, "scale_min");
          json_builder_add_double_value (builder, smin);
          json_builder_set_member_name (builder, "scale_max");
          json_builder_add_double_value (builder, smax);
          json_builder_set_member_name (builder, "sqnr_db");
          json_builder_add_double_value (builder, stats.sqnr_db);
          json_builder_set_member_name (builder, "max_abs_error");
          json_builder_add_double_value (builder, stats.max_abs);
          json_builder_set_member_name (builder, "mse");
          json_builder_add_double_value (builder, stats.mse);
        }
      json_builder_end_object (builder);

      if (json)
        continue;
      if (quantized)
        g_print ("%-42s %-10s %-9s %-9s %.3e..%.3e %9.2f %11.3e\n", quark_tensor_get_name (t), shape,
                 quark_dtype_get_name (quark_tensor_get_dtype (t)),
                 quark_dtype_get_name (quark_tensor_get_dtype (q)), smin, smax, stats.sqnr_db, stats.max_abs);
      else
        g_print ("%-42s %-10s %-9s %-9s %-21s %9s %11s\n", quark_tensor_get_name (t), shape,
                 quark_dtype_get_name (quark_tensor_get_dtype (t)),
                 quark_dtype_get_name (quark_tensor_get_dtype (q)), "(kept in float)", "-", "-");
    }
  json_builder_end_array (builder);
  json_builder_end_object (builder);
  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (builder);
      print_json (root);
    }
  else
    g_print ("\n%u tensors in, %u tensors out.\n", quark_model_get_n_tensors (model),
             quark_model_get_n_tensors (out));
  return 0;
}

/* ---- presets ---------------------------------------------------------------- */

/* Prints @text indented by @indent, wrapped at word boundaries to fit
 * @width columns; the first line continues after @first columns. */
static void
print_wrapped (const char *text, int first, int indent, int width)
{
  g_auto(GStrv) words = g_strsplit (text, " ", -1);
  int column = first;

  for (guint i = 0; words[i]; i++)
    {
      int len = (int) g_utf8_strlen (words[i], -1);
      if (column > indent && column + 1 + len > width)
        {
          g_print ("\n%*s", indent, "");
          column = indent;
        }
      else if (i > 0)
        {
          g_print (" ");
          column++;
        }
      g_print ("%s", words[i]);
      column += len;
    }
  g_print ("\n");
}

static int
cmd_presets (int argc, char **argv)
{
  gboolean json = FALSE;
  g_autofree char *backend_name = NULL, *show = NULL, *export_format = NULL;
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend_name, "Only this backend's presets", "NAME" },
    { "export-format", 0, 0, G_OPTION_ARG_STRING, &export_format, "The types of a format with numerics of its own (gguf)", "FORMAT" },
    { "show", 's', 0, G_OPTION_ARG_STRING, &show, "Print one preset's full config as JSON (a starting point for --config)", "NAME" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(GPtrArray) backends = NULL;
  g_autoptr(GPtrArray) order = g_ptr_array_new ();
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(GError) error = NULL;
  int status = 0;

  if (!parse_options ("presets", NULL,
                      "Lists the named configs of every backend (or of --backend), the default\n"
                      "backend (quark) first; --show prints one of them in full.",
                      entries, &argc, &argv, &status))
    return status;
  if (export_format)
    return tool_list_format_schemes (export_format, json);
  if (backend_name && quark_registry_get_backend (registry, backend_name, &error) == NULL)
    return report_failure ("presets", error, json);
  if (show)
    {
      g_autoptr(QuarkQuantizationConfig) config = quark_registry_config_for_preset (registry, backend_name, show,
                                                                                     &error);
      g_autoptr(JsonNode) node = NULL;
      if (config == NULL)
        return report_failure ("presets", error, json);
      node = quark_quantization_config_to_json (config);
      print_json (node);
      return 0;
    }

  /* the default backend first, then the others in registry order */
  backends = quark_registry_list_backends (registry);
  for (guint b = 0; b < backends->len; b++)
    if (g_str_equal (quark_backend_get_name (g_ptr_array_index (backends, b)), "quark"))
      g_ptr_array_add (order, g_ptr_array_index (backends, b));
  for (guint b = 0; b < backends->len; b++)
    if (!g_str_equal (quark_backend_get_name (g_ptr_array_index (backends, b)), "quark"))
      g_ptr_array_add (order, g_ptr_array_index (backends, b));

  json_builder_begin_array (builder);
  for (guint b = 0; b < order->len; b++)
    {
      QuarkBackend *backend = g_ptr_array_index (order, b);
      const char *bname = quark_backend_get_name (backend);
      g_auto(GStrv) names = quark_backend_list_presets (backend);
      if (backend_name && !g_str_equal (backend_name, bname))
        continue;
      if (!json && names[0])
        {
          if (g_str_equal (bname, "quark"))
            g_print ("%s%s (the default backend)\n", b ? "\n" : "", bname);
          else
            g_print ("%s%s (--backend %s)\n", b ? "\n" : "", bname, bname);
        }
      for (guint i = 0; names[i]; i++)
        {
          const char *description = quark_backend_get_preset_description (backend, names[i]);
          g_auto(GStrv) aliases = quark_backend_list_preset_aliases (backend, names[i]);
          json_builder_begin_object (builder);
          json_builder_set_member_name (builder, "backend");
          json_builder_add_string_value (builder, bname);
          json_builder_set_member_name (builder, "name");
          json_builder_add_string_value (builder, names[i]);
          json_builder_set_member_name (builder, "description");
          json_builder_add_string_value (builder, description ? description : "");
          json_builder_set_member_name (builder, "aliases");
          json_builder_begin_array (builder);
          for (guint k = 0; aliases[k]; k++)
            json_builder_add_string_value (builder, aliases[k]);
          json_builder_end_array (builder);
          json_builder_end_object (builder);
          if (json)
            continue;
          /* "  name                  description", wrapped within 80 columns */
          if (strlen (names[i]) > 22)
            g_print ("  %s\n%25s", names[i], "");
          else
            g_print ("  %-22s ", names[i]);
          print_wrapped (description ? description : "", 25, 25, 80);
          if (aliases[0])
            {
              g_autofree char *joined = g_strjoinv (", ", aliases);
              g_autofree char *also = g_strconcat ("(also: ", joined, ")", NULL);
              g_print ("%25s", "");
              print_wrapped (also, 25, 25, 80);
            }
        }
    }
  json_builder_end_array (builder);
  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (builder);
      print_json (root);
    }
  else if (!backend_name)
    g_print ("\nquark presets --show NAME prints a preset's config in full.\n");
  return 0;
}

/* ---- quantize --------------------------------------------------------------- */

/* The real path of @path, or of its parent joined with its base name when
 * @path does not exist yet. */
static char *
resolve_path (const char *path)
{
  g_autofree char *parent = NULL, *base = NULL, *real_parent = NULL;
  char *real = realpath (path, NULL);

  if (real)
    return real;
  parent = g_path_get_dirname (path);
  base = g_path_get_basename (path);
  real_parent = realpath (parent, NULL);
  return g_build_filename (real_parent ? real_parent : parent, base, NULL);
}

static gboolean
path_is_within (const char *inner, const char *outer)
{
  g_autofree char *prefix = g_str_has_suffix (outer, "/") ? g_strdup (outer) : g_strconcat (outer, "/", NULL);
  return g_str_equal (inner, outer) || g_str_has_prefix (inner, prefix);
}

/* OUT may be neither MODEL, nor inside it (the input is never modified), nor
 * around it (--force would delete the input with the old output). */
static gboolean
check_output_apart (const char *model_path, const char *output, GError **error)
{
  g_autofree char *model = resolve_path (model_path);
  g_autofree char *out = resolve_path (output);

  if (path_is_within (out, model))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: the output is inside the input %s, which is never modified", output, model_path);
      return FALSE;
    }
  if (path_is_within (model, out))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: the output would contain the input %s; choose another directory", output, model_path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_size (const char *text, guint64 *out)
{
  char *end;
  guint64 v = g_ascii_strtoull (text, &end, 10);
  static const struct { const char *suffix; guint64 factor; } units[] = {
    { "", 1 }, { "B", 1 }, { "KB", 1000 }, { "MB", 1000000 }, { "GB", 1000000000 },
    { "KiB", 1024 }, { "MiB", 1048576 }, { "GiB", 1073741824 },
  };

  if (end == text)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (units); i++)
    if (g_ascii_strcasecmp (end, units[i].suffix) == 0 && v <= G_MAXUINT64 / units[i].factor)
      {
        *out = v * units[i].factor;
        return *out > 0;
      }
  return FALSE;
}

typedef struct {
  gboolean tty;
  gint64 start;
  guint64 last_done;
  guint tensors_done;
  guint n_tensors;
} ProgressState;

/* The terminal's width (stderr's), or $COLUMNS, or 80. */
static int
terminal_width (void)
{
  struct winsize ws;
  const char *columns = g_getenv ("COLUMNS");

  if (ioctl (fileno (stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  if (columns && atoi (columns) > 0)
    return atoi (columns);
  return 80;
}

/* One line that fits the terminal: a bar, the percentage, tensors done,
 * the rate and the time left, and as much of the tensor's name as there is
 * room for, shortened from the left (the end of a name says the most). */
static void
on_progress (QuarkModelQuantizer *q, guint64 done, guint64 total, const char *item, gpointer user_data)
{
  ProgressState *p = user_data;
  double elapsed = (g_get_monotonic_time () - p->start) / 1e6;
  double rate = elapsed > 0 ? done / elapsed : 0;
  double left = rate > 0 ? (total - done) / rate : 0;
  int columns = MAX (terminal_width () - 1, 20), bar = columns >= 100 ? 30 : columns >= 60 ? 20 : 10, filled, room;
  g_autofree char *stats = NULL;
  g_autoptr(GString) line = g_string_new (NULL);
  const char *name = item ? item : "";
  gsize name_len = strlen (name);

  p->last_done = done;
  p->tensors_done++;
  if (!p->tty)
    return;
  filled = total ? (int) (bar * done / total) : bar;
  stats = g_strdup_printf (" %3.0f%% %u/%u tensors %.0f M elements/s %.0fs left ", total ? 100.0 * done / total : 100.0,
                           p->tensors_done, p->n_tensors, rate / 1e6, left);
  g_string_append_c (line, '[');
  for (int i = 0; i < bar; i++)
    g_string_append_c (line, i < filled ? '#' : ' ');
  g_string_append_c (line, ']');
  if ((int) (line->len + strlen (stats)) <= columns)
    g_string_append (line, stats);
  room = columns - (int) line->len;
  if (room > 3 && name_len > 0)
    {
      if ((int) name_len <= room)
        g_string_append (line, name);
      else
        {
          g_string_append (line, "...");
          g_string_append (line, name + name_len - (gsize) (room - 3));
        }
    }
  while ((int) line->len < columns)
    g_string_append_c (line, ' ');
  g_printerr ("\r%s", line->str);
  if (done == total)
    g_printerr ("\n");
}

static QuarkQuantizationConfig *
load_config (const char *config_file, const char *preset, const char *backend_name, char **excludes,
             const char *algorithms, GError **error)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(JsonNode) root = NULL;
  JsonObject *object;
  JsonArray *exclude;
  JsonNode *node;

  if (config_file)
    {
      root = quark_json_parse_file (config_file, error);
      if (root == NULL)
        return NULL;
      if (JSON_NODE_HOLDS_OBJECT (root) && !json_object_has_member (json_node_get_object (root), "backend"))
        json_object_set_string_member (json_node_get_object (root), "backend", backend_name ? backend_name : "quark");
      config = quark_registry_config_from_json (registry, root, config_file, error);
    }
  else
    config = quark_registry_config_for_preset (registry, backend_name, preset, error);
  if (config == NULL || ((excludes == NULL || excludes[0] == NULL) && algorithms == NULL))
    return g_steal_pointer (&config);

  /* --exclude: add patterns to the config's "exclude" list; --algorithm:
   * the config's algo_config, in AMD Quark's schema; and reload */
  g_clear_pointer (&root, json_node_unref);
  root = quark_quantization_config_to_json (config);
  object = json_node_get_object (root);
  node = json_object_get_member (object, "exclude");
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    {
      json_object_set_array_member (object, "exclude", json_array_new ());
      node = json_object_get_member (object, "exclude");
    }
  exclude = json_node_get_array (node);
  for (guint i = 0; excludes && excludes[i]; i++)
    json_array_add_string_element (exclude, excludes[i]);
  if (algorithms)
    {
      /* (activation_equalization, a step before quantization in AMD
       * Quark's Brevitas extension, goes to its pre_quant_opt_config) */
      g_auto(GStrv) names = g_strsplit (algorithms, ",", -1);
      JsonArray *list = json_array_new (), *pre = json_array_new ();
      for (guint i = 0; names[i]; i++)
        {
          JsonObject *algo = json_object_new ();
          const char *name = g_strstrip (names[i]);
          json_object_set_string_member (algo, "name", name);
          json_array_add_object_element (g_ascii_strcasecmp (name, "activation_equalization") == 0 ? pre : list,
                                         algo);
        }
      json_object_set_array_member (object, "algo_config", list);
      if (json_array_get_length (pre) > 0)
        json_object_set_array_member (object, "pre_quant_opt_config", pre);
      else
        json_array_unref (pre);
    }
  return quark_registry_config_from_json (registry, root, algorithms ? "--algorithm" : "--exclude", error);
}

/* Whether the backend has a quantizer option, such as "threads"; an error
 * naming the command-line @option otherwise. */
static gboolean
backend_has_option (QuarkModelQuantizer *quantizer, const char *property, const char *option, GError **error)
{
  if (g_object_class_find_property (G_OBJECT_GET_CLASS (quantizer), property) != NULL)
    return TRUE;
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "backend %s does not support %s",
               quark_quantization_config_get_backend_name (quark_model_quantizer_get_config (quantizer)), option);
  return FALSE;
}

/* A model named as on the Hugging Face hub (`org/name`) that is not a path
 * here: its snapshot in the local cache ($HF_HUB_CACHE, $HF_HOME/hub or
 * ~/.cache/huggingface/hub), the one refs/main names or the only one. */
static char *
cached_snapshot (const char *model)
{
  g_auto(GStrv) parts = g_strsplit (model, "/", -1);
  g_autofree char *hub = NULL, *repo = NULL, *ref = NULL, *snapshots = NULL;
  const char *env;

  if (g_file_test (model, G_FILE_TEST_EXISTS) || g_strv_length (parts) != 2 || !*parts[0] || !*parts[1] ||
      g_str_has_prefix (model, ".") || strchr (model, ' '))
    return NULL;
  if ((env = g_getenv ("HF_HUB_CACHE")) && *env)
    hub = g_strdup (env);
  else if ((env = g_getenv ("HF_HOME")) && *env)
    hub = g_build_filename (env, "hub", NULL);
  else
    hub = g_build_filename (g_get_home_dir (), ".cache", "huggingface", "hub", NULL);
  repo = g_strdup_printf ("%s/models--%s--%s", hub, parts[0], parts[1]);
  snapshots = g_build_filename (repo, "snapshots", NULL);
  {
    g_autofree char *ref_path = g_build_filename (repo, "refs", "main", NULL);
    if (g_file_get_contents (ref_path, &ref, NULL, NULL))
      {
        g_autofree char *dir = g_build_filename (snapshots, g_strstrip (ref), NULL);
        if (g_file_test (dir, G_FILE_TEST_IS_DIR))
          return g_steal_pointer (&dir);
      }
  }
  {
    g_autoptr(GDir) dir = g_dir_open (snapshots, 0, NULL);
    const char *name, *only = NULL;
    guint n = 0;
    while (dir && (name = g_dir_read_name (dir)) != NULL)
      {
        only = name;
        n++;
      }
    if (n == 1)
      return g_build_filename (snapshots, only, NULL);
  }
  return NULL;
}

/* Everything `quark quantize` does after parsing its options runs in a
 * worker thread, loading included, while the main thread waits in a main
 * loop for SIGINT or SIGTERM: they cancel the work at any stage (a second
 * one stops at once), the writer then removes what it wrote and the
 * command fails like any other error. */
typedef struct {
  /* options */
  const char *model_path, *output, *config_file, *preset, *backend_name, *stats_file, *export_format;
  const char *calibration_text;   /* --calibration-text */
  const char *imatrix_file;       /* --imatrix */
  const char *algorithms;         /* --algorithm */
  int calibration_tokens;
  const char *file_type;      /* --type: the scheme of a single-file format (GGUF) */
  QuarkCheckpointFormat *file_format;   /* --export-format, when it writes single files; or NULL */
  char **excludes;
  guint64 max_shard;
  gboolean force, allow_nonfinite, requantize, no_sync;
  int threads;
  /* state */
  GCancellable *cancellable;
  GMainLoop *loop;
  ProgressState *progress;
  QuarkModel *model;
  QuarkCheckpointWriter *writer;
  guint64 file_bytes;         /* the size of a single-file output */
  GPtrArray *non_float;       /* "name dtype" of tensors copied unchanged for their type */
  char **skipped;
  const char *inexact;        /* --inexact */
  char **report;              /* what GGUF did with weights it could not carry exactly */
  gboolean ok;
  GError *error;
} QuantizeJob;

static gboolean
quit_loop (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled (QuantizeJob *job, GError **error)
{
  if (!g_cancellable_is_cancelled (job->cancellable))
    return FALSE;
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
  return TRUE;
}

/* Loads MODEL; an already quantized one is refused, or with --requantize
 * dequantized with its own config. */
static gboolean
load_model (QuantizeJob *job, GError **error)
{
  g_autofree char *reason = NULL;

  job->model = quark_model_load (job->model_path, job->cancellable, error);
  if (job->model == NULL || cancelled (job, error))
    return FALSE;
  if (quark_model_is_quantized (job->model, &reason))
    {
      QuarkModel *restored;

      /* GGUF carries the codes over (--type Q4_1 and the like) */
      if (job->file_format && !job->requantize)
        return TRUE;
      if (!job->requantize)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "%s is already quantized (%s); --requantize dequantizes it and quantizes the result",
                       job->model_path, reason);
          return FALSE;
        }
      if ((restored = tool_dequantize_checkpoint (job->model, job->model_path, error)) == NULL)
        {
          g_prefix_error (error, "--requantize: ");
          return FALSE;
        }
      g_object_unref (job->model);
      job->model = restored;
    }
  return TRUE;
}

/* a string option of a format that has it */
static gboolean
set_format_option (QuarkCheckpointFormat *format, const char *property, const char *value, const char *option,
                   GError **error)
{
  GParamSpec *pspec = g_object_class_find_property (G_OBJECT_GET_CLASS (format), property);
  if (pspec == NULL || pspec->value_type != G_TYPE_STRING)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s does not apply to --export-format %s",
                   option, quark_checkpoint_format_get_name (format));
      return FALSE;
    }
  g_object_set (format, property, value, NULL);
  return TRUE;
}

/* A format that writes whole models to one file with numerics of its own
 * (GGUF): no backend, no preset; --type picks the scheme. */
static gboolean
quantize_to_file (QuantizeJob *job, GError **error)
{
  GStatBuf st;

  if (!load_model (job, error))
    return FALSE;
  if (job->threads > 0)
    quark_checkpoint_format_set_threads (job->file_format, (guint) job->threads);
  quark_checkpoint_format_set_durable (job->file_format, !job->no_sync);
  if ((job->imatrix_file || job->calibration_text) && quark_model_is_quantized (job->model, NULL))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s is already quantized: its codes are carried over as they are, and an importance matrix "
                   "(%s) applies only when quantizing float weights (--requantize quantizes it afresh)",
                   job->model_path, job->imatrix_file ? "--imatrix" : "--calibration-text");
      return FALSE;
    }
  if (job->imatrix_file || job->calibration_text)
    {
      /* an importance matrix, from a file or from running the text */
      g_autoptr(QuarkModel) importance = NULL;
      if (job->imatrix_file)
        importance = quark_importance_matrix_load (job->imatrix_file, error);
      else
        {
          g_autoptr(QuarkCalibration) calibration = NULL;
          g_autofree char *dataset = g_path_get_basename (job->calibration_text);
          guint window = 0;
          if ((calibration = tool_calibrate_from_text (job->model, job->model_path, NULL, NULL, job->calibration_text,
                                                       (guint) job->calibration_tokens,
                                                       job->threads > 0 ? (guint) job->threads : 0,
                                                       job->progress->tty, &window, job->cancellable,
                                                       error)) == NULL)
            return FALSE;
          importance = quark_importance_matrix_new_from_calibration (calibration, job->model, dataset, window,
                                                                     error);
        }
      if (importance == NULL)
        return FALSE;
      quark_checkpoint_format_set_importance (job->file_format, importance);
    }
  if (job->inexact && !set_format_option (job->file_format, "inexact", job->inexact, "--inexact", error))
    return FALSE;
  if (!quark_checkpoint_format_write_model (job->file_format, job->model, job->file_type, job->output, job->force,
                                            job->cancellable, error))
    return FALSE;
  if (g_object_class_find_property (G_OBJECT_GET_CLASS (job->file_format), "report"))
    g_object_get (job->file_format, "report", &job->report, NULL);
  if (g_stat (job->output, &st) == 0)
    job->file_bytes = (guint64) st.st_size;
  return TRUE;
}

static gboolean
quantize_job_steps (QuantizeJob *job, GError **error)
{
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkCalibration) calibration = NULL;

  if (job->file_format)
    return quantize_to_file (job, error);
  config = load_config (job->config_file, job->preset, job->backend_name, job->excludes, job->algorithms, error);
  if (config == NULL)
    return FALSE;
  quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, error);
  if (quantizer == NULL)
    return FALSE;
  if (job->threads > 1)
    {
      if (!backend_has_option (quantizer, "threads", "--threads", error))
        return FALSE;
      g_object_set (quantizer, "threads", (guint) job->threads, NULL);
    }
  else if (job->threads == -1 &&
           g_object_class_find_property (G_OBJECT_GET_CLASS (quantizer), "threads") != NULL)
    /* not given: one per processor (at most 8), as GGUF's writer has it,
     * where the backend runs threads; the bytes do not depend on it */
    g_object_set (quantizer, "threads", MIN (MAX ((guint) g_get_num_processors (), 1u), 8u), NULL);
  if (job->export_format)
    {
      if (!backend_has_option (quantizer, "export-format", "--export-format", error))
        return FALSE;
      g_object_set (quantizer, "export-format", job->export_format, NULL);
    }
  if (job->allow_nonfinite)
    {
      if (!backend_has_option (quantizer, "allow-nonfinite", "--allow-nonfinite", error))
        return FALSE;
      g_object_set (quantizer, "allow-nonfinite", TRUE, NULL);
    }
  if (cancelled (job, error) || !load_model (job, error))
    return FALSE;
  /* a config that cannot be written for this model (a group that does not
   * divide a layer's width) fails now, not after calibration */
  if (!quark_model_quantizer_check_model (quantizer, job->model, error))
    return FALSE;
  for (guint i = 0; i < quark_model_get_n_tensors (job->model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (job->model, i);
      if (!quark_dtype_is_quantizable (quark_tensor_get_dtype (t)))
        g_ptr_array_add (job->non_float, g_strdup_printf ("%s %s", quark_tensor_get_name (t),
                                                          quark_dtype_get_name (quark_tensor_get_dtype (t))));
    }
  {
    /* the config's transformations of the float model (rotation) come
     * before calibration: the model calibrated and quantized is this one */
    g_autoptr(QuarkModel) prepared = NULL;

    if (quark_model_quantizer_prepare_needs_calibration (quantizer))
      {
        /* (activation equalization) a first pass over the float model
         * for the statistics the transformation learns from */
        g_autoptr(QuarkCalibration) first = NULL;

        if (job->calibration_text == NULL)
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION, "the config transforms the model with "
                         "statistics of its activations before calibration (pre_quant_opt_config), and the model is "
                         "calibrated again after that: use --calibration-text%s",
                         job->stats_file ? " (a --calibration file describes one model only)" : "");
            return FALSE;
          }
        if ((first = tool_calibrate_from_text (job->model, job->model_path, NULL, NULL, job->calibration_text,
                                               (guint) job->calibration_tokens,
                                               job->threads > 0 ? (guint) job->threads : 0, job->progress->tty,
                                               NULL, job->cancellable, error)) == NULL)
          return FALSE;
        prepared = quark_model_quantizer_prepare_model_with_calibration (quantizer, job->model, first,
                                                                         job->cancellable, error);
      }
    else
      prepared = quark_model_quantizer_prepare_model (quantizer, job->model, job->cancellable, error);
    if (prepared == NULL)
      return FALSE;
    if (prepared != job->model && job->stats_file)
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "--calibration %s: the config transforms the "
                     "model before calibration (rotation), and statistics from a file describe the model before "
                     "it; use --calibration-text", job->stats_file);
        return FALSE;
      }
    g_set_object (&job->model, prepared);
  }
  if (job->stats_file && (calibration = quark_calibration_load (job->stats_file, error)) == NULL)
    return FALSE;
  if (job->calibration_text &&
      (calibration = tool_calibrate_from_text (job->model, job->model_path, config, quantizer, job->calibration_text,
                                               (guint) job->calibration_tokens, job->threads > 0 ? (guint) job->threads : 0,
                                               job->progress->tty, NULL,
                                               job->cancellable, error)) == NULL)
    return FALSE;
  if (cancelled (job, error))
    return FALSE;

  /* streamed: each output tensor goes to disk as it is made */
  job->writer = quark_checkpoint_writer_new (job->output, job->max_shard, job->force, error);
  if (job->writer == NULL)
    return FALSE;
  quark_checkpoint_writer_set_durable (job->writer, !job->no_sync);
  job->progress->n_tensors = quark_model_get_n_tensors (job->model);
  g_signal_connect (quantizer, "progress", G_CALLBACK (on_progress), job->progress);
  if (!quark_model_quantizer_quantize_model_to_writer (quantizer, job->model, calibration, job->writer,
                                                       job->cancellable, error))
    return FALSE;
  if (g_file_test (job->model_path, G_FILE_TEST_IS_DIR))
    quark_checkpoint_writer_set_copy_from (job->writer, job->model_path);
  if (!quark_checkpoint_writer_finish (job->writer, job->cancellable, error))
    return FALSE;
  job->skipped = quark_checkpoint_writer_get_skipped_files (job->writer);
  return TRUE;
}

static gpointer
quantize_job_run (gpointer user_data)
{
  QuantizeJob *job = user_data;

  job->ok = quantize_job_steps (job, &job->error);
  if (!job->ok && job->writer)
    quark_checkpoint_writer_abort (job->writer);
  g_idle_add (quit_loop, job->loop);
  return NULL;
}

static gboolean
on_stop_signal (gpointer user_data)
{
  GCancellable *cancellable = user_data;

  if (g_cancellable_is_cancelled (cancellable))
    {
      /* a second Ctrl-C: at once; the temporary directory left behind is
       * recognised as stale and removed by the next run to this output */
      g_printerr ("\nquark quantize: stopped\n");
      _exit (130);
    }
  g_cancellable_cancel (cancellable);
  return G_SOURCE_CONTINUE;
}

static int
cmd_quantize (int argc, char **argv)
{
  g_autofree char *output = NULL, *preset = NULL, *config_file = NULL, *backend_name = NULL, *shard_text = NULL;
  g_autofree char *stats_file = NULL, *export_format = NULL, *file_type = NULL, *pure_type = NULL;
  g_autofree char *calibration_text = NULL, *algorithms = NULL, *imatrix_file = NULL, *inexact = NULL;
  int calibration_tokens = 16384;
  g_auto(GStrv) excludes = NULL;
  gboolean force = FALSE, json = FALSE, allow_nonfinite = FALSE, requantize = FALSE, pure = FALSE, no_sync = FALSE;
  int threads = -1;   /* not given */
  GStatBuf output_st;
  GOptionEntry entries[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Write the checkpoint to this directory (with --export-format gguf: this file)", "OUT" },
    { "threads", 'j', 0, G_OPTION_ARG_INT, &threads, "Quantize with this many threads (default: one per processor, at most 8; the output does not depend on it)", "N" },
    { "preset", 'p', 0, G_OPTION_ARG_STRING, &preset, "Use a named config (see \"quark presets\")", "NAME" },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "Use a JSON config file", "FILE" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend_name, "The backend of --preset, or of a config without \"backend\" (default: quark)", "NAME" },
    { "calibration", 0, 0, G_OPTION_ARG_FILENAME, &stats_file, "Static activation scales from this statistics file (saved by a calibration session)", "FILE" },
    { "algorithm", 'a', 0, G_OPTION_ARG_STRING, &algorithms, "Improve on round-to-nearest with these algorithms, comma-separated (rotation, awq or smooth, gptq; they run in that order; the brevitas backend's: activation_equalization, gptq or gpfq, bias_correction); all but rotation need second moments: --calibration-text, or --calibration with a file that has them (activation_equalization: --calibration-text only)", "NAMES" },
    { "calibration-text", 0, 0, G_OPTION_ARG_FILENAME, &calibration_text, "Calibrate static activation scales by running MODEL (Llama family) natively on this text", "FILE" },
    { "calibration-tokens", 0, 0, G_OPTION_ARG_INT, &calibration_tokens, "Run at most this many tokens of --calibration-text, in windows of 512 (default 16384)", "N" },
    { "exclude", 'x', 0, G_OPTION_ARG_STRING_ARRAY, &excludes, "Leave layers matching PATTERN in float (repeatable)", "PATTERN" },
    { "max-shard-size", 0, 0, G_OPTION_ARG_STRING, &shard_text, "Largest output file, such as 5GB or 500MiB (default 5GB)", "SIZE" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force, "Replace an existing output (a directory, a file or a link: the link itself, never what it points to)", NULL },
    { "requantize", 0, 0, G_OPTION_ARG_NONE, &requantize, "MODEL is already quantized: dequantize it with its quantization_config, then quantize the result", NULL },
    { "export-format", 0, 0, G_OPTION_ARG_STRING, &export_format, "The checkpoint format (quark formats lists them; default quark; the brevitas backend writes quark or integers)", "FORMAT" },
    { "type", 't', 0, G_OPTION_ARG_STRING, &file_type, "With --export-format gguf: the llama.cpp type, such as Q4_0 or Q8_0 (quark presets --export-format gguf lists them)", "TYPE" },
    { "imatrix", 0, 0, G_OPTION_ARG_FILENAME, &imatrix_file, "With --export-format gguf: quantize with llama.cpp's importance matrix from this file (llama-imatrix's or quark imatrix's), as llama-quantize --imatrix; --calibration-text computes one instead", "FILE" },
    { "pure", 0, 0, G_OPTION_ARG_NONE, &pure, "With --export-format gguf: every 2-D weight in --type, without llama-quantize's per-tensor choices (llama-quantize --pure)", NULL },
    { "inexact", 0, 0, G_OPTION_ARG_STRING, &inexact, "With --export-format gguf and an already quantized MODEL (its codes carried into --type Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0): what to do with weights whose scales or minima are not exact in FP16: fail (default), round (as AMD Quark's export; reported), dequantize (those weights in F32)", "MODE" },
    { "allow-nonfinite", 0, 0, G_OPTION_ARG_NONE, &allow_nonfinite, "Quantize NaN as 0 and infinities as the tensor's largest finite magnitude instead of failing", NULL },
    { "no-sync", 0, 0, G_OPTION_ARG_NONE, &no_sync, "Do not wait for the disk: give OUT its name without flushing its files to the disk first (by default they are flushed, so that a power failure never leaves a damaged OUT); a run to a disk then ends as soon as a copy would", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print a JSON summary for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GMainLoop) loop = NULL;
  g_autoptr(GPtrArray) non_float = g_ptr_array_new_with_free_func (g_free);
  QuantizeJob job = { 0 };
  guint sigint_id, sigterm_id;
  guint64 max_shard = 0;
  ProgressState progress = { 0 };
  g_autofree char *snapshot = NULL;
  g_autoptr(QuarkCheckpointFormat) file_format = NULL;
  int status = 0;

  /* first of all: Ctrl-C works from here on, during loading too */
  sigint_id = g_unix_signal_add (SIGINT, on_stop_signal, cancellable);
  sigterm_id = g_unix_signal_add (SIGTERM, on_stop_signal, cancellable);
  if (!parse_options ("quantize", "MODEL",
                      "Quantizes MODEL (a Hugging Face model directory, or one .safetensors file)\n"
                      "with --preset or --config and writes the checkpoint to OUT, with\n"
                      "config.json's quantization_config and the directory's other files\n"
                      "(symbolic links are copied as the files they name).\n"
                      "Floating-point weights are quantized; integer, boolean and FP8 tensors\n"
                      "are copied unchanged. OUT is written under a temporary name and renamed\n"
                      "when complete; an existing OUT is replaced only with --force; an\n"
                      "interrupted run (Ctrl-C) removes what it wrote. MODEL is never modified.\n"
                      "docs/guarantees.md lists every promise about inputs and outputs.",
                      entries, &argc, &argv, &status))
    goto done;
  if (export_format)
    {
      /* an unknown name fails later, in the backend, with the known ones */
      file_format = quark_registry_new_format (quark_registry_get_default (), export_format, NULL);
      if (file_format && !quark_checkpoint_format_writes_files (file_format))
        g_clear_object (&file_format);
    }
  {
    gboolean to_file = file_format != NULL;
    const char *usage_error = argc < 2 ? "MODEL is missing: the model directory or .safetensors file to quantize"
                              : argc > 2 ? "give one MODEL"
                              : output == NULL ? "-o OUT is missing: where to write the checkpoint"
                              : to_file && file_type == NULL
                                ? "--type is missing: the type of every weight (\"quark presets --export-format gguf\" lists them)"
                              : to_file && (preset || config_file || stats_file || backend_name || algorithms)
                                ? "--export-format gguf quantizes with llama.cpp's types (--type), not with a backend's "
                                  "--preset, --config, --calibration, --algorithm or --backend"
                              : imatrix_file && calibration_text
                                ? "--imatrix and --calibration-text both given: choose one"
                              : !to_file && imatrix_file ? "--imatrix applies to --export-format gguf only"
                              : stats_file && calibration_text ? "--calibration and --calibration-text both given: choose one"
                              : calibration_tokens < 2 ? "--calibration-tokens must be at least 2"
                              : !to_file && (file_type || pure) ? "--type and --pure apply to --export-format gguf only"
                              : !to_file && inexact ? "--inexact applies to --export-format gguf only"
                              : inexact && !g_str_equal (inexact, "fail") && !g_str_equal (inexact, "round") &&
                                  !g_str_equal (inexact, "dequantize")
                                ? "--inexact takes fail, round or dequantize"
                              : !to_file && preset == NULL && config_file == NULL
                                ? "choose how to quantize: --preset NAME (\"quark presets\" lists them) or --config FILE"
                              : preset && config_file ? "--preset and --config both given: choose one" : NULL;
    if (usage_error)
      {
        g_printerr ("quark quantize: %s\nTry \"quark quantize --help\".\n", usage_error);
        status = EXIT_USAGE;
        goto done;
      }
  }
  if (threads != -1 && (threads < 1 || threads > 256))
    {
      g_printerr ("quark quantize: --threads takes a number from 1 to 256\n");
      status = EXIT_USAGE;
      goto done;
    }
  if (shard_text && !parse_size (shard_text, &max_shard))
    {
      g_printerr ("quark quantize: --max-shard-size: \"%s\" is not a size (such as 5GB or 500MiB)\n", shard_text);
      status = EXIT_USAGE;
      goto done;
    }
  snapshot = cached_snapshot (argv[1]);
  if (snapshot)
    {
      if (!json)
        g_printerr ("quark quantize: %s: the cached snapshot %s\n", argv[1], snapshot);
      argv[1] = snapshot;
    }
  if (!check_output_apart (argv[1], output, &error))
    goto fail;
  /* before any work: calibration and quantization can take hours, and the
   * writers would refuse an existing output only when they begin or finish */
  if (!force && g_lstat (output, &output_st) == 0)
    {
      g_set_error (&error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s: already exists", output);
      goto fail;
    }

  if (pure && file_type)
    pure_type = g_strconcat (file_type, ":pure", NULL);
  else if (file_type)
    pure_type = g_strdup (file_type);
  progress.tty = isatty (fileno (stderr)) && !json;
  progress.start = g_get_monotonic_time ();
  loop = g_main_loop_new (NULL, FALSE);
  job = (QuantizeJob) {
    .model_path = argv[1], .output = output, .config_file = config_file, .preset = preset,
    .backend_name = backend_name, .stats_file = stats_file,
    .calibration_text = calibration_text, .calibration_tokens = calibration_tokens, .algorithms = algorithms,
    .imatrix_file = imatrix_file, .inexact = inexact,
    .export_format = export_format, .file_type = pure_type,
    .file_format = file_format, .excludes = excludes, .max_shard = max_shard, .force = force,
    .allow_nonfinite = allow_nonfinite, .requantize = requantize, .no_sync = no_sync, .threads = threads,
    .cancellable = cancellable, .loop = loop, .progress = &progress, .non_float = non_float,
  };
  {
    GThread *thread = g_thread_new ("quantize", quantize_job_run, &job);
    g_main_loop_run (loop);
    g_thread_join (thread);
  }
  if (!job.ok)
    {
      g_propagate_error (&error, job.error);
      goto fail;
    }

  for (guint i = 0; job.skipped && job.skipped[i]; i++)
    g_printerr ("quark quantize: not copied (not a regular file): %s\n", job.skipped[i]);
  for (guint i = 0; !json && job.report && job.report[i]; i++)
    g_printerr ("quark quantize: %s\n", job.report[i]);
  if (json)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();
      g_autoptr(JsonNode) root = NULL;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "output");
      json_builder_add_string_value (b, output);
      json_builder_set_member_name (b, "tensors_in");
      json_builder_add_int_value (b, quark_model_get_n_tensors (job.model));
      json_builder_set_member_name (b, "bytes_out");
      json_builder_add_int_value (b, job.writer ? (gint64) quark_checkpoint_writer_get_bytes_written (job.writer)
                                                : (gint64) job.file_bytes);
      json_builder_set_member_name (b, "seconds");
      json_builder_add_double_value (b, (g_get_monotonic_time () - progress.start) / 1e6);
      /* copied unchanged because they are not floating point */
      json_builder_set_member_name (b, "non_float_tensors");
      json_builder_begin_array (b);
      for (guint i = 0; i < non_float->len; i++)
        {
          g_auto(GStrv) parts = g_strsplit (g_ptr_array_index (non_float, i), " ", 2);
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "name");
          json_builder_add_string_value (b, parts[0]);
          json_builder_set_member_name (b, "dtype");
          json_builder_add_string_value (b, parts[1]);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      json_builder_set_member_name (b, "skipped_files");
      json_builder_begin_array (b);
      for (guint i = 0; job.skipped && job.skipped[i]; i++)
        json_builder_add_string_value (b, job.skipped[i]);
      json_builder_end_array (b);
      /* GGUF from a quantized model: the weights not carried over exactly */
      json_builder_set_member_name (b, "inexact_tensors");
      json_builder_begin_array (b);
      for (guint i = 0; job.report && job.report[i]; i++)
        json_builder_add_string_value (b, job.report[i]);
      json_builder_end_array (b);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      print_json (root);
    }
  else
    {
      g_print ("Wrote %s: %.1f MB of tensors from %u in %.1f s\n", output,
               (job.writer ? quark_checkpoint_writer_get_bytes_written (job.writer) : job.file_bytes) / 1e6,
               quark_model_get_n_tensors (job.model), (g_get_monotonic_time () - progress.start) / 1e6);
      if (non_float->len)
        g_print ("%u tensors are not floating point and were copied unchanged\n", non_float->len);
    }
  goto done;

fail:
  if (progress.tty && progress.last_done)
    g_printerr ("\n");
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_prefix_error (&error, "interrupted, %s was not written: ", output);
  else if (g_error_matches (error, QUARK_ERROR, QUARK_ERROR_EXISTS))
    {
      g_autofree char *message = g_strdup_printf ("%s: already exists; --force replaces it", output);
      g_free (error->message);
      error->message = g_steal_pointer (&message);
    }
  status = report_failure ("quantize", error, json);
done:
  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_clear_object (&job.model);
  g_clear_object (&job.writer);
  g_strfreev (job.skipped);
  g_strfreev (job.report);
  return status;
}

/* ---- inspect ---------------------------------------------------------------- */

static int
cmd_inspect (int argc, char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(JsonBuilder) b = json_builder_new ();
  JsonNode *metadata, *qc = NULL;
  g_autofree char *format_name = NULL;
  int status = 0;

  if (!parse_options ("inspect", "PATH", "Lists the tensors of a checkpoint (a directory or a .safetensors file)\n"
                      "and the quantization_config of its config.json.", entries, &argc, &argv, &status))
    return status;
  if (argc != 2)
    {
      g_printerr ("quark inspect: give one PATH\nTry \"quark inspect --help\".\n");
      return EXIT_USAGE;
    }
  {
    /* a single-file format (GGUF): its tensors as stored */
    g_autoptr(QuarkCheckpointFormat) file_format = quark_registry_format_for_file (quark_registry_get_default (),
                                                                                   argv[1]);
    model = file_format ? quark_checkpoint_format_read_file (file_format, argv[1], FALSE, &error)
                        : quark_model_load (argv[1], NULL, &error);
    if (file_format)
      format_name = g_strdup (quark_checkpoint_format_get_name (file_format));
  }
  if (model == NULL)
    return report_failure ("inspect", error, json);
  metadata = quark_model_get_metadata (model);
  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata))
    qc = json_object_get_member (json_node_get_object (metadata), "quantization_config");
  if (format_name == NULL)
    format_name = tool_checkpoint_format_name (model);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "tensors");
  json_builder_begin_array (b);
  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      g_autofree char *shape = quark_tensor_format_shape (t);
      gsize size;
      guint n_dims;
      const gint64 *dims = quark_tensor_get_shape (t, &n_dims);
      quark_tensor_peek_data (t, &size);
      if (!json)
        g_print ("%-60s %-9s %-16s %12" G_GSIZE_FORMAT "\n", quark_tensor_get_name (t),
                 quark_dtype_to_safetensors (quark_tensor_get_dtype (t)) ? quark_dtype_to_safetensors (quark_tensor_get_dtype (t))
                                                                         : quark_dtype_get_name (quark_tensor_get_dtype (t)),
                 shape, size);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, quark_tensor_get_name (t));
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, quark_dtype_to_safetensors (quark_tensor_get_dtype (t)));
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (guint d = 0; d < n_dims; d++)
        json_builder_add_int_value (b, dims[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "bytes");
      json_builder_add_int_value (b, (gint64) size);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "quantization_config");
  if (qc)
    json_builder_add_value (b, json_node_copy (qc));
  else
    json_builder_add_null_value (b);
  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata) && json_object_has_member (json_node_get_object (metadata), "gguf"))
    {
      json_builder_set_member_name (b, "gguf");
      json_builder_add_value (b, json_node_copy (json_object_get_member (json_node_get_object (metadata), "gguf")));
    }
  /* the checkpoint format, by the registered format that recognizes it */
  json_builder_set_member_name (b, "format");
  if (format_name)
    json_builder_add_string_value (b, format_name);
  else
    json_builder_add_null_value (b);
  json_builder_end_object (b);

  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (b);
      print_json (root);
    }
  else if (qc)
    {
      g_print ("\nformat: %s\n", format_name ? format_name : "(not a registered format)");
      g_print ("quantization_config:\n");
      print_json (qc);
    }
  else if (metadata && JSON_NODE_HOLDS_OBJECT (metadata) &&
           json_object_has_member (json_node_get_object (metadata), "gguf"))
    {
      /* a GGUF file: its key-values (long arrays as their length) */
      g_print ("\nformat: %s\nkey-values:\n", format_name ? format_name : "gguf");
      print_json (json_object_get_member (json_node_get_object (metadata), "gguf"));
    }
  else
    g_print ("\nNo quantization_config.\n");
  return 0;
}

/* ---- verify ----------------------------------------------------------------- */

static int
cmd_verify (int argc, char **argv)
{
  double threshold = 10.0;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "threshold", 't', 0, G_OPTION_ARG_DOUBLE, &threshold, "Fail when a layer's SQNR is below this (default 10 dB)", "DB" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) original = NULL, quantized = NULL, restored = NULL;
  g_autoptr(JsonBuilder) b = json_builder_new ();
  guint n_checked = 0, n_below = 0;
  double worst = INFINITY;
  int status = 0;

  if (!parse_options ("verify", "ORIGINAL QUANTIZED",
                      "Reads QUANTIZED back with the quantization_config of its config.json and\n"
                      "compares every quantized weight with ORIGINAL: SQNR, largest absolute\n"
                      "error and MSE per layer. Exits 1 when a layer is below --threshold.",
                      entries, &argc, &argv, &status))
    return status;
  if (argc != 3)
    {
      g_printerr ("quark verify: give ORIGINAL and QUANTIZED\nTry \"quark verify --help\".\n");
      return EXIT_USAGE;
    }
  original = quark_model_load (argv[1], NULL, &error);
  if (original == NULL)
    goto fail;
  {
    /* a single-file format (GGUF) reads back to the original's names */
    g_autoptr(QuarkCheckpointFormat) file_format = quark_registry_format_for_file (quark_registry_get_default (),
                                                                                   argv[2]);
    if (file_format)
      {
        if ((restored = quark_checkpoint_format_read_file (file_format, argv[2], TRUE, &error)) == NULL)
          goto fail;
      }
    else if ((quantized = quark_model_load (argv[2], NULL, &error)) == NULL ||
             (restored = tool_dequantize_checkpoint (quantized, argv[2], &error)) == NULL)
      goto fail;
  }

  if (!json)
    g_print ("%-56s %9s %12s %12s\n", "tensor", "SQNR dB", "max |err|", "MSE");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "tensors");
  json_builder_begin_array (b);
  for (guint i = 0; i < quark_model_get_n_tensors (original); i++)
    {
      QuarkTensor *x = quark_model_get_tensor_at (original, i);
      QuarkTensor *y = quark_model_get_tensor (restored, quark_tensor_get_name (x));
      g_autofree float *a = NULL, *c = NULL;
      gsize na, nc;
      QuarkErrorMetrics m;
      gboolean below;

      if (y == NULL)
        {
          g_set_error (&error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: tensor %s of the original is missing",
                       argv[2], quark_tensor_get_name (x));
          goto fail;
        }
      if (g_bytes_equal (quark_tensor_get_data (x), quark_tensor_get_data (y)) &&
          quark_tensor_get_dtype (x) == quark_tensor_get_dtype (y))
        continue;   /* left in float */
      if ((a = quark_tensor_to_floats (x, &na, &error)) == NULL || (c = quark_tensor_to_floats (y, &nc, &error)) == NULL)
        goto fail;
      if (na != nc)
        {
          g_set_error (&error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: tensor %s has %" G_GSIZE_FORMAT
                       " elements, the original %" G_GSIZE_FORMAT, argv[2], quark_tensor_get_name (x), nc, na);
          goto fail;
        }
      quark_kernel_error_metrics (a, c, na, &m);
      below = m.sqnr_db < threshold;
      n_checked++;
      n_below += below;
      worst = MIN (worst, m.sqnr_db);
      if (!json)
        g_print ("%-56s %9.2f %12.4e %12.4e%s\n", quark_tensor_get_name (x), m.sqnr_db, m.max_abs, m.mse,
                 below ? "  BELOW THRESHOLD" : "");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, quark_tensor_get_name (x));
      json_builder_set_member_name (b, "sqnr_db");
      json_builder_add_double_value (b, isinf (m.sqnr_db) ? 1e300 : m.sqnr_db);
      json_builder_set_member_name (b, "max_abs_error");
      json_builder_add_double_value (b, m.max_abs);
      json_builder_set_member_name (b, "mse");
      json_builder_add_double_value (b, m.mse);
      json_builder_set_member_name (b, "below_threshold");
      json_builder_add_boolean_value (b, below);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "threshold_db");
  json_builder_add_double_value (b, threshold);
  json_builder_set_member_name (b, "below_threshold");
  json_builder_add_int_value (b, n_below);
  json_builder_end_object (b);
  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (b);
      print_json (root);
    }
  else
    g_print ("\n%u quantized tensors, lowest SQNR %.2f dB, %u below %.1f dB\n", n_checked,
             n_checked ? worst : 0.0, n_below, threshold);
  return n_below ? 1 : 0;

fail:
  return report_failure ("verify", error, json);
}

/* ---- main ------------------------------------------------------------------ */

static void
usage (FILE *stream)
{
  fprintf (stream, "Usage:\n  quark COMMAND [OPTION…]\n\nCommands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (stream, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (stream, "\nRun \"quark COMMAND --help\" for a command's options.\n"
                   "Backends are searched in QUARK_BACKEND_PATH (colon-separated), then in\n"
                   "the installed backend directory. The algorithms, calibration from text and\n"
                   "eval load BLAS and LAPACKE from QUARK_BLAS_LIBRARIES (default\n"
                   "%s).\n", QUARK_DEFAULT_BLAS_LIBRARIES);
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  /* Tensors' buffers are tens to hundreds of megabytes, allocated and freed
   * once per tensor: from the heap, where they are reused, rather than
   * mapped afresh each time (which costs a page fault per 4 KiB). */
  mallopt (M_MMAP_THRESHOLD, 1 << 30);
  mallopt (M_TRIM_THRESHOLD, 1 << 30);

  if (argc < 2)
    {
      usage (stderr);
      return EXIT_USAGE;
    }
  if (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h") || g_str_equal (argv[1], "help"))
    {
      usage (stdout);
      return 0;
    }
  if (g_str_equal (argv[1], "--version"))
    {
      g_print ("quark %s (libquark API %s, backend ABI %d)\n", QUARK_VERSION_S, QUARK_API_VERSION_S,
               QUARK_BACKEND_ABI_VERSION);
      return 0;
    }
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (argv[1], commands[i].name))
      return commands[i].run (argc - 1, argv + 1);

  g_printerr ("quark: unknown command \"%s\"\n\n", argv[1]);
  usage (stderr);
  return EXIT_USAGE;
}
