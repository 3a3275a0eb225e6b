/* quark-buffer.h: reusable buffers for tensor data
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib.h>

#include "quark-version-macros.h"

G_BEGIN_DECLS

QUARK_AVAILABLE_IN_1_0
gpointer quark_buffer_alloc    (gsize    size);
QUARK_AVAILABLE_IN_1_0
void     quark_buffer_free     (gpointer buffer);
QUARK_AVAILABLE_IN_1_0
GBytes * quark_buffer_to_bytes (gpointer buffer,
                                gsize    size);
QUARK_AVAILABLE_IN_1_0
void     quark_buffer_trim     (void);

G_END_DECLS
