/* quark-quantization-config.c: the config interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-quantization-config.h"
#include "quark-backend.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "quark-json.h"
#include "quark-registry.h"

#include <math.h>

/**
 * QuarkQuantizationConfig:
 *
 * Every parameter of one backend's quantization of a model.
 *
 * A config names its backend, loads itself from JSON strictly (unknown keys,
 * wrong JSON types, unknown enum names and out-of-range values are errors
 * naming the JSON path), validates itself into a #GError, writes itself back
 * to JSON, and answers which [class@Quark.TensorSpec] applies to a layer of a
 * given name and type for a role.
 *
 * That answer follows AMD Quark's precedence: an excluded layer gets no spec;
 * otherwise the per-layer-name level, then the per-layer-type level, then the
 * global level decide, the first that has a spec for the role winning. Backends
 * describe their levels with [vfunc@Quark.QuantizationConfig.lookup_spec] and
 * [vfunc@Quark.QuantizationConfig.is_excluded], or replace the whole rule by
 * overriding [vfunc@Quark.QuantizationConfig.get_tensor_spec].
 *
 * Configs are usually made by the registry from JSON
 * ([method@Quark.Registry.config_from_file]), whose `"backend"` member picks
 * the backend. Setting a property never reports an error: call
 * [method@Quark.QuantizationConfig.validate] after changing one.
 *
 * A config may be read from several threads at once (quantizers do), as long
 * as no thread changes it meanwhile.
 */

G_DEFINE_INTERFACE (QuarkQuantizationConfig, quark_quantization_config, G_TYPE_OBJECT)

/**
 * quark_quantization_config_default_get_backend_name:
 * @self: a #QuarkQuantizationConfig
 *
 * The default [vfunc@Quark.QuantizationConfig.get_backend_name]: the name of
 * the registered backend whose config type is the type of @self.
 *
 * Returns: (transfer none) (nullable): the backend name, or %NULL if no
 *   registered backend uses this config type
 */
const char *
quark_quantization_config_default_get_backend_name (QuarkQuantizationConfig *self)
{
  QuarkBackend *backend;

  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), NULL);

  backend = quark_registry_lookup_backend_for_config_type (quark_registry_get_default (),
                                                           G_OBJECT_TYPE (self));
  return backend ? quark_backend_get_name (backend) : NULL;
}

/**
 * quark_quantization_config_default_load_json:
 * @self: a #QuarkQuantizationConfig
 * @object: the JSON members, without `"backend"`
 * @error: return location for a #GError
 *
 * The default [vfunc@Quark.QuantizationConfig.load_json]: sets the config's
 * properties from the members of @object with quark_json_load_properties().
 *
 * Returns: %TRUE on success
 */
gboolean
quark_quantization_config_default_load_json (QuarkQuantizationConfig  *self,
                                             JsonObject               *object,
                                             GError                  **error)
{
  return quark_json_load_properties (G_OBJECT (self), object, NULL, NULL, error);
}

/**
 * quark_quantization_config_default_to_json:
 * @self: a #QuarkQuantizationConfig
 *
 * The default [vfunc@Quark.QuantizationConfig.to_json]: every readable and
 * writable property, with quark_json_serialize_properties().
 *
 * Returns: (transfer full): a JSON object node
 */
JsonNode *
quark_quantization_config_default_to_json (QuarkQuantizationConfig *self)
{
  return quark_json_serialize_properties (G_OBJECT (self));
}

/**
 * quark_quantization_config_default_validate:
 * @self: a #QuarkQuantizationConfig
 * @error: return location for a #GError
 *
 * The default [vfunc@Quark.QuantizationConfig.validate]: validates the spec
 * the global level gives each role.
 *
 * Returns: %TRUE if the config is valid
 */
