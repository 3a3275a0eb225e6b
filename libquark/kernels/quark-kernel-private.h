/* quark-kernel-private.h: build helpers shared by the kernel sources
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

/* Hot loops are compiled for several x86-64 levels and picked at load time
 * (GNU ifunc): the vector extensions then map to AVX-512 or AVX2 registers.
 * Every clone performs the same IEEE operations in the same order, without
 * contraction (-ffp-contract=off), so all produce identical bits; the test
 * suite compares them with the scalar reference on whatever machine runs it.
 *
 * GCC 12 lowers generic vectors for the default target before making the
 * clones: a 16-lane comparison whose result is used as a value (or-ed,
 * added, narrowed) becomes lane-by-lane code in every clone. Use comparisons
 * only inside selections (qk_select, qk_select_i), masks from sign bits,
 * qk_max/qk_min for maxima, and mask values before narrowing them; then
 * check the .arch_x86_64_v4 clone's disassembly. */
/* The kernels are compiled at -O2 whatever the build type: GCC 12 at -O3
 * turns the lane-wise helpers below into one scalar operation per lane
 * (5-10 times slower), and at -O0 leaves them as loops.
 * tools/check-targets.sh checks that a release build keeps the speed. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(QK_KEEP_OPTIMIZE)
#pragma GCC optimize ("O2", "fp-contract=off", "no-math-errno")
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__) && !defined(QK_NO_MULTIVERSION)
/* (not under ThreadSanitizer: its runtime is not up yet when the dynamic
 * linker runs the clones' IFUNC resolvers, which then crash; and not with
 * -DQK_NO_MULTIVERSION, which tools/check-targets.sh uses to test the
 * code each clone gets, one -march at a time) */
#define QK_MULTIVERSION __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define QK_CLONES 1
/* A kernel that runs only where qk_wide_permutes() is true (its caller
 * checks): built for x86-64-v4 alone, not cloned, so that the other clones
 * do not carry 512-bit code they never run (the x86-64-v3 and baseline
 * forms of such a kernel were 17 times the size of the one that runs) */
#define QK_WIDE_ONLY __attribute__ ((target ("arch=x86-64-v4")))
#else
#define QK_MULTIVERSION
#define QK_WIDE_ONLY
#endif

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Functions the kernel files share and nothing else sees: hidden even
 * where target_clones would export them (its IFUNC symbols ignore
 * -fvisibility=hidden). */
#define QK_PRIVATE __attribute__ ((visibility ("hidden")))

/* Helpers that take or return vectors are always inlined, so that they are
 * compiled for the target of the clone that uses them (a vector passed
 * between functions built for different targets would change the ABI). */
#define QK_INLINE static inline __attribute__ ((always_inline))

/* Whether the kernels' 512-bit vectors are registers here and a permute of
 * one by 8- or 16-bit lanes is one instruction: with AVX512BW (vpshufb
 * zmm, vpermw, vpermi2w), not with AVX2, where GCC 12 builds such permutes
 * one lane at a time and keeps 512-bit values that live across loop steps
 * in memory. Where it is false, the hot kernels take forms written on
 * 256-bit vectors (qk_v8f and the types below), with the same results
 * (docs/performance.md lists them). With the clones, the x86-64-v4 clone
 * runs exactly when the processor has AVX512BW; without them, the target
 * the file is compiled for decides. */
QK_INLINE bool
qk_wide_permutes (void)
{
#if defined(QK_CLONES)
  return __builtin_cpu_supports ("avx512bw");
#elif defined(__AVX512BW__) && !defined(__clang__)
  return true;
#else
  return false;
#endif
}

/* Whether a lookup of 16 bytes by a vector of byte indices is one
 * instruction (pshufb, SSSE3; here from AVX2 on, so that the x86-64-v3
 * and v4 clones have it and the baseline one does not). */
QK_INLINE bool
qk_byte_lookups (void)
{
#if defined(QK_CLONES)
  return __builtin_cpu_supports ("avx2");
#elif defined(__AVX2__) && !defined(__clang__)
  return true;
#else
  return false;
#endif
}

/* The next row, asked for while this one is worked on in cache. A tensor
 * is quantized row after row (each thread its own run of rows), and the
 * kernels that read a row twice (statistics, then codes) find it in cache
 * the second time: prefetching the next row's lines from that second pass
 * keeps the memory busy while the arithmetic runs, where otherwise the two
 * took turns. Taken in the forms for processors without AVX512BW (AMD
 * Zen 1: int8 per channel went from 0.45 to 0.7 of memcpy's rate). @p is
 * the element a row's length past the one being read
 * (qk_prefetch_distance()); a prefetch never faults, so the last row's
 * (past the tensor) are harmless. */
#define QK_PREFETCH_NEXT_ROW(p) __builtin_prefetch ((p), 0, 3)

