/* quark-safetensors.c: reading and writing safetensors checkpoints
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-safetensors.h"
#include "quark-safetensors-private.h"
#include "quark-checkpoint-writer.h"
#include "quark-tensor-private.h"
#include "quark-model-private.h"
#include "quark-input-file-private.h"
#include "quark-error.h"
#include "quark-json.h"
#include "quark-json-private.h"
#include "kernels/quark-kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

typedef struct {
  const char *name;
  QuarkDType dtype;
  gboolean packed_f4;
  gint64 shape[QUARK_TENSOR_MAX_DIMS];
  guint n_dims;
  guint64 begin, end;
} Entry;

G_GNUC_PRINTF (3, 4)
static gboolean
file_error (GError **error, const char *source, const char *format, ...)
{
  g_autofree char *msg = NULL;
  va_list args;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", source, msg);
  return FALSE;
}

static gboolean
read_uint_array (JsonNode *node, guint max_len, guint64 *out, guint *len)
{
  JsonArray *array;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return FALSE;
  array = json_node_get_array (node);
  if (json_array_get_length (array) > max_len)
    return FALSE;
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *e = json_array_get_element (array, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64 ||
          json_node_get_int (e) < 0)
        return FALSE;
      out[i] = (guint64) json_node_get_int (e);
    }
  *len = json_array_get_length (array);
  return TRUE;
}

static int
compare_entries (gconstpointer a, gconstpointer b)
{
  const Entry *x = *(const Entry * const *) a, *y = *(const Entry * const *) b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static gboolean
parse_entry (const char *source, const char *name, JsonNode *node, Entry *e, GError **error)
{
  static const char * const keys[] = { "dtype", "shape", "data_offsets", NULL };
  JsonObject *object;
  JsonNode *dtype_node;
  guint64 dims[QUARK_TENSOR_MAX_DIMS + 1], offsets[3];
  guint n_dims, n_offsets;
  guint64 count = 1, bits, nbytes;
  g_autoptr(GError) local_error = NULL;

  e->name = name;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return file_error (error, source, "tensor %s: the header entry is not an object", name);
  object = json_node_get_object (node);
  if (!quark_json_check_members (object, name, keys, &local_error))
    return file_error (error, source, "tensor %s: %s", name, local_error->message);
  for (guint i = 0; keys[i]; i++)
    if (!json_object_has_member (object, keys[i]))
      return file_error (error, source, "tensor %s: the header entry lacks %s", name, keys[i]);

  dtype_node = json_object_get_member (object, "dtype");
  if (!JSON_NODE_HOLDS_VALUE (dtype_node) || json_node_get_value_type (dtype_node) != G_TYPE_STRING)
    return file_error (error, source, "tensor %s: dtype is not a string", name);
  if (!quark_dtype_from_safetensors (json_node_get_string (dtype_node), &e->dtype))
    return file_error (error, source, "tensor %s: unknown dtype \"%s\"", name, json_node_get_string (dtype_node));
  if (e->dtype == QUARK_DTYPE_FP6_E2M3 || e->dtype == QUARK_DTYPE_FP6_E3M2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE,
                   "%s: tensor %s: reading dtype %s is not supported", source, name,
                   json_node_get_string (dtype_node));
      return FALSE;
    }
  e->packed_f4 = e->dtype == QUARK_DTYPE_FP4_E2M1;

  if (!read_uint_array (json_object_get_member (object, "shape"), QUARK_TENSOR_MAX_DIMS, dims, &n_dims))
    return file_error (error, source, "tensor %s: shape is not an array of at most %d non-negative integers",
                       name, QUARK_TENSOR_MAX_DIMS);
  if (!read_uint_array (json_object_get_member (object, "data_offsets"), 2, offsets, &n_offsets) ||
      n_offsets != 2)
    return file_error (error, source, "tensor %s: data_offsets is not a pair of non-negative integers", name);
  if (offsets[0] > offsets[1])
    return file_error (error, source, "tensor %s: data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       "] end before they begin", name, offsets[0], offsets[1]);

  e->n_dims = n_dims;
  for (guint i = 0; i < n_dims; i++)
    {
      if (dims[i] > G_MAXINT64 || (dims[i] != 0 && count > G_MAXUINT64 / dims[i]))
        return file_error (error, source, "tensor %s: the number of elements overflows 64 bits", name);
      count *= dims[i];
      e->shape[i] = (gint64) dims[i];
    }
  bits = quark_dtype_get_bits (e->dtype);
  if (count > G_MAXUINT64 / bits)
    return file_error (error, source, "tensor %s: the size in bits overflows 64 bits", name);
  if ((count * bits) % 8)
    return file_error (error, source, "tensor %s: %" G_GUINT64_FORMAT " elements of %" G_GUINT64_FORMAT
                       " bits do not fill whole bytes", name, count, bits);
  nbytes = count * bits / 8;
  if (offsets[1] - offsets[0] != nbytes)
    return file_error (error, source, "tensor %s: shape and dtype need %" G_GUINT64_FORMAT
                       " bytes, but data_offsets span %" G_GUINT64_FORMAT, name, nbytes, offsets[1] - offsets[0]);
  e->begin = offsets[0];
  e->end = offsets[1];
  return TRUE;
}

/* The header's members, one at a time (_quark_json_parse_members()): the
 * tensors' entries into @entries, their names into @names; no tree of the
 * whole header is built. */
