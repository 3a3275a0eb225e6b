/* test-safetensors.c: the safetensors reader's rules, one bad input per
 * row, and save/load round trips (single file, shards, config.json)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark.h>

#include <string.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <unistd.h>

/* Builds a file: 8-byte little-endian header length, header, data. */
static GBytes *
make_file (const char *header, const guint8 *data, gsize data_len)
{
  GByteArray *a = g_byte_array_new ();
  guint64 n = GUINT64_TO_LE (strlen (header));
  g_byte_array_append (a, (const guint8 *) &n, 8);
  g_byte_array_append (a, (const guint8 *) header, strlen (header));
  if (data_len)
    g_byte_array_append (a, data, data_len);
  return g_byte_array_free_to_bytes (a);
}

/* The worked example of the format reference (1.9), byte for byte. */
static void
test_worked_example (void)
{
  static const guint8 file[] = {
    0x90, 0, 0, 0, 0, 0, 0, 0,
  };
  const char *header = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}      ";
  static const guint8 data[] = { 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, 0x01, 0x02, 0x03 };
  g_autoptr(GByteArray) a = g_byte_array_new ();
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autofree float *values = NULL;
  gsize n;

  g_assert_cmpuint (strlen (header), ==, 144);
  g_byte_array_append (a, file, 8);
  g_byte_array_append (a, (const guint8 *) header, 144);
  g_byte_array_append (a, data, sizeof data);
  g_assert_cmpuint (a->len, ==, 163);
  bytes = g_bytes_new (a->data, a->len);
  model = quark_model_new_from_safetensors_bytes (bytes, "example", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (quark_model_get_n_tensors (model), ==, 2);
  values = quark_tensor_to_floats (quark_model_get_tensor (model, "a"), &n, NULL);
  g_assert_cmpfloat (values[0], ==, 1.0f);
  g_assert_cmpfloat (values[1], ==, -2.0f);
  g_assert_cmpint (quark_tensor_get_dtype (quark_model_get_tensor (model, "b")), ==, QUARK_DTYPE_U8);
  /* zero-copy: the tensor's data lies inside the file's bytes */
  g_assert_true ((const guint8 *) quark_tensor_peek_data (quark_model_get_tensor (model, "b"), NULL) ==
                 (const guint8 *) g_bytes_get_data (bytes, NULL) + 8 + 144 + 8);
}

typedef struct {
  const char *name;
  const char *header;      /* NULL: raw bytes below */
  gsize data_len;
  int code;
  const char *fragment;
} BadCase;

static const BadCase bad_cases[] = {
  { "overlap", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
    6, QUARK_ERROR_INVALID_FILE, "tensors a and b overlap" },
  { "hole", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
    8, QUARK_ERROR_INVALID_FILE, "a hole of 2 bytes precedes tensor b" },
  { "not-from-zero", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
    8, QUARK_ERROR_INVALID_FILE, "a hole of 4 bytes precedes tensor a" },
  { "size-mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
    12, QUARK_ERROR_INVALID_FILE, "tensor a: shape and dtype need 16 bytes, but data_offsets span 12" },
  { "unknown-dtype", "{\"a\":{\"dtype\":\"I4\",\"shape\":[2],\"data_offsets\":[0,1]}}",
    1, QUARK_ERROR_INVALID_FILE, "tensor a: unknown dtype \"I4\"" },
  { "duplicate-name", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
    2, QUARK_ERROR_INVALID_FILE, "a: duplicate key" },
  { "header-not-json", "{\"a\": nope}", 0, QUARK_ERROR_INVALID_FILE, "header:1:7: unexpected character 'n'" },
  { "header-not-object", "[1, 2]", 0, QUARK_ERROR_INVALID_FILE, "the header is not a JSON object" },
  { "extra-member", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"strides\":[1]}}",
    1, QUARK_ERROR_INVALID_FILE, "tensor a: a.strides: unknown key" },
  { "missing-member", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 0, QUARK_ERROR_INVALID_FILE, "lacks data_offsets" },
  { "negative-dim", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}",
    0, QUARK_ERROR_INVALID_FILE, "shape is not an array of at most 8 non-negative integers" },
  { "offsets-reversed", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,1]}}",
    0, QUARK_ERROR_INVALID_FILE, "end before they begin" },
  { "trailing-bytes", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
    5, QUARK_ERROR_INVALID_FILE, "the header describes" },
  { "truncated-data", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
    3, QUARK_ERROR_INVALID_FILE, "the header describes" },
  { "metadata-not-string", "{\"__metadata__\":{\"format\":1}}", 0, QUARK_ERROR_INVALID_FILE, "__metadata__.format is not a string" },
  { "misaligned-f4", "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}",
    1, QUARK_ERROR_INVALID_FILE, "3 elements of 4 bits do not fill whole bytes" },
  { "f6-unsupported", "{\"a\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[0,3]}}",
    3, QUARK_ERROR_UNSUPPORTED_DTYPE, "tensor a: reading dtype F6_E2M3 is not supported" },
  { "overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}",
    8, QUARK_ERROR_INVALID_FILE, "overflows 64 bits" },
  /* the header is read member by member, but checked whole first: a syntax
   * error after a bad entry is the one reported */
  { "syntax-after-bad-entry", "{\"a\":{\"dtype\":\"I4\",\"shape\":[2],\"data_offsets\":[0,1]},\"b\":1,}",
    1, QUARK_ERROR_INVALID_FILE, "trailing comma in an object" },
  { "second-entry-bad", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\\u00e9\":{\"dtype\":\"U8\"}}",
    1, QUARK_ERROR_INVALID_FILE, "tensor b\xc3\xa9: the header entry lacks shape" },
  { "too-many-dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
    1, QUARK_ERROR_INVALID_FILE, "at most 8" },
};

