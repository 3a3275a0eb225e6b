/* quark-buffer-private.h: the buffer pool, for libquark itself
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gpointer _quark_buffer_try_alloc (gsize size);

G_END_DECLS
