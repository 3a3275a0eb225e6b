/* quark-format-gguf.c: GGUF, the file format of llama.cpp
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE 1   /* renameat2 */
#include "config.h"

#include "../quark-format-private.h"
#include "quark-gguf-quants.h"
#include "quark-gguf-mix.h"
#include "quark-gguf-private.h"
#include "quark-gguf-bridge.h"
#include "kernels/quark-kernels.h"
#include "quark-json.h"
#include "quark-json-private.h"
#include "quark-model-private.h"
#include "quark-checkpoint-writer-private.h"
#include "runtime/quark-parallel-private.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

/* GGUF version 3 (the specification is docs/gguf.md of the ggml
 * repository; constants from llama.cpp's gguf-py/gguf/constants.py):
 *
 *   "GGUF" (u32 0x46554747 little-endian), version u32 = 3,
 *   tensor count u64, key-value count u64,
 *   key-values: key (u64 length + UTF-8), value type u32, value
 *     (strings: u64 length + bytes; arrays: element type u32, count u64,
 *     elements),
 *   tensor infos: name, n_dims u32, ne[n_dims] u64 (ne[0] the row length,
 *     the last dimension of the PyTorch shape), ggml type u32, offset u64
 *     (from the start of the data, a multiple of the alignment),
 *   padding to general.alignment (32 by default), then the data.
 *
 * A Hugging Face Llama-family checkpoint becomes what llama.cpp's
 * convert_hf_to_gguf.py writes: tensor names (token_embd, blk.N.attn_q, …,
 * output_norm, output), the rows of attn_q and attn_k permuted for the llama
 * architecture (LlamaModel.permute: per head, the two halves of the rotary
 * dimensions interleaved), 1-D tensors and norms in F32, the hyperparameters
 * under ARCH.*, and the tokenizer from tokenizer.json. Every 2-D weight is
 * then stored in the chosen type, as llama-quantize --pure does; the bytes
 * are llama.cpp's reference quantizers' (quark-gguf-quants.c), or with an
 * importance matrix (quark_checkpoint_format_set_importance()) those of
 * its importance paths, as llama-quantize --imatrix. */

struct _QuarkFormatGguf
{
  QuarkCheckpointFormat parent_instance;
  QuarkGgufInexact inexact;   /* a quantized model's weights that do not carry over */
  GPtrArray *report;          /* what the last write did with them */
};

enum { PROP_0, PROP_INEXACT, PROP_REPORT, N_PROPS };
static GParamSpec *gguf_props[N_PROPS];

G_DECLARE_FINAL_TYPE (QuarkFormatGguf, _quark_format_gguf, QUARK, FORMAT_GGUF, QuarkCheckpointFormat)
G_DEFINE_FINAL_TYPE (QuarkFormatGguf, _quark_format_gguf, QUARK_TYPE_CHECKPOINT_FORMAT)

#define GGUF_MAGIC 0x46554747u
#define GGUF_VERSION 3
#define GGUF_ALIGNMENT 32
#define GGUF_QUANTIZATION_VERSION 2

enum {
  GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4, GGUF_INT32 = 5,
  GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
  GGUF_FLOAT64 = 12,
};

/* tokenizer.ggml.token_type values (gguf-py's TokenType) */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5,
       TOKEN_BYTE = 6 };

static gboolean
gguf_error (GError **error, const char *path, const char *what)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", path, what);
  return FALSE;
}

/* ---- writing key-values ------------------------------------------------- */

static void
put_u32 (GByteArray *b, guint32 v)
{
  guint32 le = GUINT32_TO_LE (v);
  g_byte_array_append (b, (const guint8 *) &le, 4);
}

static void
put_u64 (GByteArray *b, guint64 v)
{
  guint64 le = GUINT64_TO_LE (v);
  g_byte_array_append (b, (const guint8 *) &le, 8);
}

static void
put_f32 (GByteArray *b, float v)
{
  guint32 bits;
  memcpy (&bits, &v, 4);
  put_u32 (b, bits);
}

static void
put_str (GByteArray *b, const char *s)
{
  put_u64 (b, strlen (s));
  g_byte_array_append (b, (const guint8 *) s, strlen (s));
}

typedef struct {
  GByteArray *bytes;
  guint64 count;
} Kv;

/* magic, version, the counts and the key-values */
static void
put_header (GByteArray *head, guint64 n_tensors, const Kv *kv)
{
  put_u32 (head, GGUF_MAGIC);
  put_u32 (head, GGUF_VERSION);
  put_u64 (head, n_tensors);
  put_u64 (head, kv->count);
  g_byte_array_append (head, kv->bytes->data, kv->bytes->len);
}

/* a tensor info: name, n_dims, ne (ne[0] the row length), ggml type, offset */
static void
put_tensor_info (GByteArray *head, const char *name, guint n_dims, const guint64 *ne, guint32 type, guint64 offset)
{
  put_str (head, name);
  put_u32 (head, n_dims);
  for (guint k = 0; k < n_dims; k++)
    put_u64 (head, ne[k]);
  put_u32 (head, type);
  put_u64 (head, offset);
}

static void
kv_key (Kv *kv, const char *key, guint32 type)
{
  put_str (kv->bytes, key);
  put_u32 (kv->bytes, type);
  kv->count++;
}

static void
kv_u32 (Kv *kv, const char *key, guint32 v)
{
  kv_key (kv, key, GGUF_UINT32);
  put_u32 (kv->bytes, v);
}

static void
kv_f32 (Kv *kv, const char *key, float v)
{
  kv_key (kv, key, GGUF_FLOAT32);
  put_f32 (kv->bytes, v);
}

static void
kv_bool (Kv *kv, const char *key, gboolean v)
{
  kv_key (kv, key, GGUF_BOOL);
  g_byte_array_append (kv->bytes, (const guint8 *) (v ? "\1" : "\0"), 1);
}

static void
kv_str (Kv *kv, const char *key, const char *v)
{
  kv_key (kv, key, GGUF_STRING);
  put_str (kv->bytes, v);
}

static void
kv_strv (Kv *kv, const char *key, GPtrArray *v)
{
  kv_key (kv, key, GGUF_ARRAY);
  put_u32 (kv->bytes, GGUF_STRING);
  put_u64 (kv->bytes, v->len);
  for (guint i = 0; i < v->len; i++)
    put_str (kv->bytes, g_ptr_array_index (v, i));
}

/* an array of 32-bit elements (int32 or float32, @v in host order) */
static void
kv_array32 (Kv *kv, const char *key, guint32 type, const void *v, gsize n)
{
  kv_key (kv, key, GGUF_ARRAY);
  put_u32 (kv->bytes, type);
  put_u64 (kv->bytes, n);
  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;
      memcpy (&bits, (const guint8 *) v + 4 * i, 4);
      put_u32 (kv->bytes, bits);
    }
}

static void
kv_i32v (Kv *kv, const char *key, const gint32 *v, gsize n)
{
  kv_array32 (kv, key, GGUF_INT32, v, n);
}

/* ---- the Llama family: hyperparameters and tensor names ------------------- */

typedef struct {
  const char *arch;        /* llama, qwen2 */
  gboolean permute_qk;     /* llama's rotary row order */
  gint64 n_head, n_head_kv, n_embd, n_layer;
} Arch;

static gboolean
int_member (JsonObject *o, const char *key, gint64 *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

static gboolean
num_member (JsonObject *o, const char *key, double *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      (json_node_get_value_type (n) != G_TYPE_INT64 && json_node_get_value_type (n) != G_TYPE_DOUBLE))
    return FALSE;
  *out = json_node_get_value_type (n) == G_TYPE_INT64 ? (double) json_node_get_int (n) : json_node_get_double (n);
  return TRUE;
}

/* config.json of the model (its metadata) */
static JsonObject *
hf_config (QuarkModel *model, GError **error)
{
  JsonNode *m = quark_model_get_metadata (model);
  if (m == NULL || !JSON_NODE_HOLDS_OBJECT (m) ||
      !json_object_has_member (json_node_get_object (m), "model_type"))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "GGUF needs the model's config.json (model_type, hidden_size, …), which this model lacks");
      return NULL;
    }
  return json_node_get_object (m);
}

static gboolean
arch_for (JsonObject *cfg, Arch *a, GError **error)
{
  const char *type = json_object_get_string_member_with_default (cfg, "model_type", "");

  memset (a, 0, sizeof *a);
  if (g_str_equal (type, "llama") || g_str_equal (type, "mistral"))
    {
      a->arch = "llama";
      a->permute_qk = TRUE;
    }
  else if (g_str_equal (type, "qwen2"))
    a->arch = "qwen2";
  else
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "config.json: model_type \"%s\" has no GGUF conversion here (llama, mistral and qwen2 have)", type);
      return FALSE;
    }
  if (!int_member (cfg, "num_attention_heads", &a->n_head) || !int_member (cfg, "hidden_size", &a->n_embd) ||
      !int_member (cfg, "num_hidden_layers", &a->n_layer) || a->n_head <= 0 || a->n_embd <= 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "config.json: num_attention_heads, hidden_size and num_hidden_layers are needed for GGUF");
      return FALSE;
    }
  if (!int_member (cfg, "num_key_value_heads", &a->n_head_kv))
    a->n_head_kv = a->n_head;
  if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv != 0 || a->n_layer < 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "config.json: num_key_value_heads must divide num_attention_heads, and num_hidden_layers be "
                   "non-negative");
      return FALSE;
    }
  return TRUE;
}

/* The GGUF name of a Hugging Face tensor, or NULL when the converter drops it.
 * *heads is the head count of a permuted attn_q/attn_k, else 0. */
static char *
gguf_name (const Arch *a, const char *hf, gint64 *heads)
{
  static const struct { const char *hf, *gguf; } layer_map[] = {
    { "input_layernorm.weight", "attn_norm.weight" },
    { "post_attention_layernorm.weight", "ffn_norm.weight" },
    { "self_attn.q_proj.weight", "attn_q.weight" },
    { "self_attn.k_proj.weight", "attn_k.weight" },
    { "self_attn.v_proj.weight", "attn_v.weight" },
    { "self_attn.o_proj.weight", "attn_output.weight" },
    { "self_attn.q_proj.bias", "attn_q.bias" },
    { "self_attn.k_proj.bias", "attn_k.bias" },
    { "self_attn.v_proj.bias", "attn_v.bias" },
    { "mlp.gate_proj.weight", "ffn_gate.weight" },
    { "mlp.up_proj.weight", "ffn_up.weight" },
    { "mlp.down_proj.weight", "ffn_down.weight" },
  };
  guint64 block;
  char *end;

  *heads = 0;
  if (g_str_equal (hf, "model.embed_tokens.weight"))
    return g_strdup ("token_embd.weight");
  if (g_str_equal (hf, "model.norm.weight"))
    return g_strdup ("output_norm.weight");
  if (g_str_equal (hf, "lm_head.weight"))
    return g_strdup ("output.weight");
  if (!g_str_has_prefix (hf, "model.layers."))
    return NULL;
  block = g_ascii_strtoull (hf + strlen ("model.layers."), &end, 10);
  if (end == hf + strlen ("model.layers.") || *end != '.')
    return NULL;
  for (guint i = 0; i < G_N_ELEMENTS (layer_map); i++)
    if (g_str_equal (end + 1, layer_map[i].hf))
      {
        if (a->permute_qk && g_str_has_prefix (layer_map[i].gguf, "attn_q."))
          *heads = a->n_head;
        else if (a->permute_qk && g_str_has_prefix (layer_map[i].gguf, "attn_k."))
          *heads = a->n_head_kv;
        return g_strdup_printf ("blk.%" G_GUINT64_FORMAT ".%s", block, layer_map[i].gguf);
      }
  return NULL;
}

/* llama's rotary permutation of the rows of [rows, cols] (reshape (heads,
 * 2, half, cols), swap the middle axes: output row h*(2*half) + i*2 + j is
 * input row h*(2*half) + j*half + i), undone: a GGUF tensor's rows back in
 * the Hugging Face order (the writer reads its input rows in the permuted
 * order instead, permuted_row ()) */
static void
unpermute_rows (const float *in, float *out, gsize rows, gsize cols, gint64 heads)
{
  gsize half = rows / (gsize) heads / 2;

  for (gsize h = 0; h < (gsize) heads; h++)
    for (gsize j = 0; j < 2; j++)
      for (gsize i = 0; i < half; i++)
        {
          gsize src = h * 2 * half + j * half + i, dst = h * 2 * half + i * 2 + j;
          memcpy (out + src * cols, in + dst * cols, cols * sizeof (float));
        }
}

/* ---- the tokenizer --------------------------------------------------------- */

/* a token or special token name of tokenizer_config.json (a string or an
 * object with "content") */
static const char *
special_name (JsonObject *tc, const char *key)
{
  JsonNode *n = tc ? json_object_get_member (tc, key) : NULL;
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    return json_node_get_string (n);
  if (n && JSON_NODE_HOLDS_OBJECT (n))
    return json_object_get_string_member_with_default (json_node_get_object (n), "content", NULL);
  return NULL;
}

/* TRUE when @n is a pre-tokenizer object of type @type */
static gboolean
pre_tokenizer_is (JsonNode *n, const char *type)
{
  return n && JSON_NODE_HOLDS_OBJECT (n) &&
         g_strcmp0 (json_object_get_string_member_with_default (json_node_get_object (n), "type", ""), type) == 0;
}

/* llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json: from
 * the structure and the split pattern (convert_hf_to_gguf.py identifies it
 * by hashing the tokens of a test text; the patterns below are those
 * tokenizers'). SmolLM's chain, every digit on its own and then GPT-2's
 * ByteLevel split (a Sequence of Digits with individual_digits and
 * ByteLevel with use_regex), is llama.cpp's "smollm": its regexes \p{N}
 * and then GPT-2's (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM). */
static const char *
pre_tokenizer_name (JsonObject *tok)
{
  static const struct { const char *needle, *name; } patterns[] = {
    /* Llama 3 */
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}", "llama-bpe" },
    /* Qwen2 */
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+", "qwen2" },
  };
  JsonNode *pre = json_object_get_member (tok, "pre_tokenizer");
  g_autofree char *text = NULL;
  JsonObject *o;

  if (pre == NULL || !JSON_NODE_HOLDS_OBJECT (pre))
    return NULL;
  o = json_node_get_object (pre);
  /* GPT-2: ByteLevel with its own regex */
  if (pre_tokenizer_is (pre, "ByteLevel") && json_object_get_boolean_member_with_default (o, "use_regex", TRUE))
    return "gpt-2";
  /* SmolLM: Digits (each digit alone), then GPT-2's */
  if (pre_tokenizer_is (pre, "Sequence") && json_object_has_member (o, "pretokenizers") &&
      JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, "pretokenizers")))
    {
      JsonArray *items = json_object_get_array_member (o, "pretokenizers");
      JsonNode *digits = json_array_get_length (items) == 2 ? json_array_get_element (items, 0) : NULL;
      JsonNode *bytes = json_array_get_length (items) == 2 ? json_array_get_element (items, 1) : NULL;
      if (pre_tokenizer_is (digits, "Digits") && pre_tokenizer_is (bytes, "ByteLevel") &&
          json_object_get_boolean_member_with_default (json_node_get_object (digits), "individual_digits", FALSE) &&
          json_object_get_boolean_member_with_default (json_node_get_object (bytes), "use_regex", TRUE))
        return "smollm";
    }
  text = quark_json_to_string (pre, FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (patterns); i++)
    {
      g_autofree char *escaped = g_strescape (patterns[i].needle, NULL);
      if (strstr (text, patterns[i].needle) || strstr (text, escaped))
        return patterns[i].name;
    }
  return NULL;
}

/* tokenizer_config.json as Hugging Face writes it: json-glib's own parser,
 * which takes integers beyond 64 bits (model_max_length is often 1e30) */
static JsonNode *
read_lenient_json (const char *path, const char *what, GError **error)
{
  gsize length;
  g_autofree char *text = _quark_input_read (path, 16 << 20, what, &length, error);
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local = NULL;

  if (text == NULL)
    return NULL;
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, (gssize) length, &local))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", path, local->message);
      return NULL;
    }
  return json_node_copy (json_parser_get_root (parser));
}

/* tokenizer.json's model.vocab, read member by member (_quark_json_each():
 * a tree of a vocabulary of 150 000 tokens, with its seal and its free,
 * took most of the conversion's time before the first tensor): the names
 * in the file's order and their values (-1 for one that is not an
 * integer). @present: model.vocab is an object. */
typedef struct {
  gboolean present;
  GPtrArray *names;
  GArray *ids;   /* gint64 */
} Vocab;

static void
vocab_clear (Vocab *v)
{
  g_clear_pointer (&v->names, g_ptr_array_unref);
  g_clear_pointer (&v->ids, g_array_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Vocab, vocab_clear)

static gboolean
vocab_member (const char *name, JsonNode *value, gpointer data, GError **error)
{
  Vocab *v = data;
  gint64 id = JSON_NODE_HOLDS_VALUE (value) && json_node_get_value_type (value) == G_TYPE_INT64
              ? json_node_get_int (value) : -1;

  g_ptr_array_add (v->names, g_strdup (name));
  g_array_append_val (v->ids, id);
  return TRUE;
}

static gboolean
read_vocab (const char *text, QuarkJsonSpan span, const char *path, Vocab *v, GError **error)
{
  v->names = g_ptr_array_new_with_free_func (g_free);
  v->ids = g_array_new (FALSE, FALSE, sizeof (gint64));
  v->present = span.length > 0 && text[span.offset] == '{';
  return !v->present || _quark_json_each (text, span, path, vocab_member, v, error);
}

/* the value of @name in the vocabulary, if it is there */
static gboolean
vocab_lookup (const Vocab *v, const char *name, gint64 *id)
{
  for (guint i = 0; i < v->names->len; i++)
    if (g_str_equal (g_ptr_array_index (v->names, i), name))
      {
        *id = g_array_index (v->ids, gint64, i);
        return TRUE;
      }
  return FALSE;
}

/* The special token ids of tokenizer_config.json, and whether BOS and EOS
 * are added (tokenizer_config.json's add_*_token, else the post-processor's
 * template, as gguf-py's SpecialVocab reads them), and the chat template. */
static void
add_specials (Kv *kv, JsonObject *tok, JsonObject *tc, const Vocab *vocab, GHashTable *added)
{
  static const struct { const char *config, *key; } specials[] = {
    { "bos_token", "tokenizer.ggml.bos_token_id" },
    { "eos_token", "tokenizer.ggml.eos_token_id" },
    { "unk_token", "tokenizer.ggml.unknown_token_id" },
    { "pad_token", "tokenizer.ggml.padding_token_id" },
  };
  JsonNode *pp = json_object_get_member (tok, "post_processor");
  gint add_bos = -1, add_eos = -1;

  for (guint i = 0; i < G_N_ELEMENTS (specials); i++)
    {
      const char *name = special_name (tc, specials[i].config);
      gpointer id = name ? g_hash_table_lookup (added, name) : NULL;
      gint64 vid;
      if (name && id == NULL && vocab_lookup (vocab, name, &vid))
        id = GINT_TO_POINTER (vid + 1);
      if (id)
        kv_u32 (kv, specials[i].key, (guint32) (GPOINTER_TO_INT (id) - 1));
    }
  if (pp && JSON_NODE_HOLDS_OBJECT (pp) &&
      g_strcmp0 (json_object_get_string_member_with_default (json_node_get_object (pp), "type", ""),
                 "TemplateProcessing") == 0)
    {
      /* single: [ {SpecialToken: {id: BOS}}, {Sequence: A}, ({SpecialToken: EOS}) ] */
      JsonNode *single = json_object_get_member (json_node_get_object (pp), "single");
      JsonArray *a = single && JSON_NODE_HOLDS_ARRAY (single) ? json_node_get_array (single) : NULL;
      guint n = a ? json_array_get_length (a) : 0;
      if (n > 1)
        {
          for (guint end = 0; end < 2; end++)
            {
              JsonNode *e = json_array_get_element (a, end ? n - 1 : 0);
              JsonNode *st = JSON_NODE_HOLDS_OBJECT (e) ? json_object_get_member (json_node_get_object (e),
                                                                                   "SpecialToken") : NULL;
              const char *id = st && JSON_NODE_HOLDS_OBJECT (st)
                               ? json_object_get_string_member_with_default (json_node_get_object (st), "id", NULL)
                               : NULL;
              const char *want = special_name (tc, end ? "eos_token" : "bos_token");
              if (end)
                add_eos = id != NULL && g_strcmp0 (id, want) == 0;
              else
                add_bos = id != NULL && g_strcmp0 (id, want) == 0;
            }
        }
    }
  if (tc && json_object_has_member (tc, "add_bos_token"))
    add_bos = json_object_get_boolean_member (tc, "add_bos_token");
  if (tc && json_object_has_member (tc, "add_eos_token"))
    add_eos = json_object_get_boolean_member (tc, "add_eos_token");
  if (add_bos >= 0)
    kv_bool (kv, "tokenizer.ggml.add_bos_token", add_bos);
  if (add_eos >= 0)
    kv_bool (kv, "tokenizer.ggml.add_eos_token", add_eos);
  if (tc && json_object_has_member (tc, "chat_template") &&
      json_node_get_value_type (json_object_get_member (tc, "chat_template")) == G_TYPE_STRING)
    kv_str (kv, "tokenizer.chat_template", json_object_get_string_member (tc, "chat_template"));
}

static void
kv_f32v (Kv *kv, const char *key, const float *v, gsize n)
{
  kv_array32 (kv, key, GGUF_FLOAT32, v, n);
}

/* The SentencePiece-style (llama) tokenizer model as convert_hf_to_gguf.py's
 * _set_vocab_llama_hf writes it from tokenizer.json (gguf-py's LlamaHfVocab):
 * the base vocabulary in id order, then the added tokens beyond it; every
 * score -1000; <0xXX> tokens BYTE, special tokens CONTROL, other added
 * tokens USER_DEFINED, the rest NORMAL; tokenizer.ggml.model "llama" with
 * the pre-tokenizer "default". */
static gboolean
add_llama_tokenizer (Kv *kv, JsonObject *tok, JsonObject *tc, const Vocab *vocab, const char *tok_path,
                     gint64 vocab_size, GError **error)
{
  JsonArray *added = json_object_has_member (tok, "added_tokens") &&
                     JSON_NODE_HOLDS_ARRAY (json_object_get_member (tok, "added_tokens"))
                     ? json_object_get_array_member (tok, "added_tokens") : NULL;
  g_autoptr(GPtrArray) tokens = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GHashTable) special = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GHashTable) special_ids = g_hash_table_new (NULL, NULL);
  g_autoptr(GHashTable) added_ids = g_hash_table_new (NULL, NULL);
  g_autofree gint32 *types = NULL;
  g_autofree float *scores = NULL;
  guint base;
  gint64 total;

  if (!vocab->present)
    return gguf_error (error, tok_path, "model.vocab: expected an object");
  base = vocab->names->len;
  g_ptr_array_set_size (tokens, base);
  {
    for (guint i = 0; i < vocab->names->len; i++)
      {
        gint64 id = g_array_index (vocab->ids, gint64, i);
        if (id < 0 || id >= base || g_ptr_array_index (tokens, id) != NULL)
          return gguf_error (error, tok_path, "model.vocab: ids are not 0 to the vocabulary's size, each once");
        tokens->pdata[id] = g_strdup (g_ptr_array_index (vocab->names, i));
      }
  }
  /* added tokens: the specials (by id), and those beyond the base vocabulary */
  for (guint i = 0; added && i < json_array_get_length (added); i++)
    {
      JsonNode *n = json_array_get_element (added, i);
      JsonObject *t = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
      gint64 id = t ? json_object_get_int_member_with_default (t, "id", -1) : -1;
      const char *content = t ? json_object_get_string_member_with_default (t, "content", NULL) : NULL;
      if (content == NULL || id < 0)
        return gguf_error (error, tok_path, "added_tokens: an entry without content or id");
      if (json_object_get_boolean_member_with_default (t, "special", FALSE))
        g_hash_table_add (special_ids, GINT_TO_POINTER ((gint) id + 1));
      g_hash_table_insert (special, (gpointer) json_object_get_string_member (t, "content"),
                           GINT_TO_POINTER ((gint) id + 1));
      if (id >= base)
        g_hash_table_insert (added_ids, GINT_TO_POINTER ((gint) id + 1), (gpointer) content);
    }
  total = base + g_hash_table_size (added_ids);
  for (gint64 id = base; id < total; id++)
    {
      const char *content = g_hash_table_lookup (added_ids, GINT_TO_POINTER ((gint) id + 1));
      if (content == NULL)
        return gguf_error (error, tok_path, "added_tokens: the ids beyond the vocabulary are not consecutive");
      g_ptr_array_add (tokens, g_strdup (content));
    }
  if (total != vocab_size)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "%s: %" G_GINT64_FORMAT " tokens, but config.json's vocab_size is %" G_GINT64_FORMAT
                   " (llama.cpp needs as many tokens as embedding rows)", tok_path, total, vocab_size);
      return FALSE;
    }
  types = g_new (gint32, MAX (total, 1));
  scores = g_new (float, MAX (total, 1));
  for (gint64 id = 0; id < total; id++)
    {
      const char *text = g_ptr_array_index (tokens, id);
      gboolean is_byte = strlen (text) == 6 && g_str_has_prefix (text, "<0x") && text[5] == '>' &&
                         g_ascii_isxdigit (text[3]) && g_ascii_isxdigit (text[4]);
      scores[id] = -1000.0f;
      types[id] = is_byte ? TOKEN_BYTE
                  : g_hash_table_contains (special_ids, GINT_TO_POINTER ((gint) id + 1)) ? TOKEN_CONTROL
                  : id >= base ? TOKEN_USER_DEFINED : TOKEN_NORMAL;
    }
  kv_str (kv, "tokenizer.ggml.model", "llama");
  kv_str (kv, "tokenizer.ggml.pre", "default");
  kv_strv (kv, "tokenizer.ggml.tokens", tokens);
  kv_f32v (kv, "tokenizer.ggml.scores", scores, (gsize) total);
  kv_i32v (kv, "tokenizer.ggml.token_type", types, (gsize) total);
  add_specials (kv, tok, tc, vocab, special);
  return TRUE;
}

/* ---- SentencePiece tokenizer.model -------------------------------------------------- */

/* A protobuf varint at *pos (false past the end or beyond 64 bits). */
static gboolean
pb_varint (const guint8 *d, gsize n, gsize *pos, guint64 *v)
{
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7)
    {
      guint8 b;
      if (*pos >= n)
        return FALSE;
      b = d[(*pos)++];
      *v |= (guint64) (b & 0x7f) << shift;
      if (!(b & 0x80))
        return TRUE;
    }
  return FALSE;
}

