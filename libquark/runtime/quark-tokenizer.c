/* quark-tokenizer.c: byte-level and SentencePiece-style BPE from tokenizer.json
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-tokenizer.h"
#include "quark-error.h"
#include "quark-json.h"
#include "quark-json-private.h"
#include "quark-input-file-private.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/**
 * QuarkTokenizer:
 *
 * A tokenizer read from a Hugging Face `tokenizer.json` (and the
 * `tokenizer_config.json` beside it), giving the ids the `tokenizers`
 * library gives, without Python.
 *
 * The model must be BPE. Two families are covered:
 *
 * - **byte-level BPE** (GPT-2, Llama 3, Qwen2): a `ByteLevel` pre-tokenizer,
 *   alone (its `use_regex` splits with GPT-2's pattern) or after `Split`
 *   steps carrying the family's own pattern; every byte of the text is
 *   first mapped to one of 256 printable characters, so no text is
 *   unknown;
 * - **SentencePiece-style BPE** (Llama 2, Mistral): spaces become `▁`
 *   (by a `Metaspace` pre-tokenizer or by `Prepend`/`Replace` normalizers),
 *   and characters outside the vocabulary become `<0xXX>` byte tokens when
 *   the model has `byte_fallback`.
 *
 * Encoding follows the library's order: added tokens (special or not) are
 * found first in the raw text, leftmost and longest first, honouring their
 * `lstrip`, `rstrip` and `single_word` flags; the text between them is
 * normalized, pre-tokenized (normalizers `NFC`, `NFKC`, `NFD`, `NFKD`,
 * `Lowercase`, `Prepend`, `Replace`, `Sequence`; pre-tokenizers `ByteLevel`,
 * `Split`, `Metaspace`, `Digits`, `Sequence`), and each piece is merged
 * pair by pair, the lowest merge rank first and the leftmost pair among
 * equal ranks (`ignore_merges` takes a piece that is itself in the
 * vocabulary as it is). Added tokens are matched in the raw text whatever
 * their `normalized` flag. Any other component is refused when the file is
 * read, with an error naming it, rather than giving different ids.
 *
 * [method@Quark.Tokenizer.encode] adds BOS and EOS when asked to and when
 * `tokenizer_config.json` says so (`add_bos_token`, `add_eos_token`), or
 * else as the `TemplateProcessing` post-processor's single template does.
 *
 * A tokenizer is immutable once made and may be used from several threads.
 */

#define PIECE_CACHE_MAX 200000

typedef enum { NORM_NFC, NORM_NFKC, NORM_NFD, NORM_NFKD, NORM_LOWERCASE, NORM_PREPEND, NORM_REPLACE } NormKind;

typedef struct {
  NormKind kind;
  char *text;           /* PREPEND: the prefix; REPLACE: the content */
  GRegex *regex;        /* REPLACE */
} NormStep;

typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL, PRE_METASPACE } PreKind;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_WITH_PREVIOUS, SPLIT_MERGED_WITH_NEXT } SplitBehavior;

typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;

typedef struct {
  PreKind kind;
  GRegex *regex;                /* SPLIT, and BYTE_LEVEL with use_regex */
  SplitBehavior behavior;
  gboolean add_prefix_space;    /* BYTE_LEVEL */
  char *replacement;            /* METASPACE */
  PrependScheme prepend;        /* METASPACE */
  gboolean split;               /* METASPACE */
} PreStep;

typedef struct {
  char *content;
  gsize length;
  guint32 id;
  gboolean special, lstrip, rstrip, single_word;
} AddedToken;

/* pair (a, b) → rank and merged id: open addressing, linear probing */
typedef struct {
  guint64 *keys;
  guint64 *values;
  gsize mask;
} MergeTable;

#define MERGE_EMPTY G_MAXUINT64

struct _QuarkTokenizer
{
  GObject parent_instance;

  char *path;
  char *kind;                   /* "byte-level-bpe" or "bpe" */
  GPtrArray *tokens;            /* id → token (NULL for unused ids) */
  GHashTable *vocab;            /* token → id + 1 */
  MergeTable merges;
  GArray *normalizers;          /* NormStep */
  GArray *pre_steps;            /* PreStep */
  GArray *added;                /* AddedToken, longest first */
  GPtrArray *added_by_byte[256]; /* AddedToken* by first byte, longest first */
  GHashTable *added_ids;        /* id → AddedToken* */
  gboolean byte_level;
  gboolean byte_fallback, fuse_unk, ignore_merges;
  gint byte_ids[256];           /* <0xXX> token ids, -1 when missing */
  gint unk_id, bos_id, eos_id;
  gboolean add_bos, add_eos;
  char *metaspace;              /* the Metaspace replacement, for decoding */
  gboolean strip_decoded_space; /* decoding removes the prepended ▁ */
  char byte_chars[256][3];      /* byte → its character (UTF-8, NUL-terminated) */
  gint16 char_bytes[512];       /* code point → byte, -1 when not a byte character */

  pthread_mutex_t cache_lock;
  GHashTable *cache;            /* piece → GArray of ids */
};

G_DEFINE_FINAL_TYPE (QuarkTokenizer, quark_tokenizer, G_TYPE_OBJECT)

static void
norm_step_clear (gpointer data)
{
  NormStep *s = data;
  g_free (s->text);
  g_clear_pointer (&s->regex, g_regex_unref);
}

static void
pre_step_clear (gpointer data)
{
  PreStep *s = data;
  g_clear_pointer (&s->regex, g_regex_unref);
  g_free (s->replacement);
}

static void
added_token_clear (gpointer data)
{
  g_free (((AddedToken *) data)->content);
}

static void
quark_tokenizer_finalize (GObject *object)
{
  QuarkTokenizer *self = QUARK_TOKENIZER (object);

  g_free (self->path);
  g_free (self->kind);
  g_clear_pointer (&self->tokens, g_ptr_array_unref);
  g_clear_pointer (&self->vocab, g_hash_table_unref);
  g_free (self->merges.keys);
  g_free (self->merges.values);
  g_clear_pointer (&self->normalizers, g_array_unref);
  g_clear_pointer (&self->pre_steps, g_array_unref);
  for (guint i = 0; i < 256; i++)
    g_clear_pointer (&self->added_by_byte[i], g_ptr_array_unref);
  g_clear_pointer (&self->added_ids, g_hash_table_unref);
  g_clear_pointer (&self->added, g_array_unref);
  g_free (self->metaspace);
  g_clear_pointer (&self->cache, g_hash_table_unref);
  pthread_mutex_destroy (&self->cache_lock);
  G_OBJECT_CLASS (quark_tokenizer_parent_class)->finalize (object);
}

static void
quark_tokenizer_class_init (QuarkTokenizerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_tokenizer_finalize;
}

