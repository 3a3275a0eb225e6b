/* quark-quark-module.c: entry point of the quark backend module
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-quark-config.h"
#include "quark-quark-quantizer.h"

/* AMD Quark's LLM presets (its "templates"): weights of Linear layers,
 * lm_head left in float. Static activation specs need calibration
 * statistics. */
#define W(spec) "\"weight\": " spec
#define I(spec) "\"input_tensors\": " spec
#define FP8_TENSOR "{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_tensor\", \"is_dynamic\": false}"
#define INT4_GROUP(g) "{\"dtype\": \"int4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": " #g "}"
#define UINT4_GROUP(g) "{\"dtype\": \"uint4\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": " #g ", \"symmetric\": false}"
#define MX(dt, dyn) "{\"dtype\": \"" dt "\", \"qscheme\": \"per_group\", \"ch_axis\": -1, \"group_size\": 32, " \
                    "\"scale_format\": \"e8m0\", \"scale_calculation_mode\": \"even\", \"is_dynamic\": " dyn "}"
#define PRESET(layer) "{\"global_quant_config\": {" layer "}, \"exclude\": [\"lm_head\"]}"
/* AMD Quark's recipes that add an algorithm (its LLM example's --quant_algo) */
#define PRESET_ALGO(layer, algo) "{\"global_quant_config\": {" layer "}, \"exclude\": [\"lm_head\"], " \
                                 "\"algo_config\": [" algo "]}"

static const struct { const char *name, *description, *json; } presets[] = {
  { "int8", "W8A8 int8: per-tensor weights and static per-tensor inputs (needs calibration)",
    PRESET (W ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}") ", "
            I ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}")) },
  { "fp8", "W8A8 FP8 E4M3: per-tensor weights and static per-tensor inputs (needs calibration)",
    PRESET (W (FP8_TENSOR) ", " I (FP8_TENSOR)) },
  { "ptpc_fp8", "FP8 E4M3 per-channel weights, dynamic per-token inputs",
    PRESET (W ("{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_channel\", \"ch_axis\": 0}") ", "
            I ("{\"dtype\": \"fp8_e4m3\", \"qscheme\": \"per_channel\", \"ch_axis\": 1, \"is_dynamic\": true}")) },
  { "int4_wo_32", "int4 weights only, symmetric, groups of 32", PRESET (W (INT4_GROUP (32))) },
  { "int4_wo_64", "int4 weights only, symmetric, groups of 64", PRESET (W (INT4_GROUP (64))) },
  { "int4_wo_128", "int4 weights only, symmetric, groups of 128", PRESET (W (INT4_GROUP (128))) },
  { "uint4_wo_32", "uint4 weights only, asymmetric, groups of 32", PRESET (W (UINT4_GROUP (32))) },
  { "uint4_wo_64", "uint4 weights only, asymmetric, groups of 64", PRESET (W (UINT4_GROUP (64))) },
  { "uint4_wo_128", "uint4 weights only, asymmetric, groups of 128", PRESET (W (UINT4_GROUP (128))) },
  { "mxfp4", "OCP MXFP4 weights and dynamic MXFP4 inputs", PRESET (W (MX ("fp4", "false")) ", " I (MX ("fp4", "true"))) },
  { "mxfp6_e2m3", "OCP MXFP6 (E2M3) weights and dynamic inputs",
    PRESET (W (MX ("fp6_e2m3", "false")) ", " I (MX ("fp6_e2m3", "true"))) },
  { "mxfp6_e3m2", "OCP MXFP6 (E3M2) weights and dynamic inputs",
    PRESET (W (MX ("fp6_e3m2", "false")) ", " I (MX ("fp6_e3m2", "true"))) },
  { "mxfp4_fp8", "OCP MXFP4 weights, static FP8 per-tensor inputs (needs calibration)",
    PRESET (W (MX ("fp4", "false")) ", " I (FP8_TENSOR)) },
  { "int4_fp8", "int4 per-group-128 weights, static FP8 per-tensor inputs (needs calibration)",
    PRESET (W (INT4_GROUP (128)) ", " I (FP8_TENSOR)) },
  { "mxfp8", "OCP MXFP8 (E4M3) weights and dynamic inputs",
    PRESET (W (MX ("fp8_e4m3", "false")) ", " I (MX ("fp8_e4m3", "true"))) },
  { "int8_per_channel_wo", "int8 per-channel symmetric weights only", PRESET (W ("{\"dtype\": \"int8\", \"qscheme\": \"per_channel\"}")) },
  { "int4_wo_128_awq", "int4_wo_128 with AWQ (needs calibration with second moments)",
    PRESET_ALGO (W (INT4_GROUP (128)), "{\"name\": \"awq\"}") },
  { "uint4_wo_128_awq", "uint4_wo_128 with AWQ (needs calibration with second moments)",
    PRESET_ALGO (W (UINT4_GROUP (128)), "{\"name\": \"awq\"}") },
  { "int4_wo_128_gptq", "int4_wo_128 with GPTQ (needs calibration with second moments)",
    PRESET_ALGO (W (INT4_GROUP (128)), "{\"name\": \"gptq\"}") },
  /* libquark's own: the best int4 g128 recipe on its test model
   * (docs/algorithms.md, "Quality on a real model") */
  { "int4_wo_128_awq_gptq", "int4_wo_128 with AWQ, then GPTQ aimed at the float model's outputs (damp_percent 0.2, "
    "correct_input_error; needs --calibration-text)",
    PRESET_ALGO (W (INT4_GROUP (128)), "{\"name\": \"awq\"}, "
                 "{\"name\": \"gptq\", \"damp_percent\": 0.2, \"correct_input_error\": true}") },
  { "int8_smoothquant", "int8 (W8A8) with SmoothQuant (needs calibration with second moments)",
    PRESET_ALGO (W ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}") ", "
                 I ("{\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}"),
                 "{\"name\": \"smooth\"}") },
};

