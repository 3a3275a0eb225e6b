/* A module whose backend registers but cannot run. */
#include "test-backend.h"

QUARK_BACKEND_EXPORT gboolean quark_test_unavailable_register (QuarkBackendModule *module, GError **error);

static gboolean
never_available (QuarkBackend *backend, gpointer user_data, GError **error)
{
  g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_UNAVAILABLE, "needs a device this machine lacks");
  return FALSE;
}

gboolean
quark_test_unavailable_register (QuarkBackendModule *module, GError **error)
{
  g_autoptr(QuarkBackend) backend = NULL;

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;
  backend = quark_backend_new ("test-unavailable", TEST_TYPE_CONFIG, TEST_TYPE_QUANTIZER);
  quark_backend_set_available_func (backend, never_available, NULL);
  return quark_backend_module_add_backend (module, backend, error);
}
