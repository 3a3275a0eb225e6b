/* quark-topology.c: which layers of a model feed which
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-topology.h"
#include "quark-error.h"

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
  static const char * const llama_family[] = { "llama", "mistral", "qwen2", NULL };
  JsonObject *object;
  const char *type;

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

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
                   "config.json: model_type \"%s\" has no known topology (llama, mistral and qwen2 have); "
                   "give scaling_layers explicitly", type);
      return NULL;
    }
  if (decoder_layers)
    *decoder_layers = g_strdup ("model.layers");
  return json_from_string (llama_scaling_layers, NULL);
}
