/* compiler_impl.h - compiler attributes shared by the library's hot loops.
 *
 * RVG__ALWAYS_INLINE: a small helper that must be inlined into its callers, where its arguments
 * (strides, flags) become constants and its loops vectorize or lose their branches; GCC's -O2
 * heuristics do not always inline them otherwise.
 */
#ifndef RVG_COMPILER_IMPL_H
#define RVG_COMPILER_IMPL_H

#if defined(__GNUC__)
#define RVG__ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define RVG__ALWAYS_INLINE inline
#endif

#endif
