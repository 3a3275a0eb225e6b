/* quark-dtype.h: element types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib-object.h>

#include "quark-version-macros.h"

G_BEGIN_DECLS

/**
 * QuarkDType:
 * @QUARK_DTYPE_F64: IEEE binary64
 * @QUARK_DTYPE_F32: IEEE binary32
 * @QUARK_DTYPE_F16: IEEE binary16
 * @QUARK_DTYPE_BF16: bfloat16 (the upper half of a binary32)
 * @QUARK_DTYPE_I64: signed 64-bit integer
 * @QUARK_DTYPE_I32: signed 32-bit integer
 * @QUARK_DTYPE_I16: signed 16-bit integer
 * @QUARK_DTYPE_I8: signed 8-bit integer
 * @QUARK_DTYPE_U16: unsigned 16-bit integer
 * @QUARK_DTYPE_U8: unsigned 8-bit integer
 * @QUARK_DTYPE_F8_E4M3: OCP FP8 E4M3 ("fn": no infinities, max 448)
 * @QUARK_DTYPE_F8_E5M2: OCP FP8 E5M2 (IEEE-like, with infinities)
 * @QUARK_DTYPE_F8_E4M3FNUZ: FP8 E4M3, exponent bias 8, NaN is 0x80, no negative zero
 * @QUARK_DTYPE_F8_E5M2FNUZ: FP8 E5M2, exponent bias 16, NaN is 0x80, no negative zero
 * @QUARK_DTYPE_F8_E8M0: unsigned power-of-two scale (OCP MX shared scale)
 * @QUARK_DTYPE_INT2: signed 2-bit integer (logical)
 * @QUARK_DTYPE_INT3: signed 3-bit integer (logical)
 * @QUARK_DTYPE_INT4: signed 4-bit integer (logical)
 * @QUARK_DTYPE_INT5: signed 5-bit integer (logical)
 * @QUARK_DTYPE_INT6: signed 6-bit integer (logical)
 * @QUARK_DTYPE_INT7: signed 7-bit integer (logical)
 * @QUARK_DTYPE_UINT2: unsigned 2-bit integer (logical)
 * @QUARK_DTYPE_UINT3: unsigned 3-bit integer (logical)
 * @QUARK_DTYPE_UINT4: unsigned 4-bit integer (logical)
 * @QUARK_DTYPE_UINT5: unsigned 5-bit integer (logical)
 * @QUARK_DTYPE_UINT6: unsigned 6-bit integer (logical)
 * @QUARK_DTYPE_UINT7: unsigned 7-bit integer (logical)
 * @QUARK_DTYPE_FP4_E2M1: OCP FP4 E2M1 (max 6, no infinities or NaN)
 * @QUARK_DTYPE_FP6_E2M3: OCP FP6 E2M3 (max 7.5)
 * @QUARK_DTYPE_FP6_E3M2: OCP FP6 E3M2 (max 28)
 * @QUARK_DTYPE_BOOL: boolean stored in one byte
 * @QUARK_DTYPE_U32: unsigned 32-bit integer
 * @QUARK_DTYPE_U64: unsigned 64-bit integer
 *
 * Storage and logical element types.
 *
 * The enum nicks ("float32", "bfloat16", "int8", "uint4", "fp8_e4m3",
 * "fp4", …) are the names configs use; they follow AMD Quark's dtype names
 * where Quark has one. The safetensors spelling ("F32", "BF16", …) is
 * available through quark_dtype_to_safetensors() and
 * quark_dtype_from_safetensors().
 *
 * Bindings name the values after these nicks: `Quark.DType.INT8`,
 * `Quark.DType.BFLOAT16`, `Quark.DType.FP8_E4M3` in Python, GJS and Vala.
 *
 * Sub-byte types are *logical*: inside a #QuarkTensor each element occupies
 * one byte holding its code (two's complement for signed integers, the raw
 * bit pattern in the low bits for FP4 and FP6). Packed file layouts are
 * produced by the exporters, not by #QuarkTensor.
 */
