/* Peak dot-product throughput of this CPU, all threads, no memory traffic:
     peak fma      vfmadd231ps (AVX2 + FMA, 256-bit): 8 float32 multiply-adds = 16 flops per
                   instruction (what numpy's float32 GEMM and lrqc's float32 tile issue)
     peak fma512   vfmadd231ps (AVX-512F, 512-bit): 16 float32 multiply-adds = 32 flops (what an
                   AVX-512 BLAS such as OpenBLAS's SkylakeX kernels issues)
     peak avx2     vpmaddwd + vpaddd (AVX2, what lrqc's x86_avx2 rule issues per 16 x 2 k):
                   16 i16*i16 multiply-adds = 32 ops per pair
     peak avx2_u8  vpmaddubsw + vpmaddwd by ones + vpaddd (AVX2 on bytes, as fbgemm does): 32
                   u8*s8 multiply-adds = 64 ops per triple (exact only where the int16 pair sums
                   of vpmaddubsw cannot saturate)
     peak avx2_u8_i16  vpmaddubsw + vpaddw (AVX2 on bytes accumulated in int16, the form for
                   weights of at most 4 bits): 32 u8*s8 multiply-adds = 64 ops per pair
     peak avx2_s8  vpsignb + vpmaddubsw + vpmaddwd by ones + vpaddd (int8 x int8 with A's sign
                   moved onto B, |A| from vpabsb once per broadcast: pair sums of at most
                   2*127*127 stay inside int16): 32 multiply-adds = 64 ops per quadruple
     peak vnni     vpdpbusd (AVX-512 VNNI, 512-bit): 64 u8*s8 multiply-adds = 128 ops
     peak avxvnni  vpdpbusd (AVX-VNNI, 256-bit, VEX): 32 u8*s8 multiply-adds = 64 ops
     peak vnni_blocks  vpdpbusd as a GEMM's inner loop issues it: A's 4 bytes broadcast from
                   and B's 64-byte blocks loaded from L1, 4 rows x 2 vectors of 16 int32 sums
                   per thread that run on over every group of 16 k (per_channel products): 512
                   ops per group of 16 k and 16 sums
     peak vnni_groups  per_vector(16) products on vpdpbusd with float scales: each group's 4
                   vpdpbusd (16 k) into int32 sums that start from zero, then vcvtdq2ps, vmulps by
                   A's scale and vfmadd231ps by B's scales into float32 sums (what lrqc's
                   x86_vnni rule issues per group of 16 k and 16 sums): 512 ops per group and
                   16 sums, 4 rows x 2 vectors of sums per thread
     peak vnni_pairs   the same groups with two-level integer scales as int16 pairs: two
                   groups' int32 sums packed into int16 pairs (vpermt2w), the products of their
                   integer scales (vpmullw) and vpdpwssd into int32 sums (exact where the group
                   sums and the scales' products fit int16): 512 ops per group and 16 sums
     peak vnni_pairs_offset  the same with A's zero correction subtracted from the packed
                   pairs (vpsubw) before the vpdpwssd: its fixed offset (or the centre its
                   min-max codes are stored around) times B's column sums, one vector per pair
                   of groups and 16 columns for all rows (vpsllw of the loaded sums)
     peak vnni_quads  a sparse product's nonzeros four at a time (lrqc's sparse_quads): four
                   64-byte lines of the dense operand at random rows, interleaved into quads by
                   eight unpacks (vpunpckl/hbw, vpunpckl/hwd), then four vpdpbusd by the four
                   codes broadcast: 4 x 64 multiply-adds = 512 ops per quad of nonzeros and 64
                   sums; the lines drawn from 256 rows (16 KB per thread, in L1)
     peak avx2_quads  the same in lrqc's AVX2 form: four 32-byte lines, eight unpacks, then per
                   quad vector vpsignb (the codes' signs onto the lines), vpmaddubsw by |codes|,
                   vpmaddwd by ones, vpaddd: 4 x 32 multiply-adds = 256 ops per quad of
                   nonzeros and 32 sums; the lines drawn from 256 rows (8 KB per thread, in L1)
     peak amx      tdpbusd (AMX int8 tiles): 16 x 16 x 64 u8*s8 multiply-adds = 32768 ops per
                   instruction, 4 accumulator tiles against 2 + 2 operand tiles (as lrqc's
                   x86_amx rule blocks them); the process asks Linux for the tile state first
   The integer AVX2 forms keep 6 independent accumulators per thread (each with its own operand:
   16 ymm registers); the forms that accumulate inside one instruction keep 12. Each accumulator
   is a variable of its own (EACH6, EACH12), not an array element: GCC -O2 leaves a loop over an
   array in memory (a load and a store around every vpdpbusd). The per-vector forms read A's
   bytes, B's blocks and the scales from 32 KB per thread in L1, as a kernel's inner loop does.
   A mode the CPU lacks prints
   "n/a" and exits 2. Built and run by bench/common.py:
   cc -O2 -fopenmp peak.c -o peak; ./peak MODE [ITERS]  ->  "GOPS THREADS" */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEEP(...) __asm__ volatile("" : __VA_ARGS__)

