/* quark-registry-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-registry.h"

G_BEGIN_DECLS

/* The installed backend directory, ${libdir}/quark-1.0/backends. */
const char *_quark_registry_get_system_dir (void);

G_END_DECLS
