/* quark-quantization-config.h: the config interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>
#include <json-glib/json-glib.h>

#include "quark-enums.h"
#include "quark-tensor-spec.h"

G_BEGIN_DECLS

/**
 * QuarkSpecLevel:
 * @QUARK_SPEC_LEVEL_LAYER_NAME: per-layer-name patterns
 * @QUARK_SPEC_LEVEL_LAYER_TYPE: per-layer-type entries ("Linear", "Conv2d", …)
 * @QUARK_SPEC_LEVEL_GLOBAL: the global default
 *
 * The levels of a config that may hold a tensor spec, from the most specific
 * to the least. See [vfunc@Quark.QuantizationConfig.lookup_spec].
 */
typedef enum {
  QUARK_SPEC_LEVEL_LAYER_NAME, /*< nick=layer_name >*/
  QUARK_SPEC_LEVEL_LAYER_TYPE, /*< nick=layer_type >*/
  QUARK_SPEC_LEVEL_GLOBAL,     /*< nick=global >*/
} QuarkSpecLevel;

#define QUARK_TYPE_QUANTIZATION_CONFIG (quark_quantization_config_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_INTERFACE (QuarkQuantizationConfig, quark_quantization_config,
                     QUARK, QUANTIZATION_CONFIG, GObject)

/**
 * QuarkQuantizationConfigInterface:
 * @g_iface: the parent interface
 * @get_backend_name: names the backend; the default asks the registry which
 *   backend registered the config's type
 * @load_json: reads the members of a JSON object strictly; the default maps
 *   members to properties with quark_json_load_properties()
 * @to_json: writes the config as a JSON object; the default writes every
 *   readable and writable property with quark_json_serialize_properties()
 * @validate: checks the whole config; the default validates the global specs
 * @is_excluded: whether a layer is left unquantized; the default excludes
 *   nothing
 * @lookup_spec: the spec one level of the config gives a layer for a role;
 *   the default has no specs
 * @get_tensor_spec: the spec that applies to a layer for a role; the default
 *   applies Quark's precedence over @is_excluded and @lookup_spec
 * @batch_statistic: a statistic of one calibration batch that a static
 *   activation spec is computed from, where the backend's semantics define
 *   one beyond the session's own statistics (Brevitas's per-batch MSE
 *   search); the default defines none
 *
 * The virtual methods of #QuarkQuantizationConfig. Every one has a working
 * default, so a backend overrides only what it needs; the defaults are
 * exported (`quark_quantization_config_default_*`) for chaining up.
 */
struct _QuarkQuantizationConfigInterface
{
  GTypeInterface g_iface;

  const char *      (*get_backend_name) (QuarkQuantizationConfig  *self);
  gboolean          (*load_json)        (QuarkQuantizationConfig  *self,
                                         JsonObject               *object,
                                         GError                  **error);
  JsonNode *        (*to_json)          (QuarkQuantizationConfig  *self);
  gboolean          (*validate)         (QuarkQuantizationConfig  *self,
                                         GError                  **error);
  gboolean          (*is_excluded)      (QuarkQuantizationConfig  *self,
                                         const char               *layer_name);
  gboolean          (*lookup_spec)      (QuarkQuantizationConfig  *self,
                                         QuarkSpecLevel            level,
                                         const char               *key,
                                         QuarkRole                 role,
                                         QuarkTensorSpec         **spec);
  QuarkTensorSpec * (*get_tensor_spec)  (QuarkQuantizationConfig  *self,
                                         const char               *layer_name,
                                         const char               *layer_type,
                                         QuarkRole                 role);
  gboolean          (*batch_statistic)  (QuarkQuantizationConfig  *self,
                                         QuarkTensorSpec          *spec,
                                         const float              *values,
                                         gsize                     n_values,
                                         float                    *statistic,
                                         float                    *zero_point_statistic);
};

QUARK_AVAILABLE_IN_1_0
const char *      quark_quantization_config_get_backend_name (QuarkQuantizationConfig  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_load_json        (QuarkQuantizationConfig  *self,
                                                              JsonObject               *object,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
JsonNode *        quark_quantization_config_to_json          (QuarkQuantizationConfig  *self);
QUARK_AVAILABLE_IN_1_0
char *            quark_quantization_config_to_string        (QuarkQuantizationConfig  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_validate         (QuarkQuantizationConfig  *self,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_is_excluded      (QuarkQuantizationConfig  *self,
                                                              const char               *layer_name);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_lookup_spec      (QuarkQuantizationConfig  *self,
                                                              QuarkSpecLevel            level,
                                                              const char               *key,
                                                              QuarkRole                 role,
                                                              QuarkTensorSpec         **spec);
QUARK_AVAILABLE_IN_1_0
QuarkTensorSpec * quark_quantization_config_get_tensor_spec  (QuarkQuantizationConfig  *self,
                                                              const char               *layer_name,
                                                              const char               *layer_type,
                                                              QuarkRole                 role);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_batch_statistic  (QuarkQuantizationConfig  *self,
                                                              QuarkTensorSpec          *spec,
                                                              const float              *values,
                                                              gsize                     n_values,
                                                              float                    *statistic,
                                                              float                    *zero_point_statistic);

QUARK_AVAILABLE_IN_1_0
const char *      quark_quantization_config_default_get_backend_name (QuarkQuantizationConfig  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_default_load_json        (QuarkQuantizationConfig  *self,
                                                                      JsonObject               *object,
                                                                      GError                  **error);
QUARK_AVAILABLE_IN_1_0
JsonNode *        quark_quantization_config_default_to_json          (QuarkQuantizationConfig  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_quantization_config_default_validate         (QuarkQuantizationConfig  *self,
                                                                      GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensorSpec * quark_quantization_config_default_get_tensor_spec  (QuarkQuantizationConfig  *self,
                                                                      const char               *layer_name,
                                                                      const char               *layer_type,
                                                                      QuarkRole                 role);

G_END_DECLS
