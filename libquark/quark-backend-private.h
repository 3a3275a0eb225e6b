/* quark-backend-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-backend.h"

G_BEGIN_DECLS

void      _quark_backend_set_module_path (QuarkBackend  *self,
                                          const char    *path);
gboolean  _quark_backend_check_types     (QuarkBackend  *self,
                                          GError       **error);
void      _quark_backend_mark_registered (QuarkBackend  *self);

G_END_DECLS
