/* Which of OpenBLAS's CPU-specific kernels t2 runs sgemm on. Debian 12's
 * OpenBLAS (0.3.21, DYNAMIC_ARCH) picks them once, when the library loads,
 * from the CPU's family and model, or from OPENBLAS_CORETYPE. It does not
 * know some newer CPUs: on a Sapphire Rapids Xeon (model 143) it chose its
 * Prescott (SSE3) kernels, sgemm 18.8 GFLOP/s a core against 156.8 with
 * OPENBLAS_CORETYPE=SkylakeX (device Xeon, t2 bench --kernels). Every
 * prefill of an f32 or bf16 model, and every SVF rebuild, runs on sgemm. */
#ifndef T2_BLAS_CORE_H
#define T2_BLAS_CORE_H

#include <stdbool.h>
#include <stddef.h>

/* The OpenBLAS core to ask for instead of `chosen` (what
 * openblas_get_corename() says) on a CPU with AVX-512 or AVX2 + FMA (as
 * t2's avx512 and avx2 kernel variants need them, core/kernels.c): "SkylakeX" where AVX-512 is
 * present and chosen is not one of OpenBLAS's AVX-512 cores, "Haswell" where only AVX2 + FMA is and
 * chosen is one of its pre-AVX2 cores; NULL where chosen is as good
 * (compared without case). */
const char *t2_blas_core_better(const char *chosen, bool avx512, bool avx2_fma);

/* t2_blas_core_better for this process: its OpenBLAS core and this CPU.
 * NULL also when OPENBLAS_CORETYPE is already set (the user's choice, or
 * the run that t2_blas_core_restart started) or under valgrind, which an
 * exec would leave. */
const char *t2_blas_core_wanted(void);

/* Where t2_blas_core_wanted() names a core: sets OPENBLAS_CORETYPE to it
 * (and T2_BLAS_CORE_WAS to the core OpenBLAS had chosen) and executes
 * /proc/self/exe with argv again (the kernels cannot change once loaded).
 * Returns only when nothing is to be done or the exec failed (then with a
 * warning on stderr, on the slow kernels). */
void t2_blas_core_restart(char **argv);

/* In the run t2_blas_core_restart started: a line saying what it did,
 * written into buf (for the caller's log); NULL in any other run. */
const char *t2_blas_core_note(char *buf, size_t size);

#endif