static void
test_bad (gconstpointer data)
{
  const BadCase *c = data;
  g_autofree guint8 *payload = g_malloc0 (c->data_len + 1);
  g_autoptr(GBytes) bytes = make_file (c->header, payload, c->data_len);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) model = quark_model_new_from_safetensors_bytes (bytes, "bad.safetensors", &error);

  g_assert_null (model);
  g_assert_error (error, QUARK_ERROR, c->code);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, "bad.safetensors: "));
  if (strstr (error->message, c->fragment) == NULL)
    g_error ("\"%s\" lacks \"%s\"", error->message, c->fragment);
}

static void
test_bad_lengths (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) empty = g_bytes_new (NULL, 0);
  g_autoptr(GBytes) short_file = g_bytes_new ("\x10\0\0", 3);
  guint8 beyond[16] = { 0xff, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
  guint8 huge[16] = { 0, 0, 0, 0, 0, 0, 0, 0x40, '{', '}' };
  g_autoptr(GBytes) beyond_bytes = g_bytes_new (beyond, 10);
  g_autoptr(GBytes) huge_bytes = g_bytes_new (huge, 10);

  g_assert_null (quark_model_new_from_safetensors_bytes (empty, "empty", &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "too short"));
  g_clear_error (&error);
  g_assert_null (quark_model_new_from_safetensors_bytes (short_file, "short", &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE);
  g_clear_error (&error);
  g_assert_null (quark_model_new_from_safetensors_bytes (beyond_bytes, "beyond", &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "header length 255 goes beyond the end of the file (10 bytes)"));
  g_clear_error (&error);
  g_assert_null (quark_model_new_from_safetensors_bytes (huge_bytes, "huge", &error));
  g_assert_nonnull (strstr (error->message, "not a safetensors file: its first 8 bytes give a header length of"));
}

static void
test_valid_edge_cases (void)
{
  /* empty tensors, scalars, leading padding, F4 unpacked to codes */
  const char *header = "  {\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                       "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                       "\"f\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[4,6]}}";
  const guint8 data[] = { 0, 0, 0x40, 0x40, 0xD7, 0x21 };
  g_autoptr(GBytes) bytes = make_file (header, data, sizeof data);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) model = quark_model_new_from_safetensors_bytes (bytes, "edge", &error);
  const guint8 *codes;

  g_assert_no_error (error);
  g_assert_cmpuint (quark_tensor_get_n_elements (quark_model_get_tensor (model, "e")), ==, 0);
  g_assert_cmpuint (quark_tensor_get_n_dims (quark_model_get_tensor (model, "s")), ==, 0);
  codes = quark_tensor_peek_data (quark_model_get_tensor (model, "f"), NULL);
  g_assert_cmpuint (codes[0], ==, 0x7);
  g_assert_cmpuint (codes[1], ==, 0xD);
  g_assert_cmpuint (codes[2], ==, 0x1);
  g_assert_cmpuint (codes[3], ==, 0x2);
}

