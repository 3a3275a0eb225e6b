/* quark-error.c: error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-error.h"

/**
 * quark_error_quark:
 *
 * Gets the %QUARK_ERROR error domain.
 *
 * Returns: the error domain
 */
G_DEFINE_QUARK (quark-error-quark, quark_error)

/**
 * quark_config_error_quark:
 *
 * Gets the %QUARK_CONFIG_ERROR error domain.
 *
 * Returns: the error domain
 */
G_DEFINE_QUARK (quark-config-error-quark, quark_config_error)

/**
 * quark_backend_error_quark:
 *
 * Gets the %QUARK_BACKEND_ERROR error domain.
 *
 * Returns: the error domain
 */
G_DEFINE_QUARK (quark-backend-error-quark, quark_backend_error)
