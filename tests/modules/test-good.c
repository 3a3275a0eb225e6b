/* A well-formed module registering the "test-good" backend. */
#include "test-backend.h"

QUARK_BACKEND_EXPORT gboolean quark_test_good_register (QuarkBackendModule *module, GError **error);

gboolean
quark_test_good_register (QuarkBackendModule *module, GError **error)
{
  g_autoptr(QuarkBackend) backend = NULL;

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;
  backend = quark_backend_new ("test-good", TEST_TYPE_CONFIG, TEST_TYPE_QUANTIZER);
  quark_backend_set_description (backend, "Registry test backend");
  quark_backend_set_version (backend, "9.9");
  quark_backend_add_supported_dtype (backend, QUARK_DTYPE_I8);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_TENSOR);
  return quark_backend_module_add_backend (module, backend, error);
}
