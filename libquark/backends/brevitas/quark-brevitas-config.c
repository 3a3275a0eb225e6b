/* quark-brevitas-config.c: the brevitas backend's config
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-config.h"

/*
 * {
 *   "backend": "brevitas",
 *   "global_quant_config": LAYER,
 *   "layer_type_quant_config": { "Linear": LAYER, ... },
 *   "layer_quant_config": { "PATTERN": LAYER, ... },
 *   "exclude": [ "PATTERN", ... ],
 *   "algo_config": [ { "name": "gptq", "act_order": false, "num_blocks": 100,
 *                      "damp_percent": 0.01 } (or { "name": "gpfq", "act_order": false }),
 *                    { "name": "bias_correction" } ],
 *   "pre_quant_opt_config": [ { "name": "activation_equalization", "alpha": 0.5,
 *                               "is_layerwise": false } ]
 * }
 * LAYER = { "weight": SPEC|null, "input_tensors": SPEC|null,
 *           "output_tensors": SPEC|null, "bias": BIAS|null }
 * SPEC  = { "preset": "Int8WeightPerChannelFloat" } and/or the fields of
 *         quark-brevitas-spec.c; BIAS = { "bit_width": 8|16|24|32 }
 *
 * As in AMD Quark's config model, a null spec in a layer entry inherits
 * from the next level; in the global config it means "not quantized".
 */

static const char * const config_keys[] = {
  "global_quant_config", "layer_type_quant_config", "layer_quant_config", "exclude", "algo_config",
  "pre_quant_opt_config", NULL
};
static const char * const layer_keys[] = { "weight", "input_tensors", "output_tensors", "bias", NULL };
static const QuarkRole layer_roles[] = { QUARK_ROLE_WEIGHT, QUARK_ROLE_INPUT, QUARK_ROLE_OUTPUT, QUARK_ROLE_BIAS };
static const char * const layer_types[] = { "Linear", "Conv1d", "Conv2d", "Conv3d", NULL };

#define N_ROLES 4

typedef struct {
  QuarkTensorSpec *specs[N_ROLES];   /* indexed by QuarkRole; NULL: inherit */
} Layer;

typedef struct {
  char *pattern;
  Layer layer;
} Named;

struct _QuarkBrevitasConfig
{
  GObject parent_instance;

  Layer global;
  GPtrArray *by_type;   /* Named */
  GPtrArray *by_name;   /* Named */
  GStrv exclude;
  BvAlgorithms algorithms;
};

static void config_iface_init (QuarkQuantizationConfigInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (QuarkBrevitasConfig, quark_brevitas_config, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_QUANTIZATION_CONFIG, config_iface_init))

static void
layer_clear (Layer *layer)
{
  for (guint r = 0; r < N_ROLES; r++)
    g_clear_object (&layer->specs[r]);
}

static void
named_free (gpointer data)
{
  Named *n = data;
  g_free (n->pattern);
  layer_clear (&n->layer);
  g_free (n);
}

static void
algorithms_clear (BvAlgorithms *a)
{
  g_clear_pointer (&a->scaling_layers, json_node_unref);
  g_clear_pointer (&a->decoder_layers, g_free);
}

static void
quark_brevitas_config_finalize (GObject *object)
{
  QuarkBrevitasConfig *self = QUARK_BREVITAS_CONFIG (object);

  algorithms_clear (&self->algorithms);
  layer_clear (&self->global);
  g_ptr_array_unref (self->by_type);
  g_ptr_array_unref (self->by_name);
  g_strfreev (self->exclude);
  G_OBJECT_CLASS (quark_brevitas_config_parent_class)->finalize (object);
}

static void
quark_brevitas_config_class_init (QuarkBrevitasConfigClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_brevitas_config_finalize;
}

static void
quark_brevitas_config_init (QuarkBrevitasConfig *self)
{
  self->by_type = g_ptr_array_new_with_free_func (named_free);
  self->by_name = g_ptr_array_new_with_free_func (named_free);
  self->exclude = g_new0 (char *, 1);
  self->algorithms = (BvAlgorithms) BV_ALGORITHMS_INIT;
}

