/* quark-eval.c: `quark eval`, perplexity and KL divergence with the native
 * executor; and the tokenizing of text files that --calibration-text shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-tool.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The ids of a text file: each document (the whole file, or the pieces
 * between @separator) as BOS + ids + EOS, BOS and EOS where the tokenizer
 * has them (the whole file without a separator: BOS + ids). */
guint32 *
tool_tokenize_file (QuarkTokenizer *tokenizer, const char *path, const char *separator, gsize *n_ids, GError **error)
{
  g_autofree char *text = NULL;
  gsize length;
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_auto(GStrv) documents = NULL;
  gint bos = quark_tokenizer_get_bos_id (tokenizer), eos = quark_tokenizer_get_eos_id (tokenizer);

  if (!g_file_get_contents (path, &text, &length, error))
    return NULL;
  if (separator && separator[0])
    documents = g_strsplit (text, separator, -1);
  else
    documents = g_strdupv ((char *[]) { text, NULL });
  for (guint i = 0; documents[i]; i++)
    {
      g_autoptr(GError) local_error = NULL;
      gsize n = 0;
      g_autofree guint32 *doc = quark_tokenizer_encode (tokenizer, documents[i], -1, FALSE, &n, &local_error);

      if (doc == NULL)
        {
          g_set_error (error, local_error->domain, local_error->code, "%s: %s", path, local_error->message);
          return NULL;
        }
      if (bos >= 0)
        {
          guint32 id = (guint32) bos;
          g_array_append_val (ids, id);
        }
      g_array_append_vals (ids, doc, n);
      if (eos >= 0 && separator && separator[0])
        {
          guint32 id = (guint32) eos;
          g_array_append_val (ids, id);
        }
    }
  *n_ids = ids->len;
  return (guint32 *) g_array_free (g_steal_pointer (&ids), FALSE);
}

/* The tokenizer of a model (its directory, or the directory of its
 * .safetensors file), unless --tokenizer names one */
QuarkTokenizer *
tool_model_tokenizer (const char *model, const char *tokenizer, GError **error)
{
  g_autofree char *dir = NULL;

  if (tokenizer)
    return quark_tokenizer_new_from_file (tokenizer, error);
  dir = g_file_test (model, G_FILE_TEST_IS_DIR) ? g_strdup (model) : g_path_get_dirname (model);
  return quark_tokenizer_new_from_file (dir, error);
}

typedef struct {
  gboolean tty;
  gint64 start;
  const char *label;
} EvalProgress;

static void
on_eval_progress (QuarkExecutor *executor, guint64 done, guint64 total, gpointer user_data)
{
  EvalProgress *p = user_data;
  double elapsed = (g_get_monotonic_time () - p->start) / 1e6;
  double rate = elapsed > 0 ? done / elapsed : 0;
  int bar = 30, filled = total ? (int) (bar * done / total) : bar;
  g_autoptr(GString) line = g_string_new ("[");

  if (!p->tty)
    return;
  for (int i = 0; i < bar; i++)
    g_string_append_c (line, i < filled ? '#' : ' ');
  g_string_append_printf (line, "] %3.0f%% %s %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " tokens %.0f tokens/s %.0fs left ",
                          total ? 100.0 * done / total : 100.0, p->label, done, total, rate,
                          rate > 0 ? (total - done) / rate : 0.0);
  g_printerr ("\r%s", line->str);
  if (done == total)
    g_printerr ("\n");
}

static void
on_layer_progress (QuarkExecutor *executor, guint64 done, guint64 total, gpointer user_data)
{
  EvalProgress *p = user_data;

  if (p->tty)
    g_printerr ("\r%s: %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " decoder layers%s", p->label, done, total,
                done == total ? "\n" : "");
}