/* Skips a field of wire type @wt; *len gets a length-delimited field's size. */
static gboolean
pb_skip (const guint8 *d, gsize n, gsize *pos, guint wt, guint64 *len)
{
  guint64 v;
  *len = 0;
  switch (wt)
    {
    case 0:
      return pb_varint (d, n, pos, &v);
    case 1:
      return (*pos += 8) <= n;
    case 2:
      if (!pb_varint (d, n, pos, len) || *len > n - *pos)
        return FALSE;
      *pos += *len;
      return TRUE;
    case 5:
      return (*pos += 4) <= n;
    default:
      return FALSE;
    }
}

typedef struct {
  char *piece;
  float score;
  int type;           /* SentencePiece's: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6 */
} SpPiece;

static void
sp_piece_clear (gpointer p)
{
  g_free (((SpPiece *) p)->piece);
}

/* The pieces of a SentencePiece ModelProto (field 1, each a message of
 * piece = 1, score = 2, type = 3); the other fields are skipped. */
static GArray *
read_sentencepiece (const char *path, GError **error)
{
  gsize n = 0;
  g_autofree guint8 *d = (guint8 *) _quark_input_read (path, 64 << 20, "tokenizer.model", &n, error);
  g_autoptr(GArray) pieces = NULL;
  gsize pos = 0;

  if (d == NULL)
    return NULL;
  pieces = g_array_new (FALSE, TRUE, sizeof (SpPiece));
  g_array_set_clear_func (pieces, sp_piece_clear);
  while (pos < n)
    {
      guint64 tag, len;
      gsize start;
      SpPiece p = { NULL, 0.0f, 1 };

      if (!pb_varint (d, n, &pos, &tag))
        goto bad;
      start = pos;
      if (!pb_skip (d, n, &pos, (guint) (tag & 7), &len))
        goto bad;
      if ((tag >> 3) != 1 || (tag & 7) != 2)
        continue;
      for (gsize q = start + (pos - start - len); q < pos;)
        {
          guint64 ftag, flen;
          gsize fstart;
          if (!pb_varint (d, pos, &q, &ftag))
            {
              g_free (p.piece);
              goto bad;
            }
          fstart = q;
          if ((ftag >> 3) == 3 && (ftag & 7) == 0)
            {
              guint64 t;
              if (!pb_varint (d, pos, &q, &t))
                {
                  g_free (p.piece);
                  goto bad;
                }
              p.type = (int) t;
              continue;
            }
          if (!pb_skip (d, pos, &q, (guint) (ftag & 7), &flen))
            {
              g_free (p.piece);
              goto bad;
            }
          if ((ftag >> 3) == 1 && (ftag & 7) == 2)
            {
              g_free (p.piece);
              p.piece = g_strndup ((const char *) d + fstart + (q - fstart - flen), flen);
            }
          else if ((ftag >> 3) == 2 && (ftag & 7) == 5)
            memcpy (&p.score, d + fstart, 4);   /* little-endian float */
        }
      if (p.piece == NULL || !g_utf8_validate (p.piece, -1, NULL))
        {
          g_free (p.piece);
          goto bad;
        }
      g_array_append_val (pieces, p);
    }
  if (pieces->len == 0)
    goto bad;
  return g_steal_pointer (&pieces);

bad:
  gguf_error (error, path, "not a SentencePiece model (ModelProto with pieces)");
  return NULL;
}

/* convert_hf_to_gguf.py's does_token_look_special */
static gboolean
looks_special (const char *t)
{
  gsize n = strlen (t);
  return g_str_equal (t, "<pad>") || g_str_equal (t, "<mask>") || g_str_equal (t, "<2mass>") ||
         g_str_equal (t, "[@BOS@]") || (g_str_has_prefix (t, "<|") && g_str_has_suffix (t, "|>") && n >= 4) ||
         (g_str_has_prefix (t, "<\xef\xbd\x9c") && g_str_has_suffix (t, "\xef\xbd\x9c>") && n >= 8) ||
         (g_str_has_prefix (t, "<unused") && g_str_has_suffix (t, ">"));
}

/* The llama tokenizer from tokenizer.model, as convert_hf_to_gguf.py's
 * _create_vocab_sentencepiece makes it: vocab_size slots of "[PADi]",
 * score -10000, UNUSED; the model's pieces with their scores and types
 * (unknown, control, unused, byte; others normal); added_tokens.json as
 * user-defined and tokenizer_config.json's added_tokens_decoder as control
 * (special or special-looking) or user-defined (with U+2581 as spaces),
 * score -1000. The special ids come from tokenizer.json as for its other
 * kinds. */
static gboolean
add_sentencepiece_tokenizer (Kv *kv, const char *dir, JsonObject *tok, JsonObject *tc, const Vocab *vocab,
                             gint64 vocab_size, GError **error)
{
  g_autofree char *sp_path = g_build_filename (dir, "tokenizer.model", NULL);
  g_autofree char *added_path = g_build_filename (dir, "added_tokens.json", NULL);
  g_autoptr(GArray) pieces = read_sentencepiece (sp_path, error);
  g_autoptr(GPtrArray) tokens = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GHashTable) special = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree gint32 *types = NULL;
  g_autofree float *scores = NULL;
  JsonArray *added = json_object_has_member (tok, "added_tokens") &&
                     JSON_NODE_HOLDS_ARRAY (json_object_get_member (tok, "added_tokens"))
                     ? json_object_get_array_member (tok, "added_tokens") : NULL;

  if (pieces == NULL)
    return FALSE;
  types = g_new (gint32, MAX (vocab_size, 1));
  scores = g_new (float, MAX (vocab_size, 1));
  for (gint64 id = 0; id < vocab_size; id++)
    {
      g_ptr_array_add (tokens, g_strdup_printf ("[PAD%" G_GINT64_FORMAT "]", id));
      scores[id] = -10000.0f;
      types[id] = TOKEN_UNUSED;
    }
  for (guint id = 0; id < pieces->len && id < vocab_size; id++)
    {
      SpPiece *p = &g_array_index (pieces, SpPiece, id);
      g_free (tokens->pdata[id]);
      tokens->pdata[id] = g_strdup (p->piece);
      scores[id] = p->score;
      types[id] = p->type == 2 ? TOKEN_UNKNOWN : p->type == 3 ? TOKEN_CONTROL : p->type == 5 ? TOKEN_UNUSED
                  : p->type == 6 ? TOKEN_BYTE : TOKEN_NORMAL;
    }
  if (g_file_test (added_path, G_FILE_TEST_EXISTS))
    {
      g_autoptr(JsonNode) node = read_lenient_json (added_path, "added_tokens.json", error);
      g_autoptr(GList) members = NULL;
      if (node == NULL)
        return FALSE;
      if (!JSON_NODE_HOLDS_OBJECT (node))
        return gguf_error (error, added_path, "expected an object of tokens and ids");
      members = json_object_get_members (json_node_get_object (node));
      for (GList *l = members; l; l = l->next)
        {
          JsonNode *idn = json_object_get_member (json_node_get_object (node), l->data);
          gint64 id = JSON_NODE_HOLDS_VALUE (idn) && json_node_get_value_type (idn) == G_TYPE_INT64
                      ? json_node_get_int (idn) : -1;
          if (id < 0 || id >= vocab_size)
            continue;   /* as the converter: out of range is ignored */
          g_free (tokens->pdata[id]);
          tokens->pdata[id] = g_strdup (l->data);
          scores[id] = -1000.0f;
          types[id] = TOKEN_USER_DEFINED;
        }
    }
  if (tc && json_object_has_member (tc, "added_tokens_decoder") &&
      JSON_NODE_HOLDS_OBJECT (json_object_get_member (tc, "added_tokens_decoder")))
    {
      JsonObject *dec = json_object_get_object_member (tc, "added_tokens_decoder");
      g_autoptr(GList) members = json_object_get_members (dec);
      for (GList *l = members; l; l = l->next)
        {
          JsonNode *en = json_object_get_member (dec, l->data);
          JsonObject *e = JSON_NODE_HOLDS_OBJECT (en) ? json_node_get_object (en) : NULL;
          const char *content = e ? json_object_get_string_member_with_default (e, "content", NULL) : NULL;
          char *end = NULL;
          gint64 id = g_ascii_strtoll (l->data, &end, 10);
          if (content == NULL || end == l->data || *end || id < 0 || id >= vocab_size)
            continue;
          g_free (tokens->pdata[id]);
          if (json_object_get_boolean_member_with_default (e, "special", FALSE) || looks_special (content))
            {
              types[id] = TOKEN_CONTROL;
              tokens->pdata[id] = g_strdup (content);
            }
          else
            {
              GString *t = g_string_new (content);
              g_string_replace (t, "\xe2\x96\x81", " ", 0);   /* U+2581: a user-defined space */
              types[id] = TOKEN_USER_DEFINED;
              tokens->pdata[id] = g_string_free (t, FALSE);
            }
          scores[id] = -1000.0f;
        }
    }
  for (guint i = 0; added && i < json_array_get_length (added); i++)
    {
      JsonNode *n = json_array_get_element (added, i);
      JsonObject *t = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
      gint64 id = t ? json_object_get_int_member_with_default (t, "id", -1) : -1;
      const char *content = t ? json_object_get_string_member_with_default (t, "content", NULL) : NULL;
      if (content && id >= 0)
        g_hash_table_insert (special, (gpointer) content, GINT_TO_POINTER ((gint) id + 1));
    }
  kv_str (kv, "tokenizer.ggml.model", "llama");
  kv_str (kv, "tokenizer.ggml.pre", "default");
  kv_strv (kv, "tokenizer.ggml.tokens", tokens);
  kv_f32v (kv, "tokenizer.ggml.scores", scores, (gsize) vocab_size);
  kv_i32v (kv, "tokenizer.ggml.token_type", types, (gsize) vocab_size);
  add_specials (kv, tok, tc, vocab, special);
  return TRUE;
}

/* model.merges, one at a time: "a b" strings (pairs of the newer
 * tokenizer.json joined by a space, spaces inside a part written as U+0120
 * + 256, as gguf-py does) */
typedef struct {
  GPtrArray *strings;
  const char *path;
  GString *scratch;
} Merges;

static gboolean
merge_element (const char *name, JsonNode *n, gpointer data, GError **error)
{
  Merges *m = data;
  JsonArray *pair = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  GString *s = m->scratch;

  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    {
      g_ptr_array_add (m->strings, g_strdup (json_node_get_string (n)));
      return TRUE;
    }
  if (pair == NULL || json_array_get_length (pair) != 2)
    return gguf_error (error, m->path, "model.merges: expected strings or pairs of strings");
  g_string_truncate (s, 0);
  for (guint k = 0; k < 2; k++)
    {
      JsonNode *e = json_array_get_element (pair, k);
      const char *part = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                         ? json_node_get_string (e) : NULL;
      if (part == NULL)
        return gguf_error (error, m->path, "model.merges: expected pairs of strings");
      if (k)
        g_string_append_c (s, ' ');
      for (const char *c = part; *c; c++)
        if (*c == ' ')
          g_string_append_unichar (s, ' ' + 256);
        else
          g_string_append_c (s, *c);
    }
  g_ptr_array_add (m->strings, g_strndup (s->str, s->len));
  return TRUE;
}

