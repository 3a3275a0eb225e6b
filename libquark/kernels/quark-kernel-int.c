/* quark-kernel-int.c: integer statistics, quantization and dequantization
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-kernels.h"
#include "quark-kernel-private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


static inline float
qk_bf16 (uint16_t h)
{
  return quark_kernel_bf16_to_f32 (h);
}

static inline bool
qk_is_finite (float v)
{
  return v - v == 0.0f;
}

/**
 * quark_kernel_min_max_f32_scalar: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @min: (out): the smallest element (+infinity when @n is 0)
 * @max: (out): the largest element (-infinity when @n is 0)
 *
 * Scalar reference of quark_kernel_min_max_f32().
 *
 * Returns: %true if every element is finite
 */
bool
quark_kernel_min_max_f32_scalar (const float *x,
                                 size_t       n,
                                 float       *min,
                                 float       *max)
{
  float lo = INFINITY, hi = -INFINITY;
  bool finite = true;

  for (size_t i = 0; i < n; i++)
    {
      float v = x[i];
      if (!qk_is_finite (v))
        {
          finite = false;
          continue;
        }
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  *min = lo;
  *max = hi;
  return finite;
}

/* Eight binary32 lanes from binary32 or bfloat16 input, and a selection
 * of them, for the 256-bit forms. */
QK_INLINE qk_v8f
qk_load8_f32 (const float *p)
{
  qk_v8f v;
  memcpy (&v, p, sizeof v);
  return v;
}

QK_INLINE qk_v8f
qk_load8_bf16 (const uint16_t *p)
{
  qk_v8u16 h;
  memcpy (&h, p, sizeof h);
  return (qk_v8f) (__builtin_convertvector (h, qk_v8u32) << 16);
}

QK_INLINE qk_v8f
qk_select8 (qk_v8i mask, qk_v8f a, qk_v8f b)
{
  return (qk_v8f) (((qk_v8i) a & mask) | ((qk_v8i) b & ~mask));
}

/* One vector V folded into the running minima, maxima and the lanes that
 * saw a value that is not finite; one halving of the three (lane i takes
 * lane M[i] as well): exact, as selections are. */
#define QK_MIN_MAX_FOLD(VLO, VHI, BAD, V, SELECT) \
  do { \
    const __typeof__ (BAD) qk_ok_ = ((V) - (V)) == 0.0f;     /* -1 where finite */ \
    BAD |= ~qk_ok_; \
    VLO = SELECT (qk_ok_ & ((V) < VLO), V, VLO); \
    VHI = SELECT (qk_ok_ & ((V) > VHI), V, VHI); \
  } while (0)
#define QK_MIN_MAX_HALVE(VLO, VHI, BAD, M, SELECT) \
  do { \
    __typeof__ (VLO) qk_t_ = QK_SHUFFLE (VLO, M); \
    VLO = SELECT (qk_t_ < VLO, qk_t_, VLO); \
    qk_t_ = QK_SHUFFLE (VHI, M); \
    VHI = SELECT (qk_t_ > VHI, qk_t_, VHI); \
    BAD |= QK_SHUFFLE (BAD, M); \
  } while (0)

/* Without AVX-512 (qk_wide_permutes() false) the loop runs on eight
 * lanes, in two chains the processor overlaps: GCC 12 keeps 16-lane
 * accumulators in memory there, and the halving of 512-bit vectors costs
 * more than a group of 128 values. */
#define QK_DEFINE_MIN_MAX(NAME, ITYPE, LOAD, LOAD8, ELEM) \
QK_MULTIVERSION static bool \
NAME (const ITYPE *x, size_t n, float *min, float *max) \
{ \
  size_t i = 0; \
  float lo = INFINITY, hi = -INFINITY; \
  bool finite = true; \
  if (n >= 8 && !qk_wide_permutes ()) \
    { \
      qk_v8f vlo = { INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY }; \
      qk_v8f vhi = -vlo, vlo2 = vlo, vhi2 = vhi; \
      qk_v8i bad = { 0 }; \
      const qk_v8i hi4 = { 4, 5, 6, 7, 4, 5, 6, 7 }, hi2 = { 2, 3, 2, 3, 2, 3, 2, 3 }; \
      const qk_v8i hi1 = { 1, 1, 1, 1, 1, 1, 1, 1 }; \
      for (; i + 16 <= n; i += 16) \
        { \
          qk_v8f v = LOAD8 (x + i), u = LOAD8 (x + i + 8); \
          QK_MIN_MAX_FOLD (vlo, vhi, bad, v, qk_select8); \
          QK_MIN_MAX_FOLD (vlo2, vhi2, bad, u, qk_select8); \
        } \
      for (; i + 8 <= n; i += 8) \
        { \
          qk_v8f v = LOAD8 (x + i); \
          QK_MIN_MAX_FOLD (vlo, vhi, bad, v, qk_select8); \
        } \
      vlo = qk_select8 (vlo2 < vlo, vlo2, vlo); \
      vhi = qk_select8 (vhi2 > vhi, vhi2, vhi); \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi4, qk_select8); \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi2, qk_select8); \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi1, qk_select8); \
      lo = vlo[0]; \
      hi = vhi[0]; \
      finite = bad[0] == 0; \
    } \
  else if (n >= QK_LANES) \
    { \
      qk_vf vlo = qk_splat (INFINITY), vhi = qk_splat (-INFINITY); \
      qk_vi bad = { 0 }; \
      const qk_vi hi8 = { 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15 }; \
      const qk_vi hi4 = { 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7 }; \
      const qk_vi hi2 = { 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3 }; \
      const qk_vi hi1 = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }; \
      for (; i + QK_LANES <= n; i += QK_LANES) \
        { \
          qk_vf v = LOAD (x + i); \
          QK_MIN_MAX_FOLD (vlo, vhi, bad, v, qk_select); \
        } \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi8, qk_select); \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi4, qk_select); \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi2, qk_select); \
      QK_MIN_MAX_HALVE (vlo, vhi, bad, hi1, qk_select); \
      lo = vlo[0]; \
      hi = vhi[0]; \
      finite = bad[0] == 0; \
    } \
  for (; i < n; i++) \
    { \
      float v = ELEM (x[i]); \
      if (!qk_is_finite (v)) \
        { \
          finite = false; \
          continue; \
        } \
      lo = v < lo ? v : lo; \
      hi = v > hi ? v : hi; \
    } \
  *min = lo; \
  *max = hi; \
  return finite; \
}

QK_DEFINE_MIN_MAX (qk_min_max_f32, float, qk_load_f32, qk_load8_f32, qk_widen_f32)
QK_DEFINE_MIN_MAX (qk_min_max_bf16, uint16_t, qk_load_bf16, qk_load8_bf16, qk_bf16)