/* The cache line, in bytes (x86-64, AArch64's common cores) */
#define QK_LINE 64

/* The distance to prefetch at for a row (or call) of @n elements: @n when
 * a row is short enough to stay in cache between the two passes (up to
 * 64 Ki elements), else 0 (a prefetch of the line being read, which does
 * nothing): a call over a whole tensor would ask for what lies past it. */
QK_INLINE size_t
qk_prefetch_distance (size_t n)
{
  return n <= 65536 ? n : 0;
}

/* The vector width of the kernels: 16 binary32 lanes, one AVX-512 register
 * (two AVX2 registers, four SSE registers). */
#define QK_LANES 16
typedef float    qk_vf  __attribute__ ((vector_size (QK_LANES * sizeof (float))));
typedef int32_t  qk_vi  __attribute__ ((vector_size (QK_LANES * sizeof (int32_t))));
typedef uint32_t qk_vu  __attribute__ ((vector_size (QK_LANES * sizeof (uint32_t))));
typedef uint16_t qk_vu16 __attribute__ ((vector_size (QK_LANES * sizeof (uint16_t))));
typedef uint8_t  qk_vu8 __attribute__ ((vector_size (QK_LANES)));

/* Adding and subtracting 1.5 * 2^23 rounds a binary32 of magnitude below
 * 2^22 to an integer, to nearest even, in the default rounding mode. */
#define QK_ROUND_MAGIC 12582912.0f

/* 0 + v in every lane (as `zero + v` gives: -0 becomes +0), by a
 * shuffle of lane 0: GCC 12 makes it one broadcast in every clone. (An
 * initializer { u, u, ... } it builds one lane at a time, sixteen masked
 * broadcasts, in the x86-64-v4 clones of the kernels; `zero + v`, lane by
 * lane through the stack for AVX2.) */
#define QK_ZEROS16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
QK_INLINE qk_vf
qk_splat (float v)
{
  const qk_vf u = { 0.0f + v };
  return __builtin_shufflevector (u, u, QK_ZEROS16);
}

QK_INLINE qk_vi
qk_splat_i (int32_t v)
{
  qk_vi zero = { 0 };
  return zero + v;
}

/* Lane-wise mask ? a : b (GCC's C front end has no vector ?:). */
QK_INLINE qk_vf
qk_select (qk_vi mask, qk_vf a, qk_vf b)
{
  return (qk_vf) (((qk_vi) a & mask) | ((qk_vi) b & ~mask));
}

/* 32 half-words and 16 words in one 512-bit vector. */
typedef uint16_t qk_vh __attribute__ ((vector_size (64)));
typedef uint32_t qk_vw __attribute__ ((vector_size (64)));
typedef uint8_t  qk_v64u8 __attribute__ ((vector_size (64)));
typedef uint8_t  qk_v32u8 __attribute__ ((vector_size (32)));
typedef uint32_t qk_v8u32 __attribute__ ((vector_size (32)));

/* Lane-wise maximum and minimum. GCC's C front end has no vector ?: and does
 * not turn the mask-select idiom into a max, but it does turn these lane
 * loops into one instruction (vmaxps, vpmaxuw, vpmaxud). The float
 * forms are exactly a > b ? a : b (a < b ? a : b): when a lane of @a is NaN
 * they give @b, which is also what vmaxps/vminps do. */
#define QK_DEFINE_LANEWISE(NAME, VTYPE, OP) \
QK_INLINE VTYPE \
NAME (VTYPE a, VTYPE b) \
{ \
  VTYPE r; \
  for (unsigned j = 0; j < sizeof (VTYPE) / sizeof (a[0]); j++) \
    r[j] = a[j] OP b[j] ? a[j] : b[j]; \
  return r; \
}
QK_DEFINE_LANEWISE (qk_max, qk_vf, >)
QK_DEFINE_LANEWISE (qk_min, qk_vf, <)
QK_DEFINE_LANEWISE (qk_max_h, qk_vh, >)
QK_DEFINE_LANEWISE (qk_min_h, qk_vh, <)
QK_DEFINE_LANEWISE (qk_max_w, qk_vw, >)
QK_DEFINE_LANEWISE (qk_min_w, qk_vw, <)

QK_INLINE qk_vi
qk_select_i (qk_vi mask, qk_vi a, qk_vi b)
{
  return (a & mask) | (b & ~mask);
}

/* QK_SHUFFLE (v, mask) and QK_SHUFFLE2 (a, b, mask) are GCC's
 * __builtin_shuffle. Clang has no __builtin_shuffle with a mask vector, so
 * for the clang builds (libFuzzer) they are a lane loop with the same
 * result: lane i takes element mask[i] modulo the lane count (of a, then b,
 * for the two-operand form). (The result's type is the operand's without
 * a const qualifier: `+ 0` drops it.) */
