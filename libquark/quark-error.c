/* quark-error.c: error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-error.h"

G_DEFINE_QUARK (quark-error-quark, quark_error)
G_DEFINE_QUARK (quark-config-error-quark, quark_config_error)
G_DEFINE_QUARK (quark-backend-error-quark, quark_backend_error)
