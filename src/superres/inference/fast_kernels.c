/* superres Winograd F(4x4,3x3) and F(6x6,3x3) transforms. Images are (H, W, C) with element strides
   (sy, sx, sc); V and M are (P, tiles, C) with strides (vsp, vst, 1), P = (m+2)^2, C % 8 == 0.
   GCC / Clang vector extensions. Built once per machine in variants (fast.py picks one per process from
   the CPU's flags): avx512 (-mavx512f ...: the GEMM's 32-column blocks in zmm registers), avx2 (-mavx2 -mfma:
   everything else in ymm) and portable (no -m flags, no intrinsics: the same algorithm in plain vector
   extensions, which the compiler lowers to whatever the target has). sr_kernel_isa() says which was built. */
#include <stdint.h>
typedef int64_t i64;
typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));
#define LD(p) (*(const v8*)(p))
#define ST(p, v) (*(v8*)(p) = (v))

typedef struct {
    float* y; i64 sy, sx, sc, cvalid, shuf;
    const float* bias; i64 act; float slope; const float* alpha;
    const float* r1; i64 r1sy, r1sx, r1sc; float s1;
    const float* r2; i64 r2sy, r2sx, r2sc; float s2;
} sr_epi;

/* B^T d for F(4,3) (6 points) and F(6,3) (8 points) */
static inline void bt6(v8 d0, v8 d1, v8 d2, v8 d3, v8 d4, v8 d5, v8* r) {
    v8 s12 = d1 + d2, s34 = d3 + d4, u12 = d1 - d2, u43 = d4 - d3, v42 = d4 - d2, v31 = d3 - d1;
    r[0] = 4.f * d0 - 5.f * d2 + d4;
    r[1] = s34 - 4.f * s12;
    r[2] = u43 + 4.f * u12;
    r[3] = v42 + 2.f * v31;
    r[4] = v42 - 2.f * v31;
    r[5] = 4.f * d1 - 5.f * d3 + d5;
}

static inline void bt8(const v8* d, i64 st, v8* r, i64 rt) {
    v8 d0 = d[0], d1 = d[st], d2 = d[2 * st], d3 = d[3 * st], d4 = d[4 * st], d5 = d[5 * st], d6 = d[6 * st],
       d7 = d[7 * st];
    v8 a = d2 + d6 - 4.25f * d4, b = d1 + d5 - 4.25f * d3;
    v8 c = d6 + 0.25f * d2 - 1.25f * d4, e = 0.5f * d1 - 2.5f * d3 + 2.f * d5;
    v8 f = d6 + 4.f * d2 - 5.f * d4, g = 2.f * d1 - 2.5f * d3 + 0.5f * d5;
    r[0] = d0 - d6 + 5.25f * (d4 - d2);
    r[rt] = a + b;
    r[2 * rt] = a - b;
    r[3 * rt] = c + e;
    r[4 * rt] = c - e;
    r[5 * rt] = f + g;
    r[6 * rt] = f - g;
    r[7 * rt] = d7 - d1 + 5.25f * (d3 - d5);
}

/* A^T m for F(4,3) and F(6,3) */
static inline void at4(v8 m0, v8 m1, v8 m2, v8 m3, v8 m4, v8 m5, v8* o) {
    v8 p12 = m1 + m2, p34 = m3 + m4, n12 = m1 - m2, n34 = m3 - m4;
    o[0] = m0 + p12 + p34;
    o[1] = n12 + 2.f * n34;
    o[2] = p12 + 4.f * p34;
    o[3] = n12 + 8.f * n34 + m5;
}

static inline void at8(const v8* m, i64 st, v8* o) {
    v8 m0 = m[0], m7 = m[7 * st];
    v8 a12 = m[st] + m[2 * st], s12 = m[st] - m[2 * st];
    v8 a34 = m[3 * st] + m[4 * st], s34 = m[3 * st] - m[4 * st];
    v8 a56 = m[5 * st] + m[6 * st], s56 = m[5 * st] - m[6 * st];
    o[0] = m0 + a12 + a34 + a56;
    o[1] = s12 + 2.f * s34 + 0.5f * s56;
    o[2] = a12 + 4.f * a34 + 0.25f * a56;
    o[3] = s12 + 8.f * s34 + 0.125f * s56;
    o[4] = a12 + 16.f * a34 + 0.0625f * a56;
    o[5] = s12 + 32.f * s34 + 0.03125f * s56 + m7;
}

/* Load the n x n input tile at (y0, x0), channels c0..c0+7: zero outside the image and in channels >= cvalid.
   Read at (y / up, x / up): up = 2 reads a nearest x2 upsampling of the image. */
