/* quark-brevitas-module.c: entry point of the brevitas backend module
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-config.h"
#include "quark-brevitas-quantizer.h"

/* Whole-model recipes in AMD Quark's Brevitas extension style: Brevitas
 * quantizers by name for Linear and convolution layers. */
#define W(p) "\"weight\": {\"preset\": \"" p "\"}"
#define I(p) "\"input_tensors\": {\"preset\": \"" p "\"}"
#define B(p) "\"bias\": {\"preset\": \"" p "\"}"
#define PRESET(layer) "{\"global_quant_config\": {" layer "}, \"exclude\": [\"lm_head\"]}"

static const struct { const char *name, *description, *json; } presets[] = {
  { "int8_weight_per_tensor", "Int8WeightPerTensorFloat weights (narrow, abs max / 127)",
    PRESET (W ("Int8WeightPerTensorFloat")) },
  { "int8_weight_per_channel", "Int8WeightPerChannelFloat weights", PRESET (W ("Int8WeightPerChannelFloat")) },
  { "int8_fixed_point", "Int8WeightPerChannelFixedPoint weights (power-of-two scales, ceil)",
    PRESET (W ("Int8WeightPerChannelFixedPoint")) },
  { "int4_weight_g128", "IntWeightSymmetricGroupQuant 4-bit weights, groups of 128",
    PRESET (W ("IntWeightSymmetricGroupQuant")) },
  { "w8a8", "Int8WeightPerChannelFloat weights, Int8ActPerTensorFloat inputs, Int32Bias (needs calibration)",
    PRESET (W ("Int8WeightPerChannelFloat") ", " I ("Int8ActPerTensorFloat") ", " B ("Int32Bias")) },
  { "w8a8_equalized", "w8a8 after Brevitas's activation equalization (alpha 0.5, folded into the layers before; needs "
    "--calibration-text, which runs twice)",
    "{\"global_quant_config\": {" W ("Int8WeightPerChannelFloat") ", " I ("Int8ActPerTensorFloat") ", "
    B ("Int32Bias") "}, \"exclude\": [\"lm_head\"], \"pre_quant_opt_config\": [{\"name\": "
    "\"activation_equalization\", \"alpha\": 0.5}]}" },
  { "w8a8_fixed_point", "Int8 fixed-point weights and inputs, Int32Bias: FPGA-style power-of-two scales (needs calibration)",
    PRESET (W ("Int8WeightPerChannelFixedPoint") ", " I ("Int8ActPerTensorFixedPoint") ", " B ("Int32Bias")) },
  { "w8a8_shifted", "ShiftedUint8 weights and inputs with zero points, Int32Bias (needs calibration)",
    PRESET (W ("ShiftedUint8WeightPerChannelFloat") ", " I ("ShiftedUint8ActPerTensorFloat") ", " B ("Int32Bias")) },
  { "fp8_e4m3", "Fp8e4m3OCP per-channel weights and per-tensor inputs (needs calibration)",
    PRESET (W ("Fp8e4m3OCPWeightPerChannelFloat") ", " I ("Fp8e4m3OCPActPerTensorFloat")) },
  { "mxfp8", "MXFloat8e4m3 weights and dynamic MXFloat8e4m3 inputs", PRESET (W ("MXFloat8e4m3Weight") ", " I ("MXFloat8e4m3Act")) },
  { "mxfp4", "MXFloat4e2m1 weights and dynamic inputs", PRESET (W ("MXFloat4e2m1Weight") ", " I ("MXFloat4e2m1Act")) },
  { "mxint8", "MXInt8 weights and dynamic inputs (Brevitas's scale: block maximum clipped to 127)",
    PRESET (W ("MXInt8Weight") ", " I ("MXInt8Act")) },
};

QUARK_BACKEND_EXPORT gboolean quark_backend_brevitas_register (QuarkBackendModule  *module,
                                                               GError             **error);

gboolean
quark_backend_brevitas_register (QuarkBackendModule  *module,
                                 GError             **error)
{
  g_autoptr(QuarkBackend) backend = NULL;
  static const QuarkDType dtypes[] = {
    QUARK_DTYPE_I8, QUARK_DTYPE_U8, QUARK_DTYPE_I16, QUARK_DTYPE_U16, QUARK_DTYPE_I32,
    QUARK_DTYPE_INT2, QUARK_DTYPE_INT3, QUARK_DTYPE_INT4, QUARK_DTYPE_INT5, QUARK_DTYPE_INT6, QUARK_DTYPE_INT7,
    QUARK_DTYPE_UINT2, QUARK_DTYPE_UINT3, QUARK_DTYPE_UINT4, QUARK_DTYPE_UINT5, QUARK_DTYPE_UINT6, QUARK_DTYPE_UINT7,
    QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2, QUARK_DTYPE_F8_E4M3FNUZ, QUARK_DTYPE_F8_E5M2FNUZ,
    QUARK_DTYPE_FP6_E2M3, QUARK_DTYPE_FP6_E3M2, QUARK_DTYPE_FP4_E2M1,
  };

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;

  backend = quark_backend_new ("brevitas", QUARK_TYPE_BREVITAS_CONFIG, QUARK_TYPE_BREVITAS_QUANTIZER);
  quark_backend_set_description (backend, "Brevitas semantics: its quantizer presets, scales, calibration and integer biases");
  quark_backend_set_version (backend, QUARK_VERSION_S);
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    quark_backend_add_supported_dtype (backend, dtypes[i]);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_TENSOR);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_CHANNEL);
  quark_backend_add_supported_qscheme (backend, QUARK_QSCHEME_PER_GROUP);
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    quark_backend_add_preset (backend, presets[i].name, presets[i].description, presets[i].json);
  return quark_backend_module_add_backend (module, backend, error);
}
