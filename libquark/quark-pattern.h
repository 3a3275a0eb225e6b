/* quark-pattern.h: layer name patterns
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
gboolean quark_pattern_validate (const char  *pattern,
                                 GError     **error);
QUARK_AVAILABLE_IN_1_0
gboolean quark_pattern_match    (const char  *pattern,
                                 const char  *name);
QUARK_AVAILABLE_IN_1_0
gboolean quark_pattern_match_any (const char * const *patterns,
                                  const char         *name);

G_END_DECLS