static inline void load_tile(int n, v8* d, const float* x, i64 H, i64 W, i64 C, i64 cvalid, i64 sy, i64 sx,
                             i64 sc, i64 up, i64 y0, i64 x0, i64 c0)
{
    const v8 zero = {0};
    const int vec = sc == 1 && cvalid == C;
    if (vec && up == 1 && y0 >= 0 && y0 + n <= H && x0 >= 0 && x0 + n <= W) {
        const float* s = x + y0 * sy + x0 * sx + c0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) d[i * n + j] = LD(s + i * sy + j * sx);
        return;
    }
    for (int i = 0; i < n; i++) {
        i64 yy = y0 + i;
        for (int j = 0; j < n; j++) {
            i64 xx = x0 + j;
            v8 v = zero;
            if (yy >= 0 && yy < H && xx >= 0 && xx < W) {
                const float* s = x + (yy / up) * sy + (xx / up) * sx;
                if (vec) v = LD(s + c0);
                else
                    for (int k = 0; k < 8 && c0 + k < cvalid; k++) v[k] = s[(c0 + k) * sc];
            }
            d[i * n + j] = v;
        }
    }
}

/* Tiles [t0, t1) (t = ty * ntx + tx) -> V[p * vsp + (t - t0) * vst + c], p = a * (m+2) + b. */
void sr_wino_in(int m, const float* x, i64 H, i64 W, i64 C, i64 cvalid, i64 sy, i64 sx, i64 sc, i64 up,
                i64 ntx, i64 t0, i64 t1, float* V, i64 vsp, i64 vst)
{
    for (i64 t = t0; t < t1; t++) {
        i64 ty = t / ntx, tx = t - ty * ntx;
        float* vt = V + (t - t0) * vst;
        for (i64 c0 = 0; c0 < C; c0 += 8) {
            if (m == 4) {
                v8 d[36], r[6][6];
                load_tile(6, d, x, H, W, C, cvalid, sy, sx, sc, up, 4 * ty - 1, 4 * tx - 1, c0);
                for (int j = 0; j < 6; j++) {
                    v8 o[6];
                    bt6(d[j], d[6 + j], d[12 + j], d[18 + j], d[24 + j], d[30 + j], o);
                    for (int a = 0; a < 6; a++) r[a][j] = o[a];
                }
                for (int a = 0; a < 6; a++) {
                    v8 o[6];
                    bt6(r[a][0], r[a][1], r[a][2], r[a][3], r[a][4], r[a][5], o);
                    float* dst = vt + (i64)(a * 6) * vsp + c0;
                    for (int b = 0; b < 6; b++) ST(dst + b * vsp, o[b]);
                }
            } else {
                v8 d[64], r[64], o[8];
                load_tile(8, d, x, H, W, C, cvalid, sy, sx, sc, up, 6 * ty - 1, 6 * tx - 1, c0);
                for (int j = 0; j < 8; j++) bt8(d + j, 8, r + j, 8);          /* r[a*8+j]: rows */
                for (int a = 0; a < 8; a++) {
                    bt8(r + a * 8, 1, o, 1);                                  /* columns */
                    float* dst = vt + (i64)(a * 8) * vsp + c0;
                    for (int b = 0; b < 8; b++) ST(dst + b * vsp, o[b]);
                }
            }
        }
    }
}

/* The (m+2)^2 products M_p (n x N) = V_p (n x K, row stride vst) @ U_p (K x N, contiguous), N % 8 == 0.
   An AVX2/FMA register-blocked kernel: 6 rows x 16 columns of M in 12 accumulators, U_p's 16 columns stream
   from L1. ~95% of one core's FMA peak for these thin shapes (MKL's sgemm: 65-75%). With AVX-512 the
   column blocks are 32 wide (12 zmm accumulators); the 16- and 8-column tails stay in ymm. Every variant
   sums over k in the same order. */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FMA2(i) a = _mm256_broadcast_ss(r##i + k); c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0); \
                c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);
