/* test-threads.c: the registry, configs and quantizers used from several
 * threads at once
 *
 * Four threads start together on a registry nobody has queried yet (so
 * module loading races too), then each, many times: lists and looks up
 * backends, loads a config from JSON, validates and serialises it, builds a
 * quantizer and quantizes a model; all of them also quantize with one
 * shared config and one shared quantizer. Every result must equal the one
 * computed before on a single thread, byte for byte. Run it under
 * ThreadSanitizer with tools/sanitize.sh --thread.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark.h>

#include <string.h>
#include <glib/gstdio.h>

#define N_THREADS 4
#define N_ROUNDS 25

static const char *config_json =
  "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": "
  "{\"dtype\": \"int4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32}},"
  " \"layer_quant_config\": {\"*.down_proj\": {\"weight\": {\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}}}}";

typedef struct {
  gint go;               /* an atomic barrier: GLib's GMutex and GCond use
                          * futexes ThreadSanitizer cannot see */
  QuarkModel *model;
  QuarkQuantizationConfig *shared_config;
  QuarkModelQuantizer *shared_quantizer;
  GBytes *expected;      /* concatenation of every output tensor's bytes */
  char *expected_json;
  gint failures;
} Shared;

static QuarkModel *
make_model (void)
{
  QuarkModel *model = quark_model_new ();
  const char *names[] = { "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight" };

  for (guint t = 0; t < G_N_ELEMENTS (names); t++)
    {
      gint64 shape[2] = { 64, 128 };
      g_autofree float *x = g_new (float, 64 * 128);
      g_autoptr(QuarkTensor) tensor = NULL;
      guint32 state = 12345u + t;
      for (guint i = 0; i < 64 * 128; i++)
        {
          state = state * 1664525u + 1013904223u;
          x[i] = ((float) (state >> 8) / 16777216.0f - 0.5f) * 0.1f;
        }
      tensor = quark_tensor_new_from_floats (names[t], shape, 2, x, 64 * 128, NULL);
      g_assert_true (quark_model_add_tensor (model, tensor, NULL));
    }
  return model;
}

static GBytes *
flatten (QuarkModel *out)
{
  GByteArray *all = g_byte_array_new ();
  for (guint i = 0; i < quark_model_get_n_tensors (out); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (out, i);
      gsize n;
      const guint8 *p = quark_tensor_peek_data (t, &n);
      g_byte_array_append (all, (const guint8 *) quark_tensor_get_name (t), strlen (quark_tensor_get_name (t)));
      g_byte_array_append (all, p, n);
    }
  return g_byte_array_free_to_bytes (all);
}

static gboolean
quantize_and_check (Shared *s, QuarkModelQuantizer *quantizer)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) out = quark_model_quantizer_quantize_model (quantizer, s->model, NULL, NULL, &error);
  g_autoptr(GBytes) bytes = NULL;

  if (out == NULL)
    return FALSE;
  bytes = flatten (out);
  return g_bytes_equal (bytes, s->expected);
}

static gpointer
worker (gpointer data)
{
  Shared *s = data;
  QuarkRegistry *registry;

  /* before the barrier: races the main thread's first query, which loads
   * the backend modules */
  if (quark_registry_lookup_backend (quark_registry_get_default (), "quark") == NULL)
    g_atomic_int_inc (&s->failures);

  while (!g_atomic_int_get (&s->go))
    g_thread_yield ();

  registry = quark_registry_get_default ();
  for (guint round = 0; round < N_ROUNDS; round++)
    {
      g_autoptr(GPtrArray) backends = quark_registry_list_backends (registry);
      g_autoptr(GError) error = NULL;
      g_autoptr(QuarkQuantizationConfig) config = NULL;
      g_autoptr(QuarkModelQuantizer) quantizer = NULL;
      g_autofree char *text = NULL;
      gboolean ok = backends->len >= 1 && quark_registry_lookup_backend (registry, "quark") != NULL;

      config = quark_registry_config_from_string (registry, config_json, -1, &error);
      ok = ok && config != NULL && quark_quantization_config_validate (config, NULL);
      if (ok)
        {
          text = quark_quantization_config_to_string (config);
          ok = g_strcmp0 (text, s->expected_json) == 0;
          quantizer = quark_registry_new_quantizer (registry, config, NULL);
          ok = ok && quantizer != NULL && quantize_and_check (s, quantizer);
        }
      /* the shared objects, used by every thread at once */
      if (ok)
        {
          g_autofree char *shared_text = quark_quantization_config_to_string (s->shared_config);
          ok = g_strcmp0 (shared_text, s->expected_json) == 0 &&
               quantize_and_check (s, s->shared_quantizer);
        }
      if (!ok)
        g_atomic_int_inc (&s->failures);
    }
  return NULL;
}