#if defined(__clang__)
#define QK_SHUFFLE(v, mask) \
  ({ __typeof__ ((v) + 0) qk_r_; const int qk_n_ = (int) (sizeof (qk_r_) / sizeof (qk_r_[0])); \
     for (int qk_i_ = 0; qk_i_ < qk_n_; qk_i_++) \
       qk_r_[qk_i_] = (v)[(mask)[qk_i_] & (qk_n_ - 1)]; \
     qk_r_; })
#define QK_SHUFFLE2(a, b, mask) \
  ({ __typeof__ ((a) + 0) qk_r_; const int qk_n_ = (int) (sizeof (qk_r_) / sizeof (qk_r_[0])); \
     for (int qk_i_ = 0; qk_i_ < qk_n_; qk_i_++) \
       { int qk_k_ = (int) ((mask)[qk_i_] & (2 * qk_n_ - 1)); \
         qk_r_[qk_i_] = qk_k_ < qk_n_ ? (a)[qk_k_] : (b)[qk_k_ - qk_n_]; } \
     qk_r_; })
#else
#define QK_SHUFFLE(v, mask) __builtin_shuffle (v, mask)
#define QK_SHUFFLE2(a, b, mask) __builtin_shuffle (a, b, mask)
#endif

#include "quark-kernels.h"

/* The absolute maxima (bfloat16 bits, in the low half of each word) of 16
 * consecutive blocks of @block = 32 r values (MX blocks, groups of 128),
 * one vector each once its r vectors are folded by maxima, reduced
 * together: each step takes the low and the high half of every block's
 * lanes from two vectors and keeps their maximum, halving the lanes per
 * block (16, 8, 4, 2, then 1) while keeping the blocks in order. */
typedef uint64_t qk_vq __attribute__ ((vector_size (64)));

/* 256-bit vectors, for the forms of the kernels taken where the processor
 * lacks AVX-512 (qk_wide_permutes() false): GCC 12 keeps 512-bit vectors
 * in memory there between steps, and builds some of their permutes
 * through general registers. */
typedef uint16_t qk_v16u16 __attribute__ ((vector_size (32)));
typedef uint64_t qk_v4u64 __attribute__ ((vector_size (32)));
typedef float    qk_v8f __attribute__ ((vector_size (32)));
typedef int32_t  qk_v8i __attribute__ ((vector_size (32)));
typedef uint16_t qk_v8u16 __attribute__ ((vector_size (16)));
QK_DEFINE_LANEWISE (qk_max_h256, qk_v16u16, >)
QK_DEFINE_LANEWISE (qk_min_h256, qk_v16u16, <)
QK_DEFINE_LANEWISE (qk_max_w256, qk_v8u32, >)
QK_DEFINE_LANEWISE (qk_max8, qk_v8f, >)
QK_DEFINE_LANEWISE (qk_min8, qk_v8f, <)
QK_DEFINE_LANEWISE (qk_max_i8, qk_v8i, >)
QK_DEFINE_LANEWISE (qk_min_i8, qk_v8i, <)

/* The maxima of 16 blocks of bfloat16 bits (qk_bf16_maxima16_as()) are
 * taken over one of three keys, all orders of 16-bit unsigned integers:
 * QK_KEY_ABS the magnitude bits (|x|'s order; infinity above every finite
 * value, NaN above infinity), QK_KEY_ORDER x's own order (the sign bit
 * flipped for x >= +0, every bit for x <= -0: -0 sorts just below +0,
 * negative NaNs at the bottom, positive ones at the top) and QK_KEY_REVERSE
 * its reverse (the complement of QK_KEY_ORDER), whose maximum is the key of
 * the minimum. qk_bf16_from_key() takes a key of either order back to the
 * bits. */
enum { QK_KEY_ABS, QK_KEY_ORDER, QK_KEY_REVERSE };
#define QK_DEFINE_BF16_KEY(NAME, VTYPE) \
QK_INLINE VTYPE \
NAME (VTYPE v, int key) \
{ \
  if (key == QK_KEY_ABS) \
    return v & 0x7fff; \
  if (key == QK_KEY_ORDER) \
    return v ^ ((0 - (v >> 15)) | 0x8000); \
  return v ^ (((v >> 15) - 1) & 0x7fff); \
}
QK_DEFINE_BF16_KEY (qk_bf16_key, qk_vh)
QK_DEFINE_BF16_KEY (qk_bf16_key256, qk_v16u16)

static inline uint16_t
qk_bf16_from_key (uint16_t k, int key)
{
  if (key == QK_KEY_REVERSE)
    k = (uint16_t) ~k;
  return (uint16_t) (k & 0x8000 ? k ^ 0x8000 : ~k);
}