static gboolean
load_layer (JsonNode *node, const char *path, Layer *out, GError **error)
{
  JsonObject *o;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s: expected an object", path);
      return FALSE;
    }
  o = json_node_get_object (node);
  if (!quark_json_check_members (o, path, layer_keys, error))
    return FALSE;
  for (guint i = 0; layer_keys[i]; i++)
    {
      JsonNode *spec = json_object_get_member (o, layer_keys[i]);
      g_autofree char *spec_path = quark_json_path_join (path, layer_keys[i]);
      BvSpec *bv;

      if (spec == NULL || JSON_NODE_HOLDS_NULL (spec))
        continue;
      bv = bv_spec_from_json (spec, layer_roles[i], spec_path, error);
      if (bv == NULL)
        return FALSE;
      out->specs[layer_roles[i]] = bv->tspec;
    }
  return TRUE;
}

static gboolean
load_map (JsonObject *config, const char *key, gboolean types, GPtrArray *out, GError **error)
{
  JsonNode *node = json_object_get_member (config, key);
  g_autoptr(GList) members = NULL;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s: expected an object", key);
      return FALSE;
    }
  members = json_object_get_members (json_node_get_object (node));
  for (GList *l = members; l; l = l->next)
    {
      g_autofree char *path = quark_json_path_join (key, l->data);
      g_autoptr(GError) pattern_error = NULL;
      Named *entry;

      if (types ? !g_strv_contains (layer_types, l->data) : !quark_pattern_validate (l->data, &pattern_error))
        {
          g_autofree char *list = g_strjoinv (", ", (char **) layer_types);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE, "%s: %s%s%s", path,
                       types ? "unknown layer type (expected one of: " : pattern_error->message,
                       types ? list : "", types ? ")" : "");
          return FALSE;
        }
      entry = g_new0 (Named, 1);
      entry->pattern = g_strdup (l->data);
      g_ptr_array_add (out, entry);
      if (!load_layer (json_object_get_member (json_node_get_object (node), l->data), path, &entry->layer, error))
        return FALSE;
    }
  return TRUE;
}

/* algo_config: the algorithms of AMD Quark's Brevitas extension that run
 * after quantization (its algo_config list, applied in order): "gptq"
 * (GPTQ's act_order, and Brevitas's num_blocks and damping) and
 * "gpfq" (act_order; percentage_of_processed_inputs 1 only) and
 * "bias_correction". AMD Quark's class names are accepted too. GPFA2Q is
 * refused: the Brevitas this backend follows no longer has it (its
 * gpfq_mode takes neither use_gpfa2q nor accumulator_bit_width), so
 * there is nothing to reproduce. Activation equalization belongs to
 * pre_quant_opt_config. */
static gboolean
read_number (JsonObject *o, const char *path, const char *key, double min, double max, double *out, GError **error)
{
  JsonNode *node = json_object_get_member (o, key);
  GType t;

  if (node == NULL)
    return TRUE;
  t = JSON_NODE_HOLDS_VALUE (node) ? json_node_get_value_type (node) : G_TYPE_INVALID;
  if ((t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) || !(json_node_get_double (node) >= min) ||
      !(json_node_get_double (node) <= max))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "%s.%s: expected a number from %g to %g", path, key, min, max);
      return FALSE;
    }
  *out = json_node_get_double (node);
  return TRUE;
}

/* An optional boolean member @key of @o into @out (left as it is when absent) */
static gboolean
read_boolean (JsonObject *o, const char *path, const char *key, gboolean *out, GError **error)
{
  JsonNode *node = json_object_get_member (o, key);

  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s.%s: expected true or false",
                   path, key);
      return FALSE;
    }
  *out = json_node_get_boolean (node);
  return TRUE;
}

/* A list of named steps, @key of @object (pre_quant_opt_config,
 * algo_config): *@list is NULL when it is absent or null */
