using System.Runtime.Intrinsics.X86;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The int4 decode GEMV (<see cref="QuantGemvInt4"/>, and <see cref="QuantKernels.GemvInteger"/> which dispatches to
/// it) against the scalar twin <see cref="QuantKernels.GemvIntegerReference"/> on odd shapes and tails: N 1..9 and 67,
/// K 32..2048 including K ≡ 32 mod 64, M 1..4, sym and asym, groups 32/64/128/per-channel, F16 and F32 scales, and the
/// extremes (nibbles 0 and 15 against ±127 activations: the int16 tree sums at their bound 16·15·127).
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class QuantGemvInt4Tests
{
    // Σ_c |x_c|·16·|s| per output: a bound on the magnitude of every integer term the kernel and the twin add.
    private static double Bound(QuantKernelTests.QData d, float[] x, int i, int j)
    {
        double s = 0;
        for (int c = 0; c < d.K; c++) s += Math.Abs(x[i * d.K + c]) * 16 * Math.Abs(d.Scales[j * d.Groups + c / d.GL]);
        return s;
    }

    // Runs the new kernel (when it takes the matrix), the dispatcher and the twin on rows [n0, n1) with a bias and an
    // output stride past N; checks both against the twin and that nothing outside the rows was written.
    private static void Check(QuantKernelTests.QData d, float[] x, int m, int n0, int n1, string what)
    {
        int n = d.N, k = d.K, ldy = n + 3;
        var bias = QuantKernelTests.Rand(n, n + k);
        var half = QuantKernelTests.HalfBits(d.Scales);
        var buf = new byte[QuantKernels.ActivationBytes(m, k, d.Groups) + 64];
        foreach (bool f16 in new[] { true, false })
        {
            var fast = Enumerable.Repeat(float.NaN, m * ldy).ToArray();
            var staged = Enumerable.Repeat(float.NaN, m * ldy).ToArray();
            var runs = Enumerable.Repeat(float.NaN, m * ldy).ToArray();   // eight-block 256-bit runs (the default without AVX-512)
            var disp = Enumerable.Repeat(float.NaN, m * ldy).ToArray();
            var twin = Enumerable.Repeat(float.NaN, m * ldy).ToArray();
            bool fits;
            fixed (byte* p = d.Data, z = d.Zeros, b0 = buf)
            fixed (float* s = d.Scales, xp = x, bp = bias, fp = fast, gp = staged, rp = runs, dp = disp, tp = twin)
            fixed (ushort* h = half)
            {
                var w = f16 ? new QuantMatrix(p, h, d.Sym ? null : z, n, k, d.Group, true, d.Sym)
                            : new QuantMatrix(p, s, d.Sym ? null : z, n, k, d.Group, true, d.Sym);
                byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                QuantKernels.QuantizeActivations(w, xp, m, b);
                fits = QuantGemvInt4.Fits(w);
                if (fits)
                {
                    QuantGemvInt4.Gemv(w, m, b, bp, fp, ldy, n0, n1);
                    QuantGemvInt4.Gemv(w, m, b, bp, gp, ldy, n0, n1, chunks: false);
                    QuantGemvInt4.Gemv(w, m, b, bp, rp, ldy, n0, n1, chunks: true, wide: false);
                }
                QuantKernels.GemvInteger(w, m, b, bp, dp, ldy, n0, n1);
                QuantKernels.GemvIntegerReference(w, m, b, bp, tp, ldy, n0, n1);
            }
            for (int i = 0; i < m; i++)
                for (int j = 0; j < ldy; j++)
                {
                    int at = i * ldy + j;
                    if (j < n0 || j >= n1)
                    {
                        Assert.True(float.IsNaN(disp[at]) && (!fits || (float.IsNaN(fast[at]) && float.IsNaN(staged[at]) && float.IsNaN(runs[at]))), $"{what} f16={f16}: wrote outside the rows at [{i}, {j}]");
                        continue;
                    }
                    double tol = 1e-5 * (Bound(d, x, i, j) + Math.Abs(bias[j])) + 1e-6;
                    Assert.True(Math.Abs(disp[at] - twin[at]) <= tol, $"{what} f16={f16} [{i}, {j}]: dispatch {disp[at]} twin {twin[at]}");
                    if (!fits) continue;
                    Assert.True(Math.Abs(fast[at] - twin[at]) <= tol, $"{what} f16={f16} [{i}, {j}]: int4 GEMV {fast[at]} twin {twin[at]}");
                    Assert.True(Math.Abs(staged[at] - twin[at]) <= tol, $"{what} f16={f16} [{i}, {j}]: int4 GEMV (staged Q4_0) {staged[at]} twin {twin[at]}");
                    Assert.True(Math.Abs(runs[at] - twin[at]) <= tol, $"{what} f16={f16} [{i}, {j}]: int4 GEMV (256-bit runs) {runs[at]} twin {twin[at]}");
                }
        }
    }

    [Fact]
    public void Int4_gemv_matches_twin_on_odd_shapes_groups_and_tails()
    {
        var shapes = new List<(int N, int K)>();
        foreach (int n in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 })
            foreach (int k in new[] { 32, 64, 96, 160, 384 }) shapes.Add((n, k));
        shapes.AddRange(new[] { (67, 128), (67, 96), (67, 768), (5, 2048), (9, 2016), (4, 1056), (6, 256), (7, 288), (3, 480), (10, 544) });
        // 16-block chunks (AVX-512) and their tails: K = 512·c + 0/256/…, groups of 8 and 16 blocks, per channel of 16
        shapes.AddRange(new[] { (5, 512), (3, 1024), (6, 1536), (7, 1280), (2, 2560) });
        foreach (var (n, k) in shapes)
            foreach (int group in new[] { 32, 64, 128, 256, 512, 0 })
            {
                if (group != 0 && k % group != 0) continue;
                foreach (bool sym in new[] { true, false })
                    foreach (int m in new[] { 1, 2, 3, 4 })
                    {
                        if (n * k > 30000 && m > 2) continue;   // the twin is scalar: keep the test fast
                        var d = QuantKernelTests.RandomQ(true, n, k, group, sym, n * 7 + k * 3 + group + m + (sym ? 1 : 0));
                        var x = QuantKernelTests.Rand(m * k, n + k + m);
                        Check(d, x, m, 0, n, $"N={n} K={k} g={group} sym={sym} M={m}");
                    }
            }
    }

    [Fact]
    public void Int4_gemv_row_ranges_write_only_their_rows()
    {
        foreach (var (group, sym) in new[] { (32, true), (32, false), (128, false), (0, true), (64, true) })
        {
            int n = 23, k = group == 0 ? 352 : 512, m = 3;
            var d = QuantKernelTests.RandomQ(true, n, k, group, sym, 11 + group);
            var x = QuantKernelTests.Rand(m * k, 5);
            foreach (var (n0, n1) in new[] { (0, 1), (1, 6), (5, 22), (22, 23), (3, 3), (4, 12) })
                Check(d, x, m, n0, n1, $"g={group} sym={sym} rows [{n0}, {n1})");
        }
    }

    [Fact]
    public void Int4_gemv_extremes_reach_the_int16_bound_exactly()
    {
        // nibbles all 15 (or all 0, or alternating) against activations that quantize to +127 / −127 / mixed
        foreach (int group in new[] { 32, 128, 0 })
            foreach (bool sym in new[] { true, false })
                foreach (int pattern in new[] { 0, 1, 2 })
                {
                    int n = 9, k = group == 0 ? 224 : 256, m = 4;
                    var d = QuantKernelTests.RandomQ(true, n, k, group, sym, 3);
                    for (int i = 0; i < d.Data.Length; i++)
                        d.Data[i] = pattern switch { 0 => 0xFF, 1 => 0x00, _ => (byte)((i & 1) == 0 ? 0xF0 : 0x0F) };
                    if (d.Zeros != null) for (int i = 0; i < d.Zeros.Length; i++) d.Zeros[i] = (byte)(i % 3 == 0 ? 0 : i % 3 == 1 ? 15 : 8);
                    var x = new float[m * k];
                    for (int i = 0; i < m; i++)
                        for (int c = 0; c < k; c++)
                            x[i * k + c] = i switch { 0 => 1f, 1 => -1f, 2 => (c & 1) == 0 ? 1f : -1f, _ => (c / 32 & 1) == 0 ? 0.5f : -3f };
                    Check(d, x, m, 0, n, $"extremes g={group} sym={sym} pattern={pattern}");
                }
    }

    [Fact]
    public void Int4_gemv_takes_only_int4_matrices()
    {
        var d = QuantKernelTests.RandomQ(false, 4, 64, 32, true, 1);
        fixed (byte* p = d.Data)
        fixed (float* s = d.Scales)
        {
            var w = new QuantMatrix(p, s, null, 4, 64, 32, false, true);
            Assert.False(QuantGemvInt4.Fits(w));
            Assert.False(QuantGemvInt4.Preferred(w));
            var y = new float[4];
            var a = new byte[QuantKernels.ActivationBytes(1, 64, 2) + 64];
            var ex = Assert.Throws<ArgumentException>(() => { fixed (byte* ap = a) fixed (float* yp = y) QuantGemvInt4.Gemv(w, 1, ap, null, yp, 4, 0, 4); });
            Assert.Contains("int4", ex.Message);
        }
    }
}