/* qk_bf16_maxima16() in 256-bit vectors, for processors without AVX512BW:
 * GCC 12 builds the 64-bit-lane permutes of two 512-bit vectors there
 * through general registers, and keeps 512-bit vectors in memory between
 * steps. Each block folds into one vector of 16 half-words; the steps take
 * the 128-bit halves of two blocks (vperm2i128), then their 64-bit (vpunpck)
 * and 32-bit halves, and last the two half-words of each word, leaving the
 * blocks in the order 0 2 4 6 1 3 5 7 in each of two vectors, which one
 * permute of 32-bit lanes (vpermd) puts right. */
QK_INLINE qk_vw
qk_bf16_maxima16_256 (const uint16_t *x, size_t block, int key)
{
  const qk_v4u64 lo1 = { 0, 1, 4, 5 }, hi1 = { 2, 3, 6, 7 };
  const qk_v4u64 lo2 = { 0, 4, 2, 6 }, hi2 = { 1, 5, 3, 7 };
  const qk_v8u32 lo3 = { 0, 2, 8, 10, 4, 6, 12, 14 }, hi3 = { 1, 3, 9, 11, 5, 7, 13, 15 };
  const qk_v8u32 order = { 0, 4, 1, 5, 2, 6, 3, 7 };
  qk_v16u16 v[16];
  qk_v8u32 o[2];
  qk_vw res;

  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 16; k++)
    {
      qk_v16u16 a, b;
      memcpy (&a, x + k * block, sizeof a);
      memcpy (&b, x + k * block + 16, sizeof b);
      v[k] = qk_max_h256 (qk_bf16_key256 (a, key), qk_bf16_key256 (b, key));
      for (size_t r = 32; r < block; r += 32)
        {
          memcpy (&a, x + k * block + r, sizeof a);
          memcpy (&b, x + k * block + r + 16, sizeof b);
          v[k] = qk_max_h256 (v[k], qk_max_h256 (qk_bf16_key256 (a, key), qk_bf16_key256 (b, key)));
        }
    }
#define QK_HALVE(A, B, LO, HI, T) \
  qk_max_h256 ((qk_v16u16) QK_SHUFFLE2 ((T) (A), (T) (B), LO), (qk_v16u16) QK_SHUFFLE2 ((T) (A), (T) (B), HI))
  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 8; k++)
    v[k] = QK_HALVE (v[2 * k], v[2 * k + 1], lo1, hi1, qk_v4u64);
  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 4; k++)
    v[k] = QK_HALVE (v[2 * k], v[2 * k + 1], lo2, hi2, qk_v4u64);
  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 2; k++)
    {
      qk_v8u32 m = (qk_v8u32) QK_HALVE (v[2 * k], v[2 * k + 1], lo3, hi3, qk_v8u32);
      o[k] = QK_SHUFFLE (qk_max_w256 (m & 0xffffu, m >> 16), order);
    }
#undef QK_HALVE
  memcpy (&res, o, sizeof res);
  return res;
}

/* The maxima of 16 vectors of keys, one block's each, in order: each
 * step takes the low and the high half of every block's lanes from two
 * vectors and keeps their maximum (the pair step on blocks 2k and 2k + 1,
 * then three steps on the eight vectors it leaves), halving the lanes per
 * block while keeping the blocks in order. The shuffles move 64-bit and
 * then 32-bit pieces, so the same steps serve 16-bit keys (bfloat16 and
 * float16 bits: qk_bf16_fold_pair(), qk_bf16_fold8(), which end with the
 * two half-words of each word) and 32-bit ones (float32 bits:
 * qk_w_fold_pair(), qk_w_fold8()). */
#define QK_HALVE(A, B, LO, HI, T, VT, MAX) \
  MAX ((VT) QK_SHUFFLE2 ((T) (A), (T) (B), LO), (VT) QK_SHUFFLE2 ((T) (A), (T) (B), HI))
#define QK_DEFINE_FOLDS(PAIR, FOLD8, VT, MAX) \
QK_INLINE VT \
PAIR (VT a, VT b) \
{ \
  const qk_vq lo1 = { 0, 1, 2, 3, 8, 9, 10, 11 }, hi1 = { 4, 5, 6, 7, 12, 13, 14, 15 }; \
  return QK_HALVE (a, b, lo1, hi1, qk_vq, VT, MAX); \
} \
QK_INLINE VT \
FOLD8 (VT *v) \
{ \
  const qk_vq lo2 = { 0, 1, 4, 5, 8, 9, 12, 13 }, hi2 = { 2, 3, 6, 7, 10, 11, 14, 15 }; \
  const qk_vq lo3 = { 0, 2, 4, 6, 8, 10, 12, 14 }, hi3 = { 1, 3, 5, 7, 9, 11, 13, 15 }; \
  const qk_vw lo4 = { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 }; \
  const qk_vw hi4 = { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31 }; \
  _Pragma ("GCC unroll 16") \
  for (int k = 0; k < 4; k++) \
    v[k] = QK_HALVE (v[2 * k], v[2 * k + 1], lo2, hi2, qk_vq, VT, MAX); \
  _Pragma ("GCC unroll 16") \
  for (int k = 0; k < 2; k++) \
    v[k] = QK_HALVE (v[2 * k], v[2 * k + 1], lo3, hi3, qk_vq, VT, MAX); \
  return QK_HALVE (v[0], v[1], lo4, hi4, qk_vw, VT, MAX); \
}
QK_DEFINE_FOLDS (qk_bf16_fold_pair, qk_h_fold8, qk_vh, qk_max_h)
QK_DEFINE_FOLDS (qk_w_fold_pair, qk_w_fold8, qk_vw, qk_max_w)
#undef QK_DEFINE_FOLDS
#undef QK_HALVE