static void
quark_tokenizer_init (QuarkTokenizer *self)
{
  guint n = 0;

  self->tokens = g_ptr_array_new_with_free_func (g_free);
  self->vocab = g_hash_table_new (g_str_hash, g_str_equal);
  self->normalizers = g_array_new (FALSE, TRUE, sizeof (NormStep));
  g_array_set_clear_func (self->normalizers, norm_step_clear);
  self->pre_steps = g_array_new (FALSE, TRUE, sizeof (PreStep));
  g_array_set_clear_func (self->pre_steps, pre_step_clear);
  self->added = g_array_new (FALSE, TRUE, sizeof (AddedToken));
  g_array_set_clear_func (self->added, added_token_clear);
  self->added_ids = g_hash_table_new (NULL, NULL);
  self->unk_id = self->bos_id = self->eos_id = -1;
  self->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_array_unref);
  pthread_mutex_init (&self->cache_lock, NULL);

  /* GPT-2's byte → character map: printable Latin-1 bytes stand for
   * themselves, the other 68 bytes take code points 256, 257, … in order */
  for (guint i = 0; i < G_N_ELEMENTS (self->char_bytes); i++)
    self->char_bytes[i] = -1;
  for (guint b = 0; b < 256; b++)
    {
      gboolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      gunichar c = printable ? b : 256 + n++;
      g_unichar_to_utf8 (c, self->byte_chars[b]);
      self->char_bytes[c] = (gint16) b;
    }
}

/* ------------------------------------------------------------------ */
/* Errors and JSON                                                     */

static gboolean
fail (GError **error, const char *file, const char *path, const char *format, ...) G_GNUC_PRINTF (4, 5);

static gboolean
fail (GError **error, const char *file, const char *path, const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s: %s", file, path, message);
  return FALSE;
}

static const char *
member_string (JsonObject *object, const char *name)
{
  JsonNode *node = json_object_get_member (object, name);
  return node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING
         ? json_node_get_string (node) : NULL;
}

static gboolean
member_bool (JsonObject *object, const char *name, gboolean fallback)
{
  JsonNode *node = json_object_get_member (object, name);
  return node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_BOOLEAN
         ? json_node_get_boolean (node) : fallback;
}