static QuarkModel *
sample_model (void)
{
  QuarkModel *model = quark_model_new ();
  const gint64 s2[] = { 3, 5 }, s1[] = { 7 };
  float w[15];
  const guint16 h[7] = { 0x3f80, 0, 1, 2, 3, 4, 0xbf80 };
  const gint8 q[15] = { 1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15 };
  g_autoptr(GBytes) hb = g_bytes_new (h, sizeof h);
  g_autoptr(GBytes) qb = g_bytes_new (q, sizeof q);
  g_autoptr(QuarkTensor) a = NULL, b = NULL, c = NULL;
  g_autoptr(JsonNode) meta = quark_json_parse ("{\"model_type\": \"llama\", \"hidden_size\": 5}", -1, NULL, NULL);

  for (guint i = 0; i < 15; i++)
    w[i] = (float) i * 0.5f - 3.0f;
  a = quark_tensor_new_from_floats ("layers.0.w", s2, 2, w, 15, NULL);
  b = quark_tensor_new ("layers.0.norm", QUARK_DTYPE_BF16, s1, 1, hb, NULL);
  c = quark_tensor_new ("layers.1.q", QUARK_DTYPE_I8, s2, 2, qb, NULL);
  quark_model_add_tensor (model, a, NULL);
  quark_model_add_tensor (model, b, NULL);
  quark_model_add_tensor (model, c, NULL);
  quark_model_set_metadata (model, meta);
  return model;
}

static void
assert_same_model (QuarkModel *a, QuarkModel *b)
{
  g_assert_cmpuint (quark_model_get_n_tensors (a), ==, quark_model_get_n_tensors (b));
  for (guint i = 0; i < quark_model_get_n_tensors (a); i++)
    {
      QuarkTensor *x = quark_model_get_tensor_at (a, i);
      QuarkTensor *y = quark_model_get_tensor (b, quark_tensor_get_name (x));
      g_autofree char *sx = quark_tensor_format_shape (x), *sy = NULL;
      g_assert_nonnull (y);
      sy = quark_tensor_format_shape (y);
      g_assert_cmpint (quark_tensor_get_dtype (x), ==, quark_tensor_get_dtype (y));
      g_assert_cmpstr (sx, ==, sy);
      g_assert_true (g_bytes_equal (quark_tensor_get_data (x), quark_tensor_get_data (y)));
    }
}

static guint
count_entries (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  guint n = 0;
  while (g_dir_read_name (d))
    n++;
  return n;
}

static void
test_roundtrip (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *single = g_build_filename (tmp, "single", NULL);
  g_autofree char *sharded = g_build_filename (tmp, "sharded", NULL);
  g_autoptr(QuarkModel) model = sample_model ();
  g_autoptr(QuarkModel) back = NULL, back2 = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *index_path = NULL, *index_text = NULL, *shard1 = NULL;

  g_assert_true (quark_model_save (model, single, 0, FALSE, NULL, NULL, &error));
  g_assert_no_error (error);
  back = quark_model_load (single, NULL, &error);
  g_assert_no_error (error);
  assert_same_model (model, back);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (quark_model_get_metadata (back)), "hidden_size"), ==, 5);
  g_assert_cmpuint (count_entries (single), ==, 2);   /* model.safetensors, config.json */

  /* an existing output is never overwritten unless asked */
  g_assert_false (quark_model_save (model, single, 0, FALSE, NULL, NULL, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS);
  g_assert_nonnull (strstr (error->message, "already exists"));
  g_clear_error (&error);
  g_assert_true (quark_model_save (model, single, 0, TRUE, NULL, NULL, &error));

  /* 40-byte shards: 60 bytes of F32 alone, then 14 + 15 bytes together */
  g_assert_true (quark_model_save (model, sharded, 40, FALSE, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (count_entries (sharded), ==, 4);
  index_path = g_build_filename (sharded, "model.safetensors.index.json", NULL);
  g_assert_true (g_file_get_contents (index_path, &index_text, NULL, NULL));
  g_assert_nonnull (strstr (index_text, "\"total_size\" : 89"));
  g_assert_nonnull (strstr (index_text, "\"layers.1.q\" : \"model-00002-of-00002.safetensors\""));
  back2 = quark_model_load (sharded, NULL, &error);
  g_assert_no_error (error);
  assert_same_model (model, back2);

  /* an index naming a missing shard */
  shard1 = g_build_filename (sharded, "model-00002-of-00002.safetensors", NULL);
  g_assert_cmpint (g_unlink (shard1), ==, 0);
  g_clear_object (&back2);
  back2 = quark_model_load (sharded, NULL, &error);
  g_assert_null (back2);
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "shard model-00002-of-00002.safetensors (for tensor"));
  g_clear_error (&error);

  /* nothing but the outputs in the parent: no temporary directories left */
  g_assert_cmpuint (count_entries (tmp), ==, 2);

  /* sub-byte logical tensors must be packed first */
  {
    g_autoptr(QuarkModel) m = quark_model_new ();
    const gint64 s[] = { 2 };
    g_autoptr(GBytes) b = g_bytes_new ("\1\2", 2);
    g_autoptr(QuarkTensor) t = quark_tensor_new ("w", QUARK_DTYPE_INT4, s, 1, b, NULL);
    g_autofree char *out = g_build_filename (tmp, "int4", NULL);
    quark_model_add_tensor (m, t, NULL);
    g_assert_false (quark_model_save (m, out, 0, FALSE, NULL, NULL, &error));
    g_assert_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE);
    g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
    g_clear_error (&error);
  }
  g_assert_cmpuint (count_entries (tmp), ==, 2);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmp);
    g_assert_cmpint (system (cmd), ==, 0);
  }
}