static gboolean
read_step_list (JsonObject *object, const char *key, const char *what, JsonArray **list, GError **error)
{
  JsonNode *node = json_object_get_member (object, key);

  *list = NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s: expected a list of %s", key,
                   what);
      return FALSE;
    }
  *list = json_node_get_array (node);
  return TRUE;
}

/* Step @i of such a list: its object and its "name", or NULL with an error */
static const char *
step_name (JsonArray *list, guint i, const char *path, JsonObject **o, GError **error)
{
  JsonNode *item = json_array_get_element (list, i);
  JsonNode *name_node;

  *o = JSON_NODE_HOLDS_OBJECT (item) ? json_node_get_object (item) : NULL;
  name_node = *o ? json_object_get_member (*o, "name") : NULL;
  if (name_node && JSON_NODE_HOLDS_VALUE (name_node) && json_node_get_value_type (name_node) == G_TYPE_STRING)
    return json_node_get_string (name_node);
  g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_MISSING_KEY, "%s: expected an object with a \"name\"",
               path);
  return NULL;
}

static gboolean
is_equalization (const char *name)
{
  return g_ascii_strcasecmp (name, "activation_equalization") == 0 || g_str_equal (name, "ActivationEqualization") ||
         g_str_equal (name, "Activation Equalization");
}

/* pre_quant_opt_config: AMD Quark's Brevitas extension's list of what
 * changes the float model before quantization. "activation_equalization"
 * (its ActivationEqualization: alpha, and is_layerwise, which must be
 * false: Brevitas's layerwise mode multiplies each layer's input by a
 * scale of its own, an operation no checkpoint format carries, while
 * layers that read one input share one scale that folds into the layer
 * before them). Its Preprocess (batch-norm merging and weight equalization
 * of convolutional networks) is refused. */
static gboolean
load_pre_quant_opt_config (JsonObject *object, BvAlgorithms *algos, GError **error)
{
  static const char * const keys[] = {
    "name", "alpha", "is_layerwise", "scaling_layers", "model_decoder_layers", NULL
  };
  JsonArray *list;

  if (!read_step_list (object, "pre_quant_opt_config", "pre-quantization steps", &list, error))
    return FALSE;
  for (guint i = 0; list && i < json_array_get_length (list); i++)
    {
      g_autofree char *path = quark_json_path_index ("pre_quant_opt_config", i);
      JsonObject *o;
      const char *name = step_name (list, i, path, &o, error);
      gboolean layerwise = FALSE;
      JsonNode *member;

      if (name == NULL)
        return FALSE;
      if (!is_equalization (name))
        {
          gboolean known = g_ascii_strcasecmp (name, "preprocess") == 0 || g_str_equal (name, "Pre-Processing");
          g_set_error (error, known ? QUARK_ERROR : QUARK_CONFIG_ERROR,
                       known ? QUARK_ERROR_UNSUPPORTED_SCHEME : QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s.name: %s%s%s (the brevitas backend implements activation_equalization)", path,
                       known ? "" : "unknown pre-quantization step \"", name,
                       known ? " (batch-norm merging and weight equalization of convolutional networks) is not "
                               "implemented" : "\"");
          return FALSE;
        }
      if (algos->equalize)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE, "%s.name: %s is listed twice",
                       path, name);
          return FALSE;
        }
      if (!quark_json_check_members (o, path, keys, error) ||
          !read_number (o, path, "alpha", 0, 1, &algos->equalize_alpha, error))
        return FALSE;
      if (!read_boolean (o, path, "is_layerwise", &layerwise, error))
        return FALSE;
      if (layerwise)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "%s.is_layerwise: true gives each layer a multiplication of its input of its own, which no "
                       "checkpoint format can carry; use false (one scale per input, folded into the layer before "
                       "it)", path);
          return FALSE;
        }
      /* the regions for models whose topology the core does not know, in
       * AMD Quark's scaling_layers schema, as the quark backend takes them */
      if ((member = json_object_get_member (o, "scaling_layers")) != NULL &&
          !JSON_NODE_HOLDS_NULL (member))
        {
          g_autofree char *sp = g_strconcat (path, ".scaling_layers", NULL);
          if (!quark_topology_check_scaling_layers (member, sp, error))
            return FALSE;
          algos->scaling_layers = json_node_copy (member);
        }
      if ((member = json_object_get_member (o, "model_decoder_layers")) != NULL &&
          !JSON_NODE_HOLDS_NULL (member))
        {
          if (!JSON_NODE_HOLDS_VALUE (member) || json_node_get_value_type (member) != G_TYPE_STRING ||
              *json_node_get_string (member) == '\0')
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                           "%s.model_decoder_layers: expected a name prefix such as \"model.layers\"", path);
              return FALSE;
            }
          algos->decoder_layers = g_strdup (json_node_get_string (member));
        }
      algos->equalize = TRUE;
    }
  return TRUE;
}

