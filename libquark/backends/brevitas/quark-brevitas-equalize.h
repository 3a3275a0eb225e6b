/* quark-brevitas-equalize.h: the brevitas backend's activation
 * equalization over a model (pre_quant_opt_config)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark.h>

G_BEGIN_DECLS

/* The key of the prepared model's metadata that says it was equalized;
 * the quantized model's metadata does not keep it */
#define BV_PREPARED_KEY "libquark_prepared"

gboolean     bv_model_is_equalized (QuarkModel        *model);
QuarkModel * bv_equalize_model     (QuarkModel        *model,
                                    QuarkCalibration  *calibration,
                                    double             alpha,
                                    JsonNode          *scaling_layers,
                                    const char        *decoder_layers,
                                    GCancellable      *cancellable,
                                    GError           **error);

G_END_DECLS
