/* A module whose entry point fails. */
#include "test-backend.h"

QUARK_BACKEND_EXPORT gboolean quark_test_fails_register (QuarkBackendModule *module, GError **error);

gboolean
quark_test_fails_register (QuarkBackendModule *module, GError **error)
{
  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;
  g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_LOAD_FAILED, "deliberately broken");
  return FALSE;
}
