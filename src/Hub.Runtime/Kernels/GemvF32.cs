// Decode GEMV (one input row) over F32 weights, y[j] = x·W[j] + b[j], for AVX2+FMA. Decode streams every weight once
// per token from DRAM, so the kernel is about keeping loads in flight: a pass dots x with a block of four adjacent rows
// (contiguous memory), one 64-byte line of each row per step with two accumulators per row. The AVX2 default (Rows4) uses
// no software prefetch: the hardware prefetcher follows these four streams, and prefetching the next block (the
// Rows4T0/T1/Nta variants, kept for A/B runs) measured level or slower (docs/performance.md, "f32 decode GEMV").
// With AVX-512 (Zen 5) Rows1W reads one row at a time in address order with prefetcht0 8 KiB ahead, a single
// sequential stream like a plain read; it streamed 1.17–1.37× faster than Rows4 (session 9, docs/performance.md).
// Reading a range as 4 interleaved streams (Rows4W; RowsStreams for the bench), as the read probe's faster pattern
// does, measured level with Rows1W on the small model and +4–8 % on 1b at +15 % CPU a token (session 12, 4 KiB
// page-cache pages); with the weights in 2 MiB pages (session 13) it measured +5.5–6.7 % on 1b at 4–5 % less CPU a
// token and +1.3 % on small (paired in-process A/B), so since session 13 it is the AVX-512 default.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>F32-weight decode GEMV variants (AVX2+FMA; Rows1W AVX-512F) behind <see cref="Gemm.GemvRows"/> for one input row.</summary>
public static unsafe class GemvF32
{
    /// <summary>Whether <see cref="Rows"/> can run; otherwise <see cref="Gemm.GemvRows"/> keeps its portable Dot4 loop.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Kernel variants, selectable so benchmarks and tests can compare them in one process.</summary>
    public enum Variant
    {
        /// <summary>Gemm's portable Dot4 loop (4 rows, 8 floats per step, no prefetch).</summary>
        Dot4 = 0,
        /// <summary>4 rows, 16 floats (one cache line per row) per step, next block prefetched into L1 (prefetcht0).</summary>
        Rows4T0 = 1,
        /// <summary>As <see cref="Rows4T0"/> with prefetcht1 (L2).</summary>
        Rows4T1 = 2,
        /// <summary>As <see cref="Rows4T0"/> with prefetchnta.</summary>
        Rows4Nta = 3,
        /// <summary>As <see cref="Rows4T0"/> without software prefetch.</summary>
        Rows4 = 4,
        /// <summary>8 rows, 8 floats per row per step (one x load serves 8 FMAs), next block prefetched with prefetcht0.</summary>
        Rows8T0 = 5,
        /// <summary>One row at a time in address order, 64 floats per step in 512-bit vectors, prefetcht0 8 KiB ahead
        /// (AVX-512F; <see cref="Rows4"/> where it is missing).</summary>
        Rows1W = 6,
        /// <summary>As <see cref="Rows1W"/> with the range's rows split in four contiguous quarters dotted in lockstep (four
        /// read streams as in the read probe, one x load serving all), each prefetched 1 KiB ahead; bit-identical to
        /// Rows1W. The AVX-512 default since session 13 (1b +5.5–6.7 %, small +1.3 %, docs/performance.md).</summary>
        Rows4W = 7,
    }

    /// <summary>The variant <see cref="Gemm.GemvRows"/> runs for one F32 input row: HUB_F32_GEMV=&lt;variant name&gt; picks
    /// it per process for end-to-end A/B runs (the in-process decode A/B flips it; tests pass variants to <see cref="Rows"/>).</summary>
    internal static Variant Default = Enum.TryParse<Variant>(Environment.GetEnvironmentVariable("HUB_F32_GEMV"), ignoreCase: true, out var v) && Enum.IsDefined(v) ? v
        : Avx512F.IsSupported ? Variant.Rows4W : Variant.Rows4;

