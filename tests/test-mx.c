/* test-mx.c: OCP MX blocks, E8M0 scales, packing layouts and error metrics
 * against the worked examples of the numerics reference (4.8, 5.1 V19, 5.2
 * Q7, 5.3) and the format reference (2.7-2.9, 3.6, 8)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <math.h>
#include <string.h>

static void
mx_block (QuarkDType element, QuarkMxScaleMode mode, const float *values, gsize n_values,
          guint8 *byte, guint8 codes[32], float decoded[32])
{
  QuarkMxParams p = { element, mode, 32, FALSE };
  float x[32] = { 0 };

  memcpy (x, values, n_values * sizeof (float));
  g_assert_true (quark_kernel_mx_quantize_f32 (&p, x, 1, 32, codes, byte));
  g_assert_true (quark_kernel_mx_dequantize_f32 (&p, codes, byte, 1, 32, decoded));
}

/* 4.8 block A: MXFP4 under floor and even. */
static void
test_block_a_fp4 (void)
{
  const float a[] = { 7.0f, -3.3f, 0.26f, 1.25f, 5.0f, -0.74f, 0.0f, 2.5f };
  const float floor_dec[] = { 6, -3, 0.5f, 1, 4, -0.5f, 0, 2 };
  const guint8 floor_codes[] = { 0x7, 0xD, 0x1, 0x2, 0x6, 0x9, 0x0, 0x4 };
  const float even_dec[] = { 8, -3, 0, 1, 4, -1, 0, 2 };
  const guint8 even_codes[] = { 0x6, 0xB, 0x0, 0x1, 0x4, 0x9, 0x0, 0x2 };
  const guint8 floor_packed[] = { 0xD7, 0x21, 0x96, 0x40 };
  const guint8 even_packed[] = { 0xB6, 0x10, 0x94, 0x20 };
  guint8 byte, codes[32], packed[16];
  float dec[32];

  mx_block (QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_FLOOR, a, 8, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x7F);
  g_assert_cmpmem (codes, 8, floor_codes, 8);
  for (guint i = 0; i < 8; i++)
    g_assert_cmpfloat (dec[i], ==, floor_dec[i]);
  quark_kernel_pack_fp4 (codes, 32, packed);
  g_assert_cmpmem (packed, 4, floor_packed, 4);

  mx_block (QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_EVEN, a, 8, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x80);
  g_assert_cmpmem (codes, 8, even_codes, 8);
  for (guint i = 0; i < 8; i++)
    g_assert_cmpfloat (dec[i], ==, even_dec[i]);
  quark_kernel_pack_fp4 (codes, 32, packed);
  g_assert_cmpmem (packed, 4, even_packed, 4);

  /* amax 6.5 and 6.99: X = 1 in both modes; amax 1.75: 0.5 (even), 0.25 (floor) */
  {
    QuarkMxParams pf = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_FLOOR, 32, FALSE };
    QuarkMxParams pe = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_EVEN, 32, FALSE };
    g_assert_cmphex (quark_kernel_mx_shared_exponent (&pf, 6.5f), ==, 0x7F);
    g_assert_cmphex (quark_kernel_mx_shared_exponent (&pe, 6.5f), ==, 0x7F);
    g_assert_cmphex (quark_kernel_mx_shared_exponent (&pe, 6.99f), ==, 0x7F);
    g_assert_cmphex (quark_kernel_mx_shared_exponent (&pe, 1.75f), ==, 0x7E);
    g_assert_cmphex (quark_kernel_mx_shared_exponent (&pf, 1.75f), ==, 0x7D);
  }
}

/* 4.8 block B: MXFP8 E4M3. */
static void
test_block_b_fp8 (void)
{
  const float b[] = { 3.0f, 3.9f, 0.01f, 1e-6f };
  const guint8 floor_codes[] = { 0x7C, 0x7E, 0x3A, 0x00 };
  const float floor_dec[] = { 3.0f, 3.5f, 0.009765625f, 0 };
  const guint8 even_codes[] = { 0x74, 0x78, 0x32, 0x00 };
  const float even_dec[] = { 3.0f, 4.0f, 0.009765625f, 0 };
  guint8 byte, codes[32];
  float dec[32];

  mx_block (QUARK_DTYPE_F8_E4M3, QUARK_MX_SCALE_FLOOR, b, 4, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x78);
  g_assert_cmpmem (codes, 4, floor_codes, 4);
  for (guint i = 0; i < 4; i++)
    g_assert_cmpfloat (dec[i], ==, floor_dec[i]);

  mx_block (QUARK_DTYPE_F8_E4M3, QUARK_MX_SCALE_EVEN, b, 4, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x79);
  g_assert_cmpmem (codes, 4, even_codes, 4);
  for (guint i = 0; i < 4; i++)
    g_assert_cmpfloat (dec[i], ==, even_dec[i]);
}

