/* quark-quark-config.c: the quark backend's config (AMD Quark's config model)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * JSON shape (a subset of AMD Quark's config, growing with the kernels):
 *
 *   {
 *     "backend": "quark",
 *     "global_quant_config": LAYER,
 *     "layer_type_quant_config": { "Linear": LAYER, ... },
 *     "layer_quant_config": { "PATTERN": LAYER, ... },
 *     "exclude": [ "PATTERN", ... ]
 *   }
 *   LAYER = { "weight": SPEC|null, "input_tensors": SPEC|null,
 *             "output_tensors": SPEC|null, "bias": SPEC|null }
 *   SPEC  = { "dtype", "qscheme", "ch_axis", "group_size", "block_size", "symmetric",
 *             "is_dynamic", "round_method", "scale_type", "scale_format",
 *             "scale_calculation_mode" }
 *
 * In global_quant_config a null spec means "not quantized"; in the per-type
 * and per-name levels it means "inherit".
 */
#include "quark-quark-config.h"

#include <math.h>
#include <string.h>

/* The spec keys of AMD Quark's QuantizationSpec this backend reads. Other
 * QuarkTensorSpec properties (narrow_range) are not Quark keys and are
 * refused. */
static const char * const quark_spec_keys[] = {
  "dtype", "qscheme", "ch_axis", "group_size", "block_size", "symmetric",
  "is_dynamic", "round_method", "scale_type", "scale_format",
  "scale_calculation_mode", "mx_element_dtype", "observer_cls", "is_scale_quant",
  "enable_buffer_reuse", "max_input_numel", NULL
};

/* the QuarkTensorSpec properties a Quark spec maps to */
static const char * const spec_property_keys[] = {
  "dtype", "qscheme", "ch_axis", "group_size", "block_size", "symmetric",
  "is_dynamic", "round_method", "scale_type", "scale_format",
  "scale_calculation_mode", NULL
};

static const char * const layer_keys[] = {
  "weight", "input_tensors", "output_tensors", "bias", NULL
};

static const char * const layer_json_keys[] = {
  "weight", "input_tensors", "output_tensors", "bias", "target_device", NULL
};

static const char * const config_keys[] = {
  "global_quant_config", "layer_type_quant_config", "layer_quant_config", "exclude",
  "quant_method", "kv_cache_quant_config", "algo_config", "softmax_quant_spec",
  "kv_cache_post_rope", "quant_mode", "version", "export", NULL
};

/* AMD Quark's round_method strings and the kernel modes they select
 * (numerics reference 1.3: Quark's "round" is half up, its "floor" half
 * away from zero). */
static const struct { const char *quark; const char *mode; } round_names[] = {
  { "half_even", "half_even" }, { "round", "half_up" }, { "floor", "half_away" },
};

/* Quark observer classes and what they select. */
static const struct {
  const char *cls;
  const char *observer;     /* QuarkObserver nick */
  gboolean pof2;
} observer_names[] = {
  { "PerTensorMinMaxObserver", "min_max", FALSE },
  { "PerChannelMinMaxObserver", "min_max", FALSE },
  { "PerGroupMinMaxObserver", "min_max", FALSE },
  { "PerBlockMXObserver", "min_max", FALSE },
  { "PlaceholderObserver", "min_max", FALSE },
  { "PerTensorPercentileObserver", "histogram_percentile", FALSE },
  { "PerTensorMSEObserver", "mse", FALSE },
  { "PerTensorPowOf2MinMaxObserver", "min_max", TRUE },
  { "PerChannelPowOf2MinMaxObserver", "min_max", TRUE },
  /* libquark's activation observers (AMD Quark has no classes for them) */
  { "PerTensorMovingAverageMinMaxObserver", "moving_average_min_max", FALSE },
  { "PerTensorEntropyObserver", "kl", FALSE },
};

static const char * const layer_types[] = {
  "Linear", "Conv1d", "Conv2d", "Conv3d",
  "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", NULL
};

/* ---- QuarkQuarkLayerConfig ---------------------------------------------- */

struct _QuarkQuarkLayerConfig
{
  GObject parent_instance;
  QuarkTensorSpec *specs[4];   /* indexed by QuarkRole */
};

enum {
  LAYER_PROP_0,
  LAYER_PROP_WEIGHT,
  LAYER_PROP_INPUT_TENSORS,
  LAYER_PROP_OUTPUT_TENSORS,
  LAYER_PROP_BIAS,
  LAYER_N_PROPS
};

/* property id -> role */
static const QuarkRole layer_prop_role[LAYER_N_PROPS] = {
  [LAYER_PROP_WEIGHT] = QUARK_ROLE_WEIGHT,
  [LAYER_PROP_INPUT_TENSORS] = QUARK_ROLE_INPUT,
  [LAYER_PROP_OUTPUT_TENSORS] = QUARK_ROLE_OUTPUT,
  [LAYER_PROP_BIAS] = QUARK_ROLE_BIAS,
};

G_DEFINE_FINAL_TYPE (QuarkQuarkLayerConfig, quark_quark_layer_config, G_TYPE_OBJECT)

static void
quark_quark_layer_config_dispose (GObject *object)
{
  QuarkQuarkLayerConfig *self = QUARK_QUARK_LAYER_CONFIG (object);

  for (guint i = 0; i < G_N_ELEMENTS (self->specs); i++)
    g_clear_object (&self->specs[i]);
  G_OBJECT_CLASS (quark_quark_layer_config_parent_class)->dispose (object);
}

static void
quark_quark_layer_config_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  QuarkQuarkLayerConfig *self = QUARK_QUARK_LAYER_CONFIG (object);

  if (prop_id > LAYER_PROP_0 && prop_id < LAYER_N_PROPS)
    g_value_set_object (value, self->specs[layer_prop_role[prop_id]]);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_quark_layer_config_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  QuarkQuarkLayerConfig *self = QUARK_QUARK_LAYER_CONFIG (object);

  if (prop_id > LAYER_PROP_0 && prop_id < LAYER_N_PROPS)
    g_set_object (&self->specs[layer_prop_role[prop_id]], g_value_get_object (value));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_quark_layer_config_class_init (QuarkQuarkLayerConfigClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  const GParamFlags flags = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;

  object_class->dispose = quark_quark_layer_config_dispose;
  object_class->get_property = quark_quark_layer_config_get_property;
  object_class->set_property = quark_quark_layer_config_set_property;

  g_object_class_install_property (object_class, LAYER_PROP_WEIGHT,
    g_param_spec_object ("weight", "Weight", "Spec of the layer's weight",
                         QUARK_TYPE_TENSOR_SPEC, flags));
  g_object_class_install_property (object_class, LAYER_PROP_INPUT_TENSORS,
    g_param_spec_object ("input-tensors", "Input tensors", "Spec of the layer's input",
                         QUARK_TYPE_TENSOR_SPEC, flags));
  g_object_class_install_property (object_class, LAYER_PROP_OUTPUT_TENSORS,
    g_param_spec_object ("output-tensors", "Output tensors", "Spec of the layer's output",
                         QUARK_TYPE_TENSOR_SPEC, flags));
  g_object_class_install_property (object_class, LAYER_PROP_BIAS,
    g_param_spec_object ("bias", "Bias", "Spec of the layer's bias",
                         QUARK_TYPE_TENSOR_SPEC, flags));
}

static void
quark_quark_layer_config_init (QuarkQuarkLayerConfig *self)
{
}

QuarkTensorSpec *
quark_quark_layer_config_get_spec (QuarkQuarkLayerConfig *self,
                                   QuarkRole              role)
{
  g_return_val_if_fail ((guint) role < G_N_ELEMENTS (self->specs), NULL);
  return self->specs[role];
}

static const char *
role_key (QuarkRole role)
{
  return layer_keys[role];
}

/* ---- QuarkQuarkConfig --------------------------------------------------- */

