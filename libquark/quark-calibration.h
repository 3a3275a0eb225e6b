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
#include "quark-model.h"
#include "quark-quantization-config.h"
#include "quark-tensor.h"
#include "quark-tensor-spec.h"

G_BEGIN_DECLS

#define QUARK_TYPE_CALIBRATION (quark_calibration_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkCalibration, quark_calibration, QUARK, CALIBRATION, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkCalibration * quark_calibration_new            (void);
QUARK_AVAILABLE_IN_1_0
QuarkCalibration * quark_calibration_new_for_config (QuarkQuantizationConfig *config,
                                                     QuarkModel              *model);
QUARK_AVAILABLE_IN_1_0
QuarkCalibration * quark_calibration_load           (const char        *filename,
                                                     GError           **error);
QUARK_AVAILABLE_IN_1_0
QuarkCalibration * quark_calibration_load_from_bytes (GBytes           *bytes,
                                                     const char        *source,
                                                     GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_save           (QuarkCalibration  *self,
                                                     const char        *filename,
                                                     GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_observe        (QuarkCalibration  *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     QuarkTensor       *activation,
                                                     GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_observe_floats (QuarkCalibration  *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     const float       *values,
                                                     gsize              n_values,
                                                     const gint64      *shape,
                                                     guint              n_dims,
                                                     GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_observe_floats_shared (QuarkCalibration   *self,
                                                            const char * const *layer_names,
                                                            QuarkRole           role,
                                                            const float        *values,
                                                            gsize               n_values,
                                                            const gint64       *shape,
                                                            guint               n_dims,
                                                            GError            **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_min_max    (QuarkCalibration  *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     float             *min,
                                                     float             *max);
QUARK_AVAILABLE_IN_1_0
guint64            quark_calibration_get_n_batches  (QuarkCalibration  *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role);
QUARK_AVAILABLE_IN_1_0
char **            quark_calibration_list_layers    (QuarkCalibration  *self,
                                                     QuarkRole          role);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_compute_range  (QuarkCalibration  *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     QuarkTensorSpec   *spec,
                                                     float             *min,
                                                     float             *max,
                                                     GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_batch_statistic (QuarkCalibration *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     float             *statistic,
                                                     float             *zero_point_statistic);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_batch_percentiles (QuarkCalibration *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     double            *percentile,
                                                     float             *abs_percentile,
                                                     float             *low,
                                                     float             *high,
                                                     float             *span,
                                                     float             *negative_low);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_channel_min_max (QuarkCalibration  *self,
                                                     const char        *layer_name,
                                                     QuarkRole          role,
                                                     int               *axis,
                                                     float            **mins,
                                                     float            **maxs,
                                                     gsize             *n_channels);

QUARK_AVAILABLE_IN_1_0
void               quark_calibration_set_second_moments_enabled (QuarkCalibration *self,
                                                                 gboolean          enabled);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_second_moments_enabled (QuarkCalibration *self);
QUARK_AVAILABLE_IN_1_0
void               quark_calibration_set_gram_matrix_enabled (QuarkCalibration *self,
                                                              gboolean          enabled);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_gram_matrix_enabled (QuarkCalibration *self);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *      quark_calibration_get_second_moments (QuarkCalibration  *self,
                                                         const char        *layer_name,
                                                         guint64           *n_tokens,
                                                         QuarkTensor      **mean,
                                                         QuarkTensor      **mean_square,
                                                         QuarkTensor      **abs_max,
                                                         GError           **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *      quark_calibration_get_input_mean_abs (QuarkCalibration  *self,
                                                         const char        *layer_name,
                                                         GError           **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *      quark_calibration_get_input_mean     (QuarkCalibration  *self,
                                                         const char        *layer_name,
                                                         GError           **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *      quark_calibration_get_input_abs_max  (QuarkCalibration  *self,
                                                         const char        *layer_name,
                                                         GError           **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *      quark_calibration_get_input_sum_squares (QuarkCalibration  *self,
                                                            const char        *layer_name,
                                                            guint64           *n_tokens,
                                                            GError           **error);
QUARK_AVAILABLE_IN_1_0
void               quark_calibration_set_cross_moments_enabled (QuarkCalibration *self,
                                                                gboolean          enabled);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_get_cross_moments_enabled (QuarkCalibration *self);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_observe_cross      (QuarkCalibration   *self,
                                                         const char * const *layer_names,
                                                         QuarkTensor        *reference,
                                                         QuarkTensor        *input,
                                                         GError            **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *      quark_calibration_get_cross_moments  (QuarkCalibration  *self,
                                                         const char        *layer_name,
                                                         guint64           *n_tokens,
                                                         GError           **error);
QUARK_AVAILABLE_IN_1_0
gboolean           quark_calibration_merge_second_moments (QuarkCalibration *self,
                                                           QuarkCalibration *other,
                                                           GError          **error);

G_END_DECLS
