using Hub.Runtime.Execution;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The broadcast-layout int8 × int8 prefill GEMM (<see cref="QuantGemmInt8"/>) against the integer GEMV's scalar twin on
/// the same quantized activations and against a float64 loop, on odd shapes, split ranges and extreme values; then
/// through the executor.
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class QuantGemmInt8Tests
{
    private static double Exact(QuantKernelTests.QData d, float[] x, int i, int j, out double abs)
    {
        double s = 0; abs = 0;
        for (int c = 0; c < d.K; c++) { double v = x[i * d.K + c] * d.Value(j, c); s += v; abs += Math.Abs(v); }
        return s;
    }

    // Runs the GEMM over rows [0, m) and outputs [0, n) in up to four pieces (cut at ms and ns), the twin over all.
    private static void Check(QuantKernelTests.QData d, float[] x, int m, float[]? bias, int ms, int ns, string what)
    {
        int n = d.N, k = d.K;
        var fast = new float[m * n]; var twin = new float[m * n];
        var buf = new byte[QuantKernels.ActivationBytes(m, k, d.Groups) + 64];
        var scratch = new float[QuantGemmInt8.ScratchFloats(k)];
        QuantKernelTests.WithMatrix(d, w =>
        {
            Assert.True(QuantGemmInt8.Fits(w));
            Array.Fill(fast, float.NaN);
            fixed (byte* b0 = buf)
            fixed (float* xp = x, bp = bias, fp = fast, tp = twin, sp = scratch)
            {
                byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                QuantKernels.QuantizeActivations(w, xp, m, b);
                QuantKernels.GemvIntegerReference(w, m, b, bp, tp, n, 0, n);
                // every path this machine has: the AVX2 nibble planes, then (AvxVnni) the VNNI plane, bit-identical
                foreach (bool vnni in System.Runtime.Intrinsics.X86.AvxVnni.IsSupported ? new[] { false, true } : new[] { false })
                {
                    var prev = vnni ? (float[])fast.Clone() : null;
                    Array.Fill(fast, float.NaN);
                    QuantGemmInt8.GemmOnPath(w, m, b, bp, fp, n, 0, ms, 0, ns, sp, vnni);
                    QuantGemmInt8.GemmOnPath(w, m, b, bp, fp, n, ms, m, 0, ns, sp, vnni);
                    QuantGemmInt8.GemmOnPath(w, m, b, bp, fp, n, 0, ms, ns, n, sp, vnni);
                    QuantGemmInt8.GemmOnPath(w, m, b, bp, fp, n, ms, m, ns, n, sp, vnni);
                    if (prev != null) Assert.True(prev.AsSpan().SequenceEqual(fast), $"{what} [{n},{k}] m={m}: the VNNI path differs from the nibble planes");
                }
            }
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    int at = i * n + j;
                    double exp = Exact(d, x, i, j, out double abs) + (bias?[j] ?? 0);
                    double scale = abs + Math.Abs(bias?[j] ?? 0);
                    Assert.True(Math.Abs(fast[at] - twin[at]) <= 1e-5 * scale + 1e-6, $"{what} [{n},{k}] m={m} ({i},{j}): fast {fast[at]} twin {twin[at]}");
                    Assert.True(Math.Abs(fast[at] - exp) <= scale / 100 + 1e-6, $"{what} [{n},{k}] m={m} ({i},{j}): {fast[at]} vs {exp}");
                }
        });
    }

    [SkippableFact]
    public void Broadcast_gemm_matches_integer_twin_and_float64_on_odd_shapes_and_split_ranges()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        // n: below, at and past one and two interleaved groups of 8 and the 16-row pass; K = 32·odd and more than one
        // 8-block pass; m: below the 4-row tile, not a multiple of it, and past the 64-row accumulator chunk
        foreach (int n in new[] { 1, 7, 8, 9, 17, 37 })
            foreach (int k in new[] { 32, 96, 288, 480 })
                foreach (int m in new[] { 1, 6, 13, 70 })
                {
                    var d = QuantKernelTests.RandomQ(false, n, k, 32, true, n * 131 + k + m * 7);
                    var x = QuantKernelTests.Rand(m * k, n + k * 3 + m);
                    var bias = (n + m) % 2 == 0 ? QuantKernelTests.Rand(n, 11) : null;
                    // rows cut mid-tile at 5 (and at 66 inside the second chunk), outputs cut at 5 (mid-group) or 12
                    Check(d, x, m, bias, Math.Min(m, m > 64 ? 66 : 5), Math.Min(n, n > 16 ? 12 : 5), bias is null ? "no bias" : "bias");
                }
    }

    [SkippableFact]
    public void Broadcast_gemm_matches_integer_twin_on_the_shapes_of_the_retired_dot_layout_gemm()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        // the sweep QuantKernels.GemmInt8 (3 × 2 dot tiles, removed) was tested on: K = 32·odd and an even block count,
        // rows and outputs cut at 4 and 5, bias
        foreach (int n in new[] { 1, 2, 7, 19, 37 })
            foreach (int k in new[] { 32, 96, 224, 480, 256 })
                foreach (int m in new[] { 1, 5, 7, 13 })
                {
                    var d = QuantKernelTests.RandomQ(false, n, k, 32, true, n * 131 + k + m * 7);
                    Check(d, QuantKernelTests.Rand(m * k, n + k * 3 + m), m, QuantKernelTests.Rand(n, 11), Math.Min(4, m), Math.Min(n, 5), "Q8_0");
                }
    }

    [SkippableFact]
    public void Broadcast_gemm_matches_integer_twin_on_asymmetric_and_long_group_int8()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        // asymmetric per channel (the default export), groups of 32/64/128, and symmetric groups longer than one block;
        // n: not a multiple of the 8-row interleave or the 16-row unit; K up to 2048 (more than one 16-block pass)
        int seed = 0;
        foreach (var (sym, group) in new[] { (false, 0), (false, 32), (false, 64), (false, 128), (true, 64), (true, 0) })
            foreach (int n in new[] { 1, 9, 23, 67 })
                foreach (int k in new[] { 32, 128, 384, 2048 })
                {
                    if (group != 0 && k % group != 0) continue;
                    foreach (int m in new[] { 1, 5, 13, 70 })
                    {
                        if (k == 2048 && n * m > 300) continue;   // keep the float64 check fast
                        seed++;
                        var d = QuantKernelTests.RandomQ(false, n, k, group, sym, seed * 31 + n + k);
                        var x = QuantKernelTests.Rand(m * k, seed);
                        var bias = seed % 2 == 0 ? QuantKernelTests.Rand(n, seed + 1) : null;
                        Check(d, x, m, bias, Math.Min(m, m > 64 ? 66 : 3), Math.Min(n, n > 16 ? 12 : 5), $"sym={sym} group={group}");
                    }
                }
    }

    [SkippableFact]
    public void Broadcast_gemm_is_exact_at_asymmetric_extremes_of_values_and_zero_points()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        // q at 0, 255 and between, zero points 0, 255 and 128, activations ±127 per block: both planes at 15 against
        // ±127 reach the int16 bound the kernel relies on (8 quads · 2 · 15 · 127 = 30480)
        int m = 6, k = 256;
        byte[] qs = { 0, 255, 128, 127, 1, 254 };
        byte[] zs = { 0, 255, 128 };
        foreach (int group in new[] { 0, 32, 128 })
        {
            int n = 19;
            var d = QuantKernelTests.RandomQ(false, n, k, group, false, 91 + group);
            for (int j = 0; j < n; j++)
            {
                for (int c = 0; c < k; c++) d.Data[j * k + c] = j < qs.Length ? qs[j] : qs[(j + c / 32) % qs.Length];
                for (int g = 0; g < d.Groups; g++) d.Zeros![j * d.Groups + g] = zs[(j + g) % zs.Length];
            }
            var x = new float[m * k];
            for (int i = 0; i < m; i++)
                for (int c = 0; c < k; c++)
                    x[i * k + c] = i switch { 0 => 1f, 1 => -1f, 2 => ((c / 4) % 2 == 0 ? 2f : -2f), 3 => 0f, _ => (c % 3 == 0 ? -3f : 3f) };
            Check(d, x, m, QuantKernelTests.Rand(n, 5), 4, 9, $"asym extremes group {group}");
        }
    }

    [SkippableFact]
    public void Broadcast_gemm_is_exact_at_the_extremes_of_both_nibble_planes()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        // Every activation ±127 (one magnitude per block) and weights at −128, −127, −1, 0, 1, 127: the int16 plane sums
        // reach 8 quads · 2 · 15 · 127 = 30480, the largest the kernel relies on without saturating.
        int n = 12, k = 256, m = 5;
        var d = QuantKernelTests.RandomQ(false, n, k, 32, true, 77);
        sbyte[] vals = { -128, -127, -1, 0, 1, 127 };
        for (int j = 0; j < n; j++)
            for (int c = 0; c < k; c++)
                d.Data[j * k + c] = (byte)(j < vals.Length ? vals[j] : vals[(j + c / 32) % vals.Length]);
        var x = new float[m * k];
        for (int i = 0; i < m; i++)
            for (int c = 0; c < k; c++)
                x[i * k + c] = i switch { 0 => 1f, 1 => -1f, 2 => ((c / 4) % 2 == 0 ? 2f : -2f), _ => (c % 3 == 0 ? -3f : 3f) };
        Check(d, x, m, null, 2, 5, "extremes");
    }

    [Fact]
    public void Broadcast_gemm_takes_int8_with_groups_of_whole_blocks_and_checks_ranges()
    {
        bool avx = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        foreach (var (sym, signedGroup, k, fits) in new[] { (true, 32, 128, true), (true, 64, 128, true), (true, 0, 128, true), (false, 32, 128, true),
            (false, 0, 128, true), (false, 16, 128, false), (false, 0, 112, false), (true, 0, 112, false), (true, -32, 128, false) })
        {
            bool int4 = signedGroup < 0;   // a negative group: int4 (QuantGemmInt4's)
            int group = Math.Abs(signedGroup);
            var d = QuantKernelTests.RandomQ(int4, 3, k, group, sym, 3);
            fixed (byte* p = d.Data) fixed (float* s = d.Scales) fixed (byte* z = d.Zeros)
            {
                var w = new QuantMatrix(p, s, sym ? null : z, 3, k, group, int4, sym);
                Assert.Equal(fits && avx, QuantGemmInt8.Fits(w));
                if (!QuantGemmInt8.Fits(w))
                {
                    Assert.Throws<NotSupportedException>(() => QuantGemmInt8.Gemm(w, 1, null, null, null, 3, 0, 1, 0, 3, null));
                    continue;
                }
                var act = new byte[QuantKernels.ActivationBytes(2, 128, w.Groups) + 64];
                var y = new float[2 * 3];
                var scratch = new float[QuantGemmInt8.ScratchFloats(128)];
                fixed (byte* a = act) fixed (float* yp = y, sp = scratch)
                {
                    byte* ap = a; float* yq = yp, sq = sp;
                    Assert.Equal("m1", Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemmInt8.Gemm(w, 2, ap, null, yq, 3, 0, 3, 0, 3, sq)).ParamName);
                    Assert.Equal("n1", Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemmInt8.Gemm(w, 2, ap, null, yq, 4, 0, 2, 0, 4, sq)).ParamName);
                    Assert.Equal("ldy", Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemmInt8.Gemm(w, 2, ap, null, yq, 2, 0, 2, 0, 3, sq)).ParamName);
                    Assert.Equal("act", Assert.Throws<ArgumentNullException>(() => QuantGemmInt8.Gemm(w, 2, null, null, yq, 3, 0, 2, 0, 3, sq)).ParamName);
                    Assert.Equal("y", Assert.Throws<ArgumentNullException>(() => QuantGemmInt8.Gemm(w, 2, ap, null, null, 3, 0, 2, 0, 3, sq)).ParamName);
                    Assert.Equal("scratch", Assert.Throws<ArgumentNullException>(() => QuantGemmInt8.Gemm(w, 2, ap, null, yq, 3, 0, 2, 0, 3, null)).ParamName);
                    QuantGemmInt8.Gemm(w, 2, null, null, null, 3, 0, 0, 0, 0, null);   // an empty range addresses nothing
                }
            }
        }
    }

    [Theory]
    [InlineData(2, true)]
    [InlineData(1, false)]
    public void Executor_runs_int8_q8_0_prefill_through_the_broadcast_gemm(int threads, bool f16Scales)
    {
        bool before = QuantLinearExec.UseInt8Broadcast;
        QuantLinearExec.UseInt8Broadcast = true;
        try { new QuantKernelTests().Executor_runs_quantized_linear_and_embedding_in_gemv_and_prefill(false, true, 32, threads, f16Scales); }
        finally { QuantLinearExec.UseInt8Broadcast = before; }
    }

    [Theory]
    [InlineData(false, 0, 2, true, true)]     // the default int8 export: asymmetric per channel
    [InlineData(false, 0, 1, false, true)]
    [InlineData(false, 128, 2, true, true)]
    [InlineData(true, 64, 1, true, true)]
    [InlineData(false, 0, 2, true, false)]    // the panel path (HUB_QUANT_GEMM8=panel) on the same shapes
    [InlineData(false, 128, 1, false, false)]
    public void Executor_runs_asymmetric_and_long_group_int8_prefill_through_the_broadcast_gemm_or_panels(bool sym, int group, int threads, bool f16Scales, bool broadcast)
    {
        bool before = QuantLinearExec.UseInt8Broadcast;
        QuantLinearExec.UseInt8Broadcast = broadcast;
        try { new QuantKernelTests().Executor_runs_quantized_linear_and_embedding_in_gemv_and_prefill(false, sym, group, threads, f16Scales); }
        finally { QuantLinearExec.UseInt8Broadcast = before; }
    }
}