/* 4.8 block C: MXINT8. */
static void
test_block_c_int8 (void)
{
  const float c1[] = { 1.5f, -1.0f, 0.3f, 1.995f, -2.0f };
  const int q1[] = { 48, -32, 10, 64, -64 };
  const float d1[] = { 1.5f, -1.0f, 0.3125f, 2.0f, -2.0f };
  const int q2[] = { 96, -64, 19, 127 };
  const float d2[] = { 1.5f, -1.0f, 0.296875f, 1.984375f };
  guint8 byte, codes[32];
  float dec[32];

  mx_block (QUARK_DTYPE_I8, QUARK_MX_SCALE_FLOOR, c1, 5, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x80);
  for (guint i = 0; i < 5; i++)
    {
      g_assert_cmpint ((gint8) codes[i], ==, q1[i]);
      g_assert_cmpfloat (dec[i], ==, d1[i]);
    }
  mx_block (QUARK_DTYPE_I8, QUARK_MX_SCALE_FLOOR, c1, 4, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x7F);
  for (guint i = 0; i < 4; i++)
    {
      g_assert_cmpint ((gint8) codes[i], ==, q2[i]);
      g_assert_cmpfloat (dec[i], ==, d2[i]);
    }
}

/* 5.1 V19 (the OCP parts). */
static void
test_v19 (void)
{
  const float fp4[] = { 6, 5, 2.5f, 0.25f, 0.75f, -3.1f };
  const float fp4_dec[] = { 6, 4, 2, 0, 1, -3 };
  const float mxint8[] = { 1.5f, -1, 0.3f };
  const float mxint8_dec[] = { 1.5f, -1, 0.296875f };
  guint8 byte, codes[32];
  float dec[32];

  mx_block (QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_FLOOR, fp4, 6, &byte, codes, dec);
  g_assert_cmphex (byte, ==, 0x7F);
  for (guint i = 0; i < 6; i++)
    g_assert_cmpfloat (dec[i], ==, fp4_dec[i]);
  mx_block (QUARK_DTYPE_I8, QUARK_MX_SCALE_FLOOR, mxint8, 3, &byte, codes, dec);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpfloat (dec[i], ==, mxint8_dec[i]);
}

/* 5.2 Q7 and 4.4: all-zero blocks, NaN and infinity. */
static void
test_special_blocks (void)
{
  float zeros[32] = { 0 };
  float with_nan[32] = { 1, 2, NAN };
  float with_inf[32] = { 1, -INFINITY };
  guint8 codes[32], byte;
  QuarkMxParams ocp = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_EVEN, 32, FALSE };
  QuarkMxParams quark_even = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_EVEN, 32, TRUE };
  QuarkMxParams quark_floor = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_FLOOR, 32, TRUE };
  QuarkMxParams fp8 = { QUARK_DTYPE_F8_E4M3, QUARK_MX_SCALE_FLOOR, 32, FALSE };
  float dec[32];

  quark_kernel_mx_quantize_f32 (&ocp, zeros, 1, 32, codes, &byte);
  g_assert_cmphex (byte, ==, 0x00);
  for (guint i = 0; i < 32; i++)
    g_assert_cmpuint (codes[i], ==, 0);
  quark_kernel_mx_quantize_f32 (&quark_even, zeros, 1, 32, codes, &byte);
  g_assert_cmphex (byte, ==, 0x01);
  quark_kernel_mx_quantize_f32 (&quark_floor, zeros, 1, 32, codes, &byte);
  g_assert_cmphex (byte, ==, 0x68);

  quark_kernel_mx_quantize_f32 (&fp8, with_nan, 1, 32, codes, &byte);
  g_assert_cmphex (byte, ==, 0xFF);
  g_assert_cmphex (codes[0], ==, 0x7F);
  quark_kernel_mx_dequantize_f32 (&fp8, codes, &byte, 1, 32, dec);
  g_assert_true (isnan (dec[0]) && isnan (dec[31]));
  quark_kernel_mx_quantize_f32 (&fp8, with_inf, 1, 32, codes, &byte);
  g_assert_cmphex (byte, ==, 0xFF);
}

/* Ragged rows: the last block is shorter and behaves as if zero-padded. */
static void
test_ragged_rows (void)
{
  QuarkMxParams p = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_FLOOR, 32, FALSE };
  float x[2 * 40];
  guint8 codes[2 * 40], scales[2 * 2];
  float padded[64] = { 0 };
  guint8 pcodes[64], pscale[2];

  for (guint i = 0; i < G_N_ELEMENTS (x); i++)
    x[i] = sinf ((float) i) * (float) (i % 9 + 1);
  g_assert_true (quark_kernel_mx_quantize_f32 (&p, x, 2, 40, codes, scales));
  /* row 1 alone, padded to 64 with zeros, gives the same codes and scales */
  memcpy (padded, x + 40, 40 * sizeof (float));
  g_assert_true (quark_kernel_mx_quantize_f32 (&p, padded, 1, 64, pcodes, pscale));
  g_assert_cmpmem (codes + 40, 40, pcodes, 40);
  g_assert_cmpmem (scales + 2, 2, pscale, 2);
}

/* The shared exponent against an independent rule: exact log2 in binary64
 * on random magnitudes across the whole binary32 range, and every element
 * of the block within the element range after scaling (no overflow beyond
 * saturation in floor mode, none at all in even mode when the maximum
 * rounds). */
