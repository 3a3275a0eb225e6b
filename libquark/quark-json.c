/* quark-json.c: the strict JSON loader
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-json.h"
#include "quark-json-private.h"
#include "quark-input-file-private.h"
#include "quark-error.h"
#include "quark-pattern.h"

#include <math.h>
#include <string.h>
#include <errno.h>

/**
 * SECTION:quark-json
 *
 * json-glib 1.6 parses more than JSON (comments, hexadecimal numbers, single
 * quotes, trailing text, silent wrap-around of large integers, infinities)
 * and its GObject mapping turns wrong content into warnings. libquark
 * therefore reads the text with its own scanner, which checks it against
 * RFC 8259 and builds the json-glib tree as it goes (the same nodes
 * json-glib's parser would make of valid JSON: integers as int64, other
 * numbers as doubles), and maps JSON members to properties with explicit
 * type and range checks. Every error names the source and the JSON path at
 * fault.
 */

/* ------------------------------------------------------------------------
 * Strict syntax check
 * ------------------------------------------------------------------------ */

/* One step of the JSON path to the value being scanned: a member's name,
 * or (@key NULL) an array element's index. The path is put together only
 * for an error message (scanner_path()): forming it for every value took
 * a fifth of the time of a large file. */
typedef struct {
  const char *key;
  guint index;
} PathStep;

typedef struct {
  const char *source;
  const char *p;
  const char *start;
  const char *end;
  guint depth;
  guint n_steps;                              /* at most depth */
  PathStep steps[QUARK_JSON_MAX_DEPTH + 1];
  GString *text;                              /* a string value, as it is decoded */
  const char *const *pruned;                  /* _quark_json_parse_pruned()'s */
  QuarkJsonSpan *spans;
  guint pruned_steps;                         /* at least the steps of the longest */
  GError **error;
} Scanner;

/* The JSON path of the value being scanned, as quark_json_path_join() and
 * quark_json_path_index() form it ("" at the root) */
static char *
scanner_path (Scanner *s)
{
  char *path = g_strdup ("");

  for (guint i = 0; i < s->n_steps; i++)
    {
      char *next = s->steps[i].key ? quark_json_path_join (path, s->steps[i].key)
                                   : quark_json_path_index (path, s->steps[i].index);
      g_free (path);
      path = next;
    }
  return path;
}

/* Which of the pruned paths the member being scanned is at, or -1 */
static int
pruned_at (Scanner *s)
{
  g_autofree char *path = NULL;

  if (G_LIKELY (s->pruned == NULL) || s->n_steps > s->pruned_steps)
    return -1;
  path = scanner_path (s);
  for (int i = 0; s->pruned[i]; i++)
    if (g_str_equal (path, s->pruned[i]))
      return i;
  return -1;
}

static void
scanner_position (Scanner *s,
                  const char *at,
                  guint *line,
                  guint *column)
{
  guint l = 1, c = 1;
  for (const char *q = s->start; q < at; q++)
    {
      if (*q == '\n')
        {
          l++;
          c = 1;
        }
      else if (((guchar) *q & 0xc0) != 0x80)
        c++;
    }
  *line = l;
  *column = c;
}

G_GNUC_PRINTF (4, 5)
static gboolean
scanner_fail (Scanner    *s,
              const char *at,
              int         code,
              const char *format,
              ...)
{
  va_list args;
  g_autofree char *msg = NULL;
  g_autofree char *path = NULL;
  guint line, column;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);

  scanner_position (s, at, &line, &column);
  if (code != QUARK_CONFIG_ERROR_PARSE)
    path = scanner_path (s);
  if (path == NULL || *path == '\0')
    g_set_error (s->error, QUARK_CONFIG_ERROR, code, "%s:%u:%u: %s",
                 s->source, line, column, msg);
  else
    g_set_error (s->error, QUARK_CONFIG_ERROR, code, "%s:%u:%u: %s: %s",
                 s->source, line, column, path, msg);
  return FALSE;
}

static void
skip_ws (Scanner *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static gboolean scan_value (Scanner *s, JsonNode **out);

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static gboolean
scan_hex4 (Scanner *s, guint *out)
{
  guint v = 0;
  if (s->end - s->p < 4)
    return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "truncated \\u escape");
  for (int i = 0; i < 4; i++)
    {
      int h = hex_value (s->p[i]);
      if (h < 0)
        return scanner_fail (s, s->p + i, QUARK_CONFIG_ERROR_PARSE, "invalid \\u escape");
      v = v * 16 + (guint) h;
    }
  s->p += 4;
  *out = v;
  return TRUE;
}

/* Scans a string starting at the opening quote. If @out is not NULL the
 * decoded content is appended to it. */
static gboolean
scan_string (Scanner *s, GString *out)
{
  const char *open = s->p;

  s->p++; /* opening quote */
  while (s->p < s->end)
    {
      guchar c = (guchar) *s->p;
      if (c >= 0x20 && c != '"' && c != '\\')
        {
          /* a run of characters as they are, appended at once */
          const char *run = s->p;
          while (s->p < s->end && (guchar) *s->p >= 0x20 && *s->p != '"' && *s->p != '\\')
            s->p++;
          if (out)
            g_string_append_len (out, run, s->p - run);
          continue;
        }
      if (c == '"')
        {
          s->p++;
          return TRUE;
        }
      if (c == '\\')
        {
          s->p++;
          if (s->p >= s->end)
            break;
          switch (*s->p)
            {
            case '"': case '\\': case '/':
              if (out) g_string_append_c (out, *s->p);
              s->p++;
              break;
            case 'b': if (out) g_string_append_c (out, '\b'); s->p++; break;
            case 'f': if (out) g_string_append_c (out, '\f'); s->p++; break;
            case 'n': if (out) g_string_append_c (out, '\n'); s->p++; break;
            case 'r': if (out) g_string_append_c (out, '\r'); s->p++; break;
            case 't': if (out) g_string_append_c (out, '\t'); s->p++; break;
            case 'u':
              {
                guint cp, lo;
                const char *esc = s->p - 1;
                s->p++;
                if (!scan_hex4 (s, &cp))
                  return FALSE;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                  return scanner_fail (s, esc, QUARK_CONFIG_ERROR_PARSE,
                                       "unpaired low surrogate in \\u escape");
                if (cp >= 0xd800 && cp <= 0xdbff)
                  {
                    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                      return scanner_fail (s, esc, QUARK_CONFIG_ERROR_PARSE,
                                           "unpaired high surrogate in \\u escape");
                    s->p += 2;
                    if (!scan_hex4 (s, &lo))
                      return FALSE;
                    if (lo < 0xdc00 || lo > 0xdfff)
                      return scanner_fail (s, esc, QUARK_CONFIG_ERROR_PARSE,
                                           "unpaired high surrogate in \\u escape");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                  }
                if (cp == 0)
                  return scanner_fail (s, esc, QUARK_CONFIG_ERROR_PARSE,
                                       "\\u0000 is not allowed in a string");
                if (out)
                  g_string_append_unichar (out, cp);
              }
              break;
            default:
              return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE,
                                   "invalid escape sequence \\%c", *s->p);
            }
          continue;
        }
      return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE,
                           "control character in a string (escape it)");
    }
  return scanner_fail (s, open, QUARK_CONFIG_ERROR_PARSE, "unterminated string");
}

/* Scans a number; with @out, sets *out to a new node holding it (an int64
 * for an integer, a double otherwise, as json-glib's parser makes them). */
