/* quark-gguf-search.c: the k-quants' scale searches, sixteen sub-blocks at once
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ggml's make_qkx2_quants searches, for one sub-block of n values, a scale
 * and a minimum: a sequence of float operations whose sums run element by
 * element, so that one sub-block cannot be split across vector lanes
 * without changing its bits. Sixteen sub-blocks can: each lane of a
 * 16-lane vector (one AVX-512 register, two AVX2 ones) runs one
 * sub-block's whole search, the same IEEE operations in the same order as
 * the scalar code (quark-gguf-quants.c, itself ggml's), with its branches
 * as selections. A lane's sums are chains of additions that wait on the
 * adder's latency; where more sub-blocks are at hand (Q2_K, Q4_K, Q5_K,
 * eight super-blocks at a time; Q3_K up to 64, its later rounds on the
 * sub-blocks still going) two or four groups of sixteen
 * run interleaved, each group's additions filling the others' waits. The
 * results are those of the scalar search bit for bit; the llama-quantize
 * digests of the tests check it, and
 * QUARK_GGUF_SCALAR=1 in the environment takes the scalar path instead
 * (for comparing the two, and the benchmark's ratio).
 */
#include "config.h"

#include "quark-gguf-quants-private.h"
#include "../../kernels/quark-kernel-private.h"

#include <float.h>
#include <math.h>

/* Lane-wise integer minimum and maximum (one vpminsd/vpmaxsd): GCC 12
 * builds an integer comparison used in a selection lane by lane in the
 * clones, so clamps go through these */
QK_DEFINE_LANEWISE (gg_min_i, qk_vi, <)
QK_DEFINE_LANEWISE (gg_max_i, qk_vi, >)

/* Lane-wise a OP b ? c : d, as a loop over the lanes: each clone's
 * vectorizer makes it a comparison and a blend per register, where a
 * vector comparison used as a mask (qk_select (a < b, c, d), the same
 * result) is built lane by lane, through general registers, in the v3
 * clones (GCC 12 lowers 16-lane comparisons for the default target before
 * it makes the clones) */
#define GG_DEFINE_IF(NAME, VF, OP) \
QK_INLINE VF \
NAME (VF a, VF b, VF c, VF d) \
{ \
  VF r; \
  for (unsigned j = 0; j < sizeof (VF) / sizeof (float); j++) \
    r[j] = a[j] OP b[j] ? c[j] : d[j]; \
  return r; \
}
GG_DEFINE_IF (gg_if_lt, qk_vf, <)
GG_DEFINE_IF (gg_if_gt, qk_vf, >)
GG_DEFINE_IF (gg_if_ne, qk_vf, !=)

/* -1 where v > 0, else 0, from the sign of 0 - v (+0 for v = ±0; for finite
 * a and b, a - b has the sign of the exact difference, +0 when they are
 * equal, so gg_positive (a - b) is a > b); v must not be NaN */
QK_INLINE qk_vi
gg_positive (qk_vf v)
{
  const qk_vf zero = { 0 };
  return (qk_vi) (zero - v) >> 31;
}

/* Helpers at one width (VF, VI, SPLAT), made for 16 and 8 lanes:
 * SPLAT_I, a splat of a variable small integer (|v| < 2^24) through a
 * float splat and a conversion (GCC 12 builds an integer splat of a
 * variable lane by lane in the clones, a masked broadcast per lane);
 * NEAREST_INT, ggml's nearest_int per lane (round to nearest even for
 * |f| < 2^22); ALL_ZERO, -1 in the lanes whose largest |x| @amax is below
 * GROUP_MAX_EPS: the all-zero sub-blocks, which the scalar code leaves
 * before any search (gg_positive (eps - amax)). */
#define GG_DEFINE_LANE_HELPERS(SPLAT_I, NEAREST_INT, ALL_ZERO, VF, VI, SPLAT) \
QK_INLINE VI \
SPLAT_I (int32_t v) \
{ \
  return __builtin_convertvector (SPLAT ((float) v), VI); \
} \
QK_INLINE VI \
NEAREST_INT (VF f) \
{ \
  VF val = f + SPLAT (QK_ROUND_MAGIC); \
  return ((VI) val & 0x007fffff) - 0x00400000; \
} \
QK_INLINE VI \
ALL_ZERO (VF amax) \
{ \
  const VF zero = { 0 }; \
  return (VI) (zero - (SPLAT (GROUP_MAX_EPS) - amax)) >> 31; \
}
GG_DEFINE_LANE_HELPERS (gg_splat_i, nearest_int_v, all_zero_lanes, qk_vf, qk_vi, qk_splat)

/* A 16 × 16 square in registers transposed in place (lane j of v[i]
 * becomes lane i of v[j]): four rounds that interleave row r with row
 * r + 8 (lanes 0-7 of both into row 2r, lanes 8-15 into row 2r + 1) leave
 * row i holding column i. Unrolled, so that the rows stay in registers
 * (looped, they went through the stack between rounds). */
QK_INLINE void
transpose16 (qk_vf *v)
{
  const qk_vi lo = { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 };
  const qk_vi hi = { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 };
  qk_vf w[16];

  #pragma GCC unroll 4
  for (int round = 0; round < 4; round++)
    {
      #pragma GCC unroll 8
      for (int r = 0; r < 8; r++)
        {
          w[2 * r] = QK_SHUFFLE2 (v[r], v[r + 8], lo);
          w[2 * r + 1] = QK_SHUFFLE2 (v[r], v[r + 8], hi);
        }
      memcpy (v, w, sizeof w);
    }
}

/* The W sub-blocks of @n values at x + j·n transposed into NAME (x, n,
 * out): lane j of out[i] is x[j·n + i]. For n a multiple of W (here 16
 * and 32), W × W squares transposed in registers by SQUARE; other n
 * element by element. */
