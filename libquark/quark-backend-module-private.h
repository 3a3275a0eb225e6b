/* quark-backend-module-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-backend-module.h"

G_BEGIN_DECLS

QuarkBackendModule *_quark_backend_module_new  (const char          *path);
gboolean            _quark_backend_module_load (QuarkBackendModule  *self);
char *              _quark_backend_module_entry_name (const char    *path);
void                _quark_backend_module_take_error (QuarkBackendModule *self,
                                                      GError             *error);

G_END_DECLS
