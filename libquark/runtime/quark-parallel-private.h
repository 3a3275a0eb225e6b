/* quark-parallel-private.h: a fork-join pool of threads for the runtime
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _QuarkParallel QuarkParallel;

/* Runs items [begin, end) of a job; @worker is 0 … n_threads − 1 */
typedef void (*QuarkRangeFunc) (gpointer data, gsize begin, gsize end, guint worker);

QuarkParallel * _quark_parallel_new       (guint           n_threads);
void            _quark_parallel_free      (QuarkParallel  *pool);
guint           _quark_parallel_get_threads (QuarkParallel *pool);
void            _quark_parallel_run       (QuarkParallel  *pool,
                                           gsize           n_items,
                                           QuarkRangeFunc  func,
                                           gpointer        data);

G_END_DECLS