static gboolean
load_algo_config (JsonObject *object, BvAlgorithms *algos, GError **error)
{
  static const char * const gptq_keys[] = { "name", "act_order", "num_blocks", "damp_percent", NULL };
  static const char * const bias_keys[] = { "name", NULL };
  static const char * const gpfq_keys[] = { "name", "act_order", "percentage_of_processed_inputs", NULL };
  JsonArray *list;

  *algos = (BvAlgorithms) BV_ALGORITHMS_INIT;
  if (!read_step_list (object, "algo_config", "algorithm configs", &list, error))
    return FALSE;
  for (guint i = 0; list && i < json_array_get_length (list); i++)
    {
      g_autofree char *path = quark_json_path_index ("algo_config", i);
      JsonObject *o;
      const char *name = step_name (list, i, path, &o, error);

      if (name == NULL)
        return FALSE;
      if (g_ascii_strcasecmp (name, "gptq") == 0 || g_ascii_strcasecmp (name, "gpfq") == 0)
        {
          gboolean gpfq = g_ascii_strcasecmp (name, "gpfq") == 0;
          double blocks = 100, share = 1.0;

          if (gpfq ? algos->gpfq : algos->gptq)
            goto twice;
          if (gpfq ? algos->gptq : algos->gpfq)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                           "%s.name: %s after %s: one of gptq and gpfq per config (both rewrite the weights)", path,
                           name, gpfq ? "gptq" : "gpfq");
              return FALSE;
            }
          if (gpfq)
            {
              if (!quark_json_check_members (o, path, gpfq_keys, error) ||
                  !read_number (o, path, "percentage_of_processed_inputs", 0, 1, &share, error))
                return FALSE;
              if (share != 1.0)
                {
                  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                               "%s.percentage_of_processed_inputs: only 1.0 (every input) is implemented", path);
                  return FALSE;
                }
              algos->act_order = FALSE;
              if (!read_boolean (o, path, "act_order", &algos->act_order, error))
                return FALSE;
              algos->gpfq = TRUE;
              continue;
            }
          if (!quark_json_check_members (o, path, gptq_keys, error) ||
              !read_number (o, path, "num_blocks", 1, 1 << 30, &blocks, error) ||
              !read_number (o, path, "damp_percent", 0, 1e6, &algos->damp_percent, error))
            return FALSE;
          if (blocks != (guint) blocks)
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                           "%s.num_blocks: expected a whole number", path);
              return FALSE;
            }
          algos->act_order = FALSE;
          if (!read_boolean (o, path, "act_order", &algos->act_order, error))
            return FALSE;
          algos->gptq = TRUE;
          algos->num_blocks = (guint) blocks;
        }
      else if (g_ascii_strcasecmp (name, "bias_correction") == 0 || g_str_equal (name, "BiasCorrection") ||
               g_str_equal (name, "Bias Correction"))
        {
          if (algos->bias_correction)
            goto twice;
          if (!quark_json_check_members (o, path, bias_keys, error))
            return FALSE;
          algos->bias_correction = TRUE;
          algos->bias_correction_first = !algos->gptq && !algos->gpfq;
        }
      else
        {
          gboolean known = g_ascii_strcasecmp (name, "gpfa2q") == 0;
          if (is_equalization (name))
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                           "%s.name: %s changes the float model before quantization: list it in "
                           "pre_quant_opt_config, as AMD Quark's Brevitas extension does", path, name);
              return FALSE;
            }
          g_set_error (error, known ? QUARK_ERROR : QUARK_CONFIG_ERROR,
                       known ? QUARK_ERROR_UNSUPPORTED_SCHEME : QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s.name: %s%s%s (the brevitas backend implements gptq, gpfq and bias_correction)", path,
                       known ? "" : "unknown algorithm \"", name,
                       known ? " is not implemented: the Brevitas the brevitas backend follows no longer has it "
                               "(its gpfq_mode takes no use_gpfa2q)" : "\"");
          return FALSE;
        }
      continue;