static void
test_cancelled_save_leaves_nothing (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autoptr(QuarkModel) model = sample_model ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;

  g_cancellable_cancel (cancellable);
  g_assert_false (quark_model_save (model, out, 0, FALSE, NULL, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (count_entries (tmp), ==, 0);
  g_rmdir (tmp);
}

/* A file over 4 GiB (sparse: no disk is used): 64-bit offsets all the way. */
static void
test_large_file (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (tmp, "big.safetensors", NULL);
  const guint64 big = G_GUINT64_CONSTANT (4500000003);
  g_autofree char *header = g_strdup_printf ("{\"big\":{\"dtype\":\"U8\",\"shape\":[%" G_GUINT64_FORMAT
                                             "],\"data_offsets\":[0,%" G_GUINT64_FORMAT "]}}", big, big);
  g_autoptr(GString) padded = g_string_new (header);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) model = NULL;
  guint64 n_le;
  FILE *f;
  const guint8 *data;
  gsize size;

  while (padded->len % 8)
    g_string_append_c (padded, ' ');
  n_le = GUINT64_TO_LE ((guint64) padded->len);
  f = fopen (path, "wb");
  g_assert_nonnull (f);
  g_assert_cmpuint (fwrite (&n_le, 8, 1, f), ==, 1);
  g_assert_cmpuint (fwrite (padded->str, padded->len, 1, f), ==, 1);
  fclose (f);
  g_assert_cmpint (truncate (path, (off_t) (8 + padded->len + big)), ==, 0);

  model = quark_model_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (quark_tensor_get_n_elements (quark_model_get_tensor (model, "big")), ==, big);
  data = quark_tensor_peek_data (quark_model_get_tensor (model, "big"), &size);
  g_assert_cmpuint (size, ==, big);
  g_assert_cmpuint (data[size - 1], ==, 0);   /* the last byte, past 4 GiB */
  g_clear_object (&model);
  g_unlink (path);
  g_rmdir (tmp);
}

/* A mapped file that shrinks: reading past its new end gives zeros, not
 * SIGBUS, and quark_model_check_sources() reports it. */
static void
test_shrinking_file (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *dir = g_build_filename (tmp, "m", NULL);
  g_autofree char *file = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) loaded = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree float *w = g_new (float, 65536);
  const gint64 shape[] = { 256, 256 };
  g_autoptr(QuarkTensor) t = NULL;
  const float *data;
  gsize size;
  double sum = 0;

  for (guint i = 0; i < 65536; i++)
    w[i] = 1.0f + (float) (i % 7);
  t = quark_tensor_new_from_floats ("w", shape, 2, w, 65536, NULL);
  quark_model_add_tensor (model, t, NULL);
  g_assert_true (quark_model_save (model, dir, 0, FALSE, NULL, NULL, &error));
  g_assert_no_error (error);
  loaded = quark_model_load (dir, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (quark_model_check_sources (loaded, &error));

  g_assert_cmpint (truncate (file, 16), ==, 0);
  data = quark_tensor_peek_data (quark_model_get_tensor (loaded, "w"), &size);
  for (gsize k = 0; k < size / 4; k++)
    sum += data[k];   /* past the end: zeros */
  g_assert_cmpfloat (sum, ==, 0.0);
  g_assert_false (quark_model_check_sources (loaded, &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "shrank"));
  g_assert_nonnull (strstr (error->message, file));
  g_clear_object (&loaded);
  g_unlink (file);
  g_rmdir (dir);
  g_rmdir (tmp);
}

/* quark_tensor_read_data(): a loaded tensor is read from its file without
 * touching the mapping, the bytes of the mapping's view; an in-memory one
 * from memory; a file that shrank is an IO error naming it. */
static void
test_read_data (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *dir = g_build_filename (tmp, "m", NULL);
  g_autofree char *file = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) loaded = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree float *w = g_new (float, 4096), *got = g_new (float, 4096);
  const gint64 shape[] = { 64, 64 }, small_shape[] = { 3 };
  const float three[] = { 1, 2, 3 };
  g_autoptr(QuarkTensor) t = NULL, u = NULL;
  QuarkTensor *lt;

  for (guint i = 0; i < 4096; i++)
    w[i] = (float) i * 0.5f;
  t = quark_tensor_new_from_floats ("w", shape, 2, w, 4096, NULL);
  u = quark_tensor_new_from_floats ("a.first", small_shape, 1, three, 3, NULL);   /* w is not at offset 0 */
  quark_model_add_tensor (model, u, NULL);
  quark_model_add_tensor (model, t, NULL);
  g_assert_false (quark_tensor_is_mapped (t));
  g_assert_true (quark_tensor_read_data (t, 400, got, 400, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (got, 400, (const guint8 *) w + 400, 400);
  g_assert_true (quark_model_save (model, dir, 0, FALSE, NULL, NULL, &error));
  g_assert_no_error (error);
  loaded = quark_model_load (dir, NULL, &error);
  g_assert_no_error (error);
  lt = quark_model_get_tensor (loaded, "w");
  g_assert_true (quark_tensor_is_mapped (lt));
  g_assert_true (quark_tensor_read_data (lt, 0, got, 4096 * sizeof (float), &error));
  g_assert_no_error (error);
  g_assert_cmpmem (got, 4096 * sizeof (float), w, 4096 * sizeof (float));
  g_assert_true (quark_tensor_read_data (lt, 4092, got, 8, &error));
  g_assert_cmpmem (got, 8, (const guint8 *) w + 4092, 8);

  g_assert_cmpint (truncate (file, 200), ==, 0);
  g_assert_false (quark_tensor_read_data (lt, 0, got, 4096 * sizeof (float), &error));
  g_assert_error (error, QUARK_ERROR, QUARK_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "shrank"));
  g_assert_nonnull (strstr (error->message, file));
  g_clear_object (&loaded);
  g_unlink (file);
  g_rmdir (dir);
  g_rmdir (tmp);
}

/* Pages of @data's mapping that are in the process's page tables (read
 * from /proc/self/pagemap: bit 63 of each page's entry), counting only the
 * pages wholly inside [@data, @data + @size). -1 when pagemap cannot be
 * read. */
static gint64
present_pages (gconstpointer data, gsize size)
{
  const gsize page = (gsize) sysconf (_SC_PAGESIZE);
  guintptr first = ((guintptr) data + page - 1) / page, end = ((guintptr) data + size) / page;
  gint64 present = 0;
  FILE *f = fopen ("/proc/self/pagemap", "rb");

  if (f == NULL)
    return -1;
  if (fseeko (f, (off_t) (first * 8), SEEK_SET) != 0)
    present = -1;
  for (guintptr p = first; present >= 0 && p < end; p++)
    {
      guint64 entry;
      if (fread (&entry, 8, 1, f) != 1)
        present = -1;
      else if (entry >> 63)
        present++;
    }
  fclose (f);
  return present;
}

/* A loaded tensor is copied into an output by the kernel, also when the
 * output is on another file system than the model (copy_file_range
 * refuses that; sendfile does it): none of the mapping's pages is brought
 * into the process, so a model on tmpfs written to a disk costs no page
 * faults for its copied tensors. The model is put on /dev/shm when there
 * is one, the output in the temporary directory. */
static void
test_copy_across_file_systems (void)
{
  gboolean shm = g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR) && access ("/dev/shm", W_OK) == 0;
  g_autofree char *in_tmp = shm ? g_mkdtemp (g_strdup ("/dev/shm/quark-st-XXXXXX"))
                                : g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *out_tmp = g_dir_make_tmp ("quark-st-XXXXXX", NULL);
  g_autofree char *in_dir = g_build_filename (in_tmp, "m", NULL);
  g_autofree char *out_dir = g_build_filename (out_tmp, "copy", NULL);
  g_autofree char *in_file = g_build_filename (in_dir, "model.safetensors", NULL);
  g_autofree char *out_file = g_build_filename (out_dir, "model.safetensors", NULL);
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) loaded = NULL, back = NULL;
  g_autoptr(GError) error = NULL;
  const gsize n = 2u << 20;   /* 8 MiB of float32 */
  g_autofree float *w = g_new (float, n);
  const gint64 shape[] = { 2048, 1024 }, small_shape[] = { 3 };
  const float three[] = { 1, 2, 3 };
  g_autoptr(QuarkTensor) t = NULL, u = NULL;
  gconstpointer mapped;
  gsize size, got_size;
  gint64 present;
  g_autofree char *in_bytes = NULL, *out_bytes = NULL;

  g_assert_nonnull (in_tmp);
  g_assert_nonnull (out_tmp);
  for (gsize i = 0; i < n; i++)
    w[i] = (float) (i % 1000) - 500.25f;
  t = quark_tensor_new_from_floats ("w", shape, 2, w, n, NULL);
  u = quark_tensor_new_from_floats ("a.first", small_shape, 1, three, 3, NULL);
  quark_model_add_tensor (model, u, NULL);
  quark_model_add_tensor (model, t, NULL);
  g_assert_true (quark_model_save (model, in_dir, 0, FALSE, NULL, NULL, &error));
  g_assert_no_error (error);
  loaded = quark_model_load (in_dir, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (quark_tensor_is_mapped (quark_model_get_tensor (loaded, "w")));
  mapped = quark_tensor_peek_data (quark_model_get_tensor (loaded, "w"), &size);
  g_assert_cmpuint (size, ==, n * sizeof (float));
  /* reading the header may have mapped the first pages around it */
  present = present_pages (mapped, size);
  g_assert_cmpint (present, <, 64);

  g_assert_true (quark_model_save (loaded, out_dir, 0, FALSE, NULL, NULL, &error));
  g_assert_no_error (error);
  if (present < 0)
    g_test_skip ("/proc/self/pagemap cannot be read");
  else
    g_assert_cmpint (present_pages (mapped, size), ==, present);

  g_assert_true (g_file_get_contents (in_file, &in_bytes, &size, NULL));
  g_assert_true (g_file_get_contents (out_file, &out_bytes, &got_size, NULL));
  g_assert_cmpmem (out_bytes, got_size, in_bytes, size);
  back = quark_model_load (out_dir, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (quark_tensor_peek_data (quark_model_get_tensor (back, "w"), &size), size, w, n * sizeof (float));

  g_clear_object (&loaded);
  g_clear_object (&back);
  g_unlink (in_file);
  g_unlink (out_file);
  {
    g_autofree char *cfg = g_build_filename (out_dir, "config.json", NULL);
    g_unlink (cfg);
  }
  g_rmdir (in_dir);
  g_rmdir (out_dir);
  g_rmdir (in_tmp);
  g_rmdir (out_tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/safetensors/worked-example", test_worked_example);
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/safetensors/bad/%s", bad_cases[i].name);
      g_test_add_data_func (path, &bad_cases[i], test_bad);
    }
  g_test_add_func ("/safetensors/bad-lengths", test_bad_lengths);
  g_test_add_func ("/safetensors/valid-edge-cases", test_valid_edge_cases);
  g_test_add_func ("/safetensors/roundtrip", test_roundtrip);
  g_test_add_func ("/safetensors/cancelled-save-leaves-nothing", test_cancelled_save_leaves_nothing);
  g_test_add_func ("/safetensors/large-file", test_large_file);
  g_test_add_func ("/safetensors/shrinking-file", test_shrinking_file);
  g_test_add_func ("/safetensors/read-data", test_read_data);
  g_test_add_func ("/safetensors/copy-across-file-systems", test_copy_across_file_systems);

  return g_test_run ();
}