typedef struct {
  const char *source;
  GArray *entries;
  GStringChunk *names;
} HeaderReader;

static gboolean
read_header_member (const char *name, JsonNode *node, gpointer user_data, GError **error)
{
  HeaderReader *r = user_data;
  Entry e = { 0 };

  if (g_str_equal (name, "__metadata__"))
    {
      JsonObjectIter iter;
      const char *key;
      JsonNode *v;

      if (!JSON_NODE_HOLDS_OBJECT (node))
        return file_error (error, r->source, "__metadata__ is not an object");
      json_object_iter_init_ordered (&iter, json_node_get_object (node));
      while (json_object_iter_next_ordered (&iter, &key, &v))
        if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
          return file_error (error, r->source, "__metadata__.%s is not a string", key);
      return TRUE;
    }
  if (!parse_entry (r->source, name, node, &e, error))
    return FALSE;
  e.name = g_string_chunk_insert (r->names, name);
  g_array_append_val (r->entries, e);
  return TRUE;
}

/* What a file that is not safetensors probably is, from its first bytes. */
static const char *
other_format (const guint8 *data, gsize size)
{
  gsize i = 0;

  if (size >= 4 && memcmp (data, "PK\003\004", 4) == 0)
    return "a zip archive (PyTorch's torch.save format, as in pytorch_model.bin), which libquark does not read";
  if (size >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5)
    return "a Python pickle (an old PyTorch checkpoint), which libquark does not read";
  if (size >= 4 && memcmp (data, "GGUF", 4) == 0)
    return "a GGUF file";
  while (i < size && i < 64 && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
    i++;
  if (i < size && (data[i] == '{' || data[i] == '['))
    return "JSON text";
  return NULL;
}

/* Everything the reader checks of a safetensors file in memory, without
 * making a tensor: the entries (in header order, names in @names) and where
 * the data starts. Errors as quark_model_new_from_safetensors_bytes(). */
static GArray *
read_layout (GBytes *contents, const char *source, GStringChunk *names, guint64 *data_start_out, GError **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GPtrArray) sorted = NULL;
  g_autoptr(GArray) storage = g_array_new (FALSE, TRUE, sizeof (Entry));
  HeaderReader reader = { source, storage, names };
  const guint8 *data;
  gsize size;
  guint64 header_len, data_start, expected_end = 0;
  const char *header;
  guint i;

  data = g_bytes_get_data (contents, &size);
  if (size < 8)
    {
      file_error (error, source, "%" G_GSIZE_FORMAT " bytes, too short for a safetensors header length", size);
      return NULL;
    }
  memcpy (&header_len, data, sizeof header_len);
  header_len = GUINT64_FROM_LE (header_len);
  if (header_len > QUARK_SAFETENSORS_MAX_HEADER || 8 + header_len > size)
    {
      const char *kind = other_format (data, size);
      if (kind)
        file_error (error, source, "not a safetensors file: it looks like %s", kind);
      else if (header_len > QUARK_SAFETENSORS_MAX_HEADER)
        file_error (error, source, "not a safetensors file: its first 8 bytes give a header length of %"
                    G_GUINT64_FORMAT " bytes, beyond the format's limit of %d", header_len,
                    QUARK_SAFETENSORS_MAX_HEADER);
      else
        file_error (error, source, "header length %" G_GUINT64_FORMAT " goes beyond the end of the file (%"
                    G_GSIZE_FORMAT " bytes): truncated, or not a safetensors file", header_len, size);
      return NULL;
    }
  header = (const char *) data + 8;
  {
    guint64 k = 0;
    while (k < header_len && header[k] == ' ')
      k++;
    if (k == header_len || header[k] != '{')
      {
        file_error (error, source, "the header is not a JSON object");
        return NULL;
      }
  }
  if (!_quark_json_parse_members (header, header_len, "header", read_header_member, &reader, &local_error))
    {
      if (local_error->domain == QUARK_CONFIG_ERROR)
        file_error (error, source, "%s", local_error->message);
      else
        g_propagate_error (error, g_steal_pointer (&local_error));
      return NULL;
    }
  /* contiguity: sorted by offsets, from 0, no hole, no overlap */
  sorted = g_ptr_array_sized_new (storage->len);
  for (i = 0; i < storage->len; i++)
    g_ptr_array_add (sorted, &g_array_index (storage, Entry, i));
  g_ptr_array_sort (sorted, compare_entries);
  for (i = 0; i < sorted->len; i++)
    {
      Entry *e = g_ptr_array_index (sorted, i);
      if (e->begin > expected_end)
        {
          file_error (error, source, "a hole of %" G_GUINT64_FORMAT " bytes precedes tensor %s "
                      "(data_offsets must be contiguous)", e->begin - expected_end, e->name);
          return NULL;
        }
      if (e->begin < expected_end)
        {
          Entry *prev = g_ptr_array_index (sorted, i - 1);
          file_error (error, source, "tensors %s and %s overlap", prev->name, e->name);
          return NULL;
        }
      expected_end = e->end;
    }
  data_start = 8 + header_len;
  if (data_start + expected_end != size)
    {
      file_error (error, source, "the header describes %" G_GUINT64_FORMAT " bytes, but the file has %"
                  G_GSIZE_FORMAT, data_start + expected_end, size);
      return NULL;
    }
  *data_start_out = data_start;
  return g_steal_pointer (&storage);
}