#define GG_DEFINE_TRANSPOSE_IN(NAME, VT, W, SQUARE) \
QK_INLINE void \
NAME (const float *x, int n, VT *out) \
{ \
  if (n % (W) == 0) \
    { \
      for (int h = 0; h < n; h += (W)) \
        { \
          VT v[W]; \
          _Pragma ("GCC unroll 16") \
          for (int j = 0; j < (W); j++) \
            memcpy (&v[j], x + j * n + h, sizeof v[j]); \
          SQUARE (v); \
          memcpy (out + h, v, sizeof v); \
        } \
      return; \
    } \
  for (int i = 0; i < n; i++) \
    for (int j = 0; j < (W); j++) \
      out[i][j] = x[j * n + i]; \
}
GG_DEFINE_TRANSPOSE_IN (transpose_x16, qk_vf, 16, transpose16)

/* The codes of W sub-blocks of @n values, lane j of codes[i] code i of
 * sub-block j (each in [0, 255]), as bytes at L + j·n + i, by NAME (n,
 * codes, zero_lanes, L); the lanes of @zero_lanes (-1) get codes 0. For n
 * of 16 and 32, four codes of a lane go into one 32-bit lane as bytes
 * (p[k], codes h + 4k … h + 4k + 3), and a 4 × W transpose of those (two
 * rounds of interleaves, the masks LO, HI then QLO, QHI) puts each
 * sub-block's 16 bytes side by side, sub-block j's at byte POS (j) of
 * out: a byte at a time, reading lanes 64 bytes apart, took a fifth of
 * Q6_K's search and a tenth of Q5_K's. */
#define GG_DEFINE_STORE_CODES(NAME, VI, W, LO, HI, QLO, QHI, POS) \
QK_INLINE void \
NAME (int n, const VI *codes, VI zero_lanes, guint8 *L) \
{ \
  if (n == 16 || n == 32) \
    { \
      const VI lo = LO, hi = HI, q_lo = QLO, q_hi = QHI; \
      for (int h = 0; h < n; h += 16) \
        { \
          VI p[4], a01, a23, b01, b23, out[4]; \
          _Pragma ("GCC unroll 4") \
          for (int k = 0; k < 4; k++) \
            { \
              const VI *c = codes + h + 4 * k; \
              p[k] = (c[0] | (c[1] << 8) | (c[2] << 16) | (c[3] << 24)) & ~zero_lanes; \
            } \
          a01 = QK_SHUFFLE2 (p[0], p[1], lo); \
          b01 = QK_SHUFFLE2 (p[0], p[1], hi); \
          a23 = QK_SHUFFLE2 (p[2], p[3], lo); \
          b23 = QK_SHUFFLE2 (p[2], p[3], hi); \
          out[0] = QK_SHUFFLE2 (a01, a23, q_lo); \
          out[1] = QK_SHUFFLE2 (a01, a23, q_hi); \
          out[2] = QK_SHUFFLE2 (b01, b23, q_lo); \
          out[3] = QK_SHUFFLE2 (b01, b23, q_hi); \
          _Pragma ("GCC unroll 16") \
          for (int j = 0; j < (W); j++) \
            memcpy (L + j * n + h, (const guint8 *) out + POS (j), 16); \
        } \
      return; \
    } \
  for (int j = 0; j < (W); j++) \
    for (int i = 0; i < n; i++) \
      L[j * n + i] = zero_lanes[j] ? 0 : (guint8) codes[i][j]; \
}
/* (16 lanes: pairs of rows interleaved, then pairs of pairs: out[m] holds
 * rows 4m … 4m + 3 of the 4 × 16 matrix p transposed, 4 lanes each) */
#define GG_POS16(j) (16 * (j))
GG_DEFINE_STORE_CODES (store_codes, qk_vi, 16,
                       ((qk_vi) { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 }),
                       ((qk_vi) { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 }),
                       ((qk_vi) { 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23 }),
                       ((qk_vi) { 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31 }),
                       GG_POS16)

/* ggml's nearest_int and the clamp to [lo, hi], in float (@lo_bits and
 * @hi_bits the bits of 1.5·2^23 + lo and + hi): for |v| < 2^22
 * (here always: the codes are at most about nmax + 1), (v + 1.5·2^23) −
 * 1.5·2^23 is v rounded to the nearest integer, ties to even, exactly
 * nearest_int's integer. The clamp is made on v + 1.5·2^23, a positive
 * float, whose order is its bits' order as integers: integer minimum and
 * maximum, which do not take the floating-point adders that the search is
 * bound by (the same codes as clamping the integer in float). */
#define GG_DEFINE_CODES(BETWEEN, OF, ERROR_OF, VF, VI, SPLAT, MAX_I, MIN_I) \
QK_INLINE VF \
BETWEEN (VF v, VI lo_bits, VI hi_bits) \
{ \
  const VF magic = SPLAT (QK_ROUND_MAGIC); \
  VI r = (VI) (v + magic); \
  r = MAX_I (r, lo_bits); \
  r = MIN_I (r, hi_bits); \
  return (VF) r - magic; \
} \
/* the same clamped to [0, top] */ \
QK_INLINE VF \
OF (VF v, VF top) \
{ \
  const VF magic = SPLAT (QK_ROUND_MAGIC); \
  return BETWEEN (v, (VI) magic, (VI) (magic + top)); \
} \
/* the error of a difference: its magnitude (use_mad) or its square */ \
QK_INLINE VF \
ERROR_OF (VF diff, int use_mad) \
{ \
  return use_mad ? (VF) ((VI) diff & 0x7fffffff) : diff * diff; \
}
GG_DEFINE_CODES (code_between, code_of, error_of, qk_vf, qk_vi, qk_splat, gg_max_i, gg_min_i)

#define GG_W 16
#define GG_VF qk_vf
#define GG_VI qk_vi
#define GG_SPLAT qk_splat
#define GG_TRANSPOSE transpose_x16
#define GG_CODE_OF code_of
#define GG_ERROR_OF error_of
#define GG_IF_LT gg_if_lt
#define GG_IF_GT gg_if_gt
#define GG_STORE_CODES store_codes
#define GG_XG qkx2_xg
#define GG_N qkx2_n
#include "quark-gguf-qkx2.h"

