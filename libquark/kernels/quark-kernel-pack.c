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

/* The words of row group w (eight rows) for columns [c0, c0 + 16): the
 * even rows' low nibbles and the odd rows' high nibbles side by side as
 * four 16-byte pairs, then gathered into words. */
QK_INLINE qk_vu
column_words (const int8_t *codes, size_t row_len, size_t w, size_t c0, bool reorder)
{
  uint8_t even[64], odd[64];
  qk_v64u8 e, o, pairs;
  qk_vu x;

  for (unsigned k = 0; k < 4; k++)
    {
      memcpy (even + 16 * k, codes + (8 * w + (reorder ? reorder_order[2 * k] : 2 * k)) * row_len + c0, 16);
      memcpy (odd + 16 * k, codes + (8 * w + (reorder ? reorder_order[2 * k + 1] : 2 * k + 1)) * row_len + c0, 16);
    }
  memcpy (&e, even, sizeof e);
  memcpy (&o, odd, sizeof o);
  pairs = (e & 0x0F) | (qk_v64u8) (o << 4);
  pairs = QK_SHUFFLE (pairs, qk_gather_pairs);
  memcpy (&x, &pairs, sizeof x);
  return x;
}

/* The same tile in 256-bit vectors, for processors without AVX512BW
 * (qk_wide_permutes() false), where GCC 12 builds the 512-bit shuffles
 * above through general registers: eight row groups (64 rows) by sixteen
 * columns at a time. For a row group, its nibble pairs k (rows 2k and
 * 2k + 1) sit as bytes, pairs 0 and 2 in one vector (a 128-bit lane each),
 * 1 and 3 in another; interleaving their bytes, then the 128-bit halves,
 * then the 16-bit lanes gives the words of columns 0-3 and 8-11 in one
 * vector (lo) and 4-7 and 12-15 in another (hi). Two 8 x 8 transposes of
 * 32-bit lanes (vpunpck of 32 then 64 bits, vperm2i128) make each column's
 * eight consecutive words one vector. */
QK_INLINE qk_v32u8
qk_load_2x16 (const int8_t *a, const int8_t *b)
{
  qk_v32u8 v;
  memcpy (&v, a, 16);
  memcpy ((uint8_t *) &v + 16, b, 16);
  return v;
}

QK_INLINE void
column_words8 (const int8_t *codes, size_t row_len, size_t w, size_t c0, bool reorder, qk_v8u32 *lo,
               qk_v8u32 *hi)
{
  const qk_v32u8 bytes_lo = {  0, 32,  1, 33,  2, 34,  3, 35,  4, 36,  5, 37,  6, 38,  7, 39,
                              16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55 };
  const qk_v32u8 bytes_hi = {  8, 40,  9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47,
                              24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63 };
  const qk_v4u64 halves_lo = { 0, 1, 4, 5 }, halves_hi = { 2, 3, 6, 7 };
  const qk_v16u16 words_lo = { 0, 16, 1, 17, 2, 18, 3, 19, 8, 24, 9, 25, 10, 26, 11, 27 };
  const qk_v16u16 words_hi = { 4, 20, 5, 21, 6, 22, 7, 23, 12, 28, 13, 29, 14, 30, 15, 31 };
  const int8_t *row[8];
  qk_v32u8 p02, p13, l, h;
  qk_v16u16 a, b;

  for (unsigned k = 0; k < 8; k++)
    row[k] = codes + (8 * w + (reorder ? reorder_order[k] : k)) * row_len + c0;
  /* (the high nibbles shifted in 16-bit lanes: GCC 12 shifts bytes by
   * adding four times) */
  p02 = (qk_load_2x16 (row[0], row[4]) & 0x0F)
        | (qk_v32u8) (((qk_v16u16) qk_load_2x16 (row[1], row[5]) << 4) & 0xF0F0);
  p13 = (qk_load_2x16 (row[2], row[6]) & 0x0F)
        | (qk_v32u8) (((qk_v16u16) qk_load_2x16 (row[3], row[7]) << 4) & 0xF0F0);
  l = QK_SHUFFLE2 (p02, p13, bytes_lo);
  h = QK_SHUFFLE2 (p02, p13, bytes_hi);
  a = (qk_v16u16) QK_SHUFFLE2 ((qk_v4u64) l, (qk_v4u64) h, halves_lo);
  b = (qk_v16u16) QK_SHUFFLE2 ((qk_v4u64) l, (qk_v4u64) h, halves_hi);
  *lo = (qk_v8u32) QK_SHUFFLE2 (a, b, words_lo);
  *hi = (qk_v8u32) QK_SHUFFLE2 (a, b, words_hi);
}

