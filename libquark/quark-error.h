/* quark-error.h: error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib.h>

#include "quark-version-macros.h"

G_BEGIN_DECLS

/**
 * QUARK_ERROR:
 *
 * Error domain for general libquark errors (tensors, models, files,
 * quantization). Errors in this domain come from the #QuarkError enumeration.
 * Config problems use %QUARK_CONFIG_ERROR and backend registry problems
 * %QUARK_BACKEND_ERROR.
 */
#define QUARK_ERROR (quark_error_quark ())

/**
 * QuarkError:
 * @QUARK_ERROR_FAILED: a failure no other code describes
 * @QUARK_ERROR_INVALID_ARGUMENT: an argument is inconsistent (for instance a
 *   tensor whose data size does not match its shape)
 * @QUARK_ERROR_INVALID_FILE: a file is malformed
 * @QUARK_ERROR_UNSUPPORTED_DTYPE: the dtype is not supported for this operation
 * @QUARK_ERROR_UNSUPPORTED_SCHEME: the quantization scheme is not supported by
 *   the backend or the operation
 * @QUARK_ERROR_INVALID_TENSOR: a tensor's values cannot be quantized (NaN or
 *   infinity)
 * @QUARK_ERROR_NEEDS_CALIBRATION: a static activation spec has no calibration
 *   statistics
 * @QUARK_ERROR_IO: reading or writing failed
 * @QUARK_ERROR_CANCELLED: not used since 1.0: cancelled operations fail with
 *   %G_IO_ERROR_CANCELLED, in the synchronous and the asynchronous forms
 *   alike, as GIO's do
 * @QUARK_ERROR_NOT_FOUND: an input file or directory does not exist, or a
 *   library libquark loads when first needed (BLAS and LAPACKE) cannot be
 *   loaded or lacks a routine
 * @QUARK_ERROR_EXISTS: the output exists and was not to be replaced
 *
 * Error codes of the %QUARK_ERROR domain. Codes are stable. Like
 * %G_IO_ERROR_NOT_FOUND and %G_IO_ERROR_EXISTS, a missing input and an
 * existing output have codes of their own, apart from other
 * %QUARK_ERROR_IO failures.
 */
typedef enum {
  QUARK_ERROR_FAILED,
  QUARK_ERROR_INVALID_ARGUMENT,
  QUARK_ERROR_INVALID_FILE,
  QUARK_ERROR_UNSUPPORTED_DTYPE,
  QUARK_ERROR_UNSUPPORTED_SCHEME,
  QUARK_ERROR_INVALID_TENSOR,
  QUARK_ERROR_NEEDS_CALIBRATION,
  QUARK_ERROR_IO,
  QUARK_ERROR_CANCELLED,
  QUARK_ERROR_NOT_FOUND,
  QUARK_ERROR_EXISTS,
} QuarkError;

/**
 * QUARK_CONFIG_ERROR:
 *
 * Error domain for quantization configs: JSON that cannot be loaded, and
 * configs that do not validate. Messages name the source and the JSON path
 * at fault (`config.json: weight.group_size: expected a positive integer`).
 */
#define QUARK_CONFIG_ERROR (quark_config_error_quark ())

/**
 * QuarkConfigError:
 * @QUARK_CONFIG_ERROR_PARSE: the text is not strict JSON
 * @QUARK_CONFIG_ERROR_UNKNOWN_KEY: an object has a member the config does not
 *   define
 * @QUARK_CONFIG_ERROR_TYPE_MISMATCH: a value has the wrong JSON type
 * @QUARK_CONFIG_ERROR_OUT_OF_RANGE: a number is outside its allowed range
 * @QUARK_CONFIG_ERROR_INVALID_VALUE: a string is not one of the allowed names
 * @QUARK_CONFIG_ERROR_MISSING_KEY: a required member is absent
 * @QUARK_CONFIG_ERROR_INVALID_COMBINATION: values that are valid alone do not
 *   go together
 * @QUARK_CONFIG_ERROR_DUPLICATE_KEY: an object has the same member twice
 *
 * Error codes of the %QUARK_CONFIG_ERROR domain. Codes are stable.
 */
typedef enum {
  QUARK_CONFIG_ERROR_PARSE,
  QUARK_CONFIG_ERROR_UNKNOWN_KEY,
  QUARK_CONFIG_ERROR_TYPE_MISMATCH,
  QUARK_CONFIG_ERROR_OUT_OF_RANGE,
  QUARK_CONFIG_ERROR_INVALID_VALUE,
  QUARK_CONFIG_ERROR_MISSING_KEY,
  QUARK_CONFIG_ERROR_INVALID_COMBINATION,
  QUARK_CONFIG_ERROR_DUPLICATE_KEY,
} QuarkConfigError;

/**
 * QUARK_BACKEND_ERROR:
 *
 * Error domain for the backend registry and backend modules.
 */
#define QUARK_BACKEND_ERROR (quark_backend_error_quark ())

/**
 * QuarkBackendError:
 * @QUARK_BACKEND_ERROR_NOT_FOUND: no backend has that name
 * @QUARK_BACKEND_ERROR_LOAD_FAILED: a module file could not be loaded
 * @QUARK_BACKEND_ERROR_NO_ENTRY_POINT: a module has no backend entry point
 * @QUARK_BACKEND_ERROR_ABI_MISMATCH: a module was built for another backend ABI
 * @QUARK_BACKEND_ERROR_DUPLICATE: a backend of that name is already registered
 * @QUARK_BACKEND_ERROR_UNAVAILABLE: the backend is registered but cannot run
 *   here
 * @QUARK_BACKEND_ERROR_INVALID: a backend description is inconsistent (types
 *   that do not implement the interfaces, an empty name, a module that
 *   registers nothing)
 *
 * Error codes of the %QUARK_BACKEND_ERROR domain. Codes are stable.
 */
typedef enum {
  QUARK_BACKEND_ERROR_NOT_FOUND,
  QUARK_BACKEND_ERROR_LOAD_FAILED,
  QUARK_BACKEND_ERROR_NO_ENTRY_POINT,
  QUARK_BACKEND_ERROR_ABI_MISMATCH,
  QUARK_BACKEND_ERROR_DUPLICATE,
  QUARK_BACKEND_ERROR_UNAVAILABLE,
  QUARK_BACKEND_ERROR_INVALID,
} QuarkBackendError;

QUARK_AVAILABLE_IN_1_0
GQuark quark_error_quark         (void);
QUARK_AVAILABLE_IN_1_0
GQuark quark_config_error_quark  (void);
QUARK_AVAILABLE_IN_1_0
GQuark quark_backend_error_quark (void);

G_END_DECLS
