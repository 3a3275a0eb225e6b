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

/**
 * QuarkGptqParamsFunc:
 * @values: (array length=n_values): one row's values of one group, as GPTQ
 *   has updated them
 * @n_values: their number
 * @scale: (out): return location for the group's scale
 * @zero_point: (out): return location for its zero point (0 for symmetric
 *   specs)
 * @user_data: the data given with the function
 *
 * Computes a group's quantization parameters as the backend's
 * round-to-nearest would from these values. Called from several threads
 * at once.
 */
typedef void (*QuarkGptqParamsFunc) (const float *values,
                                     gsize        n_values,
                                     float       *scale,
                                     float       *zero_point,
                                     gpointer     user_data);

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_gptq_quantize_dynamic (QuarkTensor          *weight,
                                           QuarkTensorSpec      *spec,
                                           QuarkTensor          *codes,
                                           QuarkTensor          *scale,
                                           QuarkTensor          *zero_point,
                                           QuarkTensor          *gram,
                                           double                damp_percent,
                                           guint                 block_size,
                                           QuarkGptqParamsFunc   params_func,
                                           gpointer              user_data,
                                           QuarkTensor         **new_scale,
                                           QuarkTensor         **new_zero_point,
                                           GError              **error);

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_gptq_quantize_act_order (QuarkTensor          *weight,
                                             QuarkTensorSpec      *spec,
                                             QuarkTensor          *codes,
                                             QuarkTensor          *scale,
                                             QuarkTensor          *zero_point,
                                             QuarkTensor          *gram,
                                             double                damp_percent,
                                             guint                 block_size,
                                             QuarkGptqParamsFunc   params_func,
                                             gpointer              user_data,
                                             QuarkTensor         **new_scale,
                                             QuarkTensor         **new_zero_point,
                                             QuarkTensor         **g_idx,
                                             GError              **error);

/**
 * QuarkGptqRoundFunc:
 * @values: rows [@first_row, @first_row + @n_values) of one column, as GPTQ
 *   has updated them
 * @n_values: their number
 * @column: the column's index in the weight's own order
 * @first_row: the row of @values[0]
 * @rounded: return location for the values the caller's quantizer
 *   dequantizes @values to, @n_values of them
 * @user_data: the data given with the function
 *
 * Rounds part of a column for quark_gptq_update_weight(). Called from
 * several threads at once, on disjoint rows.
 */
typedef void (*QuarkGptqRoundFunc) (const float *values,
                                    gsize        n_values,
                                    gsize        column,
                                    gsize        first_row,
                                    float       *rounded,
                                    gpointer     user_data);

QUARK_AVAILABLE_IN_1_0
gboolean      quark_gptq_update_weight (float               *weight,
                                        gsize                rows,
                                        gsize                cols,
                                        QuarkTensor         *gram,
                                        double               damp_percent,
                                        guint                block_size,
                                        gboolean             desc_act,
                                        QuarkGptqRoundFunc   round_func,
                                        gpointer             user_data,
                                        GError             **error);

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_gptq_refine_scales (QuarkTensor         *weight,
                                        QuarkTensorSpec     *spec,
                                        QuarkTensor         *codes,
                                        QuarkTensor         *scale,
                                        QuarkTensor         *zero_point,
                                        QuarkTensor         *gram,
                                        GError             **error);

QUARK_AVAILABLE_IN_1_0
QuarkTensor * quark_gptq_correct_weight (QuarkTensor        *weight,
                                         QuarkTensor        *gram,
                                         QuarkTensor        *cross,
                                         double              damp_percent,
                                         GError            **error);

G_END_DECLS