static QuarkExecutor *
load_executor (const char *path, guint threads, gboolean float_inputs, EvalProgress *progress, GError **error)
{
  QuarkExecutor *executor = quark_executor_new_from_path (path, error);

  if (executor)
    {
      quark_executor_set_threads (executor, threads);
      g_object_set (executor, "quantize-inputs", !float_inputs, NULL);
      g_signal_connect (executor, "progress", G_CALLBACK (on_eval_progress), progress);
    }
  return executor;
}

int
cmd_eval (int argc, char **argv)
{
  g_autofree char *text = NULL, *tokenizer_path = NULL, *separator = NULL;
  gboolean json = FALSE, compare = FALSE, float_inputs = FALSE;
  int context = 512, stride = 0, status = 0, threads = 0;
  GOptionEntry entries[] = {
    { "text", 't', 0, G_OPTION_ARG_FILENAME, &text, "The text to score (UTF-8)", "FILE" },
    { "ctx", 'c', 0, G_OPTION_ARG_INT, &context, "Window length in tokens (default 512)", "N" },
    { "stride", 's', 0, G_OPTION_ARG_INT, &stride, "Start a window every N tokens (default: the window length, no overlap)", "N" },
    { "compare", 0, 0, G_OPTION_ARG_NONE, &compare, "Two models, FLOAT and QUANTIZED: both perplexities, the difference and the KL divergence", NULL },
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer_path, "tokenizer.json to use (default: the one beside MODEL)", "FILE" },
    { "document-separator", 0, 0, G_OPTION_ARG_STRING, &separator, "Split the text into documents at this string; each becomes BOS + text + EOS", "STRING" },
    { "float-inputs", 0, 0, G_OPTION_ARG_NONE, &float_inputs, "Leave the inputs of linear layers in float even where the checkpoint quantizes them: the effect of the weights alone", NULL },
    { "threads", 'j', 0, G_OPTION_ARG_INT, &threads, "Run with this many threads (default: one per processor)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkTokenizer) tokenizer = NULL;
  g_autoptr(QuarkExecutor) model = NULL, reference = NULL;
  g_autofree guint32 *ids = NULL;
  gsize n_ids = 0;
  double ppl = 0, ref_ppl = 0, kl = 0;
  guint64 scored = 0;
  EvalProgress progress = { isatty (fileno (stderr)) && !json, 0, "" };
  const char *model_path;
  g_auto(GStrv) quantized_inputs = NULL, quantized_outputs = NULL;
  guint n_quantized_inputs, n_quantized_outputs;

  if (!parse_options ("eval", "MODEL | --compare FLOAT QUANTIZED",
                      "Runs a Llama-family model (llama, mistral, qwen2) natively on a text and\n"
                      "prints its perplexity: windows of --ctx tokens, each scoring the next-token\n"
                      "predictions no earlier window scored. MODEL is a float or quantized\n"
                      "checkpoint that quark reads; quantized weights are dequantized. With\n"
                      "--compare, both models run on the same windows and the mean KL divergence\n"
                      "KL(FLOAT || QUANTIZED) per token is printed too.\n\n"
                      "The text is tokenized with MODEL's tokenizer.json, as one document (BOS +\n"
                      "text) or as documents split at --document-separator (BOS + text + EOS each).",
                      entries, &argc, &argv, &status))
    return status;
  if (argc != (compare ? 3 : 2) || text == NULL)
    {
      g_printerr ("quark eval: %s\nTry \"quark eval --help\".\n",
                  text == NULL ? "--text FILE is required" : compare ? "--compare takes two models, FLOAT and QUANTIZED"
                                                                     : "expected one MODEL");
      return EXIT_USAGE;
    }
  if (context < 2 || stride < 0 || stride > context || threads < 0 || threads > 1024)
    {
      g_printerr ("quark eval: --ctx must be at least 2, --stride between 1 and --ctx, --threads from 1 to 1024\n");
      return EXIT_USAGE;
    }
  model_path = compare ? argv[2] : argv[1];
  if ((tokenizer = tool_model_tokenizer (argv[1], tokenizer_path, &error)) == NULL ||
      (ids = tool_tokenize_file (tokenizer, text, separator, &n_ids, &error)) == NULL)
    return report_failure ("eval", error, json);
  if ((model = load_executor (model_path, (guint) threads, float_inputs, &progress, &error)) == NULL ||
      (compare && (reference = load_executor (argv[1], (guint) threads, float_inputs, &progress, &error)) == NULL))
    return report_failure ("eval", error, json);
  if (n_ids < 2)
    {
      g_set_error (&error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %" G_GSIZE_FORMAT " tokens: nothing to score",
                   text, n_ids);
      return report_failure ("eval", error, json);
    }
  if ((guint) context > quark_executor_get_max_context (model))
    {
      g_set_error (&error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "--ctx %d is longer than %s's context (%u)", context,
                   model_path, quark_executor_get_max_context (model));
      return report_failure ("eval", error, json);
    }
  progress.start = g_get_monotonic_time ();
  progress.label = compare ? "(2 models)" : "";
  if (!quark_executor_evaluate (model, reference, ids, n_ids, (guint) context, (guint) stride, NULL, &ppl, &ref_ppl,
                                &kl, &scored, &error))
    return report_failure ("eval", error, json);
  quantized_inputs = quark_executor_get_quantized_inputs (model);
  n_quantized_inputs = float_inputs ? 0 : g_strv_length (quantized_inputs);
  quantized_outputs = quark_executor_get_quantized_outputs (model);
  n_quantized_outputs = float_inputs ? 0 : g_strv_length (quantized_outputs);

  if (json)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();
      g_autoptr(JsonNode) root = NULL;

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "model");
      json_builder_add_string_value (b, model_path);
      json_builder_set_member_name (b, "perplexity");
      json_builder_add_double_value (b, ppl);
      if (compare)
        {
          json_builder_set_member_name (b, "reference");
          json_builder_add_string_value (b, argv[1]);
          json_builder_set_member_name (b, "reference_perplexity");
          json_builder_add_double_value (b, ref_ppl);
          json_builder_set_member_name (b, "perplexity_change");
          json_builder_add_double_value (b, ppl / ref_ppl - 1.0);
          json_builder_set_member_name (b, "kl_divergence");
          json_builder_add_double_value (b, kl);
        }
      json_builder_set_member_name (b, "tokens");
      json_builder_add_int_value (b, (gint64) n_ids);
      json_builder_set_member_name (b, "predictions");
      json_builder_add_int_value (b, (gint64) scored);
      json_builder_set_member_name (b, "context");
      json_builder_add_int_value (b, context);
      json_builder_set_member_name (b, "stride");
      json_builder_add_int_value (b, stride ? stride : context);
      json_builder_set_member_name (b, "quantized_inputs");
      json_builder_add_int_value (b, n_quantized_inputs);
      json_builder_set_member_name (b, "quantized_outputs");
      json_builder_add_int_value (b, n_quantized_outputs);
      json_builder_set_member_name (b, "threads");
      json_builder_add_int_value (b, quark_executor_get_threads (model));
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      print_json (root);
      return 0;
    }
  if (compare)
    {
      g_print ("%-12s %s\n%-12s %.4f\n", "float", argv[1], "perplexity", ref_ppl);
      g_print ("%-12s %s\n%-12s %.4f\n", "quantized", model_path, "perplexity", ppl);
      g_print ("%-12s %+.4f (%+.2f %%)\n", "difference", ppl - ref_ppl, 100.0 * (ppl / ref_ppl - 1.0));
      g_print ("%-12s %.6f nats per token\n", "KL", kl);
    }
  else
    g_print ("perplexity %.4f\n", ppl);
  g_print ("%" G_GUINT64_FORMAT " predictions scored over %" G_GSIZE_FORMAT " tokens (windows of %d, stride %d)\n",
           scored, n_ids, context, stride ? stride : context);
  if (n_quantized_inputs > 0)
    g_print ("inputs of %u linear layers quantized as the checkpoint's config says\n", n_quantized_inputs);
  else if (quantized_inputs[0] != NULL)
    g_print ("inputs in float (--float-inputs): the effect of the weights alone\n");
  if (n_quantized_outputs > 0)
    g_print ("outputs of %u linear layers (the KV cache) quantized as the checkpoint's config says\n",
             n_quantized_outputs);
  return 0;
}

