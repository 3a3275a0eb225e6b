/* fuzz.h: shared set-up of libquark's fuzz targets
 *
 * Each target defines LLVMFuzzerTestOneInput. Built with clang and
 * -Dfuzzing=true it links against libFuzzer; otherwise it links against
 * driver.c, which replays a corpus so that `meson test --suite fuzzing`
 * runs every target over its committed inputs.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Only the in-tree backends; a critical (a failed precondition inside
 * libquark) or a warning (such as a property set out of range) aborts,
 * since no input may trigger one: bad input is a GError. */
static inline void
fuzz_set_up (void)
{
  static gboolean done;
  if (done)
    return;
  done = TRUE;
  g_setenv ("QUARK_BACKEND_PATH", FUZZ_BACKEND_DIR, TRUE);
  g_setenv ("QUARK_BACKEND_SYSTEM_PATH", "", TRUE);
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_FATAL_MASK);
}
