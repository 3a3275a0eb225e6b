/* The ten-line C program: list libquark's backends.
 *   cc list-backends.c $(pkg-config --cflags --libs quark-1.0) -o list-backends */
#include <quark/quark.h>

int
main (void)
{
  g_autoptr(GPtrArray) backends = quark_registry_list_backends (quark_registry_get_default ());
  for (guint i = 0; i < backends->len; i++)
    g_print ("%s: %s\n", quark_backend_get_name (backends->pdata[i]),
             quark_backend_get_description (backends->pdata[i]));
  return backends->len > 0 ? 0 : 1;
}
