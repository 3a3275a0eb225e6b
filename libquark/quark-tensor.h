/* quark-tensor.h: a named n-dimensional array
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-dtype.h"

G_BEGIN_DECLS

/**
 * QUARK_TENSOR_MAX_DIMS:
 *
 * The largest number of dimensions a #QuarkTensor may have.
 */
#define QUARK_TENSOR_MAX_DIMS 8

#define QUARK_TYPE_TENSOR (quark_tensor_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkTensor, quark_tensor, QUARK, TENSOR, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkTensor *  quark_tensor_new               (const char    *name,
                                               QuarkDType     dtype,
                                               const gint64  *shape,
                                               guint          n_dims,
                                               GBytes        *data,
                                               GError       **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *  quark_tensor_new_from_floats   (const char    *name,
                                               const gint64  *shape,
                                               guint          n_dims,
                                               const float   *values,
                                               gsize          n_values,
                                               GError       **error);
QUARK_AVAILABLE_IN_1_0
const char *   quark_tensor_get_name          (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
QuarkDType     quark_tensor_get_dtype         (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
guint          quark_tensor_get_n_dims        (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
const gint64 * quark_tensor_get_shape         (QuarkTensor   *self,
                                               guint         *n_dims);
QUARK_AVAILABLE_IN_1_0
gint64         quark_tensor_get_dim           (QuarkTensor   *self,
                                               int            axis);
QUARK_AVAILABLE_IN_1_0
guint64        quark_tensor_get_n_elements    (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
GBytes *       quark_tensor_get_data          (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
gconstpointer  quark_tensor_peek_data         (QuarkTensor   *self,
                                               gsize         *size);
QUARK_AVAILABLE_IN_1_0
float *        quark_tensor_to_floats         (QuarkTensor   *self,
                                               gsize         *n_values,
                                               GError       **error);
QUARK_AVAILABLE_IN_1_0
void           quark_tensor_release_mapped_pages (QuarkTensor *self);
QUARK_AVAILABLE_IN_1_0
gboolean       quark_tensor_is_mapped         (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
gboolean       quark_tensor_read_data         (QuarkTensor   *self,
                                               guint64        offset,
                                               gpointer       buffer,
                                               gsize          size,
                                               GError       **error);
QUARK_AVAILABLE_IN_1_0
char *         quark_tensor_format_shape      (QuarkTensor   *self);
QUARK_AVAILABLE_IN_1_0
const char *   quark_tensor_guess_layer_type  (QuarkTensor   *self);

G_END_DECLS