static JsonObject *
member_object (JsonObject *object, const char *name)
{
  JsonNode *node = json_object_get_member (object, name);
  return node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

static JsonArray *
member_array (JsonObject *object, const char *name)
{
  JsonNode *node = json_object_get_member (object, name);
  return node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
}

static gboolean
member_is_null (JsonObject *object, const char *name)
{
  JsonNode *node = json_object_get_member (object, name);
  return node == NULL || JSON_NODE_HOLDS_NULL (node);
}

/* A `pattern` of Split or Replace: {"String": s} or {"Regex": r} */
static GRegex *
compile_pattern (JsonObject *object, const char *file, const char *path, GError **error)
{
  JsonObject *pattern = member_object (object, "pattern");
  const char *text;
  g_autofree char *escaped = NULL;
  g_autoptr(GError) local_error = NULL;
  GRegex *regex;

  if (pattern == NULL)
    {
      fail (error, file, path, "pattern is missing");
      return NULL;
    }
  if ((text = member_string (pattern, "Regex")) == NULL)
    {
      if ((text = member_string (pattern, "String")) == NULL)
        {
          fail (error, file, path, "pattern must hold \"String\" or \"Regex\"");
          return NULL;
        }
      text = escaped = g_regex_escape_string (text, -1);
    }
  regex = g_regex_new (text, G_REGEX_OPTIMIZE, 0, &local_error);
  if (regex == NULL)
    fail (error, file, path, "pattern does not compile: %s", local_error->message);
  return regex;
}

/* ------------------------------------------------------------------ */
/* Reading tokenizer.json                                              */

typedef gboolean (*ReadStep) (QuarkTokenizer *self, JsonNode *node, const char *file, const char *path, GError **error);

/* The type of a normalizer or pre-tokenizer at @path, which is NULL for
 * null; a Sequence reads each item of its @list member with @read */
static gboolean
read_component (QuarkTokenizer *self, JsonNode *node, const char *list, ReadStep read, const char *file,
                const char *path, JsonObject **object, const char **type, GError **error)
{
  JsonArray *items;

  *type = NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node) || (*type = member_string (*object = json_node_get_object (node), "type")) == NULL)
    return fail (error, file, path, "expected an object with a \"type\"");
  if (!g_str_equal (*type, "Sequence"))
    return TRUE;
  *type = NULL;
  if ((items = member_array (*object, list)) == NULL)
    return fail (error, file, path, "a Sequence needs \"%s\"", list);
  for (guint i = 0; i < json_array_get_length (items); i++)
    {
      g_autofree char *item = g_strdup_printf ("%s.%s[%u]", path, list, i);
      if (!read (self, json_array_get_element (items, i), file, item, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
read_normalizer (QuarkTokenizer *self, JsonNode *node, const char *file, const char *path, GError **error)
{
  JsonObject *object;
  const char *type;
  NormStep step = { 0 };

  if (!read_component (self, node, "normalizers", read_normalizer, file, path, &object, &type, error))
    return FALSE;
  if (type == NULL)
    return TRUE;
  if (g_str_equal (type, "NFC"))
    step.kind = NORM_NFC;
  else if (g_str_equal (type, "NFKC"))
    step.kind = NORM_NFKC;
  else if (g_str_equal (type, "NFD"))
    step.kind = NORM_NFD;
  else if (g_str_equal (type, "NFKD"))
    step.kind = NORM_NFKD;
  else if (g_str_equal (type, "Lowercase"))
    step.kind = NORM_LOWERCASE;
  else if (g_str_equal (type, "Prepend"))
    {
      const char *prepend = member_string (object, "prepend");
      if (prepend == NULL)
        return fail (error, file, path, "Prepend needs a \"prepend\" string");
      step.kind = NORM_PREPEND;
      step.text = g_strdup (prepend);
    }
  else if (g_str_equal (type, "Replace"))
    {
      const char *content = member_string (object, "content");
      if (content == NULL)
        return fail (error, file, path, "Replace needs a \"content\" string");
      step.kind = NORM_REPLACE;
      if ((step.regex = compile_pattern (object, file, path, error)) == NULL)
        return FALSE;
      step.text = g_strdup (content);
    }
  else
    return fail (error, file, path, "the %s normalizer is not supported", type);
  g_array_append_val (self->normalizers, step);
  return TRUE;
}

static gboolean
read_split_behavior (JsonObject *object, SplitBehavior *behavior, const char *file, const char *path, GError **error)
{
  const char *name = member_string (object, "behavior");
  static const struct { const char *name; SplitBehavior behavior; } behaviors[] = {
    { "Removed", SPLIT_REMOVED }, { "Isolated", SPLIT_ISOLATED },
    { "MergedWithPrevious", SPLIT_MERGED_WITH_PREVIOUS }, { "MergedWithNext", SPLIT_MERGED_WITH_NEXT },
  };

  for (guint i = 0; name && i < G_N_ELEMENTS (behaviors); i++)
    if (g_str_equal (name, behaviors[i].name))
      {
        *behavior = behaviors[i].behavior;
        return TRUE;
      }
  return fail (error, file, path, "split behavior %s is not supported (Removed, Isolated, MergedWithPrevious, MergedWithNext)",
               name ? name : "(none)");
}

/* GPT-2's split pattern, which ByteLevel's use_regex applies */
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static gboolean
read_pre_tokenizer (QuarkTokenizer *self, JsonNode *node, const char *file, const char *path, GError **error)
{
  JsonObject *object;
  const char *type;
  PreStep step = { 0 };

  if (!read_component (self, node, "pretokenizers", read_pre_tokenizer, file, path, &object, &type, error))
    return FALSE;
  if (type == NULL)
    return TRUE;
  if (g_str_equal (type, "ByteLevel"))
    {
      step.kind = PRE_BYTE_LEVEL;
      step.add_prefix_space = member_bool (object, "add_prefix_space", TRUE);
      if (member_bool (object, "use_regex", TRUE))
        step.regex = g_regex_new (GPT2_PATTERN, G_REGEX_OPTIMIZE, 0, NULL);
      step.behavior = SPLIT_ISOLATED;
      self->byte_level = TRUE;
    }
  else if (g_str_equal (type, "Split"))
    {
      step.kind = PRE_SPLIT;
      if (member_bool (object, "invert", FALSE))
        return fail (error, file, path, "an inverted Split is not supported");
      if (!read_split_behavior (object, &step.behavior, file, path, error) ||
          (step.regex = compile_pattern (object, file, path, error)) == NULL)
        return FALSE;
    }
  else if (g_str_equal (type, "Digits"))
    {
      step.kind = PRE_SPLIT;
      step.behavior = SPLIT_ISOLATED;
      step.regex = g_regex_new (member_bool (object, "individual_digits", FALSE) ? "\\p{N}" : "\\p{N}+",
                                G_REGEX_OPTIMIZE, 0, NULL);
    }
  else if (g_str_equal (type, "Metaspace"))
    {
      const char *replacement = member_string (object, "replacement");
      const char *scheme = member_string (object, "prepend_scheme");

      step.kind = PRE_METASPACE;
      step.replacement = g_strdup (replacement ? replacement : "\xe2\x96\x81");
      if (scheme == NULL)
        step.prepend = member_bool (object, "add_prefix_space", TRUE) ? PREPEND_ALWAYS : PREPEND_NEVER;
      else if (g_str_equal (scheme, "always"))
        step.prepend = PREPEND_ALWAYS;
      else if (g_str_equal (scheme, "first"))
        step.prepend = PREPEND_FIRST;
      else if (g_str_equal (scheme, "never"))
        step.prepend = PREPEND_NEVER;
      else
        return fail (error, file, path, "prepend_scheme %s is not one of always, first, never", scheme);
      step.split = member_bool (object, "split", TRUE);
      if (step.split)
        {
          g_autofree char *escaped = g_regex_escape_string (step.replacement, -1);
          step.regex = g_regex_new (escaped, 0, 0, NULL);
          step.behavior = SPLIT_MERGED_WITH_NEXT;
        }
      g_free (self->metaspace);
      self->metaspace = g_strdup (step.replacement);
      self->strip_decoded_space = step.prepend != PREPEND_NEVER;
    }
  else
    return fail (error, file, path, "the %s pre-tokenizer is not supported", type);
  g_array_append_val (self->pre_steps, step);
  return TRUE;
}

static gboolean
merge_table_insert (MergeTable *t, guint32 a, guint32 b, guint32 rank, guint32 id)
{
  guint64 key = ((guint64) a << 32) | b;
  gsize i = (gsize) ((key * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)) >> 20) & t->mask;

  while (t->keys[i] != MERGE_EMPTY)
    {
      if (t->keys[i] == key)
        return FALSE;           /* a later duplicate keeps the first rank */
      i = (i + 1) & t->mask;
    }
  t->keys[i] = key;
  t->values[i] = ((guint64) rank << 32) | id;
  return TRUE;
}

static inline gboolean
merge_table_lookup (const MergeTable *t, guint32 a, guint32 b, guint32 *rank, guint32 *id)
{
  guint64 key = ((guint64) a << 32) | b;
  gsize i;

  if (t->mask == 0)
    return FALSE;
  i = (gsize) ((key * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)) >> 20) & t->mask;
  while (t->keys[i] != MERGE_EMPTY)
    {
      if (t->keys[i] == key)
        {
          *rank = (guint32) (t->values[i] >> 32);
          *id = (guint32) t->values[i];
          return TRUE;
        }
      i = (i + 1) & t->mask;
    }
  return FALSE;
}

static gint
vocab_id (QuarkTokenizer *self, const char *token)
{
  gpointer value = g_hash_table_lookup (self->vocab, token);
  return value ? GPOINTER_TO_INT (value) - 1 : -1;
}

/* @path, or (NULL) the vocabulary's member for @token, model.vocab["token"],
 * made for an error message only, into *@owned */
static const char *
token_path (const char *path, const char *token, char **owned)
{
  return path ? path : (*owned = g_strdup_printf ("model.vocab[\"%s\"]", token));
}

static gboolean
set_token (QuarkTokenizer *self, const char *token, gint64 id, const char *file, const char *path, GError **error)
{
  g_autofree char *vocab_path = NULL;

  if (id < 0 || id >= G_MAXINT32)
    return fail (error, file, token_path (path, token, &vocab_path), "id %" G_GINT64_FORMAT " of %s is out of range",
                 id, token);
  if ((guint) id >= self->tokens->len)
    g_ptr_array_set_size (self->tokens, (guint) id + 1);
  if (g_ptr_array_index (self->tokens, id) != NULL && !g_str_equal (g_ptr_array_index (self->tokens, id), token))
    return fail (error, file, token_path (path, token, &vocab_path),
                 "id %" G_GINT64_FORMAT " is given to both %s and %s", id,
                 (const char *) g_ptr_array_index (self->tokens, id), token);
  if (g_ptr_array_index (self->tokens, id) == NULL)
    g_ptr_array_index (self->tokens, id) = g_strdup (token);
  g_hash_table_replace (self->vocab, g_ptr_array_index (self->tokens, id), GINT_TO_POINTER ((gint) id + 1));
  return TRUE;
}

/* tokenizer.json's model.vocab and model.merges are read one member at a
 * time from the text, outside the tree of the rest (_quark_json_each()):
 * a tree of a vocabulary of 150 000 tokens and as many merges, with its
 * seal and free, took several times as long as the reading */
static const char *const pruned_members[] = { "model.vocab", "model.merges", NULL };

typedef struct {
  const char *text;
  QuarkJsonSpan vocab, merges;
} Pruned;

typedef struct {
  QuarkTokenizer *self;
  const char *file;
  guint index;
  GArray *merges;   /* guint32 triplets: left, right and joined ids */
} Reading;

static gboolean
vocab_entry (const char *name, JsonNode *node, gpointer data, GError **error)
{
  Reading *r = data;

  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    {
      g_autofree char *path = g_strdup_printf ("model.vocab[\"%s\"]", name);
      return fail (error, r->file, path, "expected an integer id");
    }
  return set_token (r->self, name, json_node_get_int (node), r->file, NULL, error);
}

static gboolean
merge_entry (const char *name, JsonNode *node, gpointer data, GError **error)
{
  Reading *r = data;
  QuarkTokenizer *self = r->self;
  g_autofree char *path = NULL, *left = NULL, *joined = NULL;
  const char *right;
  gint a, b, id;
  guint32 ids[3];
  guint i = r->index++;

  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      const char *text = json_node_get_string (node);
      const char *space = strchr (text, ' ');
      if (space == NULL || space == text || strchr (space + 1, ' ') != NULL || space[1] == '\0')
        return fail (error, r->file, (path = g_strdup_printf ("model.merges[%u]", i)), "expected \"LEFT RIGHT\"");
      left = g_strndup (text, space - text);
      right = space + 1;
    }
  else if (JSON_NODE_HOLDS_ARRAY (node) && json_array_get_length (json_node_get_array (node)) == 2 &&
           json_node_get_value_type (json_array_get_element (json_node_get_array (node), 0)) == G_TYPE_STRING &&
           json_node_get_value_type (json_array_get_element (json_node_get_array (node), 1)) == G_TYPE_STRING)
    {
      left = g_strdup (json_array_get_string_element (json_node_get_array (node), 0));
      right = json_array_get_string_element (json_node_get_array (node), 1);
    }
  else
    return fail (error, r->file, (path = g_strdup_printf ("model.merges[%u]", i)),
                 "expected \"LEFT RIGHT\" or [LEFT, RIGHT]");
  joined = g_strconcat (left, right, NULL);
  if ((a = vocab_id (self, left)) < 0 || (b = vocab_id (self, right)) < 0 || (id = vocab_id (self, joined)) < 0)
    return fail (error, r->file, (path = g_strdup_printf ("model.merges[%u]", i)),
                 "%s, %s or %s is not in the vocabulary", left, right, joined);
  ids[0] = (guint32) a;
  ids[1] = (guint32) b;
  ids[2] = (guint32) id;
  g_array_append_vals (r->merges, ids, 3);
  return TRUE;
}