static void
test_shared_exponent_exact (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (11);
  const QuarkDType elements[] = { QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2, QUARK_DTYPE_FP6_E2M3,
                                  QUARK_DTYPE_FP6_E3M2, QUARK_DTYPE_FP4_E2M1, QUARK_DTYPE_I8 };

  for (guint k = 0; k < G_N_ELEMENTS (elements); k++)
    for (guint i = 0; i < 20000; i++)
      {
        guint32 bits = g_rand_int_range (rand, 0x00800000, 0x7f800000);
        float amax;
        int emax, mbits, fl;
        double mant;
        QuarkMxParams pf = { elements[k], QUARK_MX_SCALE_FLOOR, 32, FALSE };
        QuarkMxParams pe = { elements[k], QUARK_MX_SCALE_EVEN, 32, FALSE };
        QuarkMxParams pc = { elements[k], QUARK_MX_SCALE_CEIL, 32, FALSE };
        int ef, ee, ec;

        memcpy (&amax, &bits, 4);
        quark_kernel_mx_element_info (elements[k], &emax, &mbits);
        mant = frexp ((double) amax, &fl);      /* amax = mant * 2^fl, mant in [0.5, 1) */
        fl -= 1;
        mant *= 2;                              /* [1, 2) */
        ef = fl - emax;
        ec = (mant == 1.0 ? fl : fl + 1) - emax;
        /* even: up one binade when the significand rounds up at mbits + 1 bits */
        ee = (mant >= 2.0 - ldexp (1.0, -(mbits + 1)) ? fl + 1 : fl) - emax;
        ef = CLAMP (ef, -127, 127);
        ee = CLAMP (ee, -127, 127);
        ec = CLAMP (ec, -127, 127);
        g_assert_cmpint (quark_kernel_mx_shared_exponent (&pf, amax), ==, ef + 127);
        g_assert_cmpint (quark_kernel_mx_shared_exponent (&pe, amax), ==, ee + 127);
        g_assert_cmpint (quark_kernel_mx_shared_exponent (&pc, amax), ==, ec + 127);
      }
}

static void
test_e8m0 (void)
{
  const float scales[] = { 1, 2, 0x1p-7f, 0x1p-6f, 0x1p-127f, NAN };
  const guint8 bytes[] = { 0x7F, 0x80, 0x78, 0x79, 0x00, 0xFF };

  for (guint i = 0; i < G_N_ELEMENTS (scales); i++)
    g_assert_cmphex (quark_kernel_e8m0_from_f32 (scales[i]), ==, bytes[i]);
  /* PyTorch's float8_e8m0fnu rule */
  g_assert_cmphex (quark_kernel_e8m0_from_f32 (1.5f), ==, 0x80);
  g_assert_cmphex (quark_kernel_e8m0_from_f32 (1.49f), ==, 0x7F);
  g_assert_cmphex (quark_kernel_e8m0_from_f32 (0.0f), ==, 0x00);
  g_assert_cmphex (quark_kernel_e8m0_from_f32 (-4.0f), ==, 0x81);
  g_assert_cmphex (quark_kernel_e8m0_from_f32 (INFINITY), ==, 0xFF);
  g_assert_cmpfloat (quark_kernel_e8m0_to_f32 (0x00), ==, 0x1p-127f);
  g_assert_true (isnan (quark_kernel_e8m0_to_f32 (0xFF)));
  /* every byte but 0xFF round-trips */
  for (guint b = 0; b < 255; b++)
    g_assert_cmpuint (quark_kernel_e8m0_from_f32 (quark_kernel_e8m0_to_f32 ((guint8) b)), ==, b);
}

static void
test_packing_vectors (void)
{
  const gint8 int4[] = { -8, -1, 0, 1, 2, 3, 7, -5 };
  const gint8 uint4[] = { 0, 15, 4, 6, 8, 15, 1, 9 };
  gint32 word;
  gint8 back[8];
  guint8 bytes[4];

  g_assert_true (quark_kernel_pack_int4 (int4, 1, 8, FALSE, &word));
  g_assert_cmphex ((guint32) word, ==, 0xB73210F8);
  g_assert_true (quark_kernel_unpack_int4 (&word, 1, 8, FALSE, TRUE, back));
  g_assert_cmpmem (back, 8, int4, 8);
  g_assert_true (quark_kernel_pack_int4 (int4, 1, 8, TRUE, &word));
  g_assert_cmphex ((guint32) word, ==, 0xB31F7208);
  g_assert_cmpint (word, ==, -1289784824);
  g_assert_true (quark_kernel_unpack_int4 (&word, 1, 8, TRUE, TRUE, back));
  g_assert_cmpmem (back, 8, int4, 8);
  g_assert_true (quark_kernel_pack_int4 (uint4, 1, 8, TRUE, &word));
  g_assert_cmphex ((guint32) word, ==, 0x9F6F1840);
  g_assert_true (quark_kernel_unpack_int4 (&word, 1, 8, TRUE, FALSE, back));
  g_assert_cmpmem (back, 8, uint4, 8);
  g_assert_false (quark_kernel_pack_int4 (int4, 1, 7, FALSE, &word));

  /* compressed-tensors offset binary */
  g_assert_cmpuint (quark_kernel_pack_offset_binary (int4, 1, 8, 4, TRUE, &word), ==, 1);
  g_assert_cmphex ((guint32) word, ==, 0x3FBA9870);
  g_assert_true (quark_kernel_unpack_offset_binary (&word, 1, 8, 4, TRUE, back));
  g_assert_cmpmem (back, 8, int4, 8);

  /* FP6 E2M3: codes 01, 28, 1F, 15 -> 01 FA 55 */
  {
    const guint8 codes[] = { 0x01, 0x28, 0x1F, 0x15 };
    const guint8 expected[] = { 0x01, 0xFA, 0x55 };
    guint8 unpacked[4];
    g_assert_true (quark_kernel_pack_fp6 (codes, 4, bytes));
    g_assert_cmpmem (bytes, 3, expected, 3);
    g_assert_true (quark_kernel_unpack_fp6 (bytes, 4, unpacked));
    g_assert_cmpmem (unpacked, 4, codes, 4);
  }
}