static gboolean
scan_number (Scanner *s, JsonNode **out)
{
  const char *begin = s->p;
  gboolean is_integer = TRUE;

  if (*s->p == '-')
    s->p++;
  if (s->p >= s->end || !g_ascii_isdigit (*s->p))
    return scanner_fail (s, begin, QUARK_CONFIG_ERROR_PARSE, "invalid number");
  if (*s->p == '0')
    {
      s->p++;
      if (s->p < s->end && g_ascii_isdigit (*s->p))
        return scanner_fail (s, begin, QUARK_CONFIG_ERROR_PARSE,
                             "invalid number (leading zero)");
    }
  else
    while (s->p < s->end && g_ascii_isdigit (*s->p))
      s->p++;
  if (s->p < s->end && *s->p == '.')
    {
      is_integer = FALSE;
      s->p++;
      if (s->p >= s->end || !g_ascii_isdigit (*s->p))
        return scanner_fail (s, begin, QUARK_CONFIG_ERROR_PARSE,
                             "invalid number (digits must follow the decimal point)");
      while (s->p < s->end && g_ascii_isdigit (*s->p))
        s->p++;
    }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
    {
      is_integer = FALSE;
      s->p++;
      if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
        s->p++;
      if (s->p >= s->end || !g_ascii_isdigit (*s->p))
        return scanner_fail (s, begin, QUARK_CONFIG_ERROR_PARSE,
                             "invalid number (digits must follow the exponent)");
      while (s->p < s->end && g_ascii_isdigit (*s->p))
        s->p++;
    }

  /* an integer of at most 18 digits fits: read as it is */
  if (is_integer && s->p - begin - (*begin == '-') <= 18)
    {
      guint64 v = 0;
      for (const char *d = begin + (*begin == '-'); d < s->p; d++)
        v = v * 10 + (guint64) (*d - '0');
      if (out)
        *out = json_node_init_int (json_node_alloc (), *begin == '-' ? -(gint64) v : (gint64) v);
      return TRUE;
    }
  {
    char buf[64];
    g_autofree char *long_text = (gsize) (s->p - begin) < sizeof buf ? NULL : g_strndup (begin, s->p - begin);
    const char *text = long_text ? long_text : buf;
    if (long_text == NULL)
      {
        memcpy (buf, begin, s->p - begin);
        buf[s->p - begin] = '\0';
      }
    if (is_integer)
      {
        gint64 v;
        char *endp;
        errno = 0;
        v = g_ascii_strtoll (text, &endp, 10);
        if (errno == ERANGE)
          return scanner_fail (s, begin, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                               "integer %s does not fit in 64 bits", text);
        if (out)
          *out = json_node_init_int (json_node_alloc (), v);
      }
    else
      {
        double v = g_ascii_strtod (text, NULL);
        if (!isfinite (v))
          return scanner_fail (s, begin, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                               "number %s is too large for a double", text);
        if (out)
          *out = json_node_init_double (json_node_alloc (), v);
      }
  }
  return TRUE;
}

static gboolean
scan_literal (Scanner *s, const char *word, JsonNode **out)
{
  gsize len = strlen (word);
  if ((gsize) (s->end - s->p) < len || memcmp (s->p, word, len) != 0)
    return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "unexpected character '%c'", *s->p);
  s->p += len;
  if (out)
    *out = word[0] == 'n' ? json_node_init_null (json_node_alloc ())
                          : json_node_init_boolean (json_node_alloc (), word[0] == 't');
  return TRUE;
}

/* After a member or element: a ',' (not followed by @close) continues the
 * container, @close ends it (*closed = TRUE); anything else is an error. */
static gboolean
scan_separator (Scanner    *s,
                char        close,
                const char *container,
                gboolean   *closed)
{
  *closed = FALSE;
  skip_ws (s);
  if (s->p < s->end && *s->p == ',')
    {
      s->p++;
      skip_ws (s);
      if (s->p < s->end && *s->p == close)
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "trailing comma in %s", container);
      return TRUE;
    }
  if (s->p < s->end && *s->p == close)
    {
      s->p++;
      *closed = TRUE;
      return TRUE;
    }
  if (s->p >= s->end)
    return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "unexpected end of input in %s", container);
  return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "expected ',' or '%c' in %s", close, container);
}

/* With @out, the object is built as it is scanned: *out is set to a new
 * node holding it, only if the whole object is valid. */
static gboolean
scan_object (Scanner *s, JsonNode **out)
{
  g_autoptr(GHashTable) seen = NULL;
  g_autoptr(JsonObject) object = out ? json_object_new () : NULL;
  g_autoptr(GString) key = NULL;
  PathStep *step = &s->steps[s->n_steps];
  gboolean closed;
  int pruned;

  s->p++; /* { */
  skip_ws (s);
  if (s->p < s->end && *s->p == '}')
    {
      s->p++;
      if (out)
        *out = json_node_init_object (json_node_alloc (), object);
      return TRUE;
    }
  if (!out)
    seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  key = g_string_sized_new (32);
  s->n_steps++;   /* each member's name, in turn */
  for (;;)
    {
      JsonNode *value = NULL;
      const char *key_at;

      skip_ws (s);
      if (s->p >= s->end || *s->p != '"')
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE,
                             s->p >= s->end ? "unexpected end of input, expected a member name"
                                            : "expected a member name in double quotes");
      key_at = s->p;
      g_string_truncate (key, 0);
      if (!scan_string (s, key))
        return FALSE;
      *step = (PathStep) { key->str, 0 };

      /* (the object being built knows its members already) */
      if (out ? json_object_has_member (object, key->str) : g_hash_table_contains (seen, key->str))
        return scanner_fail (s, key_at, QUARK_CONFIG_ERROR_DUPLICATE_KEY,
                             "duplicate key");
      if (!out)
        g_hash_table_add (seen, g_strdup (key->str));

      skip_ws (s);
      if (s->p >= s->end || *s->p != ':')
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "expected ':' after a member name");
      s->p++;
      if (out && (pruned = pruned_at (s)) >= 0)
        {
          /* checked, left out of the tree, its text noted */
          const char *at;
          if (s->spans[pruned].length)
            return scanner_fail (s, key_at, QUARK_CONFIG_ERROR_DUPLICATE_KEY, "duplicate key");
          skip_ws (s);
          at = s->p;
          if (!scan_value (s, NULL))
            return FALSE;
          s->spans[pruned] = (QuarkJsonSpan) { at - s->start, s->p - at };
        }
      else if (!scan_value (s, out ? &value : NULL))
        return FALSE;
      else if (out)
        json_object_set_member (object, key->str, value);

      if (!scan_separator (s, '}', "an object", &closed))
        return FALSE;
      if (closed)
        {
          s->n_steps--;
          if (out)
            *out = json_node_init_object (json_node_alloc (), object);
          return TRUE;
        }
    }
}

static gboolean
scan_array (Scanner *s, JsonNode **out)
{
  g_autoptr(JsonArray) array = out ? json_array_new () : NULL;
  PathStep *step = &s->steps[s->n_steps];
  guint index = 0;
  gboolean closed;

  s->p++; /* [ */
  skip_ws (s);
  if (s->p < s->end && *s->p == ']')
    {
      s->p++;
      if (out)
        *out = json_node_init_array (json_node_alloc (), array);
      return TRUE;
    }
  s->n_steps++;   /* each element's index, in turn */
  for (;;)
    {
      JsonNode *value = NULL;
      *step = (PathStep) { NULL, index++ };
      if (!scan_value (s, out ? &value : NULL))
        return FALSE;
      if (out)
        json_array_add_element (array, value);
      if (!scan_separator (s, ']', "an array", &closed))
        return FALSE;
      if (closed)
        {
          s->n_steps--;
          if (out)
            *out = json_node_init_array (json_node_alloc (), array);
          return TRUE;
        }
    }
}