/// <summary>
/// Single-thread A/B of the int4 decode GEMV (<see cref="QuantGemvInt4"/>) against the session-6 loop it replaced
/// (QuantKernels' four-row pair loop), staged and eight-block-run Q4_0 variants alternating in one process, wall-time medians of HUB_BENCH_ROUNDS rounds of ~20 ms each (process CPU time ticks at 10 ms on Linux: too coarse for them) (default 9; HUB_BENCH=1 only;
/// prints, asserts nothing about time). HUB_BENCH_SHAPES="NxK,NxK" sets the shapes.
/// </summary>
public unsafe class QuantGemvInt4Bench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Int4_gemv_new_vs_old_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the int4 GEMV needs AVX2+FMA");
        var shapes = (Environment.GetEnvironmentVariable("HUB_BENCH_SHAPES") ?? "256x768,2048x768,5632x2048")
            .Split(',').Select(s => s.Split('x')).Select(p => (N: int.Parse(p[0]), K: int.Parse(p[1]))).ToArray();
        foreach (var (n, k) in shapes)
            foreach (var (group, sym, name) in new[] { (32, true, "Q4_0"), (128, false, "int4 asym g128") }.Where(c => Environment.GetEnvironmentVariable("HUB_BENCH_Q4_0_ONLY") != "1" || c.Item1 == 32))
            {
                var q = QuantKernelTests.RandomQ(true, n, k, group, sym, 3 + group);
                var half = QuantKernelTests.HalfBits(q.Scales);
                var x = Enumerable.Range(0, k).Select(i => (float)Math.Sin(i)).ToArray();
                var y = new float[n];
                var buf = new byte[QuantKernels.ActivationBytes(1, k, k / 32) + 64];
                int reps = Math.Max(3, (int)(400_000_000L / ((long)n * k))), rounds = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 9);
                var t = new[] { new List<double>(), new List<double>(), new List<double>(), new List<double>() };
                bool wideBefore = QuantGemvInt4.Wide;
                fixed (byte* d = q.Data, z = q.Zeros, b0 = buf)
                fixed (ushort* s = half)
                fixed (float* xp = x, yp = y)
                {
                    var w = new QuantMatrix(d, s, sym ? null : z, n, k, group, true, sym);
                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                    QuantKernels.QuantizeActivations(w, xp, 1, b);
                    for (int round = 0; round < rounds; round++)
                        for (int v = 0; v < 4; v++)
                        {
                            QuantGemvInt4.Wide = v == 3 && Avx512BW.IsSupported;
                            var sw = System.Diagnostics.Stopwatch.StartNew();
                            for (int r = 0; r < reps; r++)
                            {
                                if (v == 0) QuantKernels.GemvIntegerRowsAvx2(w, 1, b, null, yp, n, 0, n);
                                else QuantGemvInt4.Gemv(w, 1, b, null, yp, n, 0, n, chunks: v >= 2);
                            }
                            t[v].Add(sw.Elapsed.TotalSeconds / reps);
                        }
                }
                QuantGemvInt4.Wide = wideBefore;
                double old = t[0].Order().ElementAt(rounds / 2), st = t[1].Order().ElementAt(rounds / 2), ch = t[2].Order().ElementAt(rounds / 2), wd = t[3].Order().ElementAt(rounds / 2);
                output.WriteLine($"{name,-16} [{n}x{k}] old {(double)n * k / old / 1e9,6:F2} GMAC/s  staged {(double)n * k / st / 1e9,6:F2} ({old / st:F2}x)  chunks {(double)n * k / ch / 1e9,6:F2} GMAC/s ({old / ch:F2}x)  wide {(double)n * k / wd / 1e9,6:F2} GMAC/s (wide/chunks {ch / wd:F2}x)");
            }
    }
}