/* The vector packers against a plain reference, on lengths that use both the
 * vector and the tail paths. */
static void
test_pack_vector_paths (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (23);
  static const guint order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

  for (guint reorder = 0; reorder < 2; reorder++)
    {
      const gsize row_len = 8 * 37, rows = 3;
      gint8 codes[8 * 37 * 3], back[8 * 37 * 3];
      gint32 words[37 * 3];

      for (guint i = 0; i < G_N_ELEMENTS (codes); i++)
        codes[i] = (gint8) g_rand_int_range (rand, -8, 8);
      g_assert_true (quark_kernel_pack_int4 (codes, rows, row_len, reorder, words));
      for (gsize w = 0; w < G_N_ELEMENTS (words); w++)
        {
          guint32 expected = 0;
          for (guint k = 0; k < 8; k++)
            expected |= ((guint32) codes[8 * w + (reorder ? order[k] : k)] & 0xF) << (4 * k);
          g_assert_cmphex ((guint32) words[w], ==, expected);
        }
      g_assert_true (quark_kernel_unpack_int4 (words, rows, row_len, reorder, TRUE, back));
      g_assert_cmpmem (back, sizeof back, codes, sizeof codes);
    }

  /* along columns: the same words as packing the rows of the transpose,
   * on shapes with whole 128 x 64 tiles, partial ones and column tails */
  {
    /* whole tiles of 128 rows (64 without AVX-512) by 16 or 64 columns,
     * partial ones, 16-column remainders and column tails */
    static const gsize shapes[][2] = { { 8, 1 }, { 8, 64 }, { 136, 200 }, { 256, 128 }, { 24, 77 },
                                       { 72, 208 }, { 192, 2064 }, { 64, 48 } };
    for (guint reorder = 0; reorder < 2; reorder++)
      for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
        {
          gsize rows = shapes[s][0], cols = shapes[s][1];
          g_autofree gint8 *codes = g_new (gint8, rows * cols), *t = g_new (gint8, rows * cols);
          g_autofree gint32 *words = g_new (gint32, rows * cols / 8), *expected = g_new (gint32, rows * cols / 8);
          for (gsize i = 0; i < rows * cols; i++)
            codes[i] = (gint8) g_rand_int_range (rand, -8, 8);
          for (gsize r = 0; r < rows; r++)
            for (gsize c = 0; c < cols; c++)
              t[c * rows + r] = codes[r * cols + c];
          g_assert_true (quark_kernel_pack_int4 (t, cols, rows, reorder, expected));
          g_assert_true (quark_kernel_pack_int4_columns (codes, rows, cols, reorder, words));
          g_assert_cmpmem (words, rows * cols / 2, expected, rows * cols / 2);
          /* in blocks of rows (random multiples of 8, each from a buffer
           * of its own): the same words */
          memset (words, 0x5A, rows * cols / 2);
          for (gsize first = 0, n; first < rows; first += n)
            {
              g_autofree gint8 *block = NULL;
              gsize want = 8 * (gsize) g_rand_int_range (rand, 1, 20);
              n = MIN (rows - first, want);
              block = g_memdup2 (codes + first * cols, n * cols);
              g_assert_true (quark_kernel_pack_int4_columns_block (block, first, n, rows, cols, reorder, words));
            }
          g_assert_cmpmem (words, rows * cols / 2, expected, rows * cols / 2);
        }
    g_assert_false (quark_kernel_pack_int4_columns (NULL, 12, 4, FALSE, NULL));
    g_assert_false (quark_kernel_pack_int4_columns_block (NULL, 4, 8, 16, 4, FALSE, NULL));
    g_assert_false (quark_kernel_pack_int4_columns_block (NULL, 8, 12, 24, 4, FALSE, NULL));
    g_assert_false (quark_kernel_pack_int4_columns_block (NULL, 16, 16, 24, 4, FALSE, NULL));
  }

  for (gsize n = 1; n < 400; n += 37)
    {
      g_autofree guint8 *codes = g_new (guint8, n);
      g_autofree guint8 *bytes = g_new0 (guint8, (n + 1) / 2);
      g_autofree guint8 *back = g_new (guint8, n);
      for (gsize i = 0; i < n; i++)
        codes[i] = (guint8) g_rand_int_range (rand, 0, 16);
      quark_kernel_pack_fp4 (codes, n, bytes);
      for (gsize i = 0; i < n; i++)
        g_assert_cmpuint ((bytes[i / 2] >> (4 * (i % 2))) & 0xF, ==, codes[i]);
      quark_kernel_unpack_fp4 (bytes, n, back);
      g_assert_cmpmem (back, n, codes, n);
    }
}