twice:
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE, "%s.name: %s is listed twice",
                   path, name);
      return FALSE;
    }
  return TRUE;
}

static gboolean
quark_brevitas_config_load_json (QuarkQuantizationConfig *config, JsonObject *object, GError **error)
{
  QuarkBrevitasConfig *self = QUARK_BREVITAS_CONFIG (config);
  g_autoptr(GPtrArray) by_type = g_ptr_array_new_with_free_func (named_free);
  g_autoptr(GPtrArray) by_name = g_ptr_array_new_with_free_func (named_free);
  g_auto(GStrv) exclude = NULL;
  Layer global = { { NULL } };
  BvAlgorithms algorithms = BV_ALGORITHMS_INIT;
  JsonNode *node;

  if (!quark_json_check_members (object, NULL, config_keys, error))
    return FALSE;
  node = json_object_get_member (object, "global_quant_config");
  if (node == NULL)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_MISSING_KEY,
                   "global_quant_config: missing; it gives the default quantizers of every layer");
      return FALSE;
    }
  if (!load_layer (node, "global_quant_config", &global, error) ||
      !load_map (object, "layer_type_quant_config", TRUE, by_type, error) ||
      !load_map (object, "layer_quant_config", FALSE, by_name, error) ||
      !quark_json_read_patterns (object, "exclude", &exclude, error) ||
      !load_algo_config (object, &algorithms, error) ||
      !load_pre_quant_opt_config (object, &algorithms, error))
    {
      algorithms_clear (&algorithms);
      layer_clear (&global);
      return FALSE;
    }
  layer_clear (&self->global);
  self->global = global;
  g_ptr_array_unref (self->by_type);
  self->by_type = g_steal_pointer (&by_type);
  g_ptr_array_unref (self->by_name);
  self->by_name = g_steal_pointer (&by_name);
  g_strfreev (self->exclude);
  self->exclude = g_steal_pointer (&exclude);
  algorithms_clear (&self->algorithms);
  self->algorithms = algorithms;
  return TRUE;
}

static JsonNode *
layer_to_json (const Layer *layer)
{
  JsonObject *o = json_object_new ();

  for (guint i = 0; layer_keys[i]; i++)
    {
      QuarkTensorSpec *t = layer->specs[layer_roles[i]];
      json_object_set_member (o, layer_keys[i], t ? bv_spec_to_json (bv_spec_from_tensor_spec (t))
                                                  : json_node_new (JSON_NODE_NULL));
    }
  return bv_node_take (o);
}

static JsonNode *
map_to_json (GPtrArray *map)
{
  JsonObject *o = json_object_new ();

  for (guint i = 0; i < map->len; i++)
    {
      Named *n = g_ptr_array_index (map, i);
      json_object_set_member (o, n->pattern, layer_to_json (&n->layer));
    }
  return bv_node_take (o);
}