#define EACH6(X, F, G) X(0, F, G) X(1, F, G) X(2, F, G) X(3, F, G) X(4, F, G) X(5, F, G)
#define EACH12(X, F, G) EACH6(X, F, G) X(6, F, G) X(7, F, G) X(8, F, G) X(9, F, G) X(10, F, G) \
    X(11, F, G)

/* accumulator r: c_r, and a_r, its own operand (used by the ADDED form only) */
#define DECL(r, VEC, SET) VEC a##r = SET(r + 1), c##r = SET(0); (void)a##r;
/* c_r = ACC(c_r, DOT(a_r)): a product on a_r, which KEEP hides (so DOT is issued every time,
   never hoisted), then a separate accumulating add */
#define ADDED(r, ACC, DOT) c##r = ACC(c##r, DOT(a##r)); KEEP("+v"(a##r), "+v"(c##r));
/* c_r = FUSE(c_r, a, b): one instruction multiplies the shared a, b and accumulates */
#define FUSED(r, FUSE, _) c##r = FUSE(c##r, a, b); KEEP("+v"(c##r));
#define SINK(r, VEC, _) { int out[sizeof(VEC) / sizeof(int)]; memcpy(out, &c##r, sizeof out); \
    sink += out[0]; }

/* N accumulators per thread, each updated once per iteration by FORM(r, F, G): OPS ops each */
#define PEAK_LOOP(NAME, TARGET, VEC, SET, N, FORM, F, G, OPS)                                   \
    __attribute__((target(TARGET))) static double peak_##NAME(long iters) {                     \
        int sink = 0;                                                                           \
        double t0 = omp_get_wtime();                                                            \
        _Pragma("omp parallel reduction(+ : sink)") {                                           \
            VEC a = SET(1), b = SET(2);                                                         \
            (void)a;                                                                            \
            EACH##N(DECL, VEC, SET)                                                             \
            for (long i = 0; i < iters; i++) {                                                  \
                EACH##N(FORM, F, G)                                                             \
            }                                                                                   \
            EACH##N(SINK, VEC, _)                                                               \
        }                                                                                       \
        double t = omp_get_wtime() - t0;                                                        \
        return OPS * (double)N * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;            \
    }
/* the AVX2 integer forms: a product, then a separate add (6 accumulators) */
#define AVX2_LOOP(NAME, SET, ACC, DOT, OPS) \
    PEAK_LOOP(NAME, "avx2", __m256i, SET, 6, ADDED, ACC, DOT, OPS)

/* vpmaddwd on 16-bit values (bytes widened), + vpaddd: 16 multiply-adds = 32 ops */
#define WORDS(a) _mm256_madd_epi16(a, b)
AVX2_LOOP(avx2, _mm256_set1_epi16, _mm256_add_epi32, WORDS, 32)
/* vpmaddubsw on u8 x s8 bytes, vpmaddwd by ones, + vpaddd: 32 multiply-adds = 64 ops */
#define BYTES(a) _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
AVX2_LOOP(avx2_u8, _mm256_set1_epi8, _mm256_add_epi32, BYTES, 64)
/* int8 x int8 by moving A's sign onto B (vpsignb; |A| by vpabsb, once per broadcast of A, so
   the compiler hoists it as a kernel would), then vpmaddubsw, vpmaddwd by ones, + vpaddd: pair
   sums of |a| <= 127 by |b| <= 127 stay inside int16; 32 multiply-adds = 64 ops */
#define SIGNED(a) _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(b),                 \
                                                         _mm256_sign_epi8(a, b)),             \
                                    _mm256_set1_epi16(1))
