/* quark-json-private.h: JSON text helpers shared inside the library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Appends @s (UTF-8) to @out as a JSON string: quoted, with '"', '\\' and
 * control characters escaped, everything else as it is. The same spelling
 * as quark_json_to_string() gives strings. */
void _quark_json_append_string (GString    *out,
                                const char *s);

/* Takes the next @len bytes of a JSON text; FALSE to stop. */
typedef gboolean (*QuarkJsonWriteFunc) (const char *text,
                                        gsize       len,
                                        gpointer    user_data);

/* quark_json_to_string()'s text of @node, handed to @func in pieces of
 * about 64 KiB instead of being held whole (a large config.json is then
 * written without a copy of its text in memory). FALSE when @func
 * stopped it. */
gboolean _quark_json_write (JsonNode           *node,
                            gboolean            pretty,
                            QuarkJsonWriteFunc  func,
                            gpointer            user_data);

/* Called with each member of a JSON object in turn, its name and its value,
 * or each element of an array (@name %NULL): the value is sealed and freed
 * after the call. Returns FALSE with @error set to stop. */
typedef gboolean (*QuarkJsonMemberFunc) (const char  *name,
                                         JsonNode    *value,
                                         gpointer     user_data,
                                         GError     **error);

/* quark_json_parse() of a text that must hold an object, whose members go
 * to @func one at a time instead of into a tree: the text is checked
 * whole first (syntax errors as quark_json_parse() reports them, and one
 * for a value that is not an object), then each member's value is built,
 * handed to @func and freed, so memory stays that of the largest member.
 * Returns FALSE with a %QUARK_CONFIG_ERROR, or with what @func set. */
gboolean _quark_json_parse_members (const char          *data,
                                    gsize                length,
                                    const char          *source,
                                    QuarkJsonMemberFunc  func,
                                    gpointer             user_data,
                                    GError             **error);

/* Where a value's text is in a JSON text: @length bytes from @offset (a
 * @length of 0: the value was not there) */
typedef struct {
  gsize offset;
  gsize length;
} QuarkJsonSpan;

/* quark_json_parse() of @data, except that the members at @pruned (a
 * NULL-terminated list of JSON paths as quark_json_path_join() and
 * quark_json_path_index() form them, such as "model.vocab") are checked as
 * everything else but left out of the tree: @spans[i] gets where the i-th
 * one's text is, for _quark_json_each(). For a large member that is read
 * once, in order (a tokenizer's vocabulary), a tree of it with its hash
 * tables, and its seal and free, cost several times its scan. */
JsonNode * _quark_json_parse_pruned (const char         *data,
                                     gsize               length,
                                     const char         *source,
                                     const char *const  *pruned,
                                     QuarkJsonSpan      *spans,
                                     GError            **error);

/* The members of the object, or the elements of the array, whose text is
 * @span of @data (from _quark_json_parse_pruned() of the same @data, so
 * already checked, duplicate names included), one at a time: each value
 * is built, handed to @func (with %NULL for the name of an element) and
 * freed. TRUE for an empty @span. Returns FALSE with what @func set. */
gboolean _quark_json_each (const char           *data,
                           QuarkJsonSpan         span,
                           const char           *source,
                           QuarkJsonMemberFunc   func,
                           gpointer              user_data,
                           GError              **error);

G_END_DECLS
