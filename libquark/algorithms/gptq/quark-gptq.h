/* quark-gptq.h: GPTQ, error-compensating weight quantization
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
#include "../../quark-tensor-spec.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_gptq_quantize (QuarkTensor      *weight,
                                   QuarkTensorSpec  *spec,
                                   QuarkTensor      *codes,
                                   QuarkTensor      *scale,
                                   QuarkTensor      *zero_point,
                                   QuarkTensor      *gram,
                                   double            damp_percent,
                                   guint             block_size,
                                   gboolean          desc_act,
                                   GError          **error);

G_END_DECLS