#define FMA1(i) a = _mm256_broadcast_ss(r##i + k); c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);
static inline void mk16(const float* A, i64 as, const float* B, i64 N, i64 K, float* C, i64 cs, int R,
                        int pf) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, a;
    const float *r0 = A, *r1 = R > 1 ? A + as : A, *r2 = R > 2 ? A + 2 * as : A, *r3 = R > 3 ? A + 3 * as : A,
                *r4 = R > 4 ? A + 4 * as : A, *r5 = R > 5 ? A + 5 * as : A;
    const float* nx = A + 6 * as;  /* the next 6 rows: rows of a strided store are too short for the hardware
                                      prefetcher (1.5-2x faster GEMMs reading RRDB's Winograd-domain store) */
    for (i64 k = 0; k < K; k++) {
        if (pf && (k & 15) == 0)
            for (int r = 0; r < pf; r++) _mm_prefetch((const char*)(nx + r * as + k), _MM_HINT_T0);
        __m256 b0 = _mm256_loadu_ps(B + k * N), b1 = _mm256_loadu_ps(B + k * N + 8);
        FMA2(0) FMA2(1) FMA2(2) FMA2(3) FMA2(4) FMA2(5)
    }
    __m256 out[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(C + r * cs, out[2 * r]);
        _mm256_storeu_ps(C + r * cs + 8, out[2 * r + 1]);
    }
}
static inline void mk8(const float* A, i64 as, const float* B, i64 N, i64 K, float* C, i64 cs, int R) {
    __m256 c00 = _mm256_setzero_ps(), c10 = c00, c20 = c00, c30 = c00, c40 = c00, c50 = c00, a;
    const float *r0 = A, *r1 = R > 1 ? A + as : A, *r2 = R > 2 ? A + 2 * as : A, *r3 = R > 3 ? A + 3 * as : A,
                *r4 = R > 4 ? A + 4 * as : A, *r5 = R > 5 ? A + 5 * as : A;
    for (i64 k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(B + k * N);
        FMA1(0) FMA1(1) FMA1(2) FMA1(3) FMA1(4) FMA1(5)
    }
    __m256 out[6] = {c00, c10, c20, c30, c40, c50};
    for (int r = 0; r < R; r++) _mm256_storeu_ps(C + r * cs, out[r]);
}
#if defined(__AVX512F__)
#define FMA3(i) z = _mm512_set1_ps(r##i[k]); c##i##0 = _mm512_fmadd_ps(z, b0, c##i##0); \
                c##i##1 = _mm512_fmadd_ps(z, b1, c##i##1);
static inline void mk32(const float* A, i64 as, const float* B, i64 N, i64 K, float* C, i64 cs, int R,
                        int pf) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, z;
    const float *r0 = A, *r1 = R > 1 ? A + as : A, *r2 = R > 2 ? A + 2 * as : A, *r3 = R > 3 ? A + 3 * as : A,
                *r4 = R > 4 ? A + 4 * as : A, *r5 = R > 5 ? A + 5 * as : A;
    const float* nx = A + 6 * as;
    for (i64 k = 0; k < K; k++) {
        if (pf && (k & 15) == 0)
            for (int r = 0; r < pf; r++) _mm_prefetch((const char*)(nx + r * as + k), _MM_HINT_T0);
        __m512 b0 = _mm512_loadu_ps(B + k * N), b1 = _mm512_loadu_ps(B + k * N + 16);
        FMA3(0) FMA3(1) FMA3(2) FMA3(3) FMA3(4) FMA3(5)
    }
    __m512 out[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(C + r * cs, out[2 * r]);
        _mm512_storeu_ps(C + r * cs + 16, out[2 * r + 1]);
    }
}
int sr_kernel_isa(void) { return 512; }
#else
int sr_kernel_isa(void) { return 256; }
#endif
int sr_gemm_available(void) { return 1; }
void sr_gemm(i64 P, const float* V, i64 vsp, i64 vst, i64 n, i64 K, const float* U, i64 N, float* M, i64 msp,
             i64 mst)
{
    for (i64 p = 0; p < P; p++) {
        const float *A = V + p * vsp, *B = U + p * K * N;
        float* C = M + p * msp;
        for (i64 j0 = 0; j0 < N;) {
#if defined(__AVX512F__)
            const i64 width = j0 + 32 <= N ? 32 : j0 + 16 <= N ? 16 : 8;
#else
            const i64 width = j0 + 16 <= N ? 16 : 8;
#endif
            for (i64 r0 = 0; r0 < n; r0 += 6) {
                int R = n - r0 < 6 ? (int)(n - r0) : 6;
                i64 left = n - r0 - 6;
                int pf = j0 == 0 && left > 0 ? (left < 6 ? (int)left : 6) : 0;
#if defined(__AVX512F__)
                if (width == 32) { mk32(A + r0 * vst, vst, B + j0, N, K, C + r0 * mst + j0, mst, R, pf); continue; }
#endif
                if (width == 16) mk16(A + r0 * vst, vst, B + j0, N, K, C + r0 * mst + j0, mst, R, pf);
                else mk8(A + r0 * vst, vst, B + j0, N, K, C + r0 * mst + j0, mst, R);
            }
            j0 += width;
        }
    }
}
#else
/* Portable: the same 6-row blocking with 8-column vector-extension accumulators (SSE pairs on a plain
   x86-64 build, NEON on ARM), no intrinsics. */
