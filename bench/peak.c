/* Peak integer dot-product throughput of this CPU, all threads, no memory traffic:
     peak vnni   vpdpbusd (AVX-512 VNNI): 64 u8*s8 multiply-adds = 128 ops per instruction
     peak avx2   vpmaddwd + vpaddd (AVX2, what lrqc's x86_avx2 rule issues per 16 x 2 k):
                 16 i16*i16 multiply-adds = 32 ops per pair
     peak avx2_u8  vpmaddubsw + vpmaddwd by ones + vpaddd (AVX2 on bytes, as fbgemm does): 32
                 u8*s8 multiply-adds = 64 ops per triple (exact only where the int16 pair sums
                 of vpmaddubsw cannot saturate)
   12 (VNNI) or 6 (AVX2: 16 ymm registers) independent accumulators per thread. Built and run
   by bench/gemm_cpu.py: cc -O2 -fopenmp peak.c -o peak; ./peak MODE [ITERS] */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP(...) __asm__ volatile("" : __VA_ARGS__)

__attribute__((target("avx512f,avx512vnni"))) static double vnni(long iters) {
    int sink = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
    {
        __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
        __m512i c[12];
        for (int r = 0; r < 12; r++) c[r] = _mm512_setzero_si512();
        for (long i = 0; i < iters; i++) {
            for (int r = 0; r < 12; r++) c[r] = _mm512_dpbusd_epi32(c[r], a, b);
            KEEP("+v"(c[0]), "+v"(c[1]), "+v"(c[2]), "+v"(c[3]), "+v"(c[4]), "+v"(c[5]));
            KEEP("+v"(c[6]), "+v"(c[7]), "+v"(c[8]), "+v"(c[9]), "+v"(c[10]), "+v"(c[11]));
        }
        for (int r = 1; r < 12; r++) c[0] = _mm512_add_epi32(c[0], c[r]);
        sink += _mm512_reduce_add_epi32(c[0]);
    }
    double t = omp_get_wtime() - t0;
    return 128.0 * 12 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;
}

/* Six independent AVX2 accumulators c += DOT(a_r) per iteration; OPS ops per DOT. */
#define AVX2_LOOP(NAME, SET, DOT, OPS)                                                          \
    __attribute__((target("avx2"))) static double NAME(long iters) {                            \
        int sink = 0;                                                                           \
        double t0 = omp_get_wtime();                                                            \
        _Pragma("omp parallel reduction(+ : sink)") {                                           \
            __m256i b = SET(2), ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();        \
            __m256i a0 = SET(1), a1 = SET(2), a2 = SET(3), a3 = SET(4), a4 = SET(5), a5 = SET(6); \
            __m256i c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z;                             \
            (void)ones;                                                                         \
            for (long i = 0; i < iters; i++) {                                                  \
                c0 = _mm256_add_epi32(c0, DOT(a0));                                             \
                c1 = _mm256_add_epi32(c1, DOT(a1));                                             \
                c2 = _mm256_add_epi32(c2, DOT(a2));                                             \
                c3 = _mm256_add_epi32(c3, DOT(a3));                                             \
                c4 = _mm256_add_epi32(c4, DOT(a4));                                             \
                c5 = _mm256_add_epi32(c5, DOT(a5));                                             \
                KEEP("+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));               \
                KEEP("+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));               \
            }                                                                                   \
            c0 = _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3));          \
            c0 = _mm256_add_epi32(c0, _mm256_add_epi32(c4, c5));                                \
            int out[8];                                                                         \
            _mm256_storeu_si256((__m256i *)out, c0);                                            \
            for (int r = 0; r < 8; r++) sink += out[r];                                         \
        }                                                                                       \
        double t = omp_get_wtime() - t0;                                                        \
        return OPS * 6.0 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;                  \
    }

/* vpmaddwd on 16-bit values (bytes widened), + vpaddd: 16 multiply-adds = 32 ops */
#define WORDS(a) _mm256_madd_epi16(a, b)
AVX2_LOOP(avx2, _mm256_set1_epi16, WORDS, 32)
/* vpmaddubsw on u8 x s8 bytes, vpmaddwd by ones, + vpaddd: 32 multiply-adds = 64 ops */
#define BYTES(a) _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones)
AVX2_LOOP(avx2_u8, _mm256_set1_epi8, BYTES, 64)

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "vnni";
    long iters = argc > 2 ? atol(argv[2]) : 20000000L;
    double gops = strcmp(mode, "avx2") == 0      ? avx2(iters)
                  : strcmp(mode, "avx2_u8") == 0 ? avx2_u8(iters)
                                                 : vnni(iters);
    printf("%.1f %d\n", gops, omp_get_max_threads());
    return 0;
}
