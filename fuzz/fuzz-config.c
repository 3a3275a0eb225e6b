/* fuzz-config.c: the JSON config loader of every in-tree backend, through
 * the registry (the "backend" key picks it), then validation and the
 * round trip through to_json
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  QuarkRegistry *registry;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(GError) error = NULL;

  fuzz_set_up ();
  registry = quark_registry_get_default ();
  config = quark_registry_config_from_string (registry, (const char *) data, (gssize) size, &error);
  g_assert ((config == NULL) != (error == NULL));
  if (config && quark_quantization_config_validate (config, &error))
    {
      g_autoptr(JsonNode) json = quark_quantization_config_to_json (config);
      g_autofree char *text = quark_json_to_string (json, FALSE);
      g_autoptr(QuarkQuantizationConfig) again = NULL;
      g_autoptr(GError) again_error = NULL;
      g_autoptr(QuarkModelQuantizer) quantizer = NULL;

      /* a valid config's own JSON loads again */
      again = quark_registry_config_from_string (registry, text, -1, &again_error);
      if (again == NULL)
        g_error ("config does not load its own JSON: %s\n%s", again_error->message, text);
      quantizer = quark_registry_new_quantizer (registry, config, NULL);
    }
  return 0;
}