static gboolean
read_model (QuarkTokenizer *self, JsonObject *model, const Pruned *pruned, const char *file, GError **error)
{
  const char *type = member_string (model, "type");
  gboolean vocab = pruned->vocab.length && pruned->text[pruned->vocab.offset] == '{';
  gboolean merges = pruned->merges.length && pruned->text[pruned->merges.offset] == '[';
  const char *unk = member_string (model, "unk_token");
  JsonNode *dropout = json_object_get_member (model, "dropout");
  g_autoptr(GArray) merge_ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  Reading r = { self, file, 0, merge_ids };
  guint n_merges;
  gsize capacity = 16;

  if (type == NULL && vocab && merges)
    type = "BPE";
  if (type == NULL || !g_str_equal (type, "BPE"))
    return fail (error, file, "model.type", "%s tokenizers are not supported (BPE only)", type ? type : "untyped");
  if (!vocab)
    return fail (error, file, "model.vocab", "expected an object of token → id");
  if (!merges)
    return fail (error, file, "model.merges", "expected an array");
  if (!member_is_null (model, "continuing_subword_prefix") || !member_is_null (model, "end_of_word_suffix"))
    return fail (error, file, "model", "continuing_subword_prefix and end_of_word_suffix are not supported");
  if (dropout && JSON_NODE_HOLDS_VALUE (dropout) && json_node_get_double (dropout) != 0.0)
    return fail (error, file, "model.dropout", "BPE dropout is not supported (it makes encoding random)");
  self->byte_fallback = member_bool (model, "byte_fallback", FALSE);
  self->fuse_unk = member_bool (model, "fuse_unk", FALSE);
  self->ignore_merges = member_bool (model, "ignore_merges", FALSE);

  if (!_quark_json_each (pruned->text, pruned->vocab, file, vocab_entry, &r, error))
    return FALSE;
  if (unk && (self->unk_id = vocab_id (self, unk)) < 0)
    return fail (error, file, "model.unk_token", "%s is not in the vocabulary", unk);
  for (guint b = 0; b < 256; b++)
    {
      char name[8];
      g_snprintf (name, sizeof name, "<0x%02X>", b);
      self->byte_ids[b] = vocab_id (self, name);
    }

  /* the merges' ids, then the table of as many */
  if (!_quark_json_each (pruned->text, pruned->merges, file, merge_entry, &r, error))
    return FALSE;
  n_merges = merge_ids->len / 3;
  while (capacity < 2 * (gsize) n_merges + 16)
    capacity *= 2;
  self->merges.keys = g_new (guint64, capacity);
  self->merges.values = g_new (guint64, capacity);
  memset (self->merges.keys, 0xFF, capacity * sizeof (guint64));
  self->merges.mask = capacity - 1;
  for (guint i = 0; i < n_merges; i++)
    {
      const guint32 *ids = &g_array_index (merge_ids, guint32, 3 * i);
      merge_table_insert (&self->merges, ids[0], ids[1], i, ids[2]);
    }
  return TRUE;
}

static gint
compare_added (gconstpointer a, gconstpointer b)
{
  const AddedToken *x = *(AddedToken * const *) a, *y = *(AddedToken * const *) b;
  return x->length == y->length ? 0 : x->length > y->length ? -1 : 1;
}

static gboolean
read_added_tokens (QuarkTokenizer *self, JsonArray *list, const char *file, GError **error)
{
  for (guint i = 0; list && i < json_array_get_length (list); i++)
    {
      JsonNode *node = json_array_get_element (list, i);
      g_autofree char *path = g_strdup_printf ("added_tokens[%u]", i);
      JsonObject *object;
      const char *content;
      JsonNode *id;
      AddedToken token = { 0 };

      if (!JSON_NODE_HOLDS_OBJECT (node) || (content = member_string (object = json_node_get_object (node), "content")) == NULL ||
          content[0] == '\0' || (id = json_object_get_member (object, "id")) == NULL ||
          json_node_get_value_type (id) != G_TYPE_INT64)
        return fail (error, file, path, "expected an object with a non-empty \"content\" and an integer \"id\"");
      if (!set_token (self, content, json_node_get_int (id), file, path, error))
        return FALSE;
      token.content = g_strdup (content);
      token.length = strlen (content);
      token.id = (guint32) json_node_get_int (id);
      token.special = member_bool (object, "special", FALSE);
      token.lstrip = member_bool (object, "lstrip", FALSE);
      token.rstrip = member_bool (object, "rstrip", FALSE);
      token.single_word = member_bool (object, "single_word", FALSE);
      g_array_append_val (self->added, token);
    }
  for (guint i = 0; i < self->added->len; i++)
    {
      AddedToken *token = &g_array_index (self->added, AddedToken, i);
      guint8 first = (guint8) token->content[0];
      if (self->added_by_byte[first] == NULL)
        self->added_by_byte[first] = g_ptr_array_new ();
      g_ptr_array_add (self->added_by_byte[first], token);
      g_hash_table_insert (self->added_ids, GUINT_TO_POINTER (token->id), token);
    }
  for (guint b = 0; b < 256; b++)
    if (self->added_by_byte[b])
      g_ptr_array_sort (self->added_by_byte[b], compare_added);
  return TRUE;
}

/* A special token as tokenizer_config.json gives it: a string or an
 * object with "content" */
static gboolean
special_token_id (QuarkTokenizer *self, JsonObject *config, const char *name, gint *id, const char *file,
                  GError **error)
{
  JsonNode *node = json_object_get_member (config, name);
  const char *content = NULL;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    content = json_node_get_string (node);
  else if (JSON_NODE_HOLDS_OBJECT (node))
    content = member_string (json_node_get_object (node), "content");
  if (content == NULL)
    return fail (error, file, name, "expected a token string or an object with \"content\"");
  if ((*id = vocab_id (self, content)) < 0)
    return fail (error, file, name, "%s is not in the vocabulary", content);
  return TRUE;
}