QK_INLINE void
qk_transpose8 (qk_v8u32 r[8])
{
  const qk_v8u32 lo32 = { 0, 8, 1, 9, 4, 12, 5, 13 }, hi32 = { 2, 10, 3, 11, 6, 14, 7, 15 };
  const qk_v4u64 lo64 = { 0, 4, 2, 6 }, hi64 = { 1, 5, 3, 7 };
  const qk_v4u64 lo128 = { 0, 1, 4, 5 }, hi128 = { 2, 3, 6, 7 };
  qk_v8u32 t[8];
  qk_v4u64 u[8];

  for (int i = 0; i < 4; i++)
    {
      t[2 * i] = QK_SHUFFLE2 (r[2 * i], r[2 * i + 1], lo32);
      t[2 * i + 1] = QK_SHUFFLE2 (r[2 * i], r[2 * i + 1], hi32);
    }
  for (int q = 0; q < 2; q++)
    for (int i = 0; i < 2; i++)
      {
        u[4 * q + 2 * i] = QK_SHUFFLE2 ((qk_v4u64) t[4 * q + i], (qk_v4u64) t[4 * q + i + 2], lo64);
        u[4 * q + 2 * i + 1] = QK_SHUFFLE2 ((qk_v4u64) t[4 * q + i], (qk_v4u64) t[4 * q + i + 2], hi64);
      }
  for (int i = 0; i < 4; i++)
    {
      r[i] = (qk_v8u32) QK_SHUFFLE2 (u[i], u[i + 4], lo128);
      r[i + 4] = (qk_v8u32) QK_SHUFFLE2 (u[i], u[i + 4], hi128);
    }
}

QK_INLINE void
pack_columns_tile8 (const int8_t *codes, size_t row_len, size_t n_words, size_t w0, size_t c0, bool reorder,
                    int32_t *words)
{
  qk_v8u32 lo[8], hi[8];

  _Pragma ("GCC unroll 8")
  for (unsigned j = 0; j < 8; j++)
    column_words8 (codes, row_len, w0 + j, c0, reorder, &lo[j], &hi[j]);
  qk_transpose8 (lo);
  qk_transpose8 (hi);
  /* lo's lane i is column i (0-3) or i + 4 (8-11), hi's four columns on */
  for (unsigned i = 0; i < 8; i++)
    {
      size_t c = c0 + (i < 4 ? i : i + 4);
      memcpy (words + c * n_words + w0, &lo[i], sizeof lo[i]);
      memcpy (words + (c + 4) * n_words + w0, &hi[i], sizeof hi[i]);
    }
}

QK_MULTIVERSION static void
pack_columns_tile (const int8_t *codes, size_t row_len, size_t n_words, size_t w0, size_t c0, bool reorder,
                   int32_t *words)
{
  qk_vu x[16];

  if (!qk_wide_permutes ())
    {
      pack_columns_tile8 (codes, row_len, n_words, w0, c0, reorder, words);
      pack_columns_tile8 (codes, row_len, n_words, w0 + 8, c0, reorder, words);
      return;
    }
  for (unsigned j = 0; j < 16; j++)
    x[j] = column_words (codes, row_len, w0 + j, c0, reorder);
  for (unsigned r = 0; r < 4; r++)
    {
      unsigned d = 1u << r;
      for (unsigned i = 0; i < 16; i++)
        if (!(i & d))
          {
            qk_vu a = x[i], b = x[i + d];
            x[i] = QK_SHUFFLE2 (a, b, qk_swap_lo[r]);
            x[i + d] = QK_SHUFFLE2 (a, b, qk_swap_hi[r]);
          }
    }
  for (unsigned i = 0; i < 16; i++)
    memcpy (words + (c0 + i) * n_words + w0, &x[i], sizeof x[i]);
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
  size_t n_words = n_rows / 8, full;

  if (n_rows % 8)
    return false;
  /* whole tiles of 128 rows by 16 columns, then the edges word by word */
  full = n_words >= 16 ? row_len - row_len % 16 : 0;
  for (size_t w0 = 0; w0 + 16 <= n_words; w0 += 16)
    for (size_t c0 = 0; c0 < full; c0 += 16)
      pack_columns_tile (codes, row_len, n_words, w0, c0, reorder, words);
  for (size_t c = 0; c < row_len; c++)
    for (size_t w = c < full ? n_words - n_words % 16 : 0; w < n_words; w++)
      {
        uint32_t word = 0;
        for (unsigned k = 0; k < 8; k++)
          word |= ((uint32_t) codes[(8 * w + (reorder ? reorder_order[k] : k)) * row_len + c] & 0xFu) << (4 * k);
        words[c * n_words + w] = (int32_t) word;
      }
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
