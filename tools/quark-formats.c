/* quark-formats.c: `quark formats`, and reading any checkpoint format back
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-tool.h"

#include <string.h>

/* A quantized checkpoint back to float (the registry picks the format or
 * the backend), errors prefixed with its path */
QuarkModel *
tool_dequantize_checkpoint (QuarkModel *quantized, const char *path, GError **error)
{
  QuarkModel *restored = quark_registry_dequantize_checkpoint (quark_registry_get_default (), quantized, error);

  if (restored == NULL)
    g_prefix_error (error, "%s: ", path);
  return restored;
}

/* The registered format a checkpoint is in, or NULL. */
char *
tool_checkpoint_format_name (QuarkModel *model)
{
  g_autoptr(QuarkCheckpointFormat) format = NULL;

  format = quark_registry_format_for_model (quark_registry_get_default (), model);
  return format ? g_strdup (quark_checkpoint_format_get_name (format)) : NULL;
}

int
cmd_formats (int argc, char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  QuarkRegistry *registry = quark_registry_get_default ();
  g_auto(GStrv) names = NULL;
  g_autoptr(JsonBuilder) b = json_builder_new ();
  int status = 0;

  if (!parse_options ("formats", NULL,
                      "Lists the checkpoint formats quark quantize --export-format writes. A\n"
                      "format is independent of the backend's numerics: the quark backend writes\n"
                      "every one of them.",
                      entries, &argc, &argv, &status))
    return status;
  names = quark_registry_list_formats (registry);
  json_builder_begin_array (b);
  for (guint i = 0; names[i]; i++)
    {
      g_autoptr(QuarkCheckpointFormat) format = quark_registry_new_format (registry, names[i], NULL);
      const char *description = format ? quark_checkpoint_format_get_description (format) : "";
      if (!json)
        g_print ("%-20s %s\n", names[i], description);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, names[i]);
      json_builder_set_member_name (b, "description");
      json_builder_add_string_value (b, description);
      json_builder_set_member_name (b, "reads_back_without_backend");
      json_builder_add_boolean_value (b, format && quark_checkpoint_format_can_dequantize (format));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (b);
      print_json (root);
    }
  return 0;
}

/* `quark presets --export-format FORMAT`: the schemes (types) of a format
 * that quantizes with numerics of its own */
int
tool_list_format_schemes (const char *format_name, gboolean json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkCheckpointFormat) format = quark_registry_new_format (quark_registry_get_default (), format_name,
                                                                       &error);
  g_auto(GStrv) schemes = NULL;
  g_autoptr(JsonBuilder) b = json_builder_new ();

  if (format == NULL)
    return report_failure ("presets", error, json);
  schemes = quark_checkpoint_format_list_schemes (format);
  if (schemes[0] == NULL)
    {
      g_set_error (&error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the %s format writes the backends' presets (quark presets lists them); it has no types of its own",
                   format_name);
      return report_failure ("presets", error, json);
    }
  if (!json)
    g_print ("%s (quark quantize MODEL -o OUT --export-format %s --type TYPE)\n", format_name, format_name);
  json_builder_begin_array (b);
  for (guint i = 0; schemes[i]; i++)
    {
      g_autofree char *about = quark_checkpoint_format_describe_scheme (format, schemes[i]);
      if (!json)
        g_print ("  %-8s %s\n", schemes[i], about ? about : "");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, schemes[i]);
      json_builder_set_member_name (b, "description");
      json_builder_add_string_value (b, about ? about : "");
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (b);
      print_json (root);
    }
  return 0;
}