static gboolean
add_tokenizer (Kv *kv, const char *dir, gint64 vocab_size, gboolean sentencepiece_first, GError **error)
{
  g_autofree char *tok_path = g_build_filename (dir, "tokenizer.json", NULL);
  g_autofree char *tc_path = g_build_filename (dir, "tokenizer_config.json", NULL);
  static const char *const pruned[] = { "model.vocab", "model.merges", NULL };
  g_autoptr(JsonNode) tok_node = NULL, tc_node = NULL;
  JsonObject *tok, *modelo, *tc = NULL;
  JsonArray *added;
  g_autoptr(GPtrArray) tokens = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) merge_strings = g_ptr_array_new_with_free_func (g_free);
  g_autofree gint32 *types = NULL;
  g_autoptr(GHashTable) special = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *text = NULL;
  g_auto(Vocab) vocab = { 0 };
  QuarkJsonSpan spans[2];
  gsize length;
  const char *pre;

  /* the tree without the vocabulary and the merges, read one by one below */
  if ((text = _quark_input_read (tok_path, QUARK_INPUT_MAX_TOKENIZER_SIZE, "tokenizer.json", &length, error)) == NULL ||
      (tok_node = _quark_json_parse_pruned (text, length, tok_path, pruned, spans, error)) == NULL ||
      !read_vocab (text, spans[0], tok_path, &vocab, error))
    return FALSE;
  if (g_file_test (tc_path, G_FILE_TEST_EXISTS))
    {
      if ((tc_node = read_lenient_json (tc_path, "tokenizer_config.json", error)) == NULL)
        return FALSE;
      if (JSON_NODE_HOLDS_OBJECT (tc_node))
        tc = json_node_get_object (tc_node);
    }
  if (!JSON_NODE_HOLDS_OBJECT (tok_node) ||
      !json_object_has_member (json_node_get_object (tok_node), "model") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (json_node_get_object (tok_node), "model")))
    return gguf_error (error, tok_path, "expected an object with a \"model\" object");
  tok = json_node_get_object (tok_node);
  modelo = json_object_get_object_member (tok, "model");
  /* LlamaModel.set_vocab: the SentencePiece model first, when there is one */
  if (sentencepiece_first)
    {
      g_autofree char *sp_path = g_build_filename (dir, "tokenizer.model", NULL);
      if (g_file_test (sp_path, G_FILE_TEST_IS_REGULAR))
        return add_sentencepiece_tokenizer (kv, dir, tok, tc, &vocab, vocab_size, error);
    }
  if (g_strcmp0 (json_object_get_string_member_with_default (modelo, "type", ""), "BPE") != 0)
    return gguf_error (error, tok_path, "only BPE tokenizers are converted here (byte-level as gpt2, SentencePiece-"
                                        "style with byte fallback as llama)");
  /* gguf-py's LlamaHfVocab: BPE with byte fallback and a Sequence decoder
   * (Llama 2, Mistral) is the llama tokenizer model */
  if (json_object_get_boolean_member_with_default (modelo, "byte_fallback", FALSE))
    {
      JsonNode *dec = json_object_get_member (tok, "decoder");
      if (dec == NULL || !JSON_NODE_HOLDS_OBJECT (dec) ||
          g_strcmp0 (json_object_get_string_member_with_default (json_node_get_object (dec), "type", ""),
                     "Sequence") != 0)
        return gguf_error (error, tok_path, "a BPE tokenizer with byte fallback but no Sequence decoder is neither "
                                            "the GPT-2 nor the Llama (SentencePiece-style) kind");
      return add_llama_tokenizer (kv, tok, tc, &vocab, tok_path, vocab_size, error);
    }
  if ((pre = pre_tokenizer_name (tok)) == NULL)
    return gguf_error (error, tok_path, "the pre-tokenizer is not one llama.cpp knows by name here "
                                        "(GPT-2's ByteLevel regex, Llama 3's or Qwen2's split pattern, SmolLM's digits "
                                        "and then GPT-2's)");
  if (!vocab.present)
    return gguf_error (error, tok_path, "model.vocab: expected an object");

  /* tokens by id; ids without a token are padding, as convert_hf_to_gguf.py writes them */
  g_ptr_array_set_size (tokens, (guint) vocab_size);
  types = g_new0 (gint32, MAX (vocab_size, 1));
  for (guint i = 0; i < vocab.names->len; i++)
    {
      gint64 id = g_array_index (vocab.ids, gint64, i);
      if (id < 0 || id >= vocab_size)
        return gguf_error (error, tok_path, "model.vocab: an id outside the config's vocab_size");
      g_free (g_ptr_array_index (tokens, id));
      tokens->pdata[id] = g_strdup (g_ptr_array_index (vocab.names, i));
      types[id] = TOKEN_NORMAL;
    }
  added = json_object_has_member (tok, "added_tokens") && JSON_NODE_HOLDS_ARRAY (json_object_get_member (tok, "added_tokens"))
          ? json_object_get_array_member (tok, "added_tokens") : NULL;
  for (guint i = 0; added && i < json_array_get_length (added); i++)
    {
      JsonNode *n = json_array_get_element (added, i);
      JsonObject *t;
      gint64 id;
      const char *content;
      if (!JSON_NODE_HOLDS_OBJECT (n))
        continue;
      t = json_node_get_object (n);
      id = json_object_get_int_member_with_default (t, "id", -1);
      content = json_object_get_string_member_with_default (t, "content", NULL);
      if (content == NULL || id < 0 || id >= vocab_size)
        return gguf_error (error, tok_path, "added_tokens: an entry without content or with an id outside vocab_size");
      g_free (g_ptr_array_index (tokens, id));
      tokens->pdata[id] = g_strdup (content);
      types[id] = json_object_get_boolean_member_with_default (t, "special", FALSE) ? TOKEN_CONTROL
                                                                                     : TOKEN_USER_DEFINED;
      g_hash_table_insert (special, (gpointer) json_object_get_string_member (t, "content"), GINT_TO_POINTER (id + 1));
    }
  for (gint64 i = 0; i < vocab_size; i++)
    if (g_ptr_array_index (tokens, i) == NULL)
      {
        tokens->pdata[i] = g_strdup_printf ("[PAD%" G_GINT64_FORMAT "]", i);
        types[i] = TOKEN_UNUSED;
      }

  /* merges: "a b" strings (pairs of the newer tokenizer.json joined by a
   * space, spaces inside a part written as U+0120 + 256, as gguf-py does) */
  {
    g_autoptr(GString) scratch = g_string_sized_new (64);
    Merges m = { merge_strings, tok_path, scratch };
    if (spans[1].length && text[spans[1].offset] == '[' &&
        !_quark_json_each (text, spans[1], tok_path, merge_element, &m, error))
      return FALSE;
  }

  kv_str (kv, "tokenizer.ggml.model", "gpt2");
  kv_str (kv, "tokenizer.ggml.pre", pre);
  kv_strv (kv, "tokenizer.ggml.tokens", tokens);
  kv_i32v (kv, "tokenizer.ggml.token_type", types, (gsize) vocab_size);
  kv_strv (kv, "tokenizer.ggml.merges", merge_strings);
  add_specials (kv, tok, tc, &vocab, special);
  return TRUE;
}

/* rope_scaling's type: rope_type, or the older "type" */
static const char *
rope_scaling_type (JsonObject *cfg, JsonObject **rs)
{
  JsonNode *n = json_object_get_member (cfg, "rope_scaling");
  const char *type;

  *rs = NULL;
  if (n == NULL || !JSON_NODE_HOLDS_OBJECT (n))
    return NULL;
  *rs = json_node_get_object (n);
  type = json_object_get_string_member_with_default (*rs, "rope_type", NULL);
  return type ? type : json_object_get_string_member_with_default (*rs, "type", NULL);
}

/* Llama 3's RoPE scaling as convert_hf_to_gguf.py writes it: a tensor of
 * one factor per rotary pair, computed as its float32 PyTorch code does
 * (freq_i = 1 / base^(2i / d); wavelengths above the original context over
 * low_freq_factor are scaled by factor, below it over high_freq_factor not
 * at all, and in between smoothly). NULL when the model has no such
 * scaling. */
static gboolean
rope_freqs_tensor (JsonObject *cfg, const Arch *a, QuarkTensor **out, GError **error)
{
  JsonObject *rs;
  const char *type = rope_scaling_type (cfg, &rs);
  double base = 10000.0, factor = 8.0, low = 1.0, high = 4.0, d;
  gint64 dim, old_ctx = 8192;
  g_autofree float *factors = NULL;
  gint64 n;

  *out = NULL;
  if (type == NULL || g_ascii_strcasecmp (type, "llama3") != 0 || !g_str_equal (a->arch, "llama"))
    return TRUE;
  if (num_member (cfg, "rope_theta", &d))
    base = d;
  if (!int_member (cfg, "head_dim", &dim))
    dim = a->n_embd / a->n_head;
  if (num_member (rs, "factor", &d))
    factor = d;
  if (num_member (rs, "low_freq_factor", &d))
    low = d;
  if (num_member (rs, "high_freq_factor", &d))
    high = d;
  /* the converter reads it from the model's config, not rope_scaling */
  int_member (cfg, "original_max_position_embeddings", &old_ctx);
  n = dim / 2;
  factors = g_new (float, MAX (n, 1));
  for (gint64 i = 0; i < n; i++)
    {
      float freq = 1.0f / powf ((float) base, (float) (2 * i) / (float) dim);
      float wavelen = (float) (2 * G_PI) / freq;
      if (wavelen < (float) ((double) old_ctx / high))
        factors[i] = 1.0f;
      else if (wavelen > (float) ((double) old_ctx / low))
        factors[i] = (float) factor;
      else
        {
          float smooth = ((float) old_ctx / wavelen - (float) low) / (float) (high - low);
          factors[i] = 1.0f / ((1.0f - smooth) / (float) factor + smooth);
        }
    }
  *out = quark_tensor_new_from_floats ("rope_freqs.weight", &n, 1, factors, (gsize) n, error);
  return *out != NULL;
}

/* The RoPE scaling key-values convert_hf_to_gguf.py writes: linear for
 * llama, YaRN for qwen2 (llama3 is a tensor, rope_freqs_tensor()); other
 * kinds are refused rather than dropped, since llama.cpp would run the
 * model without them. */
static gboolean
add_rope_scaling (Kv *kv, JsonObject *cfg, const Arch *a, GError **error)
{
  JsonObject *rs;
  const char *type = rope_scaling_type (cfg, &rs);
  g_autofree char *k = NULL;
  double factor;
  gint64 orig;

  if (rs == NULL || type == NULL || g_ascii_strcasecmp (type, "default") == 0 ||
      (g_ascii_strcasecmp (type, "llama3") == 0 && g_str_equal (a->arch, "llama")))
    return TRUE;
  if (g_ascii_strcasecmp (type, "linear") == 0 && g_str_equal (a->arch, "llama") && num_member (rs, "factor", &factor))
    {
      kv_str (kv, (k = g_strconcat (a->arch, ".rope.scaling.type", NULL)), "linear");
      g_free (k);
      kv_f32 (kv, (k = g_strconcat (a->arch, ".rope.scaling.factor", NULL)), (float) factor);
      return TRUE;
    }
  if (g_ascii_strcasecmp (type, "yarn") == 0 && g_str_equal (a->arch, "qwen2") && num_member (rs, "factor", &factor) &&
      int_member (rs, "original_max_position_embeddings", &orig))
    {
      kv_str (kv, (k = g_strconcat (a->arch, ".rope.scaling.type", NULL)), "yarn");
      g_free (k);
      kv_f32 (kv, (k = g_strconcat (a->arch, ".rope.scaling.factor", NULL)), (float) factor);
      g_free (k);
      kv_u32 (kv, (k = g_strconcat (a->arch, ".rope.scaling.original_context_length", NULL)), (guint32) orig);
      return TRUE;
    }
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "config.json: rope_scaling of type %s is not converted to GGUF for the %s architecture (linear and "
               "llama3 for llama, yarn for qwen2, as convert_hf_to_gguf.py writes them)", type, a->arch);
  return FALSE;
}

/* ---- writing the file ------------------------------------------------------ */

typedef struct {
  char *name;
  QuarkTensor *tensor;      /* the Hugging Face tensor (float sources) */
  int source;               /* a quantized model's: the bridge's source, else -1 */
  QuarkGgufBridgeKind kind; /* and how it is carried */
  gint64 heads;             /* rotary permutation, 0: none */
  QuarkGgmlType type;
  guint n_dims;
  guint64 ne[4];
  guint64 offset;
  gsize size;
  const float *importance;  /* per column, or NULL */
} Out;

static void
out_clear (gpointer data)
{
  Out *o = data;
  g_free (o->name);
}

static gboolean
write_all (int fd, const void *data, gsize size, const char *path, GError **error)
{
  const guint8 *p = data;
  while (size > 0)
    {
      ssize_t n = write (fd, p, size);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = errno;
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
          return FALSE;
        }
      p += n;
      size -= (gsize) n;
    }
  return TRUE;
}

/* @size rounded up to the alignment */
static guint64
aligned (guint64 size)
{
  return size + (GGUF_ALIGNMENT - size % GGUF_ALIGNMENT) % GGUF_ALIGNMENT;
}

static gboolean
pad (int fd, guint64 *pos, const char *path, GError **error)
{
  static const guint8 zeros[GGUF_ALIGNMENT] = { 0 };
  gsize n = aligned (*pos) - *pos;
  *pos += n;
  return write_all (fd, zeros, n, path, error);
}

/* The tensors' bytes are written by a thread of their own while the next
 * tensor is quantized into the other of two buffers: on a tmpfs output
 * the kernel's work for a write (new pages, copies) was a third of a
 * Q6_K run's wall time, now taken off the quantizing thread. At most one
 * write is in flight; submitting the next one waits for it. Without the
 * thread (it could not start), the writes are made in place. */
typedef struct {
  GMutex lock;
  GCond cond;
  GThread *thread;
  int fd;
  const char *path;
  guint64 pos;               /* the file's end, for the padding */
  const guint8 *data;        /* the bytes being written, NULL when idle */
  gsize size;
  gboolean started, stop;
  gboolean durable;          /* start each write's write-back */
  GError *error;             /* the first failed write's */
} Writer;

/* @size bytes at @data, then the padding to the alignment */
static gboolean
writer_write (Writer *w, const guint8 *data, gsize size, GError **error)
{
  guint64 at = w->pos;

  w->pos += size;
  if (!write_all (w->fd, data, size, w->path, error))
    return FALSE;
  /* to the disk while the next tensors are quantized */
  if (w->durable)
    _quark_output_start_writeback (w->fd, at, size);
  return pad (w->fd, &w->pos, w->path, error);
}

static gpointer
writer_run (gpointer data)
{
  Writer *w = data;

  g_mutex_lock (&w->lock);
  while (TRUE)
    {
      const guint8 *bytes;
      gsize size;
      GError *error = NULL;

      while (w->data == NULL && !w->stop)
        g_cond_wait (&w->cond, &w->lock);
      if (w->data == NULL)
        break;
      bytes = w->data;
      size = w->size;
      g_mutex_unlock (&w->lock);
      writer_write (w, bytes, size, &error);
      g_mutex_lock (&w->lock);
      if (w->error == NULL)
        w->error = error;
      else
        g_clear_error (&error);
      w->data = NULL;
      g_cond_broadcast (&w->cond);
    }
  g_mutex_unlock (&w->lock);
  return NULL;
}

