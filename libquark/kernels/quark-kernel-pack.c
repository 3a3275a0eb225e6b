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
  if (row_len % 8)
    return false;
  for (size_t r = 0; r < n_rows; r++)
    for (size_t w = 0; w < row_len / 8; w++)
      {
        uint32_t word = (uint32_t) words[r * (row_len / 8) + w];
        int8_t *c = codes + r * row_len + w * 8;
        for (unsigned k = 0; k < 8; k++)
          {
            int v = (int) ((word >> (4 * k)) & 0xFu);
            if (is_signed && v >= 8)
              v -= 16;
            c[reorder ? reorder_order[k] : k] = (int8_t) v;
          }
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