typedef struct {
  char *pattern;
  QuarkQuarkLayerConfig *layer;
} NamedLayer;

static void
named_layer_free (gpointer data)
{
  NamedLayer *entry = data;
  g_free (entry->pattern);
  g_clear_object (&entry->layer);
  g_free (entry);
}

struct _QuarkQuarkConfig
{
  GObject parent_instance;

  QuarkQuarkLayerConfig *global;
  GPtrArray *by_type;     /* NamedLayer, key = layer type */
  GPtrArray *by_name;     /* NamedLayer, key = pattern, in JSON order */
  GStrv exclude;
  gboolean pack_reorder;  /* export.pack_method: reorder (default) or order */
  GStrv kv_cache_group;   /* export.kv_cache_group */
  gboolean kv_cache_post_rope;  /* the keys' output spec applies after RoPE (the executor's calibration and runs) */
  double min_kv_scale;    /* export.min_kv_scale */
  QuarkQuarkGptq gptq;    /* algo_config's "gptq" entry */
  QuarkQuarkScaling scaling;      /* algo_config's "awq" or "smooth" entry */
  QuarkQuarkRotation rotation;    /* algo_config's "rotation" entry */
};

static void
scaling_clear (QuarkQuarkScaling *scaling)
{
  g_clear_pointer (&scaling->scaling_layers, json_node_unref);
  g_clear_pointer (&scaling->decoder_layers, g_free);
  g_clear_pointer (&scaling->name, g_free);
}

static void config_iface_init (QuarkQuantizationConfigInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (QuarkQuarkConfig, quark_quark_config, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_QUANTIZATION_CONFIG, config_iface_init))

static void
quark_quark_config_finalize (GObject *object)
{
  QuarkQuarkConfig *self = QUARK_QUARK_CONFIG (object);

  g_clear_object (&self->global);
  g_ptr_array_unref (self->by_type);
  g_ptr_array_unref (self->by_name);
  g_strfreev (self->exclude);
  g_strfreev (self->kv_cache_group);
  scaling_clear (&self->scaling);
  G_OBJECT_CLASS (quark_quark_config_parent_class)->finalize (object);
}

static void
quark_quark_config_class_init (QuarkQuarkConfigClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_quark_config_finalize;
}

static void
quark_quark_config_init (QuarkQuarkConfig *self)
{
  g_autoptr(QuarkTensorSpec) weight = NULL;

  /* Defaults for a config made without JSON: int8 per-channel symmetric
   * weights, activations in float. */
  weight = quark_tensor_spec_new (QUARK_DTYPE_I8, QUARK_QSCHEME_PER_CHANNEL);
  self->global = g_object_new (QUARK_TYPE_QUARK_LAYER_CONFIG, "weight", weight, NULL);
  self->by_type = g_ptr_array_new_with_free_func (named_layer_free);
  self->by_name = g_ptr_array_new_with_free_func (named_layer_free);
  self->exclude = g_new0 (char *, 1);
  self->pack_reorder = TRUE;
  self->kv_cache_group = g_new0 (char *, 1);
}

static gboolean
spec_error (GError **error, int code, const char *path, const char *member, const char *message)
{
  g_autofree char *p = quark_json_path_join (path, member);
  g_set_error (error, QUARK_CONFIG_ERROR, code, "%s: %s", p, message);
  return FALSE;
}

static const char *
string_member (JsonObject *object, const char *member)
{
  JsonNode *node = json_object_get_member (object, member);
  if (node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    return json_node_get_string (node);
  return NULL;
}

/* Translates one of AMD Quark's spec objects into QuarkTensorSpec members:
 * dtype "mx" with mx_element_dtype becomes the element dtype with e8m0
 * scales, round_method and observer_cls map to libquark's names, and the
 * bookkeeping keys are checked and dropped. */
static JsonNode *
translate_spec (JsonObject  *quark,
                const char  *path,
                GError     **error)
{
  g_autoptr(JsonObject) out = json_object_new ();
  JsonNode *node;
  const char *dtype, *element, *s;

  if (!quark_json_check_members (quark, path, quark_spec_keys, error))
    return NULL;
  for (guint i = 0; spec_property_keys[i]; i++)
    if ((node = json_object_get_member (quark, spec_property_keys[i])) != NULL)
      json_object_set_member (out, spec_property_keys[i], json_node_copy (node));

  dtype = string_member (quark, "dtype");
  element = string_member (quark, "mx_element_dtype");
  if (dtype && g_str_equal (dtype, "mx"))
    {
      static const char * const elements[] = { "fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp6_e3m2", "fp4", "int8", NULL };
      if (element == NULL || !g_strv_contains (elements, element))
        {
          spec_error (error, QUARK_CONFIG_ERROR_INVALID_VALUE, path, "mx_element_dtype",
                      "dtype mx needs mx_element_dtype fp8_e4m3, fp8_e5m2, fp6_e2m3, fp6_e3m2, fp4 or int8");
          return NULL;
        }
      json_object_set_string_member (out, "dtype", element);
      if (string_member (quark, "scale_format") == NULL)
        json_object_set_string_member (out, "scale_format", "e8m0");
    }
  else if (element != NULL)
    {
      spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "mx_element_dtype",
                  "only dtype mx takes an mx_element_dtype");
      return NULL;
    }

  /* AMD Quark spells MX weights (MXFP8) as per_block with block_size
   * [1, N] and e8m0 scales: one scale per N consecutive elements of a row,
   * which is per_group N along the last axis */
  if (g_strcmp0 (string_member (out, "scale_format"), "e8m0") == 0 &&
      g_strcmp0 (string_member (out, "qscheme"), "per_block") == 0 &&
      (node = json_object_get_member (out, "block_size")) && JSON_NODE_HOLDS_ARRAY (node) &&
      json_array_get_length (json_node_get_array (node)) == 2 &&
      JSON_NODE_HOLDS_VALUE (json_array_get_element (json_node_get_array (node), 0)) &&
      json_array_get_int_element (json_node_get_array (node), 0) == 1 &&
      JSON_NODE_HOLDS_VALUE (json_array_get_element (json_node_get_array (node), 1)) &&
      json_node_get_value_type (json_array_get_element (json_node_get_array (node), 1)) == G_TYPE_INT64)
    {
      gint64 n = json_array_get_int_element (json_node_get_array (node), 1);
      json_object_set_string_member (out, "qscheme", "per_group");
      json_object_set_int_member (out, "ch_axis", -1);
      json_object_set_int_member (out, "group_size", n);
      json_object_remove_member (out, "block_size");
    }

  if ((node = json_object_get_member (quark, "round_method")) && !JSON_NODE_HOLDS_NULL (node))
    {
      s = string_member (quark, "round_method");
      json_object_remove_member (out, "round_method");
      for (guint i = 0; s && i < G_N_ELEMENTS (round_names); i++)
        if (g_str_equal (s, round_names[i].quark))
          json_object_set_string_member (out, "round_method", round_names[i].mode);
      if (!json_object_has_member (out, "round_method"))
        {
          spec_error (error, s ? QUARK_CONFIG_ERROR_INVALID_VALUE : QUARK_CONFIG_ERROR_TYPE_MISMATCH, path,
                      "round_method", "expected one of: half_even, round, floor");
          return NULL;
        }
    }

  if ((s = string_member (quark, "scale_type")) != NULL && g_str_equal (s, "float32"))
    json_object_set_string_member (out, "scale_type", "float");

  if ((node = json_object_get_member (quark, "observer_cls")) && !JSON_NODE_HOLDS_NULL (node))
    {
      gboolean found = FALSE;
      s = string_member (quark, "observer_cls");
      for (guint i = 0; s && i < G_N_ELEMENTS (observer_names); i++)
        if (g_str_equal (s, observer_names[i].cls))
          {
            found = TRUE;
            if (!g_str_equal (observer_names[i].observer, "min_max"))
              json_object_set_string_member (out, "observer", observer_names[i].observer);
            if (g_str_equal (observer_names[i].observer, "histogram_percentile"))
              json_object_set_double_member (out, "percentile", 99.99999999);
            if (observer_names[i].pof2)
              json_object_set_string_member (out, "scale_type", "pof2");
          }
      if (!found)
        {
          g_autoptr(GString) list = g_string_new (NULL);
          for (guint i = 0; i < G_N_ELEMENTS (observer_names); i++)
            g_string_append_printf (list, "%s%s", i ? ", " : "", observer_names[i].cls);
          g_set_error (error, QUARK_CONFIG_ERROR, s ? QUARK_CONFIG_ERROR_INVALID_VALUE : QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                       "%s.observer_cls: %s%s%s is not supported (supported: %s)", path,
                       s ? "\"" : "", s ? s : "this value", s ? "\"" : "", list->str);
          return NULL;
        }
    }

  if ((node = json_object_get_member (quark, "is_scale_quant")) && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
        {
          spec_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, "is_scale_quant", "expected true or false");
          return NULL;
        }
      if (json_node_get_boolean (node))
        {
          g_autofree char *p = quark_json_path_join (path, "is_scale_quant");
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "%s: two-stage scale quantization is not supported by the quark backend", p);
          return NULL;
        }
    }
  if ((node = json_object_get_member (quark, "enable_buffer_reuse")) && !JSON_NODE_HOLDS_NULL (node) &&
      (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN))
    {
      spec_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, "enable_buffer_reuse", "expected true or false");
      return NULL;
    }
  if ((node = json_object_get_member (quark, "max_input_numel")) && !JSON_NODE_HOLDS_NULL (node) &&
      (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64 ||
       json_node_get_int (node) < 0))
    {
      spec_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, "max_input_numel", "expected a non-negative integer");
      return NULL;
    }
  return json_node_init_object (json_node_alloc (), out);
}

