/* quark-kernel-float.c: minifloat and half-precision codecs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The scalar reference encoder works in double precision: every value of a
 * binary32 or binary64 input is exact there, the step of the target format is
 * a power of two, so x / step is exact and rint() rounds it once, to nearest
 * even. The vector encoder works on binary32 bit patterns and integer lanes;
 * the test suite checks that the two agree on every code and on random
 * inputs.
 */
#include "config.h"

#include "quark-kernels.h"
#include "quark-kernel-private.h"

#include <math.h>
#include <string.h>

/* Formats by dtype. */
static const QuarkFpFormat fmt_f16 = { 5, 10, 15, QUARK_FP_SPECIALS_IEEE };
static const QuarkFpFormat fmt_bf16 = { 8, 7, 127, QUARK_FP_SPECIALS_IEEE };
static const QuarkFpFormat fmt_e4m3 = { 4, 3, 7, QUARK_FP_SPECIALS_FN };
static const QuarkFpFormat fmt_e5m2 = { 5, 2, 15, QUARK_FP_SPECIALS_IEEE };
static const QuarkFpFormat fmt_e4m3fnuz = { 4, 3, 8, QUARK_FP_SPECIALS_FNUZ };
static const QuarkFpFormat fmt_e5m2fnuz = { 5, 2, 16, QUARK_FP_SPECIALS_FNUZ };
static const QuarkFpFormat fmt_fp6_e2m3 = { 2, 3, 1, QUARK_FP_SPECIALS_NONE };
static const QuarkFpFormat fmt_fp6_e3m2 = { 3, 2, 3, QUARK_FP_SPECIALS_NONE };
static const QuarkFpFormat fmt_fp4 = { 2, 1, 1, QUARK_FP_SPECIALS_NONE };

/**
 * quark_fp_format_for_dtype: (skip)
 * @dtype: a float #QuarkDType
 *
 * Gets the format of a float dtype of at most 16 bits.
 *
 * Returns: (nullable): the format, or %NULL for other dtypes (binary32,
 *   binary64, E8M0 and the integers)
 */
const QuarkFpFormat *
quark_fp_format_for_dtype (QuarkDType dtype)
{
  switch (dtype)
    {
    case QUARK_DTYPE_F16: return &fmt_f16;
    case QUARK_DTYPE_BF16: return &fmt_bf16;
    case QUARK_DTYPE_F8_E4M3: return &fmt_e4m3;
    case QUARK_DTYPE_F8_E5M2: return &fmt_e5m2;
    case QUARK_DTYPE_F8_E4M3FNUZ: return &fmt_e4m3fnuz;
    case QUARK_DTYPE_F8_E5M2FNUZ: return &fmt_e5m2fnuz;
    case QUARK_DTYPE_FP6_E2M3: return &fmt_fp6_e2m3;
    case QUARK_DTYPE_FP6_E3M2: return &fmt_fp6_e3m2;
    case QUARK_DTYPE_FP4_E2M1: return &fmt_fp4;
    default: return NULL;
    }
}

static inline unsigned
exp_all_ones (const QuarkFpFormat *f)
{
  return (1u << f->ebits) - 1;
}

/* Largest finite magnitude code (without the sign). */
static uint16_t
max_magnitude_code (const QuarkFpFormat *f)
{
  unsigned mmask = (1u << f->mbits) - 1;

  switch (f->specials)
    {
    case QUARK_FP_SPECIALS_IEEE:
      return (uint16_t) (((exp_all_ones (f) - 1) << f->mbits) | mmask);
    case QUARK_FP_SPECIALS_FN:
      return (uint16_t) ((exp_all_ones (f) << f->mbits) | (mmask - 1));
    case QUARK_FP_SPECIALS_FNUZ:
    case QUARK_FP_SPECIALS_NONE:
    default:
      return (uint16_t) ((exp_all_ones (f) << f->mbits) | mmask);
    }
}

static double
magnitude_of (const QuarkFpFormat *f, unsigned mag)
{
  unsigned e = mag >> f->mbits;
  unsigned m = mag & ((1u << f->mbits) - 1);

  if (e == 0)
    return ldexp ((double) m, 1 - f->bias - f->mbits);
  return ldexp ((double) ((1u << f->mbits) | m), (int) e - f->bias - f->mbits);
}

/**
 * quark_fp_format_max: (skip)
 * @format: a format
 *
 * Returns: the largest finite value (448 for OCP E4M3, 57344 for E5M2, 240 for
 *   E4M3 FNUZ, 6 for FP4, 7.5 for FP6 E2M3, 28 for FP6 E3M2)
 */
double
quark_fp_format_max (const QuarkFpFormat *format)
{
  return magnitude_of (format, max_magnitude_code (format));
}

/**
 * quark_fp_format_min_subnormal: (skip)
 * @format: a format
 *
 * Returns: the smallest positive value, 2^(1 − bias − mbits)
 */
double
quark_fp_format_min_subnormal (const QuarkFpFormat *format)
{
  return ldexp (1.0, 1 - format->bias - format->mbits);
}

/**
 * quark_fp_format_nan_code: (skip)
 * @format: a format
 *
 * Gets the code a positive NaN encodes to, as PyTorch and NumPy write it:
 * all exponent and mantissa bits set for "fn" formats and 8-bit IEEE-like
 * formats (0x7F for E5M2), the quiet NaN with only the top mantissa bit for
 * binary16 and bfloat16 (0x7E00, 0x7FC0), 0x80 for "fnuz" formats. Formats
 * without NaN encode NaN as their largest finite magnitude.
 *
 * Returns: the code
 */
uint16_t
quark_fp_format_nan_code (const QuarkFpFormat *format)
{
  switch (format->specials)
    {
    case QUARK_FP_SPECIALS_IEEE:
      if (1 + format->ebits + format->mbits <= 8)
        return (uint16_t) ((1u << (format->ebits + format->mbits)) - 1);
      return (uint16_t) ((exp_all_ones (format) << format->mbits) | (1u << (format->mbits - 1)));
    case QUARK_FP_SPECIALS_FN:
      return (uint16_t) ((1u << (format->ebits + format->mbits)) - 1);
    case QUARK_FP_SPECIALS_FNUZ:
      return (uint16_t) (1u << (format->ebits + format->mbits));
    case QUARK_FP_SPECIALS_NONE:
    default:
      return max_magnitude_code (format);
    }
}

/**
 * quark_kernel_fp_encode: (skip)
 * @format: the target format
 * @x: a value
 * @saturate: whether values beyond the largest finite value clamp to it
 *
 * Rounds @x to the nearest value of @format, ties to even, and returns its
 * code. Subnormals are kept; a value at or below half the smallest
 * subnormal rounds to zero (exactly half rounds to even, i.e. zero) and keeps
 * its sign except in "fnuz" formats, which have no negative zero.
 *
 * Values whose rounded magnitude exceeds the largest finite value, and
 * infinities, saturate when @saturate is %true; otherwise they become
 * infinity where the format has one and NaN elsewhere (formats with neither
 * saturate). NaN encodes as quark_fp_format_nan_code() with the sign of @x
 * (without it in "fnuz" formats). These are the rules of PyTorch's float8
 * casts (non-saturating) and of AMD Quark and OCP MX (saturating).
 *
 * Returns: the code, in the low 1 + ebits + mbits bits
 */
uint16_t
quark_kernel_fp_encode (const QuarkFpFormat *format,
                        double               x,
                        bool                 saturate)
{
  const int emin = 1 - format->bias;
  const unsigned sign_shift = format->ebits + format->mbits;
  uint16_t sign = signbit (x) ? (uint16_t) (1u << sign_shift) : 0;
  double a = fabs (x);
  double maxv = quark_fp_format_max (format);
  uint16_t mag;

  if (isnan (x))
    {
      if (format->specials == QUARK_FP_SPECIALS_FNUZ)
        return quark_fp_format_nan_code (format);
      return sign | quark_fp_format_nan_code (format);
    }

  if (a == 0.0)
    mag = 0;
  else
    {
      int e;
      double r, value;

      if (isinf (a))
        value = INFINITY;
      else
        {
          frexp (a, &e);            /* a = f * 2^e, f in [0.5, 1) */
          e -= 1;                   /* floor (log2 a) */
          if (e < emin)
            e = emin;
          r = rint (ldexp (a, format->mbits - e));   /* exact scaling, one rounding */
          value = ldexp (r, e - format->mbits);
        }

      if (value > maxv)
        {
          if (saturate || format->specials == QUARK_FP_SPECIALS_NONE)
            mag = max_magnitude_code (format);
          else if (format->specials == QUARK_FP_SPECIALS_IEEE)
            mag = (uint16_t) (exp_all_ones (format) << format->mbits);
          else if (format->specials == QUARK_FP_SPECIALS_FNUZ)
            return quark_fp_format_nan_code (format);
          else
            return sign | quark_fp_format_nan_code (format);
        }
      else
        {
          int ve = 0;
          frexp (value, &ve);
          ve -= 1;
          if (value == 0.0)
            mag = 0;
          else if (ve < emin)
            mag = (uint16_t) ldexp (value, format->mbits - emin);
          else
            mag = (uint16_t) (((unsigned) (ve + format->bias) << format->mbits) |
                              ((unsigned) ldexp (value, format->mbits - ve) & ((1u << format->mbits) - 1)));
        }
    }

  if (mag == 0 && format->specials == QUARK_FP_SPECIALS_FNUZ)
    sign = 0;   /* no negative zero: that code is NaN */
  return sign | mag;
}