/// <summary>
/// int8 prefill A/B (HUB_BENCH=1 only; prints, asserts nothing about time): the broadcast GEMM (nibble planes, and the
/// VNNI plane where AvxVnni is supported) and dequantized 64-row panels + the f32 GEMM, alternating within each of 7 rounds, medians. HUB_BENCH_M/N/K set the shape (default 128 × 768 × 2048); HUB_BENCH_THREADS=2 splits the
/// output rows over two threads (wall time) instead of one thread (CPU time).
/// </summary>
public unsafe class QuantGemmInt8Bench(Xunit.Abstractions.ITestOutputHelper output)
{

    [SkippableFact]
    public void Int8_broadcast_prefill_gemm_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "the integer GEMMs need AVX2+FMA");
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128), n = BenchFeed.EnvInt("HUB_BENCH_N", 768), k = BenchFeed.EnvInt("HUB_BENCH_K", 2048), threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 1);
        int reps = BenchFeed.EnvInt("HUB_BENCH_REPS", 3);   // more for small (cache-resident) shapes
        // HUB_BENCH_GROUP (default 32; 0 = per channel) and HUB_BENCH_SYM=0 (asymmetric: the default int8 export) pick
        // the format
        int group = BenchFeed.EnvInt("HUB_BENCH_GROUP", 32);
        bool sym = BenchFeed.EnvInt("HUB_BENCH_SYM", 1) != 0;
        var q = QuantKernelTests.RandomQ(false, n, k, group, sym, 5);
        var half = QuantKernelTests.HalfBits(q.Scales);
        var x = Enumerable.Range(0, m * k).Select(i => (float)Math.Sin(i * 0.37)).ToArray();
        var y = new float[m * n];
        long perThread = Gemm.ScratchFloats(k) + Math.Max(64L * k, QuantGemmInt8.ScratchFloats(k)) + 64;
        var scratch = new float[perThread * threads];
        var buf = new byte[QuantKernels.ActivationBytes(m, k, q.Groups) + 64];
        string[] names = { "broadcast int8 GEMM", "dequantize + f32 GEMM", "broadcast VNNI GEMM" };
        var times = names.Select(_ => new List<double>()).ToArray();
        fixed (byte* d = q.Data, b0 = buf, z = q.Zeros)
        fixed (ushort* s = half)
        fixed (float* xp = x, yp = y, sp0 = scratch)
        {
            var w = new QuantMatrix(d, s, sym ? null : z, n, k, group, false, sym);
            byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
            byte* bb = b; float* xq = xp, yq = yp, spAll = sp0;
            // One variant over output rows [lo, hi) with the given scratch, in the executor's unit sizes.
            void RunPart(int c, int lo, int hi, float* sp)
            {
                if (c == 1)
                {
                    float* panel = (float*)(((nint)(sp + Gemm.ScratchFloats(k)) + 63) & ~(nint)63);
                    for (int n0 = lo; n0 < hi; n0 += 64)
                    {
                        int n1 = Math.Min(hi, n0 + 64);
                        QuantKernels.DequantizeRows(w, n0, n1, panel);
                        Gemm.GemmBlock(xq, 0, m, k, (byte*)(panel - (long)n0 * k), DType.F32, n, null, yq, n0, n1, sp);
                    }
                    return;
                }
                for (int n0 = lo; n0 < hi; n0 += 16)
                {
                    int n1 = Math.Min(hi, n0 + 16);
                    QuantGemmInt8.GemmOnPath(w, m, bb, null, yq, n, 0, m, n0, n1, sp, c == 2);
                }
            }
            var proc = System.Diagnostics.Process.GetCurrentProcess();
            for (int round = 0; round < 7; round++)
                for (int c = 0; c < names.Length; c++)
                {
                    if (c == 2 && !System.Runtime.Intrinsics.X86.AvxVnni.IsSupported) continue;
                    proc.Refresh();
                    var cpu0 = proc.TotalProcessorTime;
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    for (int rep = 0; rep < reps; rep++)
                    {
                        if (c != 1) QuantKernels.QuantizeActivations(w, xq, m, bb);
                        if (threads == 1) RunPart(c, 0, n, spAll);
                        else
                        {
                            // split at a multiple of 64 rows (a unit boundary for every variant)
                            int half2 = Math.Min(n, (n / 2 + 63) / 64 * 64);
                            int cc = c;
                            var t = new Thread(() => RunPart(cc, half2, n, spAll + perThread));
                            t.Start();
                            RunPart(c, 0, half2, spAll);
                            t.Join();
                        }
                    }
                    proc.Refresh();
                    times[c].Add(threads == 1 ? (proc.TotalProcessorTime - cpu0).TotalSeconds / reps : sw.Elapsed.TotalSeconds / reps);
                }
        }
        for (int c = 0; c < names.Length; c++)
        {
            if (times[c].Count == 0) continue;
            double t = times[c].Order().ElementAt(times[c].Count / 2);
            output.WriteLine($"{names[c],-24} [{m}x{n}x{k}] {(sym ? "sym" : "asym")} g{group} {threads} thr {(threads == 1 ? "cpu" : "wall")} {t * 1e3,8:F2} ms  {2.0 * m * n * k / t / 1e9,6:F1} GFLOP/s");
        }
    }
}

