// F16 GEMV for one input row (decode) with the half → float widening cut to two integer ops per 8 halves, and no
// float conversion. A 256-bit load of 16 halves, read as 8 int32 lanes, holds element 2i in the low and element 2i+1 in
// the high 16 bits of lane i. (lane >>a 3) & 0x8FFFE000 is the float bit pattern of the odd element times 2^-112: the
// sign stays in bit 31, exponent and mantissa land in place and the neighbour's bits are masked off; subnormal halves
// become float denormals with the same value × 2^-112, exactly. The even element goes through vpmaddwd with the word
// pair (2^13, 0): lane = (sign-extended even half) << 13, the same bit layout after the same mask. One shift and one
// integer multiply per 16 halves instead of two shifts (or a second, misaligned load): the shift and the multiply issue
// on different Zen 3 pipes, and the loop runs 1.3–1.6× faster from L2 (K = 768/2048, single thread). The missing 2^112
// is folded into x: PrepareX copies x once per call, scaled by 2^a and de-interleaved into the lanes' even/odd order,
// and the dot sums are rescaled by 2^(112-a) in double. With a = 112 (any x below 2^15) every product equals the exact
// kernel's. Eight rows share each x load. For short rows (K ≤ 1024, i.e. ≤ 2 KiB per row) each 8-row pass prefetches
// the next pass's 8 rows, 256 bytes per step: the hardware stream prefetcher does not follow eight 1.5 KiB streams that
// each end after 24 lines, and DRAM-cold throughput at K = 768 rises ~1.3×; from K = 1536 up the prefetches measured
// slower than none and are not issued.
// On AVX-512 (Zen 5) the same widening runs on 32 halves per 512-bit load, one row at a time in address order with
// prefetcht0 8 KiB ahead: the eight-row passes (with or without next-pass prefetch) streamed 1b's 4–11 KiB rows at
// ~0.75 of a plain read, the sequential row walk at the read's speed (HalfGemvStreamBench; docs/performance.md,
// session 9). x stays in L1 either way, so sharing its loads across rows buys nothing here. .NET 10 exposes no
// vcvtph2ps, so the integer widening stays.
// Exponent-31 halves (inf/NaN) would come out finite here, so callers run Rows only on weights known to be finite and use
// RowsExact (which reports what it saw) otherwise; LinearExec learns that per work unit on the first decode step.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>Decode GEMV for F16 weights: two integer ops per 8 halves instead of a full conversion, for finite weights.</summary>
public static unsafe class HalfGemv
{
    /// <summary>Whether <see cref="Rows"/> can run (AVX2 + FMA); otherwise callers use <see cref="Gemm.GemvRows"/>.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Whether the public <see cref="PrepareX"/> and <see cref="Rows"/> take the 512-bit loop, and whether
    /// <see cref="Gemm.GemvRows"/> routes one-row BF16 to <see cref="Bf16Rows"/> (default: where it runs).
    /// LinearExec reads it once per run and passes it to <see cref="PrepareXFor"/> and <see cref="RowsFor"/>, so the
    /// in-process A/B benchmark can flip it between decode steps.
    /// </summary>
    internal static bool Wide = WideSupported;

    /// <summary>Whether the 512-bit loop can run here (AVX2 + FMA + AVX-512F/BW).</summary>
    internal static bool WideSupported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>Floats <see cref="PrepareX"/> writes for reduction depth <paramref name="k"/>.</summary>
    public static int PreparedFloats(int k) => k & ~15;

    /// <summary>
    /// Writes x scaled by a power of two and de-interleaved to <paramref name="xp"/> (for the 512-bit loop per 32 values,
    /// 16 even then 16 odd, the last k &amp; 31 ≥ 16 block as below; for the AVX2 loop per 16 values, 8 even then 8 odd);
    /// returns the factor the dot sums must be multiplied by, or 0 when x holds inf/NaN (then use the exact path).
    /// </summary>
    public static double PrepareX(float* x, int k, float* xp) => PrepareXFor(x, k, xp, Wide);