static inline float
qk_f32_from_bits (uint32_t bits)
{
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

static inline float
qk_f32_from_bf16_bits (uint16_t bits)
{
  return qk_f32_from_bits ((uint32_t) bits << 16);
}

/* Horizontal maxima of a vector: halve until one lane is left. */
QK_INLINE uint16_t
qk_hmax_h (qk_vh m)
{
  const qk_vh s16 = { 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };
  const qk_vh s8 = { 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15,
                     8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15 };
  const qk_vh s4 = { 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7,
                     4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7 };
  const qk_vh s2 = { 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                     2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3 };
  const qk_vh s1 = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  m = qk_max_h (QK_SHUFFLE (m, s16), m);
  m = qk_max_h (QK_SHUFFLE (m, s8), m);
  m = qk_max_h (QK_SHUFFLE (m, s4), m);
  m = qk_max_h (QK_SHUFFLE (m, s2), m);
  m = qk_max_h (QK_SHUFFLE (m, s1), m);
  return m[0];
}

QK_INLINE uint32_t
qk_hmax_w (qk_vw m)
{
  const qk_vw s8 = { 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15 };
  const qk_vw s4 = { 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7 };
  const qk_vw s2 = { 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3 };
  const qk_vw s1 = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  m = qk_max_w (QK_SHUFFLE (m, s8), m);
  m = qk_max_w (QK_SHUFFLE (m, s4), m);
  m = qk_max_w (QK_SHUFFLE (m, s2), m);
  m = qk_max_w (QK_SHUFFLE (m, s1), m);
  return m[0];
}

/* quark_kernel_min_max_bf16() and _f32() of a row of at least two steps'
 * values by keys (KEY, QK_KEY_ORDER; its complement for the minimum): the
 * lane-wise maxima in two chains of a vector each, two vectors a step,
 * the last step's window ending at the row's end (values read twice change
 * no maximum). Store nothing and return false when a key is that of an
 * infinity or NaN (INF_KEY or more either way). */
#define QK_DEFINE_MIN_MAX_KEYS(NAME, ITYPE, VT, KEY, MAX, HMAX, INF_KEY, FROM_KEY) \
QK_WIDE_ONLY static bool \
NAME (const ITYPE *x, size_t n, float *min, float *max) \
{ \
  const size_t lanes = sizeof (VT) / sizeof (ITYPE); \
  VT hi[2] = { { 0 }, { 0 } }, lo[2] = { { 0 }, { 0 } }; \
  __typeof__ (hi[0][0]) top, bottom; \
  for (size_t i = 0; i < n; i += 2 * lanes) \
    { \
      const size_t at = i + 2 * lanes <= n ? i : n - 2 * lanes; \
      _Pragma ("GCC unroll 2") \
      for (unsigned k = 0; k < 2; k++) \
        { \
          VT v; \
          memcpy (&v, x + at + lanes * k, sizeof v); \
          v = KEY (v); \
          hi[k] = MAX (hi[k], v); \
          lo[k] = MAX (lo[k], ~v); \
        } \
    } \
  top = HMAX (MAX (hi[0], hi[1])); \
  bottom = HMAX (MAX (lo[0], lo[1])); \
  if (top >= (INF_KEY) || bottom >= (INF_KEY)) \
    return false; \
  *max = FROM_KEY (top, QK_KEY_ORDER); \
  *min = FROM_KEY (bottom, QK_KEY_REVERSE); \
  return true; \
}

static inline float
qk_bf16_value_of_key (uint16_t k, int key)
{
  return qk_f32_from_bf16_bits (qk_bf16_from_key (k, key));
}

static inline float
qk_f32_value_of_key (uint32_t k, int key)
{
  return qk_f32_from_bits (qk_f32_from_key (k, key));
}

QK_DEFINE_MIN_MAX_KEYS (qk_min_max_bf16_keys, uint16_t, qk_vh, qk_bf16_order_key, qk_max_h, qk_hmax_h, 0xff80u,
                        qk_bf16_value_of_key)
QK_DEFINE_MIN_MAX_KEYS (qk_min_max_f32_keys, float, qk_vw, qk_f32_order_key, qk_max_w, qk_hmax_w, 0xff800000u,
                        qk_f32_value_of_key)
#undef QK_DEFINE_MIN_MAX_KEYS

/**
 * quark_kernel_min_max_f32: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @min: (out): the smallest finite element (+infinity when there is none)
 * @max: (out): the largest finite element (-infinity when there is none)
 *
 * Computes the minimum and maximum of the finite elements, and whether all
 * elements are finite. A selection is exact, so the result does not depend on
 * the order of evaluation (for -0 and +0 it reports whichever compares first,
 * or with AVX-512 -0 as the smaller; both quantize identically). With
 * AVX-512, rows of 32 values or more go first through integer keys of the
 * bits that sort as the values do (32 values a step); a row holding an
 * infinity or NaN then goes the float way, which finds its finite
 * extremes.
 *
 * Returns: %true if every element is finite
 */
bool
quark_kernel_min_max_f32 (const float *x,
                          size_t       n,
                          float       *min,
                          float       *max)
{
  if (n >= 32 && qk_wide_permutes () && qk_min_max_f32_keys (x, n, min, max))
    return true;
  return qk_min_max_f32 (x, n, min, max);
}

/**
 * quark_kernel_min_max_bf16: (skip)
 * @x: @n bfloat16 values
 * @n: the number of elements
 * @min: (out): the smallest finite element (+infinity when there is none)
 * @max: (out): the largest finite element (-infinity when there is none)
 *
 * quark_kernel_min_max_f32() on bfloat16 input, widened in registers (the
 * widening is exact). With AVX-512, rows of 64 values or more go first
 * through integer keys of the bits that sort as the values do (64 values
 * a step, no widening); a row holding an infinity or NaN then goes the
 * float way, which finds its finite extremes. Where an extreme is a zero,
 * its sign may differ from the float way's (which keeps whichever zero it
 * met first); both quantize identically.
 *
 * Returns: %true if every element is finite
 */
bool
quark_kernel_min_max_bf16 (const uint16_t *x,
                           size_t          n,
                           float          *min,
                           float          *max)
{
  if (n >= 64 && qk_wide_permutes () && qk_min_max_bf16_keys (x, n, min, max))
    return true;
  return qk_min_max_bf16 (x, n, min, max);
}

/* Where a long stream of elements starts being aligned to the cache line:
 * a vector load across two lines costs little from cache, but a pass that
 * streams from memory with such loads ran at 0.7-0.8 of the aligned rate
 * (bench-quantize, int8 per channel, input at 16 bytes past a line: 8.2-8.9
 * against 6.6 ms). A maximum may read elements twice, so the passes below
 * read one unaligned vector at the start, go on from the first line
 * boundary and end with one unaligned vector at the end. 0 when @x is not
 * aligned to its element. */
QK_INLINE size_t
qk_line_head (const void *x, size_t esize)
{
  const uintptr_t a = (uintptr_t) x;
  if (a % esize)
    return 0;
  return (size_t) ((QK_LINE - a % QK_LINE) % QK_LINE) / esize;
}

/* The largest |x| as bits: for non-negative binary32 and bfloat16 values the
 * integer order of the bit patterns is the numeric order, infinity sorts
 * above every finite value and NaN above infinity. UTYPE/VTYPE: the bits,
 * alone and as a vector; MASK clears the sign. Whole rows (more than two
 * vectors) are read in aligned steps between two overlapping ends
 * (qk_line_head()). */
#define QK_DEFINE_ABS_MAX_BITS(NAME, ITYPE, UTYPE, VTYPE, MASK, VMAX, HMAX, HTYPE, HMAXH) \
QK_INLINE UTYPE \
NAME##_inline (const ITYPE *x, size_t n) \
{ \
  const size_t lanes = sizeof (VTYPE) / sizeof (UTYPE); \
  UTYPE r = 0; \
  size_t i = 0, end = n; \
  if (n >= lanes && qk_wide_permutes ()) \
    { \
      VTYPE m = { 0 }, v; \
      if (n > 2 * lanes) \
        { \
          memcpy (&v, x, sizeof v); \
          m = VMAX (v & (MASK), m); \
          memcpy (&v, x + n - lanes, sizeof v); \
          m = VMAX (v & (MASK), m); \
          i = qk_line_head (x, sizeof (UTYPE)); \
          end = i + (n - i) / lanes * lanes; \
        } \
      for (; i + lanes <= end; i += lanes) \
        { \
          memcpy (&v, x + i, sizeof v); \
          m = VMAX (v & (MASK), m); \
        } \
      r = HMAX (m); \
    } \
  else if (n >= lanes) \
    { \
      /* two 256-bit maxima (without AVX-512, GCC 12 keeps a 512-bit \
       * one in memory, a store and a load on every step) */ \
      HTYPE m[2] = { { 0 }, { 0 } }, a, b; \
      VTYPE w; \
      if (n > 2 * lanes) \
        { \
          memcpy (&a, x, sizeof a); \
          memcpy (&b, x + n - lanes / 2, sizeof b); \
          m[0] = HMAXH (a & (MASK), m[0]); \
          m[1] = HMAXH (b & (MASK), m[1]); \
          i = qk_line_head (x, sizeof (UTYPE)) % (lanes / 2); \
          end = i + (n - i) / (lanes / 2) * (lanes / 2); \
          if ((end - i) % lanes) \
            { \
              memcpy (&a, x + i, sizeof a); \
              m[0] = HMAXH (a & (MASK), m[0]); \
              i += lanes / 2; \
            } \
        } \
      for (; i + lanes <= end; i += lanes) \
        { \
          memcpy (&a, x + i, sizeof a); \
          memcpy (&b, x + i + lanes / 2, sizeof b); \
          m[0] = HMAXH (a & (MASK), m[0]); \
          m[1] = HMAXH (b & (MASK), m[1]); \
        } \
      memcpy (&w, m, sizeof w); \
      r = HMAX (w); \
    } \
  if (end < n) \
    i = n; \
  for (; i < n; i++) \
    { \
      UTYPE a; \
      memcpy (&a, x + i, sizeof a); \
      a &= (MASK); \
      r = a > r ? a : r; \
    } \
  return r; \
} \
QK_MULTIVERSION static UTYPE \
NAME (const ITYPE *x, size_t n) \
{ \
  return NAME##_inline (x, n); \
} \
/* Absolute maxima (as bits) of consecutive blocks of a row, in one call \
 * so that short blocks do not pay a call each; the last block may be \
 * shorter. Whole blocks past the fast path's multiple of 16 go through it \
 * as the last 16 whole blocks (those it did again come out the same). */ \
QK_MULTIVERSION static void \
NAME##_blocks (const ITYPE *x, size_t n, size_t block, UTYPE *out) \
{ \
  size_t b = FAST_BLOCKS (x, n, block, out), whole = n / block; \
  if (b > 0 && b < whole && whole >= 16) \
    b = whole - 16 + FAST_BLOCKS (x + (whole - 16) * block, 16 * block, block, out + whole - 16); \
  for (size_t start = b * block; start < n; start += block, b++) \
    out[b] = NAME##_inline (x + start, n - start < block ? n - start : block); \
}

/* The offset into its cache line (qk_bf16_line_offset()) of a bfloat16
 * row whose groups of @block take the line-aligned statistics: one that
 * starts between lines, with AVX-512 and groups from 64 up; else 0 */
QK_INLINE size_t
qk_bf16_lines_offset (const uint16_t *x, size_t block)
{
  const size_t o = qk_bf16_line_offset (x);
  return o && block >= 64 && qk_wide_permutes () ? o : 0;
}

/* AS (x, n, block, ...) with the common block sizes known to the
 * compiler, which then unrolls the folds */
#define QK_BY_BLOCK(AS, X, N, BLOCK, ...) \
  ((BLOCK) == 32 ? AS (X, N, 32, __VA_ARGS__) : (BLOCK) == 64 ? AS (X, N, 64, __VA_ARGS__) \
   : (BLOCK) == 128 ? AS (X, N, 128, __VA_ARGS__) : AS (X, N, BLOCK, __VA_ARGS__))

/* 16 groups of @block at a time (a multiple of 32 from 64 up) of a
 * bfloat16 row that starts @o elements past a cache line, in line-aligned
 * reads (qk_bf16_maxima16_lines()); returns how many groups it took */
QK_INLINE size_t
qk_abs_max_bits_bf16_lines_as (const uint16_t *x, size_t n, size_t block, size_t o, uint16_t *out)
{
  const qk_vh high = qk_bf16_lanes_from (o);
  size_t b = 0;

  for (; (b + 16) * block <= n; b += 16)
    {
      qk_vw m = qk_bf16_maxima16_lines (x + b * block, block, QK_KEY_ABS, o, high, b == 0,
                                        (b + 16) * block + 32 - o > n);
      qk_vu16 narrow = __builtin_convertvector (m, qk_vu16);
      memcpy (out + b, &narrow, sizeof narrow);
    }
  return b;
}

/* (built for AVX-512 alone, where it runs: in the other clones the 512-bit
 * code would be dead weight, QK_WIDE_ONLY) */
QK_WIDE_ONLY static size_t
qk_abs_max_bits_bf16_by16_lines (const uint16_t *x, size_t n, size_t block, size_t o, uint16_t *out)
{
  return QK_BY_BLOCK (qk_abs_max_bits_bf16_lines_as, x, n, block, o, out);
}

/* Rows that start between lines (with AVX-512 and groups from 64 up) in
 * line-aligned reads, others as they are */
QK_INLINE size_t
qk_abs_max_bits_bf16_by16_as (const uint16_t *x, size_t n, size_t block, uint16_t *out)
{
  const size_t o = qk_bf16_lines_offset (x, block);
  size_t b = 0;

  if (block % 32 || block > 512)
    return 0;
  if (o)
    return qk_abs_max_bits_bf16_by16_lines (x, n, block, o, out);
  for (; (b + 16) * block <= n; b += 16)
    {
      qk_vu16 narrow = __builtin_convertvector (qk_bf16_maxima16 (x + b * block, block), qk_vu16);
      memcpy (out + b, &narrow, sizeof narrow);
    }
  return b;
}

QK_INLINE size_t
qk_abs_max_bits_bf16_by16 (const uint16_t *x, size_t n, size_t block, uint16_t *out)
{
  return QK_BY_BLOCK (qk_abs_max_bits_bf16_by16_as, x, n, block, out);
}

static inline size_t
qk_no_fast_blocks (const float *x, size_t n, size_t block, uint32_t *out)
{
  (void) x, (void) n, (void) block, (void) out;
  return 0;
}

#define FAST_BLOCKS qk_abs_max_bits_bf16_by16
QK_DEFINE_ABS_MAX_BITS (qk_abs_max_bits_bf16, uint16_t, uint16_t, qk_vh, 0x7fff, qk_max_h, qk_hmax_h,
                        qk_v16u16, qk_max_h256)
#undef FAST_BLOCKS
#define FAST_BLOCKS qk_no_fast_blocks
QK_DEFINE_ABS_MAX_BITS (qk_abs_max_bits_f32, float, uint32_t, qk_vw, 0x7fffffffu, qk_max_w, qk_hmax_w,
                        qk_v8u32, qk_max_w256)
#undef FAST_BLOCKS

void
_quark_kernel_block_abs_max_bits_bf16 (const uint16_t *x, size_t n, size_t block, uint16_t *out)
{
  qk_abs_max_bits_bf16_blocks (x, n, block, out);
}

void
_quark_kernel_block_abs_max_bits_f32 (const float *x, size_t n, size_t block, uint32_t *out)
{
  qk_abs_max_bits_f32_blocks (x, n, block, out);
}

/* The group maxima go through a buffer of 256 groups on the stack; bits at
 * or above INF are infinity or NaN. */
#define QK_DEFINE_GROUP_ABS_MAX(NAME, ITYPE, UTYPE, BLOCKS, INF, TO_F32) \
bool \
NAME (const ITYPE *x, size_t n, size_t group, float *amax) \
{ \
  UTYPE bits[256]; \
  bool finite = true; \
  if (group == 0) \
    return n == 0; \
  for (size_t start = 0; start < n; start += 256 * group, amax += 256) \
    { \
      size_t len = n - start < 256 * group ? n - start : 256 * group; \
      BLOCKS (x + start, len, group, bits); \
      for (size_t g = 0; g < (len + group - 1) / group; g++) \
        { \
          finite &= bits[g] < (INF); \
          amax[g] = TO_F32 (bits[g]); \
        } \
    } \
  return finite; \
}

/**
 * quark_kernel_group_abs_max_f32: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @group: elements per group (the last group may be shorter)
 * @amax: (out caller-allocates): ⌈@n / @group⌉ absolute maxima, 0 for an
 *   empty group; meaningful only when the result is %true
 *
 * quark_kernel_abs_max_f32() of each group of a row, in one call (the
 * statistic of per-group and MX schemes).
 *
 * Returns: %true if every element is finite
 */
QK_DEFINE_GROUP_ABS_MAX (quark_kernel_group_abs_max_f32, float, uint32_t, qk_abs_max_bits_f32_blocks,
                         0x7f800000u, qk_f32_from_bits)

/**
 * quark_kernel_group_abs_max_bf16: (skip)
 * @x: @n bfloat16 values
 * @n: the number of elements
 * @group: elements per group (the last group may be shorter)
 * @amax: (out caller-allocates): ⌈@n / @group⌉ absolute maxima
 *
 * quark_kernel_group_abs_max_f32() on bfloat16 input.
 *
 * Returns: %true if every element is finite
 */
QK_DEFINE_GROUP_ABS_MAX (quark_kernel_group_abs_max_bf16, uint16_t, uint16_t, qk_abs_max_bits_bf16_blocks,
                         0x7f80u, qk_f32_from_bf16_bits)

/* Group statistics as bits, 16 groups of @block at a time: the keys of
 * their maxima and minima (MAXIMA: QK_KEY_ORDER and QK_KEY_REVERSE, in the
 * words of two vectors, narrowed to UVEC's lanes); returns how many groups
 * it took. */
#define QK_DEFINE_ORDER_BY16(NAME, ITYPE, UTYPE, UVEC, MAXIMA) \
QK_INLINE size_t \
NAME (const ITYPE *x, size_t n, size_t block, UTYPE *hi, UTYPE *lo) \
{ \
  size_t b = 0; \
  for (; (b + 16) * block <= n; b += 16) \
    { \
      qk_vw hw, lw; \
      MAXIMA (x + b * block, block, &hw, &lw); \
      UVEC h = __builtin_convertvector (hw, UVEC), l = __builtin_convertvector (lw, UVEC); \
      memcpy (hi + b, &h, sizeof h); \
      memcpy (lo + b, &l, sizeof l); \
    } \
  return b; \
}
QK_DEFINE_ORDER_BY16 (qk_group_min_max_bf16_by16_direct, uint16_t, uint16_t, qk_vu16, qk_bf16_order_maxima16)
QK_DEFINE_ORDER_BY16 (qk_group_min_max_f32_by16_as, float, uint32_t, qk_vu, qk_f32_order_maxima16)
#undef QK_DEFINE_ORDER_BY16

/* The same for the keys of the minima and maxima
 * (qk_bf16_order_maxima16_lines()) */
QK_INLINE size_t
qk_group_min_max_bf16_lines_as (const uint16_t *x, size_t n, size_t block, size_t o, uint16_t *hi, uint16_t *lo)
{
  const qk_vh high = qk_bf16_lanes_from (o);
  size_t b = 0;

  for (; (b + 16) * block <= n; b += 16)
    {
      qk_vw hw, lw;
      qk_bf16_order_maxima16_lines (x + b * block, block, o, high, b == 0, (b + 16) * block + 32 - o > n, &hw,
                                    &lw);
      qk_vu16 h = __builtin_convertvector (hw, qk_vu16), l = __builtin_convertvector (lw, qk_vu16);
      memcpy (hi + b, &h, sizeof h);
      memcpy (lo + b, &l, sizeof l);
    }
  return b;
}

QK_WIDE_ONLY static size_t
qk_group_min_max_bf16_by16_lines (const uint16_t *x, size_t n, size_t block, size_t o, uint16_t *hi,
                                  uint16_t *lo)
{
  return QK_BY_BLOCK (qk_group_min_max_bf16_lines_as, x, n, block, o, hi, lo);
}

/* Rows that start between lines (with AVX-512 and groups from 64 up) in
 * line-aligned reads, others as they are */
QK_INLINE size_t
qk_group_min_max_bf16_by16_as (const uint16_t *x, size_t n, size_t block, uint16_t *hi, uint16_t *lo)
{
  const size_t o = qk_bf16_lines_offset (x, block);

  if (o)
    return qk_group_min_max_bf16_by16_lines (x, n, block, o, hi, lo);
  return qk_group_min_max_bf16_by16_direct (x, n, block, hi, lo);
}

/* bfloat16 groups of a multiple of 32 up to 512 (qk_bf16_order_maxima16();
 * others a call each); a group holds infinity or NaN exactly when one of
 * its keys is at least 0xFF80, the key of +infinity and the reverse key of
 * -infinity. */
QK_MULTIVERSION static size_t
qk_group_min_max_bf16_by16 (const uint16_t *x, size_t n, size_t block, uint16_t *hi, uint16_t *lo)
{
  if (block % 32 || block > 512)
    return 0;
  return QK_BY_BLOCK (qk_group_min_max_bf16_by16_as, x, n, block, hi, lo);
}

/* float32 groups of a multiple of 16, with AVX-512 (qk_f32_order_maxima16();
 * elsewhere none: a call per group); a group holds infinity or NaN exactly
 * when one of its keys is at least 0xFF800000. */
QK_WIDE_ONLY static size_t
qk_group_min_max_f32_by16_wide (const float *x, size_t n, size_t block, uint32_t *hi, uint32_t *lo)
{
  return QK_BY_BLOCK (qk_group_min_max_f32_by16_as, x, n, block, hi, lo);
}

static size_t
qk_group_min_max_f32_by16 (const float *x, size_t n, size_t block, uint32_t *hi, uint32_t *lo)
{
  if (!qk_wide_permutes () || block % 16)
    return 0;
  return qk_group_min_max_f32_by16_wide (x, n, block, hi, lo);
}

/* The minima and maxima of @n groups (0, or 16 or more) from their keys
 * (@lo QK_KEY_REVERSE, @hi QK_KEY_ORDER), 16 at a time: a key k of either
 * order back to the bits (qk_bf16_from_key(): k with the sign bit flipped
 * when it is set, else every bit; the reverse key complemented first),
 * widened to binary32; returns whether every key is below @INF_KEY (no
 * infinity or NaN). Past the last multiple of 16, the last 16 groups
 * again. */
#define QK_DEFINE_KEYS_TO_F32(NAME, UTYPE, UVEC, SIGN_SHIFT, INF_KEY, WIDEN) \
QK_MULTIVERSION static bool \
NAME (const UTYPE *hi, const UTYPE *lo, size_t n, float *min, float *max) \
{ \
  const UTYPE sign = (UTYPE) 1 << SIGN_SHIFT; \
  UVEC bad = { 0 }; \
  for (size_t g = 0; g < n; g += 16) \
    { \
      UVEC h, l; \
      qk_vf hf, lf; \
      if (g + 16 > n) \
        g = n - 16; \
      memcpy (&h, hi + g, sizeof h); \
      memcpy (&l, lo + g, sizeof l); \
      bad |= (UVEC) (h >= (INF_KEY)) | (UVEC) (l >= (INF_KEY)); \
      l = ~l; \
      h ^= ((h >> SIGN_SHIFT) - 1) | sign; \
      l ^= ((l >> SIGN_SHIFT) - 1) | sign; \
      hf = WIDEN (h); \
      lf = WIDEN (l); \
      memcpy (max + g, &hf, sizeof hf); \
      memcpy (min + g, &lf, sizeof lf); \
    } \
  for (unsigned i = 0; i < 16; i++) \
    if (bad[i]) \
      return false; \
  return true; \
}

QK_INLINE qk_vf
qk_widen_bf16_bits16 (qk_vu16 bits)
{
  return (qk_vf) (__builtin_convertvector (bits, qk_vu) << 16);
}

QK_INLINE qk_vf
qk_f32_of_bits16 (qk_vu bits)
{
  return (qk_vf) bits;
}

QK_DEFINE_KEYS_TO_F32 (qk_bf16_keys_to_f32, uint16_t, qk_vu16, 15, 0xff80u, qk_widen_bf16_bits16)
QK_DEFINE_KEYS_TO_F32 (qk_f32_keys_to_f32, uint32_t, qk_vu, 31, 0xff800000u, qk_f32_of_bits16)
#undef QK_DEFINE_KEYS_TO_F32

/* The group statistics go through buffers of 256 groups' keys on the
 * stack; the groups the fast path (BY16) does not take, a call each. */
#define QK_DEFINE_GROUP_MIN_MAX(NAME, ITYPE, UTYPE, BY16, KEYS_TO_F32, MIN_MAX) \
bool \
NAME (const ITYPE *x, size_t n, size_t group, float *min, float *max) \
{ \
  UTYPE hi[256], lo[256]; \
  bool finite = true; \
  if (group == 0) \
    return n == 0; \
  for (size_t start = 0; start < n; start += 256 * group, min += 256, max += 256) \
    { \
      size_t len = n - start < 256 * group ? n - start : 256 * group; \
      size_t fast = BY16 (x + start, len, group, hi, lo), whole = len / group; \
      /* whole groups past the fast path's multiple of 16: through it as \
       * the last 16 whole groups (those it did again come out the same) */ \
      if (fast > 0 && fast < whole && whole >= 16) \
        fast = whole - 16 + BY16 (x + start + (whole - 16) * group, 16 * group, group, hi + whole - 16, \
                                  lo + whole - 16); \
      finite &= KEYS_TO_F32 (hi, lo, fast, min, max); \
      for (size_t g = fast; g < (len + group - 1) / group; g++) \
        { \
          size_t m = len - g * group < group ? len - g * group : group; \
          finite &= MIN_MAX (x + start + g * group, m, &min[g], &max[g]); \
        } \
    } \
  return finite; \
}

/**
 * quark_kernel_group_min_max_bf16: (skip)
 * @x: @n bfloat16 values
 * @n: the number of elements
 * @group: elements per group (the last group may be shorter)
 * @min: (out caller-allocates): ⌈@n / @group⌉ minima
 * @max: (out caller-allocates): ⌈@n / @group⌉ maxima
 *
 * quark_kernel_min_max_bf16() of each group of a row, in one call (the
 * statistic of asymmetric per-group schemes): sixteen groups at a time by
 * integer maxima and minima over keys of the bit patterns that sort as the
 * values do (each value read and keyed once), when @group is a multiple of
 * 32 up to 512. The minima and maxima are
 * meaningful only when the result is %true; where a group's extreme is a
 * zero, its sign may differ from quark_kernel_min_max_bf16()'s (which
 * reports whichever zero comes first), which quantizes identically.
 *
 * Returns: %true if every element is finite
 */
QK_DEFINE_GROUP_MIN_MAX (quark_kernel_group_min_max_bf16, uint16_t, uint16_t, qk_group_min_max_bf16_by16,
                         qk_bf16_keys_to_f32, quark_kernel_min_max_bf16)

/**
 * quark_kernel_group_min_max_f32: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @group: elements per group (the last group may be shorter)
 * @min: (out caller-allocates): ⌈@n / @group⌉ minima
 * @max: (out caller-allocates): ⌈@n / @group⌉ maxima
 *
 * quark_kernel_min_max_f32() of each group of a row, in one call:
 * quark_kernel_group_min_max_bf16() on float32 (and float16 widened to
 * it), sixteen groups at a time over 32-bit keys when @group is a multiple
 * of 16 and the processor has AVX-512 (elsewhere a call per group). The
 * same caveats: meaningful only when the result is %true, and a zero
 * extreme's sign may differ from quark_kernel_min_max_f32()'s.
 *
 * Returns: %true if every element is finite
 */
QK_DEFINE_GROUP_MIN_MAX (quark_kernel_group_min_max_f32, float, uint32_t, qk_group_min_max_f32_by16,
                         qk_f32_keys_to_f32, quark_kernel_min_max_f32)

/**
 * quark_kernel_abs_max_f32: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @amax: (out): the largest |x| (0 when @n is 0); meaningful only when the
 *   result is %true
 *
 * The absolute maximum, the statistic of every symmetric scheme, computed as
 * an integer maximum over the bit patterns (exact).
 *
 * Returns: %true if every element is finite
 */
bool
quark_kernel_abs_max_f32 (const float *x,
                          size_t       n,
                          float       *amax)
{
  uint32_t bits = qk_abs_max_bits_f32 (x, n);
  memcpy (amax, &bits, sizeof *amax);
  return bits < 0x7f800000u;
}

/**
 * quark_kernel_abs_max_bf16: (skip)
 * @x: @n bfloat16 values
 * @n: the number of elements
 * @amax: (out): the largest |x| (0 when @n is 0); meaningful only when the
 *   result is %true
 *
 * quark_kernel_abs_max_f32() on bfloat16 input, 32 values per 512-bit vector.
 *
 * Returns: %true if every element is finite
 */
bool
quark_kernel_abs_max_bf16 (const uint16_t *x,
                           size_t          n,
                           float          *amax)
{
  uint16_t bits = qk_abs_max_bits_bf16 (x, n);
  *amax = quark_kernel_bf16_to_f32 (bits);
  return bits < 0x7f80u;
}

/**
 * quark_kernel_channel_min_max_f32: (skip)
 * @x: a tensor viewed as [@outer, @channels, @inner], contiguous
 * @outer: product of the dimensions before the channel axis
 * @channels: length of the channel axis
 * @inner: product of the dimensions after the channel axis
 * @mins: (out caller-allocates): @channels minima
 * @maxs: (out caller-allocates): @channels maxima
 *
 * Per-channel minimum and maximum of the finite elements along any axis.
 *
 * Returns: %true if every element is finite
 */
bool
quark_kernel_channel_min_max_f32 (const float *x,
                                  size_t       outer,
                                  size_t       channels,
                                  size_t       inner,
                                  float       *mins,
                                  float       *maxs)
{
  bool finite = true;

  for (size_t c = 0; c < channels; c++)
    {
      mins[c] = INFINITY;
      maxs[c] = -INFINITY;
    }
  for (size_t o = 0; o < outer; o++)
    for (size_t c = 0; c < channels; c++)
      {
        float lo, hi;
        if (!quark_kernel_min_max_f32 (x + (o * channels + c) * inner, inner, &lo, &hi))
          finite = false;
        mins[c] = lo < mins[c] ? lo : mins[c];
        maxs[c] = hi > maxs[c] ? hi : maxs[c];
      }
  return finite;
}

/* SplitMix64: a counter-based generator, so element i of a seeded stream is
 * the same whatever piece of the tensor a call quantizes. */
static inline uint64_t
qk_mix (uint64_t z)
{
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/**
 * quark_kernel_round: (skip)
 * @v: a scaled value
 * @mode: the rounding mode
 * @seed: the seed of %QUARK_ROUND_STOCHASTIC
 * @index: the element's index in the seeded stream
 *
 * Rounds @v to an integer (as a float) with the modes of the numerics
 * reference, table 1.3. half_up adds 0.5 in binary64 (in binary32,
 * 0.49999997 + 0.5 would round up to 1). Stochastic rounding returns
 * floor (v) + 1 with probability v − floor (v), drawn from a counter-based
 * generator keyed by (@seed, @index), so results are reproducible.
 *
 * Returns: the rounded value
 */
float
quark_kernel_round (float          v,
                    QuarkRoundMode mode,
                    uint64_t       seed,
                    uint64_t       index)
{
  switch (mode)
    {
    case QUARK_ROUND_HALF_UP:
      return (float) floor ((double) v + 0.5);
    case QUARK_ROUND_HALF_AWAY:
      return roundf (v);
    case QUARK_ROUND_FLOOR:
      return floorf (v);
    case QUARK_ROUND_CEIL:
      return ceilf (v);
    case QUARK_ROUND_TOWARD_ZERO:
      return truncf (v);
    case QUARK_ROUND_STOCHASTIC:
      {
        float f = floorf (v);
        /* 24 random bits: u in [0, 1) exactly representable */
        float u = (float) (qk_mix (seed ^ qk_mix (index)) >> 40) * 0x1p-24f;
        return (v - f) > u ? f + 1.0f : f;
      }
    case QUARK_ROUND_DPU:
      /* an exact half below zero goes up: -1.5 -> -1, -0.5 -> -0 */
      return v < 0.0f && v - floorf (v) == 0.5f ? ceilf (v) : rintf (v);
    case QUARK_ROUND_HALF_EVEN:
    default:
      return rintf (v);
    }
}

/* One group's parameters, as quark_kernel_int_group_params_f32()
 * documents them (the scalar reference's step, which the vector path's
 * tail and wide code ranges also take) */
static inline void
qk_int_group_params_one (float min, float max, bool symmetric, float span, float qmin, float qmax, float eps,
                         float *scale, float *zero_point)
{
  const float lo = min < 0.0f ? min : 0.0f, hi = max > 0.0f ? max : 0.0f;

  if (symmetric)
    {
      const float amax = -lo > hi ? -lo : hi, s = amax / (span / 2.0f);
      *scale = s > eps ? s : eps;
      *zero_point = 0.0f;
    }
  else
    {
      /* the clamp as fminf (fmaxf (z, qmin), qmax): a NaN (0 / 0 with eps
       * 0) gives qmin */
      const float s0 = (hi - lo) / span, s = s0 > eps ? s0 : eps, z = qmin - rintf (lo / s), z1 = z >= qmin ? z : qmin;
      *scale = s;
      *zero_point = z1 > qmax ? qmax : z1;
    }
}

/**
 * quark_kernel_int_group_params_f32_scalar: (skip)
 * @min: @n minima, one per group
 * @max: @n maxima, one per group
 * @n: the number of groups
 * @symmetric: symmetric parameters (zero points 0)
 * @qmin: the smallest code
 * @qmax: the largest code
 * @eps: the smallest scale
 * @scales: (out): room for @n scales
 * @zero_points: (out): room for @n zero points
 *
 * Scalar reference of quark_kernel_int_group_params_f32().
 */
void
quark_kernel_int_group_params_f32_scalar (const float *min,
                                          const float *max,
                                          size_t       n,
                                          bool         symmetric,
                                          int32_t      qmin,
                                          int32_t      qmax,
                                          float        eps,
                                          float       *scales,
                                          float       *zero_points)
{
  const float span = (float) ((int64_t) qmax - qmin);

  for (size_t g = 0; g < n; g++)
    qk_int_group_params_one (min[g], max[g], symmetric, span, (float) qmin, (float) qmax, eps, &scales[g],
                             &zero_points[g]);
}

/* 16 groups at a time; the rounding of lo / s by the magic number, exact
 * since |lo / s| is at most about qmax − qmin (s is at least
 * (hi − lo) / (qmax − qmin) ≥ −lo / (qmax − qmin)), which the caller keeps
 * below 2^21. Returns the groups done, a multiple of 16. */
QK_MULTIVERSION static size_t
qk_int_group_params16 (const float *min, const float *max, size_t n, bool symmetric, float span, float qmin,
                       float qmax, float eps, float *scales, float *zero_points)
{
  const qk_vf zero = { 0 }, vspan = qk_splat (span), vhalf = qk_splat (span / 2.0f), veps = qk_splat (eps);
  const qk_vf vqmin = qk_splat (qmin), vqmax = qk_splat (qmax), magic = qk_splat (QK_ROUND_MAGIC);
  size_t g = 0;

  for (; g + QK_LANES <= n; g += QK_LANES)
    {
      const qk_vf mn = qk_load_f32 (min + g), mx = qk_load_f32 (max + g);
      const qk_vf lo = qk_select (mn < zero, mn, zero), hi = qk_select (mx > zero, mx, zero);
      qk_vf s, z;

      if (symmetric)
        {
          const qk_vf amax = qk_select (-lo > hi, -lo, hi), s0 = amax / vhalf;
          s = qk_select (s0 > veps, s0, veps);
          z = zero;
        }
      else
        {
          const qk_vf s0 = (hi - lo) / vspan;
          qk_vf r;
          s = qk_select (s0 > veps, s0, veps);
          r = lo / s + magic;
          r = r - magic;
          z = vqmin - r;
          z = qk_select (z >= vqmin, z, vqmin);
          z = qk_select (z > vqmax, vqmax, z);
        }
      memcpy (scales + g, &s, sizeof s);
      memcpy (zero_points + g, &z, sizeof z);
    }
  return g;
}

/**
 * quark_kernel_int_group_params_f32: (skip)
 * @min: @n minima, one per group
 * @max: @n maxima (with @symmetric, absolute maxima will do), one per group
 * @n: the number of groups
 * @symmetric: symmetric parameters (zero points 0)
 * @qmin: the smallest code
 * @qmax: the largest code, above @qmin
 * @eps: the smallest scale
 * @scales: (out): room for @n scales
 * @zero_points: (out): room for @n zero points, integers held in floats
 *
 * The min/max parameters of integer quantization for @n groups at once.
 * With lo = min (@min, 0), hi = max (@max, 0) and span = qmax − qmin (in
 * binary32): symmetric, s = max (max (−lo, hi) / (span / 2), @eps) and
 * z = 0; else s = max ((hi − lo) / span, @eps) and z = clamp (qmin −
 * rint (lo / s), qmin, qmax), rint rounding half to even (and a NaN,
 * from 0 / 0 when @eps is 0, clamped to qmin as fmaxf () does). These are
 * AMD Quark's (and torch's) min/max observer parameters, binary32
 * throughout. For every input, NaN and infinities included, the results
 * are those of quark_kernel_int_group_params_f32_scalar(), bit for bit.
 */
void
quark_kernel_int_group_params_f32 (const float *min,
                                   const float *max,
                                   size_t       n,
                                   bool         symmetric,
                                   int32_t      qmin,
                                   int32_t      qmax,
                                   float        eps,
                                   float       *scales,
                                   float       *zero_points)
{
  const float span = (float) ((int64_t) qmax - qmin);
  size_t g = 0;

  /* the magic-number rounding holds for spans up to 2^21 (16-bit codes
   * and less) */
  if ((int64_t) qmax - qmin <= (1 << 21))
    g = qk_int_group_params16 (min, max, n, symmetric, span, (float) qmin, (float) qmax, eps, scales, zero_points);
  quark_kernel_int_group_params_f32_scalar (min + g, max + g, n - g, symmetric, qmin, qmax, eps, scales + g,
                                            zero_points + g);
}

/**
 * quark_kernel_pow2_scale: (skip)
 * @scale: a positive finite scale
 * @rounding: how to pick the power of two
 *
 * Restricts a scale to a power of two, deciding exactly from the bits of
 * @scale (no binary32 log2, whose rounding near powers of two would move
 * the result, numerics reference 1.4 item 7). %QUARK_POW2_ROUND rounds in
 * the log domain: up when the significand is at least √2.
 *
 * Returns: the power of two (the result is clamped to [2^−126, 2^127])
 */
float
quark_kernel_pow2_scale (float             scale,
                         QuarkPow2Rounding rounding)
{
  int e;
  double m;

  if (!(scale > 0.0f) || isinf (scale))
    return scale;
  m = frexp ((double) scale, &e) * 2.0;   /* scale = m * 2^(e - 1), m in [1, 2) */
  e -= 1;
  switch (rounding)
    {
    case QUARK_POW2_CEIL:
      if (m > 1.0)
        e += 1;
      break;
    case QUARK_POW2_ROUND:
      if (m >= M_SQRT2)   /* no binary32 equals sqrt(2); the double is a safe cut */
        e += 1;
      break;
    case QUARK_POW2_FLOOR:
    default:
      break;
    }
  if (e < -126)
    e = -126;
  if (e > 127)
    e = 127;
  return ldexpf (1.0f, e);
}

static inline int32_t
qk_quantize_one (float x, const QuarkKernelIntParams *p, size_t i)
{
  float t = p->divide ? x / p->scale : x * p->inv_scale;
  double d;
  t = t + p->zero_point;
  t = p->round == QUARK_ROUND_HALF_EVEN ? rintf (t) : quark_kernel_round (t, p->round, p->seed, p->offset + i);
  /* clamped in binary64, exact for 32-bit bounds; written so that a NaN
   * becomes qmin, as in the vector path */
  d = t;
  if (!(d >= (double) p->qmin))
    return p->qmin;
  if (d > (double) p->qmax)
    return p->qmax;
  return (int32_t) d;
}

/* the vector path's magic-number rounding needs codes within 2^22 */
static inline bool
qk_vector_range (const QuarkKernelIntParams *p)
{
  return p->qmin >= -(1 << 22) && p->qmax <= (1 << 22);
}

static bool
qk_store_supported (QuarkDType dt)
{
  switch (dt)
    {
    case QUARK_DTYPE_I8: case QUARK_DTYPE_U8:
    case QUARK_DTYPE_I16: case QUARK_DTYPE_U16:
    case QUARK_DTYPE_I32:
    case QUARK_DTYPE_INT2: case QUARK_DTYPE_INT3: case QUARK_DTYPE_INT4:
    case QUARK_DTYPE_INT5: case QUARK_DTYPE_INT6: case QUARK_DTYPE_INT7:
    case QUARK_DTYPE_UINT2: case QUARK_DTYPE_UINT3: case QUARK_DTYPE_UINT4:
    case QUARK_DTYPE_UINT5: case QUARK_DTYPE_UINT6: case QUARK_DTYPE_UINT7:
      return true;
    default:
      return false;
    }
}

/* Stores one code; codes are already clamped to the range of out_dtype. */
static inline void
qk_store (QuarkDType dt, void *out, size_t i, int32_t q)
{
  switch (quark_dtype_get_element_size (dt))
    {
    case 1:
      ((uint8_t *) out)[i] = (uint8_t) q;
      break;
    case 2:
      ((uint16_t *) out)[i] = (uint16_t) q;
      break;
    default:
      ((int32_t *) out)[i] = q;
      break;
    }
}

/**
 * quark_kernel_quantize_int_f32_scalar: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @params: scale, zero point and code range
 * @out_dtype: the storage type of @out (I8, U8, I16, U16, I32 or a logical
 *   sub-byte integer type, stored one code per byte)
 * @out: room for @n codes of @out_dtype
 *
 * Scalar reference of quark_kernel_quantize_int_f32().
 *
 * Returns: %false if @out_dtype is not an integer storage type
 */
bool
quark_kernel_quantize_int_f32_scalar (const float                *x,
                                      size_t                      n,
                                      const QuarkKernelIntParams *params,
                                      QuarkDType                  out_dtype,
                                      void                       *out)
{
  if (!qk_store_supported (out_dtype))
    return false;
  for (size_t i = 0; i < n; i++)
    qk_store (out_dtype, out, i, qk_quantize_one (x[i], params, i));
  return true;
}

/* The bits of t + 1.5 * 2^23 for t clamped to [qmin, qmax] (|t| <= 2^22):
 * 0x4B400000 + R(t), R rounding to nearest even. The low 22 bits of the
 * constant are zero, so the low byte (half-word) of these bits is the
 * 8-bit (16-bit) two's complement code, and subtracting the constant gives
 * the 32-bit one. The clamp is a max then a min: a NaN lane becomes qmin,
 * as in the scalar path. */
#define QK_MAGIC_BITS 0x4B400000

/* The parameters as vectors, read once: the loops store through character
 * pointers, which may alias *p, so reading p in the loop would reload it. */
typedef struct {
  qk_vf mul, zp, lo, hi;
  qk_vi lo_bits, hi_bits;
  bool divide, add_zp;
} QkIntLanes;

QK_INLINE QkIntLanes
qk_int_lanes_init (const QuarkKernelIntParams *p, bool add_zp)
{
  QkIntLanes l = { qk_splat (p->divide ? p->scale : p->inv_scale), qk_splat (p->zero_point),
                   qk_splat ((float) p->qmin), qk_splat ((float) p->qmax),
                   qk_splat_i (QK_MAGIC_BITS + p->qmin), qk_splat_i (QK_MAGIC_BITS + p->qmax),
                   p->divide, add_zp };
  return l;
}

/* qk_int_lanes() with the multiplier and zero point given apart
 * (QK_FOR_EACH_GROUP_WIDE keeps them out of the lanes) */
QK_INLINE qk_vi
qk_int_lanes_mz (qk_vf x, QkIntLanes l, qk_vf mul, qk_vf zp)
{
  qk_vf t = l.divide ? x / mul : x * mul;
  /* t + 0 would only turn -0 into +0, which rounds the same */
  if (l.add_zp)
    t = t + zp;
  t = qk_min (qk_max (t, l.lo), l.hi);
  return (qk_vi) (t + QK_ROUND_MAGIC);
}

QK_INLINE qk_vi
qk_int_lanes (qk_vf x, QkIntLanes l)
{
  return qk_int_lanes_mz (x, l, l.mul, l.zp);
}

QK_DEFINE_LANEWISE (qk_max_i, qk_vi, >)
QK_DEFINE_LANEWISE (qk_min_i, qk_vi, <)

/* qk_int_lanes_mz() for finite x (the row-of-groups kernels), the clamps on
 * the bits after the addition, as integer operations: the bits of
 * t + 1.5 * 2^23 grow with t while the sum stays positive (as signed
 * integers, and from there on the bits of negative sums are negative), the
 * sum is exact in the magic's binade, leaves it upwards past t = 2^22 and
 * downwards below t = -2^22, beyond [qmin, qmax] either way, and rounding
 * commutes with clamping to integers; infinite t lands at a bound too.
 * (AMD Zen 4 runs 512-bit float operations on half as many pipes as
 * integer ones.) */
QK_INLINE qk_vi
qk_int_lanes_finite (qk_vf x, QkIntLanes l, qk_vf mul, qk_vf zp)
{
  qk_vf t = l.divide ? x / mul : x * mul;
  if (l.add_zp)
    t = t + zp;
  return qk_min_i (qk_max_i ((qk_vi) (t + QK_ROUND_MAGIC), l.lo_bits), l.hi_bits);
}

/* The same lanes in 256-bit vectors, for processors without AVX-512
 * (qk_wide_permutes() false), where GCC 12 keeps 512-bit vectors in memory
 * between steps: loops that use these hold everything in registers. */
typedef struct {
  qk_v8f mul, zp, lo, hi;
  qk_v8i lo_bits, hi_bits;
  bool divide, add_zp;
} QkIntLanes8;

/* (the low halves: every lane of @l holds the same value) */
QK_INLINE QkIntLanes8
qk_int_lanes8_init (const QkIntLanes *l)
{
  QkIntLanes8 h;
  memcpy (&h.mul, &l->mul, sizeof h.mul);
  memcpy (&h.zp, &l->zp, sizeof h.zp);
  memcpy (&h.lo, &l->lo, sizeof h.lo);
  memcpy (&h.hi, &l->hi, sizeof h.hi);
  memcpy (&h.lo_bits, &l->lo_bits, sizeof h.lo_bits);
  memcpy (&h.hi_bits, &l->hi_bits, sizeof h.hi_bits);
  h.divide = l->divide;
  h.add_zp = l->add_zp;
  return h;
}

QK_INLINE qk_v8i
qk_int_lanes8 (qk_v8f x, const QkIntLanes8 *l)
{
  qk_v8f t = l->divide ? x / l->mul : x * l->mul;
  if (l->add_zp)
    t = t + l->zp;
  t = qk_min8 (qk_max8 (t, l->lo), l->hi);
  return (qk_v8i) (t + QK_ROUND_MAGIC);
}

QK_INLINE qk_v8i
qk_int_lanes8_finite (qk_v8f x, const QkIntLanes8 *l)
{
  qk_v8f t = l->divide ? x / l->mul : x * l->mul;
  if (l->add_zp)
    t = t + l->zp;
  return qk_min_i8 (qk_max_i8 ((qk_v8i) (t + QK_ROUND_MAGIC), l->lo_bits), l->hi_bits);
}

/* The loops are compiled twice, with and without the zero point. */
#define QK_DEFINE_ZP_DISPATCH(NAME, ITYPE, CTYPE) \
QK_MULTIVERSION static void \
NAME (const ITYPE *x, size_t n, const QuarkKernelIntParams *p, CTYPE *out, size_t *done) \
{ \
  const size_t row = qk_prefetch_distance (n); \
  *done = p->zero_point != 0.0f ? NAME##_loop (x, n, row, qk_int_lanes_init (p, true), out) \
                                : NAME##_loop (x, n, row, qk_int_lanes_init (p, false), out); \
}

/* MASK keeps the bits the narrowing keeps: written out, it also makes GCC
 * narrow with one instruction (vpmovdb) instead of lane by lane. */
#define QK_DEFINE_VECTOR_QUANTIZE(NAME, ITYPE, LOAD, CTYPE, VTYPE, BIAS, MASK) \
QK_INLINE size_t \
NAME##_loop (const ITYPE *x, size_t n, size_t row, const QkIntLanes l, CTYPE *out) \
{ \
  size_t i; \
  (void) row; \
  for (i = 0; i + QK_LANES <= n; i += QK_LANES) \
    { \
      VTYPE narrow = __builtin_convertvector ((qk_int_lanes (LOAD (x + i), l) - (BIAS)) & (MASK), VTYPE); \
      memcpy (out + i, &narrow, sizeof narrow); \
    } \
  return i; \
} \
QK_DEFINE_ZP_DISPATCH (NAME, ITYPE, CTYPE)

/* Codes are clamped to the range of the storage type, so the narrowing
 * conversions keep them exactly (two's complement for signed types); the
 * 8- and 16-bit ones take the low bits of the magic-number sum directly. */
QK_DEFINE_VECTOR_QUANTIZE (qk_quantize_vec_u16, float, qk_load_f32, uint16_t, qk_vu16, 0, 0xffff)
QK_DEFINE_VECTOR_QUANTIZE (qk_quantize_vec_i32, float, qk_load_f32, int32_t, qk_vi, QK_MAGIC_BITS, -1)
QK_DEFINE_VECTOR_QUANTIZE (qk_quantize_bf16_i32, uint16_t, qk_load_bf16, int32_t, qk_vi, QK_MAGIC_BITS, -1)

/* 16 floats to one-byte codes, asking for the next row's line */
QK_INLINE void
qk_f32_u8_step (const float *x, size_t row, const QkIntLanes l, const qk_vf mul, const qk_vf zp, uint8_t *out)
{
  qk_vu8 narrow = __builtin_convertvector (qk_int_lanes_mz (qk_load_f32 (x), l, mul, zp) & 0xff, qk_vu8);
  QK_PREFETCH_NEXT_ROW (x + row);
  memcpy (out, &narrow, sizeof narrow);
}

/* float32 to one-byte codes: where the processor lacks AVX-512 (GCC 12
 * keeps 512-bit vectors in memory there between steps), 16 values per
 * step as two 256-bit halves, the loop once for each of divide and
 * multiply; it also asks for the next row's line, as the bfloat16 loops do
 * (per channel on cached rows with AVX2: 0.37-0.42 ns per value before) */
QK_INLINE size_t
qk_quantize_vec_u8_loop8 (const float *x, size_t n, size_t row, const QkIntLanes8 h, uint8_t *out)
{
  /* each half narrowed to 16-bit lanes (vpackusdw), then the low bytes of
   * both in one shuffle (vpackuswb): narrowed to bytes directly, GCC 12
   * builds them through general registers one byte at a time */
  const qk_vu8 low_bytes = { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 };
  size_t i = 0;
  for (; i + QK_LANES <= n; i += QK_LANES)
    {
      qk_v8f a, b;
      qk_v8u16 na, nb;
      qk_vu8 codes;
      memcpy (&a, x + i, sizeof a);
      memcpy (&b, x + i + 8, sizeof b);
      QK_PREFETCH_NEXT_ROW (x + i + row);
      na = __builtin_convertvector (qk_int_lanes8 (a, &h) & 0xff, qk_v8u16);
      nb = __builtin_convertvector (qk_int_lanes8 (b, &h) & 0xff, qk_v8u16);
      codes = QK_SHUFFLE2 ((qk_vu8) na, (qk_vu8) nb, low_bytes);
      memcpy (out + i, &codes, sizeof codes);
    }
  return i;
}

QK_INLINE size_t
qk_quantize_vec_u8_loop (const float *x, size_t n, size_t row, const QkIntLanes l, uint8_t *out)
{
  size_t i = 0;
  if (!qk_wide_permutes ())
    {
      QkIntLanes8 h = qk_int_lanes8_init (&l);
      if (h.divide)
        {
          h.divide = true;
          return qk_quantize_vec_u8_loop8 (x, n, row, h, out);
        }
      h.divide = false;
      return qk_quantize_vec_u8_loop8 (x, n, row, h, out);
    }
  for (; i + QK_LANES <= n; i += QK_LANES)
    qk_f32_u8_step (x + i, row, l, l.mul, l.zp, out + i);
  return i;
}
QK_DEFINE_ZP_DISPATCH (qk_quantize_vec_u8, float, uint8_t)

/* bfloat16 to 8- and 16-bit codes, 32 values per step: a 512-bit load holds
 * them as 16 words, element 2k in the low half of word k (little endian), so
 * shifting and masking widens the even and the odd elements without a
 * permutation, and the two code vectors interleave back by shifting and
 * or-ing before one narrowing. */
#define QK_DEFINE_BF16_PAIRS(NAME, CTYPE, CBITS, VTYPE, VTYPE8) \
QK_INLINE size_t \
NAME##_loop8 (const uint16_t *x, size_t n, size_t row, const QkIntLanes8 h, CTYPE *out) \
{ \
  size_t i = 0; \
  for (; i + QK_LANES <= n; i += QK_LANES) \
    { \
      qk_v8u32 w, even, odd; \
      VTYPE8 narrow; \
      memcpy (&w, x + i, sizeof w); \
      QK_PREFETCH_NEXT_ROW (x + i + row); \
      even = (qk_v8u32) qk_int_lanes8 ((qk_v8f) (w << 16), &h); \
      odd = (qk_v8u32) qk_int_lanes8 ((qk_v8f) (w & 0xffff0000u), &h); \
      narrow = __builtin_convertvector ((even & ((1u << CBITS) - 1)) | (odd << CBITS), VTYPE8); \
      memcpy (out + i, &narrow, sizeof narrow); \
    } \
  return i; \
} \
QK_INLINE void \
NAME##_step (const uint16_t *x, size_t row, const QkIntLanes l, const qk_vf mul, const qk_vf zp, \
             const qk_vw mask, CTYPE *out) \
{ \
  qk_vw w, even, odd; \
  VTYPE narrow; \
  memcpy (&w, x, sizeof w); \
  QK_PREFETCH_NEXT_ROW (x + row); \
  even = (qk_vw) qk_int_lanes_mz ((qk_vf) (w << 16), l, mul, zp); \
  odd = (qk_vw) qk_int_lanes_mz ((qk_vf) (w & 0xffff0000u), l, mul, zp); \
  narrow = __builtin_convertvector ((even & mask) | (odd << CBITS), VTYPE); \
  memcpy (out, &narrow, sizeof narrow); \
} \
QK_INLINE size_t \
NAME##_loop (const uint16_t *x, size_t n, size_t row, const QkIntLanes l, CTYPE *out) \
{ \
  const qk_vw mask = (qk_vw) { 0 } + ((1u << CBITS) - 1); \
  size_t i = 0; \
  if (!qk_wide_permutes ()) \
    { \
      /* the same 16 values per step, in 256-bit vectors; the loop once \
       * for each of divide and multiply, so that it does not test it */ \
      QkIntLanes8 h = qk_int_lanes8_init (&l); \
      if (h.divide) \
        { \
          h.divide = true; \
          i = NAME##_loop8 (x, n, row, h, out); \
        } \
      else \
        { \
          h.divide = false; \
          i = NAME##_loop8 (x, n, row, h, out); \
        } \
      return i; \
    } \
  for (; i + 2 * QK_LANES <= n; i += 2 * QK_LANES) \
    NAME##_step (x + i, row, l, l.mul, l.zp, mask, out + i); \
  return i; \
} \
QK_DEFINE_ZP_DISPATCH (NAME, uint16_t, CTYPE)

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
QK_DEFINE_BF16_PAIRS (qk_quantize_bf16_u8, uint8_t, 8, qk_vu16, qk_v8u16)
QK_DEFINE_BF16_PAIRS (qk_quantize_bf16_u16, uint16_t, 16, qk_vw, qk_v8u32)
#else
QK_DEFINE_VECTOR_QUANTIZE (qk_quantize_bf16_u8, uint16_t, qk_load_bf16, uint8_t, qk_vu8, 0, 0xff)
QK_DEFINE_VECTOR_QUANTIZE (qk_quantize_bf16_u16, uint16_t, qk_load_bf16, uint16_t, qk_vu16, 0, 0xffff)
#endif

/**
 * quark_kernel_quantize_int_f32: (skip)
 * @x: @n floats, all finite
 * @n: the number of elements
 * @params: scale, zero point and code range
 * @out_dtype: the storage type of @out (I8, U8, I16, U16, I32 or a logical
 *   sub-byte integer type, stored one code per byte)
 * @out: room for @n codes of @out_dtype
 *
 * Affine integer quantization with the zero point added before rounding (the
 * export order of the numerics reference):
 * q = clamp (R (fl (fl (x · inv_scale) + z)), qmin, qmax), R the rounding
 * mode of @params (quark_kernel_round()). Half to even with a range within
 * 2^22 of zero runs on the vector path; other modes and wider (32-bit)
 * ranges on the scalar one, which clamps in binary64.
 *
 * Returns: %false if @out_dtype is not an integer storage type
 */
bool
quark_kernel_quantize_int_f32 (const float                *x,
                               size_t                      n,
                               const QuarkKernelIntParams *params,
                               QuarkDType                  out_dtype,
                               void                       *out)
{
  size_t done = 0;

  if (!qk_store_supported (out_dtype))
    return false;
  if (params->round != QUARK_ROUND_HALF_EVEN || !qk_vector_range (params))
    return quark_kernel_quantize_int_f32_scalar (x, n, params, out_dtype, out);

  switch (quark_dtype_get_element_size (out_dtype))
    {
    case 1:
      qk_quantize_vec_u8 (x, n, params, out, &done);
      break;
    case 2:
      qk_quantize_vec_u16 (x, n, params, out, &done);
      break;
    default:
      qk_quantize_vec_i32 (x, n, params, out, &done);
      break;
    }

  for (size_t i = done; i < n; i++)
    qk_store (out_dtype, out, i, qk_quantize_one (x[i], params, i));
  return true;
}

/* ---- squared error of a quantization ---------------------------------------- */

/* The squared error of one element: (x − (q − z) · s)² in binary32, q its
 * code (the scale @params->scale whatever @params->divide) */
static inline float
qk_sq_error_one (float x, const QuarkKernelIntParams *p, size_t i)
{
  float q = (float) qk_quantize_one (x, p, i);
  float d = x - (q - p->zero_point) * p->scale;
  return d * d;
}

/* the error's sum in binary64: element i in partial sum i mod QK_LANES
 * (@lanes holds the sums of the elements before @from), the partial sums
 * then added in order */
static double
qk_sq_error_total (const float *x, size_t from, size_t n, const QuarkKernelIntParams *p, double *lanes)
{
  double total = 0.0;

  for (size_t i = from; i < n; i++)
    lanes[i % QK_LANES] += (double) qk_sq_error_one (x[i], p, i);
  for (int k = 0; k < QK_LANES; k++)
    total += lanes[k];
  return total;
}

/**
 * quark_kernel_int_sq_error_f32_scalar: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @params: scale, zero point and code range
 *
 * Scalar reference of quark_kernel_int_sq_error_f32().
 *
 * Returns: the sum of the squared errors
 */
double
quark_kernel_int_sq_error_f32_scalar (const float                *x,
                                      size_t                      n,
                                      const QuarkKernelIntParams *params)
{
  double lanes[QK_LANES] = { 0 };

  return qk_sq_error_total (x, 0, n, params, lanes);
}

typedef double qk_vd8 __attribute__ ((vector_size (8 * sizeof (double))));

/* the vector loop: the elements up to the last whole vector, into @lanes */
QK_MULTIVERSION static size_t
qk_sq_error_vec (const float *x, size_t n, const QuarkKernelIntParams *p, double *lanes)
{
  const QkIntLanes l = qk_int_lanes_init (p, true);
  const qk_vf s = qk_splat (p->scale), z = qk_splat (p->zero_point);
  qk_vd8 lo = { 0 }, hi = { 0 };
  size_t i = 0;

  for (; i + QK_LANES <= n; i += QK_LANES)
    {
      qk_vf v = qk_load_f32 (x + i);
      qk_vf q = (qk_vf) qk_int_lanes (v, l) - QK_ROUND_MAGIC;
      qk_vf d = v - (q - z) * s;
      qk_vf e = d * d;
      lo += __builtin_convertvector (__builtin_shufflevector (e, e, 0, 1, 2, 3, 4, 5, 6, 7), qk_vd8);
      hi += __builtin_convertvector (__builtin_shufflevector (e, e, 8, 9, 10, 11, 12, 13, 14, 15), qk_vd8);
    }
  memcpy (lanes, &lo, sizeof lo);
  memcpy (lanes + 8, &hi, sizeof hi);
  return i;
}

/**
 * quark_kernel_int_sq_error_f32: (skip)
 * @x: @n floats
 * @n: the number of elements
 * @params: scale, zero point and code range
 *
 * The squared error of quantizing @x with @params and dequantizing:
 * Σ (x − (q − z) · s)², q the code of quark_kernel_quantize_int_f32(), each
 * term in binary32 (as torch's `mse_loss` computes its terms) and summed
 * in binary64 in a fixed order: element i into partial sum i mod 16, the
 * sixteen partial sums then added in order (so the vector path, which
 * keeps the sixteen sums in its lanes, gives the same bits as the scalar
 * one). The dequantization multiplies by @params->scale. The MSE searches
 * of Brevitas's quantizers call this once per candidate scale.
 *
 * Returns: the sum of the squared errors
 */
double
quark_kernel_int_sq_error_f32 (const float                *x,
                               size_t                      n,
                               const QuarkKernelIntParams *params)
{
  double lanes[QK_LANES] = { 0 };
  size_t i = 0;

  if (params->round == QUARK_ROUND_HALF_EVEN && qk_vector_range (params))
    i = qk_sq_error_vec (x, n, params, lanes);
  return qk_sq_error_total (x, i, n, params, lanes);
}

/**
 * quark_kernel_quantize_int_bf16: (skip)
 * @x: @n bfloat16 values, all finite
 * @n: the number of elements
 * @params: scale, zero point and code range
 * @out_dtype: the storage type of @out
 * @out: room for @n codes of @out_dtype
 *
 * quark_kernel_quantize_int_f32() on bfloat16 input, widened in registers,
 * so no binary32 copy of the tensor is made. The results are those of
 * widening first (checked by the test suite).
 *
 * Returns: %false if @out_dtype is not an integer storage type
 */
bool
quark_kernel_quantize_int_bf16 (const uint16_t             *x,
                                size_t                      n,
                                const QuarkKernelIntParams *params,
                                QuarkDType                  out_dtype,
                                void                       *out)
{
  size_t done = 0;

  if (!qk_store_supported (out_dtype))
    return false;
  if (params->round == QUARK_ROUND_HALF_EVEN && qk_vector_range (params))
    switch (quark_dtype_get_element_size (out_dtype))
      {
      case 1:
        qk_quantize_bf16_u8 (x, n, params, out, &done);
        break;
      case 2:
        qk_quantize_bf16_u16 (x, n, params, out, &done);
        break;
      default:
        qk_quantize_bf16_i32 (x, n, params, out, &done);
        break;
      }
  for (size_t i = done; i < n; i++)
    qk_store (out_dtype, out, i, qk_quantize_one (qk_bf16 (x[i]), params, i));
  return true;
}

/* The parameters of group g: its scale (the inverse as 1.0f / scale), its
 * zero point, and its place in the stochastic stream. */
static inline QuarkKernelIntParams
qk_group_params (const QuarkKernelIntParams *p, const float *scales, const float *zero_points,
                 size_t g, size_t start)
{
  QuarkKernelIntParams q = *p;
  q.scale = scales[g];
  q.inv_scale = 1.0f / scales[g];
  if (zero_points)
    q.zero_point = zero_points[g];
  q.offset = p->offset + start;
  return q;
}

/* The multiplier of each of @n groups: the scale when dividing, otherwise
 * 1.0f / scale, 16 divisions at a time (the same correctly rounded
 * quotients as one at a time). */
QK_INLINE void
qk_group_multipliers (const float *scales, size_t n, bool divide, float *mul)
{
  size_t g = 0;

  if (!divide)
    for (; g + QK_LANES <= n; g += QK_LANES)
      {
        qk_vf s;
        memcpy (&s, scales + g, sizeof s);
        s = qk_splat (1.0f) / s;
        memcpy (mul + g, &s, sizeof s);
      }
  for (; g < n; g++)
    mul[g] = divide ? scales[g] : 1.0f / scales[g];
}

QK_INLINE QkIntLanes
qk_lanes_with_zp (QkIntLanes l, bool add_zp)
{
  l.add_zp = add_zp;
  return l;
}

/* Runs BODY for each group of a row with G (its index), START, LEN and L,
 * its lanes (multiplier and zero point set); the multipliers are computed
 * 64 groups at a time. BODY calls a loop as
 * L.add_zp ? LOOP (..., qk_lanes_with_zp (L, true)) : LOOP (..., qk_lanes_with_zp (L, false))
 * so that each loop is compiled with and without the addition. */
#define QK_GROUP_CHUNK 64
#define QK_FOR_EACH_GROUP(X_N, GROUP, P, SCALES, ZPS, G, START, LEN, L, BODY) \
  do { \
    const QkIntLanes qk_base_ = qk_int_lanes_init ((P), false); \
    const size_t qk_groups_ = ((X_N) + (GROUP) - 1) / (GROUP); \
    float qk_mul_[QK_GROUP_CHUNK]; \
    for (size_t qk_g0_ = 0; qk_g0_ < qk_groups_; qk_g0_ += QK_GROUP_CHUNK) \
      { \
        size_t qk_ng_ = qk_groups_ - qk_g0_ < QK_GROUP_CHUNK ? qk_groups_ - qk_g0_ : QK_GROUP_CHUNK; \
        qk_group_multipliers ((SCALES) + qk_g0_, qk_ng_, (P)->divide, qk_mul_); \
        for (size_t qk_k_ = 0; qk_k_ < qk_ng_; qk_k_++) \
          { \
            const size_t G = qk_g0_ + qk_k_, START = G * (GROUP); \
            const size_t LEN = (X_N) - START < (GROUP) ? (X_N) - START : (GROUP); \
            const float qk_zp_ = (ZPS) ? (ZPS)[G] : (P)->zero_point; \
            QkIntLanes L = qk_base_; \
            L.mul = qk_splat (qk_mul_[qk_k_]); \
            L.zp = qk_splat (qk_zp_); \
            L.add_zp = qk_zp_ != 0.0f; \
            BODY \
          } \
      } \
  } while (0)

/* Runs BODY for each group of a row of whole groups with START, its first
 * element, and M and Z, its multiplier and zero point as vectors; L, the
 * lanes, are built once (DIVIDE and ADD_ZP set, constants at each use, so
 * that each loop is compiled without the tests). M and Z stay out of L:
 * GCC 12 builds a splat assigned to a member of a QkIntLanes in a loop one
 * lane at a time (sixteen masked broadcasts in the x86-64-v4 clones), and
 * a QkIntLanes copied per group goes through the stack, half of it stored
 * as 256-bit and reloaded as 512-bit vectors, which the processor cannot
 * forward; either cost a group of 128 about a third of its time. */
#define QK_FOR_EACH_GROUP_WIDE(X_N, GROUP, P, SCALES, ZPS, DIVIDE, ADD_ZP, L, START, M, Z, BODY) \
  do { \
    const size_t qk_groups_ = (X_N) / (GROUP); \
    QkIntLanes L = qk_int_lanes_init ((P), (ADD_ZP)); \
    float qk_mul_[QK_GROUP_CHUNK]; \
    L.divide = (DIVIDE); \
    for (size_t qk_g0_ = 0; qk_g0_ < qk_groups_; qk_g0_ += QK_GROUP_CHUNK) \
      { \
        const size_t qk_ng_ = qk_groups_ - qk_g0_ < QK_GROUP_CHUNK ? qk_groups_ - qk_g0_ : QK_GROUP_CHUNK; \
        qk_group_multipliers ((SCALES) + qk_g0_, qk_ng_, (DIVIDE), qk_mul_); \
        for (size_t qk_k_ = 0; qk_k_ < qk_ng_; qk_k_++) \
          { \
            const size_t START = (qk_g0_ + qk_k_) * (GROUP); \
            const qk_vf M = qk_splat (qk_mul_[qk_k_]); \
            const qk_vf Z = (ADD_ZP) ? qk_splat ((ZPS) ? (ZPS)[qk_g0_ + qk_k_] : (P)->zero_point) : L.zp; \
            BODY \
          } \
      } \
  } while (0)

/* One-byte codes of groups of a multiple of STRIDE elements (one STEP)
 * filling the row, where qk_wide_permutes(), the lanes built once
 * (QK_FOR_EACH_GROUP_WIDE; the general loop below sets them up per group):
 * NAME (x, n, group, row, p, scales, zero_points, out) is whether it took
 * the row. */
#define QK_DEFINE_U8_GROUPS_FAST(NAME, ITYPE, STEP, STRIDE) \
QK_INLINE void \
NAME##_wide (const ITYPE *x, size_t n, size_t group, size_t row, const QuarkKernelIntParams *p, \
             const float *scales, const float *zero_points, const bool divide, const bool add_zp, uint8_t *out) \
{ \
  QK_FOR_EACH_GROUP_WIDE (n, group, p, scales, zero_points, divide, add_zp, l, start, m, z, { \
    for (size_t i = start; i < start + group; i += (STRIDE)) \
      STEP (x + i, row, l, m, z, out + i); \
  }); \
} \
QK_INLINE bool \
NAME (const ITYPE *x, size_t n, size_t group, size_t row, const QuarkKernelIntParams *p, \
      const float *scales, const float *zero_points, uint8_t *out) \
{ \
  const bool zp = zero_points || p->zero_point != 0.0f; \
  if (!qk_wide_permutes () || group % (STRIDE) || n % group) \
    return false; \
  if (p->divide) \
    zp ? NAME##_wide (x, n, group, row, p, scales, zero_points, true, true, out) \
       : NAME##_wide (x, n, group, row, p, scales, zero_points, true, false, out); \
  else \
    zp ? NAME##_wide (x, n, group, row, p, scales, zero_points, false, true, out) \
       : NAME##_wide (x, n, group, row, p, scales, zero_points, false, false, out); \
  return true; \
}