/* the windows calibration runs text in: 512 tokens, or the model's
 * context when shorter */
static guint
calibration_window (QuarkExecutor *executor)
{
  return MIN (512, quark_executor_get_max_context (executor));
}

/* GPTQ's true_sequential (AMD Quark's key) splits each decoder layer of
 * sequential calibration into steps: four (q/k/v, o, gate/up, down) unless
 * a scaling algorithm (AWQ, SmoothQuant) folds a scale from one linear
 * layer into another of the same decoder layer (its default groups v -> o
 * and up -> down do; groups given in scaling_layers whose prev_op is a
 * norm do not), which needs both in one step: then two (attention, MLP) */
static QuarkSequentialSteps
sequential_steps_for (JsonArray *algos)
{
  gboolean split = FALSE, linear_folds = FALSE;

  for (guint i = 0; i < json_array_get_length (algos); i++)
    {
      JsonNode *entry = json_array_get_element (algos, i);
      JsonObject *o = JSON_NODE_HOLDS_OBJECT (entry) ? json_node_get_object (entry) : NULL;
      const char *name = o ? json_object_get_string_member_with_default (o, "name", "") : "";
      JsonNode *groups = o ? json_object_get_member (o, "scaling_layers") : NULL;

      if (o == NULL)
        continue;
      if (g_str_equal (name, "gptq") && json_object_get_boolean_member_with_default (o, "true_sequential", FALSE))
        split = TRUE;
      if (!g_str_equal (name, "awq") && !g_str_equal (name, "smooth") && !g_str_equal (name, "smoothquant"))
        continue;
      if (groups == NULL || !JSON_NODE_HOLDS_ARRAY (groups))
        {
          linear_folds = TRUE;    /* the model's own groups */
          continue;
        }
      for (guint g = 0; g < json_array_get_length (json_node_get_array (groups)); g++)
        {
          JsonNode *group = json_array_get_element (json_node_get_array (groups), g);
          const char *prev = JSON_NODE_HOLDS_OBJECT (group)
                             ? json_object_get_string_member_with_default (json_node_get_object (group), "prev_op", "")
                             : "";
          if (g_str_has_suffix (prev, "_proj"))
            linear_folds = TRUE;
        }
    }
  return !split ? QUARK_SEQUENTIAL_STEPS_LAYER : linear_folds ? QUARK_SEQUENTIAL_STEPS_BLOCKS
                                                              : QUARK_SEQUENTIAL_STEPS_LINEARS;
}