gboolean
quark_quantization_config_default_validate (QuarkQuantizationConfig  *self,
                                            GError                  **error)
{
  g_autoptr(GEnumClass) roles = g_type_class_ref (QUARK_TYPE_ROLE);

  for (guint i = 0; i < roles->n_values; i++)
    {
      g_autoptr(QuarkTensorSpec) spec = NULL;

      if (quark_quantization_config_lookup_spec (self, QUARK_SPEC_LEVEL_GLOBAL, NULL,
                                                 roles->values[i].value, &spec) &&
          spec != NULL &&
          !quark_tensor_spec_validate (spec, roles->values[i].value_nick, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
quark_quantization_config_real_is_excluded (QuarkQuantizationConfig *self,
                                            const char              *layer_name)
{
  return FALSE;
}

static gboolean
quark_quantization_config_real_lookup_spec (QuarkQuantizationConfig  *self,
                                            QuarkSpecLevel            level,
                                            const char               *key,
                                            QuarkRole                 role,
                                            QuarkTensorSpec         **spec)
{
  *spec = NULL;
  return FALSE;
}

/**
 * quark_quantization_config_default_get_tensor_spec:
 * @self: a #QuarkQuantizationConfig
 * @layer_name: the layer's full name, such as `model.layers.0.mlp.down_proj`
 * @layer_type: (nullable): the layer's type, such as `Linear`
 * @role: which tensor of the layer
 *
 * The default [vfunc@Quark.QuantizationConfig.get_tensor_spec], AMD Quark's
 * precedence: %NULL if the layer is excluded; otherwise the first of the
 * layer-name, layer-type (when @layer_type is given) and global levels that
 * decides for @role.
 *
 * Returns: (transfer full) (nullable): the spec, or %NULL if the tensor stays
 *   in float
 */
QuarkTensorSpec *
quark_quantization_config_default_get_tensor_spec (QuarkQuantizationConfig *self,
                                                   const char              *layer_name,
                                                   const char              *layer_type,
                                                   QuarkRole                role)
{
  QuarkTensorSpec *spec = NULL;

  if (quark_quantization_config_is_excluded (self, layer_name))
    return NULL;
  if (quark_quantization_config_lookup_spec (self, QUARK_SPEC_LEVEL_LAYER_NAME, layer_name, role, &spec))
    return spec;
  g_clear_object (&spec);
  if (layer_type != NULL &&
      quark_quantization_config_lookup_spec (self, QUARK_SPEC_LEVEL_LAYER_TYPE, layer_type, role, &spec))
    return spec;
  g_clear_object (&spec);
  if (quark_quantization_config_lookup_spec (self, QUARK_SPEC_LEVEL_GLOBAL, NULL, role, &spec))
    return spec;
  g_clear_object (&spec);
  return NULL;
}

static gboolean
quark_quantization_config_real_batch_statistic (QuarkQuantizationConfig *self,
                                                QuarkTensorSpec         *spec,
                                                const float             *values,
                                                gsize                    n_values,
                                                float                   *statistic,
                                                float                   *zero_point_statistic)
{
  return FALSE;
}

static void
quark_quantization_config_default_init (QuarkQuantizationConfigInterface *iface)
{
  iface->batch_statistic = quark_quantization_config_real_batch_statistic;
  iface->get_backend_name = quark_quantization_config_default_get_backend_name;
  iface->load_json = quark_quantization_config_default_load_json;
  iface->to_json = quark_quantization_config_default_to_json;
  iface->validate = quark_quantization_config_default_validate;
  iface->is_excluded = quark_quantization_config_real_is_excluded;
  iface->lookup_spec = quark_quantization_config_real_lookup_spec;
  iface->get_tensor_spec = quark_quantization_config_default_get_tensor_spec;
}

/**
 * quark_quantization_config_get_backend_name:
 * @self: a #QuarkQuantizationConfig
 *
 * Names the backend this config belongs to.
 *
 * Returns: (transfer none) (nullable): the backend name, or %NULL for a
 *   config type no registered backend uses
 */
const char *
quark_quantization_config_get_backend_name (QuarkQuantizationConfig *self)
{
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), NULL);
  return QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->get_backend_name (self);
}

/**
 * quark_quantization_config_load_json:
 * @self: a #QuarkQuantizationConfig
 * @object: the config's JSON members, without `"backend"`
 * @error: return location for a #GError
 *
 * Reads the config from the members of a JSON object, strictly. This is the
 * loader behind [method@Quark.Registry.config_from_file]; it does not
 * validate the result, which the registry does next.
 *
 * Returns: %TRUE on success; %FALSE with a %QUARK_CONFIG_ERROR naming the JSON
 *   path at fault
 */
gboolean
quark_quantization_config_load_json (QuarkQuantizationConfig  *self,
                                     JsonObject               *object,
                                     GError                  **error)
{
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), FALSE);
  g_return_val_if_fail (object != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->load_json (self, object, error);
}

/**
 * quark_quantization_config_to_json:
 * @self: a #QuarkQuantizationConfig
 *
 * Writes the config as a JSON object whose first member is `"backend"`. The
 * registry reads the result back into an equal config.
 *
 * Returns: (transfer full): a JSON object node
 */
JsonNode *
quark_quantization_config_to_json (QuarkQuantizationConfig *self)
{
  g_autoptr(JsonNode) body = NULL;
  g_autoptr(GList) members = NULL;
  JsonObject *object;
  JsonNode *node;
  const char *backend;

  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), NULL);

  body = QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->to_json (self);
  g_return_val_if_fail (body != NULL && JSON_NODE_HOLDS_OBJECT (body), NULL);

  object = json_object_new ();
  backend = quark_quantization_config_get_backend_name (self);
  if (backend)
    json_object_set_string_member (object, "backend", backend);
  members = json_object_get_members (json_node_get_object (body));
  for (GList *l = members; l; l = l->next)
    if (g_strcmp0 (l->data, "backend") != 0)
      json_object_set_member (object, l->data,
                              json_node_copy (json_object_get_member (json_node_get_object (body), l->data)));
  node = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  return node;
}

