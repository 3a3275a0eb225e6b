/* quark-smoothquant-private.h: what SmoothQuant shares with the
 * algorithms like it (activation equalization)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "quark-tensor.h"

G_BEGIN_DECLS

float * _quark_smoothquant_ranges (QuarkTensor **weights,
                                   guint         n_weights,
                                   QuarkTensor  *abs_max,
                                   const char   *algorithm,
                                   gsize        *n_columns,
                                   float       **activation,
                                   GError      **error);

G_END_DECLS