static void
test_concurrent_use (void)
{
  Shared s = { 0 };
  GThread *threads[N_THREADS];
  g_autoptr(QuarkModelQuantizer) reference = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(GError) error = NULL;

  s.model = make_model ();

  /* start the threads first, so that they race on the registry's first query */
  for (guint i = 0; i < N_THREADS; i++)
    threads[i] = g_thread_new ("quark-test", worker, &s);

  config = quark_registry_config_from_string (quark_registry_get_default (), config_json, -1, &error);
  g_assert_no_error (error);
  reference = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
  g_assert_no_error (error);
  out = quark_model_quantizer_quantize_model (reference, s.model, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (quark_model_get_n_tensors (out), ==, 5);   /* int4 codes+scale+zp, fp8 codes+scale */
  s.expected = flatten (out);
  s.expected_json = quark_quantization_config_to_string (config);
  s.shared_config = config;
  s.shared_quantizer = reference;

  g_atomic_int_set (&s.go, TRUE);
  for (guint i = 0; i < N_THREADS; i++)
    g_thread_join (threads[i]);

  g_assert_cmpint (s.failures, ==, 0);
  g_bytes_unref (s.expected);
  g_free (s.expected_json);
  g_object_unref (s.model);
}

/* A bfloat16 model of @n_layers layers of four 96 × 160 weights */
static QuarkModel *
make_bf16_model (guint n_layers)
{
  static const char * const kinds[] = { "self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj" };
  QuarkModel *model = quark_model_new ();
  guint32 state = 777u;

  for (guint l = 0; l < n_layers; l++)
    for (guint k = 0; k < G_N_ELEMENTS (kinds); k++)
      {
        gint64 shape[2] = { 96, 160 };
        guint16 *h = g_new (guint16, 96 * 160);
        g_autofree char *name = g_strdup_printf ("model.layers.%u.%s.weight", l, kinds[k]);
        g_autoptr(GBytes) bytes = NULL;
        g_autoptr(QuarkTensor) tensor = NULL;
        for (guint i = 0; i < 96 * 160; i++)
          {
            float v;
            guint32 bits;
            state = state * 1664525u + 1013904223u;
            v = ((float) (state >> 8) / 16777216.0f - 0.5f) * 0.1f * (float) (1 + i / 160 % 7);
            memcpy (&bits, &v, sizeof bits);
            h[i] = (guint16) (bits >> 16);
          }
        bytes = g_bytes_new_take (h, 96 * 160 * sizeof (guint16));
        tensor = quark_tensor_new (name, QUARK_DTYPE_BF16, shape, 2, bytes, NULL);
        g_assert_nonnull (tensor);
        g_assert_true (quark_model_add_tensor (model, tensor, NULL));
      }
  return model;
}

/* The brevitas backend's workers (weights quantized ahead of the layer
 * being written, at most threads + 1 in hand; the row path's presets, and
 * MSE grids and a 12-bit quantizer on the general path): on 1, 2 and 4
 * threads, several rounds, the same tensors byte for byte; and a quantizer
 * with workers used by two threads at once. */
static gpointer
brevitas_round (gpointer data)
{
  QuarkModelQuantizer *quantizer = ((gpointer *) data)[0];
  QuarkModel *model = ((gpointer *) data)[1];
  return quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, NULL);
}

