/* quark-rotation.h: orthogonal rotation of a model's residual stream
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>
#include <json-glib/json-glib.h>

#include "../../quark-version-macros.h"
#include "../../quark-model.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_rotation_matrix       (guint          n,
                                           gboolean       random,
                                           guint64        seed,
                                           GError       **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *  quark_rotation_rotate_model (QuarkModel    *model,
                                           JsonNode      *residual_stream,
                                           QuarkTensor   *rotation,
                                           GError       **error);

G_END_DECLS
