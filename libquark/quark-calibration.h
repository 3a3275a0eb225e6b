/* quark-calibration.h: activation statistics
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-enums.h"
#include "quark-tensor.h"

G_BEGIN_DECLS

#define QUARK_TYPE_CALIBRATION (quark_calibration_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkCalibration, quark_calibration, QUARK, CALIBRATION, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkCalibration * quark_calibration_new          (void);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_observe      (QuarkCalibration  *self,
                                                   const char        *layer_name,
                                                   QuarkRole          role,
                                                   QuarkTensor       *activation,
                                                   GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_min_max  (QuarkCalibration  *self,
                                                   const char        *layer_name,
                                                   QuarkRole          role,
                                                   float             *min,
                                                   float             *max);
QUARK_AVAILABLE_IN_1_0
guint64            quark_calibration_get_n_batches (QuarkCalibration *self,
                                                   const char        *layer_name,
                                                   QuarkRole          role);

G_END_DECLS