/// <summary>
/// In-process prefill A/B of an exported int8 IR folder in HUB_BENCH_IR (HUB_BENCH=1 only; prints, asserts nothing
/// about time): the broadcast GEMM against dequantized panels (HUB_QUANT_GEMM8=panel), as the Q4_0 one in
/// <see cref="QuantGemmInt4PrefillBench"/> (same HUB_BENCH_M / HUB_BENCH_AB_ROUNDS / HUB_BENCH_THREADS).
/// </summary>
public class QuantGemmInt8PrefillBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Int8_prefill_ab_of_an_ir_folder() =>
        output.WriteLine(QuantGemmInt4PrefillBench.Ab("panel", "broadcast", () => QuantLinearExec.UseInt8Broadcast, v => QuantLinearExec.UseInt8Broadcast = v));

    /// <summary>The same A/B between the broadcast GEMM's AVX2 nibble planes and its AVX-VNNI plane (needs AvxVnni).</summary>
    [SkippableFact]
    public void Int8_prefill_vnni_ab_of_an_ir_folder()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, "needs AVX-VNNI");
        output.WriteLine(QuantGemmInt4PrefillBench.Ab("avx2", "vnni", () => QuantGemmInt8.UseVnni, v => QuantGemmInt8.UseVnni = v));
    }
}
