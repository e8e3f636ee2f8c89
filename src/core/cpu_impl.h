/* cpu_impl.h - CPU features the library asks the OS about at run time (beyond what
 * __builtin_cpu_supports answers).
 */
#ifndef RVG_CORE_CPU_IMPL_H
#define RVG_CORE_CPU_IMPL_H

/* 1 when this build has the AMX kernels and the CPU and OS run AMX tiles (asks Linux for the
 * tile state once; thread-safe). Used by the inference engine's AMX kernel set and the bf16x3
 * training GEMM. */
int rvg__amx_usable(void);

#endif