/* starts the writer on @fd, whose first @pos bytes are written */
static void
writer_start (Writer *w, int fd, const char *path, guint64 pos, gboolean durable)
{
  memset (w, 0, sizeof *w);
  g_mutex_init (&w->lock);
  g_cond_init (&w->cond);
  w->fd = fd;
  w->path = path;
  w->pos = pos;
  w->durable = durable;
  w->started = TRUE;
  w->thread = g_thread_try_new ("quark-gguf-write", writer_run, w, NULL);
}

/* waits for the write in flight; FALSE, with its error, when a write failed */
static gboolean
writer_wait (Writer *w, GError **error)
{
  gboolean ok;

  g_mutex_lock (&w->lock);
  while (w->data != NULL)
    g_cond_wait (&w->cond, &w->lock);
  ok = w->error == NULL;
  if (!ok)
    g_propagate_error (error, g_error_copy (w->error));
  g_mutex_unlock (&w->lock);
  return ok;
}

/* writer_write() on the thread, @data untouched until the next submit or
 * writer_wait(); in place without the thread */
static gboolean
writer_submit (Writer *w, const guint8 *data, gsize size, GError **error)
{
  if (w->thread == NULL)
    return writer_write (w, data, size, error);
  if (!writer_wait (w, error))
    return FALSE;
  g_mutex_lock (&w->lock);
  w->data = data;
  w->size = size;
  g_cond_broadcast (&w->cond);
  g_mutex_unlock (&w->lock);
  return TRUE;
}

/* ends the thread once its write is done (again, or never started:
 * nothing) */
static void
writer_stop (Writer *w)
{
  if (w->thread)
    {
      g_mutex_lock (&w->lock);
      w->stop = TRUE;
      g_cond_broadcast (&w->cond);
      g_mutex_unlock (&w->lock);
      g_thread_join (w->thread);
      w->thread = NULL;
    }
  if (w->started)
    {
      g_mutex_clear (&w->lock);
      g_cond_clear (&w->cond);
      w->started = FALSE;
    }
  g_clear_error (&w->error);
}

/* A temporary file beside @path (*tmp its name), with the mode a new file
 * gets (umask), not mkstemp's 0600; -1 on error */
static int
open_beside (const char *path, char **tmp, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  mode_t mask;
  int fd;

  *tmp = g_strdup_printf ("%s/.%s.quark-tmp-XXXXXX", dir, base);
  fd = g_mkstemp_full (*tmp, O_WRONLY | O_CLOEXEC, 0666 & ~0);
  if (fd < 0)
    {
      int saved = errno;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: cannot create a file beside it: %s", path,
                   g_strerror (saved));
      g_clear_pointer (tmp, g_free);
      return -1;
    }
  mask = umask (0);
  umask (mask);
  fchmod (fd, 0666 & ~mask);
  return fd;
}

/* Syncs (when @durable) and closes *fd, then renames *tmp to @path (without
 * replacing it unless @overwrite); *fd is -1 and *tmp NULL after a success */
static gboolean
commit (int *fd, char **tmp, const char *path, gboolean overwrite, gboolean durable, GError **error)
{
  int saved;

  if (durable && fsync (*fd) != 0)
    {
      saved = errno;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
      return FALSE;
    }
  saved = close (*fd) != 0 ? errno : 0;
  *fd = -1;
  if (saved)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
      return FALSE;
    }
  if ((overwrite ? rename (*tmp, path) : renameat2 (AT_FDCWD, *tmp, AT_FDCWD, path, RENAME_NOREPLACE)) != 0)
    {
      saved = errno;
      if (saved == EEXIST)
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s: already exists (it appeared while this ran)", path);
      else
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
      return FALSE;
    }
  g_clear_pointer (tmp, g_free);
  if (durable)
    {
      g_autofree char *parent = g_path_get_dirname (path);
      _quark_output_sync_directory (parent);   /* the rename itself, durable */
    }
  return TRUE;
}

/* What commit () did not take over on the way out of a failed write: the
 * descriptor closed and the temporary removed (-1 and NULL: nothing) */
static void
discard_beside (int fd, const char *tmp)
{
  if (fd >= 0)
    close (fd);
  if (tmp)
    g_unlink (tmp);
}

static int
block_of (const char *name)
{
  int block = -1;
  if (g_str_has_prefix (name, "blk."))
    block = (int) g_ascii_strtoll (name + 4, NULL, 10);
  return block;
}

static int
compare_tensor_names (gconstpointer a, gconstpointer b)
{
  const Out *x = a, *y = b;
  int bx = block_of (x->name), by = block_of (y->name);
  if (bx != by)
    return bx < by ? -1 : 1;
  return strcmp (x->name, y->name);
}

/* Rows are independent: large tensors are quantized by the format's threads
 * (quark_checkpoint_format_get_threads(): by default one per processor, up
 * to 8), each on a run of rows; the bytes do not depend on the split. Each
 * row is converted to float32 from the tensor's own elements (BF16, F16,
 * F32) into a buffer of one row, so no float32 copy of a whole tensor is
 * made; output row r of a rotary-permuted tensor (@heads > 0) is input row
 * permuted_row (r). A tensor over a file mapping is read with pread()
 * (quark_tensor_read_data()), about 1 MiB of rows at a time into a pool
 * buffer that each thread reuses, so that no page of the mapping is
 * touched: a 2 GB model's input then costs no page faults, and the rows
 * are converted while they are in the cache. */
typedef struct {
  QuarkGgmlType type;
  QuarkTensor *tensor;          /* read from its file when mapped, else NULL */
  const guint8 *src;            /* the elements in memory when not mapped */
  QuarkDType dtype;
  gint64 heads;
  const float *qw;
  gsize first, last, rows, cols;
  guint8 *out;
  GError *error;
} RowRun;

static void
free_pool_buffer (guint8 **buffer)
{
  quark_buffer_free (*buffer);
}

static void
free_parallel (QuarkParallel **pool)
{
  _quark_parallel_free (*pool);
}

/* the input read at a time from a file */
#define READ_BYTES ((gsize) 1 << 20)

/* the input row of output row @r under convert_hf_to_gguf.py's permutation */
static gsize
permuted_row (gsize r, gsize rows, gint64 heads)
{
  gsize half, h, i, j;

  if (heads <= 0)
    return r;
  half = rows / (gsize) heads / 2;
  h = r / (2 * half);
  i = (r % (2 * half)) / 2;
  j = r % 2;
  return h * 2 * half + j * half + i;
}

static gpointer
quantize_run (gpointer data)
{
  RowRun *run = data;
  gsize row_size = _quark_ggml_row_size (run->type, run->cols), esize = quark_dtype_get_element_size (run->dtype);
  gsize in_row = run->cols * esize, per_read = MAX (READ_BYTES / MAX (in_row, 1), 1);
  /* a permutation moves rows within a head's block of rows only (those of
   * permuted_row's h): the input rows of per_read output rows are the
   * blocks around them, per_read + 2 blocks at most */
  gsize block = run->heads > 0 ? MAX (2 * (run->rows / (gsize) run->heads / 2), 1) : 1;
  g_autofree float *buf = run->dtype == QUARK_DTYPE_F32 ? NULL : g_new (float, MAX (run->cols, 1));
  guint8 *chunk = run->tensor ? quark_buffer_alloc ((per_read + 2 * block) * MAX (in_row, 1)) : NULL;

  for (gsize r0 = run->first; r0 < run->last; r0 += per_read)
    {
      gsize r1 = MIN (r0 + per_read, run->last);
      gsize lo = r0 / block * block, end = MIN (run->rows, (r1 - 1) / block * block + block);

      if (chunk &&
          !quark_tensor_read_data (run->tensor, (guint64) lo * in_row, chunk, (end - lo) * in_row, &run->error))
        break;
      for (gsize r = r0; r < r1; r++)
        {
          gsize p = permuted_row (r, run->rows, run->heads);
          const guint8 *row = chunk ? chunk + (p - lo) * in_row : run->src + p * in_row;
          const float *x = (const float *) row;
          if (buf)
            {
              quark_kernel_convert_to_f32 (run->dtype, row, buf, run->cols);
              x = buf;
            }
          _quark_ggml_quantize_row (run->type, x, run->cols, run->qw, run->out + r * row_size);
        }
    }
  quark_buffer_free (chunk);
  return NULL;
}

/* The rows [begin, end) of one thread's share (QuarkRangeFunc) */
static void
quantize_share (gpointer data, gsize begin, gsize end, guint worker)
{
  RowRun *run = (RowRun *) data + worker;

  run->first = begin;
  run->last = end;
  quantize_run (run);
}

/* Quantizes the rows of @tensor (read from its file when it is mapped) or,
 * @tensor %NULL, of @src in memory, on the threads of @pool (started once
 * for the whole file: a thread started per tensor faulted its stack in
 * again each time, 900 page faults for a 2 GB model). FALSE when a read
 * failed. */
static gboolean
quantize_rows (QuarkParallel *pool, QuarkGgmlType type, QuarkTensor *tensor, const guint8 *src, QuarkDType dtype,
               gint64 heads, const float *qw, gsize rows, gsize cols, guint8 *out, GError **error)
{
  guint n = _quark_parallel_get_threads (pool);
  g_autofree RowRun *runs = g_new (RowRun, n);
  gboolean ok = TRUE;

  for (guint i = 0; i < n; i++)
    runs[i] = (RowRun) { type, tensor, src, dtype, heads, qw, 0, 0, rows, cols, out, NULL };
  if (rows * cols < (1u << 16))
    quantize_share (runs, 0, rows, 0);
  else
    _quark_parallel_run (pool, rows, quantize_share, runs);
  for (guint i = 0; i < n; i++)
    if (runs[i].error)
      {
        if (ok)
          g_propagate_error (error, runs[i].error);
        else
          g_error_free (runs[i].error);
        ok = FALSE;
      }
  return ok;
}

static char **
gguf_list_schemes (QuarkCheckpointFormat *self)
{
  const QuarkGgufScheme *t = _quark_gguf_schemes ();
  GPtrArray *names = g_ptr_array_new ();

  for (guint i = 0; t[i].name; i++)
    g_ptr_array_add (names, g_strdup (t[i].name));
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

/* "NAME" (llama-quantize's choices) or "NAME:pure" (llama-quantize --pure) */
static const QuarkGgufScheme *
parse_scheme (const char *scheme, gboolean *pure)
{
  g_auto(GStrv) parts = g_strsplit (scheme, ":", 2);

  *pure = parts[1] != NULL && g_str_equal (parts[1], "pure");
  if (parts[1] != NULL && !*pure)
    return NULL;
  return _quark_gguf_scheme_lookup (parts[0]);
}

static char *
gguf_describe_scheme (QuarkCheckpointFormat *self, const char *scheme)
{
  gboolean pure;
  const QuarkGgufScheme *s = parse_scheme (scheme, &pure);
  const QuarkGgmlTypeInfo *t = s ? _quark_ggml_type_lookup (s->type) : NULL;

  if (t == NULL)
    return NULL;
  return g_strdup_printf ("%s, %.2f bits per weight%s", t->name, 8.0 * t->bytes / t->block,
                          t->block == 1 || s->type == QUARK_GGML_Q8_0 ? ""
                          : pure ? ", every 2-D weight (pure)"
                          : ", with llama-quantize's per-tensor choices (output Q6_K; the mixes more bits in "
                            "attn_v, ffn_down, attn_output)");
}

/* The importance of @o's columns: the entry named as GGUF names the tensor
 * or as the model does; a weight without one is quantized without (as
 * llama-quantize), an entry of another length is an error (llama-quantize
 * lets it pass for token_embd only, which it quantizes without) */
static gboolean
importance_of (QuarkModel *importance, Out *o, GError **error)
{
  QuarkTensor *t = quark_model_get_tensor (importance, o->name);

  if (t == NULL)
    t = quark_model_get_tensor (importance, quark_tensor_get_name (o->tensor));
  if (t == NULL)
    return TRUE;
  if (quark_tensor_get_dtype (t) == QUARK_DTYPE_F32 && quark_tensor_get_n_elements (t) == o->ne[0])
    {
      o->importance = quark_tensor_peek_data (t, NULL);
      return TRUE;
    }
  if (g_str_equal (o->name, "token_embd.weight"))
    return TRUE;
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
               "importance matrix: the entry for %s has %" G_GSIZE_FORMAT " %s values, the tensor rows of %"
               G_GUINT64_FORMAT, o->name, quark_tensor_get_n_elements (t),
               quark_dtype_get_name (quark_tensor_get_dtype (t)), o->ne[0]);
  return FALSE;
}

/* What llama-quantize records of an importance matrix (its key-value
 * overrides, after general.file_type): the file, the first dataset, the
 * entry count and the chunks; strings cut at 127 bytes as it does */
