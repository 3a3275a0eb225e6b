/* quark-topology.c: which layers of a model feed which
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-topology.h"
#include "quark-error.h"
#include "quark-json.h"

#include <string.h>

/**
 * SECTION:quark-topology
 * @Title: Topology
 * @Short_description: which layers of a model feed which
 *
 * Algorithms that move scale between layers (AWQ, SmoothQuant) need to
 * know, inside each decoder layer, which operation produces the input of
 * which linear layers. This is the one place that knows it for the
 * architectures libquark runs, in AMD Quark's `scaling_layers` schema, so
 * that a config can give the same thing explicitly for any other model.
 */

/* The Llama family (llama, mistral, qwen2): a pre-norm decoder layer with
 * RMSNorm → q/k/v, v → o (per head), RMSNorm → gate/up, up → down (the
 * SwiGLU product is linear in up's output). */
static const char llama_scaling_layers[] =
  "["
  "{\"prev_op\": \"input_layernorm\", \"layers\": [\"self_attn.q_proj\", \"self_attn.k_proj\", \"self_attn.v_proj\"],"
  " \"inp\": \"self_attn.q_proj\", \"module2inspect\": \"self_attn\"},"
  "{\"prev_op\": \"self_attn.v_proj\", \"layers\": [\"self_attn.o_proj\"], \"inp\": \"self_attn.o_proj\"},"
  "{\"prev_op\": \"post_attention_layernorm\", \"layers\": [\"mlp.gate_proj\", \"mlp.up_proj\"],"
  " \"inp\": \"mlp.gate_proj\", \"module2inspect\": \"mlp\"},"
  "{\"prev_op\": \"mlp.up_proj\", \"layers\": [\"mlp.down_proj\"], \"inp\": \"mlp.down_proj\"}"
  "]";

/* The Llama family's residual stream: what writes it, what reads it
 * through which norm */
static const char llama_residual_stream[] =
  "{\"embedding\": \"model.embed_tokens\", \"decoder_layers\": \"model.layers\","
  " \"norms\": [{\"norm\": \"input_layernorm\","
  "              \"readers\": [\"self_attn.q_proj\", \"self_attn.k_proj\", \"self_attn.v_proj\"]},"
  "             {\"norm\": \"post_attention_layernorm\", \"readers\": [\"mlp.gate_proj\", \"mlp.up_proj\"]}],"
  " \"writers\": [\"self_attn.o_proj\", \"mlp.down_proj\"],"
  " \"final_norm\": \"model.norm\", \"head\": \"lm_head\"}";

static const char *
llama_family_type (JsonNode *model_config, GError **error)
{
  static const char * const llama_family[] = { "llama", "mistral", "qwen2", NULL };
  JsonObject *object;
  const char *type;

  if (model_config == NULL || !JSON_NODE_HOLDS_OBJECT (model_config) ||
      (object = json_node_get_object (model_config)) == NULL ||
      !json_object_has_member (object, "model_type") ||
      (type = json_object_get_string_member_with_default (object, "model_type", NULL)) == NULL)
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "config.json: model_type is missing, so the model's topology is unknown");
      return NULL;
    }
  if (!g_strv_contains (llama_family, type))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "config.json: model_type \"%s\" has no known topology (llama, mistral and qwen2 have)", type);
      return NULL;
    }
  return type;
}

/**
 * quark_topology_get_residual_stream:
 * @model_config: a model's `config.json` content
 * @error: return location for a #GError
 *
 * How the model's residual stream flows, for transformations of the whole
 * stream such as rotation: an object with `embedding` (the token embedding
 * that starts it), `decoder_layers` (the prefix of decoder layer N's
 * names), `norms` (per decoder layer, each norm with the linear layers that
 * read the stream through it, names relative to the layer), `writers` (the
 * linear layers that add their output to the stream), `final_norm` and
 * `head` (the output projection read through it). Known for the
 * `model_type`s `llama`, `mistral` and `qwen2`.
 *
 * Returns: (transfer full): a JSON object, or %NULL with the errors of
 *   quark_topology_get_scaling_layers()
 */
JsonNode *
quark_topology_get_residual_stream (JsonNode *model_config, GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (llama_family_type (model_config, error) == NULL)
    return NULL;
  return json_from_string (llama_residual_stream, NULL);
}

/**
 * quark_topology_get_scaling_layers:
 * @model_config: a model's `config.json` content
 * @decoder_layers: (out) (optional) (transfer full): the name prefix of the
 *   decoder layers (`model.layers`; layer N's tensors are
 *   `PREFIX.N.NAME.weight`)
 * @error: return location for a #GError
 *
 * The scaling groups of the model's decoder layers, in AMD Quark's
 * `scaling_layers` schema: a list of objects with `prev_op` (the norm or
 * linear layer whose output is the input of `layers`, names relative to a
 * decoder layer), `layers` (the linear layers sharing that input) and `inp`
 * (the layer whose input statistics stand for all of them). Known for the
 * `model_type`s `llama`, `mistral` and `qwen2`.
 *
 * Returns: (transfer full): a JSON array, or %NULL with
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME for other models (give the groups
 *   explicitly then) or %QUARK_ERROR_INVALID_ARGUMENT when @model_config is
 *   not an object with a `model_type`
 */