gboolean
_quark_safetensors_read_names (GBytes *contents, const char *source, GPtrArray *names, GError **error)
{
  g_autoptr(GStringChunk) chunk = g_string_chunk_new (4096);
  g_autoptr(GArray) entries = NULL;
  guint64 data_start;

  entries = read_layout (contents, source, chunk, &data_start, error);
  if (entries == NULL)
    return FALSE;
  for (guint i = 0; i < entries->len; i++)
    g_ptr_array_add (names, g_strdup (g_array_index (entries, Entry, i).name));
  return TRUE;
}

/**
 * quark_model_new_from_safetensors_bytes:
 * @contents: the bytes of a safetensors file (a mapped file works without
 *   copying)
 * @source: a name for the file in messages
 * @error: return location for a #GError
 *
 * Reads a safetensors file held in memory, with every rule of the format
 * reference: a header length within the limit and the file, a strict JSON
 * header whose entries have exactly `dtype`, `shape` and `data_offsets`,
 * known dtypes, sizes equal to the shape times the element size (with
 * overflow checks), tensors contiguous from offset 0 with no hole and no
 * overlap, and a file size equal to what the header describes.
 *
 * Tensors reference @contents without copying, except `F4` tensors, which
 * are unpacked to one FP4 code per byte.
 *
 * Returns: (transfer full): the model, or %NULL with %QUARK_ERROR_INVALID_FILE
 *   (or %QUARK_ERROR_UNSUPPORTED_DTYPE) naming @source and the tensor at fault
 */