static void
importance_key_values (Kv *kv, QuarkModel *importance)
{
  JsonNode *md = quark_model_get_metadata (importance);
  JsonObject *o = md && JSON_NODE_HOLDS_OBJECT (md) ? json_node_get_object (md) : NULL;
  const char *file = o ? json_object_get_string_member_with_default (o, "file", NULL) : NULL;
  JsonNode *ds = o ? json_object_get_member (o, "datasets") : NULL;
  gint64 chunks = o ? json_object_get_int_member_with_default (o, "chunk_count", 0) : 0;

  if (file)
    {
      g_autofree char *cut = g_strndup (file, 127);
      kv_str (kv, "quantize.imatrix.file", cut);
    }
  if (ds && JSON_NODE_HOLDS_ARRAY (ds) && json_array_get_length (json_node_get_array (ds)) > 0 &&
      JSON_NODE_HOLDS_VALUE (json_array_get_element (json_node_get_array (ds), 0)))
    {
      g_autofree char *cut = g_strndup (json_array_get_string_element (json_node_get_array (ds), 0), 127);
      kv_str (kv, "quantize.imatrix.dataset", cut);
    }
  kv_u32 (kv, "quantize.imatrix.entries_count", quark_model_get_n_tensors (importance));
  if (chunks > 0)
    kv_u32 (kv, "quantize.imatrix.chunks_count", (guint32) chunks);
}

/* source @i: a float model's tensor, or what the bridge plans for a
 * quantized one; its Hugging Face name */
static const char *
source_at (QuarkModel *model, QuarkGgufBridge *bridge, guint i, QuarkTensor **tensor, guint *n_dims,
           const gint64 **shape, QuarkGgufBridgeKind *kind)
{
  QuarkTensor *t;
  const char *name;
  guint nd;
  const gint64 *sh;

  if (bridge)
    {
      QuarkGgufBridgeKind k = _quark_gguf_bridge_get_source (bridge, i, &name, &t, &nd, &sh);
      if (kind)
        *kind = k;
    }
  else
    {
      t = quark_model_get_tensor_at (model, i);
      name = quark_tensor_get_name (t);
      sh = quark_tensor_get_shape (t, &nd);
      if (kind)
        *kind = QUARK_GGUF_BRIDGE_FLOAT;
    }
  if (tensor)
    *tensor = t;
  if (n_dims)
    *n_dims = nd;
  if (shape)
    *shape = sh;
  return name;
}

/* a quantized model's 2-D tensors: codes in the type, the float ones as
 * stored (F16, BF16; other floats and dequantized weights in F32) */
static QuarkGgmlType
bridged_type (const Out *o, QuarkGgmlType type)
{
  QuarkDType dtype = o->tensor ? quark_tensor_get_dtype (o->tensor) : QUARK_DTYPE_F32;

  if (o->kind == QUARK_GGUF_BRIDGE_CODES)
    return type;
  return dtype == QUARK_DTYPE_F16 ? QUARK_GGML_F16 : dtype == QUARK_DTYPE_BF16 ? QUARK_GGML_BF16 : QUARK_GGML_F32;
}

static gboolean
gguf_write_model (QuarkCheckpointFormat *format, QuarkModel *model, const char *scheme, const char *path,
                  gboolean overwrite, GCancellable *cancellable, GError **error)
{
  QuarkFormatGguf *self = QUARK_FORMAT_GGUF (format);
  g_autoptr(QuarkGgufBridge) bridge = NULL;
  guint n_sources;
  gboolean pure = FALSE;
  const QuarkGgufScheme *info = parse_scheme (scheme, &pure);
  QuarkGgufMix mix = { 0 };
  JsonObject *cfg;
  Arch a;
  Kv kv = { g_byte_array_new (), 0 };
  g_autoptr(GByteArray) kvb G_GNUC_UNUSED = kv.bytes;   /* frees kv.bytes */
  g_autoptr(GByteArray) head = g_byte_array_new ();
  g_autoptr(GArray) outs = g_array_new (FALSE, TRUE, sizeof (Out));
  g_autoptr(QuarkTensor) rope_freqs = NULL;
  QuarkModel *importance = quark_checkpoint_format_get_importance (format);
  g_autofree char *tmp = NULL;
  guint8 *buffer0 __attribute__ ((cleanup (free_pool_buffer))) = NULL;
  guint8 *buffer1 __attribute__ ((cleanup (free_pool_buffer))) = NULL;
  QuarkParallel *pool __attribute__ ((cleanup (free_parallel))) = NULL;
  Writer writer = { 0 };
  gsize largest = 0;
  g_autofree char *source = _quark_model_get_directory (model);
  gint64 vocab_size = 0, v;
  guint64 data_pos = 0, pos;
  double d;
  int fd = -1;
  gboolean ok = FALSE;
  GStatBuf st;

  g_array_set_clear_func (outs, out_clear);
  if (info == NULL)
    {
      g_auto(GStrv) names = gguf_list_schemes (format);
      g_autofree char *list = g_strjoinv (", ", names);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND,
                   "GGUF type \"%s\" is not written here (types: %s; NAME:pure for one type everywhere)",
                   scheme, list);
      return FALSE;
    }
  /* refused before the work, not only when the finished file is renamed */
  if (!overwrite && g_lstat (path, &st) == 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s: already exists (overwrite it explicitly)", path);
      return FALSE;
    }
  if ((cfg = hf_config (model, error)) == NULL || !arch_for (cfg, &a, error))
    return FALSE;
  if (!int_member (cfg, "vocab_size", &vocab_size) || vocab_size <= 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "config.json: vocab_size is needed for GGUF");
      return FALSE;
    }
  if (source == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "GGUF needs the model's directory (for tokenizer.json); this model was not loaded from one");
      return FALSE;
    }

  /* an already quantized model: its codes carried over (quark-gguf-bridge.c) */
  g_ptr_array_set_size (self->report, 0);
  if (quark_model_is_quantized (model, NULL))
    {
      if (importance)
        {
          g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                               "an importance matrix applies when quantizing float weights; this model is "
                               "already quantized");
          return FALSE;
        }
      if ((bridge = _quark_gguf_bridge_new (model, info->type, self->inexact, self->report, error)) == NULL)
        return FALSE;
    }

  /* what llama-quantize's choices depend on: the heads, the layers, how
   * many attn_v there are, whether there is an output tensor */
  mix.scheme = info;
  mix.pure = pure;
  mix.n_gqa = (int) (a.n_head / MAX (a.n_head_kv, 1));
  mix.n_layer = (int) a.n_layer;
  mix.is_70b = g_str_equal (a.arch, "llama") && a.n_layer == 80 && a.n_head != a.n_head_kv;
  mix.has_imatrix = importance != NULL && quark_model_get_n_tensors (importance) > 0;
  n_sources = bridge ? _quark_gguf_bridge_get_n_sources (bridge) : quark_model_get_n_tensors (model);
  for (guint i = 0; i < n_sources; i++)
    {
      gint64 heads;
      g_autofree char *name = gguf_name (&a, source_at (model, bridge, i, NULL, NULL, NULL, NULL), &heads);
      if (name && strstr (name, "attn_v.weight"))
        mix.n_attention_wv++;
      else if (name && g_str_equal (name, "output.weight"))
        mix.has_output = TRUE;
    }

  /* the tensors, in the model's order, with their GGUF names and types */
  for (guint i = 0; i < n_sources; i++)
    {
      QuarkTensor *t = NULL;
      Out o = { 0 };
      guint n_dims;
      const gint64 *shape;
      const char *hf = source_at (model, bridge, i, &t, &n_dims, &shape, &o.kind);

      o.source = bridge ? (int) i : -1;
      o.name = gguf_name (&a, hf, &o.heads);
      if (o.name == NULL)
        {
          if (g_str_has_suffix (hf, "rotary_emb.inv_freq"))
            continue;
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "tensor %s has no GGUF name in the %s architecture", hf, a.arch);
          return FALSE;
        }
      if ((t && !quark_dtype_is_quantizable (quark_tensor_get_dtype (t))) || n_dims == 0 || n_dims > 2)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "tensor %s: GGUF conversion takes 1-D and 2-D float tensors", hf);
          g_free (o.name);
          return FALSE;
        }
      o.tensor = t;
      o.n_dims = n_dims;
      for (guint k = 0; k < n_dims; k++)
        o.ne[k] = (guint64) shape[n_dims - 1 - k];
      if (o.heads && (shape[0] % (2 * o.heads) != 0))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: %" G_GINT64_FORMAT
                       " rows do not split into %" G_GINT64_FORMAT " heads of rotary pairs", hf,
                       shape[0], o.heads);
          g_free (o.name);
          return FALSE;
        }
      g_array_append_val (outs, o);
    }

  /* rope_freqs (llama3 RoPE scaling) needs the head size before the
   * key-values are written: computed here */
  if (!rope_freqs_tensor (cfg, &a, &rope_freqs, error))
    return FALSE;
  if (rope_freqs)
    {
      Out o = { 0 };
      o.source = -1;
      o.name = g_strdup ("rope_freqs.weight");
      o.tensor = rope_freqs;
      o.n_dims = 1;
      o.ne[0] = quark_tensor_get_n_elements (rope_freqs);
      g_array_append_val (outs, o);
    }

  /* llama-quantize's order (its loader's weight_name_comparer: the tensors
   * outside the blocks first, then block by block in numeric order, by name
   * within each), in which its per-tensor choices count the layers; then
   * the types: 1-D tensors and norms in F32 (convert_hf_to_gguf.py), 2-D
   * weights as llama-quantize decides (quark-gguf-mix.c) */
  g_array_sort (outs, compare_tensor_names);
  for (guint i = 0; i < outs->len; i++)
    {
      Out *o = &g_array_index (outs, Out, i);
      if (o->n_dims == 1 || g_str_has_suffix (o->name, "_norm.weight") || !g_str_has_suffix (o->name, ".weight"))
        o->type = QUARK_GGML_F32;
      else if (bridge)
        o->type = bridged_type (o, info->type);
      else
        o->type = _quark_gguf_mix_type (&mix, o->name, o->ne[0]);
      if (o->type != QUARK_GGML_F32 && mix.has_imatrix && !importance_of (importance, o, error))
        return FALSE;
      o->size = _quark_ggml_row_size (o->type, o->ne[0]) * (o->n_dims == 2 ? o->ne[1] : 1);
      o->offset = data_pos;
      data_pos += aligned (o->size);
    }

  /* key-values: general.*, the architecture's hyperparameters, the tokenizer */
  kv_str (&kv, "general.architecture", a.arch);
  kv_str (&kv, "general.type", "model");
  {
    g_autofree char *name = g_path_get_basename (source);
    kv_str (&kv, "general.name", name);
  }
  {
    g_autofree char *k = NULL;
#define ARCH_KEY(suffix) (g_free (k), k = g_strconcat (a.arch, suffix, NULL))
    kv_u32 (&kv, ARCH_KEY (".block_count"), (guint32) a.n_layer);
    if (int_member (cfg, "max_position_embeddings", &v))
      kv_u32 (&kv, ARCH_KEY (".context_length"), (guint32) v);
    kv_u32 (&kv, ARCH_KEY (".embedding_length"), (guint32) a.n_embd);
    if (int_member (cfg, "intermediate_size", &v))
      kv_u32 (&kv, ARCH_KEY (".feed_forward_length"), (guint32) v);
    kv_u32 (&kv, ARCH_KEY (".attention.head_count"), (guint32) a.n_head);
    kv_u32 (&kv, ARCH_KEY (".attention.head_count_kv"), (guint32) a.n_head_kv);
    /* RoPE base: rope_theta, or rope_parameters.rope_theta in newer configs */
    if (num_member (cfg, "rope_theta", &d) ||
        (json_object_has_member (cfg, "rope_parameters") &&
         JSON_NODE_HOLDS_OBJECT (json_object_get_member (cfg, "rope_parameters")) &&
         num_member (json_object_get_object_member (cfg, "rope_parameters"), "rope_theta", &d)))
      kv_f32 (&kv, ARCH_KEY (".rope.freq_base"), (float) d);
    if (num_member (cfg, "rms_norm_eps", &d))
      kv_f32 (&kv, ARCH_KEY (".attention.layer_norm_rms_epsilon"), (float) d);
    if (int_member (cfg, "head_dim", &v))
      {
        kv_u32 (&kv, ARCH_KEY (".attention.key_length"), (guint32) v);
        kv_u32 (&kv, ARCH_KEY (".attention.value_length"), (guint32) v);
      }
    if (g_str_equal (a.arch, "llama"))
      {
        kv_u32 (&kv, ARCH_KEY (".vocab_size"), (guint32) vocab_size);
        if (!int_member (cfg, "head_dim", &v))
          v = a.n_embd / a.n_head;
        kv_u32 (&kv, ARCH_KEY (".rope.dimension_count"), (guint32) v);
      }
#undef ARCH_KEY
  }
  if (!add_rope_scaling (&kv, cfg, &a, error))
    return FALSE;
  if (!add_tokenizer (&kv, source, vocab_size, g_str_equal (a.arch, "llama"), error))
    return FALSE;
  /* last, in llama-quantize's order (it copies the input's key-values, then
   * sets these two, the file type removed and appended), so that the whole
   * file, not only its tensors, equals llama-quantize's */
  kv_u32 (&kv, "general.quantization_version", GGUF_QUANTIZATION_VERSION);
  kv_u32 (&kv, "general.file_type", info->file_type);
  if (mix.has_imatrix)
    importance_key_values (&kv, importance);

  /* header and tensor infos */
  put_header (head, outs->len, &kv);
  for (guint i = 0; i < outs->len; i++)
    {
      Out *o = &g_array_index (outs, Out, i);
      put_tensor_info (head, o->name, o->n_dims, o->ne, o->type, o->offset);
    }

  /* the file: a temporary beside the output, renamed when complete */
  if ((fd = open_beside (path, &tmp, error)) < 0)
    return FALSE;
  pos = head->len;
  if (!write_all (fd, head->data, head->len, path, error) || !pad (fd, &pos, path, error))
    goto out;
  /* two output buffers, of the largest tensor, for all (their pages are
   * faulted in once, not once per tensor): a tensor is quantized into one
   * while the other is written (Writer). From the buffer pool, whose large
   * buffers are advised for huge pages: two g_malloc() buffers of a 70 MB
   * embedding's Q8_0 took 22 000 page faults of 4 KiB. */
  for (guint i = 0; i < outs->len; i++)
    largest = MAX (largest, g_array_index (outs, Out, i).size);
  buffer0 = quark_buffer_alloc (MAX (largest, 1));
  buffer1 = outs->len > 1 ? quark_buffer_alloc (MAX (largest, 1)) : NULL;
  pool = _quark_parallel_new (quark_checkpoint_format_get_threads (format));
  writer_start (&writer, fd, path, pos, quark_checkpoint_format_get_durable (format));
  for (guint i = 0; i < outs->len; i++)
    {
      Out *o = &g_array_index (outs, Out, i);
      guint8 *bytes = i % 2 ? buffer1 : buffer0;
      gsize n;
      g_autofree float *x = NULL;
      gsize rows = o->n_dims == 2 ? o->ne[1] : 1;
      QuarkTensor *tensor = o->tensor;
      QuarkDType dtype = tensor ? quark_tensor_get_dtype (tensor) : QUARK_DTYPE_F32;
      const guint8 *src;
      g_autoptr(QuarkTensor) dequantized = NULL;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        goto out;
      if (o->source >= 0 && o->kind == QUARK_GGUF_BRIDGE_CODES)
        {
          /* the checkpoint's codes, in blocks */
          if (!_quark_gguf_bridge_write_rows (bridge, (guint) o->source, permuted_row, o->heads, bytes, error))
            goto out;
          _quark_gguf_bridge_release (bridge, (guint) o->source);
          if (!writer_submit (&writer, bytes, o->size, error))
            goto out;
          continue;
        }
      if (o->source >= 0 && o->kind == QUARK_GGUF_BRIDGE_DEQUANTIZED)
        {
          if ((dequantized = _quark_gguf_bridge_dequantize (bridge, (guint) o->source, error)) == NULL)
            goto out;
          tensor = dequantized;
          dtype = quark_tensor_get_dtype (tensor);
        }
      if (dtype == QUARK_DTYPE_F32 || dtype == QUARK_DTYPE_BF16 || dtype == QUARK_DTYPE_F16)
        /* rows converted as they are quantized, read from the file when
         * the tensor is mapped */
        src = quark_tensor_is_mapped (tensor) ? NULL : quark_tensor_peek_data (tensor, NULL);
      else
        {
          /* other float types: one float32 copy */
          if ((x = quark_tensor_to_floats (tensor, &n, error)) == NULL)
            goto out;
          src = (const guint8 *) x;
          dtype = QUARK_DTYPE_F32;
        }
      if (!quantize_rows (pool, o->type, src ? NULL : tensor, src, dtype, o->heads, o->importance, rows, o->ne[0],
                          bytes, error))
        goto out;
      /* done with the input: the mapped pages of one read through the
       * mapping (the float32 copy of other float types) leave the resident
       * memory, so that a run holds a tensor or two, not the model */
      if (tensor)
        quark_tensor_release_mapped_pages (tensor);
      if (bridge && o->source >= 0)
        _quark_gguf_bridge_release (bridge, (guint) o->source);
      if (!writer_submit (&writer, bytes, o->size, error))
        goto out;
    }
  if (!writer_wait (&writer, error))
    goto out;
  /* no file computed from two versions of the input: modified, replaced or
   * shrunk while it was read, the run fails and leaves nothing */
  if (!quark_model_check_sources (model, error))
    goto out;
  writer_stop (&writer);
  ok = commit (&fd, &tmp, path, overwrite, quark_checkpoint_format_get_durable (format), error);

