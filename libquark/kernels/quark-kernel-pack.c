/* quark-kernel-pack.c: packed layouts of checkpoints
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The layouts are those of the format reference: AMD Quark's int4 words
 * (natural order or the AutoAWQ interleave 0, 2, 4, 6, 1, 3, 5, 7),
 * compressed-tensors' offset-binary bit stream, two FP4 codes per byte
 * (element 2i in the low nibble) and four FP6 codes per three bytes (a 24-bit
 * little-endian word, v0 in bits 0-5).
 */
#include "config.h"

#include "quark-kernels.h"
#include "quark-kernel-private.h"

#include <string.h>

static const unsigned reorder_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

/**
 * quark_kernel_pack_int4: (skip)
 * @codes: [@n_rows, @row_len] int4 or uint4 codes, one per byte
 * @n_rows: the number of rows
 * @row_len: codes per row, a multiple of 8
 * @reorder: use the AutoAWQ interleave (AMD Quark's `pack_method: reorder`):
 *   nibble k of a word holds element {0, 2, 4, 6, 1, 3, 5, 7}[k]; otherwise
 *   nibble k holds element k
 * @words: room for @n_rows × @row_len / 8 words
 *
 * Packs 4-bit codes eight to an int32 along rows; nibble 0 is the least
 * significant. Signed codes are stored as two's-complement nibbles.
 *
 * Returns: %false if @row_len is not a multiple of 8
 */
typedef uint64_t qk_v8u64 __attribute__ ((vector_size (64)));
typedef uint32_t qk_v8u32 __attribute__ ((vector_size (32)));

/* Eight words at once: bytes reordered within each group of eight, then the
 * nibbles of each 64-bit lane gathered into its low 32 bits. */
QK_MULTIVERSION static size_t
pack_int4_words (const int8_t *codes, size_t n_words, bool reorder, int32_t *words)
{
  const qk_v64u8 order = {
     0,  2,  4,  6,  1,  3,  5,  7,  8, 10, 12, 14,  9, 11, 13, 15,
    16, 18, 20, 22, 17, 19, 21, 23, 24, 26, 28, 30, 25, 27, 29, 31,
    32, 34, 36, 38, 33, 35, 37, 39, 40, 42, 44, 46, 41, 43, 45, 47,
    48, 50, 52, 54, 49, 51, 53, 55, 56, 58, 60, 62, 57, 59, 61, 63 };
  size_t w = 0;

  for (; w + 8 <= n_words; w += 8)
    {
      qk_v64u8 b;
      qk_v8u64 x;
      qk_v8u32 out;
      memcpy (&b, codes + 8 * w, sizeof b);
      if (reorder)
        b = QK_SHUFFLE (b, order);
      memcpy (&x, &b, sizeof x);
      x &= 0x0F0F0F0F0F0F0F0Full;
      x = (x | (x >> 4)) & 0x00FF00FF00FF00FFull;
      x = (x | (x >> 8)) & 0x0000FFFF0000FFFFull;
      x = (x | (x >> 16)) & 0x00000000FFFFFFFFull;
      out = __builtin_convertvector (x, qk_v8u32);
      memcpy (words + w, &out, sizeof out);
    }
  return w;
}

bool
quark_kernel_pack_int4 (const int8_t *codes,
                        size_t        n_rows,
                        size_t        row_len,
                        bool          reorder,
                        int32_t      *words)
{
  if (row_len % 8)
    return false;
  for (size_t r = 0; r < n_rows; r++)
    for (size_t w = pack_int4_words (codes + r * row_len, row_len / 8, reorder, words + r * (row_len / 8));
         w < row_len / 8; w++)
      {
        const int8_t *c = codes + r * row_len + w * 8;
        uint32_t word = 0;
        for (unsigned k = 0; k < 8; k++)
          word |= ((uint32_t) c[reorder ? reorder_order[k] : k] & 0xFu) << (4 * k);
        words[r * (row_len / 8) + w] = (int32_t) word;
      }
  return true;
}

/* The transposed int4 layout in tiles of 128 rows and 16 columns: the
 * sixteen words of a row group (eight rows) for sixteen columns are one
 * vector, four byte vectors of nibble pairs widened; sixteen such vectors
 * (128 rows) are transposed in registers (four rounds of swapping
 * off-diagonal blocks), and each result is a column's sixteen consecutive
 * words: one 64-byte store per column. */
static const qk_vu qk_swap_lo[4] = {
  { 0, 16,  2, 18,  4, 20,  6, 22,  8, 24, 10, 26, 12, 28, 14, 30 },
  { 0,  1, 16, 17,  4,  5, 20, 21,  8,  9, 24, 25, 12, 13, 28, 29 },
  { 0,  1,  2,  3, 16, 17, 18, 19,  8,  9, 10, 11, 24, 25, 26, 27 },
  { 0,  1,  2,  3,  4,  5,  6,  7, 16, 17, 18, 19, 20, 21, 22, 23 } };
