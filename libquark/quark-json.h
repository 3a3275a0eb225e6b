/* quark-json.h: the strict JSON loader
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <json-glib/json-glib.h>

#include "quark-version-macros.h"

G_BEGIN_DECLS

/**
 * QUARK_JSON_MAX_DEPTH:
 *
 * The deepest nesting of arrays and objects quark_json_parse() accepts.
 */
#define QUARK_JSON_MAX_DEPTH 64

QUARK_AVAILABLE_IN_1_0
JsonNode *  quark_json_parse                 (const char          *data,
                                              gssize               length,
                                              const char          *source,
                                              GError             **error);
QUARK_AVAILABLE_IN_1_0
char *      quark_json_to_string             (JsonNode            *node,
                                              gboolean             pretty);
QUARK_AVAILABLE_IN_1_0
JsonNode *  quark_json_copy                  (JsonNode            *node);
QUARK_AVAILABLE_IN_1_0
JsonNode *  quark_json_parse_file            (const char          *filename,
                                              GError             **error);
QUARK_AVAILABLE_IN_1_0
char *      quark_json_path_join             (const char          *path,
                                              const char          *member);
QUARK_AVAILABLE_IN_1_0
char *      quark_json_path_index            (const char          *path,
                                              guint                index);
QUARK_AVAILABLE_IN_1_0
gboolean    quark_json_read_patterns         (JsonObject          *object,
                                              const char          *key,
                                              GStrv               *out,
                                              GError             **error);
QUARK_AVAILABLE_IN_1_0
gboolean    quark_json_check_members         (JsonObject          *object,
                                              const char          *path,
                                              const char * const  *allowed,
                                              GError             **error);
QUARK_AVAILABLE_IN_1_0
gboolean    quark_json_load_properties       (GObject             *object,
                                              JsonObject          *json,
                                              const char          *path,
                                              const char * const  *skip,
                                              GError             **error);
QUARK_AVAILABLE_IN_1_0
GObject *   quark_json_new_object            (GType                object_type,
                                              JsonNode            *node,
                                              const char          *path,
                                              GError             **error);
QUARK_AVAILABLE_IN_1_0
JsonNode *  quark_json_serialize_properties  (GObject             *object);

G_END_DECLS