out:
  writer_stop (&writer);
  discard_beside (fd, tmp);
  /* the output buffers (the writer is stopped) go back to the system, not
   * to the pool's idle list, as after a quantization: an application that
   * writes one GGUF file does not keep twice its largest tensor */
  g_clear_pointer (&buffer0, quark_buffer_free);
  g_clear_pointer (&buffer1, quark_buffer_free);
  quark_buffer_trim ();
  return ok;
}

/* ---- reading --------------------------------------------------------------- */

typedef struct {
  const guint8 *p, *end;
  const char *path;
  GError **error;
  gboolean failed;
} Reader;

static gboolean
need (Reader *r, gsize n)
{
  if (r->failed)
    return FALSE;
  if ((gsize) (r->end - r->p) < n)
    {
      r->failed = TRUE;
      gguf_error (r->error, r->path, "truncated GGUF file");
      return FALSE;
    }
  return TRUE;
}

static guint32
get_u32 (Reader *r)
{
  guint32 v = 0;
  if (need (r, 4))
    {
      memcpy (&v, r->p, 4);
      r->p += 4;
    }
  return GUINT32_FROM_LE (v);
}

static guint64
get_u64 (Reader *r)
{
  guint64 v = 0;
  if (need (r, 8))
    {
      memcpy (&v, r->p, 8);
      r->p += 8;
    }
  return GUINT64_FROM_LE (v);
}

/* a string: keys and tensor names must be UTF-8 without NUL (an error
 * otherwise); values (tokens of some vocabularies are raw bytes) have
 * invalid sequences replaced by U+FFFD */
static char *
get_str_checked (Reader *r, gboolean strict)
{
  guint64 n = get_u64 (r);
  char *s;
  if (r->failed || n > (guint64) (r->end - r->p) || n > G_MAXINT32)
    {
      if (!r->failed)
        {
          r->failed = TRUE;
          gguf_error (r->error, r->path, "a string runs past the end of the file");
        }
      return NULL;
    }
  if (!g_utf8_validate_len ((const char *) r->p, n, NULL) || memchr (r->p, 0, n) != NULL)
    {
      if (strict)
        {
          r->failed = TRUE;
          gguf_error (r->error, r->path, "a key or tensor name is not UTF-8");
          return NULL;
        }
      s = g_utf8_make_valid ((const char *) r->p, (gssize) n);
      r->p += n;
      return s;
    }
  s = g_strndup ((const char *) r->p, n);
  r->p += n;
  return s;
}

static char *
get_str (Reader *r)
{
  return get_str_checked (r, TRUE);
}

static gsize
value_size (guint32 type)
{
  switch (type)
    {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* one value as JSON (arrays of more than 64 elements as their length) */
static JsonNode *
get_value (Reader *r, guint32 type, int depth)
{
  JsonNode *node = json_node_new (JSON_NODE_VALUE);

  switch (type)
    {
    case GGUF_STRING:
      {
        g_autofree char *s = get_str_checked (r, FALSE);
        json_node_set_string (node, s ? s : "");
        return node;
      }
    case GGUF_ARRAY:
      {
        guint32 et = get_u32 (r);
        guint64 n = get_u64 (r);
        JsonArray *a = json_array_new ();
        if (depth > 2 || (et != GGUF_STRING && et != GGUF_ARRAY && value_size (et) == 0))
          {
            r->failed = TRUE;
            gguf_error (r->error, r->path, "an array of an unknown type");
          }
        for (guint64 i = 0; i < n && !r->failed; i++)
          {
            JsonNode *e = get_value (r, et, depth + 1);
            if (n <= 64)
              json_array_add_element (a, e);
            else
              json_node_unref (e);
          }
        json_node_unref (node);
        if (n > 64)
          {
            JsonObject *summary = json_object_new ();
            json_array_unref (a);
            json_object_set_int_member (summary, "array_length", (gint64) n);
            return _quark_format_take_object (summary);
          }
        node = json_node_new (JSON_NODE_ARRAY);
        json_node_take_array (node, a);
        return node;
      }
    default:
      break;
    }
  if (!need (r, value_size (type)) || value_size (type) == 0)
    {
      if (!r->failed)
        {
          r->failed = TRUE;
          gguf_error (r->error, r->path, "a value of an unknown type");
        }
      json_node_set_int (node, 0);
      return node;
    }
  switch (type)
    {
    case GGUF_UINT8: json_node_set_int (node, r->p[0]); break;
    case GGUF_INT8: json_node_set_int (node, (gint8) r->p[0]); break;
    case GGUF_BOOL: json_node_set_boolean (node, r->p[0] != 0); break;
    case GGUF_UINT16: json_node_set_int (node, r->p[0] | (r->p[1] << 8)); break;
    case GGUF_INT16: json_node_set_int (node, (gint16) (r->p[0] | (r->p[1] << 8))); break;
    case GGUF_UINT32: { guint32 v; memcpy (&v, r->p, 4); json_node_set_int (node, GUINT32_FROM_LE (v)); } break;
    case GGUF_INT32: { guint32 v; memcpy (&v, r->p, 4); json_node_set_int (node, (gint32) GUINT32_FROM_LE (v)); } break;
    case GGUF_FLOAT32: { float f; memcpy (&f, r->p, 4); json_node_set_double (node, f); } break;
    case GGUF_UINT64: { guint64 v; memcpy (&v, r->p, 8); json_node_set_int (node, (gint64) GUINT64_FROM_LE (v)); } break;
    case GGUF_INT64: { guint64 v; memcpy (&v, r->p, 8); json_node_set_int (node, (gint64) GUINT64_FROM_LE (v)); } break;
    case GGUF_FLOAT64: { double f; memcpy (&f, r->p, 8); json_node_set_double (node, f); } break;
    default: break;
    }
  r->p += value_size (type);
  return node;
}

/* The Hugging Face name of a GGUF tensor of the llama family, or NULL. */
static char *
hf_name (const char *gguf, gboolean permute, gint64 n_head, gint64 n_head_kv, gint64 *heads)
{
  static const struct { const char *gguf, *hf; } layer_map[] = {
    { "attn_norm.weight", "input_layernorm.weight" }, { "ffn_norm.weight", "post_attention_layernorm.weight" },
    { "attn_q.weight", "self_attn.q_proj.weight" }, { "attn_k.weight", "self_attn.k_proj.weight" },
    { "attn_v.weight", "self_attn.v_proj.weight" }, { "attn_output.weight", "self_attn.o_proj.weight" },
    { "attn_q.bias", "self_attn.q_proj.bias" }, { "attn_k.bias", "self_attn.k_proj.bias" },
    { "attn_v.bias", "self_attn.v_proj.bias" }, { "ffn_gate.weight", "mlp.gate_proj.weight" },
    { "ffn_up.weight", "mlp.up_proj.weight" }, { "ffn_down.weight", "mlp.down_proj.weight" },
  };
  guint64 block;
  char *end;

  *heads = 0;
  if (g_str_equal (gguf, "token_embd.weight"))
    return g_strdup ("model.embed_tokens.weight");
  if (g_str_equal (gguf, "output_norm.weight"))
    return g_strdup ("model.norm.weight");
  if (g_str_equal (gguf, "output.weight"))
    return g_strdup ("lm_head.weight");
  if (!g_str_has_prefix (gguf, "blk."))
    return NULL;
  block = g_ascii_strtoull (gguf + 4, &end, 10);
  if (end == gguf + 4 || *end != '.')
    return NULL;
  for (guint i = 0; i < G_N_ELEMENTS (layer_map); i++)
    if (g_str_equal (end + 1, layer_map[i].gguf))
      {
        if (permute && g_str_has_prefix (layer_map[i].gguf, "attn_q."))
          *heads = n_head;
        else if (permute && g_str_has_prefix (layer_map[i].gguf, "attn_k."))
          *heads = n_head_kv;
        return g_strdup_printf ("model.layers.%" G_GUINT64_FORMAT ".%s", block, layer_map[i].hf);
      }
  return NULL;
}

static QuarkModel *
gguf_read_file (QuarkCheckpointFormat *self, const char *path, gboolean dequantize, GError **error)
{
  g_autoptr(GMappedFile) mapped = g_mapped_file_new (path, FALSE, error);
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(JsonObject) meta = json_object_new ();
  g_autoptr(GArray) infos = NULL;
  Reader r;
  guint64 n_tensors, n_kv, data_start, alignment = GGUF_ALIGNMENT;
  const char *arch = NULL;
  gint64 n_head = 0, n_head_kv = 0;
  typedef struct { char *name; guint n_dims; guint64 ne[4]; guint32 type; guint64 offset; } Info;

  if (mapped == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  r.p = (const guint8 *) g_mapped_file_get_contents (mapped);
  r.end = r.p + g_mapped_file_get_length (mapped);
  r.path = path;
  r.error = error;
  r.failed = FALSE;
  if (get_u32 (&r) != GGUF_MAGIC)
    {
      if (!r.failed)
        gguf_error (error, path, "not a GGUF file (no \"GGUF\" magic)");
      return NULL;
    }
  if (get_u32 (&r) != GGUF_VERSION && !r.failed)
    {
      gguf_error (error, path, "only GGUF version 3 is read");
      return NULL;
    }
  n_tensors = get_u64 (&r);
  n_kv = get_u64 (&r);
  if (r.failed)
    return NULL;
  if (n_tensors > (guint64) (r.end - r.p) || n_kv > (guint64) (r.end - r.p))
    {
      gguf_error (error, path, "tensor or key-value count larger than the file");
      return NULL;
    }
  for (guint64 i = 0; i < n_kv && !r.failed; i++)
    {
      g_autofree char *key = get_str (&r);
      guint32 type = get_u32 (&r);
      JsonNode *v = r.failed ? NULL : get_value (&r, type, 0);
      if (v == NULL || r.failed)
        {
          if (v)
            json_node_unref (v);
          break;
        }
      json_object_set_member (meta, key, v);
    }
  if (r.failed)
    return NULL;
  arch = json_object_get_string_member_with_default (meta, "general.architecture", "");
  {
    g_autofree char *kh = g_strconcat (arch, ".attention.head_count", NULL);
    g_autofree char *kkv = g_strconcat (arch, ".attention.head_count_kv", NULL);
    n_head = json_object_get_int_member_with_default (meta, kh, 0);
    n_head_kv = json_object_get_int_member_with_default (meta, kkv, n_head);
  }
  alignment = (guint64) json_object_get_int_member_with_default (meta, "general.alignment", GGUF_ALIGNMENT);
  if (alignment == 0 || alignment % 8 != 0)
    {
      gguf_error (error, path, "general.alignment is not a positive multiple of 8");
      return NULL;
    }
  infos = g_array_new (FALSE, TRUE, sizeof (Info));
  for (guint64 i = 0; i < n_tensors && !r.failed; i++)
    {
      Info info = { 0 };
      info.name = get_str (&r);
      info.n_dims = get_u32 (&r);
      if (info.n_dims == 0 || info.n_dims > 4)
        {
          g_free (info.name);
          if (!r.failed)
            gguf_error (error, path, "a tensor of 0 or more than 4 dimensions");
          r.failed = TRUE;
          break;
        }
      for (guint k = 0; k < info.n_dims; k++)
        info.ne[k] = get_u64 (&r);
      info.type = get_u32 (&r);
      info.offset = get_u64 (&r);
      g_array_append_val (infos, info);
    }
  if (r.failed)
    {
      for (guint i = 0; i < infos->len; i++)
        g_free (g_array_index (infos, Info, i).name);
      return NULL;
    }
  data_start = (guint64) (r.p - (const guint8 *) g_mapped_file_get_contents (mapped));
  data_start += (alignment - data_start % alignment) % alignment;

  model = quark_model_new ();
  for (guint i = 0; i < infos->len; i++)
    {
      Info *info = &g_array_index (infos, Info, i);
      const QuarkGgmlTypeInfo *ti = _quark_ggml_type_lookup (info->type);
      guint64 n = 1, rows, size;
      gint64 shape[4];
      const guint8 *data;
      g_autofree char *name = NULL;
      gint64 heads = 0;
      g_autoptr(QuarkTensor) t = NULL;
      gboolean bad = FALSE;

      for (guint k = 0; k < info->n_dims; k++)
        {
          if (info->ne[k] > G_MAXINT32 || (info->ne[k] && n > G_MAXUINT64 / info->ne[k]))
            bad = TRUE;
          else
            n *= info->ne[k];
          shape[info->n_dims - 1 - k] = (gint64) info->ne[k];
        }
      if (ti == NULL || bad || info->ne[0] % ti->block != 0)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: tensor %s: %s", path, info->name,
                       ti == NULL ? "a ggml type this library does not read" : "a shape that does not fit its type");
          break;
        }
      rows = info->ne[0] ? n / info->ne[0] : 0;   /* an empty tensor has no rows */
      size = _quark_ggml_row_size (info->type, info->ne[0]) * rows;
      if (info->offset % alignment != 0 || data_start + info->offset > (guint64) (r.end - (const guint8 *)
                                                                                  g_mapped_file_get_contents (mapped)) ||
          size > (guint64) (r.end - (const guint8 *) g_mapped_file_get_contents (mapped)) - data_start - info->offset)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: tensor %s runs past the end of the file",
                       path, info->name);
          break;
        }
      data = (const guint8 *) g_mapped_file_get_contents (mapped) + data_start + info->offset;
      if (!dequantize)
        {
          /* as stored: the bytes, under the GGUF name, typed when the type is a plain one */
          QuarkDType dt = info->type == QUARK_GGML_F32 ? QUARK_DTYPE_F32 : info->type == QUARK_GGML_F16 ? QUARK_DTYPE_F16
                          : info->type == QUARK_GGML_BF16 ? QUARK_DTYPE_BF16 : QUARK_DTYPE_U8;
          gint64 bshape[1] = { (gint64) size };
          g_autoptr(GBytes) bytes = g_bytes_new (data, size);
          t = dt == QUARK_DTYPE_U8 ? quark_tensor_new (info->name, dt, bshape, 1, bytes, error)
                                   : quark_tensor_new (info->name, dt, shape, info->n_dims, bytes, error);
        }
      else
        {
          float *x = g_new (float, MAX (n, 1));
          name = hf_name (info->name, g_str_equal (arch, "llama"), n_head, n_head_kv, &heads);
          for (guint64 row = 0; row < rows; row++)
            _quark_ggml_dequantize_row (info->type, data + row * _quark_ggml_row_size (info->type, info->ne[0]),
                                        info->ne[0], x + row * info->ne[0]);
          if (heads > 0 && info->n_dims == 2 && rows % (guint64) (2 * heads) == 0)
            {
              float *p = g_new (float, MAX (n, 1));
              unpermute_rows (x, p, rows, info->ne[0], heads);
              g_free (x);
              x = p;
            }
          t = _quark_format_new_tensor (name ? name : info->name, QUARK_DTYPE_F32, shape, info->n_dims, x,
                                        n * sizeof (float), error);
        }
      if (t == NULL || !quark_model_add_tensor (model, t, error))
        break;
    }
  for (guint i = 0; i < infos->len; i++)
    g_free (g_array_index (infos, Info, i).name);
  if (error && *error)
    return NULL;
  {
    JsonObject *md = json_object_new ();
    json_object_set_object_member (md, "gguf", json_object_ref (meta));
    json_object_set_int_member (md, "gguf_tensor_count", (gint64) n_tensors);
    {
      g_autoptr(JsonNode) node = _quark_format_take_object (md);
      quark_model_set_metadata (model, node);
    }
  }
  return g_steal_pointer (&model);
}