/* Whether the post-processor's single template starts (ends) with a
 * special token, and which */
static void
read_template (QuarkTokenizer *self, JsonObject *root)
{
  JsonObject *post = member_object (root, "post_processor");
  JsonArray *single;
  guint n;

  if (post == NULL || g_strcmp0 (member_string (post, "type"), "TemplateProcessing") != 0 ||
      (single = member_array (post, "single")) == NULL || (n = json_array_get_length (single)) == 0)
    return;
  for (guint end = 0; end < 2; end++)
    {
      JsonNode *node = json_array_get_element (single, end == 0 ? 0 : n - 1);
      JsonObject *item = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
      JsonObject *special = item ? member_object (item, "SpecialToken") : NULL;
      const char *name = special ? member_string (special, "id") : NULL;
      gint id = name ? vocab_id (self, name) : -1;

      if (id < 0)
        continue;
      if (end == 0)
        {
          self->add_bos = TRUE;
          self->bos_id = id;
        }
      else
        {
          self->add_eos = TRUE;
          self->eos_id = id;
        }
    }
}

/* The tokenizer of a parsed tokenizer.json (@source names it in errors)
 * and, when there is one, the text of tokenizer_config.json */
static QuarkTokenizer *
load (JsonNode *root, const Pruned *pruned, const char *source, const char *config_text, gsize config_length,
      const char *config_source, GError **error)
{
  g_autoptr(QuarkTokenizer) self = NULL;
  JsonObject *object;

  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      fail (error, source, "$", "expected an object");
      return NULL;
    }
  object = json_node_get_object (root);
  self = g_object_new (QUARK_TYPE_TOKENIZER, NULL);
  self->path = g_strdup (source);
  if (member_object (object, "model") == NULL)
    {
      fail (error, source, "model", "expected an object");
      return NULL;
    }
  if (!read_model (self, member_object (object, "model"), pruned, source, error) ||
      !read_added_tokens (self, member_array (object, "added_tokens"), source, error) ||
      !read_normalizer (self, json_object_get_member (object, "normalizer"), source, "normalizer", error) ||
      !read_pre_tokenizer (self, json_object_get_member (object, "pre_tokenizer"), source, "pre_tokenizer", error))
    return NULL;
  if (!self->byte_level && self->metaspace == NULL)
    {
      /* Llama 2's form: Prepend("▁") and Replace(" ", "▁") normalizers */
      for (guint i = 0; i < self->normalizers->len; i++)
        {
          NormStep *s = &g_array_index (self->normalizers, NormStep, i);
          if (s->kind == NORM_PREPEND)
            {
              g_free (self->metaspace);
              self->metaspace = g_strdup (s->text);
              self->strip_decoded_space = TRUE;
            }
        }
    }
  self->kind = g_strdup (self->byte_level ? "byte-level-bpe" : "bpe");
  read_template (self, object);

  if (config_text != NULL)
    {
      /* not the strict parser: Python writes model_max_length as an
       * integer of 100 bits */
      g_autoptr(JsonParser) parser = json_parser_new ();
      g_autoptr(GError) local_error = NULL;
      JsonNode *config;
      JsonObject *c;

      if (!json_parser_load_from_data (parser, config_text, (gssize) config_length, &local_error))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", config_source, local_error->message);
          return NULL;
        }
      config = json_parser_get_root (parser);
      if (config == NULL || !JSON_NODE_HOLDS_OBJECT (config))
        {
          fail (error, config_source, "$", "expected an object");
          return NULL;
        }
      c = json_node_get_object (config);
      if (!special_token_id (self, c, "bos_token", &self->bos_id, config_source, error) ||
          !special_token_id (self, c, "eos_token", &self->eos_id, config_source, error))
        return NULL;
      self->add_bos = member_bool (c, "add_bos_token", self->add_bos);
      self->add_eos = member_bool (c, "add_eos_token", self->add_eos);
    }
  if ((self->add_bos && self->bos_id < 0) || (self->add_eos && self->eos_id < 0))
    {
      fail (error, source, "post_processor", "BOS or EOS is to be added but the token is unknown");
      return NULL;
    }
  return g_steal_pointer (&self);
}

/**
 * quark_tokenizer_new_from_file:
 * @path: a `tokenizer.json`, or a model directory holding one
 * @error: return location for a #GError
 *
 * Reads a tokenizer. The `tokenizer_config.json` beside the file, when
 * there is one, gives the BOS and EOS tokens and whether
 * [method@Quark.Tokenizer.encode] adds them.
 *
 * Fails with %QUARK_ERROR_NOT_FOUND when there is no such file, and with
 * %QUARK_ERROR_INVALID_FILE, naming the file and the JSON path, when it is
 * malformed or uses a component this tokenizer does not implement.
 *
 * Returns: (transfer full): the tokenizer, or %NULL with @error set
 */
QuarkTokenizer *
quark_tokenizer_new_from_file (const char *path, GError **error)
{
  g_autofree char *file = NULL, *config_file = NULL, *dir = NULL, *config_text = NULL, *text = NULL;
  g_autoptr(JsonNode) root = NULL;
  gsize config_length = 0, length;
  QuarkJsonSpan spans[2];
  Pruned pruned;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  file = g_file_test (path, G_FILE_TEST_IS_DIR) ? g_build_filename (path, "tokenizer.json", NULL) : g_strdup (path);
  if (!g_file_test (file, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND, "%s: no such file", file);
      return NULL;
    }
  if ((text = _quark_input_read (file, QUARK_INPUT_MAX_TOKENIZER_SIZE, "tokenizer.json", &length, error)) == NULL ||
      (root = _quark_json_parse_pruned (text, length, file, pruned_members, spans, error)) == NULL)
    return NULL;
  pruned = (Pruned) { text, spans[0], spans[1] };
  dir = g_path_get_dirname (file);
  config_file = g_build_filename (dir, "tokenizer_config.json", NULL);
  if (g_file_test (config_file, G_FILE_TEST_EXISTS))
    {
      g_autoptr(GError) local_error = NULL;
      if (!g_file_get_contents (config_file, &config_text, &config_length, &local_error))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s", local_error->message);
          return NULL;
        }
    }
  return load (root, &pruned, file, config_text, config_length, config_file, error);
}

/**
 * quark_tokenizer_new_from_bytes:
 * @tokenizer_json: the contents of a `tokenizer.json`
 * @config_json: (nullable): the contents of its `tokenizer_config.json`
 * @source: (nullable): a name for error messages
 * @error: return location for a #GError
 *
 * Like [ctor@Quark.Tokenizer.new_from_file], from memory (a #GResource, a
 * download, an archive).
 *
 * Returns: (transfer full): the tokenizer, or %NULL with
 *   %QUARK_ERROR_INVALID_FILE naming @source and the JSON path
 */