/* Loads LAYER at @path: checks layer and spec keys against Quark's,
 * translates Quark's spelling, then builds the object with the strict
 * property loader. */
static QuarkQuarkLayerConfig *
load_layer (JsonNode    *node,
            const char  *path,
            GError     **error)
{
  g_autoptr(JsonObject) translated = json_object_new ();
  g_autoptr(JsonNode) translated_node = NULL;
  JsonObject *object;
  JsonNode *device;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "%s: expected an object", path);
      return NULL;
    }
  object = json_node_get_object (node);
  if (!quark_json_check_members (object, path, layer_json_keys, error))
    return NULL;
  device = json_object_get_member (object, "target_device");
  if (device && !JSON_NODE_HOLDS_NULL (device) &&
      (!JSON_NODE_HOLDS_VALUE (device) || json_node_get_value_type (device) != G_TYPE_STRING))
    {
      spec_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, "target_device", "expected a string or null");
      return NULL;
    }
  for (guint i = 0; layer_keys[i]; i++)
    {
      JsonNode *spec = json_object_get_member (object, layer_keys[i]);
      g_autofree char *spec_path = quark_json_path_join (path, layer_keys[i]);

      if (spec == NULL)
        continue;
      if (JSON_NODE_HOLDS_OBJECT (spec))
        {
          JsonNode *t = translate_spec (json_node_get_object (spec), spec_path, error);
          if (t == NULL)
            return NULL;
          json_object_set_member (translated, layer_keys[i], t);
        }
      else if (JSON_NODE_HOLDS_ARRAY (spec))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "%s: two-stage specs (a list of two) are not supported by the quark backend", spec_path);
          return NULL;
        }
      else
        json_object_set_member (translated, layer_keys[i], json_node_copy (spec));
    }
  translated_node = json_node_init_object (json_node_alloc (), translated);
  return (QuarkQuarkLayerConfig *) quark_json_new_object (QUARK_TYPE_QUARK_LAYER_CONFIG, translated_node,
                                                          path, error);
}

static gboolean
load_layer_map (JsonObject  *config,
                const char  *key,
                gboolean     keys_are_types,
                GPtrArray   *out,
                GError     **error)
{
  JsonNode *node = json_object_get_member (config, key);
  g_autoptr(GList) members = NULL;
  JsonObject *map;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "%s: expected an object", key);
      return FALSE;
    }
  map = json_node_get_object (node);
  members = json_object_get_members (map);
  for (GList *l = members; l; l = l->next)
    {
      const char *name = l->data;
      g_autofree char *path = quark_json_path_join (key, name);
      g_autoptr(GError) pattern_error = NULL;
      NamedLayer *entry;
      QuarkQuarkLayerConfig *layer;

      if (keys_are_types && !g_strv_contains (layer_types, name))
        {
          g_autofree char *list = g_strjoinv (", ", (char **) layer_types);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s: unknown layer type (expected one of: %s)", path, list);
          return FALSE;
        }
      if (!keys_are_types && !quark_pattern_validate (name, &pattern_error))
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s: %s", path, pattern_error->message);
          return FALSE;
        }
      layer = load_layer (json_object_get_member (map, name), path, error);
      if (layer == NULL)
        return FALSE;
      entry = g_new0 (NamedLayer, 1);
      entry->pattern = g_strdup (name);
      entry->layer = layer;
      g_ptr_array_add (out, entry);
    }
  return TRUE;
}

static gboolean
expect_null_or_empty (JsonObject *object, const char *key, GError **error)
{
  JsonNode *node = json_object_get_member (object, key);

  if (node == NULL || JSON_NODE_HOLDS_NULL (node) ||
      (JSON_NODE_HOLDS_ARRAY (node) && json_array_get_length (json_node_get_array (node)) == 0) ||
      (JSON_NODE_HOLDS_OBJECT (node) && json_object_get_size (json_node_get_object (node)) == 0))
    return TRUE;
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "%s: not supported by the quark backend (only null or empty)", key);
  return FALSE;
}

static void
scaling_group_free (gpointer data)
{
  QuarkQuarkScalingGroup *g = data;
  g_free (g->prev_op);
  g_strfreev (g->layers);
  g_free (g->inp);
  g_free (g);
}

GPtrArray *
quark_quark_scaling_groups_parse (JsonNode *node, const char *path, GError **error)
{
  g_autoptr(GPtrArray) groups = g_ptr_array_new_with_free_func (scaling_group_free);
  JsonArray *list;

  if (!quark_topology_check_scaling_layers (node, path, error))
    return NULL;
  list = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonObject *o = json_array_get_object_element (list, i);
      JsonArray *layers = json_object_get_array_member (o, "layers");
      g_autoptr(GStrvBuilder) names = g_strv_builder_new ();
      QuarkQuarkScalingGroup *g = g_new0 (QuarkQuarkScalingGroup, 1);
      const char *inp = string_member (o, "inp");

      for (guint k = 0; k < json_array_get_length (layers); k++)
        g_strv_builder_add (names, json_array_get_string_element (layers, k));
      g->prev_op = g_strdup (string_member (o, "prev_op"));
      g->layers = g_strv_builder_end (names);
      g->inp = g_strdup (inp ? inp : g->layers[0]);
      g_ptr_array_add (groups, g);
    }
  return g_steal_pointer (&groups);
}

/* An optional integer member from 1 to @max into *@out */
static gboolean
read_count (JsonObject *o, const char *path, const char *key, gint64 max, guint *out, GError **error)
{
  JsonNode *v = json_object_get_member (o, key);

  if (v == NULL || JSON_NODE_HOLDS_NULL (v))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_INT64 ||
      json_node_get_int (v) < 1 || json_node_get_int (v) > max)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "%s.%s: expected an integer from 1 to %" G_GINT64_FORMAT, path, key, max);
      return FALSE;
    }
  *out = (guint) json_node_get_int (v);
  return TRUE;
}