AVX2_LOOP(avx2_s8, _mm256_set1_epi8, _mm256_add_epi32, SIGNED, 64)
/* vpmaddubsw on u8 x s8 bytes, + vpaddw (int16 accumulators): 32 multiply-adds = 64 ops */
#define BYTES_I16(a) _mm256_maddubs_epi16(a, b)
AVX2_LOOP(avx2_u8_i16, _mm256_set1_epi8, _mm256_add_epi16, BYTES_I16, 64)

/* the forms that accumulate inside one instruction (12 accumulators) */
#define FMA_PS(c, a, b) _mm256_fmadd_ps(a, b, c)
PEAK_LOOP(fma, "avx2,fma", __m256, _mm256_set1_ps, 12, FUSED, FMA_PS, _, 16)
#define FMA_PS512(c, a, b) _mm512_fmadd_ps(a, b, c)
PEAK_LOOP(fma512, "avx512f", __m512, _mm512_set1_ps, 12, FUSED, FMA_PS512, _, 32)
PEAK_LOOP(vnni, "avx512f,avx512vnni", __m512i, _mm512_set1_epi8, 12, FUSED, _mm512_dpbusd_epi32,
          _, 128)
PEAK_LOOP(avxvnni, "avx2,avxvnni", __m256i, _mm256_set1_epi8, 12, FUSED,
          _mm256_dpbusd_avx_epi32, _, 64)

/* per-vector forms: 4 rows (i) x 2 vectors (j) of 16 sums per thread; group g of 16 k reads A's
   16 bytes of each row (rows 1 KB apart), B's 4 blocks of 2 x 64 bytes and the scales, of 64
   groups held in L1 (thread-local) */
#define ROWS4(X) X(0) X(1) X(2) X(3)
#define GROUP_BUFFERS                                                                          \
    static __thread unsigned char a_buf[4 * 1024] __attribute__((aligned(64)));                \
    static __thread signed char b_buf[64 * 512] __attribute__((aligned(64)));                  \
    static __thread float sa_buf[64 * 4], sb_buf[64 * 32] __attribute__((aligned(64)));        \
    static __thread short qa_buf[64 * 4 * 2], qb_buf[64 * 32 * 2] __attribute__((aligned(64))); \
    memset(a_buf, 3, sizeof a_buf); memset(b_buf, 1, sizeof b_buf);                            \
    (void)sa_buf; (void)sb_buf; (void)qa_buf; (void)qb_buf;                                    \
    for (int q = 0; q < 64 * 4; q++) sa_buf[q] = 1.0f, qa_buf[2 * q] = qa_buf[2 * q + 1] = 3;  \
    for (int q = 0; q < 64 * 32; q++) sb_buf[q] = 1.0f, qb_buf[2 * q] = qb_buf[2 * q + 1] = 5;
/* group g's 4 k steps into p<i>0, p<i>1 (<i> a row) */
#define ZERO_ROW(i) __m512i p##i##0 = _mm512_setzero_si512(), p##i##1 = _mm512_setzero_si512();
#define DOT_ROW(i) { __m512i a = _mm512_set1_epi32(*(const int *)(a_buf + i * 1024 + g * 16 + k * 4)); \
    p##i##0 = _mm512_dpbusd_epi32(p##i##0, a, b0); p##i##1 = _mm512_dpbusd_epi32(p##i##1, a, b1); }
#define K_STEP(step) { const int k = step;                                                     \
        __m512i b0 = _mm512_load_si512(b_buf + g * 512 + k * 128);                             \
        __m512i b1 = _mm512_load_si512(b_buf + g * 512 + k * 128 + 64);                        \
        ROWS4(DOT_ROW)                                                                         \
    }
#define GROUP_DOTS ROWS4(ZERO_ROW) K_STEP(0) K_STEP(1) K_STEP(2) K_STEP(3)
#define ISINK_P(i) sink += _mm512_reduce_add_epi32(_mm512_add_epi32(p##i##0, p##i##1));

/* the same loads and vpdpbusd into int32 sums that run on over every group (per_channel) */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double peak_vnni_blocks(long iters) {
    int sink = 0;
    iters /= 4;
    double t0 = omp_get_wtime();
    _Pragma("omp parallel reduction(+ : sink)") {
        GROUP_BUFFERS
        ROWS4(ZERO_ROW)
        for (long it = 0; it < iters; it++) {
            int g = (int)(it & 63);
            K_STEP(0) K_STEP(1) K_STEP(2) K_STEP(3)
        }
        ROWS4(ISINK_P)
    }
    double t = omp_get_wtime() - t0;
    return 512.0 * 8 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;
}

