/* quark-awq.h: AWQ, activation-aware scaling and clipping of weights
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

/**
 * QuarkAwqRoundFunc:
 * @weight: a float32 weight [rows, columns]
 * @user_data: the data given with the function
 * @error: return location for a #GError
 *
 * Quantizes @weight as the layer's weight will be (round-to-nearest with
 * its spec) and gives it back dequantized.
 *
 * Returns: (transfer full): a float tensor shaped like @weight, or %NULL
 *   with @error set
 */
typedef QuarkTensor * (*QuarkAwqRoundFunc) (QuarkTensor  *weight,
                                            gpointer      user_data,
                                            GError      **error);

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_awq_search_scale (QuarkTensor       **weights,
                                      guint               n_weights,
                                      QuarkTensor        *gram,
                                      QuarkTensor        *mean_abs,
                                      guint               n_grid,
                                      QuarkAwqRoundFunc   round_func,
                                      gpointer            user_data,
                                      double             *best_ratio,
                                      GError            **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_awq_search_clip  (QuarkTensor        *weight,
                                      guint               group_size,
                                      QuarkTensor        *gram,
                                      guint               n_grid,
                                      double              max_shrink,
                                      QuarkAwqRoundFunc   round_func,
                                      gpointer            user_data,
                                      GError            **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_awq_fold         (QuarkTensor        *tensor,
                                      QuarkTensor        *column_scale,
                                      QuarkTensor        *row_divisor,
                                      QuarkTensor        *clip,
                                      GError            **error);
QUARK_AVAILABLE_IN_1_0
double        quark_awq_output_error (QuarkTensor        *weight,
                                      QuarkTensor        *approximation,
                                      QuarkTensor        *gram,
                                      GError            **error);

G_END_DECLS
