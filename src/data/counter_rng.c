/* counter_rng.c - the counter-based generator behind every random choice of the data pipeline.
 *
 * A stream is keyed by (seed, epoch, stream, index): the key is hashed with the splitmix64
 * finaliser into a starting state, and the stream then steps like splitmix64 (Steele, Lea, Flood,
 * "Fast splittable pseudorandom number generators", OOPSLA 2014). Keying by the sample index
 * instead of drawing from one shared generator is what makes a batch independent of the worker
 * count and of thread timing. Not cryptographic, and not torch's generator: augmentation draws
 * are statistically like torchvision's, not the same numbers.
 */
#include <math.h>

#include "data/data_impl.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

void rvg__crng_seed(rvg__crng *r, uint64_t seed, uint64_t epoch, uint64_t stream, uint64_t index) {
    /* Each word goes through the finaliser before the next is folded in, so nearby keys
     * ((e, i) and (e, i+1), or (e+1, i)) start far apart. */
    uint64_t s = mix64(seed + GOLDEN);
    s = mix64(s ^ (epoch + 2 * GOLDEN));
    s = mix64(s ^ (stream + 3 * GOLDEN));
    s = mix64(s ^ (index + 4 * GOLDEN));
    r->s = s;
}

uint64_t rvg__crng_u64(rvg__crng *r) {
    r->s += GOLDEN;
    return mix64(r->s);
}

double rvg__crng_uniform(rvg__crng *r) {
    return (double)(rvg__crng_u64(r) >> 11) * 0x1.0p-53;
}

int64_t rvg__crng_below(rvg__crng *r, int64_t n) {
    RVG_ASSERT(n >= 1);
    uint64_t un = (uint64_t)n;
    /* Reject the lowest (2^64 mod n) values so every residue is equally likely. */
    uint64_t threshold = (0 - un) % un;
    uint64_t x;
    do {
        x = rvg__crng_u64(r);
    } while (x < threshold);
    return (int64_t)(x % un);
}

float rvg__crng_normal(rvg__crng *r) {
    /* 1 - u lies in (0, 1], so the logarithm is finite; one of the pair is used, which keeps
     * the draw a pure function of the stream position. */
    double u1 = 1.0 - rvg__crng_uniform(r), u2 = rvg__crng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
