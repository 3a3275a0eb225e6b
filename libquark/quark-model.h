/* quark-model.h: an ordered set of named tensors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "quark-tensor.h"

G_BEGIN_DECLS

#define QUARK_TYPE_MODEL (quark_model_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkModel, quark_model, QUARK, MODEL, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkModel *  quark_model_new               (void);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_model_add_tensor        (QuarkModel   *self,
                                             QuarkTensor  *tensor,
                                             GError      **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_model_get_tensor        (QuarkModel   *self,
                                             const char   *name);
QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_model_get_tensor_at     (QuarkModel   *self,
                                             guint         position);
QUARK_AVAILABLE_IN_1_0
guint         quark_model_get_n_tensors     (QuarkModel   *self);
QUARK_AVAILABLE_IN_1_0
char **       quark_model_get_tensor_names  (QuarkModel   *self);
QUARK_AVAILABLE_IN_1_0
JsonNode *    quark_model_get_metadata      (QuarkModel   *self);
QUARK_AVAILABLE_IN_1_0
void          quark_model_set_metadata      (QuarkModel   *self,
                                             JsonNode     *metadata);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_model_check_sources     (QuarkModel   *self,
                                             GError      **error);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_model_is_quantized      (QuarkModel   *self,
                                             char        **reason);

G_END_DECLS
