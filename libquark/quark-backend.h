/* quark-backend.h: a registered backend
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-dtype.h"
#include "quark-enums.h"
#include "quark-model-quantizer.h"
#include "quark-quantization-config.h"

G_BEGIN_DECLS

#define QUARK_TYPE_BACKEND (quark_backend_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkBackend, quark_backend, QUARK, BACKEND, GObject)

/**
 * QuarkBackendAvailableFunc:
 * @backend: the backend
 * @user_data: data given to quark_backend_set_available_func()
 * @error: return location for a #GError
 *
 * Says whether a backend can run on this machine (a runtime it needs is
 * present, a device exists, …).
 *
 * Returns: %TRUE if the backend can run; %FALSE with an error saying why
 */
typedef gboolean (*QuarkBackendAvailableFunc) (QuarkBackend  *backend,
                                               gpointer       user_data,
                                               GError       **error);

QUARK_AVAILABLE_IN_1_0
QuarkBackend *            quark_backend_new                   (const char                *name,
                                                               GType                      config_type,
                                                               GType                      quantizer_type);
QUARK_AVAILABLE_IN_1_0
const char *              quark_backend_get_name              (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
const char *              quark_backend_get_description       (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_set_description       (QuarkBackend              *self,
                                                               const char                *description);
QUARK_AVAILABLE_IN_1_0
const char *              quark_backend_get_version           (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_set_version           (QuarkBackend              *self,
                                                               const char                *version);
QUARK_AVAILABLE_IN_1_0
GType                     quark_backend_get_config_type       (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
GType                     quark_backend_get_quantizer_type    (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
const char *              quark_backend_get_module_path       (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_add_supported_dtype   (QuarkBackend              *self,
                                                               QuarkDType                 dtype);
QUARK_AVAILABLE_IN_1_0
const QuarkDType *        quark_backend_get_supported_dtypes  (QuarkBackend              *self,
                                                               guint                     *n_dtypes);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_backend_supports_dtype        (QuarkBackend              *self,
                                                               QuarkDType                 dtype);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_add_supported_qscheme (QuarkBackend              *self,
                                                               QuarkQScheme               qscheme);
QUARK_AVAILABLE_IN_1_0
const QuarkQScheme *      quark_backend_get_supported_qschemes (QuarkBackend             *self,
                                                               guint                     *n_qschemes);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_backend_supports_qscheme      (QuarkBackend              *self,
                                                               QuarkQScheme               qscheme);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_set_available_func    (QuarkBackend              *self,
                                                               QuarkBackendAvailableFunc  func,
                                                               gpointer                   user_data);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_backend_check_available       (QuarkBackend              *self,
                                                               GError                   **error);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_backend_is_registered         (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_backend_new_config            (QuarkBackend              *self,
                                                               GError                   **error);
QUARK_AVAILABLE_IN_1_0
QuarkModelQuantizer *     quark_backend_new_quantizer         (QuarkBackend              *self,
                                                               QuarkQuantizationConfig   *config,
                                                               GError                   **error);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_add_preset            (QuarkBackend              *self,
                                                               const char                *name,
                                                               const char                *description,
                                                               const char                *json);
QUARK_AVAILABLE_IN_1_0
void                      quark_backend_add_preset_alias      (QuarkBackend              *self,
                                                               const char                *alias,
                                                               const char                *name);
QUARK_AVAILABLE_IN_1_0
char **                   quark_backend_list_presets          (QuarkBackend              *self);
QUARK_AVAILABLE_IN_1_0
char **                   quark_backend_list_preset_aliases   (QuarkBackend              *self,
                                                               const char                *name);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_backend_has_preset            (QuarkBackend              *self,
                                                               const char                *name);
QUARK_AVAILABLE_IN_1_0
const char *              quark_backend_get_preset_description (QuarkBackend             *self,
                                                               const char                *name);
QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_backend_new_config_for_preset (QuarkBackend              *self,
                                                               const char                *name,
                                                               GError                   **error);
QUARK_AVAILABLE_IN_1_0
JsonNode *                quark_backend_describe              (QuarkBackend              *self);

G_END_DECLS