QuarkModel *
quark_model_new_from_safetensors_bytes (GBytes      *contents,
                                        const char  *source,
                                        GError     **error)
{
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(GStringChunk) names = g_string_chunk_new (4096);
  g_autoptr(GArray) entries = NULL;
  guint64 data_start;
  guint i;

  g_return_val_if_fail (contents != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (source == NULL)
    source = "<safetensors>";
  entries = read_layout (contents, source, names, &data_start, error);
  if (entries == NULL)
    return NULL;

  model = quark_model_new ();
  for (i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      g_autoptr(GBytes) slice = g_bytes_new_from_bytes (contents, data_start + e->begin, e->end - e->begin);
      g_autoptr(QuarkTensor) tensor = NULL;

      if (e->packed_f4)
        {
          gsize n = (e->end - e->begin) * 2;
          guint8 *codes = g_malloc (MAX (n, 1));
          g_autoptr(GBytes) unpacked = NULL;
          quark_kernel_unpack_fp4 (g_bytes_get_data (slice, NULL), n, codes);
          unpacked = g_bytes_new_take (codes, n);
          tensor = quark_tensor_new (e->name, e->dtype, e->shape, e->n_dims, unpacked, error);
        }
      else
        tensor = quark_tensor_new (e->name, e->dtype, e->shape, e->n_dims, slice, error);
      if (tensor == NULL)
        {
          g_prefix_error (error, "%s: ", source);
          return NULL;
        }
      if (!quark_model_add_tensor (model, tensor, error))
        return NULL;
    }
  return g_steal_pointer (&model);
}

static QuarkModel *
load_file (const char *path, const char *display, GError **error)
{
  g_autoptr(QuarkInputFile) file = NULL;
  g_autoptr(GBytes) bytes = NULL;
  QuarkModel *model;

  file = _quark_input_file_map (path, &bytes, error);
  if (file == NULL)
    return NULL;
  model = quark_model_new_from_safetensors_bytes (bytes, display, error);
  if (model == NULL)
    return NULL;
  /* tensors that reference the mapping (not unpacked copies) */
  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      const guint8 *p = quark_tensor_peek_data (t, NULL);
      const guint8 *base = g_bytes_get_data (bytes, NULL);
      if (base && p >= base && p < base + g_bytes_get_size (bytes))
        _quark_tensor_set_mapped (t, file, (guint64) (p - base));
    }
  _quark_model_add_source (model, file);
  /* the header was read from the mapping */
  if (!_quark_input_file_check (file, error))
    {
      g_object_unref (model);
      return NULL;
    }
  return model;
}

/* A JSON file of the model directory, read within its size limit. */
static JsonNode *
read_json (const char *path, gsize limit, const char *what, GError **error)
{
  g_autoptr(GError) local_error = NULL;
  JsonNode *root = _quark_input_read_json (path, limit, what, &local_error);

  if (root == NULL && local_error->domain != QUARK_ERROR)
    g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s", local_error->message);
  else if (root == NULL)
    g_propagate_error (error, g_steal_pointer (&local_error));
  return root;
}

static gboolean
is_plain_file_name (const char *name)
{
  return *name && strchr (name, '/') == NULL && strcmp (name, ".") != 0 && strcmp (name, "..") != 0;
}