static JsonNode *
quark_brevitas_config_to_json (QuarkQuantizationConfig *config)
{
  QuarkBrevitasConfig *self = QUARK_BREVITAS_CONFIG (config);
  JsonObject *o = json_object_new ();
  JsonArray *exclude = json_array_new ();

  json_object_set_member (o, "global_quant_config", layer_to_json (&self->global));
  json_object_set_member (o, "layer_type_quant_config", map_to_json (self->by_type));
  json_object_set_member (o, "layer_quant_config", map_to_json (self->by_name));
  for (guint i = 0; self->exclude[i]; i++)
    json_array_add_string_element (exclude, self->exclude[i]);
  json_object_set_array_member (o, "exclude", exclude);
  if (self->algorithms.gptq || self->algorithms.gpfq || self->algorithms.bias_correction)
    {
      const BvAlgorithms *a = &self->algorithms;
      JsonArray *list = json_array_new ();
      JsonObject *gptq = NULL, *bias = NULL;

      if (a->gptq)
        {
          gptq = json_object_new ();
          json_object_set_string_member (gptq, "name", "gptq");
          json_object_set_boolean_member (gptq, "act_order", a->act_order);
          json_object_set_int_member (gptq, "num_blocks", a->num_blocks);
          json_object_set_double_member (gptq, "damp_percent", a->damp_percent);
        }
      else if (a->gpfq)
        {
          gptq = json_object_new ();
          json_object_set_string_member (gptq, "name", "gpfq");
          json_object_set_boolean_member (gptq, "act_order", a->act_order);
          json_object_set_double_member (gptq, "percentage_of_processed_inputs", 1.0);
        }
      if (a->bias_correction)
        {
          bias = json_object_new ();
          json_object_set_string_member (bias, "name", "bias_correction");
        }
      if (bias && a->bias_correction_first)
        json_array_add_object_element (list, g_steal_pointer (&bias));
      if (gptq)
        json_array_add_object_element (list, gptq);
      if (bias)
        json_array_add_object_element (list, bias);
      json_object_set_array_member (o, "algo_config", list);
    }
  if (self->algorithms.equalize)
    {
      JsonArray *list = json_array_new ();
      JsonObject *e = json_object_new ();

      json_object_set_string_member (e, "name", "activation_equalization");
      json_object_set_double_member (e, "alpha", self->algorithms.equalize_alpha);
      json_object_set_boolean_member (e, "is_layerwise", FALSE);
      if (self->algorithms.scaling_layers)
        json_object_set_member (e, "scaling_layers", json_node_copy (self->algorithms.scaling_layers));
      if (self->algorithms.decoder_layers)
        json_object_set_string_member (e, "model_decoder_layers", self->algorithms.decoder_layers);
      json_array_add_object_element (list, e);
      json_object_set_array_member (o, "pre_quant_opt_config", list);
    }
  return bv_node_take (o);
}