/* Scans one value; with @out (which must point to NULL), builds it too:
 * *out is a new node only if the value is valid. */
static gboolean
scan_value (Scanner *s, JsonNode **out)
{
  gboolean ok;

  skip_ws (s);
  if (s->p >= s->end)
    return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "unexpected end of input, expected a value");

  switch (*s->p)
    {
    case '{':
    case '[':
      if (++s->depth > QUARK_JSON_MAX_DEPTH)
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE,
                             "nesting deeper than %d levels", QUARK_JSON_MAX_DEPTH);
      ok = *s->p == '{' ? scan_object (s, out) : scan_array (s, out);
      s->depth--;
      return ok;
    case '"':
      if (out)
        {
          g_string_truncate (s->text, 0);
          if (!scan_string (s, s->text))
            return FALSE;
          *out = json_node_init_string (json_node_alloc (), s->text->str);
          return TRUE;
        }
      return scan_string (s, NULL);
    case 't':
      return scan_literal (s, "true", out);
    case 'f':
      return scan_literal (s, "false", out);
    case 'n':
      return scan_literal (s, "null", out);
    default:
      if (*s->p == '-' || g_ascii_isdigit (*s->p))
        return scan_number (s, out);
      if (*s->p == '/')
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "comments are not allowed in JSON");
      if (*s->p == '\'')
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "strings must use double quotes");
      if (g_ascii_isprint (*s->p))
        return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "unexpected character '%c'", *s->p);
      return scanner_fail (s, s->p, QUARK_CONFIG_ERROR_PARSE, "unexpected byte 0x%02x",
                           (guchar) *s->p);
    }
}

/* Sets up @s on @length bytes at @data */
static void
scanner_init (Scanner *s, const char *data, gsize length, const char *source, GString *text, GError **error)
{
  memset (s, 0, sizeof *s);
  s->source = source ? source : "<data>";
  s->p = s->start = data;
  s->end = data + length;
  s->text = text;
  s->error = error;
}

/* scanner_init(), then the checks that come before any scanning: valid
 * UTF-8 without NUL bytes, no byte order mark. */
static gboolean
scanner_start (Scanner *s, const char *data, gsize length, const char *source, GString *text, GError **error)
{
  const char *bad_utf8;

  scanner_init (s, data, length, source, text, error);
  if (!g_utf8_validate_len (data, length, &bad_utf8))
    {
      if (memchr (data, '\0', length) == bad_utf8)
        return scanner_fail (s, bad_utf8, QUARK_CONFIG_ERROR_PARSE, "NUL byte in the text");
      return scanner_fail (s, bad_utf8, QUARK_CONFIG_ERROR_PARSE, "invalid UTF-8");
    }
  if (length >= 3 && memcmp (data, "\xef\xbb\xbf", 3) == 0)
    return scanner_fail (s, data, QUARK_CONFIG_ERROR_PARSE, "byte order mark before the JSON text");
  return TRUE;
}

JsonNode *
_quark_json_parse_pruned (const char         *data,
                          gsize               length,
                          const char         *source,
                          const char *const  *pruned,
                          QuarkJsonSpan      *spans,
                          GError            **error)
{
  g_autoptr(GString) text = g_string_sized_new (64);
  JsonNode *root = NULL;
  Scanner s;

  if (!scanner_start (&s, data, length, source, text, error))
    return NULL;
  if (pruned)
    {
      s.pruned = pruned;
      s.spans = spans;
      for (guint i = 0; pruned[i]; i++)
        {
          guint steps = 1;
          for (const char *c = pruned[i]; *c; c++)
            steps += *c == '.' || *c == '[';
          s.pruned_steps = MAX (s.pruned_steps, steps);
          spans[i] = (QuarkJsonSpan) { 0, 0 };
        }
    }
  /* the strict scanner builds the tree as it checks the text: json-glib's
   * own parser would take more than JSON */
  if (!scan_value (&s, &root))
    return NULL;
  skip_ws (&s);
  if (s.p != s.end)
    {
      json_node_unref (root);
      scanner_fail (&s, s.p, QUARK_CONFIG_ERROR_PARSE, "trailing text after the JSON value");
      return NULL;
    }
  json_node_seal (root);
  return root;
}

/**
 * quark_json_parse:
 * @data: JSON text
 * @length: the length of @data in bytes, or -1 if it is nul-terminated
 * @source: (nullable): a name for the text in error messages, such as its
 *   file name; "<data>" if %NULL
 * @error: return location for a #GError
 *
 * Parses strict JSON (RFC 8259): UTF-8 text, one value, no comments, no
 * trailing commas, no single quotes, integers within 64 bits, numbers within
 * the range of a double, no duplicate object members, nesting at most
 * %QUARK_JSON_MAX_DEPTH deep.
 *
 * Errors are in the %QUARK_CONFIG_ERROR domain (%QUARK_CONFIG_ERROR_PARSE,
 * %QUARK_CONFIG_ERROR_OUT_OF_RANGE, %QUARK_CONFIG_ERROR_DUPLICATE_KEY) and
 * their messages start with `source:line:column:`.
 *
 * Returns: (transfer full): the root node, or %NULL on error
 */