#define FDECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define FSCALE(i) { __m512 s = _mm512_set1_ps(sa_buf[g * 4 + i]);                               \
    c##i##0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(p##i##0), s), s0, c##i##0);     \
    c##i##1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(p##i##1), s), s1, c##i##1); }
#define FSINK(i) sink += (int)_mm512_reduce_add_ps(_mm512_add_ps(c##i##0, c##i##1));

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double peak_vnni_groups(long iters) {
    int sink = 0;
    iters /= 4;
    double t0 = omp_get_wtime();
    _Pragma("omp parallel reduction(+ : sink)") {
        GROUP_BUFFERS
        ROWS4(FDECL)
        for (long it = 0; it < iters; it++) {
            int g = (int)(it & 63);
            GROUP_DOTS
            __m512 s0 = _mm512_load_ps(sb_buf + g * 32), s1 = _mm512_load_ps(sb_buf + g * 32 + 16);
            ROWS4(FSCALE)
        }
        ROWS4(FSINK)
    }
    double t = omp_get_wtime() - t0;
    return 512.0 * 8 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;
}

/* two groups: the first's sums kept as h<i><j>, the second's made as p<i><j> */
#define HDECL(i) __m512i h##i##0, h##i##1;
#define KEEP_ROW(i) h##i##0 = p##i##0, h##i##1 = p##i##1;
#define IDECL(i) __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = _mm512_setzero_si512();
#define PAIR_ROW(i) { __m512i s = _mm512_set1_epi32(*(const int *)(qa_buf + (g * 4 + i) * 2));   \
    c##i##0 = _mm512_dpwssd_epi32(c##i##0, _mm512_sub_epi16(_mm512_permutex2var_epi16(          \
        h##i##0, pick, p##i##0), o0), _mm512_mullo_epi16(s, q0));                              \
    c##i##1 = _mm512_dpwssd_epi32(c##i##1, _mm512_sub_epi16(_mm512_permutex2var_epi16(          \
        h##i##1, pick, p##i##1), o1), _mm512_mullo_epi16(s, q1)); }
#define ISINK(i) sink += _mm512_reduce_add_epi32(_mm512_add_epi32(c##i##0, c##i##1));
#define PAIRS_LOOP(NAME, LESS)                                                                 \
    __attribute__((target("avx512f,avx512bw,avx512vnni"))) static double NAME(long iters) {     \
        int sink = 0;                                                                          \
        iters /= 8;                                                                            \
        double t0 = omp_get_wtime();                                                           \
        _Pragma("omp parallel reduction(+ : sink)") {                                          \
            GROUP_BUFFERS                                                                      \
            short lanes[32];                                                                   \
            for (int l = 0; l < 16; l++)                                                       \
                lanes[2 * l] = (short)(2 * l), lanes[2 * l + 1] = (short)(32 + 2 * l);         \
            __m512i pick = _mm512_loadu_si512(lanes);                                          \
            ROWS4(IDECL)                                                                       \
            for (long it = 0; it < iters; it++) {                                              \
                int g = (int)((2 * it) & 63);                                                  \
                ROWS4(HDECL)                                                                   \
                { GROUP_DOTS ROWS4(KEEP_ROW) }                                                 \
                g += 1;                                                                        \
                {                                                                              \
                    GROUP_DOTS                                                                 \
                    g -= 1;                                                                    \
                    __m512i q0 = _mm512_load_si512(qb_buf + g * 64);                           \
                    __m512i q1 = _mm512_load_si512(qb_buf + g * 64 + 32);                      \
                    /* A's zero correction offset·cs (offset 128: vpsllw 7), or none */      \
                    __m512i o0 = LESS ? _mm512_slli_epi16(                                     \
                        _mm512_load_si512(qb_buf + (g + 1) * 64), 7) : _mm512_setzero_si512(); \
                    __m512i o1 = LESS ? _mm512_slli_epi16(                                     \
                        _mm512_load_si512(qb_buf + (g + 1) * 64 + 32), 7)                      \
                                      : _mm512_setzero_si512();                                \
                    ROWS4(PAIR_ROW)                                                            \
                }                                                                              \
            }                                                                                  \
            ROWS4(ISINK)                                                                       \
        }                                                                                      \
        double t = omp_get_wtime() - t0;                                                       \
        return 512.0 * 16 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;                \
    }