JsonNode *
quark_topology_get_scaling_layers (JsonNode *model_config, char **decoder_layers, GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (llama_family_type (model_config, error) == NULL)
    return NULL;
  if (decoder_layers)
    *decoder_layers = g_strdup ("model.layers");
  return json_from_string (llama_scaling_layers, NULL);
}

static const char *
string_member (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n)
                                                                                        : NULL;
}

/**
 * quark_topology_check_scaling_layers:
 * @scaling_layers: a config's scaling groups
 * @path: the JSON path of @scaling_layers, for messages
 * @error: return location for a #GError
 *
 * Checks that @scaling_layers is a list in AMD Quark's `scaling_layers`
 * schema, as quark_topology_get_scaling_layers() gives for known models:
 * objects with `prev_op` (a name), `layers` (a non-empty list of names) and
 * optionally `inp` (one of `layers`; `module2inspect`, `has_kwargs` and
 * `help` are accepted and ignored).
 *
 * Returns: %TRUE when it is, %FALSE with a #QuarkConfigError naming the
 *   member
 */
gboolean
quark_topology_check_scaling_layers (JsonNode *scaling_layers, const char *path, GError **error)
{
  static const char * const keys[] = { "prev_op", "layers", "inp", "module2inspect", "has_kwargs", "help", NULL };
  JsonArray *list;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (scaling_layers == NULL || !JSON_NODE_HOLDS_ARRAY (scaling_layers))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "%s: expected a list of scaling groups", path);
      return FALSE;
    }
  list = json_node_get_array (scaling_layers);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      g_autofree char *item_path = quark_json_path_index (path, i);
      JsonNode *item = json_array_get_element (list, i);
      JsonObject *o = JSON_NODE_HOLDS_OBJECT (item) ? json_node_get_object (item) : NULL;
      JsonNode *layers = o ? json_object_get_member (o, "layers") : NULL;
      const char *inp;
      gboolean found = FALSE;

      if (o == NULL)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s: expected an object",
                       item_path);
          return FALSE;
        }
      if (!quark_json_check_members (o, item_path, keys, error))
        return FALSE;
      if (string_member (o, "prev_op") == NULL || layers == NULL || !JSON_NODE_HOLDS_ARRAY (layers) ||
          json_array_get_length (json_node_get_array (layers)) == 0)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_MISSING_KEY,
                       "%s: expected \"prev_op\" (a name) and \"layers\" (a list of names)", item_path);
          return FALSE;
        }
      inp = string_member (o, "inp");
      for (guint k = 0; k < json_array_get_length (json_node_get_array (layers)); k++)
        {
          JsonNode *n = json_array_get_element (json_node_get_array (layers), k);
          if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
            {
              g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                           "%s.layers[%u]: expected a layer name", item_path, k);
              return FALSE;
            }
          found = found || inp == NULL || g_str_equal (inp, json_node_get_string (n));
        }
      if (!found)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s.inp: \"%s\" is not one of the group's layers (its input stands for theirs)", item_path,
                       inp);
          return FALSE;
        }
    }
  return TRUE;
}

static int
compare_uint (gconstpointer a, gconstpointer b)
{
  guint x = *(const guint *) a, y = *(const guint *) b;
  return x < y ? -1 : x > y;
}

/**
 * quark_topology_get_layer_indices:
 * @model: a model
 * @prefix: the name prefix of the decoder layers, such as `model.layers`
 * @n_indices: (out): the number of indices
 *
 * The decoder layers @model has tensors of: every N for which a tensor is
 * named `PREFIX.N.…`, in increasing order.
 *
 * Returns: (array length=n_indices) (transfer full): the indices
 */
guint *
quark_topology_get_layer_indices (QuarkModel *model, const char *prefix, guint *n_indices)
{
  g_autofree char *start = NULL;
  g_autoptr(GHashTable) seen = g_hash_table_new (g_direct_hash, g_direct_equal);
  GArray *out;

  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (prefix != NULL, NULL);
  g_return_val_if_fail (n_indices != NULL, NULL);

  start = g_strconcat (prefix, ".", NULL);
  out = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      const char *name = quark_tensor_get_name (quark_model_get_tensor_at (model, i));
      char *end;
      guint64 n;
      guint index;

      if (!g_str_has_prefix (name, start) || !g_ascii_isdigit (name[strlen (start)]))
        continue;
      n = g_ascii_strtoull (name + strlen (start), &end, 10);
      if (*end != '.' || n >= G_MAXUINT || g_hash_table_contains (seen, GUINT_TO_POINTER ((guint) n + 1)))
        continue;
      g_hash_table_add (seen, GUINT_TO_POINTER ((guint) n + 1));
      index = (guint) n;
      g_array_append_val (out, index);
    }
  g_array_sort (out, compare_uint);
  *n_indices = out->len;
  return (guint *) g_array_free (out, FALSE);
}