static gboolean
load_gptq (JsonObject *o, const char *path, QuarkQuarkGptq *gptq, GError **error)
{
  static const char * const gptq_keys[] = {
    "name", "damp_percent", "block_size", "desc_act", "static_groups", "true_sequential", "inside_layer_modules",
    "model_decoder_layers", "bits", "group_size", "refine_scales", "correct_input_error", NULL
  };
  JsonNode *v;

  if (!quark_json_check_members (o, path, gptq_keys, error))
    return FALSE;
  gptq->enabled = TRUE;
  if ((v = json_object_get_member (o, "damp_percent")) && !JSON_NODE_HOLDS_NULL (v))
    {
      if (!JSON_NODE_HOLDS_VALUE (v) || (json_node_get_value_type (v) != G_TYPE_DOUBLE &&
                                         json_node_get_value_type (v) != G_TYPE_INT64) ||
          !(json_node_get_double (v) >= 0.0 && json_node_get_double (v) <= 1.0))
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s.damp_percent: expected a number from 0 to 1", path);
          return FALSE;
        }
      gptq->damp_percent = json_node_get_double (v);
    }
  if (!read_count (o, path, "block_size", 65536, &gptq->block_size, error))
    return FALSE;
  for (guint k = 0; k < 5; k++)
    {
      static const char * const flags[] = { "desc_act", "static_groups", "refine_scales", "correct_input_error",
                                            "true_sequential" };
      const char *key = flags[k];
      if ((v = json_object_get_member (o, key)) && !JSON_NODE_HOLDS_NULL (v) &&
          (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_BOOLEAN))
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                       "%s.%s: expected true or false", path, key);
          return FALSE;
        }
    }
  gptq->desc_act = json_object_get_boolean_member_with_default (o, "desc_act", TRUE);
  gptq->static_groups = json_object_get_boolean_member_with_default (o, "static_groups", TRUE);
  gptq->refine_scales = json_object_get_boolean_member_with_default (o, "refine_scales", FALSE);
  gptq->correct_input_error = json_object_get_boolean_member_with_default (o, "correct_input_error", FALSE);
  gptq->true_sequential = json_object_get_boolean_member_with_default (o, "true_sequential", FALSE);
  /* static_groups false with desc_act: groups in activation order, which
   * only formats that store each column's group carry (checked against the
   * export format before any work) */
  return TRUE;
}

/* An optional number in [@lo, @hi] (@lo excluded when @open_lo) into *@out */
static gboolean
read_number (JsonObject *o, const char *path, const char *key, double lo, gboolean open_lo, double hi, double *out,
             GError **error)
{
  JsonNode *v = json_object_get_member (o, key);
  double x;

  if (v == NULL || JSON_NODE_HOLDS_NULL (v))
    return TRUE;
  x = JSON_NODE_HOLDS_VALUE (v) && (json_node_get_value_type (v) == G_TYPE_DOUBLE ||
                                    json_node_get_value_type (v) == G_TYPE_INT64) ? json_node_get_double (v) : NAN;
  if (!(x >= lo && x <= hi) || (open_lo && x == lo))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "%s.%s: expected a number from %g%s to %g", path, key, lo, open_lo ? " (excluded)" : "", hi);
      return FALSE;
    }
  *out = x;
  return TRUE;
}

/* AMD Quark's RotationConfig: the model's own topology, a Hadamard matrix
 * (random signs with "random"; libquark's "seed") */
static gboolean
load_rotation (JsonObject *o, const char *path, QuarkQuarkRotation *rotation, GError **error)
{
  static const char * const keys[] = { "name", "random", "seed", "model_decoder_layers", "scaling_layers", NULL };
  JsonNode *v;

  if (!quark_json_check_members (o, path, keys, error))
    return FALSE;
  rotation->enabled = TRUE;
  if ((v = json_object_get_member (o, "scaling_layers")) && !JSON_NODE_HOLDS_NULL (v))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "%s.scaling_layers: rotation follows the "
                   "model's own topology (llama, mistral, qwen2); explicit layers are not implemented", path);
      return FALSE;
    }
  if ((v = json_object_get_member (o, "model_decoder_layers")) && !JSON_NODE_HOLDS_NULL (v) &&
      (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING ||
       !g_str_equal (json_node_get_string (v), "model.layers")))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "%s.model_decoder_layers: rotation follows "
                   "the model's own topology, whose decoder layers are \"model.layers\"", path);
      return FALSE;
    }
  if ((v = json_object_get_member (o, "random")) && !JSON_NODE_HOLDS_NULL (v))
    {
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_BOOLEAN)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s.random: expected true or "
                       "false", path);
          return FALSE;
        }
      rotation->random = json_node_get_boolean (v);
    }
  if ((v = json_object_get_member (o, "seed")) && !JSON_NODE_HOLDS_NULL (v))
    {
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_INT64 || json_node_get_int (v) < 0)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE, "%s.seed: expected an integer "
                       "from 0", path);
          return FALSE;
        }
      rotation->seed = (guint64) json_node_get_int (v);
    }
  return TRUE;
}

/* AMD Quark's AWQConfig (with libquark's n_grid and clip) or
 * SmoothQuantConfig */
static gboolean
load_scaling (JsonObject *o, const char *path, const char *name, QuarkQuarkScaling *scaling, GError **error)
{
  static const char * const awq_keys[] = {
    "name", "scaling_layers", "model_decoder_layers", "num_attention_heads", "num_key_value_heads", "n_grid", "clip",
    NULL
  };
  static const char * const smooth_keys[] = {
    "name", "scaling_layers", "model_decoder_layers", "num_attention_heads", "num_key_value_heads", "alpha",
    "scale_clamp_min", NULL
  };
  gboolean awq = g_str_equal (name, "awq");
  JsonNode *v;

  if (!quark_json_check_members (o, path, awq ? awq_keys : smooth_keys, error))
    return FALSE;
  scaling->enabled = TRUE;
  scaling->kind = awq ? QUARK_QUARK_SCALING_AWQ : QUARK_QUARK_SCALING_SMOOTHQUANT;
  scaling->name = g_strdup (name);
  if ((v = json_object_get_member (o, "scaling_layers")) && !JSON_NODE_HOLDS_NULL (v))
    {
      g_autofree char *p = g_strdup_printf ("%s.scaling_layers", path);
      g_autoptr(GPtrArray) groups = quark_quark_scaling_groups_parse (v, p, error);
      if (groups == NULL)
        return FALSE;
      scaling->scaling_layers = json_node_copy (v);
    }
  if ((v = json_object_get_member (o, "model_decoder_layers")) && !JSON_NODE_HOLDS_NULL (v))
    {
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING ||
          *json_node_get_string (v) == '\0')
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                       "%s.model_decoder_layers: expected a name prefix such as \"model.layers\"", path);
          return FALSE;
        }
      scaling->decoder_layers = g_strdup (json_node_get_string (v));
    }
  if (!read_count (o, path, "n_grid", 1000, &scaling->n_grid, error) ||
      !read_number (o, path, "alpha", 0, FALSE, 1, &scaling->alpha, error) ||
      !read_number (o, path, "scale_clamp_min", 0, TRUE, 1e30, &scaling->clamp_min, error))
    return FALSE;
  if ((v = json_object_get_member (o, "clip")) && !JSON_NODE_HOLDS_NULL (v))
    {
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_BOOLEAN)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s.clip: expected true or false",
                       path);
          return FALSE;
        }
      scaling->clip = json_node_get_boolean (v);
    }
  return TRUE;
}

/* algo_config: AMD Quark's list of algorithm configs, each named by
 * "name". Rotation, GPTQ, AWQ and SmoothQuant are implemented (AMD Quark's
 * RotationConfig's, GPTQConfig's, AWQConfig's and SmoothQuantConfig's
 * fields; AWQ or SmoothQuant, not both); names of AMD Quark's other
 * algorithms are refused as not implemented, unknown ones as unknown. On
 * failure the caller clears *@scaling. */