PAIRS_LOOP(peak_vnni_pairs, 0)
PAIRS_LOOP(peak_vnni_pairs_offset, 1)

/* four nonzeros' codes times four random lines of a panel, 64 columns of int32 sums */
#define QUAD_LINE(t) _mm512_load_si512(panel + 64 * (size_t)rows[(q * 4 + t) & 1023])
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double peak_vnni_quads(long iters) {
    int sink = 0;
    iters /= 8;
    double t0 = omp_get_wtime();
    _Pragma("omp parallel reduction(+ : sink)") {
        static __thread unsigned char panel[256 * 64] __attribute__((aligned(64)));
        static __thread unsigned short rows[1024];
        unsigned seed = 12345u + 977u * (unsigned)omp_get_thread_num();
        for (int q = 0; q < 256 * 64; q++) panel[q] = (unsigned char)(seed = seed * 1103515245u + 12345u);
        for (int q = 0; q < 1024; q++) rows[q] = (unsigned short)((seed = seed * 1103515245u + 12345u) >> 8) & 255;
        __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
        for (long it = 0; it < iters; it++) {
            for (int q = (int)(it & 255) * 8 % 256, e = q + 8; q < e; q++) {
                __m512i r0 = QUAD_LINE(0), r1 = QUAD_LINE(1), r2 = QUAD_LINE(2), r3 = QUAD_LINE(3);
                __m512i w = _mm512_set1_epi32(0x03fd02ff + q);
                __m512i x0 = _mm512_unpacklo_epi8(r0, r1), x1 = _mm512_unpackhi_epi8(r0, r1);
                __m512i y0 = _mm512_unpacklo_epi8(r2, r3), y1 = _mm512_unpackhi_epi8(r2, r3);
                c0 = _mm512_dpbusd_epi32(c0, _mm512_unpacklo_epi16(x0, y0), w);
                c1 = _mm512_dpbusd_epi32(c1, _mm512_unpackhi_epi16(x0, y0), w);
                c2 = _mm512_dpbusd_epi32(c2, _mm512_unpacklo_epi16(x1, y1), w);
                c3 = _mm512_dpbusd_epi32(c3, _mm512_unpackhi_epi16(x1, y1), w);
            }
        }
        sink += _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)));
    }
    double t = omp_get_wtime() - t0;
    return 512.0 * 8 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;
}

/* the same on AVX2: four 32-byte lines, 32 columns of int32 sums, vpsignb + vpmaddubsw +
   vpmaddwd by ones + vpaddd per quad vector */
#define QUAD_LINE2(t) _mm256_load_si256((const __m256i *)(panel + 32 * (size_t)rows[(q * 4 + t) & 1023]))
#define QUAD_DOT2(c, v) c = _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(v, w)), ones))
__attribute__((target("avx2"))) static double peak_avx2_quads(long iters) {
    int sink = 0;
    iters /= 8;
    double t0 = omp_get_wtime();
    _Pragma("omp parallel reduction(+ : sink)") {
        static __thread unsigned char panel[256 * 32] __attribute__((aligned(64)));
        static __thread unsigned short rows[1024];
        unsigned seed = 12345u + 977u * (unsigned)omp_get_thread_num();
        for (int q = 0; q < 256 * 32; q++) panel[q] = (unsigned char)(seed = seed * 1103515245u + 12345u);
        for (int q = 0; q < 1024; q++) rows[q] = (unsigned short)((seed = seed * 1103515245u + 12345u) >> 8) & 255;
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
        const __m256i ones = _mm256_set1_epi16(1);
        for (long it = 0; it < iters; it++) {
            for (int q = (int)(it & 255) * 8 % 256, e = q + 8; q < e; q++) {
                __m256i r0 = QUAD_LINE2(0), r1 = QUAD_LINE2(1), r2 = QUAD_LINE2(2), r3 = QUAD_LINE2(3);
                __m256i w = _mm256_set1_epi32(0x03fd02ff + q), aw = _mm256_sign_epi8(w, w);
                __m256i x0 = _mm256_unpacklo_epi8(r0, r1), x1 = _mm256_unpackhi_epi8(r0, r1);
                __m256i y0 = _mm256_unpacklo_epi8(r2, r3), y1 = _mm256_unpackhi_epi8(r2, r3);
                QUAD_DOT2(c0, _mm256_unpacklo_epi16(x0, y0));
                QUAD_DOT2(c1, _mm256_unpackhi_epi16(x0, y0));
                QUAD_DOT2(c2, _mm256_unpacklo_epi16(x1, y1));
                QUAD_DOT2(c3, _mm256_unpackhi_epi16(x1, y1));
            }
        }
        __m256i c = _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3));
        sink += _mm256_extract_epi32(c, 0) + _mm256_extract_epi32(c, 7);
    }
    double t = omp_get_wtime() - t0;
    return 256.0 * 8 * iters * omp_get_max_threads() / t / 1e9 + 0 * sink;
}

