/* quark-pattern.c: layer name patterns
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-pattern.h"
#include "quark-error.h"

#include <string.h>

/**
 * SECTION:quark-pattern
 *
 * Layer name patterns, as AMD Quark configs use them in `exclude` and
 * `layer_quant_config`, in three forms:
 *
 * - `re:REGEX`: a Perl-compatible regular expression anchored at the start
 *   of the name (Python's `re.match`), for instance `re:.*\.mlp\.gate$`;
 * - a glob with `*` (any run of characters, dots included) and `?` (one
 *   character), for instance `*.k_proj`;
 * - an exact name, which also matches every submodule below it (`lm_head`
 *   matches `lm_head` and `lm_head.linear`), as Quark adds `pattern.*` to
 *   each exclude entry.
 */

static gboolean
is_glob (const char *pattern)
{
  return strpbrk (pattern, "*?") != NULL;
}

/**
 * quark_pattern_validate:
 * @pattern: a layer name pattern
 * @error: return location for a #GError
 *
 * Checks that a pattern is usable: not empty, and for `re:` patterns a
 * regular expression that compiles.
 *
 * Returns: %TRUE if the pattern is valid; %FALSE with
 *   %QUARK_CONFIG_ERROR_INVALID_VALUE otherwise
 */
gboolean
quark_pattern_validate (const char  *pattern,
                        GError     **error)
{
  g_return_val_if_fail (pattern != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (*pattern == '\0')
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "empty layer name pattern");
      return FALSE;
    }
  if (g_str_has_prefix (pattern, "re:"))
    {
      g_autoptr(GError) local_error = NULL;
      g_autoptr(GRegex) regex = g_regex_new (pattern + 3, G_REGEX_ANCHORED, 0, &local_error);
      if (regex == NULL)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "invalid regular expression \"%s\": %s", pattern + 3, local_error->message);
          return FALSE;
        }
    }
  return TRUE;
}

/**
 * quark_pattern_match:
 * @pattern: a layer name pattern
 * @name: a layer's full name
 *
 * Matches a layer name against a pattern (see the forms above). An invalid
 * `re:` pattern matches nothing.
 *
 * Returns: %TRUE if @name matches @pattern
 */
gboolean
quark_pattern_match (const char *pattern,
                     const char *name)
{
  gsize len;

  g_return_val_if_fail (pattern != NULL, FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  if (g_str_has_prefix (pattern, "re:"))
    {
      g_autoptr(GRegex) regex = g_regex_new (pattern + 3, G_REGEX_ANCHORED, 0, NULL);
      return regex != NULL && g_regex_match (regex, name, 0, NULL);
    }
  if (is_glob (pattern))
    return g_pattern_match_simple (pattern, name);

  len = strlen (pattern);
  return strncmp (pattern, name, len) == 0 && (name[len] == '\0' || name[len] == '.');
}

/**
 * quark_pattern_match_any:
 * @patterns: (array zero-terminated=1): layer name patterns
 * @name: a layer's full name
 *
 * Whether any of @patterns matches @name, as an `exclude` list does.
 *
 * Returns: %TRUE if one of @patterns matches @name
 */
gboolean
quark_pattern_match_any (const char * const *patterns,
                         const char         *name)
{
  g_return_val_if_fail (name != NULL, FALSE);

  for (guint i = 0; patterns && patterns[i]; i++)
    if (quark_pattern_match (patterns[i], name))
      return TRUE;
  return FALSE;
}
