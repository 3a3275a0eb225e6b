/* quark-importance-matrix.h: llama.cpp's importance matrices (imatrix)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "../../quark-version-macros.h"
#include "../../quark-model.h"
#include "../../quark-calibration.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
gboolean     quark_importance_matrix_save (QuarkCalibration   *calibration,
                                           QuarkModel         *model,
                                           const char         *path,
                                           const char         *dataset,
                                           guint               chunk_size,
                                           gboolean            overwrite,
                                           GError            **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel * quark_importance_matrix_new_from_calibration (QuarkCalibration *calibration,
                                                           QuarkModel       *model,
                                                           const char       *dataset,
                                                           guint             chunk_size,
                                                           GError          **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel * quark_importance_matrix_load (const char         *path,
                                           GError            **error);

G_END_DECLS
