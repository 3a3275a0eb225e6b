/* quark-gguf-mix.c: llama-quantize's file types and per-tensor choices
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * llama.cpp's llama_tensor_get_type () (src/llama-quant.cpp) for the file
 * types written here, restated: without --pure, output.weight (or
 * token_embd.weight when the model has no output tensor) becomes Q6_K
 * (Q8_0 stays Q8_0; rows that are not whole super-blocks make it Q8_0);
 * attn_v, ffn_down and attn_output get more bits in the mixes, by counters
 * that run over the tensors in file order (use_more_bits: the first and
 * last eighth of the layers and every third one between); then a type
 * whose block does not divide the rows falls back (Q4_K → Q5_0,
 * Q5_K → Q5_1, Q6_K → Q8_0, Q2_K and Q3_K → IQ4_NL, then F16). IQ4_NL
 * gives attn_v Q5_K with 4 or more query heads per key/value head and the
 * first eighth of ffn_down Q5_K (without an importance matrix); with one,
 * Q4_0 and Q5_0 give the first eighth of ffn_down Q4_1 and Q5_1; MXFP4_MOE is MXFP4 for expert tensors
 * and Q8_0 for the rest (so Q8_0 throughout a dense model, MXFP4
 * everywhere with --pure).
 */
#include "config.h"

#include "quark-gguf-mix.h"

#include <string.h>

static const QuarkGgufScheme schemes[] = {
  { "F32", QUARK_GGML_F32, 0 },
  { "F16", QUARK_GGML_F16, 1 },
  { "BF16", QUARK_GGML_BF16, 32 },
  { "Q8_0", QUARK_GGML_Q8_0, 7 },
  { "Q4_0", QUARK_GGML_Q4_0, 2 },
  { "Q4_1", QUARK_GGML_Q4_1, 3 },
  { "Q5_0", QUARK_GGML_Q5_0, 8 },
  { "Q5_1", QUARK_GGML_Q5_1, 9 },
  { "Q2_K", QUARK_GGML_Q2_K, 10 },
  { "Q3_K_S", QUARK_GGML_Q3_K, 11 },
  { "Q3_K_M", QUARK_GGML_Q3_K, 12 },
  { "Q3_K_L", QUARK_GGML_Q3_K, 13 },
  { "Q4_K_S", QUARK_GGML_Q4_K, 14 },
  { "Q4_K_M", QUARK_GGML_Q4_K, 15 },
  { "Q5_K_S", QUARK_GGML_Q5_K, 16 },
  { "Q5_K_M", QUARK_GGML_Q5_K, 17 },
  { "Q6_K", QUARK_GGML_Q6_K, 18 },
  { "IQ4_NL", QUARK_GGML_IQ4_NL, 25 },
  { "MXFP4_MOE", QUARK_GGML_MXFP4, 38 },
  { NULL, 0, 0 },
};

const QuarkGgufScheme *
_quark_gguf_schemes (void)
{
  return schemes;
}