static gboolean
load_algo_config (JsonObject *object, QuarkQuarkGptq *gptq, QuarkQuarkScaling *scaling,
                  QuarkQuarkRotation *rotation, GError **error)
{
  static const char * const known[] = { "quarot", "autosmoothquant", "qronos", "spinquant", "bias_correction", NULL };
  static const char * const scalings[] = { "awq", "smooth", "smoothquant", NULL };
  JsonNode *node = json_object_get_member (object, "algo_config");
  g_autoptr(JsonArray) list = NULL;

  *gptq = (QuarkQuarkGptq) { FALSE, 0.01, 128, TRUE, TRUE, FALSE, FALSE, FALSE };
  *scaling = (QuarkQuarkScaling) { FALSE, QUARK_QUARK_SCALING_AWQ, NULL, NULL, NULL, 20, TRUE, 1.0, 1e-3 };
  *rotation = (QuarkQuarkRotation) { FALSE, FALSE, 0 };
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      /* one config rather than a list */
      list = json_array_new ();
      json_array_add_element (list, json_node_copy (node));
    }
  else if (JSON_NODE_HOLDS_ARRAY (node))
    list = json_array_ref (json_node_get_array (node));
  else
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "algo_config: expected a list of algorithm configs");
      return FALSE;
    }
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      g_autofree char *path = quark_json_path_index ("algo_config", i);
      JsonNode *item = json_array_get_element (list, i);
      JsonObject *o = JSON_NODE_HOLDS_OBJECT (item) ? json_node_get_object (item) : NULL;
      const char *name = o ? string_member (o, "name") : NULL;

      if (name == NULL)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_MISSING_KEY,
                       "%s: expected an object with a \"name\"", path);
          return FALSE;
        }
      if ((g_str_equal (name, "gptq") && gptq->enabled) || (g_str_equal (name, "rotation") && rotation->enabled) ||
          (g_strv_contains (scalings, name) && scaling->enabled))
        {
          if (g_str_equal (name, "gptq") || g_str_equal (name, "rotation") || g_str_equal (name, scaling->name))
            g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                         "%s.name: %s is listed twice", path, name);
          else
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                         "%s.name: %s after %s: one scaling algorithm (awq or smooth) per config", path, name,
                         scaling->name);
          return FALSE;
        }
      if (g_str_equal (name, "gptq") ? !load_gptq (o, path, gptq, error)
          : g_str_equal (name, "rotation") ? !load_rotation (o, path, rotation, error)
          : g_strv_contains (scalings, name) ? !load_scaling (o, path, name, scaling, error) : FALSE)
        {
          return FALSE;
        }
      if (!g_str_equal (name, "gptq") && !g_str_equal (name, "rotation") && !g_strv_contains (scalings, name))
        {
          if (g_strv_contains (known, name))
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                         "%s.name: the %s algorithm is not implemented in the quark backend yet (rotation, awq, "
                         "smooth and gptq are)", path, name);
          else
            g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                         "%s.name: unknown algorithm \"%s\" (the quark backend implements rotation, awq, smooth "
                         "and gptq)", path, name);
          return FALSE;
        }
    }
  return TRUE;
}

/* The keys of Quark's exported quantization_config that are not layer
 * specs. */
static gboolean
load_quark_extras (JsonObject  *object,
                   gboolean    *pack_reorder,
                   GStrv       *kv_cache_group,
                   double      *min_kv_scale,
                   GError     **error)
{
  static const char * const export_keys[] = {
    "kv_cache_group", "pack_method", "weight_format", "min_kv_scale", "weight_merge_groups", NULL
  };
  g_autoptr(GStrvBuilder) kv = g_strv_builder_new ();
  JsonNode *node;
  const char *s;

  if ((node = json_object_get_member (object, "quant_method")) &&
      ((s = string_member (object, "quant_method")) == NULL || !g_str_equal (s, "quark")))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "quant_method: expected \"quark\"");
      return FALSE;
    }
  if (!expect_null_or_empty (object, "kv_cache_quant_config", error) ||
      !expect_null_or_empty (object, "softmax_quant_spec", error))
    return FALSE;
  if ((node = json_object_get_member (object, "kv_cache_post_rope")) &&
      (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "kv_cache_post_rope: expected true or false");
      return FALSE;
    }
  for (guint i = 0; i < 2; i++)
    {
      const char *key = i ? "version" : "quant_mode";
      if ((node = json_object_get_member (object, key)) && !JSON_NODE_HOLDS_NULL (node) &&
          string_member (object, key) == NULL)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s: expected a string", key);
          return FALSE;
        }
    }

  *pack_reorder = TRUE;
  node = json_object_get_member (object, "export");
  if (node && !JSON_NODE_HOLDS_NULL (node))
    {
      JsonObject *exp;
      JsonNode *group;
      if (!JSON_NODE_HOLDS_OBJECT (node))
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "export: expected an object");
          return FALSE;
        }
      exp = json_node_get_object (node);
      if (!quark_json_check_members (exp, "export", export_keys, error))
        return FALSE;
      if ((s = string_member (exp, "pack_method")) != NULL)
        {
          if (!g_str_equal (s, "reorder") && !g_str_equal (s, "order"))
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                           "export.pack_method: unknown value \"%s\" (expected one of: reorder, order)", s);
              return FALSE;
            }
          *pack_reorder = g_str_equal (s, "reorder");
        }
      if ((s = string_member (exp, "weight_format")) != NULL && !g_str_equal (s, "real_quantized"))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "export.weight_format: only real_quantized is supported, not \"%s\"", s);
          return FALSE;
        }
      group = json_object_get_member (exp, "min_kv_scale");
      if (group && !JSON_NODE_HOLDS_NULL (group))
        {
          if (!JSON_NODE_HOLDS_VALUE (group) || (json_node_get_value_type (group) != G_TYPE_DOUBLE &&
                                                 json_node_get_value_type (group) != G_TYPE_INT64))
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                           "export.min_kv_scale: expected a number");
              return FALSE;
            }
          *min_kv_scale = json_node_get_value_type (group) == G_TYPE_DOUBLE ? json_node_get_double (group)
                                                                           : (double) json_node_get_int (group);
          if (!(*min_kv_scale >= 0 && *min_kv_scale <= G_MAXFLOAT))
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                           "export.min_kv_scale: expected a number from 0 to %g", (double) G_MAXFLOAT);
              return FALSE;
            }
        }
      group = json_object_get_member (exp, "kv_cache_group");
      if (group && !JSON_NODE_HOLDS_NULL (group))
        {
          JsonArray *a;
          if (!JSON_NODE_HOLDS_ARRAY (group))
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                           "export.kv_cache_group: expected a list of patterns");
              return FALSE;
            }
          a = json_node_get_array (group);
          for (guint i = 0; i < json_array_get_length (a); i++)
            {
              JsonNode *e = json_array_get_element (a, i);
              if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
                {
                  g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                               "export.kv_cache_group[%u]: expected a string", i);
                  return FALSE;
                }
              g_strv_builder_add (kv, json_node_get_string (e));
            }
        }
    }
  *kv_cache_group = g_strv_builder_end (kv);
  return TRUE;
}