static void
test_brevitas_workers (void)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  QuarkBackend *backend = quark_registry_lookup_backend (registry, "brevitas");
  g_autoptr(QuarkModel) model = make_bf16_model (6);
  g_autoptr(GBytes) expected = NULL;

  if (backend == NULL)
    {
      g_test_skip ("no brevitas backend");
      return;
    }
  for (guint p = 0; p < 3; p++)
    {
      const char *preset = p == 1 ? "mxfp4" : "int8_weight_per_channel";
      g_autoptr(GError) error = NULL;
      g_autoptr(QuarkQuantizationConfig) config =
        p < 2 ? quark_backend_new_config_for_preset (backend, preset, &error)
              : quark_registry_config_from_string (registry,
                  "{\"backend\": \"brevitas\", \"global_quant_config\": {\"weight\": "
                  "{\"preset\": \"Int8WeightPerChannelFloatMSE\"}}, \"layer_quant_config\": {"
                  "\"*.1.*\": {\"weight\": {\"preset\": \"ShiftedUint8WeightPerChannelFloatMSE\"}}, "
                  "\"*.2.*\": {\"weight\": {\"preset\": \"Int8WeightPerChannelFloat\", \"bit_width\": 12}}}}",
                  -1, &error);
      g_assert_no_error (error);
      g_clear_pointer (&expected, g_bytes_unref);
      for (guint threads = 1; threads <= 4; threads *= 2)
        for (guint round = 0; round < 3; round++)
          {
            g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (registry, config, &error);
            g_autoptr(QuarkModel) out = NULL;
            g_autoptr(GBytes) bytes = NULL;
            g_assert_no_error (error);
            g_object_set (quantizer, "threads", threads, NULL);
            out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error);
            g_assert_no_error (error);
            bytes = flatten (out);
            if (expected == NULL)
              expected = g_bytes_ref (bytes);
            g_assert_true (g_bytes_equal (bytes, expected));
          }
      {
        g_autoptr(QuarkModelQuantizer) shared = quark_registry_new_quantizer (registry, config, &error);
        gpointer data[2] = { shared, model };
        GThread *other;
        g_autoptr(QuarkModel) mine = NULL, theirs = NULL;
        g_autoptr(GBytes) a = NULL, b = NULL;
        g_object_set (shared, "threads", 3, NULL);
        other = g_thread_new ("quark-test", brevitas_round, data);
        mine = brevitas_round (data);
        theirs = g_thread_join (other);
        g_assert_nonnull (mine);
        g_assert_nonnull (theirs);
        a = flatten (mine);
        b = flatten (theirs);
        g_assert_true (g_bytes_equal (a, expected) && g_bytes_equal (b, expected));
      }
    }
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        remove_tree (child);
      else
        g_remove (child);
    }
  if (dir)
    g_dir_close (dir);
  g_rmdir (path);
}

/* The checkpoint writer's copier thread: the tensors of a loaded model
 * that go out as they are (an embedding of 160 KiB here) are copied into
 * the shard file on a thread of the writer's while the backend quantizes
 * the layers (the quark backend on the calling thread, the brevitas one on
 * two workers of its own). The files hold the input's bytes for them and
 * the in-memory quantization's for the rest. */
