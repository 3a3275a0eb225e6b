/* quark-topology.h: which layers of a model feed which
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <json-glib/json-glib.h>

#include "quark-version-macros.h"
#include "quark-model.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
JsonNode * quark_topology_get_scaling_layers (JsonNode    *model_config,
                                              char       **decoder_layers,
                                              GError     **error);

QUARK_AVAILABLE_IN_1_0
gboolean   quark_topology_check_scaling_layers (JsonNode   *scaling_layers,
                                                const char *path,
                                                GError    **error);

QUARK_AVAILABLE_IN_1_0
JsonNode * quark_topology_get_residual_stream (JsonNode  *model_config,
                                               GError   **error);

QUARK_AVAILABLE_IN_1_0
guint *    quark_topology_get_layer_indices   (QuarkModel  *model,
                                               const char  *prefix,
                                               guint       *n_indices);

QUARK_AVAILABLE_IN_1_0
GStrv      quark_topology_declare_biases      (JsonNode           *model_config,
                                               const char * const *layers);

QUARK_AVAILABLE_IN_1_0
GStrv      quark_topology_get_fused_layers    (const char         *layer);

G_END_DECLS
