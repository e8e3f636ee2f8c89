/* cpu_amx.c - whether Intel AMX tiles can run here: the CPU says so (CPUID) and Linux grants the
 * process the tile data state.
 */
#include <stdatomic.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/cpu_impl.h"

/* CPUID leaf 7: EDX bit 24 AMX-TILE, bit 22 AMX-BF16; then Linux must grant the process the tile
 * data state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 18), which also says whether
 * the kernel and the hypervisor enable it. */
int rvg__amx_usable(void) {
#if defined(RVG_HAVE_AMX) && defined(__linux__) && defined(SYS_arch_prctl) &&                      \
    (defined(__x86_64__) || defined(__i386__))
    static _Atomic int cached = -1; /* racing first callers compute the same value */
    int known = atomic_load(&cached);
    if (known >= 0)
        return known;
    unsigned a, b, c, d;
    int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 22 & 1) &&
             __builtin_cpu_supports("avx512f");
    if (ok)
        ok = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18) == 0;
    atomic_store(&cached, ok);
    return ok;
#else
    return 0;
#endif
}
