/* quark-tokenizer.h: a Hugging Face tokenizer.json, natively
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>

#include "../quark-version-macros.h"

G_BEGIN_DECLS

#define QUARK_TYPE_TOKENIZER (quark_tokenizer_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkTokenizer, quark_tokenizer, QUARK, TOKENIZER, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkTokenizer * quark_tokenizer_new_from_file  (const char      *path,
                                                 GError         **error);
QUARK_AVAILABLE_IN_1_0
QuarkTokenizer * quark_tokenizer_new_from_bytes (GBytes          *tokenizer_json,
                                                 GBytes          *config_json,
                                                 const char      *source,
                                                 GError         **error);
QUARK_AVAILABLE_IN_1_0
guint32 *        quark_tokenizer_encode         (QuarkTokenizer  *self,
                                                 const char      *text,
                                                 gssize           length,
                                                 gboolean         add_special_tokens,
                                                 gsize           *n_ids,
                                                 GError         **error);
QUARK_AVAILABLE_IN_1_0
char *           quark_tokenizer_decode         (QuarkTokenizer  *self,
                                                 const guint32   *ids,
                                                 gsize            n_ids,
                                                 gboolean         skip_special_tokens,
                                                 GError         **error);
QUARK_AVAILABLE_IN_1_0
guint            quark_tokenizer_get_vocab_size (QuarkTokenizer  *self);
QUARK_AVAILABLE_IN_1_0
gint             quark_tokenizer_get_bos_id     (QuarkTokenizer  *self);
QUARK_AVAILABLE_IN_1_0
gint             quark_tokenizer_get_eos_id     (QuarkTokenizer  *self);
QUARK_AVAILABLE_IN_1_0
gint             quark_tokenizer_token_to_id    (QuarkTokenizer  *self,
                                                 const char      *token);
QUARK_AVAILABLE_IN_1_0
const char *     quark_tokenizer_id_to_token    (QuarkTokenizer  *self,
                                                 guint32          id);
QUARK_AVAILABLE_IN_1_0
const char *     quark_tokenizer_get_model_kind (QuarkTokenizer  *self);

G_END_DECLS