/**
 * quark_kernel_fp_decode: (skip)
 * @format: the format
 * @code: a code in the low 1 + ebits + mbits bits
 *
 * Decodes a code exactly.
 *
 * Returns: the value (infinity or NaN for those codes)
 */
double
quark_kernel_fp_decode (const QuarkFpFormat *format,
                        uint16_t             code)
{
  const unsigned sign_shift = format->ebits + format->mbits;
  const unsigned mag = code & ((1u << sign_shift) - 1);
  const bool negative = (code >> sign_shift) & 1;
  const unsigned mmask = (1u << format->mbits) - 1;
  double v;

  switch (format->specials)
    {
    case QUARK_FP_SPECIALS_IEEE:
      if ((mag >> format->mbits) == exp_all_ones (format))
        {
          v = (mag & mmask) ? NAN : INFINITY;
          return negative ? -v : v;
        }
      break;
    case QUARK_FP_SPECIALS_FN:
      if (mag == ((1u << sign_shift) - 1))
        return negative ? -NAN : NAN;
      break;
    case QUARK_FP_SPECIALS_FNUZ:
      if (negative && mag == 0)
        return NAN;
      break;
    case QUARK_FP_SPECIALS_NONE:
    default:
      break;
    }
  v = magnitude_of (format, mag);
  return negative ? -v : v;
}

/* ---- scaled quantization --------------------------------------------------- */

/**
 * quark_kernel_fp_quantize_f32_scalar: (skip)
 * @format: a format of at most 8 bits
 * @x: @n floats
 * @n: the number of elements
 * @scale: the scale s
 * @codes: room for @n codes
 *
 * Scalar reference of quark_kernel_fp_quantize_f32().
 *
 * Returns: %false if @format is wider than 8 bits
 */
bool
quark_kernel_fp_quantize_f32_scalar (const QuarkFpFormat *format,
                                     const float         *x,
                                     size_t               n,
                                     float                scale,
                                     uint8_t             *codes)
{
  const float maxv = (float) quark_fp_format_max (format);

  if (1 + format->ebits + format->mbits > 8)
    return false;
  for (size_t i = 0; i < n; i++)
    {
      float t = x[i] / scale;
      if (t > maxv)
        t = maxv;
      if (t < -maxv)
        t = -maxv;
      codes[i] = (uint8_t) quark_kernel_fp_encode (format, t, true);
    }
  return true;
}

/* The saturating lane encoder, its constants computed once per call (the
 * loops store through character pointers, so constants read from *format
 * inside them would be reloaded on every step):
 * - |t| is clamped to the largest finite value (infinities included);
 * - at or above the smallest normal 2^emin, rounding to m mantissa bits is
 *   integer arithmetic on the binary32 bits (add half an ulp minus one plus
 *   the lowest kept bit, shift): a carry moves into the exponent as it
 *   should, and the clamp keeps the result at or below the largest code;
 * - below it, adding C = 2^(emin − m + 23), whose ulp is the subnormal step,
 *   rounds to nearest even in the FPU and leaves the step count in the low
 *   bits (2^m steps being the smallest normal's code);
 * - NaN lanes take the NaN code, with the sign except in "fnuz" formats,
 *   which also have no negative zero. */
typedef struct {
  qk_vf vmax, min_normal, sub_magic;
  int32_t shift, normal_add, sign_shift, sign_bit, nan_code;
  bool fnuz;
} QkFpLanes;

static bool
qk_fp_lanes_ok (const QuarkFpFormat *f)
{
  int emin = 1 - f->bias, m = f->mbits;
  double maxv = quark_fp_format_max (f);
  return 1 + f->ebits + m <= 8 && m >= 1 && m <= 22 && emin >= -126 &&
         emin - m + 23 <= 127 && maxv <= 3.4028234663852886e38;
}

QK_INLINE QkFpLanes
qk_fp_lanes_init (const QuarkFpFormat *f)
{
  const int emin = 1 - f->bias, m = f->mbits;
  QkFpLanes l;
  l.vmax = qk_splat ((float) quark_fp_format_max (f));
  l.min_normal = qk_splat (ldexpf (1.0f, emin));
  l.sub_magic = qk_splat (ldexpf (1.0f, emin - m + 23));
  l.shift = 23 - m;
  /* half an ulp minus one, and the exponent moved from bias 127 to the
   * format's bias, in one constant */
  l.normal_add = ((1 << (22 - m)) - 1) + (int32_t) ((uint32_t) (f->bias - 127) << 23);
  l.sign_shift = 31 - (f->ebits + m);
  l.sign_bit = 1 << (f->ebits + m);
  l.nan_code = quark_fp_format_nan_code (f);
  l.fnuz = f->specials == QUARK_FP_SPECIALS_FNUZ;
  return l;
}

/* @finite: the caller knows there is no NaN (MX blocks holding one are
 * overwritten afterwards), so the NaN lanes need no code of their own. */
QK_INLINE qk_vi
encode_lanes_as (const QkFpLanes *l, qk_vf t, bool finite)
{
  qk_vi bits = (qk_vi) t;
  qk_vi abits = bits & 0x7fffffff;
  qk_vi nan_mask = (0x7f800000 - abits) >> 31;      /* abits > 0x7f800000, from the sign bit */
  /* a NaN lane becomes the largest value here, and the NaN code below */
  qk_vf a = qk_min ((qk_vf) abits, l->vmax);
  qk_vi ab = (qk_vi) a;
  qk_vi normal = (ab + l->normal_add + ((ab >> l->shift) & 1)) >> l->shift;
  qk_vi sub = (qk_vi) (a + l->sub_magic) - (qk_vi) l->sub_magic;
  qk_vi is_sub = (qk_vi) (a - l->min_normal) >> 31;   /* a < min_normal: a − min_normal is negative */
  qk_vi mag = (sub & is_sub) | (normal & ~is_sub);

  if (l->fnuz)
    {
      qk_vi sign = (qk_vi) ((qk_vu) bits >> l->sign_shift) & l->sign_bit & ((-mag) >> 31);   /* mag >= 0: mag != 0 */
      if (finite)
        return mag | sign;
      return ((mag | sign) & ~nan_mask) | (l->nan_code & nan_mask);
    }
  if (!finite)
    mag = (mag & ~nan_mask) | (l->nan_code & nan_mask);
  /* the sign last, so that the mask and the or make one instruction */
  return mag | ((qk_vi) ((qk_vu) bits >> l->sign_shift) & l->sign_bit);
}