static inline void pk8(const float* A, i64 as, const float* B, i64 N, i64 K, float* C, i64 cs, int R) {
    const v8 zero = {0};
    v8 c0 = zero, c1 = zero, c2 = zero, c3 = zero, c4 = zero, c5 = zero;
    const float *r0 = A, *r1 = R > 1 ? A + as : A, *r2 = R > 2 ? A + 2 * as : A, *r3 = R > 3 ? A + 3 * as : A,
                *r4 = R > 4 ? A + 4 * as : A, *r5 = R > 5 ? A + 5 * as : A;
    for (i64 k = 0; k < K; k++) {
        v8 b = LD(B + k * N);
        c0 += r0[k] * b; c1 += r1[k] * b; c2 += r2[k] * b; c3 += r3[k] * b; c4 += r4[k] * b; c5 += r5[k] * b;
    }
    v8 out[6] = {c0, c1, c2, c3, c4, c5};
    for (int r = 0; r < R; r++) ST(C + r * cs, out[r]);
}
int sr_kernel_isa(void) { return 0; }
int sr_gemm_available(void) { return 1; }
void sr_gemm(i64 P, const float* V, i64 vsp, i64 vst, i64 n, i64 K, const float* U, i64 N, float* M, i64 msp,
             i64 mst)
{
    for (i64 p = 0; p < P; p++) {
        const float *A = V + p * vsp, *B = U + p * K * N;
        float* C = M + p * msp;
        for (i64 j0 = 0; j0 < N; j0 += 8)
            for (i64 r0 = 0; r0 < n; r0 += 6) {
                int R = n - r0 < 6 ? (int)(n - r0) : 6;
                pk8(A + r0 * vst, vst, B + j0, N, K, C + r0 * mst + j0, mst, R);
            }
    }
}
#endif

/* e^x, 8 lanes: x = n ln2 + r (|r| <= ln2 / 2, ln2 split in two for an exact product), e^r by a degree-6
   polynomial (Cephes expf coefficients), 2^n through the exponent bits; ~1 ulp, x clamped to the normal
   range (e^-87.3 .. e^88.3). */
#if defined(__AVX__)
#include <immintrin.h>
static inline v8 vclamp(v8 x, v8 lo, v8 hi) { return (v8)_mm256_min_ps(_mm256_max_ps((__m256)x, (__m256)lo), (__m256)hi); }
/* 1 / x: the 12-bit estimate and one Newton step (~23 bits) instead of a division (3-4x the throughput) */
static inline v8 vrcp(v8 x) { v8 r = (v8)_mm256_rcp_ps((__m256)x); return r * (2.f - x * r); }
#else
static inline v8 vclamp(v8 x, v8 lo, v8 hi) {
    v8i over = x > hi, under = x < lo;
    x = (v8)(((v8i)x & ~over) | ((v8i)hi & over));
    return (v8)(((v8i)x & ~under) | ((v8i)lo & under));
}
static inline v8 vrcp(v8 x) { return 1.f / x; }
#endif

static inline v8 vexp(v8 x) {
    const v8 lo = {0}, hi_c = lo + 88.3f, lo_c = lo - 87.3f, magic = lo + 12582912.f; /* 1.5 * 2^23 */
    x = vclamp(x, lo_c, hi_c);
    v8 n = (x * 1.44269504088896341f + magic) - magic;  /* round to nearest */
    v8 r = x - n * 0.693359375f + n * 2.12194440e-4f;
    v8 p = lo + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v8 y = p * r * r + r + 1.f;
    v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
    return y * (v8)e;
}

static inline v8 vsigmoid(v8 v) { return vrcp(1.f + vexp(-v)); }
/* sigmoid(v) - 0.5 to within an ulp of 0.5 (a true division: SPAN multiplies it by activations of ~100s) */
static inline v8 vgate(v8 v) { return 1.f / (1.f + vexp(-v)) - 0.5f; }

/* Per 8-channel group: where each lane goes, relative to the pixel's position (scalar store paths). */
typedef struct { i64 yo[8], o1[8], o2[8]; int lanes, quad; } sr_lanes;

static inline void lanes_of(const sr_epi* e, i64 c0, sr_lanes* L) {
    L->lanes = (int)(e->cvalid - c0 < 8 ? e->cvalid - c0 : 8);
    for (int k = 0; k < L->lanes; k++) {
        i64 c = c0 + k;
        if (e->shuf) {
            i64 s = e->shuf, oc = c / (s * s);
            L->yo[k] = oc * e->sc + ((c / s) % s) * e->sy + (c % s) * e->sx;
            L->o1[k] = oc * e->r1sc;
            L->o2[k] = 0;
        } else {
            L->yo[k] = c * e->sc;
            L->o1[k] = c * e->r1sc;
            L->o2[k] = c * e->r2sc;
        }
    }
    /* x4 shuffle into unit-stride rows: lanes 0-3 and 4-7 are two runs of 4 pixels of one output plane */
    L->quad = e->shuf == 4 && e->sx == 1 && L->lanes == 8;
}

