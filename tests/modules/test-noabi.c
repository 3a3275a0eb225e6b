/* A module that never declares its ABI; uses the generic entry point name. */
#include "test-backend.h"

QUARK_BACKEND_EXPORT gboolean quark_backend_module_register (QuarkBackendModule *module, GError **error);

gboolean
quark_backend_module_register (QuarkBackendModule *module, GError **error)
{
  g_autoptr(QuarkBackend) backend = quark_backend_new ("test-noabi", TEST_TYPE_CONFIG, TEST_TYPE_QUANTIZER);
  return quark_backend_module_add_backend (module, backend, error);
}
