/* A module built for another backend ABI. */
#include "test-backend.h"

QUARK_BACKEND_EXPORT gboolean quark_test_wrongabi_register (QuarkBackendModule *module, GError **error);

gboolean
quark_test_wrongabi_register (QuarkBackendModule *module, GError **error)
{
  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION + 1, error))
    return FALSE;
  g_error ("unreachable: the ABI check must fail");
}