QuarkTokenizer *
quark_tokenizer_new_from_bytes (GBytes *tokenizer_json, GBytes *config_json, const char *source, GError **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autofree char *config_source = NULL;
  const char *data;
  gsize size, config_size = 0;
  const char *config_data = NULL;
  QuarkJsonSpan spans[2];
  Pruned pruned;

  g_return_val_if_fail (tokenizer_json != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (source == NULL)
    source = "tokenizer.json";
  data = g_bytes_get_data (tokenizer_json, &size);
  if (data == NULL)
    data = "";
  if ((root = _quark_json_parse_pruned (data, size, source, pruned_members, spans, &local_error)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s", local_error->message);
      return NULL;
    }
  if (config_json)
    {
      config_data = g_bytes_get_data (config_json, &config_size);
      if (config_data == NULL)
        config_data = "";
    }
  config_source = g_strdup_printf ("%s (tokenizer_config.json)", source);
  pruned = (Pruned) { data, spans[0], spans[1] };
  return load (root, &pruned, source, config_data, config_size, config_source, error);
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */

typedef struct {
  char *text;
  gboolean at_start;            /* begins at the start of the input */
} Piece;

static void
piece_clear (gpointer data)
{
  g_free (((Piece *) data)->text);
}

static char *
normalize (QuarkTokenizer *self, const char *text, gsize length)
{
  char *s = g_strndup (text, length);

  for (guint i = 0; i < self->normalizers->len; i++)
    {
      NormStep *step = &g_array_index (self->normalizers, NormStep, i);
      char *next = NULL;

      switch (step->kind)
        {
        case NORM_NFC: next = g_utf8_normalize (s, -1, G_NORMALIZE_NFC); break;
        case NORM_NFKC: next = g_utf8_normalize (s, -1, G_NORMALIZE_NFKC); break;
        case NORM_NFD: next = g_utf8_normalize (s, -1, G_NORMALIZE_NFD); break;
        case NORM_NFKD: next = g_utf8_normalize (s, -1, G_NORMALIZE_NFKD); break;
        case NORM_LOWERCASE: next = g_utf8_strdown (s, -1); break;
        case NORM_PREPEND: next = s[0] ? g_strconcat (step->text, s, NULL) : g_strdup (s); break;
        case NORM_REPLACE:
          next = g_regex_replace_literal (step->regex, s, -1, 0, step->text, 0, NULL);
          break;
        }
      if (next != NULL)
        {
          g_free (s);
          s = next;
        }
    }
  return s;
}

static void
add_piece (GArray *out, const char *text, gsize length, gboolean at_start)
{
  Piece p = { g_strndup (text, length), at_start };
  if (length > 0)
    g_array_append_val (out, p);
  else
    g_free (p.text);
}

/* Splits @p by @regex with @behavior, appending to @out */
static void
split_piece (const Piece *p, GRegex *regex, SplitBehavior behavior, GArray *out)
{
  g_autoptr(GMatchInfo) match = NULL;
  gsize length = strlen (p->text), last = 0, pending = 0;
  gboolean have_pending = FALSE;

  g_regex_match (regex, p->text, 0, &match);
  while (g_match_info_matches (match))
    {
      gint start, end;
      g_match_info_fetch_pos (match, 0, &start, &end);
      if (end == start)
        {
          g_match_info_next (match, NULL);
          continue;
        }
      switch (behavior)
        {
        case SPLIT_ISOLATED:
          add_piece (out, p->text + last, start - last, p->at_start && last == 0);
          add_piece (out, p->text + start, end - start, p->at_start && start == 0);
          break;
        case SPLIT_REMOVED:
          add_piece (out, p->text + last, start - last, p->at_start && last == 0);
          break;
        case SPLIT_MERGED_WITH_PREVIOUS:
          add_piece (out, p->text + last, end - last, p->at_start && last == 0);
          break;
        case SPLIT_MERGED_WITH_NEXT:
          if (have_pending)
            add_piece (out, p->text + pending, start - pending, p->at_start && pending == 0);
          else
            add_piece (out, p->text + last, start - last, p->at_start && last == 0);
          pending = start;
          have_pending = TRUE;
          break;
        }
      last = end;
      g_match_info_next (match, NULL);
    }
  if (behavior == SPLIT_MERGED_WITH_NEXT && have_pending)
    add_piece (out, p->text + pending, length - pending, p->at_start && pending == 0);
  else
    add_piece (out, p->text + last, length - last, p->at_start && last == 0);
}

static GArray *
pre_tokenize (QuarkTokenizer *self, char *normalized, gboolean at_start)
{
  GArray *pieces = g_array_new (FALSE, FALSE, sizeof (Piece));
  Piece first = { normalized, at_start };

  g_array_set_clear_func (pieces, piece_clear);
  g_array_append_val (pieces, first);
  for (guint i = 0; i < self->pre_steps->len; i++)
    {
      PreStep *step = &g_array_index (self->pre_steps, PreStep, i);
      GArray *next = g_array_new (FALSE, FALSE, sizeof (Piece));

      g_array_set_clear_func (next, piece_clear);
      for (guint j = 0; j < pieces->len; j++)
        {
          Piece *p = &g_array_index (pieces, Piece, j);

          if (step->kind == PRE_BYTE_LEVEL && step->add_prefix_space && p->text[0] != ' ')
            {
              char *prefixed = g_strconcat (" ", p->text, NULL);
              g_free (p->text);
              p->text = prefixed;
            }
          if (step->kind == PRE_METASPACE)
            {
              g_autoptr(GString) s = g_string_new (NULL);
              for (const char *c = p->text; *c; c++)
                if (*c == ' ')
                  g_string_append (s, step->replacement);
                else
                  g_string_append_c (s, *c);
              if ((step->prepend == PREPEND_ALWAYS || (step->prepend == PREPEND_FIRST && p->at_start)) &&
                  !g_str_has_prefix (s->str, step->replacement))
                g_string_prepend (s, step->replacement);
              g_free (p->text);
              p->text = g_string_free (g_steal_pointer (&s), FALSE);
            }
          if (step->regex)
            split_piece (p, step->regex, step->behavior, next);
          else
            add_piece (next, p->text, strlen (p->text), p->at_start);
        }
      if (step->kind == PRE_BYTE_LEVEL)
        for (guint j = 0; j < next->len; j++)
          {
            Piece *p = &g_array_index (next, Piece, j);
            GString *mapped = g_string_sized_new (strlen (p->text) * 2);
            for (const guint8 *c = (const guint8 *) p->text; *c; c++)
              g_string_append (mapped, self->byte_chars[*c]);
            g_free (p->text);
            p->text = g_string_free (mapped, FALSE);
          }
      g_array_unref (pieces);
      pieces = next;
    }
  return pieces;
}

typedef struct {
  guint32 id;
  gint prev, next;
  gboolean alive;
} Symbol;

typedef struct {
  guint32 rank;
  gint pos;
  guint32 left, right, id;
} Candidate;

static inline gboolean
candidate_before (const Candidate *a, const Candidate *b)
{
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push (GArray *heap, Candidate c)
{
  guint i;

  g_array_append_val (heap, c);
  i = heap->len - 1;
  while (i > 0)
    {
      guint parent = (i - 1) / 2;
      Candidate *h = (Candidate *) heap->data;
      if (!candidate_before (&h[i], &h[parent]))
        break;
      Candidate t = h[i];
      h[i] = h[parent];
      h[parent] = t;
      i = parent;
    }
}

static Candidate
heap_pop (GArray *heap)
{
  Candidate *h = (Candidate *) heap->data;
  Candidate top = h[0];
  guint i = 0, n;

  h[0] = h[heap->len - 1];
  g_array_set_size (heap, heap->len - 1);
  n = heap->len;
  h = (Candidate *) heap->data;
  for (;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      if (l < n && candidate_before (&h[l], &h[m]))
        m = l;
      if (r < n && candidate_before (&h[r], &h[m]))
        m = r;
      if (m == i)
        break;
      Candidate t = h[i];
      h[i] = h[m];
      h[m] = t;
      i = m;
    }
  return top;
}

static void
push_pair (QuarkTokenizer *self, GArray *heap, const Symbol *symbols, gint pos)
{
  Candidate c;
  gint next;

  if (pos < 0 || (next = symbols[pos].next) < 0)
    return;
  c.pos = pos;
  c.left = symbols[pos].id;
  c.right = symbols[next].id;
  if (merge_table_lookup (&self->merges, c.left, c.right, &c.rank, &c.id))
    heap_push (heap, c);
}

/* The ids of one pre-tokenized piece */
static GArray *
bpe (QuarkTokenizer *self, const char *piece)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr(GArray) symbols = g_array_new (FALSE, FALSE, sizeof (Symbol));
  g_autoptr(GArray) heap = g_array_new (FALSE, FALSE, sizeof (Candidate));
  gboolean last_unknown = FALSE;
  gint id;
  Symbol *s;

  if (self->ignore_merges && (id = vocab_id (self, piece)) >= 0)
    {
      guint32 u = (guint32) id;
      g_array_append_val (ids, u);
      return ids;
    }
  for (const char *c = piece; *c; c = g_utf8_next_char (c))
    {
      char one[8] = { 0 };
      gsize n = g_utf8_next_char (c) - c;
      Symbol sym = { 0, -1, -1, TRUE };

      memcpy (one, c, MIN (n, sizeof one - 1));
      if ((id = vocab_id (self, one)) >= 0)
        {
          sym.id = (guint32) id;
          g_array_append_val (symbols, sym);
          last_unknown = FALSE;
          continue;
        }
      if (self->byte_fallback)
        {
          gboolean all = TRUE;
          for (gsize k = 0; k < n; k++)
            all = all && self->byte_ids[(guint8) c[k]] >= 0;
          if (all)
            {
              for (gsize k = 0; k < n; k++)
                {
                  sym.id = (guint32) self->byte_ids[(guint8) c[k]];
                  g_array_append_val (symbols, sym);
                }
              last_unknown = FALSE;
              continue;
            }
        }
      if (self->unk_id >= 0 && !(self->fuse_unk && last_unknown))
        {
          sym.id = (guint32) self->unk_id;
          g_array_append_val (symbols, sym);
        }
      last_unknown = TRUE;
    }

  s = (Symbol *) symbols->data;
  for (guint i = 0; i < symbols->len; i++)
    {
      s[i].prev = (gint) i - 1;
      s[i].next = i + 1 < symbols->len ? (gint) i + 1 : -1;
    }
  for (guint i = 0; i + 1 < symbols->len; i++)
    push_pair (self, heap, s, (gint) i);
  while (heap->len > 0)
    {
      Candidate c = heap_pop (heap);
      gint right = s[c.pos].next;

      if (!s[c.pos].alive || s[c.pos].id != c.left || right < 0 || s[right].id != c.right)
        continue;
      s[c.pos].id = c.id;
      s[right].alive = FALSE;
      s[c.pos].next = s[right].next;
      if (s[right].next >= 0)
        s[s[right].next].prev = c.pos;
      push_pair (self, heap, s, s[c.pos].prev);
      push_pair (self, heap, s, c.pos);
    }
  for (gint i = symbols->len > 0 ? 0 : -1; i >= 0; i = s[i].next)
    g_array_append_val (ids, s[i].id);
  return ids;
}

static void
encode_piece (QuarkTokenizer *self, const char *piece, GArray *out)
{
  GArray *ids;

  pthread_mutex_lock (&self->cache_lock);
  ids = g_hash_table_lookup (self->cache, piece);
  if (ids)
    {
      g_array_append_vals (out, ids->data, ids->len);
      pthread_mutex_unlock (&self->cache_lock);
      return;
    }
  pthread_mutex_unlock (&self->cache_lock);

  ids = bpe (self, piece);
  g_array_append_vals (out, ids->data, ids->len);
  pthread_mutex_lock (&self->cache_lock);
  if (g_hash_table_size (self->cache) >= PIECE_CACHE_MAX)
    g_hash_table_remove_all (self->cache);
  g_hash_table_replace (self->cache, g_strdup (piece), ids);
  pthread_mutex_unlock (&self->cache_lock);
}

static void
encode_segment (QuarkTokenizer *self, const char *text, gsize length, gboolean at_start, GArray *out)
{
  g_autoptr(GArray) pieces = NULL;

  if (length == 0)
    return;
  pieces = pre_tokenize (self, normalize (self, text, length), at_start);
  for (guint i = 0; i < pieces->len; i++)
    encode_piece (self, g_array_index (pieces, Piece, i).text, out);
}

static gboolean
is_word_char (const char *text, gsize length, gssize at)
{
  gunichar c;

  if (at < 0 || (gsize) at >= length)
    return FALSE;
  c = g_utf8_get_char (text + at);
  return g_unichar_isalnum (c) || c == '_';
}

/* The added token at @at, the longest one first, or NULL */
static AddedToken *
added_at (QuarkTokenizer *self, const char *text, gsize length, gsize at)
{
  GPtrArray *candidates = self->added_by_byte[(guint8) text[at]];

  for (guint i = 0; candidates && i < candidates->len; i++)
    {
      AddedToken *t = g_ptr_array_index (candidates, i);
      if (t->length <= length - at && memcmp (text + at, t->content, t->length) == 0)
        {
          if (t->single_word)
            {
              const char *prev = at > 0 ? g_utf8_find_prev_char (text, text + at) : NULL;
              if ((prev && is_word_char (text, length, prev - text)) || is_word_char (text, length, at + t->length))
                continue;
            }
          return t;
        }
    }
  return NULL;
}

/**
 * quark_tokenizer_encode:
 * @self: a #QuarkTokenizer
 * @text: UTF-8 text
 * @length: the length of @text in bytes, or -1 when it is NUL-terminated
 * @add_special_tokens: add BOS and EOS as the tokenizer's configuration says
 * @n_ids: (out): return location for the number of ids
 * @error: return location for a #GError
 *
 * Splits @text into token ids, as the `tokenizers` library's `encode`
 * does. Fails with %QUARK_ERROR_INVALID_ARGUMENT when @text is not valid
 * UTF-8.
 *
 * Returns: (array length=n_ids) (transfer full): the ids, or %NULL with
 *   @error set
 */
guint32 *
quark_tokenizer_encode (QuarkTokenizer *self, const char *text, gssize length, gboolean add_special_tokens,
                        gsize *n_ids, GError **error)
{
  g_autoptr(GArray) out = g_array_new (FALSE, FALSE, sizeof (guint32));
  gsize n, start = 0, at = 0;
  const char *bad;

  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), NULL);
  g_return_val_if_fail (text != NULL || length == 0, NULL);
  g_return_val_if_fail (n_ids != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  *n_ids = 0;
  n = length < 0 ? strlen (text) : (gsize) length;
  if (!g_utf8_validate_len (text, n, &bad))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the text is not valid UTF-8 (at byte %" G_GSIZE_FORMAT ")", (gsize) (bad - text));
      return NULL;
    }
  if (memchr (text, '\0', n) != NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "the text holds a NUL byte (at byte %" G_GSIZE_FORMAT ")",
                   (gsize) ((const char *) memchr (text, '\0', n) - text));
      return NULL;
    }
  if (add_special_tokens && self->add_bos)
    {
      guint32 id = (guint32) self->bos_id;
      g_array_append_val (out, id);
    }
  while (at < n)
    {
      AddedToken *t = added_at (self, text, n, at);
      gsize seg_end, next;

      if (t == NULL)
        {
          at = g_utf8_next_char (text + at) - text;
          continue;
        }
      seg_end = at;
      if (t->lstrip)
        while (seg_end > start && g_ascii_isspace (text[seg_end - 1]))
          seg_end--;
      next = at + t->length;
      if (t->rstrip)
        while (next < n && g_ascii_isspace (text[next]))
          next++;
      encode_segment (self, text + start, seg_end - start, start == 0, out);
      g_array_append_val (out, t->id);
      start = at = next;
    }
  encode_segment (self, text + start, n - start, start == 0, out);
  if (add_special_tokens && self->add_eos)
    {
      guint32 id = (guint32) self->eos_id;
      g_array_append_val (out, id);
    }
  *n_ids = out->len;
  if (out->len == 0)
    return g_new0 (guint32, 1);   /* empty but not NULL: NULL means an error */
  return (guint32 *) g_array_free (g_steal_pointer (&out), FALSE);
}