static gboolean
quark_quark_config_load_json (QuarkQuantizationConfig  *config,
                              JsonObject               *object,
                              GError                  **error)
{
  QuarkQuarkConfig *self = QUARK_QUARK_CONFIG (config);
  g_autoptr(QuarkQuarkLayerConfig) global = NULL;
  g_autoptr(GPtrArray) by_type = g_ptr_array_new_with_free_func (named_layer_free);
  g_autoptr(GPtrArray) by_name = g_ptr_array_new_with_free_func (named_layer_free);
  g_auto(GStrv) exclude = NULL;
  g_auto(GStrv) kv_cache_group = NULL;
  gboolean pack_reorder = TRUE;
  double min_kv_scale = 0.0;
  QuarkQuarkGptq gptq;
  QuarkQuarkScaling scaling = { 0 };
  QuarkQuarkRotation rotation;
  JsonNode *global_node;

  if (!quark_json_check_members (object, NULL, config_keys, error))
    return FALSE;

  global_node = json_object_get_member (object, "global_quant_config");
  if (global_node == NULL)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_MISSING_KEY,
                   "global_quant_config: missing; it gives the default spec of every layer");
      return FALSE;
    }
  if (!load_quark_extras (object, &pack_reorder, &kv_cache_group, &min_kv_scale, error) ||
      !load_algo_config (object, &gptq, &scaling, &rotation, error) ||
      (global = load_layer (global_node, "global_quant_config", error)) == NULL ||
      !load_layer_map (object, "layer_type_quant_config", TRUE, by_type, error) ||
      !load_layer_map (object, "layer_quant_config", FALSE, by_name, error) ||
      !quark_json_read_patterns (object, "exclude", &exclude, error))
    {
      scaling_clear (&scaling);
      return FALSE;
    }

  /* everything parsed: replace the config's content at once */
  g_set_object (&self->global, global);
  g_ptr_array_unref (self->by_type);
  self->by_type = g_steal_pointer (&by_type);
  g_ptr_array_unref (self->by_name);
  self->by_name = g_steal_pointer (&by_name);
  g_strfreev (self->exclude);
  self->exclude = g_steal_pointer (&exclude);
  self->pack_reorder = pack_reorder;
  g_strfreev (self->kv_cache_group);
  self->kv_cache_group = g_steal_pointer (&kv_cache_group);
  self->min_kv_scale = min_kv_scale;
  self->kv_cache_post_rope = json_object_has_member (object, "kv_cache_post_rope") &&
                             json_node_get_boolean (json_object_get_member (object, "kv_cache_post_rope"));
  self->gptq = gptq;
  scaling_clear (&self->scaling);
  self->scaling = scaling;
  self->rotation = rotation;
  return TRUE;
}

const QuarkQuarkRotation *
quark_quark_config_get_rotation (QuarkQuarkConfig *self)
{
  return self->rotation.enabled ? &self->rotation : NULL;
}

const QuarkQuarkScaling *
quark_quark_config_get_scaling (QuarkQuarkConfig *self)
{
  return self->scaling.enabled ? &self->scaling : NULL;
}

const QuarkQuarkGptq *
quark_quark_config_get_gptq (QuarkQuarkConfig *self)
{
  return self->gptq.enabled ? &self->gptq : NULL;
}

static const char *
observer_class (QuarkTensorSpec *spec)
{
  gboolean pof2 = quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2;
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);

  if (dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16)
    return "PlaceholderObserver";
  if (quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0)
    return "PerBlockMXObserver";
  switch (quark_tensor_spec_get_observer (spec))
    {
    case QUARK_OBSERVER_HISTOGRAM_PERCENTILE:
    case QUARK_OBSERVER_PERCENTILE:
      return "PerTensorPercentileObserver";
    case QUARK_OBSERVER_MSE:
      return "PerTensorMSEObserver";
    case QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX:
      return "PerTensorMovingAverageMinMaxObserver";
    case QUARK_OBSERVER_KL:
      return "PerTensorEntropyObserver";
    case QUARK_OBSERVER_MIN_MAX:
    default:
      break;
    }
  switch (quark_tensor_spec_get_qscheme (spec))
    {
    case QUARK_QSCHEME_PER_CHANNEL:
      return pof2 ? "PerChannelPowOf2MinMaxObserver" : "PerChannelMinMaxObserver";
    case QUARK_QSCHEME_PER_GROUP:
      return "PerGroupMinMaxObserver";
    default:
      return pof2 ? "PerTensorPowOf2MinMaxObserver" : "PerTensorMinMaxObserver";
    }
}

/* One spec in AMD Quark's exported schema (every key, as Quark writes it).
 * MXFP8 weights are spelled as AMD Quark spells them: fp8_e4m3 per_block
 * with block_size [1, 32] and e8m0 scales (the layout is the same as per
 * group along the last axis; vLLM's QuarkW8A8Mxfp8 scheme,
 * quark/schemes/quark_w8a8_mxfp8.py, expects this spelling). */
static JsonNode *
serialize_spec (QuarkTensorSpec *spec, QuarkRole role)
{
  JsonObject *o = json_object_new ();
  g_autoptr(GEnumClass) qschemes = g_type_class_ref (QUARK_TYPE_QSCHEME);
  g_autoptr(GEnumClass) modes = g_type_class_ref (QUARK_TYPE_MX_SCALE_MODE);
  gboolean mx = quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0;
  int group = quark_tensor_spec_get_group_size (spec), rows, cols;
  gboolean mx_block, blocked;
  const char *round = "half_even";
  JsonNode *node;

  for (guint i = 0; i < G_N_ELEMENTS (round_names); i++)
    {
      g_autoptr(GEnumClass) rm = g_type_class_ref (QUARK_TYPE_ROUND_MODE);
      if (g_str_equal (g_enum_get_value (rm, quark_tensor_spec_get_round_method (spec))->value_nick,
                       round_names[i].mode))
        round = round_names[i].quark;
    }
  /* MXFP8 weights: per_block [1, group] */
  mx_block = mx && role == QUARK_ROLE_WEIGHT && quark_tensor_spec_get_dtype (spec) == QUARK_DTYPE_F8_E4M3 &&
             quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP && group > 0;
  if (mx_block)
    {
      rows = 1;
      cols = group;
    }
  blocked = mx_block || quark_tensor_spec_get_block_size (spec, &rows, &cols);
  json_object_set_string_member (o, "dtype", quark_dtype_get_name (quark_tensor_spec_get_dtype (spec)));
  json_object_set_boolean_member (o, "is_dynamic", quark_tensor_spec_get_is_dynamic (spec));
  json_object_set_string_member (o, "qscheme",
                                 mx_block ? "per_block"
                                          : g_enum_get_value (qschemes, quark_tensor_spec_get_qscheme (spec))->value_nick);
  json_object_set_int_member (o, "ch_axis", mx_block ? -1 : quark_tensor_spec_get_ch_axis (spec));
  if (group != 0 && !mx_block)
    json_object_set_int_member (o, "group_size", group);
  else
    json_object_set_null_member (o, "group_size");
  if (blocked)
    {
      JsonArray *a = json_array_new ();
      json_array_add_int_element (a, rows);
      json_array_add_int_element (a, cols);
      json_object_set_array_member (o, "block_size", a);
    }
  else
    json_object_set_null_member (o, "block_size");
  json_object_set_boolean_member (o, "symmetric", quark_tensor_spec_get_symmetric (spec));
  json_object_set_string_member (o, "round_method", round);
  json_object_set_string_member (o, "scale_type",
                                 quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2 ? "pof2" : "float");
  if (mx)
    {
      json_object_set_string_member (o, "scale_format", "e8m0");
      json_object_set_string_member (o, "scale_calculation_mode",
                                     g_enum_get_value (modes, quark_tensor_spec_get_scale_calculation_mode (spec))->value_nick);
    }
  else
    {
      if (quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E5M3)
        json_object_set_string_member (o, "scale_format", "e5m3");
      else if (quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E4M3)
        json_object_set_string_member (o, "scale_format", "e4m3");
      else
        json_object_set_null_member (o, "scale_format");
      json_object_set_null_member (o, "scale_calculation_mode");
    }
  json_object_set_null_member (o, "mx_element_dtype");
  json_object_set_string_member (o, "observer_cls", observer_class (spec));
  json_object_set_boolean_member (o, "is_scale_quant", FALSE);
  json_object_set_boolean_member (o, "enable_buffer_reuse", FALSE);
  json_object_set_int_member (o, "max_input_numel", 4194304);
  node = json_node_init_object (json_node_alloc (), o);
  json_object_unref (o);
  return node;
}