static const struct { const char *alias, *preset; } aliases[] = {
  { "w_int4_per_group_sym", "int4_wo_128" },
  { "w_uint4_per_group_asym", "uint4_wo_128" },
  { "w_int8_a_int8_per_tensor_sym", "int8" },
  { "w_fp8_a_fp8", "fp8" },
  { "w_mxfp4_a_mxfp4", "mxfp4" },
  { "w_mxfp4_a_fp8", "mxfp4_fp8" },
  { "w_mxfp6_e3m2_a_mxfp6_e3m2", "mxfp6_e3m2" },
  { "w_mxfp6_e2m3_a_mxfp6_e2m3", "mxfp6_e2m3" },
};

QUARK_BACKEND_EXPORT gboolean quark_backend_quark_register (QuarkBackendModule  *module,
                                                            GError             **error);

gboolean
quark_backend_quark_register (QuarkBackendModule  *module,
                              GError             **error)
{
  g_autoptr(QuarkBackend) backend = NULL;
  static const QuarkDType dtypes[] = {
    QUARK_DTYPE_I8, QUARK_DTYPE_U8, QUARK_DTYPE_I16, QUARK_DTYPE_U16,
    QUARK_DTYPE_INT2, QUARK_DTYPE_INT3, QUARK_DTYPE_INT4, QUARK_DTYPE_INT5,
    QUARK_DTYPE_INT6, QUARK_DTYPE_INT7,
    QUARK_DTYPE_UINT2, QUARK_DTYPE_UINT3, QUARK_DTYPE_UINT4, QUARK_DTYPE_UINT5,
    QUARK_DTYPE_UINT6, QUARK_DTYPE_UINT7, QUARK_DTYPE_I32,
    QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2, QUARK_DTYPE_F8_E4M3FNUZ, QUARK_DTYPE_F8_E5M2FNUZ,
    QUARK_DTYPE_FP6_E2M3, QUARK_DTYPE_FP6_E3M2, QUARK_DTYPE_FP4_E2M1, QUARK_DTYPE_F16, QUARK_DTYPE_BF16,
  };

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;

  backend = quark_backend_new ("quark", QUARK_TYPE_QUARK_CONFIG, QUARK_TYPE_QUARK_QUANTIZER);
  quark_backend_set_description (backend, "AMD Quark semantics: Quark's config model, scales and rounding");
  quark_backend_set_version (backend, QUARK_VERSION_S);
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    quark_backend_add_supported_dtype (backend, dtypes[i]);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_TENSOR);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_CHANNEL);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_GROUP);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_BLOCK);
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    quark_backend_add_preset (backend, presets[i].name, presets[i].description, presets[i].json);
  /* AMD Quark's scheme names before its 0.11 renamed them (the release
   * notes of 0.11 list the renames; the group size of the per-group ones
   * was 128 by default) */
  for (guint i = 0; i < G_N_ELEMENTS (aliases); i++)
    quark_backend_add_preset_alias (backend, aliases[i].alias, aliases[i].preset);
  return quark_backend_module_add_backend (module, backend, error);
}