/**
 * quark_tokenizer_decode:
 * @self: a #QuarkTokenizer
 * @ids: (array length=n_ids): token ids
 * @n_ids: the number of ids
 * @skip_special_tokens: leave special tokens out
 * @error: return location for a #GError
 *
 * The text of @ids: byte-level tokens mapped back to their bytes, or
 * `▁` back to spaces and `<0xXX>` tokens to bytes (the space prepended
 * at the start removed). Bytes that do not form valid UTF-8 are replaced
 * by U+FFFD. Fails with %QUARK_ERROR_INVALID_ARGUMENT for an id outside the
 * vocabulary.
 *
 * Returns: (transfer full): the text, or %NULL with @error set
 */
char *
quark_tokenizer_decode (QuarkTokenizer *self, const guint32 *ids, gsize n_ids, gboolean skip_special_tokens,
                        GError **error)
{
  g_autoptr(GString) bytes = g_string_new (NULL);
  gboolean first = TRUE;

  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), NULL);
  g_return_val_if_fail (ids != NULL || n_ids == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  for (gsize i = 0; i < n_ids; i++)
    {
      const char *token = ids[i] < self->tokens->len ? g_ptr_array_index (self->tokens, ids[i]) : NULL;
      AddedToken *added = g_hash_table_lookup (self->added_ids, GUINT_TO_POINTER (ids[i]));
      guint byte;

      if (token == NULL)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "token id %u (at %" G_GSIZE_FORMAT ") is not in the vocabulary",
                       ids[i], i);
          return NULL;
        }
      if (added)
        {
          if (!(skip_special_tokens && added->special))
            g_string_append (bytes, token);
          first = FALSE;
          continue;
        }
      if (self->byte_level)
        {
          for (const char *c = token; *c; c = g_utf8_next_char (c))
            {
              gunichar u = g_utf8_get_char (c);
              if (u < G_N_ELEMENTS (self->char_bytes) && self->char_bytes[u] >= 0)
                g_string_append_c (bytes, (char) self->char_bytes[u]);
              else
                g_string_append_len (bytes, c, g_utf8_next_char (c) - c);
            }
        }
      else if (self->byte_fallback && strlen (token) == 6 && sscanf (token, "<0x%2X>", &byte) == 1)
        g_string_append_c (bytes, (char) byte);
      else
        {
          const char *t = token;
          if (self->metaspace)
            {
              g_autofree char *spaced = NULL;
              g_auto(GStrv) parts = g_strsplit (token, self->metaspace, -1);
              spaced = g_strjoinv (" ", parts);
              t = spaced;
              if (first && self->strip_decoded_space && t[0] == ' ')
                t++;
              g_string_append (bytes, t);
            }
          else
            g_string_append (bytes, t);
        }
      first = FALSE;
    }
  return g_utf8_make_valid (bytes->str, bytes->len);
}