/**
 * quark_quantization_config_to_string:
 * @self: a #QuarkQuantizationConfig
 *
 * Writes the config as pretty-printed JSON text (see
 * quark_quantization_config_to_json()).
 *
 * Returns: (transfer full): the JSON text
 */
char *
quark_quantization_config_to_string (QuarkQuantizationConfig *self)
{
  g_autoptr(JsonNode) node = NULL;

  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), NULL);

  node = quark_quantization_config_to_json (self);
  return quark_json_to_string (node, TRUE);
}

/**
 * quark_quantization_config_validate:
 * @self: a #QuarkQuantizationConfig
 * @error: return location for a #GError
 *
 * Checks the whole config: every spec meaningful, and supported by the
 * backend.
 *
 * Returns: %TRUE if the config is valid; %FALSE with a %QUARK_CONFIG_ERROR
 *   naming the JSON path at fault
 */
gboolean
quark_quantization_config_validate (QuarkQuantizationConfig  *self,
                                    GError                  **error)
{
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->validate (self, error);
}

/**
 * quark_quantization_config_is_excluded:
 * @self: a #QuarkQuantizationConfig
 * @layer_name: a layer's full name
 *
 * Whether the config leaves a layer unquantized whatever its specs say.
 *
 * Returns: %TRUE if @layer_name is excluded
 */
gboolean
quark_quantization_config_is_excluded (QuarkQuantizationConfig *self,
                                       const char              *layer_name)
{
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);
  return QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->is_excluded (self, layer_name);
}

