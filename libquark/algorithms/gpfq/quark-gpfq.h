/* quark-gpfq.h: GPFQ, greedy path following weight quantization
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
#include "../gptq/quark-gptq.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
gboolean quark_gpfq_update_weight (float               *weight,
                                   gsize                rows,
                                   gsize                cols,
                                   QuarkTensor         *gram,
                                   gboolean             act_order,
                                   QuarkGptqRoundFunc   round_func,
                                   gpointer             user_data,
                                   GError             **error);

G_END_DECLS