/* `quark quantize --calibration-text`: a session for @config fed with
 * every linear layer's inputs while the executor runs @model (on @threads
 * threads, 0 for one per processor) on the first @max_tokens tokens of the
 * text, in windows of calibration_window () (into *@window_out when
 * given); without a config, a session of second moments without Gram
 * matrices (an importance matrix). A config with algorithms is calibrated
 * layer by layer, each layer quantized by @quantizer (the one that will
 * write the output, so with its export format) or, %NULL, a new one. */
QuarkCalibration *
tool_calibrate_from_text (QuarkModel *model, const char *model_path, QuarkQuantizationConfig *config,
                          QuarkModelQuantizer *final_quantizer, const char *text_file, guint max_tokens, guint threads, gboolean tty,
                          guint *window_out, GCancellable *cancellable, GError **error)
{
  g_autoptr(QuarkTokenizer) tokenizer = NULL;
  g_autoptr(QuarkExecutor) executor = NULL;
  g_autoptr(QuarkCalibration) calibration = NULL;
  g_autofree guint32 *ids = NULL;
  gsize n_ids = 0;
  guint window;
  EvalProgress progress = { tty, g_get_monotonic_time (), "calibration" };

  if ((tokenizer = tool_model_tokenizer (model_path, NULL, error)) == NULL ||
      (ids = tool_tokenize_file (tokenizer, text_file, NULL, &n_ids, error)) == NULL)
    return NULL;
  if ((executor = quark_executor_new (model, error)) == NULL)
    {
      g_prefix_error (error, "--calibration-text: %s: ", model_path);
      return NULL;
    }
  quark_executor_set_threads (executor, threads);
  if (n_ids < 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %" G_GSIZE_FORMAT " tokens: too little to calibrate with",
                   text_file, n_ids);
      return NULL;
    }
  n_ids = MIN (n_ids, (gsize) max_tokens);
  window = calibration_window (executor);
  if (window_out)
    *window_out = window;
  if (config == NULL)
    {
      /* an importance matrix: Σx² per input feature, no Gram matrices */
      calibration = quark_calibration_new ();
      quark_calibration_set_second_moments_enabled (calibration, TRUE);
      quark_calibration_set_gram_matrix_enabled (calibration, FALSE);
      g_signal_connect (executor, "progress", G_CALLBACK (on_eval_progress), &progress);
      if (!quark_executor_calibrate (executor, calibration, ids, n_ids, window, cancellable, error))
        return NULL;
      return g_steal_pointer (&calibration);
    }
  calibration = quark_calibration_new_for_config (config, model);
  {
    /* algorithms (algo_config) read second moments, and GPTQ learns them
     * layer by layer from the quantized layers before (its sequential
     * mode) */
    g_autoptr(JsonNode) json = quark_quantization_config_to_json (config);
    JsonNode *algos = JSON_NODE_HOLDS_OBJECT (json)
                      ? json_object_get_member (json_node_get_object (json), "algo_config") : NULL;
    if (algos && JSON_NODE_HOLDS_ARRAY (algos) && json_array_get_length (json_node_get_array (algos)) > 0)
      {
        g_autoptr(QuarkModelQuantizer) quantizer = NULL;

        quark_calibration_set_second_moments_enabled (calibration, TRUE);
        /* GPTQ's correct_input_error reads the cross moments of the float
         * model's inputs against the quantized model's */
        for (guint i = 0; i < json_array_get_length (json_node_get_array (algos)); i++)
          {
            JsonNode *entry = json_array_get_element (json_node_get_array (algos), i);
            if (JSON_NODE_HOLDS_OBJECT (entry) &&
                json_object_get_boolean_member_with_default (json_node_get_object (entry), "correct_input_error",
                                                             FALSE))
              quark_calibration_set_cross_moments_enabled (calibration, TRUE);
          }
        g_object_set (executor, "sequential-steps", sequential_steps_for (json_node_get_array (algos)), NULL);
        if (final_quantizer)
          quantizer = g_object_ref (final_quantizer);
        else if ((quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, error)) == NULL)
          return NULL;
        progress.label = "calibration, layer by layer";
        g_signal_connect (executor, "progress", G_CALLBACK (on_layer_progress), &progress);
        if (!quark_executor_calibrate_sequential (executor, calibration, quantizer, ids, n_ids,
                                                  window, cancellable, error))
          return NULL;
        return g_steal_pointer (&calibration);
      }
  }
  g_signal_connect (executor, "progress", G_CALLBACK (on_eval_progress), &progress);
  if (!quark_executor_calibrate (executor, calibration, ids, n_ids, window, cancellable, error))
    return NULL;
  return g_steal_pointer (&calibration);
}