/* Dense offset-binary streams of every width round-trip. */
static void
test_offset_binary_roundtrip (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (3);

  for (guint bits = 1; bits <= 8; bits++)
    for (guint len = 1; len < 70; len += 7)
      {
        gint8 codes[3 * 70], back[3 * 70];
        gint32 words[3 * 20];
        gsize per_row;
        for (guint i = 0; i < 3 * len; i++)
          codes[i] = (gint8) g_rand_int_range (rand, -(1 << (bits - 1)), 1 << (bits - 1));
        per_row = quark_kernel_pack_offset_binary (codes, 3, len, bits, TRUE, words);
        g_assert_cmpuint (per_row, ==, (len * bits + 31) / 32);
        g_assert_true (quark_kernel_unpack_offset_binary (words, 3, len, bits, TRUE, back));
        g_assert_cmpmem (back, 3 * len, codes, 3 * len);
      }
}

static void
test_error_metrics (void)
{
  const float x[] = { 1, -2, 3, 0 };
  const float y[] = { 1, -2, 3.5f, 0.5f };
  QuarkErrorMetrics m;

  quark_kernel_error_metrics (x, y, 4, &m);
  g_assert_cmpfloat (m.mse, ==, 0.125);
  g_assert_cmpfloat (m.max_abs, ==, 0.5);
  g_assert_cmpfloat_with_epsilon (m.sqnr_db, 10 * log10 (14 / 0.5), 1e-12);
  quark_kernel_error_metrics (x, x, 4, &m);
  g_assert_true (isinf (m.sqnr_db));
}

/* The MX kernel (vector element path) against a scalar composition: per
 * block, the shared exponent and quark_kernel_fp_quantize_f32_scalar(). */
static void
test_mx_vector_matches_scalar (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (17);
  const QuarkDType elements[] = { QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2, QUARK_DTYPE_FP6_E2M3,
                                  QUARK_DTYPE_FP6_E3M2, QUARK_DTYPE_FP4_E2M1 };
  const gsize lens[] = { 1, 31, 32, 33, 64, 100, 256 };

  for (guint e = 0; e < G_N_ELEMENTS (elements); e++)
    for (guint l = 0; l < G_N_ELEMENTS (lens); l++)
      for (guint mode = 0; mode < 3; mode++)
        {
          gsize len = lens[l], n_blocks = (len + 31) / 32;
          QuarkMxParams p = { elements[e], (QuarkMxScaleMode) mode, 32, FALSE };
          const QuarkFpFormat *fmt = quark_fp_format_for_dtype (elements[e]);
          g_autofree float *x = g_new (float, len);
          g_autofree guint8 *codes = g_new (guint8, len);
          g_autofree guint8 *ref = g_new (guint8, len);
          g_autofree guint8 *bytes = g_new (guint8, n_blocks);

          for (gsize i = 0; i < len; i++)
            x[i] = (float) (g_rand_double_range (rand, -1, 1) * pow (2, g_rand_int_range (rand, -20, 20)));
          g_assert_true (quark_kernel_mx_quantize_f32 (&p, x, 1, len, codes, bytes));
          for (gsize b = 0; b < n_blocks; b++)
            {
              gsize blen = MIN (32, len - b * 32);
              float amax = 0;
              for (gsize i = 0; i < blen; i++)
                amax = fmaxf (amax, fabsf (x[b * 32 + i]));
              g_assert_cmpuint (bytes[b], ==, quark_kernel_mx_shared_exponent (&p, amax));
              quark_kernel_fp_quantize_f32_scalar (fmt, x + b * 32, blen,
                                                   amax == 0 ? 1.0f : quark_kernel_e8m0_to_f32 (bytes[b]),
                                                   ref + b * 32);
            }
          g_assert_cmpmem (codes, len, ref, len);

          /* bfloat16 input: the same as widening first */
          {
            g_autofree guint16 *h = g_new (guint16, len);
            g_autofree float *wide = g_new (float, len);
            g_autofree guint8 *codes_h = g_new (guint8, len), *codes_w = g_new (guint8, len);
            g_autofree guint8 *bytes_h = g_new (guint8, n_blocks), *bytes_w = g_new (guint8, n_blocks);
            for (gsize i = 0; i < len; i++)
              {
                guint32 bits;
                memcpy (&bits, &x[i], 4);
                h[i] = (guint16) (bits >> 16);
              }
            quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, wide, len);
            g_assert_true (quark_kernel_mx_quantize_bf16 (&p, h, 1, len, codes_h, bytes_h));
            g_assert_true (quark_kernel_mx_quantize_f32 (&p, wide, 1, len, codes_w, bytes_w));
            g_assert_cmpmem (codes_h, len, codes_w, len);
            g_assert_cmpmem (bytes_h, n_blocks, bytes_w, n_blocks);
            /* and the scaled minifloat path on bfloat16 */
            g_assert_true (quark_kernel_fp_quantize_bf16 (fmt, h, len, 0.37f, codes_h));
            g_assert_true (quark_kernel_fp_quantize_f32_scalar (fmt, wide, len, 0.37f, codes_w));
            g_assert_cmpmem (codes_h, len, codes_w, len);
          }
        }
}