JsonNode *
quark_json_parse (const char  *data,
                  gssize       length,
                  const char  *source,
                  GError     **error)
{
  g_return_val_if_fail (data != NULL || length == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (length < 0)
    length = strlen (data);
  return _quark_json_parse_pruned (data, (gsize) length, source, NULL, NULL, error);
}

/* The members of the object, or the elements of the array, at s->p (text
 * already checked), one at a time: each value built, sealed, handed to
 * @func (with the member's name, %NULL for an element) and freed */
static gboolean
scan_each (Scanner *s, QuarkJsonMemberFunc func, gpointer user_data, GError **error)
{
  g_autoptr(GString) key = g_string_sized_new (32);
  const char close = *s->p == '{' ? '}' : ']';
  PathStep *step = &s->steps[s->n_steps];
  guint index = 0;
  gboolean closed;

  s->p++;
  skip_ws (s);
  if (s->p < s->end && *s->p == close)
    return TRUE;
  s->depth++;
  s->n_steps++;
  for (;;)
    {
      g_autoptr(JsonNode) value = NULL;

      skip_ws (s);
      if (close == '}')
        {
          g_string_truncate (key, 0);
          if (!scan_string (s, key))
            return FALSE;
          skip_ws (s);
          s->p++; /* : */
          *step = (PathStep) { key->str, 0 };
        }
      else
        *step = (PathStep) { NULL, index++ };
      if (!scan_value (s, &value))
        return FALSE;
      json_node_seal (value);
      if (!func (close == '}' ? key->str : NULL, value, user_data, error))
        return FALSE;
      if (!scan_separator (s, close, close == '}' ? "an object" : "an array", &closed))
        return FALSE;
      if (closed)
        return TRUE;
    }
}

gboolean
_quark_json_each (const char           *data,
                  QuarkJsonSpan         span,
                  const char           *source,
                  QuarkJsonMemberFunc   func,
                  gpointer              user_data,
                  GError              **error)
{
  g_autoptr(GString) text = g_string_sized_new (64);
  Scanner s;

  if (span.length == 0)
    return TRUE;
  /* (the text was checked for UTF-8 with the rest: not again) */
  scanner_init (&s, data + span.offset, span.length, source, text, error);
  if (*s.p != '{' && *s.p != '[')
    return scanner_fail (&s, s.p, QUARK_CONFIG_ERROR_PARSE, "expected an object or an array");
  return scan_each (&s, func, user_data, error);
}

gboolean
_quark_json_parse_members (const char          *data,
                           gsize                length,
                           const char          *source,
                           QuarkJsonMemberFunc  func,
                           gpointer             user_data,
                           GError             **error)
{
  g_autoptr(GString) text = g_string_sized_new (64);
  Scanner s;

  if (!scanner_start (&s, data, length, source, text, error))
    return FALSE;
  /* first the whole text, so that a syntax error anywhere wins over what
   * @func says of a member before it */
  skip_ws (&s);
  if (s.p >= s.end || *s.p != '{')
    return scanner_fail (&s, s.p, QUARK_CONFIG_ERROR_PARSE, "expected a JSON object");
  if (!scan_value (&s, NULL))
    return FALSE;
  skip_ws (&s);
  if (s.p != s.end)
    return scanner_fail (&s, s.p, QUARK_CONFIG_ERROR_PARSE, "trailing text after the JSON value");

  /* then member by member, each value built, handed over and freed */
  s.p = s.start;
  skip_ws (&s);
  return scan_each (&s, func, user_data, error);
}

/* The shortest "%.Ng" form that reads back as the same double, always
 * with a '.' or an exponent so that it stays a double, and always valid
 * JSON (json-glib's generator writes 2e20 as "2e+20.0"). */
static void
append_double (GString *out, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (v))
    {
      /* JSON has no spelling for these; our parser never produces them */
      g_string_append (out, "null");
      return;
    }
  for (int digits = 15; digits <= 17; digits++)
    {
      g_ascii_formatd (buf, sizeof buf, digits == 15 ? "%.15g" : digits == 16 ? "%.16g" : "%.17g", v);
      if (g_ascii_strtod (buf, NULL) == v)
        break;
    }
  g_string_append (out, buf);
  if (strpbrk (buf, ".eE") == NULL)
    g_string_append (out, ".0");
}

void
_quark_json_append_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const guchar *p = (const guchar *) s; *p; p++)
    switch (*p)
      {
      case '"': g_string_append (out, "\\\""); break;
      case '\\': g_string_append (out, "\\\\"); break;
      case '\b': g_string_append (out, "\\b"); break;
      case '\f': g_string_append (out, "\\f"); break;
      case '\n': g_string_append (out, "\\n"); break;
      case '\r': g_string_append (out, "\\r"); break;
      case '\t': g_string_append (out, "\\t"); break;
      default:
        if (*p < 0x20)
          g_string_append_printf (out, "\\u%04x", *p);
        else
          g_string_append_c (out, (char) *p);
      }
  g_string_append_c (out, '"');
}

static void
append_newline (GString *out, gboolean pretty, guint depth)
{
  if (!pretty)
    return;
  g_string_append_c (out, '\n');
  for (guint i = 0; i < depth; i++)
    g_string_append (out, "  ");
}

/* Where append_node() writes: @out, handed to @func in pieces of about
 * SINK_PIECE bytes when there is a @func (and nothing more once it has
 * failed), else kept whole */
typedef struct
{
  GString *out;
  QuarkJsonWriteFunc func;
  gpointer user_data;
  gboolean failed;
} Sink;

#define SINK_PIECE (64 * 1024)

static void
sink_pass (Sink *sink, gsize at_least)
{
  if (sink->func == NULL || sink->out->len < at_least)
    return;
  if (!sink->failed && !sink->func (sink->out->str, sink->out->len, sink->user_data))
    sink->failed = TRUE;
  g_string_truncate (sink->out, 0);
}

static void
append_node (Sink *sink, JsonNode *node, gboolean pretty, guint depth)
{
  GString *out = sink->out;

  switch (JSON_NODE_TYPE (node))
    {
    case JSON_NODE_OBJECT:
      {
        JsonObject *object = json_node_get_object (node);
        g_autoptr(GList) members = json_object_get_members (object);
        g_string_append_c (out, '{');
        for (GList *l = members; l; l = l->next)
          {
            append_newline (out, pretty, depth + 1);
            _quark_json_append_string (out, l->data);
            g_string_append (out, pretty ? " : " : ":");   /* json-glib's spacing */
            append_node (sink, json_object_get_member (object, l->data), pretty, depth + 1);
            if (l->next)
              g_string_append_c (out, ',');
            sink_pass (sink, SINK_PIECE);
          }
        if (members)
          append_newline (out, pretty, depth);
        g_string_append_c (out, '}');
        break;
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *array = json_node_get_array (node);
        guint n = json_array_get_length (array);
        g_string_append_c (out, '[');
        for (guint i = 0; i < n; i++)
          {
            append_newline (out, pretty, depth + 1);
            append_node (sink, json_array_get_element (array, i), pretty, depth + 1);
            if (i + 1 < n)
              g_string_append_c (out, ',');
            sink_pass (sink, SINK_PIECE);
          }
        if (n)
          append_newline (out, pretty, depth);
        g_string_append_c (out, ']');
        break;
      }
    case JSON_NODE_NULL:
      g_string_append (out, "null");
      break;
    case JSON_NODE_VALUE:
      switch (json_node_get_value_type (node))
        {
        case G_TYPE_INT64:
          g_string_append_printf (out, "%" G_GINT64_FORMAT, json_node_get_int (node));
          break;
        case G_TYPE_DOUBLE:
          append_double (out, json_node_get_double (node));
          break;
        case G_TYPE_BOOLEAN:
          g_string_append (out, json_node_get_boolean (node) ? "true" : "false");
          break;
        case G_TYPE_STRING:
          _quark_json_append_string (out, json_node_get_string (node));
          break;
        default:
          g_string_append (out, "null");
          break;
        }
      break;
    default:
      g_string_append (out, "null");
      break;
    }
}

/**
 * quark_json_to_string:
 * @node: a JSON node
 * @pretty: whether to indent (two spaces per level, one member per line)
 *
 * Writes @node as RFC 8259 JSON that quark_json_parse() reads back to an
 * equal node: members in their order, integers as integers, doubles in the
 * shortest form that reads back exactly (always with a fraction or an
 * exponent), strings escaped, UTF-8 kept as is.
 *
 * Returns: (transfer full): the JSON text
 */
char *
quark_json_to_string (JsonNode *node,
                      gboolean  pretty)
{
  Sink sink = { g_string_new (NULL), NULL, NULL, FALSE };

  g_return_val_if_fail (node != NULL, NULL);

  append_node (&sink, node, pretty, 0);
  return g_string_free (sink.out, FALSE);
}

gboolean
_quark_json_write (JsonNode           *node,
                   gboolean            pretty,
                   QuarkJsonWriteFunc  func,
                   gpointer            user_data)
{
  Sink sink = { g_string_sized_new (SINK_PIECE + 4096), func, user_data, FALSE };

  append_node (&sink, node, pretty, 0);
  sink_pass (&sink, 1);
  g_string_free (sink.out, TRUE);
  return !sink.failed;
}

/**
 * quark_json_copy:
 * @node: a JSON node
 *
 * Copies @node and everything in it. json_node_copy() shares the objects
 * and arrays of the node it copies, so that changing a member of the copy
 * changes the original; metadata a quantizer extends (a model's
 * `config.json` gaining `quantization_config`) is copied with this
 * instead.
 *
 * Returns: (transfer full): an independent copy of @node
 */