/* The same search on eight lanes (256-bit vectors), for processors without
 * AVX-512: GCC 12 keeps 16-lane vectors that live from one step of a loop
 * to the next (the search's sums) in memory there, storing and reloading
 * them at every step, and builds their two-operand permutes (the
 * transposes) lane by lane; 256-bit vectors stay in registers and their
 * permutes are single instructions. */

QK_INLINE qk_v8f
g8_splat (float v)
{
  qk_v8f r;
  for (unsigned j = 0; j < 8; j++)
    r[j] = v;
  return r;
}

GG_DEFINE_IF (g8_if_lt, qk_v8f, <)
GG_DEFINE_IF (g8_if_gt, qk_v8f, >)

/* code_between(), code_of() and error_of() on eight lanes */
GG_DEFINE_CODES (g8_code_between, g8_code_of, g8_error_of, qk_v8f, qk_v8i, g8_splat, qk_max_i8, qk_min_i8)

/* An 8 × 8 square transposed (lane j of v[i] becomes lane i of v[j]):
 * 32-bit interleaves, 64-bit interleaves, then the 128-bit halves
 * exchanged (vunpcklps/vunpckhps, vshufps, vperm2f128) */
QK_INLINE void
transpose8 (qk_v8f *v)
{
  const qk_v8i lo32 = { 0, 8, 1, 9, 4, 12, 5, 13 }, hi32 = { 2, 10, 3, 11, 6, 14, 7, 15 };
  const qk_v8i lo64 = { 0, 1, 8, 9, 4, 5, 12, 13 }, hi64 = { 2, 3, 10, 11, 6, 7, 14, 15 };
  const qk_v8i lo128 = { 0, 1, 2, 3, 8, 9, 10, 11 }, hi128 = { 4, 5, 6, 7, 12, 13, 14, 15 };
  qk_v8f t[8], u[8];

  for (int k = 0; k < 4; k++)
    {
      t[2 * k] = QK_SHUFFLE2 (v[2 * k], v[2 * k + 1], lo32);
      t[2 * k + 1] = QK_SHUFFLE2 (v[2 * k], v[2 * k + 1], hi32);
    }
  for (int k = 0; k < 2; k++)
    {
      u[4 * k] = QK_SHUFFLE2 (t[4 * k], t[4 * k + 2], lo64);
      u[4 * k + 1] = QK_SHUFFLE2 (t[4 * k], t[4 * k + 2], hi64);
      u[4 * k + 2] = QK_SHUFFLE2 (t[4 * k + 1], t[4 * k + 3], lo64);
      u[4 * k + 3] = QK_SHUFFLE2 (t[4 * k + 1], t[4 * k + 3], hi64);
    }
  for (int k = 0; k < 4; k++)
    {
      v[k] = QK_SHUFFLE2 (u[k], u[k + 4], lo128);
      v[k + 4] = QK_SHUFFLE2 (u[k], u[k + 4], hi128);
    }
}

GG_DEFINE_TRANSPOSE_IN (transpose_x8, qk_v8f, 8, transpose8)

/* store_codes() for 8 sub-blocks: 32- and then 64-bit interleaves within
 * the 128-bit halves (vpunpck) give sub-blocks m and m + 4 their 16 bytes
 * in the two halves of out[m] */
#define GG_POS8(j) (32 * ((j) % 4) + 16 * ((j) / 4))
GG_DEFINE_STORE_CODES (g8_store_codes, qk_v8i, 8,
                       ((qk_v8i) { 0, 8, 1, 9, 4, 12, 5, 13 }), ((qk_v8i) { 2, 10, 3, 11, 6, 14, 7, 15 }),
                       ((qk_v8i) { 0, 1, 8, 9, 4, 5, 12, 13 }), ((qk_v8i) { 2, 3, 10, 11, 6, 7, 14, 15 }),
                       GG_POS8)

#define GG_W 8
#define GG_VF qk_v8f
#define GG_VI qk_v8i
#define GG_SPLAT g8_splat
#define GG_TRANSPOSE transpose_x8
#define GG_CODE_OF g8_code_of
#define GG_ERROR_OF g8_error_of
#define GG_IF_LT g8_if_lt
#define GG_IF_GT g8_if_gt
#define GG_STORE_CODES g8_store_codes
#define GG_XG qkx2_xg8
#define GG_N qkx2_n8
#include "quark-gguf-qkx2.h"

/* @G16 groups of 16 sub-blocks (the callers' unit): 16 lanes with
 * AVX-512, else as groups of 8, at most four at once */