/* A bfloat16 tensor of @rows rows of @len through the row paths, codes,
 * bytes and the packed form, against a per-block composition of public
 * scalar pieces (each block alone on binary32, and by the scalar minifloat
 * encoder). */
static void
check_rows_against_blocks (const QuarkMxParams *p, const guint16 *h, gsize rows, gsize len)
{
  const gsize n_blocks = (len + 31) / 32, n = rows * len;
  const QuarkFpFormat *fmt = quark_fp_format_for_dtype (p->element);
  gboolean fp4 = p->element == QUARK_DTYPE_FP4_E2M1;
  gboolean fp6 = p->element == QUARK_DTYPE_FP6_E2M3 || p->element == QUARK_DTYPE_FP6_E3M2;
  gsize packed_row = fp4 ? (len + 1) / 2 : fp6 ? len / 4 * 3 : len;
  g_autofree float *w = g_new (float, n);
  g_autofree guint8 *codes = g_new (guint8, n), *ref = g_new (guint8, n);
  g_autofree guint8 *bytes = g_new (guint8, rows * n_blocks), *bytes2 = g_new (guint8, rows * n_blocks);
  g_autofree guint8 *packed = g_new0 (guint8, rows * packed_row + 1);
  g_autofree guint8 *packed_ref = g_new0 (guint8, rows * packed_row + 1);

  quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, h, w, n);
  g_assert_true (quark_kernel_mx_quantize_bf16 (p, h, rows, len, codes, bytes));
  /* the reference: one row of one block at a time on binary32 */
  for (gsize r = 0; r < rows; r++)
    for (gsize b = 0; b < n_blocks; b++)
      {
        gsize start = r * len + b * 32, blen = MIN (32, len - b * 32);
        g_assert_true (quark_kernel_mx_quantize_f32 (p, w + start, 1, blen, ref + start, bytes2 + r * n_blocks + b));
        if (fmt && bytes2[r * n_blocks + b] != 0xFF)
          {
            /* and that block by the scalar minifloat encoder */
            g_autofree guint8 *one = g_new (guint8, blen);
            float amax = 0;
            for (gsize i = 0; i < blen; i++)
              amax = fmaxf (amax, fabsf (w[start + i]));
            g_assert_cmpuint (bytes2[r * n_blocks + b], ==, quark_kernel_mx_shared_exponent (p, amax));
            quark_kernel_fp_quantize_f32_scalar (fmt, w + start, blen,
                                                 amax == 0 ? 1.0f : quark_kernel_e8m0_to_f32 (bytes2[r * n_blocks + b]),
                                                 one);
            g_assert_cmpmem (one, blen, ref + start, blen);
          }
      }
  g_assert_cmpmem (bytes, rows * n_blocks, bytes2, rows * n_blocks);
  g_assert_cmpmem (codes, n, ref, n);
  /* packed as checkpoints store it */
  if (fp6 && len % 4)
    {
      g_assert_false (quark_kernel_mx_quantize_packed_bf16 (p, h, rows, len, packed, bytes));
      return;
    }
  g_assert_true (quark_kernel_mx_quantize_packed_bf16 (p, h, rows, len, packed, bytes));
  g_assert_cmpmem (bytes, rows * n_blocks, bytes2, rows * n_blocks);
  for (gsize r = 0; r < rows; r++)
    {
      if (fp4)
        quark_kernel_pack_fp4 (ref + r * len, len, packed_ref + r * packed_row);
      else if (fp6)
        g_assert_true (quark_kernel_pack_fp6 (ref + r * len, len, packed_ref + r * packed_row));
      else
        memcpy (packed_ref + r * packed_row, ref + r * len, len);
    }
  g_assert_cmpmem (packed, rows * packed_row, packed_ref, rows * packed_row);
}

static guint16
bf16_of (float v)
{
  guint32 bits;
  memcpy (&bits, &v, 4);
  return (guint16) (bits >> 16);
}

/* Whole bfloat16 tensors through the row paths (16 blocks at a time for
 * maxima and scales, 32-element blocks, FP4 packed as it is encoded):
 * every element type, mode and zero-block rule, with all-zero, tiny, NaN
 * and infinite blocks, several rows, rows that are and are not whole
 * blocks. */
static void
test_mx_rows_match_blocks (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (1127);
  const QuarkDType elements[] = { QUARK_DTYPE_F8_E4M3, QUARK_DTYPE_F8_E5M2, QUARK_DTYPE_FP6_E2M3,
                                  QUARK_DTYPE_FP6_E3M2, QUARK_DTYPE_FP4_E2M1, QUARK_DTYPE_I8 };
  const gsize lens[] = { 512, 544, 1056, 1000, 64 };

  for (guint e = 0; e < G_N_ELEMENTS (elements); e++)
    for (guint l = 0; l < G_N_ELEMENTS (lens); l++)
      for (guint mode = 0; mode < 3; mode++)
        for (guint qz = 0; qz < 2; qz++)
          {
            const gsize rows = 3, len = lens[l], n = rows * len;
            QuarkMxParams p = { elements[e], (QuarkMxScaleMode) mode, 32, qz };
            g_autofree guint16 *h = g_new (guint16, n);

            for (gsize i = 0; i < n; i++)
              {
                gsize block = i / 32;
                float v = (float) (g_rand_double_range (rand, -1, 1) * pow (2, g_rand_int_range (rand, -30, 30)));
                if (block % 7 == 3)
                  v = 0.0f;                                    /* an all-zero block */
                else if (block % 11 == 5)
                  v *= 0x1p-110f;                              /* maxima near and below 2^-126 */
                h[i] = bf16_of (v);
              }
            if (l == 0 && mode == 0)
              {
                h[40] = 0x7fc0;   /* NaN in block 1 */
                h[100] = 0xff80;  /* -inf in block 3 */
              }
            check_rows_against_blocks (&p, h, rows, len);
          }
}