/**
 * quark_quantization_config_lookup_spec:
 * @self: a #QuarkQuantizationConfig
 * @level: which level of the config to consult
 * @key: (nullable): the layer name for %QUARK_SPEC_LEVEL_LAYER_NAME, the
 *   layer type for %QUARK_SPEC_LEVEL_LAYER_TYPE, %NULL for
 *   %QUARK_SPEC_LEVEL_GLOBAL
 * @role: which tensor of the layer
 * @spec: (out) (transfer full) (nullable): the spec this level gives, %NULL
 *   meaning "not quantized"
 *
 * Asks one level of the config whether it decides the spec of a tensor. At
 * the layer-name and layer-type levels an entry that matches but leaves
 * @role unset (`null` in JSON) does not decide, so the next level is asked;
 * the global level decides when it is defined at all, %NULL then meaning
 * that the tensor stays in float.
 *
 * Returns: %TRUE if this level decides, with the answer in @spec
 */
gboolean
quark_quantization_config_lookup_spec (QuarkQuantizationConfig  *self,
                                       QuarkSpecLevel            level,
                                       const char               *key,
                                       QuarkRole                 role,
                                       QuarkTensorSpec         **spec)
{
  QuarkTensorSpec *result = NULL;
  gboolean decided;

  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), FALSE);
  g_return_val_if_fail (level == QUARK_SPEC_LEVEL_GLOBAL || key != NULL, FALSE);
  g_return_val_if_fail (spec != NULL, FALSE);

  decided = QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->lookup_spec (self, level, key, role, &result);
  if (!decided)
    g_clear_object (&result);
  *spec = result;
  return decided;
}

/**
 * quark_quantization_config_get_tensor_spec:
 * @self: a #QuarkQuantizationConfig
 * @layer_name: the layer's full name, such as `model.layers.0.mlp.down_proj`
 * @layer_type: (nullable): the layer's type, such as `Linear` or `Conv2d`
 * @role: which tensor of the layer
 *
 * Answers which spec applies to a tensor of a layer, with AMD Quark's
 * precedence: exclude, then per-layer-name patterns, then per-layer-type,
 * then global.
 *
 * Returns: (transfer full) (nullable): the spec, or %NULL if the tensor stays
 *   in float
 */
QuarkTensorSpec *
quark_quantization_config_get_tensor_spec (QuarkQuantizationConfig *self,
                                           const char              *layer_name,
                                           const char              *layer_type,
                                           QuarkRole                role)
{
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), NULL);
  g_return_val_if_fail (layer_name != NULL, NULL);
  return QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->get_tensor_spec (self, layer_name, layer_type, role);
}

/**
 * quark_quantization_config_batch_statistic:
 * @self: a #QuarkQuantizationConfig
 * @spec: a static activation spec of this config
 * @values: (array length=n_values): one calibration batch
 * @n_values: the number of values
 * @statistic: (out): the batch's statistic for the scale
 * @zero_point_statistic: (inout): on input the previous batch's
 *   zero-point statistic (NaN for the first batch; Brevitas's shifted
 *   activation search starts from it), on output this batch's (0 where the
 *   spec has none)
 *
 * Computes what @spec's backend takes from each calibration batch beyond
 * the statistics a session always keeps, such as the brevitas backend's
 * MSE search over each batch (numerics.md B8). Calibration sessions made
 * for the config call this for every batch and keep the running mean,
 * which quark_calibration_get_batch_statistic() reads.
 *
 * Returns: %TRUE if the spec defines such a statistic, %FALSE otherwise
 */
gboolean
quark_quantization_config_batch_statistic (QuarkQuantizationConfig *self,
                                           QuarkTensorSpec         *spec,
                                           const float             *values,
                                           gsize                    n_values,
                                           float                   *statistic,
                                           float                   *zero_point_statistic)
{
  float s = 0, z;
  gboolean ok;

  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (self), FALSE);
  z = zero_point_statistic ? *zero_point_statistic : NAN;
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), FALSE);
  g_return_val_if_fail (values != NULL || n_values == 0, FALSE);

  ok = QUARK_QUANTIZATION_CONFIG_GET_IFACE (self)->batch_statistic (self, spec, values, n_values, &s, &z);
  if (statistic)
    *statistic = ok ? s : 0;
  if (zero_point_statistic)
    *zero_point_statistic = ok ? z : 0;
  return ok;
}