QK_DEFINE_U8_GROUPS_FAST (qk_f32_u8_groups_fast, float, qk_f32_u8_step, QK_LANES)

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* 32 bfloat16 values to one-byte codes (the pairs step) */
QK_INLINE void
qk_bf16_u8_step (const uint16_t *x, size_t row, const QkIntLanes l, const qk_vf mul, const qk_vf zp, uint8_t *out)
{
  qk_quantize_bf16_u8_step (x, row, l, mul, zp, (qk_vw) { 0 } + 0xffu, out);
}

QK_DEFINE_U8_GROUPS_FAST (qk_bf16_u8_groups_fast, uint16_t, qk_bf16_u8_step, 2 * QK_LANES)
#else
#define qk_bf16_u8_groups_fast(x, n, group, row, p, scales, zero_points, out) false
#endif

/* One-byte codes of a whole row of groups in one call (int8 and the
 * sub-byte types): the loops inline here, so a group of 128 costs no call.
 * FAST (x, n, group, row, p, scales, zero_points, out) may take the row
 * first. */
#define QK_DEFINE_GROUPS_U8(NAME, ITYPE, LOOP, WIDEN, FAST) \
QK_MULTIVERSION static void \
NAME (const ITYPE *x, size_t n, size_t group, const QuarkKernelIntParams *p, \
      const float *scales, const float *zero_points, uint8_t *out) \
{ \
  const size_t row = qk_prefetch_distance (n); \
  if (FAST (x, n, group, row, p, scales, zero_points, out)) \
    return; \
  QK_FOR_EACH_GROUP (n, group, p, scales, zero_points, g, start, len, l, { \
    size_t i = l.add_zp ? LOOP (x + start, len, row, qk_lanes_with_zp (l, true), out + start) \
                        : LOOP (x + start, len, row, qk_lanes_with_zp (l, false), out + start); \
    if (i < len) \
      { \
        QuarkKernelIntParams q = qk_group_params (p, scales, zero_points, g, start); \
        for (; i < len; i++) \
          out[start + i] = (uint8_t) qk_quantize_one (WIDEN (x[start + i]), &q, i); \
      } \
  }); \
}

