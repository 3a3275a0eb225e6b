/* quark-smoothquant.h: SmoothQuant, moving activation outliers into weights
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
QuarkTensor * quark_smoothquant_scale (QuarkTensor  **weights,
                                       guint          n_weights,
                                       QuarkTensor   *abs_max,
                                       double         alpha,
                                       double         clamp_min,
                                       GError       **error);

G_END_DECLS
