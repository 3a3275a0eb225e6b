/* quark-tensor-spec.h: how one tensor is quantized
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-dtype.h"
#include "quark-enums.h"
#include "quark-tensor.h"

G_BEGIN_DECLS

#define QUARK_TYPE_TENSOR_SPEC (quark_tensor_spec_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkTensorSpec, quark_tensor_spec, QUARK, TENSOR_SPEC, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkTensorSpec * quark_tensor_spec_new             (QuarkDType        dtype,
                                                     QuarkQScheme      qscheme);
QUARK_AVAILABLE_IN_1_0
QuarkTensorSpec * quark_tensor_spec_copy            (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_equal           (QuarkTensorSpec  *a,
                                                     QuarkTensorSpec  *b);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_validate        (QuarkTensorSpec  *self,
                                                     const char       *path,
                                                     GError          **error);
QUARK_AVAILABLE_IN_1_0
QuarkDType        quark_tensor_spec_get_dtype       (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
QuarkQScheme      quark_tensor_spec_get_qscheme     (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
int               quark_tensor_spec_get_ch_axis     (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
int               quark_tensor_spec_get_group_size  (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_get_symmetric   (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_get_narrow_range (QuarkTensorSpec *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_get_is_dynamic  (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_has_static_scale (QuarkTensorSpec *self);
QUARK_AVAILABLE_IN_1_0
QuarkRoundMode    quark_tensor_spec_get_round_method (QuarkTensorSpec *self);
QUARK_AVAILABLE_IN_1_0
QuarkQuantOrder   quark_tensor_spec_get_quant_order (QuarkTensorSpec *self);
QUARK_AVAILABLE_IN_1_0
QuarkScaleType    quark_tensor_spec_get_scale_type  (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
QuarkScaleFormat  quark_tensor_spec_get_scale_format (QuarkTensorSpec *self);
QUARK_AVAILABLE_IN_1_0
QuarkMxScaleMode  quark_tensor_spec_get_scale_calculation_mode (QuarkTensorSpec *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_tensor_spec_get_block_size  (QuarkTensorSpec  *self,
                                                     int              *rows,
                                                     int              *cols);
QUARK_AVAILABLE_IN_1_0
QuarkObserver     quark_tensor_spec_get_observer    (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
double            quark_tensor_spec_get_percentile  (QuarkTensorSpec  *self);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *     quark_tensor_spec_dequantize      (QuarkTensorSpec  *self,
                                                     QuarkTensor      *codes,
                                                     QuarkTensor      *scale,
                                                     QuarkTensor      *zero_point,
                                                     GError          **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *     quark_tensor_spec_quantize        (QuarkTensorSpec  *self,
                                                     QuarkTensor      *x,
                                                     QuarkTensor      *scale,
                                                     QuarkTensor      *zero_point,
                                                     GError          **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *     quark_tensor_spec_fake_quantize   (QuarkTensorSpec  *self,
                                                     QuarkTensor      *x,
                                                     QuarkTensor      *scale,
                                                     QuarkTensor      *zero_point,
                                                     GError          **error);
QUARK_AVAILABLE_IN_1_0
char *            quark_tensor_spec_to_string       (QuarkTensorSpec  *self);

G_END_DECLS
