/* quark-dtype.c: element types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-dtype.h"
#include "quark-enum-types.h"

#include <string.h>

typedef struct {
  guint8 bits;         /* logical bit width */
  guint8 size;         /* bytes per element inside a QuarkTensor */
  guint8 is_signed;
  guint8 is_float;
  const char *safetensors;
} DTypeInfo;

/* One row per QuarkDType, in enum order. */
static const DTypeInfo dtype_info[QUARK_DTYPE_N_TYPES] = {
  [QUARK_DTYPE_F64]         = { 64, 8, TRUE,  TRUE,  "F64" },
  [QUARK_DTYPE_F32]         = { 32, 4, TRUE,  TRUE,  "F32" },
  [QUARK_DTYPE_F16]         = { 16, 2, TRUE,  TRUE,  "F16" },
  [QUARK_DTYPE_BF16]        = { 16, 2, TRUE,  TRUE,  "BF16" },
  [QUARK_DTYPE_I64]         = { 64, 8, TRUE,  FALSE, "I64" },
  [QUARK_DTYPE_I32]         = { 32, 4, TRUE,  FALSE, "I32" },
  [QUARK_DTYPE_I16]         = { 16, 2, TRUE,  FALSE, "I16" },
  [QUARK_DTYPE_I8]          = {  8, 1, TRUE,  FALSE, "I8" },
  [QUARK_DTYPE_U16]         = { 16, 2, FALSE, FALSE, "U16" },
  [QUARK_DTYPE_U8]          = {  8, 1, FALSE, FALSE, "U8" },
  [QUARK_DTYPE_F8_E4M3]     = {  8, 1, TRUE,  TRUE,  "F8_E4M3" },
  [QUARK_DTYPE_F8_E5M2]     = {  8, 1, TRUE,  TRUE,  "F8_E5M2" },
  [QUARK_DTYPE_F8_E4M3FNUZ] = {  8, 1, TRUE,  TRUE,  "F8_E4M3FNUZ" },
  [QUARK_DTYPE_F8_E5M2FNUZ] = {  8, 1, TRUE,  TRUE,  "F8_E5M2FNUZ" },
  [QUARK_DTYPE_F8_E8M0]     = {  8, 1, FALSE, TRUE,  "F8_E8M0" },
  [QUARK_DTYPE_INT2]        = {  2, 1, TRUE,  FALSE, NULL },
  [QUARK_DTYPE_INT3]        = {  3, 1, TRUE,  FALSE, NULL },
  [QUARK_DTYPE_INT4]        = {  4, 1, TRUE,  FALSE, NULL },
  [QUARK_DTYPE_INT5]        = {  5, 1, TRUE,  FALSE, NULL },
  [QUARK_DTYPE_INT6]        = {  6, 1, TRUE,  FALSE, NULL },
  [QUARK_DTYPE_INT7]        = {  7, 1, TRUE,  FALSE, NULL },
  [QUARK_DTYPE_UINT2]       = {  2, 1, FALSE, FALSE, NULL },
  [QUARK_DTYPE_UINT3]       = {  3, 1, FALSE, FALSE, NULL },
  [QUARK_DTYPE_UINT4]       = {  4, 1, FALSE, FALSE, NULL },
  [QUARK_DTYPE_UINT5]       = {  5, 1, FALSE, FALSE, NULL },
  [QUARK_DTYPE_UINT6]       = {  6, 1, FALSE, FALSE, NULL },
  [QUARK_DTYPE_UINT7]       = {  7, 1, FALSE, FALSE, NULL },
  [QUARK_DTYPE_FP4_E2M1]    = {  4, 1, TRUE,  TRUE,  "F4" },
  [QUARK_DTYPE_FP6_E2M3]    = {  6, 1, TRUE,  TRUE,  "F6_E2M3" },
  [QUARK_DTYPE_FP6_E3M2]    = {  6, 1, TRUE,  TRUE,  "F6_E3M2" },
  [QUARK_DTYPE_BOOL]        = {  8, 1, FALSE, FALSE, "BOOL" },
  [QUARK_DTYPE_U32]         = { 32, 4, FALSE, FALSE, "U32" },
  [QUARK_DTYPE_U64]         = { 64, 8, FALSE, FALSE, "U64" },
};

