/* quark-gptq-private.h: what GPTQ shares with the algorithms like it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "quark-buffer.h"
#include "quark-tensor.h"
#include "runtime/quark-parallel-private.h"

G_BEGIN_DECLS

gboolean _quark_gptq_column_order (const double *g,
                                   gsize         n,
                                   gboolean      desc,
                                   gsize        *perm);

gboolean _quark_gptq_check_gram   (QuarkTensor  *gram,
                                   gsize         n,
                                   const char   *name,
                                   GError      **error);
void     _quark_gptq_run_rows     (gsize          n_rows,
                                   QuarkRangeFunc func,
                                   gpointer       data);
void     _quark_gptq_sub_outer    (float         *w,
                                   gsize          stride,
                                   gsize          rows,
                                   const float   *e,
                                   const float   *u,
                                   gsize          n);

/* Memory from the buffer pool (mapped in huge pages where the system
 * allows them): the factors, the working weights and the errors are
 * large, and layers of a model share a few shapes, so that the next
 * layer takes them again instead of faulting in fresh pages. @rows × @cols
 * elements of @size bytes, or %NULL (freed with quark_buffer_free()). */
gpointer _quark_gptq_pool_try_new (gsize          rows,
                                   gsize          cols,
                                   gsize          size);

typedef double PoolDoubles;
typedef float PoolFloats;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PoolDoubles, quark_buffer_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PoolFloats, quark_buffer_free)

G_END_DECLS