JsonNode *
quark_json_copy (JsonNode *node)
{
  JsonNode *copy;

  g_return_val_if_fail (node != NULL, NULL);

  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObject *from = json_node_get_object (node), *to = json_object_new ();
      g_autoptr(GList) members = json_object_get_members (from);
      for (GList *l = members; l; l = l->next)
        json_object_set_member (to, l->data, quark_json_copy (json_object_get_member (from, l->data)));
      copy = json_node_init_object (json_node_alloc (), to);
      json_object_unref (to);
      return copy;
    }
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *from = json_node_get_array (node), *to = json_array_sized_new (json_array_get_length (from));
      for (guint i = 0; i < json_array_get_length (from); i++)
        json_array_add_element (to, quark_json_copy (json_array_get_element (from, i)));
      copy = json_node_init_array (json_node_alloc (), to);
      json_array_unref (to);
      return copy;
    }
  return json_node_copy (node);   /* values and null hold nothing shared */
}

/**
 * quark_json_parse_file:
 * @filename: (type filename): a file containing JSON
 * @error: return location for a #GError
 *
 * Reads @filename and parses it with quark_json_parse(); error messages start
 * with the file name. Only a regular file of at most 16 MiB is read: a
 * file that is missing, cannot be read or is not a regular file (a FIFO, a
 * device, a directory) gives %QUARK_ERROR_IO, a larger one
 * %QUARK_ERROR_INVALID_FILE.
 *
 * Returns: (transfer full): the root node, or %NULL on error
 */
JsonNode *
quark_json_parse_file (const char  *filename,
                       GError     **error)
{
  g_return_val_if_fail (filename != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return _quark_input_read_json (filename, QUARK_INPUT_MAX_CONFIG_SIZE, "a JSON config", error);
}

/**
 * quark_json_read_patterns:
 * @object: a JSON object
 * @key: the member holding a list of layer patterns, such as `exclude`
 * @out: (out) (transfer full): the patterns (empty when the member is
 *   absent or null)
 * @error: return location for a #GError
 *
 * Reads a list of layer-name patterns (quark_pattern_match()), checking
 * each one.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_CONFIG_ERROR_TYPE_MISMATCH
 *   or %QUARK_CONFIG_ERROR_INVALID_VALUE naming the element at fault
 */
gboolean
quark_json_read_patterns (JsonObject  *object,
                          const char  *key,
                          GStrv       *out,
                          GError     **error)
{
  JsonNode *node = json_object_get_member (object, key);
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  JsonArray *array;

  g_return_val_if_fail (object != NULL && key != NULL && out != NULL, FALSE);

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    {
      *out = g_strv_builder_end (builder);
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "%s: expected an array of strings", key);
      return FALSE;
    }
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      g_autofree char *path = quark_json_path_index (key, i);
      g_autoptr(GError) pattern_error = NULL;

      if (!JSON_NODE_HOLDS_VALUE (element) || json_node_get_value_type (element) != G_TYPE_STRING)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                       "%s: expected a string", path);
          return FALSE;
        }
      if (!quark_pattern_validate (json_node_get_string (element), &pattern_error))
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s: %s", path, pattern_error->message);
          return FALSE;
        }
      g_strv_builder_add (builder, json_node_get_string (element));
    }
  *out = g_strv_builder_end (builder);
  return TRUE;
}

/* ------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------ */

static gboolean
is_identifier (const char *s)
{
  if (!*s)
    return FALSE;
  for (; *s; s++)
    if (!(g_ascii_isalnum (*s) || *s == '_' || *s == '-'))
      return FALSE;
  return TRUE;
}

/**
 * quark_json_path_join:
 * @path: (nullable): the path of an object, "" or %NULL for the root
 * @member: a member name
 *
 * Forms the path of @member inside the object at @path, as used in error
 * messages: `weight` at the root, `global_quant_config.weight` below it, and
 * `layer_quant_config["*.k_proj"]` for names that are not plain identifiers.
 *
 * Returns: (transfer full): the path
 */
char *
quark_json_path_join (const char *path,
                      const char *member)
{
  g_autoptr(GString) s = g_string_new (path ? path : "");

  g_return_val_if_fail (member != NULL, NULL);

  if (is_identifier (member))
    {
      if (s->len)
        g_string_append_c (s, '.');
      g_string_append (s, member);
    }
  else
    {
      g_string_append (s, "[\"");
      for (const char *c = member; *c; c++)
        {
          if (*c == '"' || *c == '\\')
            g_string_append_c (s, '\\');
          g_string_append_c (s, *c);
        }
      g_string_append (s, "\"]");
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/**
 * quark_json_path_index:
 * @path: (nullable): the path of an array, "" or %NULL for the root
 * @index: an element index
 *
 * Forms the path of an array element, as `exclude[2]`.
 *
 * Returns: (transfer full): the path
 */
char *
quark_json_path_index (const char *path,
                       guint       index)
{
  return g_strdup_printf ("%s[%u]", path ? path : "", index);
}

static const char *
path_or_root (const char *path)
{
  return path && *path ? path : "(root)";
}

/* ------------------------------------------------------------------------
 * Members and properties
 * ------------------------------------------------------------------------ */

/**
 * quark_json_check_members:
 * @object: a JSON object
 * @path: (nullable): the path of @object, for messages
 * @allowed: (array zero-terminated=1): the member names @object may have
 * @error: return location for a #GError
 *
 * Checks that every member of @object is one of @allowed. Backends with
 * hand-written loaders call this first.
 *
 * Returns: %TRUE if every member is allowed; %FALSE with
 *   %QUARK_CONFIG_ERROR_UNKNOWN_KEY naming the first other member
 */
gboolean
quark_json_check_members (JsonObject          *object,
                          const char          *path,
                          const char * const  *allowed,
                          GError             **error)
{
  g_autoptr(GList) members = NULL;

  g_return_val_if_fail (object != NULL, FALSE);
  g_return_val_if_fail (allowed != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  members = json_object_get_members (object);
  for (GList *l = members; l; l = l->next)
    {
      if (!g_strv_contains (allowed, l->data))
        {
          g_autofree char *member_path = quark_json_path_join (path, l->data);
          g_autofree char *list = g_strjoinv (", ", (char **) allowed);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_UNKNOWN_KEY,
                       "%s: unknown key (expected one of: %s)", member_path, list);
          return FALSE;
        }
    }
  return TRUE;
}

static const char *
json_type_name (JsonNode *node)
{
  switch (JSON_NODE_TYPE (node))
    {
    case JSON_NODE_OBJECT: return "an object";
    case JSON_NODE_ARRAY: return "an array";
    case JSON_NODE_NULL: return "null";
    case JSON_NODE_VALUE:
    default:
      switch (json_node_get_value_type (node))
        {
        case G_TYPE_BOOLEAN: return "a boolean";
        case G_TYPE_INT64: return "an integer";
        case G_TYPE_DOUBLE: return "a number";
        case G_TYPE_STRING: return "a string";
        default: return "a value";
        }
    }
}

static char *
describe_int_range (gint64 min, gint64 max, gboolean is_unsigned, guint64 umax)
{
  if (is_unsigned)
    {
      if (min == 1 && umax >= G_MAXINT32)
        return g_strdup ("a positive integer");
      if (min == 0 && umax >= G_MAXINT32)
        return g_strdup ("a non-negative integer");
      return g_strdup_printf ("an integer from %" G_GINT64_FORMAT " to %" G_GUINT64_FORMAT,
                              min, umax);
    }
  if (min == 1 && max >= G_MAXINT32)
    return g_strdup ("a positive integer");
  if (min == 0 && max >= G_MAXINT32)
    return g_strdup ("a non-negative integer");
  if (min <= G_MININT32 && max >= G_MAXINT32)
    return g_strdup ("an integer");
  return g_strdup_printf ("an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, min, max);
}

static gboolean
type_error (GError **error, const char *path, const char *expected, JsonNode *node)
{
  g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
               "%s: expected %s, got %s", path_or_root (path), expected, json_type_name (node));
  return FALSE;
}

static gboolean
is_json_int (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64;
}

static gboolean
is_json_number (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node) &&
         (json_node_get_value_type (node) == G_TYPE_INT64 ||
          json_node_get_value_type (node) == G_TYPE_DOUBLE);
}

static gboolean
is_json_string (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING;
}

static gboolean
load_int (GParamSpec *pspec, JsonNode *node, const char *path, GValue *value, GError **error)
{
  gint64 min, max, v;
  guint64 umax = 0;
  gboolean is_unsigned = FALSE;
  g_autofree char *expected = NULL;
  GType t = G_PARAM_SPEC_VALUE_TYPE (pspec);

  if (t == G_TYPE_INT)
    min = G_PARAM_SPEC_INT (pspec)->minimum, max = G_PARAM_SPEC_INT (pspec)->maximum;
  else if (t == G_TYPE_INT64)
    min = G_PARAM_SPEC_INT64 (pspec)->minimum, max = G_PARAM_SPEC_INT64 (pspec)->maximum;
  else if (t == G_TYPE_LONG)
    min = G_PARAM_SPEC_LONG (pspec)->minimum, max = G_PARAM_SPEC_LONG (pspec)->maximum;
  else
    {
      is_unsigned = TRUE;
      if (t == G_TYPE_UINT)
        min = G_PARAM_SPEC_UINT (pspec)->minimum, umax = G_PARAM_SPEC_UINT (pspec)->maximum;
      else if (t == G_TYPE_UINT64)
        min = (gint64) MIN (G_PARAM_SPEC_UINT64 (pspec)->minimum, G_MAXINT64),
        umax = G_PARAM_SPEC_UINT64 (pspec)->maximum;
      else
        min = (gint64) G_PARAM_SPEC_ULONG (pspec)->minimum, umax = G_PARAM_SPEC_ULONG (pspec)->maximum;
      max = umax > G_MAXINT64 ? G_MAXINT64 : (gint64) umax;
    }

  expected = describe_int_range (min, max, is_unsigned, umax);
  if (!is_json_int (node))
    return type_error (error, path, expected, node);
  v = json_node_get_int (node);
  if (v < min || v > max)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                   "%s: expected %s, got %" G_GINT64_FORMAT, path_or_root (path), expected, v);
      return FALSE;
    }

  g_value_init (value, t);
  if (t == G_TYPE_INT) g_value_set_int (value, (int) v);
  else if (t == G_TYPE_INT64) g_value_set_int64 (value, v);
  else if (t == G_TYPE_LONG) g_value_set_long (value, (long) v);
  else if (t == G_TYPE_UINT) g_value_set_uint (value, (guint) v);
  else if (t == G_TYPE_UINT64) g_value_set_uint64 (value, (guint64) v);
  else g_value_set_ulong (value, (gulong) v);
  return TRUE;
}

