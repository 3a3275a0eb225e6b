/* A module that registers a backend name already taken by the quark backend. */
#include "test-backend.h"

QUARK_BACKEND_EXPORT gboolean quark_test_duplicate_register (QuarkBackendModule *module, GError **error);

gboolean
quark_test_duplicate_register (QuarkBackendModule *module, GError **error)
{
  g_autoptr(QuarkBackend) backend = NULL;

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;
  backend = quark_backend_new ("quark", TEST_TYPE_CONFIG, TEST_TYPE_QUANTIZER);
  return quark_backend_module_add_backend (module, backend, error);
}