/* A layer dict in AMD Quark's schema. */
static JsonNode *
serialize_layer (QuarkQuarkLayerConfig *layer)
{
  JsonObject *o = json_object_new ();
  JsonNode *node;

  for (QuarkRole role = QUARK_ROLE_WEIGHT; role <= QUARK_ROLE_BIAS; role++)
    {
      QuarkTensorSpec *spec = layer->specs[role];
      if (spec)
        json_object_set_member (o, layer_keys[role], serialize_spec (spec, role));
      else
        json_object_set_null_member (o, layer_keys[role]);
    }
  json_object_set_null_member (o, "target_device");
  node = json_node_init_object (json_node_alloc (), o);
  json_object_unref (o);
  return node;
}

static void
add_layer_map (JsonObject *object,
               const char *key,
               GPtrArray  *entries)
{
  JsonObject *map = json_object_new ();

  for (guint i = 0; i < entries->len; i++)
    {
      NamedLayer *entry = g_ptr_array_index (entries, i);
      json_object_set_member (map, entry->pattern, serialize_layer (entry->layer));
    }
  json_object_set_object_member (object, key, map);
}

static JsonNode *
quark_quark_config_to_json (QuarkQuantizationConfig *config)
{
  QuarkQuarkConfig *self = QUARK_QUARK_CONFIG (config);
  JsonObject *object = json_object_new ();
  JsonArray *exclude = json_array_new ();
  JsonObject *export = json_object_new ();
  JsonArray *kv = json_array_new ();
  JsonNode *node;

  json_object_set_string_member (object, "quant_method", "quark");
  json_object_set_member (object, "global_quant_config", serialize_layer (self->global));
  add_layer_map (object, "layer_type_quant_config", self->by_type);
  add_layer_map (object, "layer_quant_config", self->by_name);
  json_object_set_object_member (object, "kv_cache_quant_config", json_object_new ());
  for (guint i = 0; self->exclude[i]; i++)
    json_array_add_string_element (exclude, self->exclude[i]);
  json_object_set_array_member (object, "exclude", exclude);
  if (self->gptq.enabled || self->scaling.enabled || self->rotation.enabled)
    {
      JsonArray *algos = json_array_new ();
      if (self->rotation.enabled)
        {
          JsonObject *a = json_object_new ();
          json_object_set_string_member (a, "name", "rotation");
          json_object_set_boolean_member (a, "random", self->rotation.random);
          json_object_set_int_member (a, "seed", (gint64) self->rotation.seed);
          json_array_add_object_element (algos, a);
        }
      if (self->scaling.enabled)
        {
          const QuarkQuarkScaling *sc = &self->scaling;
          JsonObject *a = json_object_new ();
          json_object_set_string_member (a, "name", sc->name);
          if (sc->scaling_layers)
            json_object_set_member (a, "scaling_layers", json_node_copy (sc->scaling_layers));
          if (sc->decoder_layers)
            json_object_set_string_member (a, "model_decoder_layers", sc->decoder_layers);
          if (sc->kind == QUARK_QUARK_SCALING_AWQ)
            {
              json_object_set_int_member (a, "n_grid", sc->n_grid);
              json_object_set_boolean_member (a, "clip", sc->clip);
            }
          else
            {
              json_object_set_double_member (a, "alpha", sc->alpha);
              json_object_set_double_member (a, "scale_clamp_min", sc->clamp_min);
            }
          json_array_add_object_element (algos, a);
        }
      if (self->gptq.enabled)
        {
          JsonObject *g = json_object_new ();
          json_object_set_string_member (g, "name", "gptq");
          json_object_set_double_member (g, "damp_percent", self->gptq.damp_percent);
          json_object_set_int_member (g, "block_size", self->gptq.block_size);
          json_object_set_boolean_member (g, "desc_act", self->gptq.desc_act);
          json_object_set_boolean_member (g, "static_groups", self->gptq.static_groups);
          /* libquark's own options, written only when set (AMD Quark's
           * GPTQConfig has neither) */
          if (self->gptq.refine_scales)
            json_object_set_boolean_member (g, "refine_scales", TRUE);
          if (self->gptq.correct_input_error)
            json_object_set_boolean_member (g, "correct_input_error", TRUE);
          /* (AMD Quark's key with libquark's default, off: written
           * when set) */
          if (self->gptq.true_sequential)
            json_object_set_boolean_member (g, "true_sequential", TRUE);
          json_array_add_object_element (algos, g);
        }
      json_object_set_array_member (object, "algo_config", algos);
    }
  else
    json_object_set_null_member (object, "algo_config");
  json_object_set_null_member (object, "softmax_quant_spec");
  json_object_set_boolean_member (object, "kv_cache_post_rope", self->kv_cache_post_rope);
  json_object_set_string_member (object, "quant_mode", "eager_mode");
  json_object_set_string_member (object, "version", "libquark " QUARK_VERSION_S);
  for (guint i = 0; self->kv_cache_group[i]; i++)
    json_array_add_string_element (kv, self->kv_cache_group[i]);
  json_object_set_array_member (export, "kv_cache_group", kv);
  json_object_set_double_member (export, "min_kv_scale", self->min_kv_scale);
  json_object_set_string_member (export, "pack_method", self->pack_reorder ? "reorder" : "order");
  json_object_set_string_member (export, "weight_format", "real_quantized");
  json_object_set_null_member (export, "weight_merge_groups");
  json_object_set_object_member (object, "export", export);

  node = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  return node;
}

/* The smallest KV-cache scale for @layer's output: export.min_kv_scale when
 * the layer matches export.kv_cache_group, else 0. */
float
quark_quark_config_get_min_kv_scale (QuarkQuarkConfig *self,
                                     const char       *layer)
{
  return quark_pattern_match_any ((const char * const *) self->kv_cache_group, layer) ? (float) self->min_kv_scale
                                                                                       : 0.0f;
}

gboolean
quark_quark_config_get_kv_cache_post_rope (QuarkQuarkConfig *self)
{
  return self->kv_cache_post_rope;
}

gboolean
quark_quark_config_get_pack_reorder (QuarkQuarkConfig *self)
{
  return self->pack_reorder;
}

static const char *
qscheme_nick (QuarkQScheme qscheme)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (QUARK_TYPE_QSCHEME);
  return g_enum_get_value (klass, qscheme)->value_nick;
}

/* What this backend implements. Integers of 2 to 16 bits: per tensor, per
 * channel, per group along the last axis, float or power-of-two scales, any
 * rounding mode. FP8 (OCP and FNUZ): per tensor, per channel, per group, with
 * float32 scales. FP6 and FP4: per group with float32 scales. OCP MX: e8m0
 * scales over per-group blocks of fp8, fp6, fp4 or int8 elements. Static
 * activations: per tensor. */