static gboolean
load_double (GParamSpec *pspec, JsonNode *node, const char *path, GValue *value, GError **error)
{
  double min, max, v;
  GType t = G_PARAM_SPEC_VALUE_TYPE (pspec);

  if (t == G_TYPE_DOUBLE)
    min = G_PARAM_SPEC_DOUBLE (pspec)->minimum, max = G_PARAM_SPEC_DOUBLE (pspec)->maximum;
  else
    min = G_PARAM_SPEC_FLOAT (pspec)->minimum, max = G_PARAM_SPEC_FLOAT (pspec)->maximum;

  if (!is_json_number (node))
    return type_error (error, path, "a number", node);
  v = json_node_get_double (node);
  if (!(v >= min && v <= max))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                   "%s: expected a number from %g to %g, got %g", path_or_root (path), min, max, v);
      return FALSE;
    }
  g_value_init (value, t);
  if (t == G_TYPE_DOUBLE)
    g_value_set_double (value, v);
  else
    g_value_set_float (value, (float) v);
  return TRUE;
}

static char *
enum_nicks (GEnumClass *klass)
{
  g_autoptr(GString) s = g_string_new (NULL);
  for (guint i = 0; i < klass->n_values; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", klass->values[i].value_nick);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static gboolean
load_enum (GParamSpec *pspec, JsonNode *node, const char *path, GValue *value, GError **error)
{
  GEnumClass *klass = G_PARAM_SPEC_ENUM (pspec)->enum_class;
  GEnumValue *ev;

  if (!is_json_string (node))
    return type_error (error, path, "a string", node);
  ev = g_enum_get_value_by_nick (klass, json_node_get_string (node));
  if (ev == NULL)
    {
      g_autofree char *nicks = enum_nicks (klass);
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "%s: unknown value \"%s\" (expected one of: %s)",
                   path_or_root (path), json_node_get_string (node), nicks);
      return FALSE;
    }
  g_value_init (value, G_PARAM_SPEC_VALUE_TYPE (pspec));
  g_value_set_enum (value, ev->value);
  return TRUE;
}

static gboolean
load_flags (GParamSpec *pspec, JsonNode *node, const char *path, GValue *value, GError **error)
{
  GFlagsClass *klass = G_PARAM_SPEC_FLAGS (pspec)->flags_class;
  JsonArray *array;
  guint flags = 0;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return type_error (error, path, "an array of strings", node);
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      g_autofree char *element_path = quark_json_path_index (path, i);
      GFlagsValue *fv;

      if (!is_json_string (element))
        return type_error (error, element_path, "a string", element);
      fv = g_flags_get_value_by_nick (klass, json_node_get_string (element));
      if (fv == NULL)
        {
          g_autoptr(GString) nicks = g_string_new (NULL);
          for (guint k = 0; k < klass->n_values; k++)
            g_string_append_printf (nicks, "%s%s", k ? ", " : "", klass->values[k].value_nick);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s: unknown value \"%s\" (expected one of: %s)",
                       element_path, json_node_get_string (element), nicks->str);
          return FALSE;
        }
      flags |= fv->value;
    }
  g_value_init (value, G_PARAM_SPEC_VALUE_TYPE (pspec));
  g_value_set_flags (value, flags);
  return TRUE;
}

static gboolean
load_strv (JsonNode *node, const char *path, GValue *value, GError **error)
{
  g_autoptr(GStrvBuilder) builder = NULL;
  JsonArray *array;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return type_error (error, path, "an array of strings", node);
  builder = g_strv_builder_new ();
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      if (!is_json_string (element))
        {
          g_autofree char *element_path = quark_json_path_index (path, i);
          return type_error (error, element_path, "a string", element);
        }
      g_strv_builder_add (builder, json_node_get_string (element));
    }
  g_value_init (value, G_TYPE_STRV);
  g_value_take_boxed (value, g_strv_builder_end (builder));
  return TRUE;
}

