/* quark-registry.h: the backend registry
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>
#include <json-glib/json-glib.h>

#include "quark-backend.h"
#include "quark-backend-module.h"
#include "quark-checkpoint-format.h"

G_BEGIN_DECLS

#define QUARK_TYPE_REGISTRY (quark_registry_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkRegistry, quark_registry, QUARK, REGISTRY, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkRegistry *           quark_registry_get_default         (void);
QUARK_AVAILABLE_IN_1_0
char **                   quark_registry_get_search_path     (QuarkRegistry            *self);
QUARK_AVAILABLE_IN_1_0
GPtrArray *               quark_registry_list_backends       (QuarkRegistry            *self);
QUARK_AVAILABLE_IN_1_0
GPtrArray *               quark_registry_list_modules        (QuarkRegistry            *self);
QUARK_AVAILABLE_IN_1_0
QuarkBackend *            quark_registry_lookup_backend      (QuarkRegistry            *self,
                                                              const char               *name);
QUARK_AVAILABLE_IN_1_0
QuarkBackend *            quark_registry_get_backend         (QuarkRegistry            *self,
                                                              const char               *name,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkBackend *            quark_registry_lookup_backend_for_config_type (QuarkRegistry *self,
                                                              GType                     config_type);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_registry_add_backend         (QuarkRegistry            *self,
                                                              QuarkBackend             *backend,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_registry_new_config          (QuarkRegistry            *self,
                                                              const char               *backend_name,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_registry_config_from_json    (QuarkRegistry            *self,
                                                              JsonNode                 *root,
                                                              const char               *source,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_registry_config_from_string  (QuarkRegistry            *self,
                                                              const char               *data,
                                                              gssize                    length,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_registry_config_from_file    (QuarkRegistry            *self,
                                                              const char               *filename,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_registry_config_for_preset   (QuarkRegistry            *self,
                                                              const char               *backend_name,
                                                              const char               *name,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkModelQuantizer *     quark_registry_new_quantizer       (QuarkRegistry            *self,
                                                              QuarkQuantizationConfig  *config,
                                                              GError                  **error);

QUARK_AVAILABLE_IN_1_0
gboolean                  quark_registry_add_format          (QuarkRegistry            *self,
                                                              GType                     type,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
char **                   quark_registry_list_formats        (QuarkRegistry            *self);
QUARK_AVAILABLE_IN_1_0
QuarkCheckpointFormat *   quark_registry_new_format          (QuarkRegistry            *self,
                                                              const char               *name,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkCheckpointFormat *   quark_registry_format_for_checkpoint (QuarkRegistry          *self,
                                                              JsonNode                 *quantization_config);

QUARK_AVAILABLE_IN_1_0
QuarkCheckpointFormat *   quark_registry_format_for_file     (QuarkRegistry            *self,
                                                              const char               *path);
QUARK_AVAILABLE_IN_1_0
QuarkCheckpointFormat *   quark_registry_format_for_model    (QuarkRegistry            *self,
                                                              QuarkModel               *checkpoint);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_registry_config_for_checkpoint (QuarkRegistry          *self,
                                                              QuarkModel               *checkpoint,
                                                              GError                  **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_registry_dequantize_checkpoint (QuarkRegistry          *self,
                                                              QuarkModel               *checkpoint,
                                                              GError                  **error);

G_END_DECLS
