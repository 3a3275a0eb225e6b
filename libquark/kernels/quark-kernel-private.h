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
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__) && !defined(QK_NO_MULTIVERSION)
/* (not under ThreadSanitizer: its runtime is not up yet when the dynamic
 * linker runs the clones' IFUNC resolvers, which then crash; and not with
 * -DQK_NO_MULTIVERSION, which tools/check-targets.sh uses to test the
 * code each clone gets, one -march at a time) */
#define QK_MULTIVERSION __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QK_MULTIVERSION
#endif

#include <stdint.h>
#include <string.h>

/* Helpers that take or return vectors are always inlined, so that they are
 * compiled for the target of the clone that uses them (a vector passed
 * between functions built for different targets would change the ABI). */
#define QK_INLINE static inline __attribute__ ((always_inline))

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

QK_INLINE qk_vf
qk_splat (float v)
{
  qk_vf zero = { 0 };
  return zero + v;
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

QK_INLINE qk_vi
qk_select_i (qk_vi mask, qk_vi a, qk_vi b)
{
  return (a & mask) | (b & ~mask);
}

/* QK_SHUFFLE (v, mask) and QK_SHUFFLE2 (a, b, mask) are GCC's
 * __builtin_shuffle. Clang has no __builtin_shuffle with a mask vector, so
 * for the clang builds (libFuzzer) they are a lane loop with the same
 * result: lane i takes element mask[i] modulo the lane count (of a, then b,
 * for the two-operand form). */
#if defined(__clang__)
#define QK_SHUFFLE(v, mask) \
  ({ __typeof__ (v) qk_r_; const int qk_n_ = (int) (sizeof (qk_r_) / sizeof (qk_r_[0])); \
     for (int qk_i_ = 0; qk_i_ < qk_n_; qk_i_++) \
       qk_r_[qk_i_] = (v)[(mask)[qk_i_] & (qk_n_ - 1)]; \
     qk_r_; })
#define QK_SHUFFLE2(a, b, mask) \
  ({ __typeof__ (a) qk_r_; const int qk_n_ = (int) (sizeof (qk_r_) / sizeof (qk_r_[0])); \
     for (int qk_i_ = 0; qk_i_ < qk_n_; qk_i_++) \
       { int qk_k_ = (int) ((mask)[qk_i_] & (2 * qk_n_ - 1)); \
         qk_r_[qk_i_] = qk_k_ < qk_n_ ? (a)[qk_k_] : (b)[qk_k_ - qk_n_]; } \
     qk_r_; })
#else
#define QK_SHUFFLE(v, mask) __builtin_shuffle (v, mask)
#define QK_SHUFFLE2(a, b, mask) __builtin_shuffle (a, b, mask)
#endif

#include "quark-kernels.h"

/* Saturating minifloat quantization of consecutive blocks of @block
 * elements, block b divided by block_scales[b], which must be powers of two,
 * inv_scales[b] their exact inverses (quark-kernel-float.c). */
void _quark_kernel_fp_quantize_blocks (const QuarkFpFormat *format,
                                       const float         *x,
                                       size_t               n,
                                       size_t               block,
                                       const float         *block_scales,
                                       const float         *inv_scales,
                                       uint8_t             *codes);

/* The same on bfloat16 input, widened in registers. */
void _quark_kernel_fp_quantize_blocks_bf16 (const QuarkFpFormat *format,
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
bool _quark_kernel_fp_table4_init (const QuarkFpFormat *format,
                                   uint16_t             table[64]);

/* MX rows of whole blocks of 32 bfloat16 values (quark-kernel-float.c);
 * with @table4 (from _quark_kernel_fp_table4_init(), or NULL), blocks whose
 * E8M0 byte is at least 3 are encoded by table lookup. */
bool _quark_kernel_fp_quantize_blocks32_bf16 (const QuarkFpFormat *format,
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
void _quark_kernel_block_abs_max_bits_bf16 (const uint16_t *x,
                                            size_t          n,
                                            size_t          block,
                                            uint16_t       *out);

/* The same on binary32 input. */
void _quark_kernel_block_abs_max_bits_f32 (const float *x,
                                           size_t       n,
                                           size_t       block,
                                           uint32_t    *out);