QK_DEFINE_GROUPS_U8 (qk_quantize_groups_u8, float, qk_quantize_vec_u8_loop, qk_widen_f32, qk_f32_u8_groups_fast)
QK_DEFINE_GROUPS_U8 (qk_quantize_groups_bf16_u8, uint16_t, qk_quantize_bf16_u8_loop, qk_bf16, qk_bf16_u8_groups_fast)

#define QK_DEFINE_QUANTIZE_GROUPS(NAME, ITYPE, U8_GROUPS, PER_CALL) \
bool \
NAME (const ITYPE *x, size_t n, size_t group, const QuarkKernelIntParams *params, \
      const float *scales, const float *zero_points, QuarkDType out_dtype, void *out) \
{ \
  size_t esize = quark_dtype_get_element_size (out_dtype); \
  if (!qk_store_supported (out_dtype) || group == 0) \
    return false; \
  if (esize == 1 && params->round == QUARK_ROUND_HALF_EVEN && qk_vector_range (params)) \
    { \
      U8_GROUPS (x, n, group, params, scales, zero_points, out); \
      return true; \
    } \
  for (size_t start = 0, g = 0; start < n; start += group, g++) \
    { \
      QuarkKernelIntParams q = qk_group_params (params, scales, zero_points, g, start); \
      PER_CALL (x + start, n - start < group ? n - start : group, &q, out_dtype, (uint8_t *) out + start * esize); \
    } \
  return true; \
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* int4/uint4 codes of 32 bfloat16 values straight into four packed words:
 * the even and odd lanes give, per word lane k, the byte e | o << 4 of
 * elements 2k and 2k + 1 (the natural nibble order once narrowed), in the
 * low byte of 16 words. The AutoAWQ order (elements 0, 2, 4, 6 in nibbles
 * 0-3, 1, 3, 5, 7 in 4-7) is the natural order of the elements so
 * permuted: quantization is element by element (to nearest even here), so
 * one permutation of the 32 input half-words (vpermw) does it, at the
 * start rather than on every word. */
QK_INLINE qk_vw
qk_int4_pair_words (const uint16_t *x, QkIntLanes l, qk_vf mul, qk_vf zp, bool reorder, bool wide)
{
  const qk_vh awq = { 0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15,
                      16, 18, 20, 22, 17, 19, 21, 23, 24, 26, 28, 30, 25, 27, 29, 31 };
  qk_vw w, even, odd;
  memcpy (&w, x, sizeof w);
  if (reorder && wide)
    w = (qk_vw) QK_SHUFFLE ((qk_vh) w, awq);
  else if (reorder)
    {
      /* the same in each 256-bit half (the permutation stays within
       * 128-bit lanes: one vpshufb each) */
      const qk_vu16 awq_half = { 0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15 };
      qk_vu16 half[2];
      memcpy (half, &w, sizeof half);
      half[0] = QK_SHUFFLE (half[0], awq_half);
      half[1] = QK_SHUFFLE (half[1], awq_half);
      memcpy (&w, half, sizeof w);
    }
  even = (qk_vw) qk_int_lanes_finite ((qk_vf) (w << 16), l, mul, zp);
  odd = (qk_vw) qk_int_lanes_finite ((qk_vf) (w & 0xffff0000u), l, mul, zp);
  return ((even & 0xfu) | (odd << 4)) & 0xffu;
}

/* qk_int4_pair_words() on 16 values in 256-bit vectors: the pair bytes of
 * elements 2k and 2k + 1 in the low byte of 8 words. */
QK_INLINE qk_v8u32
qk_int4_pair_words8 (const uint16_t *x, const QkIntLanes8 *l, bool reorder)
{
  const qk_vu16 awq_half = { 0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15 };
  qk_v8u32 w, even, odd;
  memcpy (&w, x, sizeof w);
  if (reorder)
    w = (qk_v8u32) QK_SHUFFLE ((qk_vu16) w, awq_half);
  even = (qk_v8u32) qk_int_lanes8_finite ((qk_v8f) (w << 16), l);
  odd = (qk_v8u32) qk_int_lanes8_finite ((qk_v8f) (w & 0xffff0000u), l);
  return ((even & 0xfu) | (odd << 4)) & 0xffu;
}

/* qk_int4_pack128() in 256-bit vectors, 64 values (8 words) at a time:
 * part k of 16 values goes to byte k of every word, so word j holds the
 * pair bytes 8k + j at byte 4j + k; a byte transpose in each 128-bit lane
 * (vpshufb) makes dword 4m + k of lane m hold parts k's pairs 4m to 4m + 3,
 * and a permute of dwords (vpermd) puts them in order. */
QK_INLINE void
qk_int4_pack64_8 (const uint16_t *x, const QkIntLanes8 *l, bool reorder, int32_t *words)
{
  const qk_v32u8 bytes_half = {
     0,  4,  8, 12,  1,  5,  9, 13,  2,  6, 10, 14,  3,  7, 11, 15,
    16, 20, 24, 28, 17, 21, 25, 29, 18, 22, 26, 30, 19, 23, 27, 31 };
  const qk_v8u32 order = { 0, 4, 1, 5, 2, 6, 3, 7 };
  qk_v8u32 a = qk_int4_pair_words8 (x, l, reorder)
               | qk_int4_pair_words8 (x + 16, l, reorder) << 8
               | qk_int4_pair_words8 (x + 32, l, reorder) << 16
               | qk_int4_pair_words8 (x + 48, l, reorder) << 24;
  a = (qk_v8u32) QK_SHUFFLE ((qk_v32u8) a, bytes_half);
  a = QK_SHUFFLE (a, order);
  memcpy (words, &a, sizeof a);
}

/* 128 values into 16 packed words, which the interleave handles together;
 * @wide: qk_wide_permutes () (without it, qk_int4_pack64_8() twice) */
QK_INLINE void
qk_int4_pack128 (const uint16_t *x, const QkIntLanes l, qk_vf mul, qk_vf zp, bool reorder, bool wide,
                 int32_t *words)
{
  /* byte k of word j: the pair byte j of part k; a byte transpose in each
   * 128-bit lane makes word 4g + k the packed word g of part k, and a word
   * transpose puts it at 4k + g */
  const qk_v64u8 bytes_t = {
     0,  4,  8, 12,  1,  5,  9, 13,  2,  6, 10, 14,  3,  7, 11, 15,
    16, 20, 24, 28, 17, 21, 25, 29, 18, 22, 26, 30, 19, 23, 27, 31,
    32, 36, 40, 44, 33, 37, 41, 45, 34, 38, 42, 46, 35, 39, 43, 47,
    48, 52, 56, 60, 49, 53, 57, 61, 50, 54, 58, 62, 51, 55, 59, 63 };
  const qk_vw words_t = { 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15 };
  qk_vw packed;
  if (!wide)
    {
      QkIntLanes8 h = qk_int_lanes8_init (&l);
      memcpy (&h.mul, &mul, sizeof h.mul);
      memcpy (&h.zp, &zp, sizeof h.zp);
      qk_int4_pack64_8 (x, &h, reorder, words);
      qk_int4_pack64_8 (x + 64, &h, reorder, words + 8);
      return;
    }
  packed = qk_int4_pair_words (x, l, mul, zp, reorder, wide)
           | qk_int4_pair_words (x + 32, l, mul, zp, reorder, wide) << 8
           | qk_int4_pair_words (x + 64, l, mul, zp, reorder, wide) << 16
           | qk_int4_pair_words (x + 96, l, mul, zp, reorder, wide) << 24;
  packed = (qk_vw) QK_SHUFFLE ((qk_v64u8) packed, bytes_t);
  packed = QK_SHUFFLE (packed, words_t);
  memcpy (words, &packed, sizeof packed);
}

QK_INLINE size_t
qk_quantize_bf16_int4_packed_loop (const uint16_t *x, size_t n, const QkIntLanes l,
                                   bool reorder, bool wide, int32_t *words)
{
  size_t i = 0;

  for (; i + 8 * QK_LANES <= n; i += 8 * QK_LANES)
    qk_int4_pack128 (x + i, l, l.mul, l.zp, reorder, wide, words + i / 8);
  for (; i + 2 * QK_LANES <= n; i += 2 * QK_LANES)
    {
      qk_vu8 bytes = __builtin_convertvector (qk_int4_pair_words (x + i, l, l.mul, l.zp, reorder, wide), qk_vu8);
      memcpy (words + i / 8, &bytes, sizeof bytes);
    }
  return i;
}

/* Rows of whole groups of a multiple of 128 values on 256-bit vectors
 * (processors without AVX-512; qk_int4_groups128_wide() below for the
 * others): the group loop compiled for each choice (divide or multiply,
 * zero points or not, AutoAWQ order or not) so that none is tested inside
 * it; a zero point of 0 added is harmless (it only turns −0 into +0). */
QK_INLINE void
qk_int4_groups128 (const uint16_t *x, size_t n, size_t group, const QuarkKernelIntParams *p,
                   const float *scales, const float *zero_points, const bool divide, const bool add_zp,
                   const bool reorder, int32_t *words)
{
  const size_t row = qk_prefetch_distance (n);

  QK_FOR_EACH_GROUP (n, group, p, scales, zero_points, g, start, len, l, {
    QkIntLanes lc = l;
    QkIntLanes8 h;
    (void) g;
    lc.divide = divide;
    lc.add_zp = add_zp;
    h = qk_int_lanes8_init (&lc);
    for (size_t i = 0; i < len; i += 64)
      {
        QK_PREFETCH_NEXT_ROW (x + start + i + row);
        QK_PREFETCH_NEXT_ROW (x + start + i + row + 32);
        qk_int4_pack64_8 (x + start + i, &h, reorder, words + (start + i) / 8);
      }
  });
}

/* The same where qk_wide_permutes(), the lanes built once
 * (QK_FOR_EACH_GROUP_WIDE). */
QK_INLINE void
qk_int4_groups128_wide (const uint16_t *x, size_t n, size_t group, const QuarkKernelIntParams *p,
                        const float *scales, const float *zero_points, const bool divide,
                        const bool add_zp, const bool reorder, int32_t *words)
{
  const size_t row = qk_prefetch_distance (n);

  QK_FOR_EACH_GROUP_WIDE (n, group, p, scales, zero_points, divide, add_zp, l, start, m, z, {
    for (size_t i = 0; i < group; i += 8 * QK_LANES)
      {
        for (size_t k = 0; k < 8 * QK_LANES; k += QK_LINE / 2)
          QK_PREFETCH_NEXT_ROW (x + start + i + k + row);
        qk_int4_pack128 (x + start + i, l, m, z, reorder, true, words + (start + i) / 8);
      }
  });
}

QK_MULTIVERSION static void
qk_quantize_groups_bf16_int4_packed (const uint16_t *x, size_t n, size_t group,
                                     const QuarkKernelIntParams *p, const float *scales,
                                     const float *zero_points, QuarkDType dtype, bool reorder,
                                     int32_t *words)
{
  const bool wide = qk_wide_permutes ();

  if (group % (8 * QK_LANES) == 0 && n % group == 0)
    {
      const bool zp = zero_points || p->zero_point != 0.0f;
#define QK_INT4_ROWS(D, Z, R) \
  (wide ? qk_int4_groups128_wide (x, n, group, p, scales, zero_points, D, Z, R, words) \
        : qk_int4_groups128 (x, n, group, p, scales, zero_points, D, Z, R, words))
      if (p->divide)
        {
          if (zp)
            reorder ? QK_INT4_ROWS (true, true, true) : QK_INT4_ROWS (true, true, false);
          else
            reorder ? QK_INT4_ROWS (true, false, true) : QK_INT4_ROWS (true, false, false);
        }
      else
        {
          if (zp)
            reorder ? QK_INT4_ROWS (false, true, true) : QK_INT4_ROWS (false, true, false);
          else
            reorder ? QK_INT4_ROWS (false, false, true) : QK_INT4_ROWS (false, false, false);
        }
#undef QK_INT4_ROWS
      return;
    }
  QK_FOR_EACH_GROUP (n, group, p, scales, zero_points, g, start, len, l, {
    size_t i = l.add_zp
      ? qk_quantize_bf16_int4_packed_loop (x + start, len, qk_lanes_with_zp (l, true), reorder, wide,
                                           words + start / 8)
      : qk_quantize_bf16_int4_packed_loop (x + start, len, qk_lanes_with_zp (l, false), reorder, wide,
                                           words + start / 8);
    /* the rest of the group (a multiple of 8): codes, then packed */
    for (size_t rest = i; rest < len; rest += 32)
      {
        int8_t codes[32];
        size_t m = len - rest < 32 ? len - rest : 32;
        QuarkKernelIntParams q = qk_group_params (p, scales, zero_points, g, start + rest);
        quark_kernel_quantize_int_bf16 (x + start + rest, m, &q, dtype, codes);
        quark_kernel_pack_int4 (codes, 1, m, reorder, words + (start + rest) / 8);
      }
  });
}
#endif

/**
 * quark_kernel_quantize_pack_int4_groups_bf16: (skip)
 * @x: @n bfloat16 values, all finite
 * @n: the number of elements, a multiple of 8
 * @group: elements per group (the last group may be shorter)
 * @params: code range, rounding, seed, offset and order
 * @scales: one scale per group
 * @zero_points: (nullable): one zero point per group, or %NULL
 * @dtype: %QUARK_DTYPE_INT4 or %QUARK_DTYPE_UINT4
 * @reorder: pack with the AutoAWQ interleave, as quark_kernel_pack_int4()
 * @words: room for @n / 8 words
 *
 * quark_kernel_quantize_int_groups_bf16() followed by
 * quark_kernel_pack_int4() on one row, in one pass without the
 * intermediate codes when groups are multiples of 8 elements.
 *
 * Returns: %false if @n is not a multiple of 8, @group is 0 or @dtype is
 *   not a 4-bit integer type
 */
bool
quark_kernel_quantize_pack_int4_groups_bf16 (const uint16_t             *x,
                                             size_t                      n,
                                             size_t                      group,
                                             const QuarkKernelIntParams *params,
                                             const float                *scales,
                                             const float                *zero_points,
                                             QuarkDType                  dtype,
                                             bool                        reorder,
                                             int32_t                    *words)
{
  if (n % 8 || group == 0 || (dtype != QUARK_DTYPE_INT4 && dtype != QUARK_DTYPE_UINT4))
    return false;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (group % 8 == 0)
    {
      /* qk_int_lanes is half to even within ±2^22; others: the scalar loop */
      if (params->round == QUARK_ROUND_HALF_EVEN)
        qk_quantize_groups_bf16_int4_packed (x, n, group, params, scales, zero_points, dtype, reorder, words);
      else
        for (size_t start = 0, g = 0; start < n; start += group, g++)
          for (size_t rest = 0; rest < group && start + rest < n; rest += 32)
            {
              int8_t codes[32];
              size_t m = group - rest < n - start - rest ? group - rest : n - start - rest;
              m = m < 32 ? m : 32;
              QuarkKernelIntParams q = qk_group_params (params, scales, zero_points, g, start + rest);
              quark_kernel_quantize_int_bf16 (x + start + rest, m, &q, dtype, codes);
              quark_kernel_pack_int4 (codes, 1, m, reorder, words + (start + rest) / 8);
            }
      return true;
    }
#endif
  {
    int8_t *codes = malloc (n);
    if (!codes)
      return false;
    quark_kernel_quantize_int_groups_bf16 (x, n, group, params, scales, zero_points, dtype, codes);
    quark_kernel_pack_int4 (codes, 1, n, reorder, words);
    free (codes);
  }
  return true;
}

/**
 * quark_kernel_quantize_int_groups_f32: (skip)
 * @x: @n floats, all finite
 * @n: the number of elements
 * @group: elements per group (the last group may be shorter)
 * @params: code range, rounding, seed, offset and order (the scale and zero
 *   point fields are ignored)
 * @scales: one scale per group
 * @zero_points: (nullable): one zero point per group, or %NULL for
 *   @params's zero point in every group
 * @out_dtype: the storage type of @out
 * @out: room for @n codes of @out_dtype
 *
 * Per-group integer quantization of a row in one call: group g is
 * quantized as by quark_kernel_quantize_int_f32() with scale scales[g],
 * inverse 1.0f / scales[g] and zero point zero_points[g], its elements
 * keeping their index in the row for stochastic rounding.
 *
 * Returns: %false if @out_dtype is not an integer storage type or @group is 0
 */
QK_DEFINE_QUANTIZE_GROUPS (quark_kernel_quantize_int_groups_f32, float, qk_quantize_groups_u8,
                           quark_kernel_quantize_int_f32)

/**
 * quark_kernel_quantize_int_groups_bf16: (skip)
 * @x: @n bfloat16 values, all finite
 * @n: the number of elements
 * @group: elements per group (the last group may be shorter)
 * @params: code range, rounding, seed, offset and order
 * @scales: one scale per group
 * @zero_points: (nullable): one zero point per group, or %NULL
 * @out_dtype: the storage type of @out
 * @out: room for @n codes of @out_dtype
 *
 * quark_kernel_quantize_int_groups_f32() on bfloat16 input.
 *
 * Returns: %false if @out_dtype is not an integer storage type or @group is 0
 */
QK_DEFINE_QUANTIZE_GROUPS (quark_kernel_quantize_int_groups_bf16, uint16_t, qk_quantize_groups_bf16_u8,
                           quark_kernel_quantize_int_bf16)

static inline int32_t
qk_load_code (QuarkDType dt, const void *q, size_t i)
{
  switch (dt)
    {
    case QUARK_DTYPE_I8:
    case QUARK_DTYPE_INT2: case QUARK_DTYPE_INT3: case QUARK_DTYPE_INT4:
    case QUARK_DTYPE_INT5: case QUARK_DTYPE_INT6: case QUARK_DTYPE_INT7:
      return ((const int8_t *) q)[i];
    case QUARK_DTYPE_U8:
    case QUARK_DTYPE_UINT2: case QUARK_DTYPE_UINT3: case QUARK_DTYPE_UINT4:
    case QUARK_DTYPE_UINT5: case QUARK_DTYPE_UINT6: case QUARK_DTYPE_UINT7:
      return ((const uint8_t *) q)[i];
    case QUARK_DTYPE_I16:
      return ((const int16_t *) q)[i];
    case QUARK_DTYPE_U16:
      return ((const uint16_t *) q)[i];
    default:
      return ((const int32_t *) q)[i];
    }
}

/**
 * quark_kernel_dequantize_int_f32: (skip)
 * @q: @n codes of @q_dtype
 * @q_dtype: the storage type of @q
 * @n: the number of elements
 * @scale: the scale s
 * @zero_point: the zero point z
 * @out: room for @n floats
 *
 * Dequantizes integer codes: x̂ = (q − z) · s, with q − z formed exactly as an
 * integer and one binary32 multiply.
 *
 * Returns: %false if @q_dtype is not an integer storage type
 */
bool
quark_kernel_dequantize_int_f32 (const void *q,
                                 QuarkDType  q_dtype,
                                 size_t      n,
                                 float       scale,
                                 int32_t     zero_point,
                                 float      *out)
{
  if (!qk_store_supported (q_dtype))
    return false;
  for (size_t i = 0; i < n; i++)
    out[i] = (float) ((int64_t) qk_load_code (q_dtype, q, i) - zero_point) * scale;
  return true;
}