gboolean
quark_quark_check_spec (QuarkTensorSpec  *spec,
                 QuarkRole         role,
                 const char       *path,
                 GError          **error)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkQScheme qscheme = quark_tensor_spec_get_qscheme (spec);
  gboolean is_int = quark_dtype_is_integer (dtype) &&
                    (quark_dtype_get_bits (dtype) <= 16 || dtype == QUARK_DTYPE_I32);
  gboolean is_cast = dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16;
  gboolean is_fp8 = dtype == QUARK_DTYPE_F8_E4M3 || dtype == QUARK_DTYPE_F8_E5M2 ||
                    dtype == QUARK_DTYPE_F8_E4M3FNUZ || dtype == QUARK_DTYPE_F8_E5M2FNUZ;
  gboolean is_small_fp = dtype == QUARK_DTYPE_FP4_E2M1 || dtype == QUARK_DTYPE_FP6_E2M3 ||
                         dtype == QUARK_DTYPE_FP6_E3M2;
  gboolean mx = quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0;

  if (!is_int && !is_fp8 && !is_small_fp && !is_cast)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE,
                   "%s.dtype: %s is not supported by the quark backend (supported: integers of "
                   "2 to 16 bits, int32, fp8_e4m3, fp8_e5m2, fp8_e4m3fnuz, fp8_e5m2fnuz, fp6_e2m3, "
                   "fp6_e3m2, fp4, and float16/bfloat16 casts)", path, quark_dtype_get_name (dtype));
      return FALSE;
    }
  if (is_cast)
    return TRUE;   /* a cast has no scale, granularity or observer */
  if (role == QUARK_ROLE_BIAS)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s: bias quantization is not supported by the quark backend", path);
      return FALSE;
    }
  if (role == QUARK_ROLE_WEIGHT && quark_tensor_spec_get_is_dynamic (spec))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_COMBINATION,
                   "%s.is_dynamic: weights are quantized statically", path);
      return FALSE;
    }
  if (role == QUARK_ROLE_OUTPUT && quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E4M3)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.scale_format: NVFP4 (e4m3 scales) quantizes weights and inputs in the quark backend, "
                   "not outputs", path);
      return FALSE;
    }
  if (role != QUARK_ROLE_WEIGHT && !quark_tensor_spec_get_is_dynamic (spec) &&
      ((qscheme != QUARK_QSCHEME_PER_TENSOR && qscheme != QUARK_QSCHEME_PER_CHANNEL) || mx || is_small_fp))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.qscheme: static activations are quantized per_tensor or per_channel to integers "
                   "or fp8 by the quark backend, not %s %s", path, qscheme_nick (qscheme),
                   quark_dtype_get_name (dtype));
      return FALSE;
    }
  if (role != QUARK_ROLE_WEIGHT && !quark_tensor_spec_get_is_dynamic (spec) &&
      qscheme == QUARK_QSCHEME_PER_CHANNEL && quark_tensor_spec_get_observer (spec) != QUARK_OBSERVER_MIN_MAX)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.observer_cls: per-channel static activations are calibrated with min/max", path);
      return FALSE;
    }
  if (role == QUARK_ROLE_WEIGHT && (quark_tensor_spec_get_observer (spec) == QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX ||
                                    quark_tensor_spec_get_observer (spec) == QUARK_OBSERVER_KL))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.observer_cls: %s calibrates activations, not weights", path, observer_class (spec));
      return FALSE;
    }
  if (qscheme == QUARK_QSCHEME_PER_BLOCK && (mx || is_small_fp || role != QUARK_ROLE_WEIGHT))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.qscheme: per_block applies to integer and fp8 weights in the quark backend", path);
      return FALSE;
    }
  if (is_small_fp && qscheme != QUARK_QSCHEME_PER_GROUP && role == QUARK_ROLE_WEIGHT)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.qscheme: %s weights are quantized per_group by the quark backend, not %s",
                   path, quark_dtype_get_name (dtype), qscheme_nick (qscheme));
      return FALSE;
    }
  if (qscheme == QUARK_QSCHEME_PER_GROUP)
    {
      int axis = quark_tensor_spec_get_ch_axis (spec);
      if (axis != -1)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "%s.ch_axis: the quark backend groups along the last axis (-1), not %d",
                       path, axis);
          return FALSE;
        }
      if (quark_tensor_spec_get_group_size (spec) < 0 && mx)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_COMBINATION,
                       "%s.group_size: MX blocks need a positive group_size", path);
          return FALSE;
        }
    }
  if (!is_int && quark_tensor_spec_get_scale_type (spec) != QUARK_SCALE_FLOAT)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.scale_type: pof2 scales apply to integer dtypes in the quark backend "
                   "(use scale_format e8m0 for MX)", path);
      return FALSE;
    }
  if (mx && quark_tensor_spec_get_scale_type (spec) != QUARK_SCALE_FLOAT)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_COMBINATION,
                   "%s.scale_type: e8m0 scales are powers of two already; leave scale_type float", path);
      return FALSE;
    }
  if (quark_tensor_spec_get_observer (spec) != QUARK_OBSERVER_MIN_MAX &&
      (!quark_tensor_spec_get_symmetric (spec) || mx ||
       (quark_tensor_spec_get_observer (spec) == QUARK_OBSERVER_MSE && !is_int)))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.observer: percentile observers apply to symmetric specs, MSE search to "
                   "symmetric integer specs, neither to MX blocks", path);
      return FALSE;
    }
  if (mx && quark_tensor_spec_get_round_method (spec) != QUARK_ROUND_HALF_EVEN)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s.round_method: MX elements round half to even", path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
validate_layer (QuarkQuarkLayerConfig  *layer,
                const char             *path,
                GError                **error)
{
  for (QuarkRole role = QUARK_ROLE_WEIGHT; role <= QUARK_ROLE_BIAS; role++)
    {
      QuarkTensorSpec *spec = layer->specs[role];
      g_autofree char *spec_path = quark_json_path_join (path, role_key (role));

      if (spec == NULL)
        continue;
      if (!quark_tensor_spec_validate (spec, spec_path, error) ||
          !quark_quark_check_spec (spec, role, spec_path, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
quark_quark_config_validate (QuarkQuantizationConfig  *config,
                             GError                  **error)
{
  QuarkQuarkConfig *self = QUARK_QUARK_CONFIG (config);

  if (!validate_layer (self->global, "global_quant_config", error))
    return FALSE;
  for (guint m = 0; m < 2; m++)
    {
      GPtrArray *entries = m == 0 ? self->by_type : self->by_name;
      const char *key = m == 0 ? "layer_type_quant_config" : "layer_quant_config";

      for (guint i = 0; i < entries->len; i++)
        {
          NamedLayer *entry = g_ptr_array_index (entries, i);
          g_autofree char *path = quark_json_path_join (key, entry->pattern);
          if (!validate_layer (entry->layer, path, error))
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
quark_quark_config_is_excluded (QuarkQuantizationConfig *config,
                                const char              *layer_name)
{
  return quark_pattern_match_any ((const char * const *) QUARK_QUARK_CONFIG (config)->exclude, layer_name);
}

static gboolean
quark_quark_config_lookup_spec (QuarkQuantizationConfig  *config,
                                QuarkSpecLevel            level,
                                const char               *key,
                                QuarkRole                 role,
                                QuarkTensorSpec         **spec)
{
  QuarkQuarkConfig *self = QUARK_QUARK_CONFIG (config);
  QuarkTensorSpec *found;

  *spec = NULL;
  switch (level)
    {
    case QUARK_SPEC_LEVEL_GLOBAL:
      found = self->global->specs[role];
      *spec = found ? g_object_ref (found) : NULL;
      return TRUE;
    case QUARK_SPEC_LEVEL_LAYER_TYPE:
    case QUARK_SPEC_LEVEL_LAYER_NAME:
      {
        GPtrArray *entries = level == QUARK_SPEC_LEVEL_LAYER_TYPE ? self->by_type : self->by_name;
        for (guint i = 0; i < entries->len; i++)
          {
            NamedLayer *entry = g_ptr_array_index (entries, i);
            gboolean match = level == QUARK_SPEC_LEVEL_LAYER_TYPE
              ? g_str_equal (entry->pattern, key)
              : quark_pattern_match (entry->pattern, key);
            if (!match)
              continue;
            /* the first matching entry decides; a null spec there inherits */
            found = entry->layer->specs[role];
            if (found == NULL)
              return FALSE;
            *spec = g_object_ref (found);
            return TRUE;
          }
      }
      return FALSE;
    default:
      return FALSE;
    }
}

static void
config_iface_init (QuarkQuantizationConfigInterface *iface)
{
  iface->load_json = quark_quark_config_load_json;
  iface->to_json = quark_quark_config_to_json;
  iface->validate = quark_quark_config_validate;
  iface->is_excluded = quark_quark_config_is_excluded;
  iface->lookup_spec = quark_quark_config_lookup_spec;
}