QK_INLINE void
qkx2_groups (int G16, int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
             float *mins, float rmin, float rdelta, int nstep, int use_mad)
{
  if (qk_wide_permutes ())
    {
      if (G16 == 1)
        qkx2_n (1, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
      else if (G16 == 2)
        qkx2_n (2, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
      else
        qkx2_n (4, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
      return;
    }
  for (int h = 0; h < 2 * G16; h += 4)
    {
      const size_t at = (size_t) (8 * h) * (size_t) n;
      if (2 * G16 - h >= 4)
        qkx2_n8 (4, n, nmax, x + at, weights + at, L + at, scales + 8 * h, mins + 8 * h, rmin, rdelta, nstep,
                 use_mad);
      else
        qkx2_n8 (2, n, nmax, x + at, weights + at, L + at, scales + 8 * h, mins + 8 * h, rmin, rdelta, nstep,
                 use_mad);
    }
}

QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_qkx2_x16 (int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
                      float *mins, float rmin, float rdelta, int nstep, int use_mad)
{
  qkx2_groups (1, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
}

QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_qkx2_x32 (int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
                      float *mins, float rmin, float rdelta, int nstep, int use_mad)
{
  qkx2_groups (2, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
}

QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_qkx2_x64 (int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
                      float *mins, float rmin, float rdelta, int nstep, int use_mad)
{
  qkx2_groups (4, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
}

#define GG_W 16
#define GG_VF qk_vf
#define GG_VI qk_vi
#define GG_SPLAT qk_splat
#define GG_TRANSPOSE transpose_x16
#define GG_IF_LT gg_if_lt
#define GG_IF_GT gg_if_gt
#define GG_STORE_CODES store_codes
#define GG_SPLAT_I gg_splat_i
#define GG_MAX_I gg_max_i
#define GG_MIN_I gg_min_i
#define GG_NEAREST_INT nearest_int_v
#define GG_CODE_BETWEEN code_between
#define GG_ALL_ZERO all_zero_lanes
#define GG_SELECT qk_select
#define GG_IF_NE gg_if_ne
#define GG_QX_CODES qx_codes
#define GG_QX_SUMS2 qx_sums2
#define GG_QX_START qx_start
#define GG_QX_STORE qx_store
#define GG_QX qx_16
#include "quark-gguf-qx.h"

/* The 8-lane forms of the helpers make_qx_quants adds */
GG_DEFINE_LANE_HELPERS (g8_splat_i, g8_nearest_int, g8_all_zero, qk_v8f, qk_v8i, g8_splat)

QK_INLINE qk_v8f
g8_select (qk_v8i mask, qk_v8f a, qk_v8f b)
{
  return (qk_v8f) (((qk_v8i) a & mask) | ((qk_v8i) b & ~mask));
}

GG_DEFINE_IF (g8_if_ne, qk_v8f, !=)

#define GG_W 8
#define GG_VF qk_v8f
#define GG_VI qk_v8i
#define GG_SPLAT g8_splat
#define GG_TRANSPOSE transpose_x8
#define GG_IF_LT g8_if_lt
#define GG_IF_GT g8_if_gt
#define GG_STORE_CODES g8_store_codes
#define GG_SPLAT_I g8_splat_i
#define GG_MAX_I qk_max_i8
#define GG_MIN_I qk_min_i8
#define GG_NEAREST_INT g8_nearest_int
#define GG_CODE_BETWEEN g8_code_between
#define GG_ALL_ZERO g8_all_zero
#define GG_SELECT g8_select
#define GG_IF_NE g8_if_ne
#define GG_QX_CODES qx8_codes
#define GG_QX_SUMS2 qx8_sums2
#define GG_QX_START qx8_start
#define GG_QX_STORE qx8_store
#define GG_QX qx_8
#include "quark-gguf-qx.h"

/* make_qx_quants (rmse_type 1) for the 16 sub-blocks of @n values at
 * x + j·n (j < 16), weighted by qw at the same places or, without, by x²:
 * codes (offset by nmax) into L, the scales into scales[j]; @n at most 32.
 * Eight lanes at a time where the processor lacks AVX-512 (as the qkx2
 * search) */
QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_qx_x16 (int n, int nmax, const float *x, const float *qw, gint8 *L, float *scales)
{
  if (qk_wide_permutes ())
    {
      qx_16 (n, nmax, x, qw, L, scales);
      return;
    }
  for (int h = 0; h < 16; h += 8)
    qx_8 (n, nmax, x + h * n, qw ? qw + h * n : NULL, L + h * n, scales + h);
}

/* ---- make_q3_quants (with its refinement: do_rmse), Q3_K's search ---------
 *
 * Each sub-block of 16 runs up to five rounds over its elements; a round
 * that changes no code ends it, as the scalar loop breaks. Most end early:
 * on the 2 GB model's rows a fifth of the sub-blocks change a code in the
 * first round, one in twenty in the second. So the first round runs on
 * the row's sub-blocks in order, sixteen to a vector, and each later
 * round only on those still going, gathered sixteen to a vector (before,
 * a vector's stopped lanes rode along to the end of its slowest lane:
 * two thirds of the lane-rounds run changed nothing). A sub-block's codes
 * live in L between rounds (plus nmax, as they end), its sums in arrays. */

/* sixteen sub-blocks in the search: lane j of xt[i] is element i of
 * sub-block j (wt[i] its weight x²), lt[i] its code, sumlx and suml2 the
 * sums Σ w·x·l and Σ w·l², active -1 while the sub-block goes on */
typedef struct {
  qk_vf xt[16], wt[16];
  qk_vi lt[16];
  qk_vf sumlx, suml2;
  qk_vi active;
} Q3Lanes;

/* one round of the refinement on @G groups of sixteen sub-blocks. Each
 * element's update waits for the division by the previous one's sums:
 * with G = 2 or 4 the groups' chains interleave */
QK_INLINE void
q3_round (const int G, int nmax, Q3Lanes *s)
{
  qk_vf sumlx[4], suml2[4];
  qk_vi changed[4];
  const qk_vi lo = gg_splat_i (-nmax), hi = gg_splat_i (nmax - 1), zero_i = { 0 }, one = qk_splat_i (1);

  #pragma GCC unroll 4
  for (int g = 0; g < G; g++)
    {
      sumlx[g] = s[g].sumlx;
      suml2[g] = s[g].suml2;
      changed[g] = zero_i;
    }
  for (int i = 0; i < 16; i++)
    #pragma GCC unroll 4
    for (int g = 0; g < G; g++)
      {
        const qk_vf x = s[g].xt[i], w = s[g].wt[i];
        qk_vf lf = __builtin_convertvector (s[g].lt[i], qk_vf), slx, sl2, nf, nslx, rhs;
        qk_vi new_l, take;
        slx = sumlx[g] - w * x * lf;
        sl2 = suml2[g] - w * lf * lf;
        new_l = nearest_int_v (x * sl2 / slx);
        new_l = gg_max_i (gg_min_i (new_l, hi), lo);
        nf = __builtin_convertvector (new_l, qk_vf);
        /* where slx > 0, the code changes, and then sl2 > 0 and the fit
         * improves: slx'² · suml2 > sumlx² · sl2'. (Masks from signs:
         * GCC 12 makes these comparisons lane-by-lane code here.) */
        nslx = slx + w * x * nf;
        sl2 += w * nf * nf;
        take = gg_positive (slx) & gg_positive ((nf - lf) * (nf - lf)) & gg_positive (sl2) & s[g].active;
        slx = nslx;
        rhs = sumlx[g] * sumlx[g] * sl2;
        take &= gg_positive (nslx * nslx * suml2[g] - rhs);
        s[g].lt[i] = qk_select_i (take, new_l, s[g].lt[i]);
        changed[g] += take & one;
        sumlx[g] = qk_select (take, slx, sumlx[g]);
        suml2[g] = qk_select (take, sl2, suml2[g]);
      }
  #pragma GCC unroll 4
  for (int g = 0; g < G; g++)
    {
      s[g].sumlx = sumlx[g];
      s[g].suml2 = suml2[g];
      s[g].active &= -gg_min_i (changed[g], one);   /* changed >= 0: 0 stops the lane */
    }
}

/* a round on @count groups, four at a time, then two, then one */
QK_INLINE void
q3_rounds (int nmax, Q3Lanes *s, int count)
{
  int g = 0;

  for (; g + 4 <= count; g += 4)
    q3_round (4, nmax, s + g);
  if (count - g >= 2)
    {
      q3_round (2, nmax, s + g);
      g += 2;
    }
  if (g < count)
    q3_round (1, nmax, s + g);
}

/* the state of group @s (sub-block j of it is sub-block idx[j] of the
 * row) back into L (codes 0 in the lanes of @zero_lanes), sumlx and
 * suml2, active; @lanes of its lanes are real, the others are padding */
QK_INLINE void
q3_put (int nmax, const Q3Lanes *s, qk_vi zero_lanes, const int *idx, int lanes, gint8 *L, float *sumlx,
        float *suml2, int32_t *active)
{
  const qk_vi offset = gg_splat_i (nmax);
  qk_vi codes[16];
  guint8 rows[16 * 16];

  for (int i = 0; i < 16; i++)
    codes[i] = s->lt[i] + offset;
  store_codes (16, codes, zero_lanes, rows);
  for (int j = 0; j < lanes; j++)
    {
      memcpy (L + 16 * idx[j], rows + 16 * j, 16);
      sumlx[idx[j]] = s->sumlx[j];
      suml2[idx[j]] = s->suml2[j];
      active[idx[j]] = s->active[j];
    }
}

/* group @s from the sub-blocks idx[0 … lanes - 1] of the row: their
 * elements from x, their codes from L, their sums; lanes past @lanes
 * repeat the first sub-block, inactive. A row of L, as four 32-bit words,
 * is lane j of store_codes()' p[0 … 3]: its transpose undone gives p, and
 * p's bytes the codes, already one element per vector */
QK_INLINE void
q3_gather (int nmax, const float *x, const gint8 *L, const float *sumlx, const float *suml2, const int *idx,
           int lanes, Q3Lanes *s)
{
  const qk_vi offset = gg_splat_i (nmax);
  const qk_vi pairs_a = { 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29 };
  const qk_vi pairs_b = { 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31 };
  const qk_vi even = { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 };
  const qk_vi odd = { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31 };
  guint8 rows[16 * 16];
  qk_vi out[4], a01, a23, b01, b23, p[4];

  for (int j = 0; j < 16; j++)
    {
      int k = idx[j < lanes ? j : 0];
      memcpy (&s->xt[j], x + 16 * k, sizeof s->xt[j]);
      memcpy (rows + 16 * j, L + 16 * k, 16);
      s->sumlx[j] = sumlx[k];
      s->suml2[j] = suml2[k];
      s->active[j] = j < lanes ? -1 : 0;
    }
  transpose16 (s->xt);
  memcpy (out, rows, sizeof out);
  a01 = QK_SHUFFLE2 (out[0], out[1], pairs_a);
  a23 = QK_SHUFFLE2 (out[0], out[1], pairs_b);
  b01 = QK_SHUFFLE2 (out[2], out[3], pairs_a);
  b23 = QK_SHUFFLE2 (out[2], out[3], pairs_b);
  p[0] = QK_SHUFFLE2 (a01, b01, even);
  p[1] = QK_SHUFFLE2 (a01, b01, odd);
  p[2] = QK_SHUFFLE2 (a23, b23, even);
  p[3] = QK_SHUFFLE2 (a23, b23, odd);
  #pragma GCC unroll 16
  for (int i = 0; i < 16; i++)
    {
      s->wt[i] = s->xt[i] * s->xt[i];
      s->lt[i] = ((p[i / 4] >> (8 * (i % 4))) & 0xff) - offset;
    }
}

/* make_q3_quants (16, @nmax) on @count sub-blocks of 16 (a multiple of
 * 16, at most QUARK_GGUF_Q3_MAX): sub-block j at x + 16·j, its codes plus
 * nmax into L + 16·j, its scale into scales[j] */
QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_q3_many (int nmax, int count, const float *x, gint8 *L, float *scales)
{
  Q3Lanes s[4];
  float sumlx[QUARK_GGUF_Q3_MAX], suml2[QUARK_GGUF_Q3_MAX];
  int32_t active[QUARK_GGUF_Q3_MAX], zero_lanes[QUARK_GGUF_Q3_MAX];
  int idx[QUARK_GGUF_Q3_MAX];
  const qk_vf zero = { 0 };
  const qk_vi zero_i = { 0 };

  if (count < 16 || count > QUARK_GGUF_Q3_MAX || count % 16)
    return;
  /* the start and the first round, on the sub-blocks in order; all-zero
   * sub-blocks (max |x| < GROUP_MAX_EPS) are never active: the scalar
   * code returns before any search, with codes 0 and scale 0 */
  for (int g0 = 0; g0 < count / 16; g0 += 4)
    {
      int G = MIN (4, count / 16 - g0);
      qk_vi all_zero[4];
      for (int g = 0; g < G; g++)
        {
          qk_vf amax, max;
          const float *xg = x + 16 * 16 * (g0 + g);
          qx_start (16, nmax, xg, NULL, s[g].xt, s[g].wt, s[g].lt, &amax, &max, &s[g].sumlx, &s[g].suml2);
          all_zero[g] = all_zero_lanes (amax);
          s[g].active = ~all_zero[g];
          memcpy (zero_lanes + 16 * (g0 + g), &all_zero[g], sizeof all_zero[g]);
        }
      q3_rounds (nmax, s, G);
      for (int g = 0; g < G; g++)
        {
          int base = 16 * (g0 + g);
          for (int j = 0; j < 16; j++)
            idx[j] = base + j;
          q3_put (nmax, &s[g], all_zero[g], idx, 16, L, sumlx, suml2, active);
        }
    }
  /* the other rounds on the sub-blocks still going, sixteen at a time */
  for (int itry = 1; itry < 5; ++itry)
    {
      int n_active = 0;
      for (int j = 0; j < count; j++)
        {
          idx[n_active] = j;   /* kept when active (without a branch) */
          n_active += active[j] != 0;
        }
      if (n_active == 0)
        break;
      for (int a = 0; a < n_active; a += 4 * 16)
        {
          int G = MIN (4, (n_active - a + 15) / 16);
          for (int g = 0; g < G; g++)
            q3_gather (nmax, x, L, sumlx, suml2, idx + a + 16 * g, MIN (16, n_active - a - 16 * g), &s[g]);
          q3_rounds (nmax, s, G);
          for (int g = 0; g < G; g++)
            q3_put (nmax, &s[g], zero_i, idx + a + 16 * g, MIN (16, n_active - a - 16 * g), L, sumlx, suml2, active);
        }
    }
  /* the scales, 0 for all-zero sub-blocks */
  for (int j0 = 0; j0 < count; j0 += 16)
    {
      qk_vf slx, sl2, scale;
      qk_vi all_zero;
      memcpy (&slx, sumlx + j0, sizeof slx);
      memcpy (&sl2, suml2 + j0, sizeof sl2);
      memcpy (&all_zero, zero_lanes + j0, sizeof all_zero);
      scale = qk_select (all_zero, zero, qk_select (sl2 > zero, slx / sl2, zero));
      memcpy (scales + j0, &scale, sizeof scale);
    }
}

/* The codes again from the stored scales d[j] (and minima m[j], added
 * first): L[i] = offset + clamp (nearest_int ((x[i] + m[j]) / d[j]), lo,
 * hi) for @count sub-blocks of @n (a multiple of 16) values, as the
 * k-quants' last passes; sub-blocks whose scale is 0 are left as they are,
 * as the scalar code skips them. One call for a super-block's sub-blocks:
 * a call for each cost more than its division */
QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_requantize (const float *x, int count, int n, const float *m, const float *d, int lo, int hi,
                        int offset, guint8 *L)
{
  const qk_vi vlo = gg_splat_i (lo), vhi = gg_splat_i (hi), voff = gg_splat_i (offset);

  for (int j = 0; j < count; j++)
    {
      qk_vf vd, vm;
      if (!d[j])
        continue;
      vd = qk_splat (d[j]);
      vm = qk_splat (m ? m[j] : 0.f);
      for (int i = j * n; i + QK_LANES <= (j + 1) * n; i += QK_LANES)
        {
          qk_vf v;
          qk_vi l;
          memcpy (&v, x + i, sizeof v);
          l = nearest_int_v ((m ? v + vm : v) / vd);
          l = gg_max_i (gg_min_i (l, vhi), vlo) + voff;
          for (int k = 0; k < QK_LANES; k++)
            L[i + k] = (guint8) l[k];
        }
    }
}

/* ---- the legacy types and MXFP4: a block of 32 in two vectors -------------- */

/* MXFP4's code of each lane of @x at scale @half (2^(e-128)): the index of
 * the E2M1 value (kvalues_mxfp4 = 0 1 2 3 4 6 8 12, then their negatives
 * from index 8) whose multiple is nearest, the first of equals, as ggml's
 * scan of all 16 finds it. Of the 16 only the zero and the values of x's
 * sign can win (an error of the other sign's is |x| + v·h rounded, never
 * below the zero's |x|, which comes first), and a negative x's errors are
 * those of |x| against the positive values (negation is exact), so the
 * eight errors of |x| decide, compared in a tournament that keeps the
 * lower index unless the higher one's error is strictly smaller: the first
 * minimum, as the scan. */
QK_INLINE qk_vi
mxfp4_index_v (qk_vf x, float half)
{
  static const float values[8] = { 0, 1, 2, 3, 4, 6, 8, 12 };
  qk_vf ax = (qk_vf) ((qk_vi) x & 0x7fffffff), err[8];
  qk_vi index[8];

  /* (unrolled: GCC 12 builds a splat of a loop variable lane by lane) */
  _Pragma ("GCC unroll 8")
  for (int i = 0; i < 8; i++)
    {
      err[i] = (qk_vf) ((qk_vi) (values[i] * half - ax) & 0x7fffffff);
      index[i] = gg_splat_i (i);
    }
  _Pragma ("GCC unroll 3")
  for (int width = 1; width < 8; width *= 2)
    _Pragma ("GCC unroll 4")
    for (int i = 0; i < 8; i += 2 * width)
      {
        index[i] = qk_select_i (err[i + width] < err[i], index[i + width], index[i]);
        err[i] = qk_select (err[i + width] < err[i], err[i + width], err[i]);
      }
  /* a negative x (sign bit set) takes the negative value: index + 8, but
   * the zero stays index 0 (masks from sign bits: GCC 12 builds integer
   * comparisons used as values lane by lane) */
  return index[0] + (((qk_vi) x >> 31) & (-index[0] >> 31) & 8);
}

/* The largest (@max) or smallest lane, by halving: exact in any order */
QK_INLINE float
horizontal_extreme (qk_vf v, gboolean max)
{
  const qk_vi s8 = { 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7 };
  const qk_vi s4 = { 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11 };
  const qk_vi s2 = { 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13 };
  const qk_vi s1 = { 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14 };

  v = max ? qk_max (v, QK_SHUFFLE (v, s8)) : qk_min (v, QK_SHUFFLE (v, s8));
  v = max ? qk_max (v, QK_SHUFFLE (v, s4)) : qk_min (v, QK_SHUFFLE (v, s4));
  v = max ? qk_max (v, QK_SHUFFLE (v, s2)) : qk_min (v, QK_SHUFFLE (v, s2));
  v = max ? qk_max (v, QK_SHUFFLE (v, s1)) : qk_min (v, QK_SHUFFLE (v, s1));
  return v[0];
}

/* roundf (halves away from zero) per lane, for |v| < 2^23 */
QK_INLINE qk_vi
round_away_v (qk_vf v)
{
  const qk_vf half = qk_splat (0.5f), minus_half = qk_splat (-0.5f);
  const qk_vi one = qk_splat_i (1), zero_i = { 0 };
  qk_vi t = __builtin_convertvector (v, qk_vi);   /* toward zero */
  qk_vf r = v - __builtin_convertvector (t, qk_vf);
  t += qk_select_i (r >= half, one, zero_i);
  return t - qk_select_i (r <= minus_half, one, zero_i);
}

/* @nblocks blocks of 32 (at x + 32·b) as llama.cpp's reference quantizers
 * make them (quark-gguf-quants.c restates each), packed into the blocks at
 * y, all but the fp16 scale and minimum (and MXFP4's exponent byte), which
 * go into scales[2·b] and scales[2·b + 1] for the caller to store. The
 * reductions (maxima, the first element of largest magnitude) are exact in
 * any order, the per-element arithmetic is lane for lane the scalar
 * code's. */
QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_legacy_blocks (int type, const float *x, size_t nblocks, guint8 *y, float *scales)
{
  const size_t bytes = type == 8 ? 34 : type == 2 ? 18 : type == 3 ? 20 : type == 6 ? 22 : type == 7 ? 24 : 17;

  for (size_t b = 0; b < nblocks; b++)
    {
      const float *xb = x + 32 * b;
      qk_vf v[2];
      qk_vi q[2];
      float d = 0, id, m = 0;

      memcpy (&v[0], xb, sizeof v[0]);
      memcpy (&v[1], xb + 16, sizeof v[1]);
      switch (type)
        {
        case 8:    /* Q8_0: d = amax / 127, roundf (x / d) */
        case 39:   /* MXFP4 */
          {
            qk_vf a = qk_max ((qk_vf) ((qk_vi) v[0] & 0x7fffffff), (qk_vf) ((qk_vi) v[1] & 0x7fffffff));
            float amax = horizontal_extreme (a, TRUE);
            if (type == 8)
              {
                d = amax / ((1 << 7) - 1);
                id = d ? 1.0f / d : 0.0f;
                for (int k = 0; k < 2; k++)
                  q[k] = round_away_v (v[k] * id);
              }
            else
              {
                /* e = floor (log2 amax) - 2 + 127; the nearest of the 16
                 * E2M1 values times 2^(e - 128), the first of equals */
                guint8 e = amax > 0.0f ? (guint8) (floorf (log2f (amax)) - 2 + 127) : 0;
                guint32 bits = e < 2 ? 0x00200000u << e : (guint32) (e - 1) << 23;
                float half;
                memcpy (&half, &bits, sizeof half);
                d = e;
                for (int k = 0; k < 2; k++)
                  q[k] = mxfp4_index_v (v[k], half);
              }
          }
          break;
        case 2:    /* Q4_0: d = m / -8, min (15, (int8) (x / d + 8.5)) */
        case 6:    /* Q5_0: d = m / -16, min (31, (int8) (x / d + 16.5)) */
          {
            qk_vf a = qk_max ((qk_vf) ((qk_vi) v[0] & 0x7fffffff), (qk_vf) ((qk_vi) v[1] & 0x7fffffff));
            float amax = horizontal_extreme (a, TRUE), max = 0.0f;
            const float offset = type == 2 ? 8.5f : 16.5f;
            const int top = type == 2 ? 15 : 31;
            /* the first element of that magnitude (amax 0: max +0, as
             * the scalar scan leaves it) */
            if (amax > 0.0f)
              {
                const qk_vf lanes = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
                const qk_vf none = qk_splat (99.0f);
                qk_vf first = qk_min (qk_select ((qk_vf) ((qk_vi) v[0] & 0x7fffffff) == amax, lanes, none),
                                      qk_select ((qk_vf) ((qk_vi) v[1] & 0x7fffffff) == amax, lanes + 16.0f, none));
                max = xb[(int) horizontal_extreme (first, FALSE)];
              }
            d = max / (type == 2 ? -8 : -16);
            id = d ? 1.0f / d : 0.0f;
            for (int k = 0; k < 2; k++)
              {
                q[k] = __builtin_convertvector (v[k] * id + offset, qk_vi);
                q[k] = gg_min_i (q[k], gg_splat_i (top));
              }
          }
          break;
        default:   /* Q4_1 (3), Q5_1 (7): d = (max - min) / 15 (31), codes from the minimum */
          {
            float mn = horizontal_extreme (qk_min (v[0], v[1]), FALSE);
            float mx = horizontal_extreme (qk_max (v[0], v[1]), TRUE);
            d = (mx - mn) / (type == 3 ? 15 : 31);
            id = d ? 1.0f / d : 0.0f;
            m = mn;
            for (int k = 0; k < 2; k++)
              {
                q[k] = __builtin_convertvector ((v[k] - mn) * id + 0.5f, qk_vi);
                if (type == 3)
                  q[k] = gg_min_i (q[k], qk_splat_i (15));
              }
          }
          break;
        }
      /* packed: Q8_0 a byte per code after the scale; the others element j
       * in the low nibble of byte j and j + 16 in the high one, after the
       * scale (MXFP4: the exponent byte), the minimum and the 5-bit types'
       * qh, whose bit j is bit 4 of element j */
      {
        guint8 *yb = y + bytes * b;
        if (type == 8)
          for (int k = 0; k < 2; k++)
            {
              qk_vu8 c = __builtin_convertvector (q[k] & 0xff, qk_vu8);
              memcpy (yb + 2 + 16 * k, &c, sizeof c);
            }
        else
          {
            const gboolean five = type == 6 || type == 7;
            const int at = type == 39 ? 1 : 2 + (type == 3 || type == 7 ? 2 : 0) + (five ? 4 : 0);
            qk_vu8 c = __builtin_convertvector ((q[0] & 15) | ((q[1] & 15) << 4), qk_vu8);
            memcpy (yb + at, &c, sizeof c);
            if (five)
              {
                const qk_vi shift = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
                qk_vi bits = (((q[0] >> 4) & 1) << shift) | (((q[1] >> 4) & 1) << (shift + 16));
                guint32 qh = 0;
                for (int j = 0; j < QK_LANES; j++)
                  qh |= (guint32) bits[j];
                for (int k = 0; k < 4; k++)
                  yb[at - 4 + k] = (guint8) (qh >> (8 * k));
              }
          }
      }
      scales[2 * b] = d;
      scales[2 * b + 1] = m;
    }
}

/* ---- IQ4_NL: sixteen blocks of 32 in the lanes ----------------------------- */

static const float iq4nl_values[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/* ggml's best_index_int8 over kvalues_iq4nl, per lane: the binary search
 * ends at mu, the first value above x (the count of values <= x), and
 * picks mu - 1 only when strictly nearer; x at or beyond an end gives
 * that end, a NaN x 15 (the search's ml climbs to the top) */
QK_INLINE qk_vi
iq4nl_index_v (qk_vf x)
{
  const qk_vf values = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
  const qk_vi zero_i = { 0 }, one = qk_splat_i (1), top = qk_splat_i (15);
  qk_vi c = zero_i, r;
  qk_vf lo, hi;

  for (int k = 0; k < 16; k++)
    c += qk_select_i (x >= qk_splat (iq4nl_values[k]), one, zero_i);
  lo = QK_SHUFFLE (values, (c - 1) & 15);
  hi = QK_SHUFFLE (values, c & 15);
  r = qk_select_i (x - lo < hi - x, c - 1, c);
  r = qk_select_i (x <= qk_splat (iq4nl_values[0]), zero_i, r);
  r = qk_select_i (x >= qk_splat (iq4nl_values[15]), top, r);
  return qk_select_i (x != x, top, r);
}

/* the weighted sums of a candidate scale 1/id: Σ w·q·x and Σ w·q² over the
 * grid values q nearest id·x */
QK_INLINE void
iq4nl_sums (const qk_vf *xt, const qk_vf *wt, qk_vf id, qk_vf *sumqx_out, qk_vf *sumq2_out)
{
  const qk_vf values = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
  qk_vf sumqx = { 0 }, sumq2 = { 0 };

  for (int i = 0; i < 32; i++)
    {
      qk_vf q = QK_SHUFFLE (values, iq4nl_index_v (id * xt[i]));
      sumqx += wt[i] * q * xt[i];
      sumq2 += wt[i] * q * q;
    }
  *sumqx_out = sumqx;
  *sumq2_out = sumq2;
}

/* quantize_row_iq4_nl_impl (ntry 7) for the 16 blocks of 32 at x + 32·j,
 * with their weights at w + 32·j: each block's scale into scales[j] (as
 * searched, before fp16) and its codes into L + 32·j */
QK_MULTIVERSION QK_PRIVATE void
_quark_gguf_iq4nl_x16 (const float *x, const float *w, float *scales, guint8 *L)
{
  qk_vf xt[32], wt[32], amax, max, d, id, sumqx, sumq2, best;
  const qk_vf zero = { 0 };

  for (int i = 0; i < 32; i++)
    {
      float cx[QK_LANES], cw[QK_LANES];
      for (int j = 0; j < QK_LANES; j++)
        {
          cx[j] = x[j * 32 + i];
          cw[j] = w[j * 32 + i];
        }
      memcpy (&xt[i], cx, sizeof cx);
      memcpy (&wt[i], cw, sizeof cw);
    }
  amax = max = zero;
  for (int i = 0; i < 32; i++)
    {
      qk_vf ax = (qk_vf) ((qk_vi) xt[i] & 0x7fffffff);
      max = qk_select (amax < ax, xt[i], max);
      amax = qk_select (amax < ax, ax, amax);
    }
  d = -max / iq4nl_values[0];
  id = 1 / d;
  iq4nl_sums (xt, wt, id, &sumqx, &sumq2);
  d = sumqx / sumq2;
  best = d * sumqx;
  for (int itry = -7; itry <= 7; ++itry)
    {
      qk_vf lhs;
      id = (float) (itry + (int) iq4nl_values[0]) / max;
      iq4nl_sums (xt, wt, id, &sumqx, &sumq2);
      /* sumq2 > 0 && sumqx² > best · sumq2 */
      lhs = qk_select (sumq2 > zero, sumqx * sumqx, qk_splat (-INFINITY));
      d = qk_select (lhs > best * sumq2, sumqx / sumq2, d);
      best = qk_select (lhs > best * sumq2, d * sumqx, best);
    }
  /* all-zero blocks: scale 0 */
  d = qk_select (amax < qk_splat (1e-15f), zero, d);
  id = qk_select (d != zero, 1 / d, zero);
  for (int i = 0; i < 32; i++)
    {
      qk_vi c = iq4nl_index_v (id * xt[i]);
      for (int j = 0; j < QK_LANES; j++)
        L[j * 32 + i] = (guint8) c[j];
    }
  memcpy (scales, &d, sizeof d);
}
