/* test-backend.h: a small, complete backend for registry tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * TestConfig relies on every default of QuarkQuantizationConfig (strict
 * property loading, serialisation, backend name from the registry) and
 * answers every layer's weight with its one spec through lookup_spec. The
 * quantizer returns the model's tensors unchanged: it exists to exercise the
 * registry, not arithmetic.
 */
#pragma once

#include <quark.h>

G_BEGIN_DECLS

#define TEST_TYPE_CONFIG (test_config_get_type ())
G_DECLARE_FINAL_TYPE (TestConfig, test_config, TEST, CONFIG, GObject)

#define TEST_TYPE_QUANTIZER (test_quantizer_get_type ())
G_DECLARE_FINAL_TYPE (TestQuantizer, test_quantizer, TEST, QUANTIZER, GObject)

G_END_DECLS
