/* Writes a line, flushes it, computes for about 1.5 s, then writes another:
 * the first line must reach the notebook while the module still runs. */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    printf("first\n");
    fflush(stdout);
    double start = now();
    volatile unsigned long spins = 0;
    while (now() - start < 1.5) spins++;
    printf("second after %lu spins\n", spins);
    return 0;
}