const QuarkGgufScheme *
_quark_gguf_scheme_lookup (const char *name)
{
  static const struct { const char *alias, *name; } aliases[] = {
    { "Q3_K", "Q3_K_M" }, { "Q4_K", "Q4_K_M" }, { "Q5_K", "Q5_K_M" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (aliases); i++)
    if (g_ascii_strcasecmp (name, aliases[i].alias) == 0)
      name = aliases[i].name;
  for (guint i = 0; schemes[i].name; i++)
    if (g_ascii_strcasecmp (schemes[i].name, name) == 0)
      return &schemes[i];
  return NULL;
}

static gboolean
use_more_bits (int i_layer, int n_layers)
{
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

static gboolean
is (const QuarkGgufMix *mix, const char *name)
{
  return g_str_equal (mix->scheme->name, name);
}

QuarkGgmlType
_quark_gguf_mix_type (QuarkGgufMix *mix, const char *name, guint64 ne0)
{
  QuarkGgmlType t = mix->scheme->type;
  const QuarkGgmlTypeInfo *info = _quark_ggml_type_lookup (t);

  if (mix->pure || info->block == 1)
    {
      /* --pure, or an unquantized file type: the default everywhere (the
       * fallback below keeps the rows whole) */
    }
  else if (g_str_equal (name, "output.weight") || (!mix->has_output && g_str_equal (name, "token_embd.weight")))
    {
      if (is (mix, "MXFP4_MOE") || ne0 % info->block != 0)
        t = QUARK_GGML_Q8_0;
      else if (t != QUARK_GGML_Q8_0)
        t = QUARK_GGML_Q6_K;
    }
  else if (is (mix, "MXFP4_MOE"))
    t = QUARK_GGML_Q8_0;   /* MXFP4 for expert tensors, which dense models have none of */
  else if (strstr (name, "attn_v.weight"))
    {
      if (is (mix, "Q2_K"))
        t = mix->n_gqa >= 4 ? QUARK_GGML_Q4_K : QUARK_GGML_Q3_K;
      else if (is (mix, "Q3_K_M"))
        t = mix->i_attention_wv < 2 ? QUARK_GGML_Q5_K : QUARK_GGML_Q4_K;
      else if (is (mix, "Q3_K_L"))
        t = QUARK_GGML_Q5_K;
      else if (is (mix, "IQ4_NL") && mix->n_gqa >= 4)
        t = QUARK_GGML_Q5_K;
      else if ((is (mix, "Q4_K_M") || is (mix, "Q5_K_M")) && use_more_bits (mix->i_attention_wv, mix->n_attention_wv))
        t = QUARK_GGML_Q6_K;
      else if (is (mix, "Q4_K_S") && mix->i_attention_wv < 4)
        t = QUARK_GGML_Q5_K;
      if (mix->is_70b && (t == QUARK_GGML_Q3_K || t == QUARK_GGML_Q4_K))
        t = QUARK_GGML_Q5_K;
      mix->i_attention_wv++;
    }
  else if (strstr (name, "ffn_down"))
    {
      int i_layer = mix->i_ffn_down, n_layer = mix->n_layer;
      if (is (mix, "Q2_K"))
        t = QUARK_GGML_Q3_K;
      else if (is (mix, "Q3_K_M"))
        t = i_layer < n_layer / 16 ? QUARK_GGML_Q5_K : QUARK_GGML_Q4_K;   /* not Falcon */
      else if (is (mix, "Q3_K_L"))
        t = QUARK_GGML_Q5_K;
      else if (is (mix, "Q4_K_M"))
        {
          if (use_more_bits (i_layer, n_layer))
            t = QUARK_GGML_Q6_K;
        }
      else if (is (mix, "IQ4_NL") && i_layer < n_layer / 8 && !mix->has_imatrix)
        t = QUARK_GGML_Q5_K;
      else if (is (mix, "Q5_K_M") && use_more_bits (i_layer, n_layer))
        t = QUARK_GGML_Q6_K;
      else if (is (mix, "Q4_K_S") && i_layer < n_layer / 8)
        t = QUARK_GGML_Q5_K;
      else if ((is (mix, "Q4_0") || is (mix, "Q5_0")) && mix->has_imatrix && i_layer < n_layer / 8)
        t = is (mix, "Q4_0") ? QUARK_GGML_Q4_1 : QUARK_GGML_Q5_1;   /* llama.cpp's guard for early ffn_down */
      mix->i_ffn_down++;
    }
  else if (strstr (name, "attn_output.weight"))
    {
      if (is (mix, "Q2_K"))
        t = QUARK_GGML_Q3_K;
      else if (is (mix, "Q3_K_M"))
        t = QUARK_GGML_Q4_K;
      else if (is (mix, "Q3_K_L"))
        t = QUARK_GGML_Q5_K;
    }

  /* rows that are not whole blocks of the chosen type */
  info = _quark_ggml_type_lookup (t);
  if (ne0 % info->block != 0)
    {
      QuarkGgmlType fb = t == QUARK_GGML_Q4_K ? QUARK_GGML_Q5_0
                         : t == QUARK_GGML_Q5_K ? QUARK_GGML_Q5_1
                         : t == QUARK_GGML_Q6_K ? QUARK_GGML_Q8_0
                         : t == QUARK_GGML_Q2_K || t == QUARK_GGML_Q3_K ? QUARK_GGML_IQ4_NL : QUARK_GGML_F16;
      t = ne0 % _quark_ggml_type_lookup (fb)->block == 0 ? fb : QUARK_GGML_F16;
    }
  return t;
}
