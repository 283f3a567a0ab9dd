/* Monotonic wall time for durations reported to users and logs. */
#ifndef T2_CLOCK_H
#define T2_CLOCK_H

#include <time.h>

static inline double t2_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#endif