QK_INLINE qk_vw
qk_bf16_fold8 (qk_vh *v)
{
  qk_vw w = (qk_vw) qk_h_fold8 (v);
  return qk_max_w (w & 0xffffu, w >> 16);
}

/* The maxima of the keys (QK_KEY_ABS, _ORDER or _REVERSE) of 16
 * consecutive blocks of @block elements (a multiple of 32, at most 512),
 * one per word, in order */
QK_INLINE qk_vw
qk_bf16_maxima16_as (const uint16_t *x, size_t block, int key)
{
  qk_vh v[16];

  if (!qk_wide_permutes ())
    return qk_bf16_maxima16_256 (x, block, key);
  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 16; k++)
    {
      memcpy (&v[k], x + k * block, sizeof v[k]);
      v[k] = qk_bf16_key (v[k], key);
      for (size_t r = 32; r < block; r += 32)
        {
          qk_vh u;
          memcpy (&u, x + k * block + r, sizeof u);
          v[k] = qk_max_h (v[k], qk_bf16_key (u, key));
        }
    }
  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 8; k++)
    v[k] = qk_bf16_fold_pair (v[2 * k], v[2 * k + 1]);
  return qk_bf16_fold8 (v);
}

/* The maxima of both orders' keys (QK_KEY_ORDER and QK_KEY_REVERSE) of 16
 * consecutive blocks of @block elements (a multiple of a vector's
 * elements), as qk_bf16_maxima16_as() gives them, from one read of the
 * values and one key each: the reverse key's maximum is the complement of
 * the minimum of the order's. Two blocks at a time, folded at once, to
 * keep the accumulators in registers. Defined for 16-bit keys
 * (qk_bf16_order_maxima16(): bfloat16 and float16 bits alike, both being
 * sign and magnitude) and 32-bit ones (qk_f32_order_maxima16(): float32
 * bits, whose key is the 16-bit one's widened: the sign bit flipped for
 * x >= +0, every bit for x <= -0), the latter with AVX-512 only (its
 * callers check qk_wide_permutes()). */
#define QK_DEFINE_ORDER_MAXIMA16(NAME, ETYPE, VT, KEY, MAX, MIN, PAIR, FOLD8) \
QK_INLINE void \
NAME (const ETYPE *x, size_t block, qk_vw *hi, qk_vw *lo) \
{ \
  const size_t step = sizeof (VT) / sizeof (ETYPE); \
  VT v[8], w[8]; \
  _Pragma ("GCC unroll 8") \
  for (int k = 0; k < 8; k++) \
    { \
      VT mx[2], mn[2]; \
      for (int j = 0; j < 2; j++) \
        { \
          const ETYPE *xk = x + (2 * k + j) * block; \
          memcpy (&mx[j], xk, sizeof mx[j]); \
          mn[j] = mx[j] = KEY (mx[j]); \
          for (size_t r = step; r < block; r += step) \
            { \
              VT u; \
              memcpy (&u, xk + r, sizeof u); \
              u = KEY (u); \
              mx[j] = MAX (mx[j], u); \
              mn[j] = MIN (mn[j], u); \
            } \
        } \
      v[k] = PAIR (mx[0], mx[1]); \
      w[k] = PAIR (~mn[0], ~mn[1]); \
    } \
  *hi = FOLD8 (v); \
  *lo = FOLD8 (w); \
}

QK_INLINE qk_vh
qk_bf16_order_key (qk_vh v)
{
  return qk_bf16_key (v, QK_KEY_ORDER);
}

QK_INLINE qk_vw
qk_f32_order_key (qk_vw v)
{
  return v ^ ((0 - (v >> 31)) | 0x80000000u);
}

/* float32 bits from a key of either order (qk_bf16_from_key() widened) */
static inline uint32_t
qk_f32_from_key (uint32_t k, int key)
{
  if (key == QK_KEY_REVERSE)
    k = ~k;
  return k & 0x80000000u ? k ^ 0x80000000u : ~k;
}