int
cmd_imatrix (int argc, char **argv)
{
  g_autofree char *text = NULL, *output = NULL;
  gboolean json = FALSE, force = FALSE;
  int tokens = 65536, status = 0, threads = 0;
  GOptionEntry entries[] = {
    { "text", 't', 0, G_OPTION_ARG_FILENAME, &text, "The calibration text (UTF-8)", "FILE" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Write the importance matrix to this file (llama.cpp's GGUF imatrix)", "FILE" },
    { "tokens", 'n', 0, G_OPTION_ARG_INT, &tokens, "Run at most this many tokens of the text, in windows of 512 (default 65536)", "N" },
    { "threads", 'j', 0, G_OPTION_ARG_INT, &threads, "Run with this many threads (default: one per processor)", "N" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force, "Replace an existing output file", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print a JSON summary for scripts", NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(QuarkModel) check = NULL;
  g_autoptr(QuarkCalibration) calibration = NULL;
  g_autofree char *dataset = NULL;
  guint window = 0;

  if (!parse_options ("imatrix", "MODEL",
                      "Runs a Llama-family model (llama, mistral, qwen2) natively on a text and\n"
                      "writes llama.cpp's importance matrix: for every weight of the decoder\n"
                      "blocks, the sum of x² per input column over the tokens and the token\n"
                      "count (the GGUF file llama-imatrix writes). Give it to\n"
                      "quark quantize --export-format gguf --imatrix FILE, or to llama-quantize\n"
                      "--imatrix FILE. The output appears whole or not at all.",
                      entries, &argc, &argv, &status))
    return status;
  if (argc != 2 || text == NULL || output == NULL)
    {
      g_printerr ("quark imatrix: %s\nTry \"quark imatrix --help\".\n",
                  argc != 2 ? "expected one MODEL" : text == NULL ? "--text FILE is required"
                                                   : "-o FILE is required: where to write the importance matrix");
      return EXIT_USAGE;
    }
  if (tokens < 2 || threads < 0 || threads > 1024)
    {
      g_printerr ("quark imatrix: --tokens must be at least 2, --threads from 1 to 1024\n");
      return EXIT_USAGE;
    }
  if (!force && g_file_test (output, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK))
    {
      g_set_error (&error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s exists (--force replaces it)", output);
      return report_failure ("imatrix", error, json);
    }
  if ((model = quark_model_load (argv[1], NULL, &error)) == NULL)
    return report_failure ("imatrix", error, json);
  /* the window the text runs in is recorded as llama.cpp's chunk size */
  if ((calibration = tool_calibrate_from_text (model, argv[1], NULL, NULL, text, (guint) tokens, (guint) threads,
                                               isatty (fileno (stderr)) && !json, &window, NULL, &error)) == NULL)
    return report_failure ("imatrix", error, json);
  dataset = g_path_get_basename (text);
  if (!quark_importance_matrix_save (calibration, model, output, dataset, window, force, &error) ||
      (check = quark_importance_matrix_load (output, &error)) == NULL)
    return report_failure ("imatrix", error, json);
  if (json)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();
      g_autoptr(JsonNode) root = NULL;
      JsonObject *md = json_node_get_object (quark_model_get_metadata (check));

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "output");
      json_builder_add_string_value (b, output);
      json_builder_set_member_name (b, "entries");
      json_builder_add_int_value (b, quark_model_get_n_tensors (check));
      json_builder_set_member_name (b, "chunks");
      json_builder_add_int_value (b, json_object_get_int_member (md, "chunk_count"));
      json_builder_set_member_name (b, "chunk_size");
      json_builder_add_int_value (b, window);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      print_json (root);
      return 0;
    }
  g_print ("%s: %u weights, %" G_GINT64_FORMAT " chunks of %u tokens\n", output, quark_model_get_n_tensors (check),
           json_object_get_int_member (json_node_get_object (quark_model_get_metadata (check)), "chunk_count"), window);
  return 0;
}
