/* quark-gptq-private.h: what GPTQ shares with the algorithms like it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean _quark_gptq_column_order (const double *g,
                                   gsize         n,
                                   gboolean      desc,
                                   gsize        *perm);

G_END_DECLS
