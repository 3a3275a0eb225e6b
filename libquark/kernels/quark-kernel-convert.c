/* quark-kernel-convert.c: element conversions to binary32
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-kernels.h"
#include "quark-kernel-private.h"

#include <string.h>

static inline float
f32_from_bits (uint32_t bits)
{
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

/**
 * quark_kernel_f16_to_f32: (skip)
 * @bits: an IEEE binary16 bit pattern
 *
 * Converts one binary16 value to binary32. The conversion is exact for every
 * pattern: subnormals become normal binary32 values, infinities stay
 * infinities, and NaNs keep their sign and payload.
 *
 * Returns: the value
 */
float
quark_kernel_f16_to_f32 (uint16_t bits)
{
  uint32_t sign = (uint32_t) (bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t mant = bits & 0x3ffu;

  if (exp == 0)
    {
      /* zero or subnormal: mant * 2^-24, exact in binary32 */
      float v = (float) mant * 0x1p-24f;
      return sign ? -v : v;
    }
  if (exp == 0x1f)
    return f32_from_bits (sign | 0x7f800000u | (mant << 13));
  return f32_from_bits (sign | ((exp + 112u) << 23) | (mant << 13));
}

/**
 * quark_kernel_bf16_to_f32: (skip)
 * @bits: a bfloat16 bit pattern
 *
 * Converts one bfloat16 value to binary32 (exact: bfloat16 is the upper half
 * of a binary32).
 *
 * Returns: the value
 */
float
quark_kernel_bf16_to_f32 (uint16_t bits)
{
  return f32_from_bits ((uint32_t) bits << 16);
}

/* a shift per element, QK_LANES at a time */
QK_MULTIVERSION static void
bf16_to_f32_loop (const uint16_t *src, uint32_t *dst, size_t n)
{
  size_t i = 0;

  for (; i + QK_LANES <= n; i += QK_LANES)
    {
      qk_vu16 h;
      qk_vu w;
      memcpy (&h, src + i, sizeof h);
      w = __builtin_convertvector (h, qk_vu) << 16;
      memcpy (dst + i, &w, sizeof w);
    }
  for (; i < n; i++)
    dst[i] = (uint32_t) src[i] << 16;
}

/* quark_kernel_f16_to_f32() QK_LANES at a time, by bits and without
 * branches: the exponent and mantissa move to their binary32 places and
 * the exponent is rebased (+112); an all-ones exponent (infinity, NaN)
 * moves on to 255, keeping the payload; a zero exponent (zero,
 * subnormal m * 2^-24) is made 2^-14 * (1 + m / 1024) and 2^-14 subtracted,
 * which is exact, then the sign goes back on. The same bits as the scalar
 * form for all 65 536 patterns (test-float checks every one). */
QK_MULTIVERSION static void
f16_to_f32_loop (const uint16_t *src, uint32_t *dst, size_t n)
{
  const qk_vf two_m14 = qk_splat (0x1p-14f);
  size_t i = 0;

  for (; i + QK_LANES <= n; i += QK_LANES)
    {
      /* (unsigned lanes: the sums may pass 2^31) */
      qk_vu16 h;
      qk_vu w, o, e, sub;
      memcpy (&h, src + i, sizeof h);
      w = __builtin_convertvector (h, qk_vu);
      o = (w & 0x7fffu) << 13;
      e = o & 0x0f800000u;
      o += 112u << 23;
      o = (qk_vu) qk_select_i (e == 0x0f800000u, (qk_vi) (o + (112u << 23)), (qk_vi) o);
      sub = (qk_vu) ((qk_vf) (o + (1u << 23)) - two_m14);
      o = (qk_vu) qk_select_i (e == 0, (qk_vi) sub, (qk_vi) o);
      o |= (w & 0x8000u) << 16;
      memcpy (dst + i, &o, sizeof o);
    }
  for (; i < n; i++)
    {
      float f = quark_kernel_f16_to_f32 (src[i]);
      memcpy (dst + i, &f, sizeof f);
    }
}

/* The conversion instruction of x86's F16C extension (vcvtph2ps, eight
 * values at a time), where the processor has it: one instruction where the
 * bit form above takes about fifteen per vector. GCC 12 turns a conversion
 * of _Float16 vectors into one conversion per lane unless the processor
 * has AVX512-FP16, so this calls the compiler's builtin for the
 * instruction (GCC's and clang's name for it are the same). The
 * instruction gives a quiet NaN for a signalling one (it sets the
 * payload's top bit), where the scalar form keeps the pattern; the loop
 * notes whether any NaN went through and, if one did, the NaNs are
 * converted again by the scalar form, so the bits are the same for every
 * pattern (test-float checks all 65 536). Built where the clones are (the
 * x86-64-v3 and v4 processors have F16C; picked at run time) or where the
 * target compiled for has it. */
#if defined(__x86_64__) && (defined(QK_CLONES) || (defined(__F16C__) && defined(__AVX2__)))
#define QK_HAVE_F16C 1
typedef short qk_v8hi __attribute__ ((vector_size (16)));
typedef float qk_v8sf __attribute__ ((vector_size (32)));
typedef int32_t qk_v8si __attribute__ ((vector_size (32)));

QK_INLINE bool
qk_f16c (void)
{
#if defined(QK_CLONES)
  return __builtin_cpu_supports ("f16c") && __builtin_cpu_supports ("avx2");
#else
  return true;
#endif
}

__attribute__ ((target ("avx2,f16c"))) static void
f16_to_f32_f16c (const uint16_t *src, float *dst, size_t n)
{
  qk_v8si nan = { 0 };
  size_t i = 0;

  for (; i + 16 <= n; i += 16)
    {
      qk_v8hi h0, h1;
      qk_v8sf f0, f1;
      memcpy (&h0, src + i, sizeof h0);
      memcpy (&h1, src + i + 8, sizeof h1);
      f0 = __builtin_ia32_vcvtph2ps256 (h0);
      f1 = __builtin_ia32_vcvtph2ps256 (h1);
      nan |= (f0 != f0) | (f1 != f1);
      memcpy (dst + i, &f0, sizeof f0);
      memcpy (dst + i + 8, &f1, sizeof f1);
    }
  for (; i < n; i++)
    dst[i] = quark_kernel_f16_to_f32 (src[i]);
  for (int l = 0; l < 8; l++)
    if (nan[l])
      {
        for (size_t j = 0; j < n; j++)
          if ((src[j] & 0x7fffu) > 0x7c00u)
            dst[j] = quark_kernel_f16_to_f32 (src[j]);
        break;
      }
}
#endif

/**
 * quark_kernel_convert_to_f32: (skip)
 * @src_dtype: the element type of @src
 * @src: @n elements of type @src_dtype
 * @dst: room for @n floats
 * @n: the number of elements
 *
 * Converts elements to binary32. Float types convert exactly (binary64
 * rounds to nearest even); integer types convert by value (rounding to
 * nearest even above 2^24).
 *
 * Returns: %false if @src_dtype cannot be converted here (minifloats and
 *   logical sub-byte types have their own decoders)
 */
bool
quark_kernel_convert_to_f32 (QuarkDType  src_dtype,
                             const void *src,
                             float      *dst,
                             size_t      n)
{
  switch (src_dtype)
    {
    case QUARK_DTYPE_F32:
      if (n)
        memcpy (dst, src, n * sizeof (float));
      return true;
    case QUARK_DTYPE_F64:
      for (size_t i = 0; i < n; i++)
        dst[i] = (float) ((const double *) src)[i];
      return true;
    case QUARK_DTYPE_F16:
#if defined(QK_HAVE_F16C)
      if (qk_f16c ())
        {
          f16_to_f32_f16c (src, dst, n);
          return true;
        }
#endif
      f16_to_f32_loop (src, (uint32_t *) dst, n);
      return true;
    case QUARK_DTYPE_BF16:
      bf16_to_f32_loop (src, (uint32_t *) dst, n);
      return true;
#define CONVERT_INT(DT, CT) \
    case DT: \
      for (size_t i = 0; i < n; i++) \
        dst[i] = (float) ((const CT *) src)[i]; \
      return true;
    CONVERT_INT (QUARK_DTYPE_I64, int64_t)
    CONVERT_INT (QUARK_DTYPE_I32, int32_t)
    CONVERT_INT (QUARK_DTYPE_I16, int16_t)
    CONVERT_INT (QUARK_DTYPE_I8, int8_t)
    CONVERT_INT (QUARK_DTYPE_U64, uint64_t)
    CONVERT_INT (QUARK_DTYPE_U32, uint32_t)
    CONVERT_INT (QUARK_DTYPE_U16, uint16_t)
    CONVERT_INT (QUARK_DTYPE_U8, uint8_t)
    CONVERT_INT (QUARK_DTYPE_BOOL, uint8_t)
    /* logical sub-byte integers are stored one code per byte */
    CONVERT_INT (QUARK_DTYPE_INT2, int8_t)
    CONVERT_INT (QUARK_DTYPE_INT3, int8_t)
    CONVERT_INT (QUARK_DTYPE_INT4, int8_t)
    CONVERT_INT (QUARK_DTYPE_INT5, int8_t)
    CONVERT_INT (QUARK_DTYPE_INT6, int8_t)
    CONVERT_INT (QUARK_DTYPE_INT7, int8_t)
    CONVERT_INT (QUARK_DTYPE_UINT2, uint8_t)
    CONVERT_INT (QUARK_DTYPE_UINT3, uint8_t)
    CONVERT_INT (QUARK_DTYPE_UINT4, uint8_t)
    CONVERT_INT (QUARK_DTYPE_UINT5, uint8_t)
    CONVERT_INT (QUARK_DTYPE_UINT6, uint8_t)
    CONVERT_INT (QUARK_DTYPE_UINT7, uint8_t)
#undef CONVERT_INT
    case QUARK_DTYPE_F8_E4M3:
    case QUARK_DTYPE_F8_E5M2:
    case QUARK_DTYPE_F8_E4M3FNUZ:
    case QUARK_DTYPE_F8_E5M2FNUZ:
    case QUARK_DTYPE_F8_E8M0:
    case QUARK_DTYPE_FP4_E2M1:
    case QUARK_DTYPE_FP6_E2M3:
    case QUARK_DTYPE_FP6_E3M2:
    default:
      return false;
    }
}
