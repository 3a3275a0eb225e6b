/* quark-backend-module.h: a loadable backend module
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-backend.h"

G_BEGIN_DECLS

/**
 * QUARK_BACKEND_EXPORT:
 *
 * Marks the entry point of a backend module as exported, whatever the
 * module's default symbol visibility.
 */
#define QUARK_BACKEND_EXPORT G_MODULE_EXPORT

#define QUARK_TYPE_BACKEND_MODULE (quark_backend_module_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkBackendModule, quark_backend_module, QUARK, BACKEND_MODULE, GTypeModule)

/**
 * QuarkBackendModuleRegisterFunc:
 * @module: the module being loaded
 * @error: return location for a #GError
 *
 * The entry point of a backend module. A module file `libquark-backend-foo.so`
 * exports `quark_backend_foo_register` (its file name without `lib` and the
 * suffix, `-` replaced by `_`, plus `_register`) or the generic
 * `quark_backend_module_register`. The entry point first calls
 * quark_backend_module_check_abi() with %QUARK_BACKEND_ABI_VERSION, then
 * registers its types (statically, or in @module with the
 * `G_DEFINE_DYNAMIC_TYPE` macros) and adds one or more backends with
 * quark_backend_module_add_backend().
 *
 * ```c
 * QUARK_BACKEND_EXPORT gboolean
 * quark_backend_foo_register (QuarkBackendModule *module, GError **error)
 * {
 *   g_autoptr(QuarkBackend) backend = NULL;
 *
 *   if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
 *     return FALSE;
 *   backend = quark_backend_new ("foo", FOO_TYPE_CONFIG, FOO_TYPE_QUANTIZER);
 *   quark_backend_set_description (backend, "Foo quantization");
 *   return quark_backend_module_add_backend (module, backend, error);
 * }
 * ```
 *
 * Returns: %TRUE if the module registered its backends
 */
typedef gboolean (*QuarkBackendModuleRegisterFunc) (QuarkBackendModule  *module,
                                                    GError             **error);

QUARK_AVAILABLE_IN_1_0
gboolean      quark_backend_module_check_abi    (QuarkBackendModule  *self,
                                                 guint                abi_version,
                                                 GError             **error);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_backend_module_add_backend  (QuarkBackendModule  *self,
                                                 QuarkBackend        *backend,
                                                 GError             **error);
QUARK_AVAILABLE_IN_1_0
const char *  quark_backend_module_get_path     (QuarkBackendModule  *self);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_backend_module_is_loaded    (QuarkBackendModule  *self);
QUARK_AVAILABLE_IN_1_0
const GError *quark_backend_module_get_error    (QuarkBackendModule  *self);
QUARK_AVAILABLE_IN_1_0
guint         quark_backend_module_get_abi_version (QuarkBackendModule *self);
QUARK_AVAILABLE_IN_1_0
GPtrArray *   quark_backend_module_get_backends (QuarkBackendModule  *self);

G_END_DECLS
