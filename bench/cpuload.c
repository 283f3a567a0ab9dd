/* How busy the rest of the machine was while we measured: the CPU time
 * of all processes (/proc/stat) minus our own (getrusage), as a fraction
 * of the elapsed time of every CPU. A benchmark sharing its cores with
 * another job measures that job too; this tells the reader. */
#include "bench.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* busy (user, nice, system, irq, softirq) and steal seconds of all CPUs */
static int proc_stat(double *busy, double *steal)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return -1;
    double tick = (double)sysconf(_SC_CLK_TCK);
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / tick;
    *steal = (double)v[7] / tick;
    return 0;
}

void t2_cpu_sample_take(t2_cpu_sample *s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->self_s = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
    s->ok = proc_stat(&s->busy_s, &s->steal_s) == 0;
    s->t = t2_bench_now();
}

void t2_cpu_load_add(t2_cpu_load *l, const t2_cpu_sample *a, const t2_cpu_sample *b)
{
    if (!a->ok || !b->ok) {
        l->ok = false;
        return;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double cpu_s = (b->t - a->t) * (double)(ncpu > 0 ? ncpu : 1);
    l->cpu_s += cpu_s;
    l->other_s += (b->busy_s - a->busy_s) - (b->self_s - a->self_s);
    l->steal_s += b->steal_s - a->steal_s;
}

double t2_cpu_load_other(const t2_cpu_load *l)
{
    if (!l->ok || l->cpu_s <= 0)
        return -1;
    double f = l->other_s / l->cpu_s;
    return f > 0 ? f : 0; /* tick granularity can make it slightly negative */
}

double t2_cpu_load_steal(const t2_cpu_load *l)
{
    return l->ok && l->cpu_s > 0 ? l->steal_s / l->cpu_s : -1;
}