/* An array of integers within 32 bits, as a GVariant "ai". */
static gboolean
load_int_array (JsonNode *node, const char *path, GValue *value, GError **error)
{
  g_autoptr(GVariantBuilder) builder = NULL;
  JsonArray *array;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return type_error (error, path, "an array of integers", node);
  builder = g_variant_builder_new (G_VARIANT_TYPE ("ai"));
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      g_autofree char *element_path = quark_json_path_index (path, i);
      gint64 v;

      if (!is_json_int (element))
        return type_error (error, element_path, "an integer", element);
      v = json_node_get_int (element);
      if (v < G_MININT32 || v > G_MAXINT32)
        {
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                       "%s: expected an integer within 32 bits, got %" G_GINT64_FORMAT, element_path, v);
          return FALSE;
        }
      g_variant_builder_add (builder, "i", (gint32) v);
    }
  g_value_init (value, G_TYPE_VARIANT);
  g_value_set_variant (value, g_variant_builder_end (builder));
  return TRUE;
}

/* Converts @node to a value for @pspec, checking type and range. */
static gboolean
load_value (GParamSpec  *pspec,
            JsonNode    *node,
            const char  *path,
            GValue      *value,
            GError     **error)
{
  GType t = G_PARAM_SPEC_VALUE_TYPE (pspec);
  GType fundamental = G_TYPE_FUNDAMENTAL (t);

  /* null stands for "not set": the property's default value */
  if (JSON_NODE_HOLDS_NULL (node))
    {
      g_value_init (value, t);
      g_param_value_set_default (pspec, value);
      return TRUE;
    }

  switch (fundamental)
    {
    case G_TYPE_BOOLEAN:
      if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
        return type_error (error, path, "true or false", node);
      g_value_init (value, t);
      g_value_set_boolean (value, json_node_get_boolean (node));
      return TRUE;
    case G_TYPE_INT: case G_TYPE_UINT: case G_TYPE_INT64:
    case G_TYPE_UINT64: case G_TYPE_LONG: case G_TYPE_ULONG:
      return load_int (pspec, node, path, value, error);
    case G_TYPE_DOUBLE: case G_TYPE_FLOAT:
      return load_double (pspec, node, path, value, error);
    case G_TYPE_STRING:
      g_value_init (value, t);
      if (JSON_NODE_HOLDS_NULL (node))
        return TRUE;
      if (!is_json_string (node))
        return type_error (error, path, "a string", node);
      g_value_set_string (value, json_node_get_string (node));
      return TRUE;
    case G_TYPE_ENUM:
      return load_enum (pspec, node, path, value, error);
    case G_TYPE_FLAGS:
      return load_flags (pspec, node, path, value, error);
    case G_TYPE_OBJECT:
      g_value_init (value, t);
      if (JSON_NODE_HOLDS_NULL (node))
        return TRUE;
      {
        GObject *child = quark_json_new_object (t, node, path, error);
        if (child == NULL)
          {
            g_value_unset (value);
            return FALSE;
          }
        g_value_take_object (value, child);
      }
      return TRUE;
    case G_TYPE_BOXED:
      if (t == G_TYPE_STRV)
        return load_strv (node, path, value, error);
      break;
    case G_TYPE_VARIANT:
      if (g_variant_type_equal (G_PARAM_SPEC_VARIANT (pspec)->type, G_VARIANT_TYPE ("ai")))
        return load_int_array (node, path, value, error);
      break;
    default:
      break;
    }
  g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
               "%s: property type %s cannot be read from JSON", path_or_root (path), g_type_name (t));
  return FALSE;
}

static GParamSpec *
find_member_pspec (GObjectClass *klass,
                   const char   *member)
{
  g_autofree char *canonical = g_strdup (member);
  GParamSpec *pspec;

  g_strdelimit (canonical, "_", '-');
  pspec = g_object_class_find_property (klass, canonical);
  if (pspec == NULL)
    return NULL;
  if (!(pspec->flags & G_PARAM_WRITABLE) || (pspec->flags & G_PARAM_DEPRECATED))
    return NULL;
  return pspec;
}

static char *
loadable_keys (GObjectClass *klass, const char * const *skip)
{
  g_autoptr(GString) s = g_string_new (NULL);
  g_autofree GParamSpec **pspecs = NULL;
  guint n;

  pspecs = g_object_class_list_properties (klass, &n);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = NULL;
      if (!(pspecs[i]->flags & G_PARAM_WRITABLE) || (pspecs[i]->flags & G_PARAM_DEPRECATED))
        continue;
      key = g_strdup (pspecs[i]->name);
      g_strdelimit (key, "-", '_');
      if (skip && g_strv_contains (skip, key))
        continue;
      g_string_append_printf (s, "%s%s", s->len ? ", " : "", key);
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

typedef struct {
  GPtrArray *names;  /* const char *, static pspec names */
  GArray *values;    /* GValue */
} PropertyList;

static void
property_list_clear (PropertyList *list)
{
  for (guint i = 0; i < list->values->len; i++)
    g_value_unset (&g_array_index (list->values, GValue, i));
  g_array_unref (list->values);
  g_ptr_array_unref (list->names);
}

static gboolean
collect_properties (GObjectClass        *klass,
                    JsonObject          *json,
                    const char          *path,
                    const char * const  *skip,
                    gboolean             allow_construct_only,
                    PropertyList        *list,
                    GError             **error)
{
  g_autoptr(GList) members = json_object_get_members (json);

  list->names = g_ptr_array_new ();
  list->values = g_array_new (FALSE, TRUE, sizeof (GValue));

  for (GList *l = members; l; l = l->next)
    {
      const char *member = l->data;
      g_autofree char *member_path = quark_json_path_join (path, member);
      GParamSpec *pspec;
      GValue value = G_VALUE_INIT;

      if (skip && g_strv_contains (skip, member))
        continue;

      pspec = find_member_pspec (klass, member);
      if (pspec == NULL || (!allow_construct_only && (pspec->flags & G_PARAM_CONSTRUCT_ONLY)))
        {
          g_autofree char *keys = loadable_keys (klass, skip);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_UNKNOWN_KEY,
                       "%s: unknown key (expected one of: %s)", member_path, keys);
          return FALSE;
        }
      if (!load_value (pspec, json_object_get_member (json, member), member_path, &value, error))
        return FALSE;
      if (g_param_value_validate (pspec, &value))
        {
          /* the checks above mirror the pspec; this catches custom pspecs */
          g_value_unset (&value);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_OUT_OF_RANGE,
                       "%s: value out of range", member_path);
          return FALSE;
        }
      g_ptr_array_add (list->names, (gpointer) pspec->name);
      g_array_append_val (list->values, value);
    }
  return TRUE;
}

/**
 * quark_json_load_properties:
 * @object: the object to set properties on
 * @json: a JSON object whose members name properties of @object
 * @path: (nullable): the path of @json, for messages
 * @skip: (array zero-terminated=1) (nullable): member names to leave alone
 *   (the caller handles them)
 * @error: return location for a #GError
 *
 * Sets properties of @object from the members of @json, strictly. A member
 * names a writable property, with `_` standing for `-` (`group_size` sets
 * `group-size`). Values must have the property's JSON type (booleans for
 * booleans, integers without fraction or exponent for integer properties,
 * numbers for floats, strings for strings and enums (by nick), arrays of
 * strings for string vectors and flags, arrays of integers for `ai` variant
 * properties, objects for object-typed properties,
 * which are built recursively with quark_json_new_object()) and lie within the
 * property's range. `null` stands for the property's default value (an
 * object-typed property's default is %NULL).
 *
 * Every value is checked before any property is set, so @object is left
 * unchanged on error.
 *
 * Returns: %TRUE on success; %FALSE with a %QUARK_CONFIG_ERROR naming the
 *   JSON path
 */