    /// <summary>y[j] = x·W[j] (+ bias[j]) for j in [n0, n1) with W [n, k] F32 (AVX2+FMA only, k ≥ 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(float* x, int k, float* w, float* bias, float* y, int n0, int n1, Variant variant)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("GemvF32.Rows needs AVX2 and FMA; use Gemm.GemvRows");
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 16);
        KernelArgs.Range(n0, n1);
        KernelArgs.NotNull(x, n1 > n0);
        KernelArgs.NotNull(w, n1 > n0);
        KernelArgs.NotNull(y, n1 > n0);
        switch (variant)
        {
            case Variant.Rows4T0: Run4<PfT0>(x, k, w, bias, y, n0, n1); break;
            case Variant.Rows4T1: Run4<PfT1>(x, k, w, bias, y, n0, n1); break;
            case Variant.Rows4Nta: Run4<PfNta>(x, k, w, bias, y, n0, n1); break;
            case Variant.Rows4: Run4<PfNone>(x, k, w, bias, y, n0, n1); break;
            case Variant.Rows8T0: Run8(x, k, w, bias, y, n0, n1); break;
            case Variant.Rows1W:
                if (Avx512F.IsSupported) Run1W(x, k, w, bias, y, n0, n1);
                else Run4<PfNone>(x, k, w, bias, y, n0, n1);
                break;
            case Variant.Rows4W:
                if (Avx512F.IsSupported) Run1W4(x, k, w, bias, y, n0, n1, 256);
                else Run4<PfNone>(x, k, w, bias, y, n0, n1);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(variant), variant, "GemvF32.Rows runs the Rows* variants; Dot4 is Gemm.GemvRows");
        }
    }

    private interface IPrefetch { static abstract void Line(void* p); }
    private struct PfT0 : IPrefetch { [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Line(void* p) => Sse.Prefetch0(p); }
    private struct PfT1 : IPrefetch { [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Line(void* p) => Sse.Prefetch1(p); }
    private struct PfNta : IPrefetch { [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Line(void* p) => Sse.PrefetchNonTemporal(p); }
    private struct PfNone : IPrefetch { [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Line(void* p) { } }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run4<TPf>(float* x, int k, float* w, float* bias, float* y, int n0, int n1) where TPf : struct, IPrefetch
    {
        int j = n0;
        for (; j + 4 <= n1; j += 4)
        {
            float* w0 = w + (long)j * k;
            // The next block's 4·k floats, 4 lines per 16-float step; past this range's end the hint is dropped.
            float* pf = j + 8 <= n1 ? w0 + 4L * k : null;
            Block4<TPf>(x, k, w0, w0 + k, w0 + 2L * k, w0 + 3L * k, pf, y + j, bias != null ? bias + j : null, 4);
        }
        if (j < n1)
        {
            // 1-3 leftover rows: the missing rows repeat the first one (results not stored).
            int nb = n1 - j;
            float* w0 = w + (long)j * k;
            Block4<PfNone>(x, k, w0, nb > 1 ? w0 + k : w0, nb > 2 ? w0 + 2L * k : w0, w0, null, y + j, bias != null ? bias + j : null, nb);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Block4<TPf>(float* x, int k, float* w0, float* w1, float* w2, float* w3, float* pf, float* y, float* bias, int nb) where TPf : struct, IPrefetch
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int p = 0;
        if (pf != null)
            for (; p <= k - 16; p += 16)
            {
                float* q = pf + 4 * p;
                TPf.Line(q); TPf.Line(q + 16); TPf.Line(q + 32); TPf.Line(q + 48);
                var x0 = Avx.LoadVector256(x + p); var x1 = Avx.LoadVector256(x + p + 8);
                a0 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w0 + p), a0); b0 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w0 + p + 8), b0);
                a1 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w1 + p), a1); b1 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w1 + p + 8), b1);
                a2 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w2 + p), a2); b2 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w2 + p + 8), b2);
                a3 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w3 + p), a3); b3 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w3 + p + 8), b3);
            }
        else
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx.LoadVector256(x + p); var x1 = Avx.LoadVector256(x + p + 8);
                a0 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w0 + p), a0); b0 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w0 + p + 8), b0);
                a1 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w1 + p), a1); b1 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w1 + p + 8), b1);
                a2 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w2 + p), a2); b2 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w2 + p + 8), b2);
                a3 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w3 + p), a3); b3 = Fma.MultiplyAdd(x1, Avx.LoadVector256(w3 + p + 8), b3);
            }
        if (p <= k - 8)
        {
            var x0 = Avx.LoadVector256(x + p);
            a0 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w0 + p), a0);
            a1 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w1 + p), a1);
            a2 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w2 + p), a2);
            a3 = Fma.MultiplyAdd(x0, Avx.LoadVector256(w3 + p), a3);
            p += 8;
        }
        float s0 = Vector256.Sum(a0 + b0), s1 = Vector256.Sum(a1 + b1), s2 = Vector256.Sum(a2 + b2), s3 = Vector256.Sum(a3 + b3);
        for (; p < k; p++)
        {
            float xv = x[p];
            s0 += xv * w0[p]; s1 += xv * w1[p]; s2 += xv * w2[p]; s3 += xv * w3[p];
        }
        Store(y, bias, nb, s0, s1, s2, s3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, float* bias, int nb, float s0, float s1, float s2, float s3)
    {
        if (bias != null) { s0 += bias[0]; if (nb > 1) s1 += bias[1]; if (nb > 2) s2 += bias[2]; if (nb > 3) s3 += bias[3]; }
        y[0] = s0;
        if (nb > 1) y[1] = s1;
        if (nb > 2) y[2] = s2;
        if (nb > 3) y[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run8(float* x, int k, float* w, float* bias, float* y, int n0, int n1)
    {
        int j = n0;
        for (; j + 8 <= n1; j += 8)
        {
            float* w0 = w + (long)j * k;
            float* pf = j + 16 <= n1 ? w0 + 8L * k : null;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> a4 = default, a5 = default, a6 = default, a7 = default;
            float* w4 = w0 + 4L * k;
            long k1 = k, k2 = 2L * k, k3 = 3L * k;
            int p = 0;
            for (; p <= k - 8; p += 8)
            {
                if (pf != null)
                {
                    float* q = pf + 8 * p;
                    Sse.Prefetch0(q); Sse.Prefetch0(q + 16); Sse.Prefetch0(q + 32); Sse.Prefetch0(q + 48);
                }
                var xv = Avx.LoadVector256(x + p);
                a0 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w0 + p), a0);
                a1 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w0 + k1 + p), a1);
                a2 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w0 + k2 + p), a2);
                a3 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w0 + k3 + p), a3);
                a4 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w4 + p), a4);
                a5 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w4 + k1 + p), a5);
                a6 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w4 + k2 + p), a6);
                a7 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w4 + k3 + p), a7);
            }
            float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
            float s4 = Vector256.Sum(a4), s5 = Vector256.Sum(a5), s6 = Vector256.Sum(a6), s7 = Vector256.Sum(a7);
            for (; p < k; p++)
            {
                float xv = x[p];
                s0 += xv * w0[p]; s1 += xv * w0[k1 + p]; s2 += xv * w0[k2 + p]; s3 += xv * w0[k3 + p];
                s4 += xv * w4[p]; s5 += xv * w4[k1 + p]; s6 += xv * w4[k2 + p]; s7 += xv * w4[k3 + p];
            }
            float* b = bias != null ? bias + j : null;
            Store(y + j, b, 4, s0, s1, s2, s3);
            Store(y + j + 4, b != null ? b + 4 : null, 4, s4, s5, s6, s7);
        }
        if (j < n1) Run4<PfNone>(x, k, w, bias, y, j, n1);
    }

    // Rows1W's prefetch distance in floats (8 KiB): the rows of a range are adjacent, so the hint runs on into the next
    // rows as one sequential stream (past the range's end it may touch another worker's rows: a prefetch never faults).
    private const int WideDistance = 2048;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run1W(float* x, int k, float* w, float* bias, float* y, int n0, int n1) => Run1WAt(x, k, w, bias, y, n0, n1, WideDistance);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run1WAt(float* x, int k, float* w, float* bias, float* y, int n0, int n1, int pf)
    {
        for (int j = n0; j < n1; j++)
        {
            float* r = w + (long)j * k;
            Vector512<float> a = default, b = default, c = default, d = default;
            int p = 0;
            for (; p <= k - 64; p += 64)
            {
                float* q = r + p + pf;
                Sse.Prefetch0(q); Sse.Prefetch0(q + 16); Sse.Prefetch0(q + 32); Sse.Prefetch0(q + 48);
                a = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p), Avx512F.LoadVector512(r + p), a);
                b = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p + 16), Avx512F.LoadVector512(r + p + 16), b);
                c = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p + 32), Avx512F.LoadVector512(r + p + 32), c);
                d = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p + 48), Avx512F.LoadVector512(r + p + 48), d);
            }
            for (; p <= k - 16; p += 16) a = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p), Avx512F.LoadVector512(r + p), a);
            float s = Vector512.Sum((a + b) + (c + d));
            for (; p < k; p++) s += x[p] * r[p];
            y[j] = bias != null ? s + bias[j] : s;
        }
    }

    /// <summary>
    /// Bench/test entry of the multi-stream one-row loop: the range's rows split in <paramref name="streams"/> (1, 2 or 4)
    /// contiguous sub-ranges whose rows are dotted in lockstep (one 256-byte step of each per iteration, one x load
    /// serving all), each stream prefetched <paramref name="prefetchBytes"/> ahead with prefetcht0; leftover rows run
    /// one at a time. Every row's summation order is Rows1W's, so results are bit-identical to it. AVX-512F only.
    /// </summary>
    internal static void RowsStreams(float* x, int k, float* w, float* bias, float* y, int n0, int n1, int streams, int prefetchBytes)
    {
        if (!Avx512F.IsSupported) throw new PlatformNotSupportedException("GemvF32.RowsStreams needs AVX-512F");
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 16);
        ArgumentOutOfRangeException.ThrowIfNegative(prefetchBytes);
        KernelArgs.Range(n0, n1);
        int pf = prefetchBytes / 4;
        switch (streams)
        {
            case 1: Run1WAt(x, k, w, bias, y, n0, n1, pf); break;
            case 2: Run1W2(x, k, w, bias, y, n0, n1, pf); break;
            case 4: Run1W4(x, k, w, bias, y, n0, n1, pf); break;
            default: throw new ArgumentOutOfRangeException(nameof(streams), streams, "1, 2 or 4 streams");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run1W2(float* x, int k, float* w, float* bias, float* y, int n0, int n1, int pf)
    {
        int len = (n1 - n0) / 2;
        for (int i = 0; i < len; i++)
        {
            int j0 = n0 + i, j1 = j0 + len;
            float* r0 = w + (long)j0 * k, r1 = w + (long)j1 * k;
            Vector512<float> a0 = default, b0 = default, c0 = default, d0 = default;
            Vector512<float> a1 = default, b1 = default, c1 = default, d1 = default;
            int p = 0;
            for (; p <= k - 64; p += 64)
            {
                float* q0 = r0 + p + pf, q1 = r1 + p + pf;
                Sse.Prefetch0(q0); Sse.Prefetch0(q0 + 16); Sse.Prefetch0(q0 + 32); Sse.Prefetch0(q0 + 48);
                Sse.Prefetch0(q1); Sse.Prefetch0(q1 + 16); Sse.Prefetch0(q1 + 32); Sse.Prefetch0(q1 + 48);
                var x0 = Avx512F.LoadVector512(x + p); var x1 = Avx512F.LoadVector512(x + p + 16);
                var x2 = Avx512F.LoadVector512(x + p + 32); var x3 = Avx512F.LoadVector512(x + p + 48);
                a0 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r0 + p), a0);
                b0 = Avx512F.FusedMultiplyAdd(x1, Avx512F.LoadVector512(r0 + p + 16), b0);
                c0 = Avx512F.FusedMultiplyAdd(x2, Avx512F.LoadVector512(r0 + p + 32), c0);
                d0 = Avx512F.FusedMultiplyAdd(x3, Avx512F.LoadVector512(r0 + p + 48), d0);
                a1 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r1 + p), a1);
                b1 = Avx512F.FusedMultiplyAdd(x1, Avx512F.LoadVector512(r1 + p + 16), b1);
                c1 = Avx512F.FusedMultiplyAdd(x2, Avx512F.LoadVector512(r1 + p + 32), c1);
                d1 = Avx512F.FusedMultiplyAdd(x3, Avx512F.LoadVector512(r1 + p + 48), d1);
            }
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx512F.LoadVector512(x + p);
                a0 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r0 + p), a0);
                a1 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r1 + p), a1);
            }
            float s0 = Vector512.Sum((a0 + b0) + (c0 + d0)), s1 = Vector512.Sum((a1 + b1) + (c1 + d1));
            for (; p < k; p++) { float xv = x[p]; s0 += xv * r0[p]; s1 += xv * r1[p]; }
            y[j0] = bias != null ? s0 + bias[j0] : s0;
            y[j1] = bias != null ? s1 + bias[j1] : s1;
        }
        if (n0 + 2 * len < n1) Run1WAt(x, k, w, bias, y, n0 + 2 * len, n1, pf);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run1W4(float* x, int k, float* w, float* bias, float* y, int n0, int n1, int pf)
    {
        int len = (n1 - n0) / 4;
        for (int i = 0; i < len; i++)
        {
            int j0 = n0 + i, j1 = j0 + len, j2 = j1 + len, j3 = j2 + len;
            float* r0 = w + (long)j0 * k, r1 = w + (long)j1 * k, r2 = w + (long)j2 * k, r3 = w + (long)j3 * k;
            Vector512<float> a0 = default, b0 = default, c0 = default, d0 = default;
            Vector512<float> a1 = default, b1 = default, c1 = default, d1 = default;
            Vector512<float> a2 = default, b2 = default, c2 = default, d2 = default;
            Vector512<float> a3 = default, b3 = default, c3 = default, d3 = default;
            int p = 0;
            for (; p <= k - 64; p += 64)
            {
                float* q0 = r0 + p + pf, q1 = r1 + p + pf, q2 = r2 + p + pf, q3 = r3 + p + pf;
                Sse.Prefetch0(q0); Sse.Prefetch0(q0 + 16); Sse.Prefetch0(q0 + 32); Sse.Prefetch0(q0 + 48);
                Sse.Prefetch0(q1); Sse.Prefetch0(q1 + 16); Sse.Prefetch0(q1 + 32); Sse.Prefetch0(q1 + 48);
                Sse.Prefetch0(q2); Sse.Prefetch0(q2 + 16); Sse.Prefetch0(q2 + 32); Sse.Prefetch0(q2 + 48);
                Sse.Prefetch0(q3); Sse.Prefetch0(q3 + 16); Sse.Prefetch0(q3 + 32); Sse.Prefetch0(q3 + 48);
                var x0 = Avx512F.LoadVector512(x + p); var x1 = Avx512F.LoadVector512(x + p + 16);
                var x2 = Avx512F.LoadVector512(x + p + 32); var x3 = Avx512F.LoadVector512(x + p + 48);
                a0 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r0 + p), a0);
                b0 = Avx512F.FusedMultiplyAdd(x1, Avx512F.LoadVector512(r0 + p + 16), b0);
                c0 = Avx512F.FusedMultiplyAdd(x2, Avx512F.LoadVector512(r0 + p + 32), c0);
                d0 = Avx512F.FusedMultiplyAdd(x3, Avx512F.LoadVector512(r0 + p + 48), d0);
                a1 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r1 + p), a1);
                b1 = Avx512F.FusedMultiplyAdd(x1, Avx512F.LoadVector512(r1 + p + 16), b1);
                c1 = Avx512F.FusedMultiplyAdd(x2, Avx512F.LoadVector512(r1 + p + 32), c1);
                d1 = Avx512F.FusedMultiplyAdd(x3, Avx512F.LoadVector512(r1 + p + 48), d1);
                a2 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r2 + p), a2);
                b2 = Avx512F.FusedMultiplyAdd(x1, Avx512F.LoadVector512(r2 + p + 16), b2);
                c2 = Avx512F.FusedMultiplyAdd(x2, Avx512F.LoadVector512(r2 + p + 32), c2);
                d2 = Avx512F.FusedMultiplyAdd(x3, Avx512F.LoadVector512(r2 + p + 48), d2);
                a3 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r3 + p), a3);
                b3 = Avx512F.FusedMultiplyAdd(x1, Avx512F.LoadVector512(r3 + p + 16), b3);
                c3 = Avx512F.FusedMultiplyAdd(x2, Avx512F.LoadVector512(r3 + p + 32), c3);
                d3 = Avx512F.FusedMultiplyAdd(x3, Avx512F.LoadVector512(r3 + p + 48), d3);
            }
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx512F.LoadVector512(x + p);
                a0 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r0 + p), a0);
                a1 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r1 + p), a1);
                a2 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r2 + p), a2);
                a3 = Avx512F.FusedMultiplyAdd(x0, Avx512F.LoadVector512(r3 + p), a3);
            }
            float s0 = Vector512.Sum((a0 + b0) + (c0 + d0)), s1 = Vector512.Sum((a1 + b1) + (c1 + d1));
            float s2 = Vector512.Sum((a2 + b2) + (c2 + d2)), s3 = Vector512.Sum((a3 + b3) + (c3 + d3));
            for (; p < k; p++) { float xv = x[p]; s0 += xv * r0[p]; s1 += xv * r1[p]; s2 += xv * r2[p]; s3 += xv * r3[p]; }
            y[j0] = bias != null ? s0 + bias[j0] : s0;
            y[j1] = bias != null ? s1 + bias[j1] : s1;
            y[j2] = bias != null ? s2 + bias[j2] : s2;
            y[j3] = bias != null ? s3 + bias[j3] : s3;
        }
        if (n0 + 4 * len < n1) Run1WAt(x, k, w, bias, y, n0 + 4 * len, n1, pf);
    }
}
