/* quark-quark-scaling.h: the quark backend's AWQ and SmoothQuant: scales
 * (and AWQ's clips), planned before any tensor is written and applied
 * tensor by tensor
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark/quark.h>

#include "quark-quark-quantizer.h"
#include "quark-quark-config.h"

G_BEGIN_DECLS

typedef struct _QuarkQuarkScalingPlan QuarkQuarkScalingPlan;

/* Computes every scaling group's scale (and with AWQ every layer's clips)
 * of @model from @calibration's second moments; NULL with @error set */
QuarkQuarkScalingPlan *quark_quark_scaling_plan_new     (QuarkQuarkQuantizer    *quantizer,
                                                 const QuarkQuarkScaling *scaling,
                                                 QuarkModel             *model,
                                                 QuarkCalibration       *calibration,
                                                 QuarkCheckpointFormat  *format,
                                                 GError                **error);
void               quark_quark_scaling_plan_free    (QuarkQuarkScalingPlan      *plan);
/* @tensor as the plan transforms it (a new float32 tensor), or a new
 * reference to @tensor when the plan leaves it */
QuarkTensor *      quark_quark_scaling_plan_apply   (QuarkQuarkScalingPlan      *plan,
                                                 QuarkTensor            *tensor,
                                                 GError                **error);
/* The Gram matrix of the input of weight @name after its columns are
 * scaled (a new reference to @gram when they are not) */
QuarkTensor *      quark_quark_scaling_plan_scale_gram (QuarkQuarkScalingPlan   *plan,
                                                 const char             *name,
                                                 QuarkTensor            *gram);
/* When the input of @layer is scaled: its largest magnitude after the
 * scaling, max_j (max |x_j|) / s_j, exact from the second moments */
gboolean           quark_quark_scaling_plan_input_abs_max (QuarkQuarkScalingPlan *plan,
                                                 const char             *layer,
                                                 QuarkCalibration       *calibration,
                                                 float                  *abs_max);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (QuarkQuarkScalingPlan, quark_quark_scaling_plan_free)

G_END_DECLS