/* Checks that hold across the roles of a layer entry. */
static gboolean
validate_layer (const Layer *layer, const char *path, GError **error)
{
  QuarkTensorSpec *w = layer->specs[QUARK_ROLE_WEIGHT];

  if (layer->specs[QUARK_ROLE_BIAS] && w &&
      quark_tensor_spec_get_qscheme (w) == QUARK_QSCHEME_PER_GROUP)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_COMBINATION,
                   "%s.bias: a quantized bias needs per-tensor or per-channel weight scales", path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
quark_brevitas_config_validate (QuarkQuantizationConfig *config, GError **error)
{
  QuarkBrevitasConfig *self = QUARK_BREVITAS_CONFIG (config);

  if (!validate_layer (&self->global, "global_quant_config", error))
    return FALSE;
  for (guint m = 0; m < 2; m++)
    {
      GPtrArray *map = m ? self->by_name : self->by_type;
      for (guint i = 0; i < map->len; i++)
        {
          Named *n = g_ptr_array_index (map, i);
          g_autofree char *path = quark_json_path_join (m ? "layer_quant_config" : "layer_type_quant_config",
                                                        n->pattern);
          if (!validate_layer (&n->layer, path, error))
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
quark_brevitas_config_is_excluded (QuarkQuantizationConfig *config, const char *layer_name)
{
  return quark_pattern_match_any ((const char * const *) QUARK_BREVITAS_CONFIG (config)->exclude, layer_name);
}

static gboolean
quark_brevitas_config_lookup_spec (QuarkQuantizationConfig *config, QuarkSpecLevel level, const char *key,
                                   QuarkRole role, QuarkTensorSpec **spec)
{
  QuarkBrevitasConfig *self = QUARK_BREVITAS_CONFIG (config);
  GPtrArray *map;

  *spec = NULL;
  if (level == QUARK_SPEC_LEVEL_GLOBAL)
    {
      *spec = self->global.specs[role] ? g_object_ref (self->global.specs[role]) : NULL;
      return TRUE;
    }
  map = level == QUARK_SPEC_LEVEL_LAYER_TYPE ? self->by_type : self->by_name;
  for (guint i = 0; i < map->len; i++)
    {
      Named *n = g_ptr_array_index (map, i);
      if (level == QUARK_SPEC_LEVEL_LAYER_TYPE ? !g_str_equal (n->pattern, key) : !quark_pattern_match (n->pattern, key))
        continue;
      /* the first matching entry decides; a null spec there inherits */
      if (n->layer.specs[role] == NULL)
        return FALSE;
      *spec = g_object_ref (n->layer.specs[role]);
      return TRUE;
    }
  return FALSE;
}

BvSpec *
quark_brevitas_config_get_bv_spec (QuarkBrevitasConfig *config, const char *layer, const char *layer_type,
                                   QuarkRole role, QuarkTensorSpec **tspec)
{
  QuarkTensorSpec *t = quark_quantization_config_get_tensor_spec (QUARK_QUANTIZATION_CONFIG (config), layer,
                                                                  layer_type, role);
  BvSpec *bv = bv_spec_from_tensor_spec (t);

  if (tspec)
    *tspec = t;
  else
    g_clear_object (&t);   /* the config keeps its own reference */
  return bv;
}

/* Brevitas's activation MSE (numerics.md B8): each calibration batch's
 * MSE-optimal statistic (and, shifted, zero-point statistic); the session
 * keeps their running means. While statistics are collected Brevitas
 * scales the candidates as stat / T with no restriction (a FixedPoint
 * quantizer searches float scales and rounds only the final mean), and a
 * shifted quantizer's scale search uses the zero-point statistic the
 * previous batch's search found (the first batch its own minimum). */
static gboolean
quark_brevitas_config_batch_statistic (QuarkQuantizationConfig *config, QuarkTensorSpec *spec, const float *values,
                                       gsize n_values, float *statistic, float *zero_point_statistic)
{
  BvSpec *bv = bv_spec_from_tensor_spec (spec);
  g_autofree float *work = NULL;
  BvSpec search;

  if (bv == NULL || !bv->mse || (bv->role != QUARK_ROLE_INPUT && bv->role != QUARK_ROLE_OUTPUT) || bv->dynamic)
    return FALSE;
  search = *bv;
  search.restrict_type = BV_RESTRICT_FP;
  search.pof2 = FALSE;
  work = g_new (float, MAX (n_values, 1));
  bv_mse_search (&search, values, n_values, bv_threshold (bv), work, *zero_point_statistic, statistic,
                 zero_point_statistic);
  return TRUE;
}

static void
config_iface_init (QuarkQuantizationConfigInterface *iface)
{
  iface->batch_statistic = quark_brevitas_config_batch_statistic;
  iface->load_json = quark_brevitas_config_load_json;
  iface->to_json = quark_brevitas_config_to_json;
  iface->validate = quark_brevitas_config_validate;
  iface->is_excluded = quark_brevitas_config_is_excluded;
  iface->lookup_spec = quark_brevitas_config_lookup_spec;
}

/* The config's algo_config */
const BvAlgorithms *
quark_brevitas_config_get_algorithms (QuarkBrevitasConfig *config)
{
  return &config->algorithms;
}
