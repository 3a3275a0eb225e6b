/* quark-format-private.h: what the built-in checkpoint formats share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-checkpoint-format.h"
#include "quark-error.h"
#include "quark-buffer.h"
#include "quark-dtype.h"

G_BEGIN_DECLS

/* the built-in formats, registered by the registry */
GType         _quark_format_quark_get_type              (void);
GType         _quark_format_compressed_tensors_get_type (void);
GType         _quark_format_awq_get_type                (void);
GType         _quark_format_fp8_get_type                (void);
GType         _quark_format_gguf_get_type               (void);

/* a tensor over @data (taken, @size bytes) */
QuarkTensor * _quark_format_new_tensor  (const char *name, QuarkDType dtype, const gint64 *shape, guint n_dims,
                                         gpointer data, gsize size, GError **error);
/* adds @tensor (taken; NULL fails) to @out */
gboolean      _quark_format_add_owned   (QuarkModel *out, QuarkTensor *tensor, GError **error);
/* @t under another name (shares its data) */
QuarkTensor * _quark_format_renamed     (QuarkTensor *t, const char *name, GError **error);
/* [rows, cols] bytes to [cols, rows] */
gint8 *       _quark_format_transpose_codes  (const gint8 *codes, gsize rows, gsize cols);
/* A logical integer tensor's codes (or zero points) plus @offset, one int8
 * each (g_free() it). */
gint8 *       _quark_format_codes_as_int8    (QuarkTensor *t, gint32 offset, gsize *n, GError **error);
/* The float values of a [rows, cols] tensor as [cols, rows], in a buffer of
 * quark_buffer_alloc() (give it back with quark_buffer_free(), or hand it
 * to _quark_format_new_tensor()) */
float *       _quark_format_transposed_floats (QuarkTensor *t, gsize rows, gsize cols, GError **error);
gboolean      _quark_format_need_multiple (const char *format, const char *name, gsize value, gsize multiple,
                                           const char *what, GError **error);
/* Whether a weight of @shape quantized with @spec can be stored as int4
 * words along its output channels (QUARK_CODE_LAYOUT_INT4_COLUMNS*): int4
 * or uint4 per group, 2-D, output channels a multiple of 8 */
gboolean      _quark_format_int4_columns_fit (QuarkTensorSpec *spec, const gint64 *shape, guint n_dims);
/* The rows and columns of the 2-D int4 weight @codes handed to
 * write_weight, and in *@packed whether it came as the words of that
 * layout ([cols, rows / 8] int32); such words must belong to a per-group
 * @spec whose @scale has their rows, else an error naming tensor @name. */
gboolean      _quark_format_int4_codes_shape (const char *format, const char *name, QuarkTensor *codes,
                                              QuarkTensor *scale, QuarkTensorSpec *spec, gboolean *packed,
                                              gsize *rows, gsize *cols, GError **error);

/* LAYER of LAYER.weight (a copy of @weight_name without the suffix) */
char *        _quark_format_layer_of (const char *weight_name);
/* the layers of type Linear noted without a weight spec (left in float) */
JsonArray *   _quark_format_unquantized_linears (QuarkCheckpointFormat *format);
/* a node holding @object (taken) */
JsonNode *    _quark_format_take_object (JsonObject *object);
/* QUARK_ERROR_UNSUPPORTED_SCHEME: "WHAT NAME: DETAIL cannot be written in the FORMAT format" */
gboolean      _quark_format_unsupported (GError **error, const char *format, const char *what, const char *name,
                                         const char *detail);

/* the checkpoint's quantization_config object (transfer none), or NULL with
 * QUARK_ERROR_INVALID_FILE */
JsonObject *  _quark_format_quantization_config (QuarkModel *checkpoint, GError **error);

/* q/k/v and gate/up (which engines fuse) share one scheme, or an error */
gboolean      _quark_format_check_fused (QuarkCheckpointFormat *format, const char *format_name, GError **error);

QuarkTensor * _quark_format_fake_quantize_input (QuarkCheckpointFormat *self, QuarkTensorSpec *spec, QuarkTensor *x,
                                                 QuarkTensor *scale, QuarkTensor *zero_point, GError **error);

G_END_DECLS