/* ---- what the room's other files use ------------------------------------- */

char *
_quark_gguf_weight_name (const char *hf_name)
{
  const Arch plain = { 0 };   /* names do not depend on the architecture */
  gint64 heads;

  return gguf_name (&plain, hf_name, &heads);
}

QuarkModel *
_quark_gguf_read_raw (const char *path, GError **error)
{
  return gguf_read_file (NULL, path, FALSE, error);
}

gboolean
_quark_gguf_write_imatrix (const char *path, QuarkModel *tensors, const char * const *datasets, guint32 chunk_count,
                           guint32 chunk_size, gboolean overwrite, GError **error)
{
  Kv kv = { g_byte_array_new (), 0 };
  g_autoptr(GByteArray) kvb G_GNUC_UNUSED = kv.bytes;   /* frees kv.bytes */
  g_autoptr(GByteArray) head = g_byte_array_new ();
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  g_autofree char *tmp = NULL;
  guint n = quark_model_get_n_tensors (tensors);
  guint64 offset = 0, pos;
  int fd;
  gboolean ok = FALSE;

  for (guint i = 0; datasets && datasets[i]; i++)
    g_ptr_array_add (names, (gpointer) datasets[i]);
  kv_str (&kv, "general.type", "imatrix");
  kv_strv (&kv, "imatrix.datasets", names);
  kv_u32 (&kv, "imatrix.chunk_count", chunk_count);
  kv_u32 (&kv, "imatrix.chunk_size", chunk_size);
  put_header (head, n, &kv);
  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (tensors, i);
      guint n_dims;
      const gint64 *shape = quark_tensor_get_shape (t, &n_dims);
      gsize size = quark_tensor_get_n_elements (t) * sizeof (float);

      guint64 ne[4];

      g_return_val_if_fail (quark_tensor_get_dtype (t) == QUARK_DTYPE_F32 && n_dims >= 1 && n_dims <= 4, FALSE);
      for (guint k = 0; k < n_dims; k++)
        ne[k] = (guint64) shape[n_dims - 1 - k];
      put_tensor_info (head, quark_tensor_get_name (t), n_dims, ne, QUARK_GGML_F32, offset);
      offset += aligned (size);
    }
  if ((fd = open_beside (path, &tmp, error)) < 0)
    return FALSE;
  pos = head->len;
  if (!write_all (fd, head->data, head->len, path, error) || !pad (fd, &pos, path, error))
    goto out;
  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (tensors, i);
      gsize size = quark_tensor_get_n_elements (t) * sizeof (float);
      const float *le = quark_tensor_peek_data (t, NULL);
#if G_BYTE_ORDER == G_BIG_ENDIAN
      /* GGUF is little-endian: a swapped copy */
      g_autofree guint32 *swapped = g_memdup2 (le, size);
      for (gsize k = 0; k < size / 4; k++)
        swapped[k] = GUINT32_TO_LE (swapped[k]);
      le = (const float *) swapped;
#endif

      pos += size;
      if (!write_all (fd, le, size, path, error) || !pad (fd, &pos, path, error))
        goto out;
    }
  ok = commit (&fd, &tmp, path, overwrite, TRUE, error);

out:
  discard_beside (fd, tmp);
  return ok;
}

static JsonNode *
gguf_build_quantization_config (QuarkCheckpointFormat *self, GError **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
               "GGUF files are written whole (quark_checkpoint_format_write_model), not from a backend's tensors");
  return NULL;
}

static gboolean
gguf_write_weight (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec, QuarkModel *logical,
                   QuarkModel *out, GError **error)
{
  return gguf_build_quantization_config (self, error) != NULL;
}

static gboolean
gguf_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape, guint n_dims,
                   QuarkTensorSpec *spec, GError **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
               "tensor %s: GGUF quantizes with llama.cpp's numerics, not a backend's: use quark quantize "
               "--export-format gguf --type TYPE (no preset or config)", name);
  return FALSE;
}

static gboolean
gguf_sniff (QuarkCheckpointFormat *self, const guint8 *head, gsize length)
{
  return length >= 4 && memcmp (head, "GGUF", 4) == 0;
}

static const char * const inexact_names[] = { "fail", "round", "dequantize", NULL };

static void
gguf_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  QuarkFormatGguf *self = QUARK_FORMAT_GGUF (object);

  switch (prop_id)
    {
    case PROP_INEXACT:
      g_value_set_string (value, inexact_names[self->inexact]);
      break;
    case PROP_REPORT:
      {
        GStrvBuilder *b = g_strv_builder_new ();
        for (guint i = 0; i < self->report->len; i++)
          g_strv_builder_add (b, g_ptr_array_index (self->report, i));
        g_value_take_boxed (value, g_strv_builder_end (b));
        g_strv_builder_unref (b);
      }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
gguf_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  QuarkFormatGguf *self = QUARK_FORMAT_GGUF (object);
  const char *name;

  switch (prop_id)
    {
    case PROP_INEXACT:
      name = g_value_get_string (value);
      for (guint i = 0; inexact_names[i]; i++)
        if (name && g_str_equal (name, inexact_names[i]))
          {
            self->inexact = (QuarkGgufInexact) i;
            return;
          }
      g_warning ("QuarkFormatGguf:inexact: \"%s\" is not one of fail, round, dequantize", name ? name : "(null)");
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
gguf_finalize (GObject *object)
{
  QuarkFormatGguf *self = QUARK_FORMAT_GGUF (object);

  g_ptr_array_unref (self->report);
  G_OBJECT_CLASS (_quark_format_gguf_parent_class)->finalize (object);
}

static void
_quark_format_gguf_class_init (QuarkFormatGgufClass *klass)
{
  QuarkCheckpointFormatClass *format_class = QUARK_CHECKPOINT_FORMAT_CLASS (klass);
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = gguf_get_property;
  object_class->set_property = gguf_set_property;
  object_class->finalize = gguf_finalize;

  /* QuarkFormatGguf:inexact:
   *
   * Writing an already quantized model (its codes carried into Q4_0, Q4_1,
   * Q5_0, Q5_1 or Q8_0 blocks): what to do with a weight whose scales or
   * minima are not exact in binary16, or whose scheme no block holds:
   * "fail" (the default; the error names every such tensor), "round" (d
   * and m rounded to binary16, the codes kept, as AMD Quark's own GGUF
   * export does) or "dequantize" (that weight in F32, exactly). */
  gguf_props[PROP_INEXACT] =
    g_param_spec_string ("inexact", NULL, NULL, "fail", G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  /* QuarkFormatGguf:report:
   *
   * After writing an already quantized model: one line per tensor that was
   * not carried over exactly, and what was done with it. */
  gguf_props[PROP_REPORT] =
    g_param_spec_boxed ("report", NULL, NULL, G_TYPE_STRV, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, gguf_props);

  format_class->name = "gguf";
  format_class->description = "GGUF for llama.cpp (one file; llama.cpp's own types and numerics)";
  format_class->check_weight = gguf_check_weight;
  format_class->write_weight = gguf_write_weight;
  format_class->build_quantization_config = gguf_build_quantization_config;
  format_class->list_schemes = gguf_list_schemes;
  format_class->describe_scheme = gguf_describe_scheme;
  format_class->write_model = gguf_write_model;
  format_class->read_file = gguf_read_file;
  format_class->sniff = gguf_sniff;
}

static void
_quark_format_gguf_init (QuarkFormatGguf *self)
{
  self->report = g_ptr_array_new_with_free_func (g_free);
}