static QuarkModel *
load_sharded (const char *dir, const char *index_path, GCancellable *cancellable, GError **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GHashTable) shards = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_object_unref);
  g_autoptr(GPtrArray) order = g_ptr_array_new ();
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(GList) names = NULL;
  JsonObject *weight_map;
  JsonNode *wm;
  static const char * const keys[] = { "metadata", "weight_map", NULL };

  root = read_json (index_path, QUARK_INPUT_MAX_INDEX_SIZE, "a shard index", error);
  if (root == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (root) ||
      !quark_json_check_members (json_node_get_object (root), NULL, keys, &local_error))
    {
      file_error (error, index_path, "%s", local_error ? local_error->message : "not a JSON object");
      return NULL;
    }
  wm = json_object_get_member (json_node_get_object (root), "weight_map");
  if (wm == NULL || !JSON_NODE_HOLDS_OBJECT (wm))
    {
      file_error (error, index_path, "weight_map is missing or not an object");
      return NULL;
    }
  weight_map = json_node_get_object (wm);
  names = json_object_get_members (weight_map);
  if (names == NULL)
    {
      file_error (error, index_path, "weight_map is empty: the index names no tensor");
      return NULL;
    }

  /* load every shard once, in order of first mention */
  for (GList *l = names; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (weight_map, l->data);
      const char *shard;
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
        {
          file_error (error, index_path, "weight_map.%s is not a file name", (const char *) l->data);
          return NULL;
        }
      shard = json_node_get_string (v);
      if (!is_plain_file_name (shard))
        {
          file_error (error, index_path, "weight_map.%s names \"%s\", which is not a file in the model directory",
                      (const char *) l->data, shard);
          return NULL;
        }
      if (!g_hash_table_contains (shards, shard))
        {
          g_autofree char *shard_path = g_build_filename (dir, shard, NULL);
          QuarkModel *shard_model;

          const char *kind;

          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            return NULL;

          if (!_quark_input_is_regular (shard_path, &kind))
            {
              if (g_str_equal (kind, "missing"))
                file_error (error, index_path, "shard %s (for tensor %s) is missing", shard, (const char *) l->data);
              else
                file_error (error, index_path, "shard %s (for tensor %s) is %s, not a regular file", shard,
                            (const char *) l->data, kind);
              return NULL;
            }
          shard_model = load_file (shard_path, shard_path, error);
          if (shard_model == NULL)
            return NULL;
          g_hash_table_insert (shards, (gpointer) shard, shard_model);
          g_ptr_array_add (order, (gpointer) shard);
          _quark_model_copy_sources (model, shard_model);
        }
    }

  /* every shard tensor is in the index under that shard, and the reverse */
  for (guint s = 0; s < order->len; s++)
    {
      QuarkModel *shard_model = g_hash_table_lookup (shards, order->pdata[s]);
      for (guint t = 0; t < quark_model_get_n_tensors (shard_model); t++)
        {
          QuarkTensor *tensor = quark_model_get_tensor_at (shard_model, t);
          JsonNode *v = json_object_get_member (weight_map, quark_tensor_get_name (tensor));
          if (v == NULL || g_strcmp0 (json_node_get_string (v), order->pdata[s]) != 0)
            {
              file_error (error, index_path, "tensor %s is in shard %s but the index does not map it there",
                          quark_tensor_get_name (tensor), (const char *) order->pdata[s]);
              return NULL;
            }
          if (!quark_model_add_tensor (model, tensor, error))
            {
              g_prefix_error (error, "%s: ", index_path);
              return NULL;
            }
        }
    }
  for (GList *l = names; l; l = l->next)
    if (quark_model_get_tensor (model, l->data) == NULL)
      {
        file_error (error, index_path, "tensor %s is not in shard %s", (const char *) l->data,
                    json_node_get_string (json_object_get_member (weight_map, l->data)));
        return NULL;
      }
  return g_steal_pointer (&model);
}

