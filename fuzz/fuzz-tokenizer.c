/* fuzz-tokenizer.c: tokenizer.json read from bytes, then a text encoded
 * and decoded with it. The input is the tokenizer's JSON, a NUL byte, and
 * the text (any bytes: invalid UTF-8 must be an error, not a crash).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const uint8_t *nul = memchr (data, '\0', size);
  gsize json_size = nul ? (gsize) (nul - data) : size;
  const char *text = nul ? (const char *) nul + 1 : "";
  gsize text_size = nul ? size - json_size - 1 : 0;
  g_autoptr(GBytes) json = NULL;
  g_autoptr(QuarkTokenizer) tokenizer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint32 *ids = NULL;
  g_autofree char *decoded = NULL;
  gsize n_ids = 0;

  fuzz_set_up ();
  json = g_bytes_new (data, json_size);
  tokenizer = quark_tokenizer_new_from_bytes (json, NULL, "fuzz.json", &error);
  g_assert ((tokenizer == NULL) != (error == NULL));
  if (tokenizer == NULL)
    return 0;
  ids = quark_tokenizer_encode (tokenizer, text, (gssize) text_size, TRUE, &n_ids, &error);
  g_assert ((ids == NULL) != (error == NULL));
  if (ids == NULL)
    {
      /* only text that is not UTF-8 (or holds NUL) is refused */
      g_assert (!g_utf8_validate_len (text, text_size, NULL) || memchr (text, '\0', text_size) != NULL);
      return 0;
    }
  for (gsize i = 0; i < n_ids; i++)
    g_assert (quark_tokenizer_id_to_token (tokenizer, ids[i]) != NULL);
  decoded = quark_tokenizer_decode (tokenizer, ids, n_ids, FALSE, &error);
  g_assert_no_error (error);
  g_assert (g_utf8_validate (decoded, -1, NULL));
  g_free (quark_tokenizer_decode (tokenizer, ids, n_ids, TRUE, NULL));
  return 0;
}