static inline void emit(v8 v, i64 yy, i64 xx, i64 c0, const sr_epi* e, int vec, const sr_lanes* L) {
    if (e->act == 4) {  /* SPAN: (v + r1) * (sigmoid(v) - 0.5), r1 the block input; then r2 as usual */
        v8 g = vgate(v);
        if (vec) {
            v = (v + LD(e->r1 + yy * e->r1sy + xx * e->r1sx + c0)) * g;
            if (e->r2) v = v * e->s2 + LD(e->r2 + yy * e->r2sy + xx * e->r2sx + c0);
            ST(e->y + yy * e->sy + xx * e->sx + c0, v);
            return;
        }
        const float* q1 = e->r1 + yy * e->r1sy + xx * e->r1sx;
        const float* q2 = e->r2 ? e->r2 + yy * e->r2sy + xx * e->r2sx : 0;
        i64 s = e->shuf ? e->shuf : 1;
        float* y = e->y + (yy * s) * e->sy + (xx * s) * e->sx;
        for (int k = 0; k < L->lanes; k++) {
            float f = (v[k] + q1[L->o1[k]]) * g[k];
            if (q2) f = f * e->s2 + q2[L->o2[k]];
            y[L->yo[k]] = f;
        }
        return;
    }
    if (vec) {
        if (e->r1) v = v * e->s1 + LD(e->r1 + yy * e->r1sy + xx * e->r1sx + c0);
        if (e->r2) v = v * e->s2 + LD(e->r2 + yy * e->r2sy + xx * e->r2sx + c0);
        ST(e->y + yy * e->sy + xx * e->sx + c0, v);
        return;
    }
    i64 s = e->shuf ? e->shuf : 1;
    float* y = e->y + (yy * s) * e->sy + (xx * s) * e->sx;
    const float* q1 = e->r1 ? e->r1 + yy * e->r1sy + xx * e->r1sx : 0;
    const float* q2 = e->r2 ? e->r2 + yy * e->r2sy + xx * e->r2sx : 0;
    if (L->quad) {
        typedef float v4 __attribute__((vector_size(16), aligned(4)));
        if (q1) v = v * e->s1 + q1[L->o1[0]];
        v4 lo = {v[0], v[1], v[2], v[3]}, hi = {v[4], v[5], v[6], v[7]};
        *(v4*)(y + L->yo[0]) = lo;
        *(v4*)(y + L->yo[4]) = hi;
        return;
    }
    for (int k = 0; k < L->lanes; k++) {
        float f = v[k];
        if (q1) f = f * e->s1 + q1[L->o1[k]];
        if (q2) f = f * e->s2 + q2[L->o2[k]];
        y[L->yo[k]] = f;
    }
}

/* act: 0 none, 1 leaky (slope; ReLU: 0), 2 PReLU (alpha), 3 SiLU v * sigmoid(v), 5 tanh; 4 (SPAN's
   attention gate) is applied in emit, where the block input r1 is at hand. */
static inline v8 activate(v8 v, v8 b, v8 al, i64 act) {
    const v8 zero = {0};
    v = v + b;
    if (act == 1 || act == 2) { v8i k = v > zero; v = (v8)(((v8i)v & k) | ((v8i)(v * al) & ~k)); }
    else if (act == 3) v = v * vsigmoid(v);
    else if (act == 5) v = 1.f - 2.f * vrcp(vexp(v + v) + 1.f);
    return v;
}

/* M -> v = act(A^T M A + bias) at the pixels of tiles [t0, t1) inside H x W; act: 0 none, 1 leaky (slope),
   2 prelu (alpha[c]), 3 SiLU, 5 tanh, 4 SPAN's gate v = (v + r1[y, x, c]) * (sigmoid(v) - 0.5) in place of
   the r1 step below (not with shuf). Then, for channels c < cvalid:
     shuf == 0: v = v * s1 + r1[y, x, c]; v = v * s2 + r2[y, x, c] (each when given); y[y, x, c] = v.
     shuf == s: pixel shuffle, c = (k * s + i) * s + j -> y[k, y * s + i, x * s + j] = v * s1 + r1[y, x, k].
   r1 / r2 may alias y (each pixel is read before it is written). */