QK_DEFINE_ORDER_MAXIMA16 (qk_bf16_order_maxima16_512, uint16_t, qk_vh, qk_bf16_order_key, qk_max_h, qk_min_h,
                          qk_bf16_fold_pair, qk_bf16_fold8)
QK_DEFINE_ORDER_MAXIMA16 (qk_f32_order_maxima16, float, qk_vw, qk_f32_order_key, qk_max_w, qk_min_w,
                          qk_w_fold_pair, qk_w_fold8)
#undef QK_DEFINE_ORDER_MAXIMA16

QK_INLINE void
qk_bf16_order_maxima16 (const uint16_t *x, size_t block, qk_vw *hi, qk_vw *lo)
{
  if (!qk_wide_permutes ())
    {
      *hi = qk_bf16_maxima16_256 (x, block, QK_KEY_ORDER);
      *lo = qk_bf16_maxima16_256 (x, block, QK_KEY_REVERSE);
      return;
    }
  qk_bf16_order_maxima16_512 (x, block, hi, lo);
}

/* The absolute maxima (as bits) of 16 consecutive blocks */
QK_INLINE qk_vw
qk_bf16_maxima16 (const uint16_t *x, size_t block)
{
  return qk_bf16_maxima16_as (x, block, QK_KEY_ABS);
}

/* Blocks of bfloat16 values that start between cache lines. A 16-bit
 * element's offset into its line, in elements (0 when @x is at a line or
 * not at an even address). */
QK_INLINE size_t
qk_bf16_line_offset (const uint16_t *x)
{
  const uintptr_t a = (uintptr_t) x;
  return a % 2 ? 0 : (size_t) (a % QK_LINE) / 2;
}

/* The keys of one block of @block bfloat16 values at @p (a multiple of 32,
 * at least 64) that starts @o elements past a cache line (0 < @o < 32),
 * read in line-aligned vectors, as many as the block has lines' worth: the
 * line before the block's first line boundary, its lanes from @o on (with
 * @head, an unaligned load of the block's first 32 instead, which reads
 * nothing before @p), the whole lines in the block, then the line holding
 * its last @o elements, its lanes below @o (with @tail, an unaligned load
 * of the block's last 32, which reads nothing past it). @high has the
 * lanes from @o on set. Lanes of other blocks' elements are 0 in *@mx and
 * 0xFFFF in *@mn, the least and the greatest key, so that they change no
 * maximum or minimum; a lane that reads an element twice does not either.
 * Rows that start between lines cost the per-group calls most where they
 * read each row twice, statistics then codes: int4 g128 from memory
 * 10.1 ms against 8.7 ms for the same rows at a line, uint4 g128 14.1
 * against 9.7 ms (docs/performance.md, Per-group rows between lines). */
QK_INLINE void
qk_bf16_block_keys_lines (const uint16_t *p, size_t block, size_t o, qk_vh high, bool head, bool tail, int key,
                          qk_vh *mx, qk_vh *mn)
{
  const uint16_t *line = p + (32 - o);   /* the first line boundary */
  qk_vh v, lo, hi;

  if (head)
    {
      memcpy (&v, p, sizeof v);
      lo = hi = qk_bf16_key (v, key);
    }
  else
    {
      memcpy (&v, line - 32, sizeof v);
      v = qk_bf16_key (v, key);
      hi = v & high;
      lo = v | ~high;
    }
  for (size_t r = 0; r + 32 < block; r += 32)
    {
      memcpy (&v, line + r, sizeof v);
      v = qk_bf16_key (v, key);
      hi = qk_max_h (hi, v);
      lo = qk_min_h (lo, v);
    }
  if (tail)
    {
      memcpy (&v, p + block - 32, sizeof v);
      v = qk_bf16_key (v, key);
      hi = qk_max_h (hi, v);
      lo = qk_min_h (lo, v);
    }
  else
    {
      memcpy (&v, p + block - o, sizeof v);
      v = qk_bf16_key (v, key);
      hi = qk_max_h (hi, v & ~high);
      lo = qk_min_h (lo, v | high);
    }
  *mx = hi;
  *mn = lo;
}

/* The lanes from @o on */
QK_INLINE qk_vh
qk_bf16_lanes_from (size_t o)
{
  qk_vh iota;
  for (unsigned i = 0; i < sizeof iota / sizeof iota[0]; i++)
    iota[i] = (uint16_t) i;
  return (qk_vh) (iota >= (uint16_t) o);
}

/* qk_bf16_maxima16_as() (AVX-512 only) of 16 blocks of @block (a multiple
 * of 32, at least 64) that start @o elements past a line (0 < @o < 32), in
 * line-aligned reads (qk_bf16_block_keys_lines(); @high from
 * qk_bf16_lanes_from(), made once for a row): @first when nothing before
 * @x may be read, @last when the 16 blocks' end plus 32 - @o elements lies
 * past what may. */