static const qk_vu qk_swap_hi[4] = {
  {  1, 17,  3, 19,  5, 21,  7, 23,  9, 25, 11, 27, 13, 29, 15, 31 },
  {  2,  3, 18, 19,  6,  7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31 },
  {  4,  5,  6,  7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31 },
  {  8,  9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31 } };

/* byte 4i + k of a column word vector is byte i of nibble pair k */
static const qk_v64u8 qk_gather_pairs = {
   0, 16, 32, 48,  1, 17, 33, 49,  2, 18, 34, 50,  3, 19, 35, 51,
   4, 20, 36, 52,  5, 21, 37, 53,  6, 22, 38, 54,  7, 23, 39, 55,
   8, 24, 40, 56,  9, 25, 41, 57, 10, 26, 42, 58, 11, 27, 43, 59,
  12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63 };

typedef uint8_t qk_v16u8 __attribute__ ((vector_size (16)));

/* Four 16-byte runs as one 64-byte vector. Joined in registers
 * (vinserti128, vinserti64x4): copied into a 64-byte buffer on the stack
 * and loaded from there, the four 16-byte stores cannot be forwarded to
 * the 64-byte load, which then waits for them to reach the cache. */
QK_INLINE qk_v64u8
qk_join4x16 (const int8_t *a, const int8_t *b, const int8_t *c, const int8_t *d)
{
#if defined(__has_builtin) && __has_builtin(__builtin_shufflevector)
  qk_v16u8 v[4];
  qk_v32u8 lo, hi;
  memcpy (&v[0], a, 16);
  memcpy (&v[1], b, 16);
  memcpy (&v[2], c, 16);
  memcpy (&v[3], d, 16);
  lo = __builtin_shufflevector (v[0], v[1], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
  hi = __builtin_shufflevector (v[2], v[3], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
  return __builtin_shufflevector (lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
                                  32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
                                  48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63);
#else
  uint8_t buf[64];
  qk_v64u8 r;
  memcpy (buf, a, 16);
  memcpy (buf + 16, b, 16);
  memcpy (buf + 32, c, 16);
  memcpy (buf + 48, d, 16);
  memcpy (&r, buf, sizeof r);
  return r;
#endif
}

/* The words of row group w (eight rows) for columns [c0, c0 + 16): the
 * even rows' low nibbles and the odd rows' high nibbles side by side as
 * four 16-byte pairs, then gathered into words. */
QK_INLINE qk_vu
column_words (const int8_t *codes, size_t row_len, size_t w, size_t c0, bool reorder)
{
  const int8_t *rows[8];
  qk_v64u8 e, o, pairs;
  qk_vu x;

  _Pragma ("GCC unroll 8")
  for (unsigned k = 0; k < 8; k++)
    rows[k] = codes + (8 * w + (reorder ? reorder_order[k] : k)) * row_len + c0;
  e = qk_join4x16 (rows[0], rows[2], rows[4], rows[6]);
  o = qk_join4x16 (rows[1], rows[3], rows[5], rows[7]);
  pairs = (e & 0x0F) | (qk_v64u8) (o << 4);
  pairs = QK_SHUFFLE (pairs, qk_gather_pairs);
  memcpy (&x, &pairs, sizeof x);
  return x;
}

/* The same layout in 128-bit vectors, for processors without AVX512BW
 * (qk_wide_permutes() false), where GCC 12 builds the 512-bit shuffles
 * above through general registers: tiles of eight row groups (64 rows) by
 * 16 or 64 columns. For one row group, the nibble pairs of rows (2k,
 * 2k + 1) are bytes of p[k]; interleaving the bytes of p[0] and p[1], and
 * of p[2] and p[3], then their 16-bit lanes (punpck, SSE2) gives the words
 * of columns 4j to 4j + 3 in v[j]. The four words of one column in four
 * row groups are then one vector after a 4 x 4 transpose of 32-bit lanes
 * (punpck of 32, then of 64 bits). Every operation stays within 128 bits,
 * which processors with AVX2 but not AVX-512 (Zen 1 splits 256-bit
 * operations in two) run as fast as 256-bit ones, and SSE2 as well. */
typedef uint32_t qk_v4u32 __attribute__ ((vector_size (16)));
typedef uint64_t qk_v2u64 __attribute__ ((vector_size (16)));

QK_INLINE void
column_words16 (const int8_t *group, const size_t off[8], qk_v4u32 v[4])
{
  const qk_v16u8 bytes_lo = { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 };
  const qk_v16u8 bytes_hi = { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 };
  const qk_v8u16 halves_lo = { 0, 8, 1, 9, 2, 10, 3, 11 }, halves_hi = { 4, 12, 5, 13, 6, 14, 7, 15 };
  qk_v16u8 p[4];
  qk_v8u16 a_lo, a_hi, b_lo, b_hi;

  _Pragma ("GCC unroll 4")
  for (unsigned k = 0; k < 4; k++)
    {
      qk_v16u8 e, o;
      memcpy (&e, group + off[2 * k], sizeof e);
      memcpy (&o, group + off[2 * k + 1], sizeof o);
      /* (o & 15) << 4 in 16-bit lanes: no bit crosses into the next byte */
      p[k] = (e & 0x0F) | (qk_v16u8) ((qk_v8u16) (o & 0x0F) << 4);
    }
  a_lo = (qk_v8u16) QK_SHUFFLE2 (p[0], p[1], bytes_lo);
  a_hi = (qk_v8u16) QK_SHUFFLE2 (p[0], p[1], bytes_hi);
  b_lo = (qk_v8u16) QK_SHUFFLE2 (p[2], p[3], bytes_lo);
  b_hi = (qk_v8u16) QK_SHUFFLE2 (p[2], p[3], bytes_hi);
  v[0] = (qk_v4u32) QK_SHUFFLE2 (a_lo, b_lo, halves_lo);
  v[1] = (qk_v4u32) QK_SHUFFLE2 (a_lo, b_lo, halves_hi);
  v[2] = (qk_v4u32) QK_SHUFFLE2 (a_hi, b_hi, halves_lo);
  v[3] = (qk_v4u32) QK_SHUFFLE2 (a_hi, b_hi, halves_hi);
}

/* x[i] lane k becomes x[k] lane i */
QK_INLINE void
qk_transpose4 (qk_v4u32 x[4])
{
  const qk_v4u32 lo32 = { 0, 4, 1, 5 }, hi32 = { 2, 6, 3, 7 };
  const qk_v2u64 lo64 = { 0, 2 }, hi64 = { 1, 3 };
  qk_v2u64 t0 = (qk_v2u64) QK_SHUFFLE2 (x[0], x[1], lo32), t1 = (qk_v2u64) QK_SHUFFLE2 (x[0], x[1], hi32);
  qk_v2u64 t2 = (qk_v2u64) QK_SHUFFLE2 (x[2], x[3], lo32), t3 = (qk_v2u64) QK_SHUFFLE2 (x[2], x[3], hi32);

  x[0] = (qk_v4u32) QK_SHUFFLE2 (t0, t2, lo64);
  x[1] = (qk_v4u32) QK_SHUFFLE2 (t0, t2, hi64);
  x[2] = (qk_v4u32) QK_SHUFFLE2 (t1, t3, lo64);
  x[3] = (qk_v4u32) QK_SHUFFLE2 (t1, t3, hi64);
}

/* Row groups [w0, w0 + @nw) (@nw at most 8; from @codes, which starts at
 * row group @first) by columns [c0, c0 + 16 @nq): each column's @nw words,
 * at most two 16-byte stores. A row's 16 @nq codes are read at once: with
 * rows a power of two apart (2048 codes), the 64 rows of a tile share two
 * sets of a typical L1 data cache, so that a line must be used up before
 * the next rows' lines evict it. */
QK_INLINE void
pack_columns_tile16 (const int8_t *codes, size_t row_len, size_t n_words, size_t first, size_t w0, size_t c0,
                     unsigned nw, unsigned nq, const size_t off[8], int32_t *words)
{
  qk_v4u32 v[8][16];

  for (unsigned w = 0; w < 8; w++)
    for (unsigned q = 0; q < nq; q++)
      {
        if (w < nw)
          column_words16 (codes + 8 * (w0 - first + w) * row_len + c0 + 16 * q, off, &v[w][4 * q]);
        else
          for (unsigned j = 0; j < 4; j++)
            v[w][4 * q + j] = (qk_v4u32) { 0, 0, 0, 0 };
      }
  for (unsigned j = 0; j < 4 * nq; j++)
    _Pragma ("GCC unroll 2")
    for (unsigned h = 0; h < 2; h++)
      {
        qk_v4u32 x[4] = { v[4 * h][j], v[4 * h + 1][j], v[4 * h + 2][j], v[4 * h + 3][j] };
        qk_transpose4 (x);
        _Pragma ("GCC unroll 4")
        for (unsigned i = 0; i < 4; i++)
          {
            int32_t *dst = words + (c0 + 4 * j + i) * n_words + w0 + 4 * h;
            if (nw >= 4 * h + 4)
              memcpy (dst, &x[i], sizeof x[i]);
            else if (nw > 4 * h)
              memcpy (dst, &x[i], (nw - 4 * h) * sizeof (int32_t));
          }
      }
}

/* The words of 16 row groups (x[j]: one row group's words of 16 columns;
 * those past @nw zero) transposed in registers, four rounds of swapping
 * off-diagonal blocks, and each column's @nw words stored: column i at
 * @words + i @n_words. */
QK_INLINE void
transpose_store16 (qk_vu x[16], unsigned nw, int32_t *words, size_t n_words)
{
  _Pragma ("GCC unroll 4")
  for (unsigned r = 0; r < 4; r++)
    {
      unsigned d = 1u << r;
      _Pragma ("GCC unroll 16")
      for (unsigned i = 0; i < 16; i++)
        if (!(i & d))
          {
            qk_vu a = x[i], b = x[i + d];
            x[i] = QK_SHUFFLE2 (a, b, qk_swap_lo[r]);
            x[i + d] = QK_SHUFFLE2 (a, b, qk_swap_hi[r]);
          }
    }
  if (nw == 16)
    {
      _Pragma ("GCC unroll 16")
      for (unsigned i = 0; i < 16; i++)
        memcpy (words + i * n_words, &x[i], sizeof x[i]);
    }
  else
    for (unsigned i = 0; i < 16; i++)
      memcpy (words + i * n_words, &x[i], nw * sizeof (int32_t));
}

/* One AVX-512 tile: @nw (at most 16) row groups of @codes (rows @stride
 * apart) by the 16 columns from @c, into @nw words of each of 16 columns
 * from @words (columns @n_words apart). */
QK_INLINE void
pack_tile_wide (const int8_t *codes, size_t stride, size_t c, unsigned nw, bool reorder, int32_t *words,
                size_t n_words)
{
  qk_vu x[16];

  _Pragma ("GCC unroll 16")
  for (unsigned j = 0; j < 16; j++)
    x[j] = j < nw ? column_words (codes, stride, j, c, reorder) : (qk_vu) { 0 };
  transpose_store16 (x, nw, words, n_words);
}

/* Byte interleaves of two 64-byte vectors: pairs of bytes i of a and b,
 * for i < 32 (lo) and i >= 32 (hi) */
static const qk_v64u8 qk_zip8_lo = {
   0, 64,  1, 65,  2, 66,  3, 67,  4, 68,  5, 69,  6, 70,  7, 71,
   8, 72,  9, 73, 10, 74, 11, 75, 12, 76, 13, 77, 14, 78, 15, 79,
  16, 80, 17, 81, 18, 82, 19, 83, 20, 84, 21, 85, 22, 86, 23, 87,
  24, 88, 25, 89, 26, 90, 27, 91, 28, 92, 29, 93, 30, 94, 31, 95 };
static const qk_v64u8 qk_zip8_hi = {
  32,  96, 33,  97, 34,  98, 35,  99, 36, 100, 37, 101, 38, 102, 39, 103,
  40, 104, 41, 105, 42, 106, 43, 107, 44, 108, 45, 109, 46, 110, 47, 111,
  48, 112, 49, 113, 50, 114, 51, 115, 52, 116, 53, 117, 54, 118, 55, 119,
  56, 120, 57, 121, 58, 122, 59, 123, 60, 124, 61, 125, 62, 126, 63, 127 };
/* The same for 16-bit lanes: pairs of lanes i of a and b, i < 16 and i >= 16 */
static const qk_vh qk_zip16_lo = {
   0, 32,  1, 33,  2, 34,  3, 35,  4, 36,  5, 37,  6, 38,  7, 39,
   8, 40,  9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47 };
static const qk_vh qk_zip16_hi = {
  16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
  24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63 };

/* The words of row group w (eight rows, @stride apart) for the 64 columns
 * from @c: q[k] holds those of columns c + 16k to c + 16k + 15. Each row's
 * 64 codes are one load (a whole line when @c is line-aligned); the nibble
 * pairs of rows (2k, 2k + 1) are a byte vector p[k], and the bytes of p[0]
 * to p[3] are interleaved into words, two byte zips then two 16-bit zips. */
QK_INLINE void
column_words64 (const int8_t *codes, size_t stride, size_t w, size_t c, bool reorder, qk_vu q[4])
{
  qk_v64u8 p[4];
  qk_vh a[2], b[2];

  _Pragma ("GCC unroll 4")
  for (unsigned k = 0; k < 4; k++)
    {
      qk_v64u8 e, o;
      memcpy (&e, codes + (8 * w + (reorder ? reorder_order[2 * k] : 2 * k)) * stride + c, sizeof e);
      memcpy (&o, codes + (8 * w + (reorder ? reorder_order[2 * k + 1] : 2 * k + 1)) * stride + c, sizeof o);
      p[k] = (e & 0x0F) | (qk_v64u8) (o << 4);
    }
  a[0] = (qk_vh) QK_SHUFFLE2 (p[0], p[1], qk_zip8_lo);
  a[1] = (qk_vh) QK_SHUFFLE2 (p[0], p[1], qk_zip8_hi);
  b[0] = (qk_vh) QK_SHUFFLE2 (p[2], p[3], qk_zip8_lo);
  b[1] = (qk_vh) QK_SHUFFLE2 (p[2], p[3], qk_zip8_hi);
  q[0] = (qk_vu) QK_SHUFFLE2 (a[0], b[0], qk_zip16_lo);
  q[1] = (qk_vu) QK_SHUFFLE2 (a[0], b[0], qk_zip16_hi);
  q[2] = (qk_vu) QK_SHUFFLE2 (a[1], b[1], qk_zip16_lo);
  q[3] = (qk_vu) QK_SHUFFLE2 (a[1], b[1], qk_zip16_hi);
}

/* @nw (at most 16) row groups of @codes (rows @stride apart) by the 64
 * columns from @c, into @nw words of each of 64 columns from @words
 * (columns @n_words apart): the row groups' words of 64 columns
 * (column_words64 ()) into a buffer, then per 16 columns
 * transpose_store16 (). Every row's line is used up in one visit, so rows a
 * power of two apart (which share cache sets) cost no second read. */
QK_INLINE void
pack_strip64_wide (const int8_t *codes, size_t stride, size_t c, unsigned nw, bool reorder, int32_t *words,
                   size_t n_words)
{
  qk_vu buf[16][4];

  for (unsigned j = 0; j < nw; j++)
    column_words64 (codes, stride, j, c, reorder, buf[j]);
  for (unsigned j = nw; j < 16; j++)
    for (unsigned k = 0; k < 4; k++)
      buf[j][k] = (qk_vu) { 0 };
  for (unsigned k = 0; k < 4; k++)
    {
      qk_vu x[16];

      _Pragma ("GCC unroll 16")
      for (unsigned j = 0; j < 16; j++)
        x[j] = buf[j][k];
      transpose_store16 (x, nw, words + 16 * k * n_words, n_words);
    }
}

/* Row groups per band of the 128-bit form: 16 (128 rows, 256 KiB of codes
 * at 2048 columns) measured best against 8 and 64 (whole layout of 5632 x
 * 2048 codes on an AMD EPYC with AVX2: 3.7 ms against 5.2 and 4.3) */
#define PACK_BAND 16

QK_MULTIVERSION static size_t
pack_columns_tiles (const int8_t *codes, size_t row_len, size_t n_words, size_t first, size_t n, bool reorder,
                    int32_t *words)
{
  size_t off[8], full, w0;

  if (n == 0 || row_len < 16)
    return 0;
  full = row_len - row_len % 16;
  if (!qk_wide_permutes ())
    {
      for (unsigned k = 0; k < 8; k++)
        off[k] = (reorder ? reorder_order[k] : k) * row_len;
      /* bands of row groups, each in strips of 64 columns (a 64-byte line
       * of each row): a line of the input is used up in one visit, and
       * each column gets a band's words (64 bytes) as one run */
      for (size_t b0 = first; b0 < first + n; b0 += PACK_BAND)
        for (size_t c0 = 0; c0 < full;)
          {
            size_t b_end = MIN (b0 + PACK_BAND, first + n);
            unsigned nq = c0 + 64 <= full ? 4 : 1;
            for (w0 = b0; w0 + 8 <= b_end; w0 += 8)
              pack_columns_tile16 (codes, row_len, n_words, first, w0, c0, 8, nq, off, words);
            if (w0 < b_end)
              pack_columns_tile16 (codes, row_len, n_words, first, w0, c0, (unsigned) (b_end - w0), nq, off, words);
            c0 += 16 * nq;
          }
      return full;
    }
  /* AVX-512: bands of 16 row groups (the last may hold fewer: a block of
   * 88 rows of 5632 codes, as the backend packs them, has 11) in strips of
   * 64 columns, each row's 64 codes one load (pack_strip64_wide ()), then
   * tiles of 16 columns. Rows a power of two apart (2048, 4096 codes)
   * share one or two sets of the L1 data cache: tiles reading 16 bytes of
   * each row lost the lines before the next tile's 16 bytes, so until
   * 2026-12-07 each strip was first copied into a buffer of 64-byte rows
   * and its tiles built each column's words from four 16-byte pieces.
   * Whole tensors in blocks of 128 rows (88 for 5632), codes in cache, best
   * of 15, old and new library alternating: 5632 x 2048 0.083-0.091 ->
   * 0.048-0.068 ns per code, 2048 x 5632 0.054-0.073 -> 0.038-0.044 */
  for (w0 = first; w0 < first + n; w0 += 16)
    {
      const unsigned nw = first + n - w0 < 16 ? (unsigned) (first + n - w0) : 16;
      const int8_t *band = codes + 8 * (w0 - first) * row_len;
      size_t c0 = 0;

      /* strips of 64 columns, then the last 16-column tiles of a row */
      for (; c0 + 64 <= full; c0 += 64)
        pack_strip64_wide (band, row_len, c0, nw, reorder, words + c0 * n_words + w0, n_words);
      for (; c0 < full; c0 += 16)
        pack_tile_wide (band, row_len, c0, nw, reorder, words + c0 * n_words + w0, n_words);
    }
  return full;
}

/* Row groups [first, first + n) of the column layout: the tiles take
 * every row group of the first columns (pack_columns_tiles () returns how
 * many), the rest of the columns one code at a time */
static void
pack_columns_rows (const int8_t *codes, size_t row_len, size_t n_words, size_t first, size_t n, bool reorder,
                   int32_t *words)
{
  const size_t full = pack_columns_tiles (codes, row_len, n_words, first, n, reorder, words);

  for (size_t c = full; c < row_len; c++)
    for (size_t w = first; w < first + n; w++)
      {
        uint32_t word = 0;
        for (unsigned k = 0; k < 8; k++)
          word |= ((uint32_t) codes[(8 * (w - first) + (reorder ? reorder_order[k] : k)) * row_len + c] & 0xFu)
                  << (4 * k);
        words[c * n_words + w] = (int32_t) word;
      }
}

/**
 * quark_kernel_pack_int4_columns: (skip)
 * @codes: [@n_rows, @row_len] int4 or uint4 codes, one per byte
 * @n_rows: the number of rows, a multiple of 8
 * @row_len: codes per row
 * @reorder: use the AutoAWQ interleave, as quark_kernel_pack_int4()
 * @words: room for @row_len × @n_rows / 8 words
 *
 * Packs 4-bit codes eight to an int32 along columns, into the transposed
 * layout [@row_len, @n_rows / 8]: word (c, w) holds codes (8w + k, c) in
 * the nibble order of quark_kernel_pack_int4(). The same words as
 * transposing @codes and packing the rows of the transpose, in one pass
 * (AMD Quark's and AutoAWQ's per-group int4 layouts).
 *
 * Returns: %false if @n_rows is not a multiple of 8
 */
bool
quark_kernel_pack_int4_columns (const int8_t *codes,
                                size_t        n_rows,
                                size_t        row_len,
                                bool          reorder,
                                int32_t      *words)
{
  if (n_rows % 8)
    return false;
  pack_columns_rows (codes, row_len, n_rows / 8, 0, n_rows / 8, reorder, words);
  return true;
}

/**
 * quark_kernel_pack_int4_columns_block: (skip)
 * @codes: rows [@first_row, @first_row + @n_rows) of an [@total_rows,
 *   @row_len] matrix of int4 or uint4 codes, one per byte
 * @first_row: the first row @codes holds, a multiple of 8
 * @n_rows: the number of rows @codes holds, a multiple of 8
 * @total_rows: the rows of the whole matrix, a multiple of 8
 * @row_len: codes per row
 * @reorder: use the AutoAWQ interleave, as quark_kernel_pack_int4()
 * @words: the whole [@row_len, @total_rows / 8] layout of
 *   quark_kernel_pack_int4_columns()
 *
 * Writes the words of a block of rows into the layout of
 * quark_kernel_pack_int4_columns(): words (c, w) for every column c and
 * @first_row / 8 ≤ w < (@first_row + @n_rows) / 8, and no other. Blocks
 * that cover the rows give the same words as one call on the whole
 * matrix, so that codes can be packed while a block of them is still in
 * cache, and different blocks from different threads.
 *
 * Returns: %false if @first_row, @n_rows or @total_rows is not a multiple
 *   of 8 or the block does not lie within @total_rows
 */
bool
quark_kernel_pack_int4_columns_block (const int8_t *codes,
                                      size_t        first_row,
                                      size_t        n_rows,
                                      size_t        total_rows,
                                      size_t        row_len,
                                      bool          reorder,
                                      int32_t      *words)
{
  if (first_row % 8 || n_rows % 8 || total_rows % 8 || first_row > total_rows || n_rows > total_rows - first_row)
    return false;
  pack_columns_rows (codes, row_len, total_rows / 8, first_row / 8, n_rows / 8, reorder, words);
  return true;
}

/**
 * quark_kernel_unpack_int4: (skip)
 * @words: packed words
 * @n_rows: the number of rows
 * @row_len: codes per row, a multiple of 8
 * @reorder: whether the words use the AutoAWQ interleave
 * @is_signed: sign-extend the nibbles (int4) or not (uint4)
 * @codes: room for @n_rows × @row_len codes
 *
 * Inverse of quark_kernel_pack_int4().
 *
 * Returns: %false if @row_len is not a multiple of 8
 */
bool
quark_kernel_unpack_int4 (const int32_t *words,
                          size_t         n_rows,
                          size_t         row_len,
                          bool           reorder,
                          bool           is_signed,
                          int8_t        *codes)
{
  static const unsigned in_order[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
  const unsigned *pos = reorder ? reorder_order : in_order;
  /* signed nibbles sign-extended without a branch: (v ^ 8) − 8 */
  const int sx = is_signed ? 8 : 0;
  size_t n_words = n_rows * (row_len / 8);

  if (row_len % 8)
    return false;
  for (size_t i = 0; i < n_words; i++)
    {
      uint32_t word = (uint32_t) words[i];
      int8_t *c = codes + i * 8;
      for (unsigned k = 0; k < 8; k++)
        c[pos[k]] = (int8_t) ((((int) (word >> (4 * k)) & 0xF) ^ sx) - sx);
    }
  return true;
}

/**
 * quark_kernel_pack_offset_binary: (skip)
 * @codes: [@n_rows, @row_len] codes of @bits bits, one per byte
 * @n_rows: the number of rows
 * @row_len: codes per row
 * @bits: bits per code, 1 to 8
 * @is_signed: whether the codes are signed; signed codes are stored as
 *   q + 2^(bits − 1)
 * @words: (nullable): room for the result, or %NULL to only compute its size
 *
 * compressed-tensors' `pack-quantized` layout: each row is a little-endian bit
 * stream of int32 words, element i at bits i·bits … i·bits + bits − 1
 * (elements may straddle words), rows padded to whole words.
 *
 * Returns: the number of words per row, or 0 if @bits is out of range
 */
size_t
quark_kernel_pack_offset_binary (const int8_t *codes,
                                 size_t        n_rows,
                                 size_t        row_len,
                                 unsigned      bits,
                                 bool          is_signed,
                                 int32_t      *words)
{
  size_t per_row;

  if (bits < 1 || bits > 8)
    return 0;
  per_row = (row_len * bits + 31) / 32;
  if (words == NULL)
    return per_row;
  memset (words, 0, n_rows * per_row * sizeof (int32_t));
  for (size_t r = 0; r < n_rows; r++)
    {
      uint32_t *row = (uint32_t *) words + r * per_row;
      for (size_t i = 0; i < row_len; i++)
        {
          unsigned v = (unsigned) (codes[r * row_len + i] + (is_signed ? (1 << (bits - 1)) : 0)) & ((1u << bits) - 1);
          size_t bit = i * bits;
          row[bit / 32] |= (uint32_t) v << (bit % 32);
          if (bit % 32 + bits > 32)
            row[bit / 32 + 1] |= (uint32_t) v >> (32 - bit % 32);
        }
    }
  return per_row;
}

/**
 * quark_kernel_unpack_offset_binary: (skip)
 * @words: packed rows
 * @n_rows: the number of rows
 * @row_len: codes per row
 * @bits: bits per code, 1 to 8
 * @is_signed: whether to subtract 2^(bits − 1)
 * @codes: room for @n_rows × @row_len codes
 *
 * Inverse of quark_kernel_pack_offset_binary().
 *
 * Returns: %false if @bits is out of range
 */
bool
quark_kernel_unpack_offset_binary (const int32_t *words,
                                   size_t         n_rows,
                                   size_t         row_len,
                                   unsigned       bits,
                                   bool           is_signed,
                                   int8_t        *codes)
{
  size_t per_row;

  if (bits < 1 || bits > 8)
    return false;
  per_row = (row_len * bits + 31) / 32;
  for (size_t r = 0; r < n_rows; r++)
    {
      const uint32_t *row = (const uint32_t *) words + r * per_row;
      for (size_t i = 0; i < row_len; i++)
        {
          size_t bit = i * bits;
          uint64_t pair = row[bit / 32];
          unsigned v;
          if (bit / 32 + 1 < per_row)
            pair |= (uint64_t) row[bit / 32 + 1] << 32;
          v = (unsigned) (pair >> (bit % 32)) & ((1u << bits) - 1);
          codes[r * row_len + i] = (int8_t) ((int) v - (is_signed ? (1 << (bits - 1)) : 0));
        }
    }
  return true;
}

/**
 * quark_kernel_pack_fp4: (skip)
 * @codes: @n FP4 codes, one per byte
 * @n: the number of codes
 * @bytes: room for (@n + 1) / 2 bytes
 *
 * Two FP4 codes per byte: element 2i in bits 0-3, element 2i + 1 in bits 4-7
 * (an odd last element leaves the high nibble zero).
 */
QK_MULTIVERSION static void
pack_fp4 (const uint8_t *codes, size_t n, uint8_t *bytes)
{
  const qk_v64u8 even = {
     0,  2,  4,  6,  8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
    32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62,
    64, 66, 68, 70, 72, 74, 76, 78, 80, 82, 84, 86, 88, 90, 92, 94,
    96, 98, 100, 102, 104, 106, 108, 110, 112, 114, 116, 118, 120, 122, 124, 126 };
  const qk_v64u8 odd = even + 1;
  size_t i = 0;

  if (!qk_wide_permutes ())
    /* 32 codes as 16 half-words, code 2j in the low byte of half-word j:
     * shifts make the packed byte in the low byte, and one narrowing
     * (vpackuswb, vpermq) gathers them; GCC 12 builds the 512-bit
     * two-operand byte shuffle below lane by lane without AVX512BW */
    for (; i + 16 <= n / 2; i += 16)
      {
        qk_v16u16 w;
        qk_vu8 out;
        memcpy (&w, codes + 2 * i, sizeof w);
        out = __builtin_convertvector ((w & 0xF) | ((w >> 4) & 0xF0), qk_vu8);
        memcpy (bytes + i, &out, sizeof out);
      }
  for (; i + 64 <= n / 2; i += 64)
    {
      qk_v64u8 a, b, lo, hi, out;
      memcpy (&a, codes + 2 * i, sizeof a);
      memcpy (&b, codes + 2 * i + 64, sizeof b);
      lo = QK_SHUFFLE2 (a, b, even);
      hi = QK_SHUFFLE2 (a, b, odd);
      out = (lo & 0xF) | (hi << 4);
      memcpy (bytes + i, &out, sizeof out);
    }
  for (; i < n / 2; i++)
    bytes[i] = (uint8_t) ((codes[2 * i] & 0xF) | ((codes[2 * i + 1] & 0xF) << 4));
  if (n % 2)
    bytes[n / 2] = codes[n - 1] & 0xF;
}

void
quark_kernel_pack_fp4 (const uint8_t *codes,
                       size_t         n,
                       uint8_t       *bytes)
{
  pack_fp4 (codes, n, bytes);
}

/**
 * quark_kernel_unpack_fp4: (skip)
 * @bytes: (@n + 1) / 2 packed bytes
 * @n: the number of codes
 * @codes: room for @n codes
 *
 * Inverse of quark_kernel_pack_fp4().
 */
void
quark_kernel_unpack_fp4 (const uint8_t *bytes,
                         size_t         n,
                         uint8_t       *codes)
{
  for (size_t i = 0; i < n; i++)
    codes[i] = (bytes[i / 2] >> (4 * (i % 2))) & 0xF;
}

/**
 * quark_kernel_pack_fp6: (skip)
 * @codes: @n FP6 codes, one per byte
 * @n: the number of codes, a multiple of 4
 * @bytes: room for @n × 3 / 4 bytes
 *
 * Four FP6 codes per three bytes: w = v0 | v1 << 6 | v2 << 12 | v3 << 18,
 * stored little-endian.
 *
 * Returns: %false if @n is not a multiple of 4
 */
bool
quark_kernel_pack_fp6 (const uint8_t *codes,
                       size_t         n,
                       uint8_t       *bytes)
{
  if (n % 4)
    return false;
  for (size_t i = 0; i < n / 4; i++)
    {
      const uint8_t *v = codes + 4 * i;
      uint32_t w = (uint32_t) (v[0] & 0x3F) | (uint32_t) (v[1] & 0x3F) << 6 |
                   (uint32_t) (v[2] & 0x3F) << 12 | (uint32_t) (v[3] & 0x3F) << 18;
      bytes[3 * i] = (uint8_t) w;
      bytes[3 * i + 1] = (uint8_t) (w >> 8);
      bytes[3 * i + 2] = (uint8_t) (w >> 16);
    }
  return true;
}

/**
 * quark_kernel_unpack_fp6: (skip)
 * @bytes: @n × 3 / 4 packed bytes
 * @n: the number of codes, a multiple of 4
 * @codes: room for @n codes
 *
 * Inverse of quark_kernel_pack_fp6().
 *
 * Returns: %false if @n is not a multiple of 4
 */
bool
quark_kernel_unpack_fp6 (const uint8_t *bytes,
                         size_t         n,
                         uint8_t       *codes)
{
  if (n % 4)
    return false;
  for (size_t i = 0; i < n / 4; i++)
    {
      uint32_t w = (uint32_t) bytes[3 * i] | (uint32_t) bytes[3 * i + 1] << 8 |
                   (uint32_t) bytes[3 * i + 2] << 16;
      for (unsigned k = 0; k < 4; k++)
        codes[4 * i + k] = (uint8_t) ((w >> (6 * k)) & 0x3F);
    }
  return true;
}