/* MX FP4 rows go 512 values at a time through the table; a chunk holding a
 * block it does not take (NaN, infinity, a maximum below 2^-124, an
 * all-zero block whose byte is below 3) goes through the general path, and
 * the chunks after it through the table again. Rows of 4 chunks and a tail
 * with such a block in one chunk each, in every position. */
static void
test_mxfp4_chunk_transitions (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (512);
  const gsize rows = 2, len = 4 * 512 + 40, n = rows * len;
  g_autofree guint16 *h = g_new (guint16, n);

  for (guint kind = 0; kind < 4; kind++)
    for (guint chunk = 0; chunk < 5; chunk++)
      for (guint mode = 0; mode < 3; mode++)
        for (guint qz = 0; qz < 2; qz++)
          {
            QuarkMxParams p = { QUARK_DTYPE_FP4_E2M1, (QuarkMxScaleMode) mode, 32, qz };
            gsize at = len + chunk * 512 + 7 * 32 + 5;   /* row 1, block 7 of the chunk */
            for (gsize i = 0; i < n; i++)
              h[i] = bf16_of ((float) (g_rand_double_range (rand, -1, 1) * pow (2, g_rand_int_range (rand, -8, 8))));
            if (at >= n)
              at = n - 3;   /* the tail */
            switch (kind)
              {
              case 0: h[at] = 0x7fc1; break;                     /* NaN */
              case 1: h[at] = 0xff80; break;                     /* -inf */
              case 2:                                            /* a tiny block */
                for (gsize i = at / 32 * 32; i < MIN (at / 32 * 32 + 32, n); i++)
                  h[i] = bf16_of ((float) g_rand_double_range (rand, -1, 1) * 0x1p-126f);
                break;
              default:                                           /* an all-zero block */
                for (gsize i = at / 32 * 32; i < MIN (at / 32 * 32 + 32, n); i++)
                  h[i] = (guint16) (i % 2 ? 0x8000 : 0x0000);
                break;
              }
            check_rows_against_blocks (&p, h, rows, len);
          }
}

/* MXFP4 on bfloat16 takes its codes from a table indexed by the bits of
 * each element and the block's scale byte. Every bfloat16 magnitude up to a
 * block's maximum, with both signs, in blocks whose maxima give every kind
 * of scale byte (below 3, where the table does not apply, through 254),
 * in every mode, packed and not, against the scalar encoder block by
 * block. */
static void
test_mxfp4_every_bf16 (void)
{
  const guint16 exps[] = { 0, 1, 2, 3, 4, 5, 6, 7, 30, 100, 124, 125, 126, 127, 128, 129,
                           130, 131, 132, 133, 200, 250, 253, 254 };
  const guint16 mants[] = { 0x00, 0x35, 0x7f };
  const QuarkFpFormat *fmt = quark_fp_format_for_dtype (QUARK_DTYPE_FP4_E2M1);
  g_autoptr(GArray) h = g_array_new (FALSE, FALSE, sizeof (guint16));

  for (guint e = 0; e < G_N_ELEMENTS (exps); e++)
    for (guint m = 0; m < G_N_ELEMENTS (mants); m++)
      {
        guint16 amax = (guint16) ((exps[e] << 7) | mants[m]);
        for (guint32 v = 0; v <= amax; v++)
          for (guint sign = 0; sign < 2; sign++)
            {
              guint16 bits = (guint16) (v | (sign << 15));
              if (h->len % 32 == 0)
                {
                  guint16 first = (guint16) (amax | ((h->len / 32) % 2 << 15));
                  g_array_append_val (h, first);
                }
              g_array_append_val (h, bits);
            }
        while (h->len % 32)   /* end this maximum's blocks with zeros */
          {
            guint16 zero = 0;
            g_array_append_val (h, zero);
          }
      }

  for (guint mode = 0; mode < 3; mode++)
    {
      const gsize n = h->len, n_blocks = n / 32;
      QuarkMxParams p = { QUARK_DTYPE_FP4_E2M1, (QuarkMxScaleMode) mode, 32, FALSE };
      const guint16 *x = (const guint16 *) h->data;
      g_autofree float *w = g_new (float, n);
      g_autofree guint8 *codes = g_new (guint8, n), *ref = g_new (guint8, n);
      g_autofree guint8 *bytes = g_new (guint8, n_blocks), *bytes_p = g_new (guint8, n_blocks);
      g_autofree guint8 *packed = g_new (guint8, n / 2), *packed_ref = g_new (guint8, n / 2);
      gsize table_blocks = 0;

      quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, x, w, n);
      g_assert_true (quark_kernel_mx_quantize_bf16 (&p, x, 1, n, codes, bytes));
      g_assert_true (quark_kernel_mx_quantize_packed_bf16 (&p, x, 1, n, packed, bytes_p));
      for (gsize b = 0; b < n_blocks; b++)
        {
          float amax = 0;
          for (gsize i = 0; i < 32; i++)
            amax = fmaxf (amax, fabsf (w[b * 32 + i]));
          g_assert_cmpuint (bytes[b], ==, quark_kernel_mx_shared_exponent (&p, amax));
          g_assert_cmpuint (bytes_p[b], ==, bytes[b]);
          table_blocks += bytes[b] >= 3;
          quark_kernel_fp_quantize_f32_scalar (fmt, w + b * 32, 32,
                                               amax == 0 ? 1.0f : quark_kernel_e8m0_to_f32 (bytes[b]),
                                               ref + b * 32);
        }
      g_assert_cmpmem (codes, n, ref, n);
      quark_kernel_pack_fp4 (ref, n, packed_ref);
      g_assert_cmpmem (packed, n / 2, packed_ref, n / 2);
      /* both kinds of block were there */
      g_assert_cmpuint (table_blocks, >, n_blocks / 2);
      g_assert_cmpuint (table_blocks, <, n_blocks);
    }
}