static inline gboolean
dtype_valid (QuarkDType dtype)
{
  return (guint) dtype < QUARK_DTYPE_N_TYPES;
}

/**
 * quark_dtype_get_bits:
 * @dtype: a #QuarkDType
 *
 * Gets the logical bit width of one element: 4 for %QUARK_DTYPE_INT4 and
 * %QUARK_DTYPE_FP4_E2M1, 16 for %QUARK_DTYPE_BF16, and so on.
 *
 * Returns: the number of bits, or 0 for a value outside the enum
 */
guint
quark_dtype_get_bits (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), 0);
  return dtype_info[dtype].bits;
}

/**
 * quark_dtype_get_element_size:
 * @dtype: a #QuarkDType
 *
 * Gets the number of bytes one element occupies inside a #QuarkTensor. Sub-byte
 * types occupy one byte per element.
 *
 * Returns: the element size in bytes, or 0 for a value outside the enum
 */
gsize
quark_dtype_get_element_size (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), 0);
  return dtype_info[dtype].size;
}

/**
 * quark_dtype_is_signed:
 * @dtype: a #QuarkDType
 *
 * Whether the type can represent negative values. Every float type except
 * %QUARK_DTYPE_F8_E8M0 is signed.
 *
 * Returns: %TRUE for signed types
 */
gboolean
quark_dtype_is_signed (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), FALSE);
  return dtype_info[dtype].is_signed;
}

/**
 * quark_dtype_is_float:
 * @dtype: a #QuarkDType
 *
 * Whether the type is a floating-point format (including the minifloats and
 * %QUARK_DTYPE_F8_E8M0).
 *
 * Returns: %TRUE for floating-point types
 */
gboolean
quark_dtype_is_float (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), FALSE);
  return dtype_info[dtype].is_float;
}

/**
 * quark_dtype_is_quantizable:
 * @dtype: a #QuarkDType
 *
 * Whether tensors of this type are quantized from: %QUARK_DTYPE_F64,
 * %QUARK_DTYPE_F32, %QUARK_DTYPE_F16 and %QUARK_DTYPE_BF16. Quantizers copy
 * tensors of every other type (integers, booleans, FP8 and narrower)
 * unchanged.
 *
 * Returns: %TRUE for the wide floating-point types
 */
gboolean
quark_dtype_is_quantizable (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), FALSE);
  return dtype == QUARK_DTYPE_F64 || dtype == QUARK_DTYPE_F32 || dtype == QUARK_DTYPE_F16 ||
         dtype == QUARK_DTYPE_BF16;
}

/**
 * quark_dtype_is_integer:
 * @dtype: a #QuarkDType
 *
 * Whether the type is an integer type (of any width, signed or not).
 * %QUARK_DTYPE_BOOL is not an integer type.
 *
 * Returns: %TRUE for integer types
 */
gboolean
quark_dtype_is_integer (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), FALSE);
  return !dtype_info[dtype].is_float && dtype != QUARK_DTYPE_BOOL;
}

/**
 * quark_dtype_is_sub_byte:
 * @dtype: a #QuarkDType
 *
 * Whether the type's logical width is below 8 bits.
 *
 * Returns: %TRUE for sub-byte types
 */
gboolean
quark_dtype_is_sub_byte (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), FALSE);
  return dtype_info[dtype].bits < 8;
}

/**
 * quark_dtype_get_integer_range:
 * @dtype: an integer #QuarkDType
 * @narrow: whether the range is narrow (signed: the most negative code is
 *   dropped; unsigned: the largest code is dropped)
 * @min: (out) (optional): the smallest code
 * @max: (out) (optional): the largest code
 *
 * Gets the code range of an integer type, as in the range table of the
 * numerics reference: int8 is -128..127 (narrow -127..127), uint8 is
 * 0..255 (narrow 0..254).
 *
 * Returns: %FALSE if @dtype is not an integer type or is 64 bits wide
 *   (unsigned 64-bit ranges do not fit a #gint64)
 */
