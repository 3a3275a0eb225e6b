/* fuzz-json.c: libquark's strict JSON scanner (RFC 8259, duplicate keys,
 * nesting limit, line:column positions), and the tree it builds against
 * json-glib's parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GError) error = NULL;

  fuzz_set_up ();
  /* with an explicit length: embedded NULs are the scanner's to reject */
  node = quark_json_parse ((const char *) data, (gssize) size, "fuzz.json", &error);
  g_assert ((node == NULL) != (error == NULL));
  if (node)
    {
      /* what was accepted serialises and parses back */
      g_autofree char *text = quark_json_to_string (node, FALSE);
      g_autoptr(JsonNode) again = quark_json_parse (text, -1, "fuzz.json", NULL);
      g_assert (again != NULL);
      g_assert (json_node_equal (node, again));

      /* the tree the scanner builds is json-glib's parser's, value for
       * value and type for type (an int64 stays apart from a double in the
       * serialisation), on every text the scanner accepts */
      {
        g_autoptr(JsonParser) parser = json_parser_new_immutable ();
        g_autofree char *theirs = NULL;
        g_assert (json_parser_load_from_data (parser, (const char *) data, (gssize) size, NULL));
        theirs = quark_json_to_string (json_parser_get_root (parser), FALSE);
        g_assert_cmpstr (text, ==, theirs);
      }
    }
  return 0;
}
