/* quark-version-macros.h: symbol visibility and availability macros
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <glib.h>

#include "quark-version.h"

#ifndef _QUARK_EXTERN
# if defined(QUARK_COMPILATION) && defined(__GNUC__)
#  define _QUARK_EXTERN __attribute__((visibility("default"))) extern
# else
#  define _QUARK_EXTERN extern
# endif
#endif

#ifdef QUARK_DISABLE_DEPRECATION_WARNINGS
# define QUARK_DEPRECATED _QUARK_EXTERN
# define QUARK_DEPRECATED_FOR(f) _QUARK_EXTERN
# define QUARK_UNAVAILABLE(maj,min) _QUARK_EXTERN
#else
# define QUARK_DEPRECATED G_DEPRECATED _QUARK_EXTERN
# define QUARK_DEPRECATED_FOR(f) G_DEPRECATED_FOR(f) _QUARK_EXTERN
# define QUARK_UNAVAILABLE(maj,min) G_UNAVAILABLE(maj,min) _QUARK_EXTERN
#endif

#define QUARK_VERSION_1_0 (G_ENCODE_VERSION (1, 0))

/* The API level this release provides; 0.x releases develop API 1.0. */
#define QUARK_VERSION_CUR_STABLE (QUARK_VERSION_1_0)
#define QUARK_VERSION_PREV_STABLE QUARK_VERSION_1_0

/**
 * QUARK_VERSION_MIN_REQUIRED:
 *
 * Define this before including <quark/quark.h> to the oldest libquark API
 * level (for instance `QUARK_VERSION_1_0`) your code supports; uses of API
 * deprecated after that level then produce warnings.
 */
#ifndef QUARK_VERSION_MIN_REQUIRED
# define QUARK_VERSION_MIN_REQUIRED (QUARK_VERSION_CUR_STABLE)
#endif

/**
 * QUARK_VERSION_MAX_ALLOWED:
 *
 * Define this before including <quark/quark.h> to the newest libquark API
 * level your code may use; uses of newer API then produce warnings.
 */
#ifndef QUARK_VERSION_MAX_ALLOWED
# if QUARK_VERSION_MIN_REQUIRED > QUARK_VERSION_PREV_STABLE
#  define QUARK_VERSION_MAX_ALLOWED (QUARK_VERSION_MIN_REQUIRED)
# else
#  define QUARK_VERSION_MAX_ALLOWED (QUARK_VERSION_CUR_STABLE)
# endif
#endif

#if QUARK_VERSION_MAX_ALLOWED < QUARK_VERSION_MIN_REQUIRED
#error "QUARK_VERSION_MAX_ALLOWED must be >= QUARK_VERSION_MIN_REQUIRED"
#endif
#if QUARK_VERSION_MIN_REQUIRED < QUARK_VERSION_1_0
#error "QUARK_VERSION_MIN_REQUIRED must be >= QUARK_VERSION_1_0"
#endif

#define QUARK_AVAILABLE_IN_ALL _QUARK_EXTERN

#if QUARK_VERSION_MIN_REQUIRED >= QUARK_VERSION_1_0
# define QUARK_DEPRECATED_IN_1_0 QUARK_DEPRECATED
# define QUARK_DEPRECATED_IN_1_0_FOR(f) QUARK_DEPRECATED_FOR(f)
#else
# define QUARK_DEPRECATED_IN_1_0 _QUARK_EXTERN
# define QUARK_DEPRECATED_IN_1_0_FOR(f) _QUARK_EXTERN
#endif

#if QUARK_VERSION_MAX_ALLOWED < QUARK_VERSION_1_0
# define QUARK_AVAILABLE_IN_1_0 QUARK_UNAVAILABLE(1, 0)
#else
# define QUARK_AVAILABLE_IN_1_0 _QUARK_EXTERN
#endif