gboolean
quark_json_load_properties (GObject             *object,
                            JsonObject          *json,
                            const char          *path,
                            const char * const  *skip,
                            GError             **error)
{
  PropertyList list;
  gboolean ok;

  g_return_val_if_fail (G_IS_OBJECT (object), FALSE);
  g_return_val_if_fail (json != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ok = collect_properties (G_OBJECT_GET_CLASS (object), json, path, skip, FALSE, &list, error);
  if (ok)
    {
      g_object_freeze_notify (object);
      for (guint i = 0; i < list.names->len; i++)
        g_object_set_property (object, g_ptr_array_index (list.names, i),
                               &g_array_index (list.values, GValue, i));
      g_object_thaw_notify (object);
    }
  property_list_clear (&list);
  return ok;
}

/**
 * quark_json_new_object:
 * @object_type: a #GObject type that can be instantiated
 * @node: a JSON object node
 * @path: (nullable): the path of @node, for messages
 * @error: return location for a #GError
 *
 * Builds an object of @object_type from @node in one g_object_new() call,
 * with the checks of quark_json_load_properties(); construct-only properties
 * may be set too.
 *
 * Returns: (transfer full) (type GObject): the new object, or %NULL with a
 *   %QUARK_CONFIG_ERROR naming the JSON path
 */
GObject *
quark_json_new_object (GType        object_type,
                       JsonNode    *node,
                       const char  *path,
                       GError     **error)
{
  g_autoptr(GTypeClass) klass = NULL;
  PropertyList list;
  GObject *object = NULL;

  g_return_val_if_fail (G_TYPE_IS_OBJECT (object_type), NULL);
  g_return_val_if_fail (!G_TYPE_IS_ABSTRACT (object_type), NULL);
  g_return_val_if_fail (node != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      type_error (error, path, "an object", node);
      return NULL;
    }

  klass = g_type_class_ref (object_type);
  if (collect_properties (G_OBJECT_CLASS (klass), json_node_get_object (node), path, NULL,
                          TRUE, &list, error))
    object = g_object_new_with_properties (object_type, list.names->len,
                                           (const char **) list.names->pdata,
                                           (const GValue *) list.values->data);
  /* collect_properties() initialises the list even when it fails */
  property_list_clear (&list);
  return object;
}

static JsonNode *
serialize_value (const GValue *value)
{
  GType t = G_VALUE_TYPE (value);
  JsonNode *node = NULL;

  switch (G_TYPE_FUNDAMENTAL (t))
    {
    case G_TYPE_BOOLEAN:
      node = json_node_init_boolean (json_node_alloc (), g_value_get_boolean (value));
      break;
    case G_TYPE_INT:
      node = json_node_init_int (json_node_alloc (), g_value_get_int (value));
      break;
    case G_TYPE_UINT:
      node = json_node_init_int (json_node_alloc (), g_value_get_uint (value));
      break;
    case G_TYPE_INT64:
      node = json_node_init_int (json_node_alloc (), g_value_get_int64 (value));
      break;
    case G_TYPE_UINT64:
      node = json_node_init_int (json_node_alloc (), (gint64) MIN (g_value_get_uint64 (value), G_MAXINT64));
      break;
    case G_TYPE_LONG:
      node = json_node_init_int (json_node_alloc (), g_value_get_long (value));
      break;
    case G_TYPE_ULONG:
      node = json_node_init_int (json_node_alloc (), (gint64) MIN (g_value_get_ulong (value), G_MAXINT64));
      break;
    case G_TYPE_DOUBLE:
      node = json_node_init_double (json_node_alloc (), g_value_get_double (value));
      break;
    case G_TYPE_FLOAT:
      node = json_node_init_double (json_node_alloc (), g_value_get_float (value));
      break;
    case G_TYPE_STRING:
      node = g_value_get_string (value)
        ? json_node_init_string (json_node_alloc (), g_value_get_string (value))
        : json_node_init_null (json_node_alloc ());
      break;
    case G_TYPE_ENUM:
      {
        g_autoptr(GEnumClass) klass = g_type_class_ref (t);
        GEnumValue *ev = g_enum_get_value (klass, g_value_get_enum (value));
        node = ev ? json_node_init_string (json_node_alloc (), ev->value_nick)
                  : json_node_init_int (json_node_alloc (), g_value_get_enum (value));
      }
      break;
    case G_TYPE_FLAGS:
      {
        g_autoptr(GFlagsClass) klass = g_type_class_ref (t);
        JsonArray *array = json_array_new ();
        guint flags = g_value_get_flags (value);
        for (guint i = 0; i < klass->n_values; i++)
          if (klass->values[i].value != 0 && (flags & klass->values[i].value) == klass->values[i].value)
            json_array_add_string_element (array, klass->values[i].value_nick);
        node = json_node_init_array (json_node_alloc (), array);
        json_array_unref (array);
      }
      break;
    case G_TYPE_OBJECT:
      node = g_value_get_object (value)
        ? quark_json_serialize_properties (g_value_get_object (value))
        : json_node_init_null (json_node_alloc ());
      break;
    case G_TYPE_VARIANT:
      node = g_value_get_variant (value)
        ? json_gvariant_serialize (g_value_get_variant (value))
        : json_node_init_null (json_node_alloc ());
      break;
    case G_TYPE_BOXED:
      if (t == G_TYPE_STRV)
        {
          JsonArray *array = json_array_new ();
          const char * const *strv = g_value_get_boxed (value);
          for (guint i = 0; strv && strv[i]; i++)
            json_array_add_string_element (array, strv[i]);
          node = json_node_init_array (json_node_alloc (), array);
          json_array_unref (array);
        }
      break;
    default:
      break;
    }
  return node;
}

/**
 * quark_json_serialize_properties:
 * @object: an object
 *
 * Writes every readable and writable property of @object as a JSON object
 * member, named with `_` for `-` (`group_size`), including properties that
 * hold their default value, so the output keeps its meaning if a default
 * changes. Enums are written by nick, flags as arrays of nicks, object-typed
 * properties recursively. Properties of other types are left out.
 *
 * quark_json_new_object() reads the output back.
 *
 * Returns: (transfer full): a JSON object node
 */
JsonNode *
quark_json_serialize_properties (GObject *object)
{
  g_autofree GParamSpec **pspecs = NULL;
  JsonObject *json;
  JsonNode *node;
  guint n;

  g_return_val_if_fail (G_IS_OBJECT (object), NULL);

  json = json_object_new ();
  pspecs = g_object_class_list_properties (G_OBJECT_GET_CLASS (object), &n);
  for (guint i = 0; i < n; i++)
    {
      GValue value = G_VALUE_INIT;
      JsonNode *member;
      g_autofree char *key = NULL;

      if ((pspecs[i]->flags & G_PARAM_READWRITE) != G_PARAM_READWRITE ||
          (pspecs[i]->flags & G_PARAM_DEPRECATED))
        continue;
      g_value_init (&value, G_PARAM_SPEC_VALUE_TYPE (pspecs[i]));
      g_object_get_property (object, pspecs[i]->name, &value);
      member = serialize_value (&value);
      g_value_unset (&value);
      if (member == NULL)
        continue;
      key = g_strdup (pspecs[i]->name);
      g_strdelimit (key, "-", '_');
      json_object_set_member (json, key, member);
    }
  node = json_node_init_object (json_node_alloc (), json);
  json_object_unref (json);
  return node;
}