    /// <summary><see cref="PrepareX(float*, int, float*)"/> for the 512-bit (<paramref name="wide"/>) or the AVX2 loop's layout.</summary>
    internal static double PrepareXFor(float* x, int k, float* xp, bool wide)
    {
        if (x == null) throw new ArgumentNullException(nameof(x), "HalfGemv.PrepareX: x is null");
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "HalfGemv.PrepareX needs k ≥ 1");
        if (xp == null && k >= 16) throw new ArgumentNullException(nameof(xp), $"HalfGemv.PrepareX needs {PreparedFloats(k)} floats at xp for k = {k}");
        float mx = MathF.Abs(TensorPrimitives.MaxMagnitude(new ReadOnlySpan<float>(x, k)));
        if (!float.IsFinite(mx)) return 0;
        // 2^a with a ≤ 112 keeps |x·2^a| < 2^127; a = 112 makes every product bit-identical to the exact kernel's.
        int a = mx == 0 ? 112 : Math.Min(112, 126 - Math.ILogB(mx));
        float s = MathF.ScaleB(1f, a);
        int k16 = k & ~15, p = 0;
        if (wide && WideSupported)
        {
            // 32-value blocks for the 512-bit loop: 16 even values, then 16 odd ones.
            var sv = Vector512.Create(s);
            var ie = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var io = ie + Vector512<int>.One;
            for (; p + 32 <= k16; p += 32)
            {
                var v0 = Avx512F.LoadVector512(x + p); var v1 = Avx512F.LoadVector512(x + p + 16);
                Avx512F.Store(xp + p, Avx512F.PermuteVar16x32x2(v0, ie, v1) * sv);
                Avx512F.Store(xp + p + 16, Avx512F.PermuteVar16x32x2(v0, io, v1) * sv);
            }
        }
        if (Avx2.IsSupported)
        {
            var sv = Vector256.Create(s);
            for (; p < k16; p += 16)
            {
                var v0 = Avx.LoadVector256(x + p); var v1 = Avx.LoadVector256(x + p + 8);
                // shuffle picks x0 x2 x8 x10 | x4 x6 x12 x14; the 64-bit permute puts them in order.
                var even = Avx2.Permute4x64(Avx.Shuffle(v0, v1, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
                var odd = Avx2.Permute4x64(Avx.Shuffle(v0, v1, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
                Avx.Store(xp + p, even * sv);
                Avx.Store(xp + p + 8, odd * sv);
            }
        }
        for (; p < k16; p += 16)
            for (int i = 0; i < 8; i++)
            {
                xp[p + i] = x[p + 2 * i] * s;
                xp[p + 8 + i] = x[p + 2 * i + 1] * s;
            }
        return Math.ScaleB(1.0, 112 - a);
    }

    /// <summary>
    /// y[j] = x·w[j] + b[j] for rows j in [<paramref name="n0"/>, <paramref name="n1"/>) of the finite F16 matrix
    /// <paramref name="w"/> [n, k]; <paramref name="xp"/>/<paramref name="scale"/> come from <see cref="PrepareX"/>.
    /// Inf/NaN weights give wrong (finite) results: check them first (<see cref="RowsExact"/> reports them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(float* xp, double scale, float* x, int k, ushort* w, float* bias, float* y, int n0, int n1) =>
        RowsFor(xp, scale, x, k, w, bias, y, n0, n1, Wide);

    /// <summary>
    /// <see cref="Rows(float*, double, float*, int, ushort*, float*, float*, int, int)"/> on the 512-bit loop when
    /// <paramref name="wide"/> (and supported) or the AVX2 one; <paramref name="xp"/> must come from <see cref="PrepareXFor"/> with the same flag.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RowsFor(float* xp, double scale, float* x, int k, ushort* w, float* bias, float* y, int n0, int n1, bool wide)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("HalfGemv.Rows needs AVX2 and FMA; use Gemm.GemvRows");
        CheckRows(x, k, w, y, n0, n1, "Rows");
        if (xp == null && k >= 16) throw new ArgumentNullException(nameof(xp), "HalfGemv.Rows needs the prepared x of PrepareX for k ≥ 16");
        if (!(scale > 0) || double.IsInfinity(scale))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "HalfGemv.Rows needs PrepareX's positive scale; 0 means x holds inf/NaN: use RowsExact");
        if (wide && WideSupported) { RowsWide(xp, scale, x, k, w, bias, y, n0, n1); return; }
        bool prefetch = k <= PrefetchMaxK;
        float* s = stackalloc float[8];
        int j = n0;
        for (; j + 8 <= n1; j += 8)
        {
            ushort* wj = w + (long)j * k;
            // Prefetch the next pass only when it stays inside this call's range (another worker may own the rows after).
            if (prefetch && j + 16 <= n1) Sums8<NextPass>(xp, k, wj, s);
            else Sums8<NoPrefetch>(xp, k, wj, s);
            for (int q = 0; q < 8; q++) y[j + q] = Finish(s[q], scale, x, k, wj + (long)q * k, bias == null ? null : bias + j + q);
        }
        for (; j < n1; j++) Dot1(xp, scale, x, k, w + (long)j * k, bias == null ? null : bias + j, y + j);
    }

    /// <summary>
    /// The exact path for rows [<paramref name="n0"/>, <paramref name="n1"/>) (inf/NaN weights propagate as in PyTorch);
    /// returns whether every weight it read was finite, so a caller can switch those rows to <see cref="Rows"/>.
    /// </summary>
    public static bool RowsExact(float* x, int k, ushort* w, float* bias, float* y, int n0, int n1)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("HalfGemv.RowsExact needs AVX2 and FMA; use Gemm.GemvRows");
        CheckRows(x, k, w, y, n0, n1, "RowsExact");
        if (k < 16) throw new ArgumentOutOfRangeException(nameof(k), k, "HalfGemv.RowsExact needs k ≥ 16; use Gemm.GemvRows for shorter rows");
        Span<float> r = stackalloc float[4];
        bool finite = true;
        for (int j = n0; j < n1; j += 4)
        {
            int nb = Math.Min(4, n1 - j);
            ushort* h = w + (long)j * k;
            ushort* h1 = nb > 1 ? h + k : h, h2 = nb > 2 ? h + 2L * k : h, h3 = nb > 3 ? h + 3L * k : h;
            finite &= !Gemm.Dot4Half(x, h, h1, h2, h3, k, false, r);
            for (int q = 0; q < nb; q++) y[j + q] = r[q] + (bias != null ? bias[j + q] : 0f);
        }
        if (finite)
        {
            // Dot4Half flags only its vector part; the k % 16 tail values are checked here.
            for (int j = n0; j < n1 && finite; j++)
                for (int p = k & ~15; p < k; p++)
                    if ((w[(long)j * k + p] & 0x7C00) == 0x7C00) { finite = false; break; }
        }
        return finite;
    }

