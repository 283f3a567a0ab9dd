#include "blas_core.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kernels.h"

static bool named(const char *chosen, const char *const *names)
{
    for (; *names; names++)
        if (strcasecmp(chosen, *names) == 0)
            return true;
    return false;
}

const char *t2_blas_core_better(const char *chosen, bool avx512, bool avx2_fma)
{
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    /* OpenBLAS's x86-64 cores without AVX2 + FMA kernels */
    static const char *const old_cores[] = {"Prescott",     "Core2",       "Penryn",  "Dunnington",
                                            "Nehalem",      "Sandybridge", "Atom",    "Opteron",
                                            "Opteron_SSE3", "Barcelona",   "Bobcat",  "Bulldozer",
                                            "Piledriver",   "Steamroller", "Katmai",  "Coppermine",
                                            "Northwood",    "Banias",      "Unknown", NULL};
    if (!chosen)
        return NULL;
    if (avx512)
        return named(chosen, avx512_cores) ? NULL : "SkylakeX";
    if (avx2_fma)
        return named(chosen, old_cores) ? "Haswell" : NULL;
    return NULL;
}

const char *t2_blas_core_wanted(void)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return NULL;
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload"))
        return NULL;
    /* the CPU checks of t2's own kernel variants (core/kernels.c) */
    bool avx512 = t2_kernels_variant("avx512") != NULL;
    bool avx2_fma = t2_kernels_variant("avx2") != NULL;
    return t2_blas_core_better(openblas_get_corename(), avx512, avx2_fma);
}

void t2_blas_core_restart(char **argv)
{
    const char *want = t2_blas_core_wanted();
    if (!want)
        return;
    const char *chosen = openblas_get_corename();
    if (setenv("T2_BLAS_CORE_WAS", chosen, 1) != 0 || setenv("OPENBLAS_CORETYPE", want, 1) != 0) {
        fprintf(stderr, "t2: setenv: %s; sgemm stays on OpenBLAS's %s kernels\n", strerror(errno),
                chosen);
        return;
    }
    fflush(NULL);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "t2: exec /proc/self/exe: %s; sgemm stays on OpenBLAS's %s kernels\n",
            strerror(errno), chosen);
    unsetenv("T2_BLAS_CORE_WAS");
    unsetenv("OPENBLAS_CORETYPE");
}

const char *t2_blas_core_note(char *buf, size_t size)
{
    const char *was = getenv("T2_BLAS_CORE_WAS"), *now = getenv("OPENBLAS_CORETYPE");
    if (!was || !now || size == 0)
        return NULL;
    snprintf(buf, size,
             "OpenBLAS chose its %s kernels on this CPU; started again with OPENBLAS_CORETYPE=%s "
             "(set OPENBLAS_CORETYPE yourself to choose)",
             was, now);
    return buf;
}