/**
 * quark_model_load:
 * @path: (type filename): a model directory or a `.safetensors` file
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Loads a model without copying its weights: files are memory-mapped and
 * tensors reference the mapping. A directory holds either
 * `model.safetensors` or a sharded checkpoint (`model.safetensors.index.json`
 * and the shards it names); its `config.json`, when present, becomes the
 * model's metadata. Every file is validated as
 * quark_model_new_from_safetensors_bytes() describes; the index must name
 * existing shards in the directory, and map every tensor to the shard that
 * holds it, and may not be empty; `config.json` must be a JSON object.
 *
 * Only regular files are read (symbolic links to them are followed): a
 * FIFO, a device or a directory where a file is expected is an error, so
 * nothing blocks. `config.json` may be at most 16 MiB and the index 64 MiB.
 * The mappings are guarded: a file that shrinks while its tensors are read
 * does not crash the process, and quark_model_check_sources() reports it
 * and any other change of the files.
 *
 * Returns: (transfer full): the model, or %NULL with %QUARK_ERROR_INVALID_FILE,
 *   %QUARK_ERROR_IO or %G_IO_ERROR_CANCELLED naming the file at fault
 */
QuarkModel *
quark_model_load (const char    *path,
                  GCancellable  *cancellable,
                  GError       **error)
{
  g_autoptr(QuarkModel) model = NULL;
  g_autofree char *index_path = NULL, *single = NULL, *config_path = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    return load_file (path, path, error);   /* refuses what is not a regular file */

  index_path = g_build_filename (path, "model.safetensors.index.json", NULL);
  single = g_build_filename (path, "model.safetensors", NULL);
  if (g_file_test (index_path, G_FILE_TEST_EXISTS))
    model = load_sharded (path, index_path, cancellable, error);
  else if (g_file_test (single, G_FILE_TEST_EXISTS))
    model = load_file (single, single, error);
  else
    {
      static const char * const pickled[] = { "pytorch_model.bin", "pytorch_model.bin.index.json",
                                              "consolidated.00.pth", "model.pt", "model.pth", NULL };
      for (guint i = 0; pickled[i]; i++)
        {
          g_autofree char *p = g_build_filename (path, pickled[i], NULL);
          if (g_file_test (p, G_FILE_TEST_EXISTS))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                           "%s: has %s, a pickled PyTorch checkpoint, and no safetensors: libquark does not read "
                           "pickles, since loading one can run arbitrary code; convert it to safetensors first "
                           "(for example with transformers: save_pretrained (..., safe_serialization=True))",
                           path, pickled[i]);
              return NULL;
            }
        }
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "%s: neither model.safetensors nor model.safetensors.index.json is in this directory", path);
      return NULL;
    }
  if (model == NULL)
    return NULL;

  config_path = g_build_filename (path, "config.json", NULL);
  if (g_file_test (config_path, G_FILE_TEST_EXISTS))
    {
      g_autoptr(JsonNode) config = read_json (config_path, QUARK_INPUT_MAX_CONFIG_SIZE, "a model config", error);
      if (config == NULL)
        return NULL;
      if (!JSON_NODE_HOLDS_OBJECT (config))
        {
          file_error (error, config_path, "a model config must be a JSON object");
          return NULL;
        }
      quark_model_set_metadata (model, config);
    }
  return g_steal_pointer (&model);
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

/**
 * quark_model_save:
 * @self: a #QuarkModel
 * @directory: (type filename): the output directory; it must not exist
 *   unless @overwrite is set
 * @max_shard_size: the largest shard in bytes (0 for
 *   %QUARK_SAFETENSORS_DEFAULT_SHARD_SIZE); a larger tensor gets a shard of
 *   its own
 * @overwrite: replace an existing @directory
 * @copy_from: (nullable) (type filename): a model directory whose other
 *   files (tokenizer, generation config, …: every regular file but the
 *   weights, the index and `config.json`) are copied unchanged into the
 *   output
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Writes the model as a Hugging Face model directory with a
 * #QuarkCheckpointWriter: `model.safetensors`, or shards
 * `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`
 * when the tensors exceed @max_shard_size (greedy, in model order), and
 * `config.json` from the metadata. See #QuarkCheckpointWriter for the layout
 * and for the guarantee that a failed save leaves nothing that looks
 * complete.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_IO,
 *   %QUARK_ERROR_UNSUPPORTED_DTYPE or %G_IO_ERROR_CANCELLED
 */