void sr_wino_out(int m, const float* M, i64 msp, i64 mst, i64 C, i64 ntx, i64 t0, i64 t1, i64 H, i64 W,
                 const sr_epi* e)
{
    const v8 zero = {0};
    const int vec = e->sc == 1 && e->cvalid == C && e->shuf == 0 && (!e->r1 || e->r1sc == 1)
                    && (!e->r2 || e->r2sc == 1);
    for (i64 t = t0; t < t1; t++) {
        i64 ty = t / ntx, tx = t - ty * ntx;
        i64 y0 = m * ty, x0 = m * tx;
        const float* mt = M + (t - t0) * mst;
        for (i64 c0 = 0; c0 < C && c0 < e->cvalid; c0 += 8) {
            v8 b = e->bias ? LD(e->bias + c0) : zero;
            v8 al = zero + e->slope;
            if (e->act == 2) al = LD(e->alpha + c0);
            sr_lanes L;
            if (!vec) lanes_of(e, c0, &L);
            if (m == 4) {
                v8 z[6][4];
                for (int a = 0; a < 6; a++) {
                    const float* p = mt + (i64)(a * 6) * msp + c0;
                    at4(LD(p), LD(p + msp), LD(p + 2 * msp), LD(p + 3 * msp), LD(p + 4 * msp),
                        LD(p + 5 * msp), z[a]);
                }
                for (int j = 0; j < 4 && x0 + j < W; j++) {
                    v8 o[4];
                    at4(z[0][j], z[1][j], z[2][j], z[3][j], z[4][j], z[5][j], o);
                    for (int i = 0; i < 4 && y0 + i < H; i++)
                        emit(activate(o[i], b, al, e->act), y0 + i, x0 + j, c0, e, vec, &L);
                }
            } else {
                v8 q[8], z[8][6], col[8], o[6];
                for (int a = 0; a < 8; a++) {
                    const float* p = mt + (i64)(a * 8) * msp + c0;
                    for (int k = 0; k < 8; k++) q[k] = LD(p + k * msp);
                    at8(q, 1, z[a]);
                }
                for (int j = 0; j < 6 && x0 + j < W; j++) {
                    for (int a = 0; a < 8; a++) col[a] = z[a][j];
                    at8(col, 1, o);
                    for (int i = 0; i < 6 && y0 + i < H; i++)
                        emit(activate(o[i], b, al, e->act), y0 + i, x0 + j, c0, e, vec, &L);
                }
            }
        }
    }
}

/* One chunk of one convolution in one call (less Python per chunk): tiles [t0, t1) of x -> V (channels
   [voff, voff + vc) of planes whose row 0 is tile t0), M = V[:, :, :K] @ U, M -> the epilogue. */
void sr_wino_chunk(int m, const float* x, i64 H, i64 W, i64 cvalid, i64 sy, i64 sx, i64 sc, i64 up, i64 ntx,
                   i64 t0, i64 t1, float* V, i64 vsp, i64 vst, i64 voff, i64 vc, i64 K, const float* U, i64 N,
                   float* M, i64 msp, i64 mst, const sr_epi* e)
{
    sr_wino_in(m, x, H, W, vc, cvalid, sy, sx, sc, up, ntx, t0, t1, V + voff, vsp, vst);
    sr_gemm((m + 2) * (m + 2), V, vsp, vst, t1 - t0, K, U, N, M, msp, mst);
    sr_wino_out(m, M, msp, mst, N, ntx, t0, t1, H, W, e);
}

/* ---- Real-CUGAN / CUNet (fast.py _UNetPlan): the U-Nets' 2x2 stride-2 convolutions and SE means ---------
   Images are (H, W, C) with channels contiguous, C and N multiples of 8; rows [r0, r1) per call, so the
   pool splits an image into bands. */

static inline v8 lrelu_bias(v8 v, v8 b, v8 sl) {
    const v8 zero = {0};
    v = v + b;
    v8i k = v > zero;
    return (v8)(((v8i)v & k) | ((v8i)(v * sl) & ~k));
}

/* Down: output rows [r0, r1) of
   y[r, j, n] = lrelu(bias[n] + sum_{a,b,c} x[2r+a, 2j+b, c] Wd[(a*2+b)*C+c, n]).
   Each row's 2x2 blocks are gathered into scratch (wo x 4C) and multiplied by the GEMM above. */
