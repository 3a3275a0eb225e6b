/* quark.h: libquark, the umbrella header
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Include only this header: #include <quark/quark.h>
 */
#pragma once

#define QUARK_INSIDE

#include "quark-version.h"
#include "quark-version-macros.h"

#include "quark-dtype.h"
#include "quark-enums.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "quark-json.h"
#include "quark-pattern.h"
#include "quark-buffer.h"
#include "quark-tensor.h"
#include "quark-tensor-spec.h"
#include "quark-model.h"
#include "quark-calibration.h"
#include "quark-quantization-config.h"
#include "quark-model-quantizer.h"
#include "quark-backend.h"
#include "quark-backend-module.h"
#include "quark-registry.h"
#include "quark-safetensors.h"
#include "quark-checkpoint-writer.h"
#include "quark-checkpoint-format.h"
#include "quark-topology.h"
#include "runtime/quark-tokenizer.h"
#include "runtime/quark-executor.h"
#include "algorithms/gptq/quark-gptq.h"
#include "algorithms/gpfq/quark-gpfq.h"
#include "algorithms/awq/quark-awq.h"
#include "algorithms/smoothquant/quark-smoothquant.h"
#include "algorithms/equalization/quark-equalization.h"
#include "algorithms/rotation/quark-rotation.h"
#include "formats/gguf/quark-importance-matrix.h"

#undef QUARK_INSIDE