/* AMX: tile configuration of palette 1, tiles 0-7 of 16 rows x 64 bytes */
struct tilecfg { unsigned char palette, start, reserved[14]; unsigned short colsb[16];
                 unsigned char rows[16]; };
__attribute__((target("amx-tile,amx-int8"))) static double peak_amx(long iters) {
    int sink = 0;
    iters /= 16; /* one tdpbusd is 16 x 16 x 64 multiply-adds: keep the run short */
    double t0 = omp_get_wtime();
    _Pragma("omp parallel reduction(+ : sink)") {
        struct tilecfg cfg;
        static __thread signed char buf[16 * 64] __attribute__((aligned(64)));
        int out[16 * 16];
        memset(&cfg, 0, sizeof cfg);
        cfg.palette = 1;
        for (int t = 0; t < 8; t++) {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        _tile_loadconfig(&cfg);
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        _tile_loadd(4, buf, 64); _tile_loadd(5, buf, 64);
        _tile_loadd(6, buf, 64); _tile_loadd(7, buf, 64);
        for (long i = 0; i < iters; i++) {
            _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
        }
        _tile_stored(0, out, 64);
        sink += out[0];
        _tile_release();
    }
    double t = omp_get_wtime() - t0;
    return 4.0 * 2 * 16 * 16 * 64 * (double)iters * omp_get_max_threads() / t / 1e9 + 0 * sink;
}

/* Linux grants the AMX tile data state to a process that asks (5.16 and later) */
static int amx_granted(void) {
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
}

#define MODE(NAME, FEATURE) {#NAME, FEATURE, peak_##NAME}
static const struct {
    const char *mode, *feature; /* the CPU feature the mode needs, as lscpu names it */
    double (*run)(long);
} MODES[] = {MODE(fma, "fma"), MODE(fma512, "avx512f"), MODE(avx2, "avx2"),
             MODE(avx2_u8, "avx2"),
             MODE(avx2_u8_i16, "avx2"), MODE(avx2_s8, "avx2"), MODE(vnni, "avx512_vnni"),
             MODE(vnni_blocks, "avx512_vnni"),
             MODE(vnni_groups, "avx512_vnni"), MODE(vnni_pairs_offset, "avx512_vnni"), MODE(vnni_pairs, "avx512_vnni"), MODE(vnni_quads, "avx512_vnni"),
             MODE(avx2_quads, "avx2"),
             MODE(avxvnni, "avx_vnni"), MODE(amx, "amx_int8")};

/* __builtin_cpu_supports takes string literals only */
static int has(const char *feature) {
    __builtin_cpu_init();
    if (strcmp(feature, "fma") == 0)
        return __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
    if (strcmp(feature, "avx2") == 0) return __builtin_cpu_supports("avx2");
    if (strcmp(feature, "avx512f") == 0) return __builtin_cpu_supports("avx512f");
    if (strcmp(feature, "avx512_vnni") == 0) return __builtin_cpu_supports("avx512vnni");
    if (strcmp(feature, "amx_int8") == 0) return __builtin_cpu_supports("amx-int8") && amx_granted();
    return __builtin_cpu_supports("avxvnni");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "avx2";
    long iters = argc > 2 ? atol(argv[2]) : 20000000L;
    for (size_t i = 0; i < sizeof MODES / sizeof MODES[0]; i++) {
        if (strcmp(mode, MODES[i].mode) != 0) continue;
        if (!has(MODES[i].feature)) {
            printf("n/a: this CPU lacks %s\n", MODES[i].feature);
            return 2;
        }
        printf("%.1f %d\n", MODES[i].run(iters), omp_get_max_threads());
        return 0;
    }
    fprintf(stderr, "peak: unknown mode %s (fma, fma512, avx2, avx2_u8, avx2_u8_i16, avx2_s8, "
            "vnni, vnni_blocks, vnni_groups, vnni_pairs, vnni_pairs_offset, vnni_quads, avx2_quads, avxvnni, amx)\n", mode);
    return 1;
}