static void
test_writer_copies (void)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autofree char *tmp = g_dir_make_tmp ("quark-threads-XXXXXX", NULL);
  g_autofree char *in_dir = g_build_filename (tmp, "in", NULL);
  g_autoptr(QuarkModel) model = make_bf16_model (2);
  g_autoptr(QuarkModel) loaded = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkTensor) embed = NULL;
  g_autoptr(GBytes) bytes = NULL;
  gint64 shape[2] = { 512, 160 };
  guint16 *h = g_new (guint16, 512 * 160);

  g_assert_nonnull (tmp);
  for (guint i = 0; i < 512 * 160; i++)
    h[i] = (guint16) (0x3c00 + (i * 7919u) % 0x0400);
  bytes = g_bytes_new_take (h, 512 * 160 * sizeof (guint16));
  embed = quark_tensor_new ("model.embed_tokens.weight", QUARK_DTYPE_BF16, shape, 2, bytes, NULL);
  g_assert_true (quark_model_add_tensor (model, embed, NULL));
  {
    g_autoptr(QuarkCheckpointWriter) writer = quark_checkpoint_writer_new (in_dir, 0, FALSE, &error);
    g_assert_no_error (error);
    g_assert_true (quark_checkpoint_writer_add_model (writer, model, &error));
    g_assert_true (quark_checkpoint_writer_finish (writer, NULL, &error));
    g_assert_no_error (error);
  }
  loaded = quark_model_load (in_dir, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (quark_tensor_is_mapped (quark_model_get_tensor (loaded, "model.embed_tokens.weight")));

  for (guint b = 0; b < 2; b++)
    {
      const char *backend_name = b == 0 ? "quark" : "brevitas";
      QuarkBackend *backend = quark_registry_lookup_backend (registry, backend_name);
      g_autofree char *out_dir = g_build_filename (tmp, backend_name, NULL);
      g_autoptr(QuarkQuantizationConfig) config = NULL;
      g_autoptr(QuarkModelQuantizer) quantizer = NULL;
      g_autoptr(QuarkModel) expected = NULL, written = NULL;
      g_autoptr(QuarkCheckpointWriter) writer = NULL;

      if (backend == NULL)
        continue;
      config = quark_backend_new_config_for_preset (backend, b == 0 ? "int4_wo_32" : "int8_weight_per_channel",
                                                    &error);
      g_assert_no_error (error);
      quantizer = quark_registry_new_quantizer (registry, config, &error);
      g_assert_no_error (error);
      if (b == 1)
        g_object_set (quantizer, "threads", 2, NULL);
      expected = quark_model_quantizer_quantize_model (quantizer, loaded, NULL, NULL, &error);
      g_assert_no_error (error);
      writer = quark_checkpoint_writer_new (out_dir, 0, FALSE, &error);
      g_assert_no_error (error);
      g_assert_true (quark_model_quantizer_quantize_model_to_writer (quantizer, loaded, NULL, writer, NULL, &error));
      g_assert_true (quark_checkpoint_writer_finish (writer, NULL, &error));
      g_assert_no_error (error);

      written = quark_model_load (out_dir, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (quark_model_get_n_tensors (written), ==, quark_model_get_n_tensors (expected));
      for (guint i = 0; i < quark_model_get_n_tensors (expected); i++)
        {
          QuarkTensor *e = quark_model_get_tensor_at (expected, i);
          QuarkTensor *w = quark_model_get_tensor (written, quark_tensor_get_name (e));
          gsize ne, nw;
          const guint8 *pe = quark_tensor_peek_data (e, &ne), *pw;
          g_assert_nonnull (w);
          pw = quark_tensor_peek_data (w, &nw);
          g_assert_cmpmem (pe, ne, pw, nw);
        }
      {
        gsize n1, n2;
        const guint8 *p1 = quark_tensor_peek_data (embed, &n1);
        const guint8 *p2 = quark_tensor_peek_data (quark_model_get_tensor (written, "model.embed_tokens.weight"), &n2);
        g_assert_cmpmem (p1, n1, p2, n2);
      }
    }
  remove_tree (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/threads/concurrent-use", test_concurrent_use);
  g_test_add_func ("/threads/brevitas-workers", test_brevitas_workers);
  g_test_add_func ("/threads/writer-copies", test_writer_copies);
  return g_test_run ();
}