typedef enum {
  QUARK_DTYPE_F64,          /*< nick=float64 >*/
  QUARK_DTYPE_F32,          /*< nick=float32 >*/
  QUARK_DTYPE_F16,          /*< nick=float16 >*/
  QUARK_DTYPE_BF16,         /*< nick=bfloat16 >*/
  QUARK_DTYPE_I64,          /*< nick=int64 >*/
  QUARK_DTYPE_I32,          /*< nick=int32 >*/
  QUARK_DTYPE_I16,          /*< nick=int16 >*/
  QUARK_DTYPE_I8,           /*< nick=int8 >*/
  QUARK_DTYPE_U16,          /*< nick=uint16 >*/
  QUARK_DTYPE_U8,           /*< nick=uint8 >*/
  QUARK_DTYPE_F8_E4M3,      /*< nick=fp8_e4m3 >*/
  QUARK_DTYPE_F8_E5M2,      /*< nick=fp8_e5m2 >*/
  QUARK_DTYPE_F8_E4M3FNUZ,  /*< nick=fp8_e4m3fnuz >*/
  QUARK_DTYPE_F8_E5M2FNUZ,  /*< nick=fp8_e5m2fnuz >*/
  QUARK_DTYPE_F8_E8M0,      /*< nick=e8m0 >*/
  QUARK_DTYPE_INT2,         /*< nick=int2 >*/
  QUARK_DTYPE_INT3,         /*< nick=int3 >*/
  QUARK_DTYPE_INT4,         /*< nick=int4 >*/
  QUARK_DTYPE_INT5,         /*< nick=int5 >*/
  QUARK_DTYPE_INT6,         /*< nick=int6 >*/
  QUARK_DTYPE_INT7,         /*< nick=int7 >*/
  QUARK_DTYPE_UINT2,        /*< nick=uint2 >*/
  QUARK_DTYPE_UINT3,        /*< nick=uint3 >*/
  QUARK_DTYPE_UINT4,        /*< nick=uint4 >*/
  QUARK_DTYPE_UINT5,        /*< nick=uint5 >*/
  QUARK_DTYPE_UINT6,        /*< nick=uint6 >*/
  QUARK_DTYPE_UINT7,        /*< nick=uint7 >*/
  QUARK_DTYPE_FP4_E2M1,     /*< nick=fp4 >*/
  QUARK_DTYPE_FP6_E2M3,     /*< nick=fp6_e2m3 >*/
  QUARK_DTYPE_FP6_E3M2,     /*< nick=fp6_e3m2 >*/
  QUARK_DTYPE_BOOL,         /*< nick=bool >*/
  QUARK_DTYPE_U32,          /*< nick=uint32 >*/
  QUARK_DTYPE_U64,          /*< nick=uint64 >*/
} QuarkDType;

/**
 * QUARK_DTYPE_N_TYPES:
 *
 * The number of #QuarkDType values; valid values are `0` to
 * `QUARK_DTYPE_N_TYPES - 1`.
 */
#define QUARK_DTYPE_N_TYPES (QUARK_DTYPE_U64 + 1)

QUARK_AVAILABLE_IN_1_0
guint         quark_dtype_get_bits              (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gsize         quark_dtype_get_element_size      (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_is_signed             (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_is_float              (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_is_quantizable        (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_is_integer            (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_is_sub_byte           (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_get_integer_range     (QuarkDType   dtype,
                                                 gboolean     narrow,
                                                 gint64      *min,
                                                 gint64      *max);
QUARK_AVAILABLE_IN_1_0
const char *  quark_dtype_get_name              (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_from_name             (const char  *name,
                                                 QuarkDType  *dtype);
QUARK_AVAILABLE_IN_1_0
const char *  quark_dtype_to_safetensors        (QuarkDType   dtype);
QUARK_AVAILABLE_IN_1_0
gboolean      quark_dtype_from_safetensors      (const char  *name,
                                                 QuarkDType  *dtype);

G_END_DECLS
