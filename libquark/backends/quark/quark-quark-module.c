/* quark-quark-module.c: entry point of the quark backend module
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-quark-config.h"
#include "quark-quark-quantizer.h"

QUARK_BACKEND_EXPORT gboolean quark_backend_quark_register (QuarkBackendModule  *module,
                                                            GError             **error);

gboolean
quark_backend_quark_register (QuarkBackendModule  *module,
                              GError             **error)
{
  g_autoptr(QuarkBackend) backend = NULL;
  static const QuarkDType dtypes[] = {
    QUARK_DTYPE_I8, QUARK_DTYPE_U8, QUARK_DTYPE_I16, QUARK_DTYPE_U16,
    QUARK_DTYPE_INT2, QUARK_DTYPE_INT3, QUARK_DTYPE_INT4, QUARK_DTYPE_INT5,
    QUARK_DTYPE_INT6, QUARK_DTYPE_INT7,
    QUARK_DTYPE_UINT2, QUARK_DTYPE_UINT3, QUARK_DTYPE_UINT4, QUARK_DTYPE_UINT5,
    QUARK_DTYPE_UINT6, QUARK_DTYPE_UINT7,
  };

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;

  backend = quark_backend_new ("quark", QUARK_TYPE_QUARK_CONFIG, QUARK_TYPE_QUARK_QUANTIZER);
  quark_backend_set_description (backend, "AMD Quark semantics: Quark's config model, scales and rounding");
  quark_backend_set_version (backend, QUARK_VERSION_S);
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    quark_backend_add_supported_dtype (backend, dtypes[i]);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_TENSOR);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_CHANNEL);
  return quark_backend_module_add_backend (module, backend, error);
}