gboolean
quark_model_save (QuarkModel    *self,
                  const char    *directory,
                  guint64        max_shard_size,
                  gboolean       overwrite,
                  const char    *copy_from,
                  GCancellable  *cancellable,
                  GError       **error)
{
  g_autoptr(QuarkCheckpointWriter) writer = NULL;

  g_return_val_if_fail (QUARK_IS_MODEL (self), FALSE);
  g_return_val_if_fail (directory != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  writer = quark_checkpoint_writer_new (directory, max_shard_size, overwrite, error);
  if (writer == NULL)
    return FALSE;
  for (guint i = 0; i < quark_model_get_n_tensors (self); i++)
    {
      if (g_cancellable_is_cancelled (cancellable))
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
          quark_checkpoint_writer_abort (writer);
          return FALSE;
        }
      if (!quark_checkpoint_writer_add (writer, quark_model_get_tensor_at (self, i), error))
        {
          quark_checkpoint_writer_abort (writer);
          return FALSE;
        }
    }
  quark_checkpoint_writer_set_metadata (writer, quark_model_get_metadata (self));
  quark_checkpoint_writer_set_copy_from (writer, copy_from);
  return quark_checkpoint_writer_finish (writer, cancellable, error);
}

static gboolean
write_all (int fd, const void *data, gsize size, const char *path, GError **error)
{
  const guint8 *p = data;

  while (size > 0)
    {
      gssize n = write (fd, p, MIN (size, (gsize) 1 << 30));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = errno;
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (n < 0 ? saved : ENOSPC));
          return FALSE;
        }
      p += n;
      size -= (gsize) n;
    }
  return TRUE;
}

gboolean
_quark_model_write_safetensors_file (QuarkModel *self, const char *path, GError **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *header = NULL, *tmp = NULL;
  guint64 offset = 0, length;
  guint n = quark_model_get_n_tensors (self);
  gsize header_len, padded;
  int fd;
  gboolean ok = TRUE;

  json_builder_begin_object (b);
  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (self, i);
      gsize size;

      quark_tensor_peek_data (t, &size);
      json_builder_set_member_name (b, quark_tensor_get_name (t));
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, quark_dtype_to_safetensors (quark_tensor_get_dtype (t)));
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (guint d = 0; d < quark_tensor_get_n_dims (t); d++)
        json_builder_add_int_value (b, quark_tensor_get_dim (t, d));
      json_builder_end_array (b);
      json_builder_set_member_name (b, "data_offsets");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, (gint64) offset);
      json_builder_add_int_value (b, (gint64) (offset + size));
      json_builder_end_array (b);
      json_builder_end_object (b);
      offset += size;
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  header = quark_json_to_string (root, FALSE);
  header_len = strlen (header);
  padded = (header_len + 7) / 8 * 8;

  tmp = g_strdup_printf ("%s.tmp-XXXXXX", path);
  if ((fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0644)) < 0)
    {
      int saved = errno;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
      return FALSE;
    }
  length = GUINT64_TO_LE ((guint64) padded);
  ok = write_all (fd, &length, 8, path, error) && write_all (fd, header, header_len, path, error) &&
       write_all (fd, "        ", padded - header_len, path, error);
  for (guint i = 0; ok && i < n; i++)
    {
      gsize size;
      gconstpointer data = quark_tensor_peek_data (quark_model_get_tensor_at (self, i), &size);
      ok = write_all (fd, data, size, path, error);
    }
  if (ok && fsync (fd) != 0)
    {
      int saved = errno;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
      ok = FALSE;
    }
  close (fd);
  if (ok && g_rename (tmp, path) != 0)
    {
      int saved = errno;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s", path, g_strerror (saved));
      ok = FALSE;
    }
  if (!ok)
    g_unlink (tmp);
  return ok;
}