    // Rows at most this deep get the next pass prefetched (see the header: measured faster at K = 768 and 1024 only).
    private const int PrefetchMaxK = 1024;

    // Cheap argument checks shared by Rows and RowsExact (bias may be null; n, the matrix height, is not known here).
    private static void CheckRows(float* x, int k, ushort* w, float* y, int n0, int n1, string method)
    {
        if (x == null) throw new ArgumentNullException(nameof(x), $"HalfGemv.{method}: x is null");
        if (w == null) throw new ArgumentNullException(nameof(w), $"HalfGemv.{method}: w is null");
        if (y == null) throw new ArgumentNullException(nameof(y), $"HalfGemv.{method}: y is null");
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, $"HalfGemv.{method} needs k ≥ 1");
        if (n0 < 0) throw new ArgumentOutOfRangeException(nameof(n0), n0, $"HalfGemv.{method}: first row must be ≥ 0");
        if (n1 < n0) throw new ArgumentOutOfRangeException(nameof(n1), n1, $"HalfGemv.{method}: end row must be ≥ the first row {n0}");
    }

    // Float bit pattern × 2^-112 of the half in the high 16 bits of each int32 lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> High(Vector256<int> v, Vector256<int> mask) => Avx2.And(Avx2.ShiftRightArithmetic(v, 3), mask).AsSingle();

    // The same for the half in the low 16 bits: vpmaddwd with words (2^13, 0) gives the sign-extended half << 13.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Low(Vector256<int> v, Vector256<short> lowBy8192, Vector256<int> mask) =>
        Avx2.And(Avx2.MultiplyAddAdjacent(v.AsInt16(), lowBy8192), mask).AsSingle();

    // Exact dot product of the k % 16 tail values, added after the rescaled vector sum.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(float* x, int k, ushort* w)
    {
        float t = 0;
        for (int p = k & ~15; p < k; p++) t += x[p] * (float)BitConverter.UInt16BitsToHalf(w[p]);
        return t;
    }

    // One row's 16 halves at h into its accumulator: odd elements against xo, then even ones against xe (two chained FMAs).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(ushort* h, Vector256<float> xe, Vector256<float> xo, Vector256<short> lo, Vector256<int> m, Vector256<float> acc)
    {
        var v = Avx.LoadVector256((int*)h);
        return Fma.MultiplyAdd(xe, Low(v, lo, m), Fma.MultiplyAdd(xo, High(v, m), acc));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish(float sum, double scale, float* x, int k, ushort* w, float* bias) =>
        (float)(sum * scale) + Tail(x, k, w) + (bias != null ? *bias : 0f);

    // Compile-time switch for Sums8: the JIT specializes the method per struct, so the loop without prefetches carries no
    // test and no extra pointer (eight row pointers, x, the index and the bound already fill most general registers).
    private interface IPrefetch { static abstract bool On { get; } }
    private struct NoPrefetch : IPrefetch { public static bool On => false; }
    private struct NextPass : IPrefetch { public static bool On => true; }

    // The vector dot sums (× 2^-112·2^-a, tails excluded) of 8 rows starting at w, written to s[0..8). Eight rows share
    // each x load; one accumulator per row (two chained FMAs per 16 values). With NextPass the 8 rows after these are
    // prefetched 256 bytes per step, so they are in L1 when the next pass starts. Only the sums leave the loop: keeping
    // x, y, bias and scale live across it made the JIT reload row pointers from the stack on every step.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Sums8<TPrefetch>(float* xp, int k, ushort* w, float* s) where TPrefetch : struct, IPrefetch
    {
        var m = Vector256.Create(unchecked((int)0x8FFFE000));
        var lo = Vector256.Create(0x2000).AsInt16();
        int k16 = k & ~15;
        ushort* w0 = w, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k, w4 = w3 + k, w5 = w4 + k, w6 = w5 + k, w7 = w6 + k;
        byte* next = (byte*)(w7 + k);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int p = 0; p < k16; p += 16)
        {
            if (TPrefetch.On)
            {
                // 16 values × 8 rows = 256 bytes per step: the whole next pass over k16 / 16 steps.
                byte* q = next + 16L * p;
                Sse.Prefetch0(q); Sse.Prefetch0(q + 64); Sse.Prefetch0(q + 128); Sse.Prefetch0(q + 192);
            }
            var xe = Avx.LoadVector256(xp + p); var xo = Avx.LoadVector256(xp + p + 8);
            a0 = Step(w0 + p, xe, xo, lo, m, a0); a1 = Step(w1 + p, xe, xo, lo, m, a1);
            a2 = Step(w2 + p, xe, xo, lo, m, a2); a3 = Step(w3 + p, xe, xo, lo, m, a3);
            a4 = Step(w4 + p, xe, xo, lo, m, a4); a5 = Step(w5 + p, xe, xo, lo, m, a5);
            a6 = Step(w6 + p, xe, xo, lo, m, a6); a7 = Step(w7 + p, xe, xo, lo, m, a7);
        }
        s[0] = Vector256.Sum(a0); s[1] = Vector256.Sum(a1); s[2] = Vector256.Sum(a2); s[3] = Vector256.Sum(a3);
        s[4] = Vector256.Sum(a4); s[5] = Vector256.Sum(a5); s[6] = Vector256.Sum(a6); s[7] = Vector256.Sum(a7);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1(float* xp, double scale, float* x, int k, ushort* w, float* bias, float* y)
    {
        var m = Vector256.Create(unchecked((int)0x8FFFE000));
        var lo = Vector256.Create(0x2000).AsInt16();
        int k16 = k & ~15;
        Vector256<float> a = default, b = default;
        for (int p = 0; p < k16; p += 16)
        {
            var v = Avx.LoadVector256((int*)(w + p));
            a = Fma.MultiplyAdd(Avx.LoadVector256(xp + p + 8), High(v, m), a);
            b = Fma.MultiplyAdd(Avx.LoadVector256(xp + p), Low(v, lo, m), b);
        }
        float s = Vector256.Sum(a + b);
        *y = Finish(s, scale, x, k, w, bias);
    }

    // ---- 512-bit path (AVX-512F/BW): one row at a time, 64 halves per step, x laid out by PrepareX per 32 values. ----

    // Each row's halves are read in address order with prefetcht0 this many halves (8 KiB) ahead. Rows of a call's
    // range are adjacent, so this is one sequential stream, like a plain read, and the prefetch runs on into the next
    // rows (past the range's end it touches rows another worker may own, or nothing: a prefetch never faults).
    private const int WideDistance = 4096;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsWide(float* xp, double scale, float* x, int k, ushort* w, float* bias, float* y, int n0, int n1)
    {
        for (int j = n0; j < n1; j++) DotWide(xp, scale, x, k, w + (long)j * k, bias == null ? null : bias + j, y + j);
    }

    // One row's 32 halves at h into acc: odd elements against xo, then even ones against xe (two chained FMAs).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> StepWide(ushort* h, Vector512<float> xe, Vector512<float> xo, Vector512<short> lo, Vector512<int> m, Vector512<float> acc)
    {
        var v = Avx512F.LoadVector512((int*)h);
        var high = Avx512F.And(Avx512F.ShiftRightArithmetic(v, 3), m).AsSingle();
        var low = Avx512F.And(Avx512BW.MultiplyAddAdjacent(v.AsInt16(), lo), m).AsSingle();
        return Avx512F.FusedMultiplyAdd(xe, low, Avx512F.FusedMultiplyAdd(xo, high, acc));
    }

    // y = the row's dot product: 64-value steps (two accumulators, two prefetched lines), then one 32-value step, then
    // the 16-value block PrepareX laid out for the 256-bit Step, then the exact k % 16 tail.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotWide(float* xp, double scale, float* x, int k, ushort* w, float* bias, float* y)
    {
        var m = Vector512.Create(unchecked((int)0x8FFFE000));
        var lo = Vector512.Create(0x2000).AsInt16();
        int k64 = k & ~63, k32 = k & ~31, k16 = k & ~15;
        Vector512<float> a = default, b = default;
        int p = 0;
        for (; p < k64; p += 64)
        {
            Sse.Prefetch0(w + p + WideDistance); Sse.Prefetch0(w + p + WideDistance + 32);
            a = StepWide(w + p, Avx512F.LoadVector512(xp + p), Avx512F.LoadVector512(xp + p + 16), lo, m, a);
            b = StepWide(w + p + 32, Avx512F.LoadVector512(xp + p + 32), Avx512F.LoadVector512(xp + p + 48), lo, m, b);
        }
        if (p < k32) a = StepWide(w + p, Avx512F.LoadVector512(xp + p), Avx512F.LoadVector512(xp + p + 16), lo, m, a);
        float s = Vector512.Sum(a + b);
        if (k16 > k32)
            s += Vector256.Sum(Step(w + k32, Avx.LoadVector256(xp + k32), Avx.LoadVector256(xp + k32 + 8),
                Vector256.Create(0x2000).AsInt16(), Vector256.Create(unchecked((int)0x8FFFE000)), default));
        *y = Finish(s, scale, x, k, w, bias);
    }

    /// <summary>
    /// y[j] = x·w[j] + b[j] for rows [<paramref name="n0"/>, <paramref name="n1"/>) of the BF16 matrix <paramref name="w"/>
    /// [n, k], for one input row (AVX-512F): bf16 widening is exact (a 16-bit shift, inf/NaN included), so this runs on
    /// every weight; rows in address order with prefetcht0 8 KiB ahead, as the F16 loop. Gemm.GemvRows calls it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Bf16Rows(float* x, int k, ushort* w, float* bias, float* y, int n0, int n1)
    {
        if (!WideSupported) throw new PlatformNotSupportedException("HalfGemv.Bf16Rows needs AVX-512F/BW; use Gemm.GemvRows");
        CheckRows(x, k, w, y, n0, n1, "Bf16Rows");
        int k32 = k & ~31, k16 = k & ~15;
        for (int j = n0; j < n1; j++)
        {
            ushort* r = w + (long)j * k;
            Vector512<float> a = default, b = default;
            int p = 0;
            for (; p < k32; p += 32)
            {
                Sse.Prefetch0(r + p + WideDistance);
                a = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p), Bf16(r + p), a);
                b = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p + 16), Bf16(r + p + 16), b);
            }
            if (p < k16) { a = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + p), Bf16(r + p), a); p += 16; }
            float s = Vector512.Sum(a + b);
            for (; p < k; p++) s += x[p] * BitConverter.Int32BitsToSingle(r[p] << 16);
            y[j] = bias != null ? s + bias[j] : s;
        }
    }

    // 16 bf16 values at h widened to floats: zero-extend to 32 bits, shift into the high half.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Bf16(ushort* h) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Avx.LoadVector256(h)), 16).AsSingle();
}