gboolean
quark_dtype_get_integer_range (QuarkDType dtype,
                               gboolean   narrow,
                               gint64    *min,
                               gint64    *max)
{
  gint64 lo, hi;
  guint bits;

  g_return_val_if_fail (dtype_valid (dtype), FALSE);

  if (!quark_dtype_is_integer (dtype))
    return FALSE;
  bits = dtype_info[dtype].bits;
  if (bits > 32)
    return FALSE;

  if (dtype_info[dtype].is_signed)
    {
      lo = -((gint64) 1 << (bits - 1));
      hi = ((gint64) 1 << (bits - 1)) - 1;
      if (narrow)
        lo += 1;
    }
  else
    {
      lo = 0;
      hi = ((gint64) 1 << bits) - 1;
      if (narrow)
        hi -= 1;
    }

  if (min)
    *min = lo;
  if (max)
    *max = hi;
  return TRUE;
}

/**
 * quark_dtype_get_name:
 * @dtype: a #QuarkDType
 *
 * Gets the config name of @dtype (its enum nick: "bfloat16", "int4",
 * "fp8_e4m3", …).
 *
 * Returns: (transfer none): the name, or %NULL for a value outside the enum
 */
const char *
quark_dtype_get_name (QuarkDType dtype)
{
  GEnumClass *klass;
  GEnumValue *value;

  g_return_val_if_fail (dtype_valid (dtype), NULL);

  klass = g_type_class_ref (QUARK_TYPE_DTYPE);
  value = g_enum_get_value (klass, dtype);
  g_type_class_unref (klass); /* enum classes are never freed */
  return value ? value->value_nick : NULL;
}

/**
 * quark_dtype_from_name:
 * @name: a config name such as "int8" or "fp8_e4m3"
 * @dtype: (out): the dtype
 *
 * Looks up a #QuarkDType by its config name (the enum nick).
 *
 * Returns: %TRUE if @name names a dtype
 */
gboolean
quark_dtype_from_name (const char *name,
                       QuarkDType *dtype)
{
  GEnumClass *klass;
  GEnumValue *value;

  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (dtype != NULL, FALSE);

  klass = g_type_class_ref (QUARK_TYPE_DTYPE);
  value = g_enum_get_value_by_nick (klass, name);
  g_type_class_unref (klass);
  if (value == NULL)
    return FALSE;
  *dtype = value->value;
  return TRUE;
}

/**
 * quark_dtype_to_safetensors:
 * @dtype: a #QuarkDType
 *
 * Gets the safetensors dtype string of @dtype ("F32", "BF16", "F8_E4M3",
 * "F4", …). Logical integer types narrower than 8 bits have none.
 *
 * Returns: (transfer none) (nullable): the safetensors string, or %NULL
 */
const char *
quark_dtype_to_safetensors (QuarkDType dtype)
{
  g_return_val_if_fail (dtype_valid (dtype), NULL);
  return dtype_info[dtype].safetensors;
}

/**
 * quark_dtype_from_safetensors:
 * @name: a safetensors dtype string such as "BF16"
 * @dtype: (out): the dtype
 *
 * Looks up the #QuarkDType of a safetensors dtype string. The match is exact
 * and case-sensitive, as in the safetensors format.
 *
 * Returns: %TRUE if @name is a dtype string libquark knows
 */
gboolean
quark_dtype_from_safetensors (const char *name,
                              QuarkDType *dtype)
{
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (dtype != NULL, FALSE);

  for (guint i = 0; i < QUARK_DTYPE_N_TYPES; i++)
    {
      if (dtype_info[i].safetensors != NULL &&
          strcmp (dtype_info[i].safetensors, name) == 0)
        {
          *dtype = (QuarkDType) i;
          return TRUE;
        }
    }
  return FALSE;
}