QK_INLINE qk_vi
encode_lanes (const QkFpLanes *l, qk_vf t)
{
  return encode_lanes_as (l, t, false);
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* 32 bfloat16 values from one 512-bit load: the even elements are the low
 * halves of its 16 words, the odd ones the high halves (widening is a shift
 * or a mask); their codes interleave back as the two bytes of 16 half-words. */
#define QK_PAIRS 1
QK_INLINE qk_vf
qk_even_bf16 (qk_vw w)
{
  return (qk_vf) (w << 16);
}

QK_INLINE qk_vf
qk_odd_bf16 (qk_vw w)
{
  return (qk_vf) (w & 0xffff0000u);
}

QK_INLINE void
qk_store_pair_codes (const QkFpLanes *l, qk_vf even, qk_vf odd, uint8_t *codes)
{
  qk_vw ce = (qk_vw) encode_lanes (l, even), co = (qk_vw) encode_lanes (l, odd);
  qk_vu16 narrow = __builtin_convertvector ((ce & 0xffu) | (co << 8), qk_vu16);
  memcpy (codes, &narrow, sizeof narrow);
}
#else
#define QK_PAIRS 0
#endif

/**
 * quark_kernel_fp_quantize_f32: (skip)
 * @format: a format of at most 8 bits
 * @x: @n floats
 * @n: the number of elements
 * @scale: the scale s
 * @codes: room for @n codes
 *
 * Scaled minifloat quantization, saturating, in AMD Quark's order:
 * code = encode (clamp (fl (x / s), −max, max)), rounding half to even. NaN
 * encodes as the format's NaN code (formats without one: the largest
 * magnitude, with the sign).
 *
 * Returns: %false if @format is wider than 8 bits
 */
QK_MULTIVERSION static bool
fp_quantize_f32 (const QuarkFpFormat *format, const float *x, size_t n, float scale, uint8_t *codes)
{
  const qk_vf vs = qk_splat (scale);
  QkFpLanes l;
  size_t i = 0;

  if (1 + format->ebits + format->mbits > 8)
    return false;
  if (!qk_fp_lanes_ok (format))
    return quark_kernel_fp_quantize_f32_scalar (format, x, n, scale, codes);
  l = qk_fp_lanes_init (format);

  for (; i + QK_LANES <= n; i += QK_LANES)
    {
      qk_vf t;
      qk_vi c;
      memcpy (&t, x + i, sizeof t);
      t = t / vs;
      c = encode_lanes (&l, t);
      {
        qk_vu8 narrow = __builtin_convertvector (c, qk_vu8);
        memcpy (codes + i, &narrow, sizeof narrow);
      }
    }
  return quark_kernel_fp_quantize_f32_scalar (format, x + i, n - i, scale, codes + i);
}

/* The public kernel calls the clones of a static function: the IFUNC
 * resolver of an exported clone would be exported too. */
bool
quark_kernel_fp_quantize_f32 (const QuarkFpFormat *format,
                              const float         *x,
                              size_t               n,
                              float                scale,
                              uint8_t             *codes)
{
  return fp_quantize_f32 (format, x, n, scale, codes);
}

/* Blocks of a row, block b divided by block_scales[b], a power of two: then
 * x * (1 / X) equals x / X in every case (both are one rounding of the same
 * exact quotient), so the vector path multiplies by inv_scales[b], its
 * exact inverse. PAIRS: whether bfloat16 blocks of a multiple of 32 take 32
 * elements per step. */
#define QK_DEFINE_FP_BLOCKS(NAME, ITYPE, LOAD, WIDEN, PAIRS) \
QK_MULTIVERSION void \
NAME (const QuarkFpFormat *format, const ITYPE *x, size_t n, size_t block, \
      const float *block_scales, const float *inv_scales, uint8_t *codes) \
{ \
  const bool vector_ok = block % QK_LANES == 0 && qk_fp_lanes_ok (format); \
  const bool pairs_ok = (PAIRS) && block % (2 * QK_LANES) == 0 && vector_ok; \
  const QkFpLanes l = qk_fp_lanes_init (format); \
  for (size_t start = 0, b = 0; start < n; start += block, b++) \
    { \
      size_t len = n - start < block ? n - start : block; \
      const qk_vf vinv = qk_splat (inv_scales[b]); \
      size_t i = 0; \
      if (pairs_ok) \
        for (; i + 2 * QK_LANES <= len; i += 2 * QK_LANES) \
          { \
            qk_vw w; \
            memcpy (&w, x + start + i, sizeof w); \
            QK_STORE_PAIR (&l, w, vinv, codes + start + i); \
          } \
      if (vector_ok) \
        for (; i + QK_LANES <= len; i += QK_LANES) \
          { \
            qk_vi c = encode_lanes (&l, LOAD (x + start + i) * vinv); \
            qk_vu8 narrow = __builtin_convertvector (c, qk_vu8); \
            memcpy (codes + start + i, &narrow, sizeof narrow); \
          } \
      for (; i < len; i++) \
        { \
          float t = WIDEN (x[start + i]); \
          quark_kernel_fp_quantize_f32_scalar (format, &t, 1, block_scales[b], codes + start + i); \
        } \
    } \
}

#if QK_PAIRS
#define QK_STORE_PAIR(l, w, vinv, out) qk_store_pair_codes (l, qk_even_bf16 (w) * (vinv), qk_odd_bf16 (w) * (vinv), out)
#else
#define QK_STORE_PAIR(l, w, vinv, out) ((void) 0)
#endif

QK_DEFINE_FP_BLOCKS (_quark_kernel_fp_quantize_blocks, float, qk_load_f32, qk_widen_f32, 0)
QK_DEFINE_FP_BLOCKS (_quark_kernel_fp_quantize_blocks_bf16, uint16_t, qk_load_bf16, quark_kernel_bf16_to_f32, QK_PAIRS)

/* The codes of t, a bfloat16 bit pattern, by the scalar reference. */
static uint8_t
fp_code_of_bf16 (const QuarkFpFormat *format, uint16_t t_bits)
{
  float t = quark_kernel_bf16_to_f32 (t_bits);
  uint8_t code;
  quark_kernel_fp_quantize_f32_scalar (format, &t, 1, 1.0f, &code);
  return code;
}

/* Entry (E − 124) · 8 + m · 2 + s, for t of exponent field E (124 to 131),
 * two leading mantissa bits m and s = whether any of the five others is
 * set, is the code of every such t. The table is built with the scalar
 * reference, from the smallest and the largest t of each entry, and
 * accepted only if they agree, if every t below 2^−3 gives entry 0 and
 * every t from 2^5 up entry 63 (the encoding is monotone, so the ends of
 * each range decide), and if a negative t gives its magnitude's code with
 * the sign bit. FP4 E2M1, whose ties all fall on quarters of a binade,
 * passes; formats with more mantissa bits do not. */
static bool
fp_table4_build (const QuarkFpFormat *format, uint16_t table[64])
{
  const unsigned sign_bit = 1u << (format->ebits + format->mbits);

  if (1 + format->ebits + format->mbits > 8 || format->specials == QUARK_FP_SPECIALS_FNUZ)
    return false;
  for (unsigned idx = 0; idx < 64; idx++)
    {
      uint16_t base = (uint16_t) (((124 + (idx >> 3)) << 7) | (((idx >> 1) & 3) << 5));
      uint16_t lo = base | (idx & 1), hi = base | (idx & 1 ? 0x1f : 0);
      uint8_t code = fp_code_of_bf16 (format, lo);
      if (fp_code_of_bf16 (format, hi) != code ||
          fp_code_of_bf16 (format, lo | 0x8000) != (code | sign_bit) ||
          fp_code_of_bf16 (format, hi | 0x8000) != (code | sign_bit))
        return false;
      table[idx] = code;
    }
  return fp_code_of_bf16 (format, 0x0000) == table[0] && fp_code_of_bf16 (format, 0x3dff) == table[0] &&
         fp_code_of_bf16 (format, 0x8000) == (table[0] | sign_bit) &&
         fp_code_of_bf16 (format, 0x4200) == table[63] && fp_code_of_bf16 (format, 0x7f7f) == table[63];
}

/* What the fast paths derive from a format with the scalar encoder (the
 * largest finite code, the MX FP4 table: a few to a few hundred encodings,
 * more than a row costs), kept per thread for the last format seen. */
typedef struct {
  QuarkFpFormat format;
  bool set;
  int16_t max_code;
  int table4_state;          /* 0: not built; 1: built; -1: not valid */
  uint16_t table4[64];
} QkFormatCache;

static QkFormatCache *
qk_format_cache (const QuarkFpFormat *f)
{
  static __thread QkFormatCache c;

  if (!c.set || memcmp (&c.format, f, sizeof *f) != 0)
    {
      c.format = *f;
      c.set = true;
      c.max_code = (int16_t) (quark_kernel_fp_encode (f, quark_fp_format_max (f), true) &
                              ((1u << (f->ebits + f->mbits)) - 1));
      c.table4_state = 0;
    }
  return &c;
}

bool
_quark_kernel_fp_table4_init (const QuarkFpFormat *format, uint16_t table[64])
{
  QkFormatCache *c = qk_format_cache (format);

  if (c->table4_state == 0)
    c->table4_state = fp_table4_build (format, c->table4) ? 1 : -1;
  memcpy (table, c->table4, sizeof c->table4);
  return c->table4_state > 0;
}

/* The lane encoder's constants, set up on first use (rows the tables take
 * whole need none). */
typedef struct {
  QkFpLanes l;
  int state;   /* 0: not yet; 1: set up; -1: the format is not covered */
} QkLazyLanes;

QK_INLINE const QkFpLanes *
qk_lazy_lanes (const QuarkFpFormat *format, QkLazyLanes *lazy)
{
  if (lazy->state == 0)
    {
      lazy->state = qk_fp_lanes_ok (format) ? 1 : -1;
      if (lazy->state > 0)
        lazy->l = qk_fp_lanes_init (format);
    }
  return lazy->state > 0 ? &lazy->l : NULL;
}

/* Consecutive MX blocks of 32 bfloat16 values by table, up to the first
 * of an E8M0 byte below 3; returns the number done. */
QK_MULTIVERSION static size_t
qk_blocks32_table4_bf16 (const QuarkFpFormat *format, const uint16_t *x, size_t n_blocks,
                         const uint8_t *scale_bytes, const uint16_t *table4, bool pack4, uint8_t *out)
{
  const QkTable4 t = qk_table4_load (format, table4);
  size_t b = 0;

  for (; b < n_blocks && scale_bytes[b] >= 3; b++)
    qk_table4_block (&t, x + 32 * b, qk_splat_h ((uint16_t) (4 * (scale_bytes[b] - 3))), pack4,
                     out + (pack4 ? 16 : 32) * b);
  return b;
}

/* MX rows: consecutive blocks of 32 bfloat16 values, block b multiplied by
 * inv_scales[b] (the exact inverse of a power of two), one load and two
 * encodes per block, the codes one per byte or, with @pack4, two per byte
 * (element 2k in the low nibble, as quark_kernel_pack_fp4()). NaN lanes get
 * no NaN code: the caller overwrites blocks holding NaN or infinity. With
 * @table4, qk_blocks32_table4_bf16() takes the blocks it can. Returns false
 * where the lane encoder or the pairs do not apply (the blocks the table
 * took are then written, the others not). */
QK_MULTIVERSION bool
_quark_kernel_fp_quantize_blocks32_bf16 (const QuarkFpFormat *format, const uint16_t *x, size_t n_blocks,
                                         const uint8_t *scale_bytes, const float *inv_scales,
                                         const uint16_t *table4, bool pack4, uint8_t *out)
{
#if QK_PAIRS
  QkLazyLanes lazy = { .state = 0 };

  for (size_t b = 0; b < n_blocks; b++)
    {
      const QkFpLanes *l;
      qk_vf inv;
      qk_vw w, ce, co;
      if (table4 && scale_bytes[b] >= 3)
        {
          b += qk_blocks32_table4_bf16 (format, x + 32 * b, n_blocks - b, scale_bytes + b, table4, pack4,
                                        out + (pack4 ? 16 : 32) * b);
          if (b == n_blocks)
            break;
        }
      if (!(l = qk_lazy_lanes (format, &lazy)))
        return false;
      inv = qk_splat (inv_scales[b]);
      memcpy (&w, x + 32 * b, sizeof w);
      ce = (qk_vw) encode_lanes_as (l, qk_even_bf16 (w) * inv, true);
      co = (qk_vw) encode_lanes_as (l, qk_odd_bf16 (w) * inv, true);
      if (pack4)
        {
          qk_vu8 bytes = __builtin_convertvector ((ce & 0xfu) | (co << 4), qk_vu8);
          memcpy (out + 16 * b, &bytes, sizeof bytes);
        }
      else
        {
          qk_vu16 halves = __builtin_convertvector ((ce & 0xffu) | (co << 8), qk_vu16);
          memcpy (out + 32 * b, &halves, sizeof halves);
        }
    }
  return true;
#else
  (void) format, (void) x, (void) n_blocks, (void) scale_bytes, (void) inv_scales, (void) table4;
  (void) pack4, (void) out;
  return false;
#endif
}

/* ---- bfloat16 through a mantissa table -------------------------------------
 *
 * For a normal bfloat16 x = 1.f · 2^(E − 127) (f its 7 mantissa bits) and a
 * quotient that stays normal, fl (x / s) = fl (1.f / s) · 2^(E − 127): the
 * scaling by a power of two is exact. Rounding the quotient to the format's
 * m mantissa bits (as if its exponent were unbounded) is therefore the
 * rounding of fl (1.f / s), shifted: code = T[f] + (E << m), where T[f] is
 * fl (1.f / s) rounded to nearest even on its bits, rebased. One division
 * per f (128 per call) builds T; each element then costs a table lookup
 * (two vpermi2w of 64 entries, picked by bit 6 of f) and an add, 32 per
 * 512-bit vector. The result, clamped to the largest finite code (the
 * quantizer saturates), is the lane encoder's code whenever it is at least
 * 2^m, a normal code of the format. The code grows with |x|, so that holds
 * exactly from a magnitude M0 on, found once per call from the table;
 * chunks of 256 values holding a nonzero element below M0 (a result in the
 * format's subnormal range or below, or a subnormal element) or a NaN are
 * redone, 32 values at a time where needed, by the lane encoder. Zeros
 * take code 0 (the table's code for them, T[0], is negative: it is checked,
 * and the codes are clamped at 0), their sign as the lane encoder gives it
 * (none in "fnuz" formats). For mantissas of 1 to 3 bits and scales in
 * [2^−100, 2^100] (quotients of 1.f always normal). */
typedef int16_t qk_vs16 __attribute__ ((vector_size (64)));

QK_DEFINE_LANEWISE (qk_min_s16, qk_vs16, <)
QK_DEFINE_LANEWISE (qk_max_s16, qk_vs16, >)

typedef struct {
  qk_vh t0, t1, t2, t3;      /* T[f] for f = 0..63, 64..127 */
  int16_t step0;             /* T[0] */
  int16_t step_at[8];        /* the f at which T[f] + (f >> (7 − m)) steps up; 127 unused */
  uint8_t base[16], thr[16]; /* the bytes form (qk_fp_bytes_chunk()) */
  uint8_t e_base, k, cap;
  int16_t cmax;              /* the largest finite code */
  uint16_t m0;               /* the smallest magnitude with a normal code */
  int shift, sign_shift;     /* 7 − m; 15 − (ebits + mbits) */
  uint16_t sign_bit;
  bool fnuz;
} QkFpTable;

#define QK_TABLE_CHUNK 256

/* The three forms of the table, by what the processor does well: 16-bit
 * lane permutes (AVX512BW), byte lookups (AVX2), or neither. */
typedef enum { QK_FP_TABLE, QK_FP_BYTES, QK_FP_STEPS } QkFpForm;

/* false if the table does not apply; *@form may fall back from
 * QK_FP_BYTES to QK_FP_STEPS */
QK_INLINE bool
qk_fp_table_init (const QuarkFpFormat *f, float scale, QkFpTable *t, QkFpForm *form)
{
  const int m = f->mbits, sh = 23 - m;
  int16_t tab[128], full[128];
  int e1, lo, hi;

  if (!(scale >= 0x1p-100f && scale <= 0x1p100f) || m < 1 || m > 3 || f->bias < -1000 || f->bias > 1000)
    return false;
  /* 1.f / s for the 128 values of f, rounded to m bits on the binary32 bits
   * (a carry moves into the exponent), rebased so that adding E << m gives
   * the code: (E_q + E − 127 − 127 + bias) << m plus the kept bits; less
   * f's leading m bits, which the element's magnitude shifted by 7 − m
   * brings with E << m */
  for (int k = 0; k < 128; k += QK_LANES)
    {
      const qk_vi iota = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
      const qk_vi f_bits = iota + k;
      qk_vi q, r;
      qk_vu16 narrow;
      q = (qk_vi) ((qk_vf) (0x3f800000 | (f_bits << 16)) / qk_splat (scale));   /* 1.f / s */
      r = ((q + ((1 << (sh - 1)) - 1) + ((q >> sh) & 1)) >> sh) - ((254 - f->bias) << m);
      narrow = __builtin_convertvector (r & 0xffff, qk_vu16);
      memcpy (full + k, &narrow, sizeof narrow);
      narrow = __builtin_convertvector ((r - (f_bits >> (7 - m))) & 0xffff, qk_vu16);
      memcpy (tab + k, &narrow, sizeof narrow);
    }
  /* zeros must come out negative (then clamped to code 0) */
  if (full[0] >= 0)
    return false;
  /* M0: T[f] + (E << m) grows with f and E, and T[127] − T[0] <= 2^m (the
   * quotients lie within a factor of two), so the smallest exponent E1 at
   * which T[127] reaches 2^m, then the smallest f there, give it */
  e1 = (1 << m) - full[127];
  e1 = e1 <= 0 ? 1 : (e1 + (1 << m) - 1) >> m;
  if (e1 > 254)
    return false;
  lo = 0, hi = 127;
  while (lo < hi)
    {
      int mid = (lo + hi) / 2;
      if (full[mid] + (e1 << m) >= (1 << m))
        hi = mid;
      else
        lo = mid + 1;
    }
  t->m0 = (uint16_t) ((e1 << 7) | lo);
  t->cmax = qk_format_cache (f)->max_code;
  t->shift = 7 - m;
  t->sign_shift = 15 - (f->ebits + m);
  t->sign_bit = (uint16_t) (1u << (f->ebits + m));
  t->fnuz = f->specials == QUARK_FP_SPECIALS_FNUZ;
  t->step0 = full[0];
  if (*form == QK_FP_TABLE)
    {
      memcpy (&t->t0, tab, sizeof t->t0);
      memcpy (&t->t1, tab + 32, sizeof t->t1);
      memcpy (&t->t2, tab + 64, sizeof t->t2);
      memcpy (&t->t3, tab + 96, sizeof t->t3);
      return true;
    }
  /* full[f] = T[f] + (f >> (7 − m)), the rounded quotient, grows with f
   * (rounding keeps order) by at most 2^m over the table (the quotients lie
   * within a factor of two): the steps forms */
  if (full[127] - full[0] > 8)
    return false;
  /* the bytes form (qk_fp_bytes_chunk()): the steps at or below f as
   * base[f >> 3], plus one where f & 7 is past thr[f >> 3] (at most one
   * step in each run of 8 f: the quotients' steps are at least 8 apart,
   * bar rounding); the exponent field E clamped to E_b + [0, cap], and the
   * code made as ((E − E_b) << m) + steps − K, K = −T[0] − (E_b << m),
   * clamped at 0 and at the largest code. Below E_b every code is 0
   * (K >= 2^m there), above E_b + cap every code is the largest. */
  if (*form == QK_FP_BYTES)
    {
      const int big = 1 << m, s0 = full[0];
      const int eb = -s0 - big > 0 ? (-s0 - big) / big : 0;
      const int k = -s0 - (eb << m), cap = 255 / big - 1;
      bool ok = m >= 2 && eb <= 254 && k < 2 * big && (cap << m) - k >= t->cmax;

      for (int b = 0; b < 16 && ok; b++)
        {
          const int16_t *run = full + 8 * b;
          int r = 0;
          ok = run[7] - run[0] <= 1;
          for (int j = 1; j < 8; j++)
            r += run[j] == run[0];
          t->base[b] = (uint8_t) (run[0] - s0);
          t->thr[b] = (uint8_t) r;   /* 7: no step here */
        }
      t->e_base = (uint8_t) eb;
      t->k = (uint8_t) k;
      t->cap = (uint8_t) cap;
      if (ok)
        return true;
      *form = QK_FP_STEPS;
    }
  /* the steps form (qk_fp_steps_chunk()): each step's f, the last below it */
  for (int j = 0; j < 8; j++)
    {
      int lo_f = 0, hi_f = 128;   /* the smallest f with full[f] > full[0] + j */
      while (lo_f < hi_f)
        {
          const int mid = (lo_f + hi_f) / 2;
          if (full[mid] > full[0] + j)
            hi_f = mid;
          else
            lo_f = mid + 1;
        }
      t->step_at[j] = (int16_t) (lo_f - 1);   /* 127: no such step */
    }
  return true;
}

/* @n values (a multiple of 32); false if a lane needs the lane encoder
 * (the codes written are then to be redone). @fnuz is a constant at each
 * call, so that each loop is compiled without the test. */
QK_INLINE bool
qk_fp_table_chunk (const QkFpTable *t, const uint16_t *x, size_t n, size_t row, uint8_t *codes, const bool fnuz)
{
  const qk_vs16 cmax = (qk_vs16) qk_splat_h ((uint16_t) t->cmax), zero16 = { 0 };
  qk_vh nz_min = qk_splat_h (0xffff), mag_max = { 0 };
  qk_vw any;
  uint32_t bits = 0;

  for (size_t i = 0; i < n; i += 32)
    {
      qk_vh v, lo, hi, signs, mag, nz;
      qk_vs16 code;
      memcpy (&v, x + i, sizeof v);
      QK_PREFETCH_NEXT_ROW (x + i + row);
      lo = QK_SHUFFLE2 (t->t0, t->t1, v);          /* indices taken modulo 64 */
      hi = QK_SHUFFLE2 (t->t2, t->t3, v);
      mag = v & 0x7fff;
      {
        const qk_vh pick = (qk_vh) ((qk_vs16) (v << 9) >> 15);   /* bit 6 of f */
        code = (qk_vs16) ((hi & pick) | (lo & ~pick)) + (qk_vs16) (mag >> t->shift);
      }
      code = qk_max_s16 (qk_min_s16 (code, cmax), zero16);
      nz = mag - 1;                                /* 0xffff only for a zero */
      nz_min = qk_min_h (nz_min, nz);
      mag_max = qk_max_h (mag_max, mag);
      signs = (v >> t->sign_shift) & t->sign_bit;
      if (fnuz)
        signs &= ~(qk_vh) ((qk_vs16) nz >> 15);
      {
        qk_v32u8 out = __builtin_convertvector ((qk_vh) code | signs, qk_v32u8);
        memcpy (codes + i, &out, sizeof out);
      }
    }
  /* any nonzero magnitude below M0 (nz below M0 − 1, unsigned: a lane that
   * saw only zeros keeps 0xffff) or NaN */
  any = (qk_vw) ((((nz_min - (uint16_t) (t->m0 - 1)) & ~nz_min) | (0x7f80 - mag_max)) & 0x8000);
  for (int k = 0; k < QK_LANES; k++)
    bits |= any[k];
  return bits == 0;
}

/* qk_fp_table_chunk() for processors without AVX512BW (qk_wide_permutes()
 * false), which have no permute of 16-bit lanes by a vector: in 256-bit
 * vectors, with the table in its other form. T[f] + (f >> (7 − m)) is the
 * rounded quotient, which grows with f by at most 2^m steps over the
 * table, so code = T[0] + (E << m) + the number of steps at or below f
 * (E the exponent field): one comparison and one subtraction per step. */
typedef int16_t qk_v16s16 __attribute__ ((vector_size (32)));

QK_INLINE bool
qk_fp_steps_chunk (const QkFpTable *t, const uint16_t *x, size_t n, size_t row, uint8_t *codes, const bool fnuz)
{
  const int m = 7 - t->shift;
  const int16_t c = t->cmax, s0 = t->step0;
  const qk_v16s16 cmax = { c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c };
  const qk_v16s16 step0 = { s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0 };
  const qk_v16s16 zero16 = { 0 };
  qk_v16s16 at[8];
  qk_v16u16 nz_min = (qk_v16u16) zero16 - 1, mag_max = { 0 }, any;
  uint16_t bits = 0;

  for (int j = 0; j < 8; j++)
    {
      const int16_t a = t->step_at[j];
      at[j] = (qk_v16s16) { a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a };
    }
  for (size_t i = 0; i < n; i += 16)
    {
      qk_v16u16 v, mag, nz, signs;
      qk_v16s16 f, code;
      memcpy (&v, x + i, sizeof v);
      QK_PREFETCH_NEXT_ROW (x + i + row);
      mag = v & 0x7fff;
      f = (qk_v16s16) (v & 0x7f);
      code = step0 + (qk_v16s16) ((mag >> 7) << m);
      /* -1 past each step, summed in pairs (shorter chains) */
      _Pragma ("GCC unroll 4")
      for (int j = 0; j < 8; j += 2)
        code -= (f > at[j]) + (f > at[j + 1]);
      {
        const qk_v16s16 over = code > cmax;
        code = (code & ~over) | (cmax & over);   /* clamped at cmax */
      }
      code &= ~(code >> 15);                      /* and at 0 */
      nz = mag - 1;                                /* 0xffff only for a zero */
      nz_min = qk_min_h256 (nz_min, nz);
      mag_max = qk_max_h256 (mag_max, mag);
      signs = (v >> t->sign_shift) & t->sign_bit;
      if (fnuz)
        signs &= ~(qk_v16u16) ((qk_v16s16) nz >> 15);
      {
        qk_vu8 out = __builtin_convertvector (((qk_v16u16) code | signs) & 0xff, qk_vu8);
        memcpy (codes + i, &out, sizeof out);
      }
    }
  /* as in qk_fp_table_chunk() */
  any = (((nz_min - (uint16_t) (t->m0 - 1)) & ~nz_min) | (0x7f80 - mag_max)) & 0x8000;
  for (int k = 0; k < 16; k++)
    bits |= any[k];
  return bits == 0;
}

/* qk_fp_steps_chunk() in bytes, where the processor has byte lookups of 16
 * entries (pshufb: AVX2, not AVX512BW), for 2 and 3 mantissa bits: a
 * bfloat16 value is its high byte H (sign, 7 exponent bits) and low byte L
 * (the exponent's last bit, f), E = (H << 1) | (L >> 7); the steps at or
 * below f come from two lookups by f >> 3 (t->base, t->thr), and the code
 * from E − E_b clamped to [0, cap] (qk_fp_table_init()), all in unsigned
 * bytes with no carry out of one. 16 values per step, in 128-bit vectors:
 * GCC 12 builds a byte lookup in a 256-bit vector from two lookups and
 * permutes, while a processor that runs 256-bit operations as two 128-bit
 * halves (AMD Zen 1) loses nothing by the narrower form. */
typedef uint8_t qk_v16u8 __attribute__ ((vector_size (16)));
typedef int8_t qk_v16s8 __attribute__ ((vector_size (16)));
typedef uint64_t qk_v2u64 __attribute__ ((vector_size (16)));

QK_DEFINE_LANEWISE (qk_max_b128, qk_v16u8, >)
QK_DEFINE_LANEWISE (qk_min_b128, qk_v16u8, <)
QK_DEFINE_LANEWISE (qk_min_h128, qk_v8u16, <)

QK_INLINE qk_v16u8
qk_splat_b128 (uint8_t v)
{
  return (qk_v16u8) { v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v };
}

QK_INLINE bool
qk_fp_bytes_chunk (const QkFpTable *t, const uint16_t *x, size_t n, size_t row, uint8_t *codes, const bool fnuz)
{
  /* each half-word's low bytes, then its high bytes */
  const qk_v16u8 split = { 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15 };
  const qk_v2u64 lows = { 0, 2 }, highs = { 1, 3 };
  const int m = 7 - t->shift, sign_down = t->sign_shift - 8;
  const qk_v16u8 e_base = qk_splat_b128 (t->e_base), cap = qk_splat_b128 (t->cap);
  const qk_v16u8 k = qk_splat_b128 (t->k), cmax = qk_splat_b128 ((uint8_t) t->cmax);
  const uint16_t m2 = (uint16_t) (2 * (t->m0 - 1));
  qk_v16u8 base, thr, e_max = { 0 };
  qk_v8u16 nz_min = { 0 };

  memcpy (&base, t->base, sizeof base);
  memcpy (&thr, t->thr, sizeof thr);
  nz_min -= 1;
  for (size_t i = 0; i < n; i += 16)
    {
      qk_v8u16 a, b;
      qk_v16u8 sa, sb, lo, hi, e, ec, f7, idx, steps, code, sign;
      memcpy (&a, x + i, sizeof a);
      memcpy (&b, x + i + 8, sizeof b);
      QK_PREFETCH_NEXT_ROW (x + i + row);
      sa = QK_SHUFFLE ((qk_v16u8) a, split);
      sb = QK_SHUFFLE ((qk_v16u8) b, split);
      lo = (qk_v16u8) QK_SHUFFLE2 ((qk_v2u64) sa, (qk_v2u64) sb, lows);
      hi = (qk_v16u8) QK_SHUFFLE2 ((qk_v2u64) sa, (qk_v2u64) sb, highs);
      e = (hi + hi) | (lo >> 7);
      idx = (qk_v16u8) ((qk_v8u16) lo >> 3) & 15;
      f7 = lo & 7;
      steps = QK_SHUFFLE (base, idx) - (qk_v16u8) ((qk_v16s8) f7 > (qk_v16s8) QK_SHUFFLE (thr, idx));
      ec = qk_min_b128 (qk_max_b128 (e, e_base) - e_base, cap);
      code = (qk_v16u8) ((qk_v8u16) ec << m) + steps;
      code = qk_min_b128 (qk_max_b128 (code, k) - k, cmax);
      sign = (qk_v16u8) ((qk_v8u16) (hi & 0x80) >> sign_down);
      if (fnuz)
        sign &= (qk_v16u8) (e != 0);
      code |= sign;
      memcpy (codes + i, &code, sizeof code);
      /* the checks of qk_fp_steps_chunk(), on twice the magnitudes */
      e_max = qk_max_b128 (e_max, e);
      nz_min = qk_min_h128 (nz_min, qk_min_h128 ((a + a) - 2, (b + b) - 2));
    }
  /* a nonzero magnitude below M0 (zeros give 0xfffe), or a NaN or infinity */
  {
    const qk_v8u16 low = (qk_v8u16) { 0 } + m2;
    const qk_v2u64 bad = (qk_v2u64) (e_max == 0xff) | (qk_v2u64) (qk_min_h128 (nz_min, low - 1) == nz_min);
    return (bad[0] | bad[1]) == 0;
  }
}

/* Whether any of 32 values at @x is one the table forms leave to the lane
 * encoder: a nonzero magnitude below M0 (a subnormal or zero code), an
 * infinity or a NaN (a superset of what each form's chunk reports). Only
 * the checks, none of the codes: the values of a 256-value chunk that
 * failed, 32 at a time. */
QK_INLINE bool
qk_fp_table_misses (const QkFpTable *t, const uint16_t *x)
{
  qk_v16u16 a, b, nz, mag, any;
  uint16_t bits = 0;

  memcpy (&a, x, sizeof a);
  memcpy (&b, x + 16, sizeof b);
  a &= 0x7fff;
  b &= 0x7fff;
  nz = qk_min_h256 (a - 1, b - 1);                 /* 0xffff only for zeros */
  mag = qk_max_h256 (a, b);
  any = (((nz - (uint16_t) (t->m0 - 1)) & ~nz) | (0x7f7f - mag)) & 0x8000;
  for (int k = 0; k < 16; k++)
    bits |= any[k];
  return bits != 0;
}

/* A span of bfloat16 values through the lane encoder, @l (NULL: formats it
 * does not cover) set up by the caller, the rest by the scalar path. */
QK_INLINE void
qk_fp_bf16_span (const QuarkFpFormat *format, const QkFpLanes *l, const uint16_t *x, size_t n, float scale,
                 uint8_t *codes)
{
  const qk_vf vs = qk_splat (scale);
  size_t i = 0;

  if (l)
    {
#if QK_PAIRS
      for (; i + 2 * QK_LANES <= n; i += 2 * QK_LANES)
        {
          qk_vw w;
          memcpy (&w, x + i, sizeof w);
          qk_store_pair_codes (l, qk_even_bf16 (w) / vs, qk_odd_bf16 (w) / vs, codes + i);
        }
#endif
      for (; i + QK_LANES <= n; i += QK_LANES)
        {
          qk_vi c = encode_lanes (l, qk_load_bf16 (x + i) / vs);
          qk_vu8 narrow = __builtin_convertvector (c, qk_vu8);
          memcpy (codes + i, &narrow, sizeof narrow);
        }
    }
  for (; i < n; i++)
    {
      float t = quark_kernel_bf16_to_f32 (x[i]);
      quark_kernel_fp_quantize_f32_scalar (format, &t, 1, scale, codes + i);
    }
}

/**
 * quark_kernel_fp_quantize_bf16: (skip)
 * @format: a format of at most 8 bits
 * @x: @n bfloat16 values
 * @n: the number of elements
 * @scale: the scale s
 * @codes: room for @n codes
 *
 * quark_kernel_fp_quantize_f32() on bfloat16 input, the same codes. From
 * 256 elements on, for formats of 1 to 3 mantissa bits and scales in
 * [2^−100, 2^100], the codes come from a table of the 128 quotients 1.f / s
 * (one division per mantissa instead of one per element); elsewhere the
 * elements are widened in registers.
 *
 * Returns: %false if @format is wider than 8 bits
 */
QK_MULTIVERSION static bool
fp_quantize_bf16 (const QuarkFpFormat *format, const uint16_t *x, size_t n, float scale, uint8_t *codes)
{
  QkLazyLanes lazy = { .state = 0 };
  size_t i = 0;

  if (1 + format->ebits + format->mbits > 8)
    return false;
#if QK_PAIRS
  {
    const size_t row = qk_prefetch_distance (n);
    QkFpTable t;
    QkFpForm form = qk_wide_permutes () ? QK_FP_TABLE : qk_byte_lookups () ? QK_FP_BYTES : QK_FP_STEPS;
#define QK_TABLE_PART(X, N, CODES) \
    (form == QK_FP_TABLE \
     ? (t.fnuz ? qk_fp_table_chunk (&t, X, N, row, CODES, true) : qk_fp_table_chunk (&t, X, N, row, CODES, false)) \
     : form == QK_FP_BYTES \
     ? (t.fnuz ? qk_fp_bytes_chunk (&t, X, N, row, CODES, true) : qk_fp_bytes_chunk (&t, X, N, row, CODES, false)) \
     : (t.fnuz ? qk_fp_steps_chunk (&t, X, N, row, CODES, true) : qk_fp_steps_chunk (&t, X, N, row, CODES, false)))
    if (n >= QK_TABLE_CHUNK && qk_fp_table_init (format, scale, &t, &form))
      for (; i + QK_TABLE_CHUNK <= n; i += QK_TABLE_CHUNK)
        if (!QK_TABLE_PART (x + i, QK_TABLE_CHUNK, codes + i))
          /* each run of 32 that holds a value the table leaves to the
           * lane encoder (a subnormal code, mostly) is made again by it;
           * the codes are lane by lane, so the other runs' stand */
          for (size_t j = i; j < i + QK_TABLE_CHUNK; j += 32)
            if (qk_fp_table_misses (&t, x + j))
              qk_fp_bf16_span (format, qk_lazy_lanes (format, &lazy), x + j, 32, scale, codes + j);
#undef QK_TABLE_PART
  }
#endif
  if (i < n)
    qk_fp_bf16_span (format, qk_lazy_lanes (format, &lazy), x + i, n - i, scale, codes + i);
  return true;
}

bool
quark_kernel_fp_quantize_bf16 (const QuarkFpFormat *format,
                               const uint16_t      *x,
                               size_t               n,
                               float                scale,
                               uint8_t             *codes)
{
  return fp_quantize_bf16 (format, x, n, scale, codes);
}

/* Whether 1 / @s is exact: @s a power of two whose inverse is a float
 * (2^−126 to 2^127) */
static bool
exact_inverse (float s)
{
  uint32_t bits;
  memcpy (&bits, &s, sizeof bits);
  return (bits & 0x807fffffu) == 0 && (bits >> 23) >= 1 && (bits >> 23) <= 254;
}

/* quark_kernel_fp_quantize_blocks_bf16() and _f32(): @bf16 picks the
 * input type */
static bool
fp_quantize_blocks (const QuarkFpFormat *format, const void *x, bool bf16, size_t n, size_t block,
                    const float *scales, uint8_t *codes)
{
  float inv[64];
  size_t n_blocks;

  if (1 + format->ebits + format->mbits > 8 || block == 0)
    return false;
  n_blocks = (n + block - 1) / block;
  for (size_t b0 = 0; b0 < n_blocks;)
    {
      size_t run = 0, start = b0 * block, end;

      /* the longest run (up to 64 blocks) of powers of two from b0 */
      while (run < sizeof inv / sizeof inv[0] && b0 + run < n_blocks && exact_inverse (scales[b0 + run]))
        {
          inv[run] = 1.0f / scales[b0 + run];
          run++;
        }
      if (run == 0)
        {
          size_t len = n - start < block ? n - start : block;
          if (bf16)
            fp_quantize_bf16 (format, (const uint16_t *) x + start, len, scales[b0], codes + start);
          else
            fp_quantize_f32 (format, (const float *) x + start, len, scales[b0], codes + start);
          b0++;
          continue;
        }
      end = (b0 + run) * block < n ? (b0 + run) * block : n;
      if (bf16)
        _quark_kernel_fp_quantize_blocks_bf16 (format, (const uint16_t *) x + start, end - start, block, scales + b0,
                                               inv, codes + start);
      else
        _quark_kernel_fp_quantize_blocks (format, (const float *) x + start, end - start, block, scales + b0, inv,
                                          codes + start);
      b0 += run;
    }
  return true;
}

/**
 * quark_kernel_fp_quantize_blocks_bf16: (skip)
 * @format: a format of at most 8 bits
 * @x: @n bfloat16 values
 * @n: the number of elements
 * @block: elements per block (the last block may be shorter)
 * @scales: ⌈@n / @block⌉ scales, one per block
 * @codes: room for @n codes
 *
 * quark_kernel_fp_quantize_bf16() of each block with its own scale, in one
 * call: the same codes. Runs of blocks whose scales are powers of two (MX
 * scales, Brevitas's MX quantizers) take the vector encoder with each
 * block multiplied by its scale's exact inverse (x · 2^−k and x / 2^k are
 * one rounding of the same quotient), without a call per block; other
 * blocks are quantized one call each.
 *
 * Returns: %false if @format is wider than 8 bits or @block is 0
 */
bool
quark_kernel_fp_quantize_blocks_bf16 (const QuarkFpFormat *format,
                                      const uint16_t      *x,
                                      size_t               n,
                                      size_t               block,
                                      const float         *scales,
                                      uint8_t             *codes)
{
  return fp_quantize_blocks (format, x, true, n, block, scales, codes);
}

/**
 * quark_kernel_fp_quantize_blocks_f32: (skip)
 * @format: a format of at most 8 bits
 * @x: @n floats
 * @n: the number of elements
 * @block: elements per block (the last block may be shorter)
 * @scales: ⌈@n / @block⌉ scales, one per block
 * @codes: room for @n codes
 *
 * quark_kernel_fp_quantize_blocks_bf16() on float32 input: the codes of
 * quark_kernel_fp_quantize_f32() on each block with its own scale.
 *
 * Returns: %false if @format is wider than 8 bits or @block is 0
 */
bool
quark_kernel_fp_quantize_blocks_f32 (const QuarkFpFormat *format,
                                     const float         *x,
                                     size_t               n,
                                     size_t               block,
                                     const float         *scales,
                                     uint8_t             *codes)
{
  return fp_quantize_blocks (format, x, false, n, block, scales, codes);
}

/**
 * quark_kernel_fp_dequantize_f32: (skip)
 * @format: a format of at most 8 bits
 * @codes: @n codes
 * @n: the number of elements
 * @scale: the scale s
 * @out: room for @n floats
 *
 * Dequantizes minifloat codes: x̂ = decode (code) · s, one binary32 multiply.
 */
void
quark_kernel_fp_dequantize_f32 (const QuarkFpFormat *format,
                                const uint8_t       *codes,
                                size_t               n,
                                float                scale,
                                float               *out)
{
  float table[256];
  unsigned count = 1u << (1 + format->ebits + format->mbits);

  for (unsigned c = 0; c < count && c < 256; c++)
    table[c] = (float) quark_kernel_fp_decode (format, (uint16_t) c);
  for (size_t i = 0; i < n; i++)
    out[i] = table[codes[i] & (count - 1)] * scale;
}

/* ---- conversions ------------------------------------------------------------ */

/* The formats casts convert to (FP4 and FP6 have no cast: they are only
 * reached through scaled quantization). */
static const QuarkFpFormat *
cast_format (QuarkDType dtype)
{
  if (dtype == QUARK_DTYPE_FP4_E2M1 || dtype == QUARK_DTYPE_FP6_E2M3 || dtype == QUARK_DTYPE_FP6_E3M2)
    return NULL;
  return quark_fp_format_for_dtype (dtype);
}

static inline void
store_cast (const QuarkFpFormat *format, void *dst, size_t i, uint16_t code)
{
  if (format->ebits + format->mbits + 1 > 8)
    ((uint16_t *) dst)[i] = code;
  else
    ((uint8_t *) dst)[i] = (uint8_t) code;
}

static inline uint16_t
f32_to_bf16_bits (float f)
{
  uint32_t bits;
  memcpy (&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) (((bits >> 16) & 0x8000u) | 0x7fc0u);   /* quiet NaN, sign kept */
  return (uint16_t) ((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/* binary32 to binary16, to nearest even, QK_LANES at a time, by bits and
 * without branches (the scalar tail and the reference are
 * quark_kernel_fp_encode()): on the magnitude u, NaN becomes the quiet NaN
 * 0x7e00; from 2^16 on, infinity; below 2^-14 (binary16's subnormals and
 * zero) adding 0.5 as binary32 rounds u at 2^-24 to nearest even, and the
 * bits of 0.5 subtracted leave the code; else the exponent is rebased
 * (-112) and the 13 dropped bits rounded by adding 0xFFF plus the kept
 * lowest bit (a carry out of the mantissa raises the exponent, up to
 * infinity from 65 520 on); then the sign goes back on. test-float checks
 * the bits against quark_kernel_fp_encode() on every binary16 rounding
 * boundary and tie, and on random patterns. */
QK_MULTIVERSION static void
f32_to_f16_loop (const float *src, uint16_t *dst, size_t n, const QuarkFpFormat *format)
{
  const qk_vf half = qk_splat (0.5f);
  size_t i = 0;

  for (; i + QK_LANES <= n; i += QK_LANES)
    {
      qk_vu f, u, sign;
      qk_vi o, small, normal;
      qk_vu16 h;
      memcpy (&f, src + i, sizeof f);
      sign = (f >> 16) & 0x8000u;
      u = f & 0x7fffffffu;
      small = (qk_vi) ((qk_vf) u + half) - (qk_vi) half;
      normal = (qk_vi) ((u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13);
      o = qk_select_i (u < 0x38800000u, small, normal);
      o = qk_select_i (u >= 0x47800000u, qk_splat_i (0x7c00), o);
      o = qk_select_i (u > 0x7f800000u, qk_splat_i (0x7e00), o);
      o = (o & 0x7fff) | (qk_vi) sign;
      h = __builtin_convertvector (o, qk_vu16);
      memcpy (dst + i, &h, sizeof h);
    }
  for (; i < n; i++)
    dst[i] = quark_kernel_fp_encode (format, src[i], false);
}

/**
 * quark_kernel_convert_from_f32: (skip)
 * @dst_dtype: the element type of @dst
 * @src: @n floats
 * @dst: room for @n elements of @dst_dtype
 * @n: the number of elements
 *
 * Converts binary32 values, rounding to nearest even. binary16 and bfloat16
 * overflow to infinity; float8 formats follow PyTorch's casts (no
 * saturation: beyond the largest value, infinity for E5M2 and NaN for the
 * others); NaN becomes the target's quiet NaN with the sign kept (the
 * payload is dropped). binary64 widens exactly.
 *
 * Returns: %false if @dst_dtype is not a float type of at most 64 bits with
 *   an encoder here
 */
bool
quark_kernel_convert_from_f32 (QuarkDType   dst_dtype,
                               const float *src,
                               void        *dst,
                               size_t       n)
{
  const QuarkFpFormat *format;

  switch (dst_dtype)
    {
    case QUARK_DTYPE_F32:
      if (n)
        memcpy (dst, src, n * sizeof (float));
      return true;
    case QUARK_DTYPE_F64:
      for (size_t i = 0; i < n; i++)
        ((double *) dst)[i] = src[i];
      return true;
    case QUARK_DTYPE_BF16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *) dst)[i] = f32_to_bf16_bits (src[i]);
      return true;
    default:
      break;
    }

  format = cast_format (dst_dtype);
  if (format == NULL)
    return false;
  if (dst_dtype == QUARK_DTYPE_F16)
    {
      f32_to_f16_loop (src, dst, n, format);
      return true;
    }
  for (size_t i = 0; i < n; i++)
    store_cast (format, dst, i, quark_kernel_fp_encode (format, src[i], false));
  return true;
}

/**
 * quark_kernel_convert_from_f64: (skip)
 * @dst_dtype: the element type of @dst
 * @src: @n doubles
 * @dst: room for @n elements of @dst_dtype
 * @n: the number of elements
 *
 * Converts binary64 values with one rounding to nearest even (no double
 * rounding through binary32), with the rules of
 * quark_kernel_convert_from_f32().
 *
 * Returns: %false if @dst_dtype has no encoder here
 */
bool
quark_kernel_convert_from_f64 (QuarkDType    dst_dtype,
                               const double *src,
                               void         *dst,
                               size_t        n)
{
  const QuarkFpFormat *format;

  switch (dst_dtype)
    {
    case QUARK_DTYPE_F64:
      if (n)
        memcpy (dst, src, n * sizeof (double));
      return true;
    case QUARK_DTYPE_F32:
      for (size_t i = 0; i < n; i++)
        ((float *) dst)[i] = (float) src[i];
      return true;
    default:
      break;
    }
  format = cast_format (dst_dtype);
  if (format == NULL)
    return false;
  for (size_t i = 0; i < n; i++)
    store_cast (format, dst, i, quark_kernel_fp_encode (format, src[i], false));
  return true;
}

/* Unsigned E5M3 is the magnitude of a signed "fn" format with 5 exponent
 * bits, 3 mantissa bits and bias 15: the same grid and the same reserved
 * all-ones code, without the sign bit. */
static const QuarkFpFormat fmt_e5m3_magnitude = { 5, 3, 15, QUARK_FP_SPECIALS_FN };

/**
 * quark_kernel_e5m3_from_f32: (skip)
 * @scale: a non-negative scale
 *
 * Encodes a scale as unsigned E5M3 (bias 15, subnormals down to 2^-17,
 * largest 114688, code 0xFF reserved), rounding to nearest even and
 * saturating. Negative inputs encode their magnitude; NaN gives 0xFF.
 *
 * Returns: the code
 */
uint8_t
quark_kernel_e5m3_from_f32 (float scale)
{
  return (uint8_t) (quark_kernel_fp_encode (&fmt_e5m3_magnitude, fabsf (scale), true) & 0xFF);
}

/**
 * quark_kernel_nvfp4_global_scale: (skip)
 * @amax: the largest magnitude of the tensor (or of the tensors that share
 *   the global scale)
 *
 * NVFP4's per-tensor global scale as compressed-tensors defines it,
 * g = fl (448 · 6 / amax): the factor that maps the largest group scale
 * amax / 6 onto E4M3's largest value 448. A tensor of zeros (or one with
 * no finite maximum) gets 1.
 *
 * Returns: g
 */
float
quark_kernel_nvfp4_global_scale (float amax)
{
  if (!(amax > 0.0f) || !isfinite (amax))
    return 1.0f;
  return 2688.0f / amax;
}

/**
 * quark_kernel_nvfp4_group_scale: (skip)
 * @group_amax: the largest magnitude of one group of elements
 * @global_scale: the tensor's global scale g
 * @code: (out): return location for the group scale's E4M3 code
 *
 * One NVFP4 group scale, as compressed-tensors computes it: the E4M3 code
 * of fl (g · fl (amax / 6)) (clamped to 448, rounded to nearest even), with
 * a zero scale replaced by 0.125; the elements are then x / s with
 * s = fl (decode (code) / g), which this returns.
 *
 * Returns: the effective scale s
 */
float
quark_kernel_nvfp4_group_scale (float group_amax, float global_scale, uint8_t *code)
{
  const QuarkFpFormat *e4m3 = quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3);
  float v = global_scale * (group_amax / 6.0f);
  uint8_t c;

  if (!(v <= 448.0f))
    v = 448.0f;
  c = (uint8_t) quark_kernel_fp_encode (e4m3, v, true);
  if (quark_kernel_fp_decode (e4m3, c) == 0.0)
    c = (uint8_t) quark_kernel_fp_encode (e4m3, 0.125, true);
  *code = c;
  return quark_kernel_nvfp4_scale_to_f32 (c, global_scale);
}

/**
 * quark_kernel_nvfp4_scale_to_f32: (skip)
 * @code: an NVFP4 group scale's E4M3 code
 * @global_scale: the tensor's global scale g
 *
 * Returns: the group's effective scale fl (decode (@code) / g), by which
 *   its E2M1 values are multiplied
 */
float
quark_kernel_nvfp4_scale_to_f32 (uint8_t code, float global_scale)
{
  return (float) quark_kernel_fp_decode (quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3), code) / global_scale;
}

/**
 * quark_kernel_e5m3_to_f32: (skip)
 * @code: an unsigned E5M3 code
 *
 * Returns: the value (NaN for 0xFF)
 */
float
quark_kernel_e5m3_to_f32 (uint8_t code)
{
  return (float) quark_kernel_fp_decode (&fmt_e5m3_magnitude, code);
}
