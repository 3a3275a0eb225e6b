/* quark-brevitas-equalize.c: the brevitas backend's activation
 * equalization over a model (pre_quant_opt_config)
 *
 * The arithmetic is Brevitas's (quark_equalization_scale() and the folds
 * in libquark/algorithms/equalization); this is where it meets the model.
 * The regions are the groups of the core's topology (the layers that
 * read one input, and what produces that input): for the Llama family,
 * input_layernorm → q, k, v; v → o (when v has a row per column of o, not
 * with grouped-query attention); post_attention_layernorm → gate, up;
 * up → down; for other models, the config's scaling_layers. Brevitas's
 * graph mode shares one scale among the layers that
 * read one input and multiplies the input by it; here that multiplication
 * is folded into the norm or linear layer before them.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-equalize.h"

#include <math.h>

gboolean
bv_model_is_equalized (QuarkModel *model)
{
  JsonNode *metadata = quark_model_get_metadata (model);

  return metadata && JSON_NODE_HOLDS_OBJECT (metadata) &&
         json_object_has_member (json_node_get_object (metadata), BV_PREPARED_KEY);
}

/* The current version of @name: as an earlier group left it, or the model's */
static QuarkTensor *
current (GHashTable *replaced, QuarkModel *model, const char *name)
{
  QuarkTensor *t = g_hash_table_lookup (replaced, name);
  return t ? t : quark_model_get_tensor (model, name);
}

/* One group of decoder layer @base (in AMD Quark's scaling_layers schema,
 * as the core's topology gives it or as quark_topology_check_scaling_layers()
 * checked it): its scale, folded into its sinks and its source (and the
 * source's bias) */
static gboolean
equalize_group (QuarkModel *model, QuarkCalibration *calibration, double alpha, const char *base, JsonObject *group,
                GHashTable *replaced, GError **error)
{
  JsonArray *layers = json_object_get_array_member (group, "layers");
  const char *prev_op = json_object_get_string_member (group, "prev_op");
  const char *inp = json_object_get_string_member_with_default (group, "inp", NULL);
  guint k = json_array_get_length (layers), present = 0;
  g_autofree QuarkTensor **sinks = g_new0 (QuarkTensor *, k);
  g_autofree char *prev_name = NULL, *bias_name = NULL, *input = NULL;
  g_autoptr(QuarkTensor) abs_max = NULL, scale = NULL;
  g_autofree float *s = NULL;
  QuarkTensor *prev;
  gsize cols = 0, n;

  for (guint i = 0; i < k; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s.%s.weight", base, json_array_get_string_element (layers, i));
      sinks[i] = current (replaced, model, name);
      if (sinks[i] == NULL)
        continue;
      present++;
      if (quark_tensor_get_n_dims (sinks[i]) != 2)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "activation_equalization: %s is not a matrix",
                       name);
          return FALSE;
        }
      cols = (gsize) quark_tensor_get_dim (sinks[i], 1);
    }
  if (present == 0)
    return TRUE;        /* a model without these layers (a part of one) */
  input = g_strdup_printf ("%s.%s", base, inp ? inp : json_array_get_string_element (layers, 0));
  if (present < k)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "activation_equalization: %s is in the model "
                   "but not every layer that reads its input", input);
      return FALSE;
    }
  prev_name = g_strdup_printf ("%s.%s.weight", base, prev_op);
  bias_name = g_strdup_printf ("%s.%s.bias", base, prev_op);
  prev = current (replaced, model, prev_name);
  if (prev == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "activation_equalization: the input of %s "
                   "comes from %s, which is not in the model (the scale is folded into it)", input, prev_name);
      return FALSE;
    }
  if (!((quark_tensor_get_n_dims (prev) == 1 || quark_tensor_get_n_dims (prev) == 2) &&
        (gsize) quark_tensor_get_dim (prev, 0) == cols))
    return TRUE;        /* v → o with grouped-query attention: one scale per column of o cannot be folded into v */
  if ((abs_max = quark_calibration_get_input_abs_max (calibration, input, NULL)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION, "layer %s: activation_equalization needs "
                   "the largest magnitudes of its input in the float model (a calibration session with "
                   "second-moments set)", input);
      return FALSE;
    }
  if ((scale = quark_equalization_scale (sinks, k, abs_max, alpha, error)) == NULL ||
      (s = quark_tensor_to_floats (scale, &n, error)) == NULL)
    {
      g_prefix_error (error, "layer %s: ", input);
      return FALSE;
    }
  for (gsize j = 0; j < n; j++)
    if (!isfinite (s[j]) || s[j] == 0)
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "layer %s: activation_equalization: the scale "
                     "of input feature %" G_GSIZE_FORMAT " is %g (its weights or its statistics are not finite)",
                     input, j, (double) s[j]);
        return FALSE;
      }
  for (guint i = 0; i < k; i++)
    {
      QuarkTensor *t = quark_equalization_fold_sink (sinks[i], scale, error);
      if (t == NULL)
        return FALSE;
      g_hash_table_replace (replaced, g_strdup (quark_tensor_get_name (t)), t);
    }
  for (guint b = 0; b < 2; b++)
    {
      QuarkTensor *src = b ? current (replaced, model, bias_name) : prev, *t;
      if (src == NULL)
        continue;
      if ((t = quark_equalization_fold_source (src, scale, error)) == NULL)
        return FALSE;
      g_hash_table_replace (replaced, g_strdup (quark_tensor_get_name (t)), t);
    }
  return TRUE;
}

