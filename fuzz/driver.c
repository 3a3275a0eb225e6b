/* driver.c: replays fuzz inputs without libFuzzer
 *
 * Usage: fuzz-TARGET FILE_OR_DIRECTORY...
 * Runs LLVMFuzzerTestOneInput over each file (each file of a directory, in
 * name order) and prints TAP, one line per input. A crash, a leak under a
 * sanitizer or a fatal GLib log fails the test.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

#include <stdio.h>
#include <string.h>

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static void
collect (const char *path, GPtrArray *files)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    {
      g_ptr_array_add (files, g_strdup (path));
      return;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (files, g_build_filename (path, name, NULL));
}

int
main (int argc, char **argv)
{
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func (g_free);

  if (argc < 2)
    {
      fprintf (stderr, "usage: %s FILE_OR_DIRECTORY...\n", argv[0]);
      return 2;
    }
  for (int i = 1; i < argc; i++)
    collect (argv[i], files);
  g_ptr_array_sort (files, compare_names);
  if (files->len == 0)
    {
      printf ("1..0 # SKIP empty corpus\n");
      return 0;
    }
  printf ("1..%u\n", files->len);
  for (guint i = 0; i < files->len; i++)
    {
      const char *file = g_ptr_array_index (files, i);
      g_autofree char *contents = NULL;
      g_autoptr(GError) error = NULL;
      gsize size;

      if (!g_file_get_contents (file, &contents, &size, &error))
        {
          printf ("not ok %u - %s: %s\n", i + 1, file, error->message);
          continue;
        }
      LLVMFuzzerTestOneInput ((const uint8_t *) contents, size);
      printf ("ok %u - %s\n", i + 1, file);
      fflush (stdout);
    }
  return 0;
}