QK_INLINE qk_vw
qk_bf16_maxima16_lines (const uint16_t *x, size_t block, int key, size_t o, qk_vh high, bool first, bool last)
{
  qk_vh v[16];

  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 16; k++)
    {
      qk_vh unused;
      qk_bf16_block_keys_lines (x + k * block, block, o, high, first && k == 0, last && k == 15, key, &v[k],
                                &unused);
    }
  _Pragma ("GCC unroll 16")
  for (int k = 0; k < 8; k++)
    v[k] = qk_bf16_fold_pair (v[2 * k], v[2 * k + 1]);
  return qk_bf16_fold8 (v);
}

/* qk_bf16_order_maxima16() (AVX-512 only) in line-aligned reads, as
 * qk_bf16_maxima16_lines() */
QK_INLINE void
qk_bf16_order_maxima16_lines (const uint16_t *x, size_t block, size_t o, qk_vh high, bool first, bool last,
                              qk_vw *hi, qk_vw *lo)
{
  qk_vh v[8], w[8];

  _Pragma ("GCC unroll 8")
  for (int k = 0; k < 8; k++)
    {
      qk_vh mx[2], mn[2];
      for (int j = 0; j < 2; j++)
        qk_bf16_block_keys_lines (x + (2 * k + j) * block, block, o, high, first && 2 * k + j == 0,
                                  last && 2 * k + j == 15, QK_KEY_ORDER, &mx[j], &mn[j]);
      v[k] = qk_bf16_fold_pair (mx[0], mx[1]);
      w[k] = qk_bf16_fold_pair (~mn[0], ~mn[1]);
    }
  *hi = qk_bf16_fold8 (v);
  *lo = qk_bf16_fold8 (w);
}

/* (a loop, which GCC 12 makes one broadcast for both AVX-512 and AVX2;
 * `zero + v` is built one lane at a time, and so is an initializer of 32-
 * or 16-bit lanes for AVX2, through the stack) */
QK_INLINE qk_vh
qk_splat_h (uint16_t v)
{
  qk_vh r;
  for (unsigned i = 0; i < sizeof r / sizeof r[0]; i++)
    r[i] = v;
  return r;
}

/* MX FP4 by table (_quark_kernel_fp_table4_init()): a block of E8M0 byte
 * B = d + 127 >= 3 is encoded from its bits alone. For a normal v,
 * t = v / 2^d has the exponent field of v minus d and the same mantissa,
 * so the entry of v is its field and two leading mantissa bits (v >> 5)
 * less K = 4 (B − 3), clamped at 0 (below: t under 2^−3, code 0), times
 * two, plus the sticky bit. It stays below 32 when B is the scale rule's
 * byte for the block (every mode takes d >= floor (log2 max |v|) − 2, so
 * t < 2^3 and the field less d is at most 129 = 124 + 5). A subnormal v
 * has v >> 5 <= 3 <= K + 3 and t < 2^−126 · 2^124, code 0, which the clamp
 * gives (that is what B >= 3 ensures). 32 elements per vpermi2w with
 * AVX512BW; without it (qk_wide_permutes() false) the entries (magnitude
 * codes of at most 7 bits) are looked up as bytes, which AVX2 permutes
 * with vpshufb (it has no permute of 16-bit lanes by a vector). */
typedef struct {
  qk_vh lo, hi;           /* the 64 entries */
  qk_v32u8 lo8, hi8;      /* the same as bytes */
  qk_v32u8 sign_bit8;     /* sign_bit in every byte */
  int sign_shift;         /* 15 − (ebits + mbits) */
  uint16_t sign_bit;
  bool permw;             /* qk_wide_permutes () */
} QkTable4;

QK_INLINE QkTable4
qk_table4_load (const QuarkFpFormat *format, const uint16_t *table4)
{
  QkTable4 t;
  memcpy (&t.lo, table4, sizeof t.lo);
  memcpy (&t.hi, table4 + 32, sizeof t.hi);
  for (int i = 0; i < 32; i++)
    {
      t.lo8[i] = (uint8_t) table4[i];
      t.hi8[i] = (uint8_t) table4[32 + i];
    }
  t.sign_shift = 15 - (format->ebits + format->mbits);
  t.sign_bit = (uint16_t) (1u << (format->ebits + format->mbits));
  /* (a byte splat of a variable is built lane by lane too) */
  memset (&t.sign_bit8, t.sign_bit, sizeof t.sign_bit8);
  t.permw = qk_wide_permutes ();
  return t;
}

/* One block of 32 values, @k = K in every lane (B the scale rule's byte for
 * it); the codes one per byte or, with @pack4, two per byte (element 2j in
 * the low nibble). */
