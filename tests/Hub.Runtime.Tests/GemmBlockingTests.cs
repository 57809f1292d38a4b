using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The blocked GEMM across its block boundaries (MC rows, KC depth, panel width, unit columns) and the work split
/// the runtime hands to the pool, against a float64 loop, for every weight dtype.
/// </summary>
[Trait("Category", "Kernel")]
[Collection(nameof(GemmStaticsCollection))]
public unsafe class GemmBlockingTests
{
    public static IEnumerable<object[]> Shapes()
    {
        foreach (var dt in new[] { DType.F32, DType.F16, DType.BF16 })
            foreach (var (m, n, k) in new[] { (150, 37, 300), (7, 300, 520), (145, 33, 257), (128, 70, 17), (1, 1, 600), (289, 1, 9), (128, 290, 777), (20, 513, 1000) })
                foreach (int workers in new[] { 1, 2, 3 })
                    yield return new object[] { dt, m, n, k, workers };
    }

    // x [m, k] and w [n, k] in (-1, 1), bias in [0, 1), w stored as dt and read back (wq: the values the kernel sees).
    private static (float[] X, float[] Bias, byte[] W, float[] Wq) Operands(DType dt, int m, int n, int k, int seed)
    {
        var rng = new Random(seed);
        var x = new float[m * k]; var wf = new float[n * k]; var bias = new float[n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < wf.Length; i++) wf[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < n; i++) bias[i] = (float)rng.NextDouble();
        var wbytes = new byte[n * k * dt.SizeOf()];
        DTypeConvert.FromFloat32(wf, dt, wbytes);
        var wq = new float[n * k];
        DTypeConvert.ToFloat32(wbytes, dt, wq);
        return (x, bias, wbytes, wq);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Planned_units_cover_the_output_once_and_match_float64(DType dt, int m, int n, int k, int workers)
    {
        var (x, bias, wbytes, wq) = Operands(dt, m, n, k, m * 7 + n * 13 + k);
        var y = Enumerable.Repeat(float.NaN, m * n).ToArray(); // every element must be written
        int units = Gemm.PlanUnits(m, n, workers, out int rows, out int cols);
        Assert.True(units >= 1);
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
        try
        {
            fixed (float* xp = x, bp = bias, yp = y)
            fixed (byte* wp = wbytes)
                for (int u = units - 1; u >= 0; u--) Gemm.RunUnit(u, xp, m, k, wp, dt, n, bp, yp, rows, cols, scratch);
        }
        finally { NativeMemory.AlignedFree(scratch); }
        double tol = 2e-5 * Math.Max(1, Math.Sqrt(k) / 4);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias[j];
                for (int p = 0; p < k; p++) s += (double)x[i * k + p] * wq[j * k + p];
                double got = y[i * n + j];
                if (!(Math.Abs(s - got) <= tol * Math.Max(1, Math.Abs(s))))
                    Assert.Fail($"{dt} m={m} n={n} k={k} workers={workers}: y[{i},{j}] expected {s:R}, got {got:R}");
            }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Prepacked_weights_give_the_same_bits_as_per_call_packing(DType dt, int m, int n, int k, int workers)
    {
        var (x, bias, wbytes, _) = Operands(dt, m, n, k, m * 5 + n * 11 + k);
        var expected = new float[m * n];
        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
        int units = Gemm.PlanUnits(m, n, workers, out int rows, out int cols);
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
        var packed = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.PackedFloats(n, k) * 4), 64);
        try
        {
            fixed (float* xp = x, bp = bias, yp = y, ep = expected)
            fixed (byte* wp = wbytes)
            {
                Gemm.PackWeights(wp, dt, n, k, packed, scratch);
                for (int u = 0; u < units; u++) Gemm.RunUnit(u, xp, m, k, wp, dt, n, bp, ep, rows, cols, scratch);
                for (int u = units - 1; u >= 0; u--) Gemm.RunUnitPacked(u, xp, m, k, packed, n, bp, yp, rows, cols, scratch);
            }
        }
        finally { NativeMemory.AlignedFree(scratch); NativeMemory.AlignedFree(packed); }
        for (int i = 0; i < y.Length; i++)
            if (BitConverter.SingleToInt32Bits(y[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{dt} m={m} n={n} k={k} workers={workers}: y[{i / n},{i % n}] packed {y[i]:R}, per-call {expected[i]:R}");
    }

    [Fact]
    public void Packed_block_refuses_a_column_start_inside_a_panel()
    {
        var ex = Assert.Throws<ArgumentException>(() => Gemm.GemmBlockPacked(null, 0, 1, 4, null, 40, null, null, 3, 8, null));
        Assert.Contains("panel width", ex.Message);
    }

    [Fact]
    public void A_prompt_of_128_rows_is_split_into_enough_units_for_two_workers()
    {
        foreach (var (n, k) in new[] { (384, 384), (1536, 384), (2048, 5632) })
        {
            int units = Gemm.PlanUnits(128, n, 2, out int rows, out int cols);
            Assert.True(units >= 4, $"n={n}: {units} units");
            Assert.Equal(0, cols % Gemm.PanelWidth);
            Assert.True(rows >= 128);
        }
    }

    // Runs a GemmSplit the way the pool does, with `workers` simulated workers (one scratch each) claiming one chunk at
    // a time in a seeded random order, so owners, thieves and A reuse across chunks all interleave.
    private static void RunSplit(float* x, int m, int k, byte* w, DType dt, float* packed, int n, float* bias, float* y, int workers, int seed, int[]? cover)
    {
        var split = new Gemm.GemmSplit();
        split.Reset(m, n, k, workers);
        int shares = split.Shares;
        Assert.InRange(shares, 1, workers);
        var scratch = new nint[shares];
        var cursor = new int[shares];
        var packedRow = new int[shares];
        var done = new bool[shares];
        for (int s = 0; s < shares; s++) { scratch[s] = (nint)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64); packedRow[s] = -1; }
        var rng = new Random(seed);
        try
        {
            for (int left = shares; left > 0;)
            {
                int s = rng.Next(shares);
                if (done[s]) continue;
                if (!split.Claim(s, ref cursor[s], out int m0, out int m1, out int n0, out int n1)) { done[s] = true; left--; continue; }
                Assert.True(m0 < m1 && n0 < n1 && m1 - m0 <= Gemm.MC && n1 <= n && m1 <= m, $"chunk [{m0},{m1})x[{n0},{n1})");
                Assert.Equal(0, n0 % Gemm.PanelWidth);
                if (cover != null)
                    for (int i = m0; i < m1; i++)
                        for (int j = n0; j < n1; j++) cover[i * n + j]++;
                Gemm.RunChunk(x, m0, m1, k, packed != null ? null : w, dt, packed, n, bias, y, n0, n1, (float*)scratch[s], split.PackA, ref packedRow[s]);
            }
        }
        finally { foreach (var p in scratch) NativeMemory.AlignedFree((void*)p); }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Split_chunks_cover_the_output_once_and_match_float64(DType dt, int m, int n, int k, int workers)
    {
        var (x, bias, wbytes, wq) = Operands(dt, m, n, k, m * 3 + n * 17 + k);
        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
        var cover = new int[m * n];
        fixed (float* xp = x, bp = bias, yp = y)
        fixed (byte* wp = wbytes)
            RunSplit(xp, m, k, wp, dt, null, n, bp, yp, workers, m + n + k, cover);
        double tol = 2e-5 * Math.Max(1, Math.Sqrt(k) / 4);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                if (cover[i * n + j] != 1) Assert.Fail($"m={m} n={n} workers={workers}: y[{i},{j}] written {cover[i * n + j]} times");
                double s = bias[j];
                for (int p = 0; p < k; p++) s += (double)x[i * k + p] * wq[j * k + p];
                double got = y[i * n + j];
                if (!(Math.Abs(s - got) <= tol * Math.Max(1, Math.Abs(s))))
                    Assert.Fail($"{dt} m={m} n={n} k={k} workers={workers}: y[{i},{j}] expected {s:R}, got {got:R}");
            }
    }

    [Theory]
    [InlineData(128, 768, 768, 2)]
    [InlineData(128, 2048, 520, 2)]
    [InlineData(300, 1000, 700, 3)]
    [InlineData(150, 37, 300, 2)]
    public void Split_over_prepacked_weights_gives_the_bits_of_per_call_packing(int m, int n, int k, int workers)
    {
        var rng = new Random(m + n + k);
        var x = new float[m * k]; var wf = new float[n * k]; var bias = new float[n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < wf.Length; i++) wf[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < n; i++) bias[i] = (float)rng.NextDouble();
        var expected = new float[m * n];
        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
        var packed = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.PackedFloats(n, k) * 4), 64);
        try
        {
            fixed (float* xp = x, bp = bias, yp = y, ep = expected, wp = wf)
            {
                Gemm.PackWeights((byte*)wp, DType.F32, n, k, packed, scratch);
                RunSplit(xp, m, k, (byte*)wp, DType.F32, null, n, bp, ep, workers, 1, null);
                RunSplit(xp, m, k, null, DType.F32, packed, n, bp, yp, workers, 2, null);
            }
        }
        finally { NativeMemory.AlignedFree(scratch); NativeMemory.AlignedFree(packed); }
        for (int i = 0; i < y.Length; i++)
            if (BitConverter.SingleToInt32Bits(y[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"m={m} n={n} k={k}: y[{i / n},{i % n}] packed {y[i]:R}, per-call {expected[i]:R}");
    }

    [Fact]
    public void Split_gives_each_of_two_workers_half_of_a_128_row_prompt_as_one_contiguous_share()
    {
        var split = new Gemm.GemmSplit();
        foreach (int n in new[] { 384, 768, 2048, 5632 })
        {
            split.Reset(128, n, 768, 2);
            Assert.Equal(2, split.Shares);
            Assert.True(split.PackA);
            // the owner of share 0 alone claims columns [0, n/2) front to back before its cursor moves to share 1
            int cursor = 0, next = 0;
            while (next < n / 2)
            {
                Assert.True(split.Claim(0, ref cursor, out int m0, out int m1, out int n0, out int n1));
                Assert.Equal(0, cursor);
                Assert.Equal((0, 128), (m0, m1));
                Assert.Equal(next, n0);
                next = n1;
            }
            Assert.Equal(n / 2, next);
        }
    }

    [Fact]
    public void Split_refuses_a_row_range_beyond_one_row_block()
    {
        int packedRow = -1;
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.RunChunk(null, 0, Gemm.MC + 1, 4, null, DType.F32, null, 8, null, null, 0, 8, null, true, ref packedRow));
    }
}

