/* quark-gptq-private.h: what GPTQ shares with the algorithms like it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

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

G_END_DECLS