/* Observers: Brevitas' percentile rule (V10, 3.6) and MSE grid (V15). */
static void
test_observers (void)
{
  g_autofree float *x = g_new (float, 100000);
  g_autofree float *scratch = g_new (float, 100000);
  float lin[1001];
  float v15[102];

  for (guint i = 0; i < 100000; i++)
    x[i] = (float) ((i * 7919u) % 100000u + 1) * (i % 2 ? -1.0f : 1.0f);   /* |x| = 1..100000, shuffled */
  g_assert_cmpfloat (quark_kernel_abs_percentile_f32 (x, 100000, 99.999, scratch), ==, 99999.0f);
  g_assert_cmpfloat (quark_kernel_abs_percentile_f32 (x, 50000, 99.999, scratch), ==,
                     quark_kernel_abs_percentile_f32 (x, 50000, 100.0, scratch));
  for (guint i = 0; i < 1001; i++)
    lin[i] = -2.0f + 6.0f * (float) i / 1000.0f;
  g_assert_cmpfloat (quark_kernel_abs_percentile_f32 (lin, 1001, 99.999, scratch), ==, 4.0f);
  {
    const float ten[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    for (guint v = 1; v <= 10; v++)
      g_assert_cmpfloat (quark_kernel_abs_percentile_f32 (ten, 10, 10.0 * v, scratch), ==, (float) v);
  }

  for (guint i = 0; i < 101; i++)
    v15[i] = -1.0f + 2.0f * (float) i / 100.0f;
  v15[101] = 10.0f;
  g_assert_cmpfloat (quark_kernel_mse_search_int_f32 (v15, 102, 10.0f, 127.0f, -127, 127, TRUE), ==, 10.0f);
  g_assert_cmpfloat (quark_kernel_mse_search_int_f32 (v15, 102, 10.0f, 7.0f, -7, 7, TRUE), ==, 8.0f);

  /* histogram form: on 1..1000 with 1000 bins, the 99th percentile is the
   * upper edge of bin 990 */
  {
    float ramp[1000];
    for (guint i = 0; i < 1000; i++)
      ramp[i] = (float) (i + 1);
    g_assert_cmpfloat (quark_kernel_abs_histogram_percentile_f32 (ramp, 1000, 99.0, 1000), ==, 990.0f);
    g_assert_cmpfloat (quark_kernel_abs_histogram_percentile_f32 (ramp, 1000, 100.0, 1000), ==, 1000.0f);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/mx/block-a-fp4", test_block_a_fp4);
  g_test_add_func ("/mx/block-b-fp8", test_block_b_fp8);
  g_test_add_func ("/mx/block-c-int8", test_block_c_int8);
  g_test_add_func ("/mx/v19", test_v19);
  g_test_add_func ("/mx/special-blocks", test_special_blocks);
  g_test_add_func ("/mx/ragged-rows", test_ragged_rows);
  g_test_add_func ("/mx/shared-exponent-exact", test_shared_exponent_exact);
  g_test_add_func ("/mx/e8m0", test_e8m0);
  g_test_add_func ("/mx/vector-matches-scalar", test_mx_vector_matches_scalar);
  g_test_add_func ("/mx/mxfp4-every-bf16", test_mxfp4_every_bf16);
  g_test_add_func ("/mx/rows-match-blocks", test_mx_rows_match_blocks);
  g_test_add_func ("/mx/fp4-chunk-transitions", test_mxfp4_chunk_transitions);
  g_test_add_func ("/pack/vectors", test_packing_vectors);
  g_test_add_func ("/pack/offset-binary-roundtrip", test_offset_binary_roundtrip);
  g_test_add_func ("/pack/vector-paths", test_pack_vector_paths);
  g_test_add_func ("/metrics/error", test_error_metrics);
  g_test_add_func ("/observers/percentile-and-mse", test_observers);

  return g_test_run ();
}