/* Brevitas's activation equalization of @model, from @calibration's
 * statistics of @model itself: the groups (@scaling_layers, or the
 * topology's) in their order, layer by layer, each seeing the weights the
 * groups before it left. */
QuarkModel *
bv_equalize_model (QuarkModel *model, QuarkCalibration *calibration, double alpha, JsonNode *scaling_layers,
                   const char *decoder_layers, GCancellable *cancellable, GError **error)
{
  JsonNode *metadata = quark_model_get_metadata (model);
  g_autoptr(JsonNode) topology = NULL, marked = NULL;
  g_autoptr(GHashTable) replaced = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  g_autoptr(QuarkModel) out = NULL;
  g_autofree guint *indices = NULL;
  g_autofree char *prefix = NULL;
  guint n_layers = 0;
  JsonArray *groups;

  if (bv_model_is_equalized (model))
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "activation_equalization: the model is already equalized");
      return NULL;
    }
  if (calibration == NULL)
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                           "activation_equalization needs the largest magnitudes of the float model's layer inputs "
                           "(a calibration session with second-moments set)");
      return NULL;
    }
  if (scaling_layers)
    topology = json_node_copy (scaling_layers);
  else if ((topology = quark_topology_get_scaling_layers (metadata, &prefix, error)) == NULL)
    {
      g_prefix_error (error, "activation_equalization (give scaling_layers in its entry for other models): ");
      return NULL;
    }
  if (decoder_layers)
    {
      g_free (prefix);
      prefix = g_strdup (decoder_layers);
    }
  groups = json_node_get_array (topology);
  indices = quark_topology_get_layer_indices (model, prefix ? prefix : "model.layers", &n_layers);
  for (guint i = 0; i < n_layers; i++)
    {
      g_autofree char *base = g_strdup_printf ("%s.%u", prefix ? prefix : "model.layers", indices[i]);

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return NULL;
      for (guint g = 0; g < json_array_get_length (groups); g++)
        if (!equalize_group (model, calibration, alpha, base, json_array_get_object_element (groups, g), replaced,
                             error))
          return NULL;
    }
  out = quark_model_new ();
  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      QuarkTensor *with = g_hash_table_lookup (replaced, quark_tensor_get_name (t));
      if (!quark_model_add_tensor (out, with ? with : t, error))
        return NULL;
    }
  marked = metadata && JSON_NODE_HOLDS_OBJECT (metadata) ? quark_json_copy (metadata)
                                                          : json_node_init_object (json_node_alloc (), json_object_new ());
  json_object_set_string_member (json_node_get_object (marked), BV_PREPARED_KEY, "activation_equalization");
  quark_model_set_metadata (out, marked);
  return g_steal_pointer (&out);
}