QK_INLINE void
qk_table4_block (const QkTable4 *t, const uint16_t *x, qk_vh k, bool pack4, uint8_t *out)
{
  qk_vh v, e, idx;
  qk_vw c;
  memcpy (&v, x, sizeof v);
  e = qk_max_h ((v >> 5) & 0x3ff, k) - k;
  idx = (e << 1) | qk_min_h (v & 0x1f, qk_splat_h (1));
  if (!t->permw)
    {
      /* the codes as bytes: element j's in byte j */
      qk_v32u8 sign = -__builtin_convertvector (v >> 15, qk_v32u8) & t->sign_bit8;
      qk_v32u8 codes = QK_SHUFFLE2 (t->lo8, t->hi8, __builtin_convertvector (idx, qk_v32u8)) | sign;
      if (pack4)
        {
          qk_vu16 pairs = (qk_vu16) codes;   /* 2j's code in the low byte, 2j + 1's in the high */
          qk_vu8 bytes = __builtin_convertvector ((pairs | (pairs >> 4)) & 0xffu, qk_vu8);
          memcpy (out, &bytes, sizeof bytes);
        }
      else
        memcpy (out, &codes, sizeof codes);
      return;
    }
  c = (qk_vw) (QK_SHUFFLE2 (t->lo, t->hi, idx) | ((v >> t->sign_shift) & t->sign_bit));
  if (pack4)
    {
      /* element 2j's code in the low half-word, 2j + 1's in the high */
      qk_vu8 bytes = __builtin_convertvector ((c | (c >> 12)) & 0xffu, qk_vu8);
      memcpy (out, &bytes, sizeof bytes);
    }
  else
    {
      qk_v32u8 codes = __builtin_convertvector ((qk_vh) c & 0xff, qk_v32u8);
      memcpy (out, &codes, sizeof codes);
    }
}

/* Saturating minifloat quantization of consecutive blocks of @block
 * elements, block b divided by block_scales[b], which must be powers of two,
 * inv_scales[b] their exact inverses (quark-kernel-float.c). */
QK_PRIVATE void _quark_kernel_fp_quantize_blocks (const QuarkFpFormat *format,
                                       const float         *x,
                                       size_t               n,
                                       size_t               block,
                                       const float         *block_scales,
                                       const float         *inv_scales,
                                       uint8_t             *codes);

/* The same on bfloat16 input, widened in registers. */
QK_PRIVATE void _quark_kernel_fp_quantize_blocks_bf16 (const QuarkFpFormat *format,
                                            const uint16_t      *x,
                                            size_t               n,
                                            size_t               block,
                                            const float         *block_scales,
                                            const float         *inv_scales,
                                            uint8_t             *codes);

/* The magnitude codes of a format whose rounding of t = v / 2^d, v a
 * bfloat16, depends only on t's exponent (2^-3 to 2^4), its two leading
 * mantissa bits and whether any other is set (FP4 E2M1), 64 entries; false
 * for other formats (quark-kernel-float.c). */
QK_PRIVATE bool _quark_kernel_fp_table4_init (const QuarkFpFormat *format,
                                   uint16_t             table[64]);

/* MX rows of whole blocks of 32 bfloat16 values (quark-kernel-float.c);
 * with @table4 (from _quark_kernel_fp_table4_init(), or NULL), blocks whose
 * E8M0 byte is at least 3 are encoded by table lookup. */
QK_PRIVATE bool _quark_kernel_fp_quantize_blocks32_bf16 (const QuarkFpFormat *format,
                                              const uint16_t      *x,
                                              size_t               n_blocks,
                                              const uint8_t       *scale_bytes,
                                              const float         *inv_scales,
                                              const uint16_t      *table4,
                                              bool                 pack4,
                                              uint8_t             *out);

/* Loads of 16 binary32 values, from binary32 or (widened) bfloat16 input,
 * and the one-element widenings of the scalar tails. */
QK_INLINE qk_vf
qk_load_f32 (const float *p)
{
  qk_vf v;
  memcpy (&v, p, sizeof v);
  return v;
}

static inline float
qk_widen_f32 (float v)
{
  return v;
}

QK_INLINE qk_vf
qk_load_bf16 (const uint16_t *p)
{
  qk_vu16 h;
  qk_vu w;
  memcpy (&h, p, sizeof h);
  w = __builtin_convertvector (h, qk_vu) << 16;
  return (qk_vf) w;
}

/* Absolute maxima, as bfloat16 bit patterns, of consecutive blocks of a row
 * (quark-kernel-int.c). */
QK_PRIVATE void _quark_kernel_block_abs_max_bits_bf16 (const uint16_t *x,
                                            size_t          n,
                                            size_t          block,
                                            uint16_t       *out);

/* The same on binary32 input. */
QK_PRIVATE void _quark_kernel_block_abs_max_bits_f32 (const float *x,
                                           size_t       n,
                                           size_t       block,
                                           uint32_t    *out);
