/* quark-equalization.h: activation equalization, as Brevitas computes it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "../../quark-version-macros.h"
#include "../../quark-tensor.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_equalization_scale       (QuarkTensor  **sinks,
                                              guint          n_sinks,
                                              QuarkTensor   *abs_max,
                                              double         alpha,
                                              GError       **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_equalization_fold_sink   (QuarkTensor   *weight,
                                              QuarkTensor   *scale,
                                              GError       **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_equalization_fold_source (QuarkTensor   *tensor,
                                              QuarkTensor   *scale,
                                              GError       **error);

G_END_DECLS
