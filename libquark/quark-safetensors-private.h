/* quark-safetensors-private.h: the safetensors reader's checks, shared
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Checks @contents by every rule of quark_model_new_from_safetensors_bytes()
 * (same errors) and appends its tensors' names, in header order, to @names
 * (g_strdup()ed), without making the tensors: the checkpoint writer's
 * read-back of what it wrote. */
gboolean _quark_safetensors_read_names (GBytes      *contents,
                                        const char  *source,
                                        GPtrArray   *names,
                                        GError     **error);

G_END_DECLS