/// <summary>
/// In-process A/B of the multi-threaded GEMM split on the prefill of an exported IR folder (HUB_BENCH=1 and
/// HUB_BENCH_PREFILL_IR only): 128-token prefills alternate the session-5 <see cref="Gemm.PlanUnits"/> units and the
/// <see cref="Gemm.GemmSplit"/> shares, HUB_BENCH_ROUNDS rounds (default 6), best tok/s of each (a neighbour process
/// can only slow a round down). HUB_BENCH_THREADS (default 2). HUB_BENCH_PREFILL_AB=prefetchw alternates the per-call W
/// prefetch of session 6 (bursts per tile) and of session 7 (in the k loop; <see cref="Gemm.PerCallWPrefetch"/>) instead,
/// HUB_BENCH_PREFILL_AB=prefetchw0 no W prefetch and session 7's. HUB_BENCH_PREFILL_AB=wrows: F32 W packed per call
/// (Gemm's panels) against W read in place (<see cref="GemmWRows"/>, session 8).
/// </summary>
[Collection(nameof(GemmStaticsCollection))]
public class GemmSplitPrefillBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Prefill_ab_of_the_gemm_split_on_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_PREFILL_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_PREFILL_IR=<ir folder>");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int rounds = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 6);
        const int T = 128;
        using var ir = Hub.IR.IrModel.Load(dir!);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 256 });
        using var req = cm.CreateInferRequest();
        var names = ir.Graph.Inputs.Select(i => i.Name).ToHashSet();
        var ids = Enumerable.Range(0, T).Select(i => (i * 13) % 1000 + 1).ToArray();
        var pos = Enumerable.Range(0, T).ToArray();
        var ones = Enumerable.Repeat(1f, T).ToArray();
        double Prefill()
        {
            req.ResetState();
            req.SetInput("input_ids", ids, 1, T);
            if (names.Contains("positions")) req.SetInput("positions", pos, 1, T);
            if (names.Contains("position_ids")) req.SetInput("position_ids", pos, 1, T);
            if (names.Contains("attention_mask")) req.SetInput("attention_mask", ones, 1, T);
            if (names.Contains("logits_to_keep")) req.SetInput("logits_to_keep", new[] { 1 }, 1);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            req.Infer();
            return T / sw.Elapsed.TotalSeconds;
        }
        var ab = Environment.GetEnvironmentVariable("HUB_BENCH_PREFILL_AB");
        bool prefetchW = ab is "prefetchw" or "prefetchw0";
        int offMode = ab == "prefetchw0" ? 0 : 1;
        bool wrows = ab == "wrows";
        int savedWRows = GemmWRows.MaxRows;
        Action<bool> set = wrows ? on => GemmWRows.MaxRows = on ? savedWRows : 0
            : prefetchW ? on => Gemm.PerCallWPrefetch = on ? 2 : offMode : on => Gemm.StealSplit = on;
        bool savedSplit = Gemm.StealSplit;
        int savedPrefetch = Gemm.PerCallWPrefetch;
        var best = new double[2];
        try
        {
            set(false); Prefill();
            set(true); Prefill();
            for (int round = 0; round < rounds; round++)
                for (int v = 0; v < 2; v++)
                {
                    bool on = (v ^ (round & 1)) == 1;
                    set(on);
                    best[on ? 1 : 0] = Math.Max(best[on ? 1 : 0], Prefill());
                }
        }
        finally { Gemm.StealSplit = savedSplit; Gemm.PerCallWPrefetch = savedPrefetch; GemmWRows.MaxRows = savedWRows; }
        if (wrows)
            output.WriteLine($"prefill {T} tokens, {threads} threads, best of {rounds}: W packed per call {best[0]:F1} tok/s, W in place {best[1]:F1} tok/s (ratio {best[1] / best[0]:F3})");
        else if (prefetchW)
            output.WriteLine($"prefill {T} tokens, {threads} threads, best of {rounds}: W prefetch {(offMode == 0 ? "none" : "bursts (session 6)")} {best[0]:F1} tok/s, in the k loop {best[1]:F1} tok/s (ratio {best[1] / best[0]:F3})");
        else
            output.WriteLine($"prefill {T} tokens, {threads} threads, best of {rounds}: PlanUnits units {best[0]:F1} tok/s, GemmSplit shares {best[1]:F1} tok/s (shares/units {best[1] / best[0]:F3})");
    }
}