/* Whether @layer is one of a decoder layer's attention (or MLP) linears */
static gboolean
is_block_linear (const char *layer, const char *block, const char * const *names)
{
  const char *at = strstr (layer, block);
  if (at == NULL)
    return FALSE;
  return g_strv_contains (names, at + strlen (block));
}

/**
 * quark_topology_declare_biases:
 * @model_config: a model's `config.json`, changed in place
 * @layers: (array zero-terminated=1): linear layers that have gained a bias
 *   (bias correction gives layers without one a bias)
 *
 * Declares in @model_config the biases @layers have gained, so that
 * transformers builds its modules with them and loads them: for `llama`,
 * `attention_bias` (q, k, v and o projections) and `mlp_bias` (gate, up and
 * down projections) become true. `qwen2` has its q, k and v biases
 * already. Other biases cannot be declared (`mistral` has no such keys,
 * `qwen2` none for o and the MLP, other architectures are not known):
 * transformers would leave them out, while libquark's runtime runs them.
 *
 * Returns: (transfer full): the layers of @layers whose biases the config
 *   cannot declare, an empty list when all are declared
 */
GStrv
quark_topology_declare_biases (JsonNode *model_config, const char * const *layers)
{
  static const char * const attention[] = { "q_proj", "k_proj", "v_proj", "o_proj", NULL };
  static const char * const qkv[] = { "q_proj", "k_proj", "v_proj", NULL };
  static const char * const mlp[] = { "gate_proj", "up_proj", "down_proj", NULL };
  g_autoptr(GStrvBuilder) left = g_strv_builder_new ();
  JsonObject *object = model_config && JSON_NODE_HOLDS_OBJECT (model_config)
                       ? json_node_get_object (model_config) : NULL;
  const char *type = object ? json_object_get_string_member_with_default (object, "model_type", "") : "";

  g_return_val_if_fail (layers != NULL, NULL);

  for (guint i = 0; layers[i]; i++)
    {
      const char *layer = layers[i];
      if (g_str_equal (type, "llama") && is_block_linear (layer, ".self_attn.", attention))
        json_object_set_boolean_member (object, "attention_bias", TRUE);
      else if (g_str_equal (type, "llama") && is_block_linear (layer, ".mlp.", mlp))
        json_object_set_boolean_member (object, "mlp_bias", TRUE);
      else if (!(g_str_equal (type, "qwen2") && is_block_linear (layer, ".self_attn.", qkv)))
        g_strv_builder_add (left, layer);
    }
  return g_strv_builder_end (left);
}

/**
 * quark_topology_get_fused_layers:
 * @layer: a linear layer's name
 *
 * The layers that serving engines fuse with @layer into one: vLLM's
 * `packed_modules_mapping` of the Llama family joins `q_proj`, `k_proj` and
 * `v_proj` (`qkv_proj`) and `gate_proj` and `up_proj` (`gate_up_proj`) of
 * the same parent. Such layers need one scheme, and formats with
 * per-tensor parameters that the engine takes once for the fused layer
 * (NVFP4's global scale) need one value.
 *
 * Returns: (transfer full): the names of the fused layers, @layer among
 *   them in its place, or @layer alone
 */
GStrv
quark_topology_get_fused_layers (const char *layer)
{
  static const char * const groups[][4] = {
    { "q_proj", "k_proj", "v_proj", NULL },
    { "gate_proj", "up_proj", NULL, NULL },
  };
  g_autoptr(GStrvBuilder) out = g_strv_builder_new ();
  const char *dot;

  g_return_val_if_fail (layer != NULL, NULL);

  dot = strrchr (layer, '.');
  for (guint g = 0; g < G_N_ELEMENTS (groups); g++)
    if (g_strv_contains (groups[g], dot ? dot + 1 : layer))
      {
        g_autofree char *parent = g_strndup (layer, dot ? (gsize) (dot + 1 - layer) : 0);
        for (guint k = 0; groups[g][k]; k++)
          {
            g_autofree char *name = g_strconcat (parent, groups[g][k], NULL);
            g_strv_builder_add (out, name);
          }
        return g_strv_builder_end (out);
      }
  g_strv_builder_add (out, layer);
  return g_strv_builder_end (out);
}
