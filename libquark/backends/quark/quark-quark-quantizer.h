/* quark-quark-quantizer.h: the quark backend's quantizer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark/quark-kernels.h>

G_BEGIN_DECLS

#define QUARK_TYPE_QUARK_QUANTIZER (quark_quark_quantizer_get_type ())
G_DECLARE_FINAL_TYPE (QuarkQuarkQuantizer, quark_quark_quantizer, QUARK, QUARK_QUANTIZER, GObject)

/* AMD Quark's integer parameters (numerics reference, section 2). */
void quark_quark_int_params (float                 min_val,
                             float                 max_val,
                             gboolean              symmetric,
                             int32_t               qmin,
                             int32_t               qmax,
                             QuarkKernelIntParams *params);

/* The spec of a weight tensor's layer (NULL: not quantized) */
QuarkTensorSpec *quark_quark_quantizer_weight_spec (QuarkQuarkQuantizer *self,
                                                    QuarkTensor         *tensor);
/* @weight quantized with @spec by round-to-nearest and dequantized again:
 * float32, shaped like @weight */
QuarkTensor *    quark_quark_quantizer_round_weight (QuarkQuarkQuantizer *self,
                                                     QuarkTensor         *weight,
                                                     QuarkTensorSpec     *spec,
                                                     QuarkDType           scale_dtype,
                                                     GError             **error);

G_END_DECLS