void sr_down2(const float* x, i64 sy, i64 sx, i64 C, i64 wo, const float* Wd, i64 N, const float* bias,
              float slope, float* y, i64 ysy, i64 ysx, i64 r0, i64 r1, float* scratch)
{
    const v8 sl = (v8){0} + slope;
    for (i64 r = r0; r < r1; r++) {
        for (i64 j = 0; j < wo; j++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    const float* s = x + (2 * r + a) * sy + (2 * j + b) * sx;
                    float* d = scratch + j * 4 * C + (a * 2 + b) * C;
                    for (i64 c = 0; c < C; c += 8) ST(d + c, LD(s + c));
                }
        float* yr = y + r * ysy;
        sr_gemm(1, scratch, 0, 4 * C, wo, 4 * C, Wd, N, yr, 0, ysx);
        for (i64 j = 0; j < wo; j++)
            for (i64 n = 0; n < N; n += 8)
                ST(yr + j * ysx + n, lrelu_bias(LD(yr + j * ysx + n), LD(bias + n), sl));
    }
}

/* Up: input rows [r0, r1) of y[2i+a, 2j+b, n] = lrelu(bias[n] + sum_c x[i, j, c] Wt[c, (a*2+b)*N+n])
   + gate[n] * skip[2i+a, 2j+b, n] (no skip when NULL; gate 1 when NULL). y may alias skip (each value is
   read before it is written). scratch: w x 4N. */
void sr_up2(const float* x, i64 sy, i64 sx, i64 C, i64 w, const float* Wt, i64 N, const float* bias,
            float slope, const float* skip, i64 ksy, i64 ksx, const float* gate, float* y, i64 ysy, i64 ysx,
            i64 r0, i64 r1, float* scratch)
{
    const v8 sl = (v8){0} + slope, one = (v8){0} + 1.f;
    for (i64 i = r0; i < r1; i++) {
        sr_gemm(1, x + i * sy, 0, sx, w, C, Wt, 4 * N, scratch, 0, 4 * N);
        for (int a = 0; a < 2; a++) {
            float* yr = y + (2 * i + a) * ysy;
            const float* kr = skip ? skip + (2 * i + a) * ksy : 0;
            for (i64 j = 0; j < w; j++)
                for (int b = 0; b < 2; b++) {
                    const float* mv = scratch + j * 4 * N + (a * 2 + b) * N;
                    float* o = yr + (2 * j + b) * ysx;
                    const float* k = kr ? kr + (2 * j + b) * ksx : 0;
                    for (i64 n = 0; n < N; n += 8) {
                        v8 v = lrelu_bias(LD(mv + n), LD(bias + n), sl);
                        if (k) v = v + (gate ? LD(gate + n) : one) * LD(k + n);
                        ST(o + n, v);
                    }
                }
        }
    }
}

/* Per-channel sums of rows [r0, r1) (w pixels each), added to out[C] in double (SE's global mean). */
void sr_chsum(const float* x, i64 sy, i64 sx, i64 C, i64 w, i64 r0, i64 r1, double* out)
{
    for (i64 r = r0; r < r1; r++)
        for (i64 c0 = 0; c0 < C; c0 += 8) {
            v8 acc = {0};
            const float* s = x + r * sy + c0;
            for (i64 j = 0; j < w; j++) acc = acc + LD(s + j * sx);
            for (int k = 0; k < 8; k++) out[c0 + k] += acc[k];
        }
}

/* ---- windowed self-attention (DAT's spatial windows; superres.archs.base.map_attention) -----------------
   O = softmax(scale Q K^T + B + M) V per window and head (N tokens, a multiple of 8; head size d), read
   straight from the (rows, columns, 3C) map the qkv projection wrote and written straight into the output
   map: the roll of shifted windows, the window partition and its inverse are address arithmetic here, not
   copies, and the shift mask is added as the scores are made. Eight query rows are taken at once, one per
   lane, so the scores of a block are S^T (N x 8): the softmax runs down the lanes (no horizontal
   reductions), and Q's eight rows and P V's d accumulators stay in registers (d is a compile-time constant
   for the common head sizes). */

static inline v8 vmax8(v8 a, v8 b) { v8i gt = a > b; return (v8)(((v8i)a & gt) | ((v8i)b & ~gt)); }

/* One block of eight queries: q of lane l at q8[l]; k and v (N, D) contiguous (gathered per window and
   head, so the N x 8 passes over them stay in L1); b8 / m8 the bias / mask blocks (m8 may be NULL); o[l]
   the output of lane l (NULL: not kept). */
