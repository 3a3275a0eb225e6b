/* A module without a backend entry point. */
#include <gmodule.h>

G_MODULE_EXPORT int quark_test_noentry_something_else (void);

int
quark_test_noentry_something_else (void)
{
  return 42;
}