/**
 * quark_tokenizer_get_vocab_size:
 * @self: a #QuarkTokenizer
 *
 * The size of the id space.
 *
 * Returns: the number of ids (the largest id plus one, added tokens
 *   included)
 */
guint
quark_tokenizer_get_vocab_size (QuarkTokenizer *self)
{
  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), 0);
  return self->tokens->len;
}

/**
 * quark_tokenizer_get_bos_id:
 * @self: a #QuarkTokenizer
 *
 * The beginning-of-sequence token.
 *
 * Returns: the id of the beginning-of-sequence token, or -1 when the
 *   tokenizer has none
 */
gint
quark_tokenizer_get_bos_id (QuarkTokenizer *self)
{
  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), -1);
  return self->bos_id;
}

/**
 * quark_tokenizer_get_eos_id:
 * @self: a #QuarkTokenizer
 *
 * The end-of-sequence token.
 *
 * Returns: the id of the end-of-sequence token, or -1 when the tokenizer
 *   has none
 */
gint
quark_tokenizer_get_eos_id (QuarkTokenizer *self)
{
  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), -1);
  return self->eos_id;
}

/**
 * quark_tokenizer_token_to_id:
 * @self: a #QuarkTokenizer
 * @token: a token as the vocabulary spells it
 *
 * Looks a token up in the vocabulary.
 *
 * Returns: the token's id, or -1 when it is not in the vocabulary
 */
gint
quark_tokenizer_token_to_id (QuarkTokenizer *self, const char *token)
{
  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), -1);
  g_return_val_if_fail (token != NULL, -1);
  return vocab_id (self, token);
}

/**
 * quark_tokenizer_id_to_token:
 * @self: a #QuarkTokenizer
 * @id: a token id
 *
 * The vocabulary's spelling of an id.
 *
 * Returns: (nullable): the token as the vocabulary spells it, or %NULL
 *   for an unused id
 */
const char *
quark_tokenizer_id_to_token (QuarkTokenizer *self, guint32 id)
{
  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), NULL);
  return id < self->tokens->len ? g_ptr_array_index (self->tokens, id) : NULL;
}

/**
 * quark_tokenizer_get_model_kind:
 * @self: a #QuarkTokenizer
 *
 * Which family of BPE the tokenizer is.
 *
 * Returns: `"byte-level-bpe"` or `"bpe"` (SentencePiece-style)
 */
const char *
quark_tokenizer_get_model_kind (QuarkTokenizer *self)
{
  g_return_val_if_fail (QUARK_IS_TOKENIZER (self), NULL);
  return self->kind;
}