static inline __attribute__((always_inline)) void attn_rows8(const int D, i64 N, const float* const* q8,
        const float* k, const float* v, const float* b8, const float* m8, float* s, float* const* o,
        float scale)
{
    v8 qt[D > 0 ? D : 1], acc[D > 0 ? D : 1];
    for (int l = 0; l < 8; l++)
        for (int c = 0; c < D; c++) qt[c][l] = q8[l][c] * scale;
    v8 vmax = (v8){0} - 3.0e38f, vsum = {0};
    for (i64 j = 0; j < N; j++) {
        v8 a = LD(b8 + 8 * j);
        if (m8) a += LD(m8 + 8 * j);
        for (int c = 0; c < D; c++) a += qt[c] * k[j * D + c];
        ST(s + 8 * j, a);
        vmax = vmax8(a, vmax);
    }
    for (i64 j = 0; j < N; j++) {
        v8 e = vexp(LD(s + 8 * j) - vmax);
        ST(s + 8 * j, e);
        vsum += e;
    }
    for (int c = 0; c < D; c++) acc[c] = (v8){0};
    for (i64 j = 0; j < N; j++) {
        v8 p = LD(s + 8 * j);
        for (int c = 0; c < D; c++) acc[c] += p * v[j * D + c];
    }
    v8 inv = 1.f / vsum;
    for (int c = 0; c < D; c++) {
        v8 r = acc[c] * inv;
        for (int l = 0; l < 8; l++)
            if (o[l]) o[l][c] = r[l];
    }
}

/* Windows [w0, w1) of a batch of maps; window w is map b = w / (nh nw), window row k = w / nw mod nh,
   column j = w mod nw. Its token (y, x) is the pixel at map row rowmap[k wh + y] and column
   (j ww + x + sw) mod wp: q of head h at qkv + b sb + row sr + col sx + c0 + h d, k C and v 2C further. The
   output of that token goes to out + b ob + orow or + col ox + oc0 + h d with orow = outrow[k wh + y], and
   is not written when orow < 0 or col >= wo. The bias: BT (heads, N/8, N, 8), the blocks of eight query
   rows transposed, plus mask pattern maskof[w mod (nh nw)] of MT (patterns, N/8, N, 8) where that is >= 0.
   work: (12 + 2 d) N floats. */
void sr_map_attention(i64 w0, i64 w1, i64 nh, i64 nw, i64 wh, i64 ww, i64 wp, i64 sw, i64 heads, i64 d,
                      float scale, const float* qkv, i64 sb, i64 sr, i64 sx, i64 c0, i64 C, const i64* rowmap,
                      float* out, i64 ob, i64 orr, i64 ox, i64 oc0, const i64* outrow, i64 wo,
                      const float* BT, const float* MT, const i64* maskof, float* work)
{
    const i64 N = wh * ww, per_map = nh * nw;
    float* s = work;
    i64* tok = (i64*)(work + 8 * N);
    i64* otok = tok + N;
    float* kl = work + 12 * N;
    float* vl = kl + N * d;
    for (i64 w = w0; w < w1; w++) {
        const i64 b = w / per_map, k = (w / nw) % nh, j = w % nw;
        for (i64 t = 0; t < N; t++) {
            const i64 y = t / ww, col = (j * ww + t % ww + sw) % wp, orow = outrow[k * wh + y];
            tok[t] = b * sb + rowmap[k * wh + y] * sr + col * sx + c0;
            otok[t] = (orow >= 0 && col < wo) ? b * ob + orow * orr + col * ox + oc0 : -1;
        }
        const i64 pattern = maskof ? maskof[w % per_map] : -1;
        for (i64 h = 0; h < heads; h++) {
            const float* base = qkv + h * d;
            for (i64 t = 0; t < N; t++)
                for (i64 c = 0; c < d; c++) {
                    kl[t * d + c] = base[tok[t] + C + c];
                    vl[t * d + c] = base[tok[t] + 2 * C + c];
                }
            const float* bt = BT + h * N * N;
            const float* mt = pattern >= 0 ? MT + pattern * N * N : 0;
            for (i64 ib = 0; ib < N / 8; ib++) {
                const float* q8[8];
                float* o[8];
                for (int l = 0; l < 8; l++) {
                    q8[l] = base + tok[ib * 8 + l];
                    o[l] = otok[ib * 8 + l] >= 0 ? out + otok[ib * 8 + l] + h * d : 0;
                }
                const float* b8 = bt + ib * N * 8;
                const float* m8 = mt ? mt + ib * N * 8 : 0;
                switch (d) {  /* DAT-light's 10, DAT / DAT-S's 30, and powers of two */
                    case 8: attn_rows8(8, N, q8, kl, vl, b8, m8, s, o, scale); break;
                    case 10: attn_rows8(10, N, q8, kl, vl, b8, m8, s, o, scale); break;
                    case 16: attn_rows8(16, N, q8, kl, vl, b8, m8, s, o, scale); break;
                    case 30: attn_rows8(30, N, q8, kl, vl, b8, m8, s, o, scale); break;
                    case 32: attn_rows8(32, N, q8, kl, vl, b8, m8, s, o, scale); break;
                    default: attn_rows8((int)d, N, q8, kl, vl, b8, m8, s, o, scale); break;
                }
            }
        }
    }
}
