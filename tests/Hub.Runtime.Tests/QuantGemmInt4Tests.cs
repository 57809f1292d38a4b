using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The Q4_0 broadcast-layout prefill GEMM (QuantGemmInt4) against the integer GEMV's scalar twin on the same quantized
/// activations and a float64 dequantize-then-matmul loop, on odd shapes, row ranges and tails, F16 and F32 scales.
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class QuantGemmInt4Tests
{
    private static bool Avx2Fma => System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;

    private static byte* Align(byte* p, int to) => (byte*)(((nint)p + to - 1) & ~(nint)(to - 1));

    [SkippableFact]
    public void Broadcast_gemm_matches_integer_twin_and_float64_on_odd_shapes_and_ranges() =>
        CheckShapes(true, 32, new[] { 1, 7, 8, 13, 29, 37 }, new[] { 64, 192, 320 });   // n in [9, 29): three 8-row groups; 64·odd: an odd number of block pairs

    [SkippableFact]
    public void Broadcast_gemm_matches_integer_twin_on_asymmetric_group_128_the_default_int4_export() =>
        CheckShapes(false, 128, new[] { 1, 9, 23, 67 }, new[] { 128, 384, 2048 });

    [SkippableFact]
    public void Broadcast_gemm_matches_integer_twin_on_other_int4_groupings()
    {
        // asymmetric g32/g64 and per channel, symmetric g64 and per channel (offset 8 as a preset zero-point term)
        foreach (var (sym, group) in new[] { (false, 32), (false, 64), (false, 0), (true, 64), (true, 0) })
            CheckShapes(sym, group, new[] { 5, 17 }, new[] { 64, 192, 256 });
    }

    [SkippableFact]
    public void Broadcast_gemm_is_exact_at_asymmetric_extremes_of_nibbles_and_zero_points()
    {
        Skip.IfNot(Avx2Fma, "needs AVX2+FMA");
        // nibbles 0 and 15 against zero points 0, 15 and 8, activations ±127 per block: the int16 bound 8·2·15·127
        int n = 19, k = 256, m = 6;
        foreach (int group in new[] { 128, 0 })
        {
            var d = QuantKernelTests.RandomQ(true, n, k, group, false, 17 + group);
            byte[] packed = { 0x00, 0xFF, 0xF0, 0x0F, 0x88, 0x7E };
            byte[] zs = { 0, 15, 8 };
            for (int j = 0; j < n; j++)
            {
                for (int c = 0; c < k / 2; c++) d.Data[j * k / 2 + c] = j < packed.Length ? packed[j] : packed[(j + c / 16) % packed.Length];
                for (int g = 0; g < d.Groups; g++) d.Zeros![j * d.Groups + g] = zs[(j + g) % zs.Length];
            }
            var x = new float[m * k];
            for (int i = 0; i < m; i++)
                for (int c = 0; c < k; c++)
                    x[i * k + c] = i switch { 0 => 1f, 1 => -1f, 2 => ((c / 4) % 2 == 0 ? 2f : -2f), 3 => 0f, _ => (c % 3 == 0 ? -3f : 3f) };
            CheckOne(d, x, m, QuantKernelTests.Rand(n, 3), $"extremes group {group}");
        }
    }

    private static void CheckShapes(bool sym, int group, int[] ns, int[] ks)
    {
        Skip.IfNot(Avx2Fma, "needs AVX2+FMA");
        foreach (int n in ns)
            foreach (int k in ks)
                foreach (int m in new[] { 1, 5, 6, 13 })
                    foreach (bool withBias in new[] { true, false })
                    {
                        if (group != 0 && k % group != 0) continue;
                        var d = QuantKernelTests.RandomQ(true, n, k, group, sym, n * 131 + k + m * 7 + (withBias ? 1 : 0));
                        CheckOne(d, QuantKernelTests.Rand(m * k, n + k * 3 + m), m, withBias ? QuantKernelTests.Rand(n, 11) : null, $"sym={sym} group={group}");
                    }
    }

    // The GEMM in three split ranges against the integer twin (same activations) and a float64 loop, on 16-row AVX-512
    // panels (when this machine has AVX-512BW) and on the 8-row AVX2 ones.
    private static void CheckOne(QuantKernelTests.QData d, float[] x, int m, float[]? bias, string what)
    {
        if (System.Runtime.Intrinsics.X86.Avx512BW.IsSupported) CheckOne(d, x, m, bias, $"{what} wide", true);
        CheckOne(d, x, m, bias, what, false);
    }

    private static void CheckOne(QuantKernelTests.QData d, float[] x, int m, float[]? bias, string what, bool wide)
    {
        int n = d.N, k = d.K;
        bool withBias = bias != null;
        var fast = new float[m * n]; var twin = new float[m * n];
        var buf = new byte[QuantGemmInt4.ActivationBytes(m, k) + 64];
        var panel = new byte[QuantGemmInt4.PanelBytes(n, k, wide) + 64];
        QuantKernelTests.WithMatrix(d, w =>
        {
            Array.Fill(fast, float.NaN);
            fixed (byte* b0 = buf, p0 = panel)
            fixed (float* xp = x, bp = bias, fp = fast, tp = twin)
            {
                byte* b = Align(b0, 64), pp = Align(p0, 32);
                // row ranges in reverse order as workers may quantize them
                QuantGemmInt4.QuantizeActivations(w, xp, m, b, m / 2, m);
                QuantGemmInt4.QuantizeActivations(w, xp, m, b, 0, m / 2);
                // split rows and outputs as the executor may: [0, ms) × [0, ns), [ms, m) × [0, ns), [0, m) × [ns, n)
                int ms = Math.Min(3, m), ns = Math.Min(n, 9);
                QuantGemmInt4.Gemm(w, m, b, bp, fp, n, 0, ms, 0, ns, pp, wide);
                QuantGemmInt4.Gemm(w, m, b, bp, fp, n, ms, m, 0, ns, pp, wide);
                QuantGemmInt4.Gemm(w, m, b, bp, fp, n, 0, m, ns, n, pp, wide);
                QuantKernels.GemvIntegerReference(w, m, b, bp, tp, n, 0, n);
            }
        });
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                int at = i * n + j;
                double exp = bias?[j] ?? 0, scale = Math.Abs(bias?[j] ?? 0);
                for (int c = 0; c < k; c++) { double t = x[i * k + c] * d.Value(j, c); exp += t; scale += Math.Abs(t); }
                Assert.True(Math.Abs(fast[at] - twin[at]) <= 1e-5 * scale + 1e-6, $"{what} [{n},{k}] m={m} bias={withBias} ({i},{j}): fast {fast[at]} twin {twin[at]}");
                Assert.True(Math.Abs(fast[at] - exp) <= scale / 100 + 1e-6, $"{what} [{n},{k}] m={m} bias={withBias} ({i},{j}): {fast[at]} vs {exp}");
            }
    }

    [SkippableFact]
    public void Broadcast_gemm_writes_only_its_output_range()
    {
        Skip.IfNot(Avx2Fma, "needs AVX2+FMA");
        const int m = 7, n = 21, k = 128, ldy = 25;
        var d = QuantKernelTests.RandomQ(true, n, k, 32, true, 3);
        var x = QuantKernelTests.Rand(m * k, 4);
        var y = new float[m * ldy];
        var buf = new byte[QuantGemmInt4.ActivationBytes(m, k) + 64];
        var panel = new byte[QuantGemmInt4.PanelBytes(n, k) + 64];
        QuantKernelTests.WithMatrix(d, w =>
        {
            Array.Fill(y, -7f);
            fixed (byte* b0 = buf, p0 = panel)
            fixed (float* xp = x, yp = y)
            {
                byte* b = Align(b0, 64);
                QuantGemmInt4.QuantizeActivations(w, xp, m, b, 0, m);
                QuantGemmInt4.Gemm(w, m, b, null, yp, ldy, 2, 5, 3, 14, Align(p0, 32));
            }
            for (int i = 0; i < m; i++)
                for (int j = 0; j < ldy; j++)
                {
                    bool inside = i >= 2 && i < 5 && j >= 3 && j < 14;
                    Assert.True(inside ? y[i * ldy + j] != -7f : y[i * ldy + j] == -7f, $"({i},{j}) inside={inside}: {y[i * ldy + j]}");
                }
        });
    }

    [SkippableFact]
    public void Fits_int4_with_k_a_multiple_of_64_and_bad_arguments_throw_naming_them()
    {
        Skip.IfNot(Avx2Fma, "needs AVX2+FMA");
        foreach (var (sym, group, k, fits) in new[] { (true, 32, 128, true), (true, 64, 128, true), (false, 32, 128, true), (false, 128, 256, true),
            (false, 0, 192, true), (true, 32, 96, false), (false, 32, 96, false), (true, 0, 64, true) })
        {
            var d = QuantKernelTests.RandomQ(true, 3, k, group, sym, 1);
            fixed (byte* p = d.Data) fixed (float* s = d.Scales) fixed (byte* z = d.Zeros)
                Assert.Equal(fits, QuantGemmInt4.Fits(new QuantMatrix(p, s, sym ? null : z, 3, k, group, true, sym)));
        }
        var q = QuantKernelTests.RandomQ(true, 3, 128, 32, true, 2);
        var act = new byte[QuantGemmInt4.ActivationBytes(2, 128) + 64];
        var panel = new byte[QuantGemmInt4.PanelBytes(3, 128) + 64];
        var y = new float[2 * 3];
        QuantKernelTests.WithMatrix(q, w =>
        {
            fixed (byte* a0 = act, p0 = panel)
            fixed (float* yp = y)
            {
                byte* a = Align(a0, 64), pp = Align(p0, 32);
                float* yq = yp;
                Assert.Equal("m1", Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemmInt4.GemmPacked(w, 2, a, pp, null, yq, 3, 0, 3, 0, 3)).ParamName);
                Assert.Equal("n1", Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemmInt4.Gemm(w, 2, a, null, yq, 4, 0, 2, 0, 4, pp)).ParamName);
                Assert.Equal("ldy", Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemmInt4.GemmPacked(w, 2, a, pp, null, yq, 2, 0, 2, 0, 3)).ParamName);
                Assert.Equal("y", Assert.Throws<ArgumentNullException>(() => QuantGemmInt4.GemmPacked(w, 2, a, pp, null, null, 3, 0, 2, 0, 3)).ParamName);
                Assert.Equal("panel", Assert.Throws<ArgumentException>(() => QuantGemmInt4.Repack(w, 0, 3, pp + 4)).ParamName);
            }
        });
    }
}

/// <summary>
/// Q4_0 prefill A/B (HUB_BENCH=1 only; prints, asserts nothing about time): the broadcast-layout GEMM's AVX2 tiles
/// (4×8 on 8-row panel groups) against its AVX-512BW ones (4×16 on 16-row groups), alternating, medians of 7 rounds
/// of CPU time on 1 thread and of wall time on HUB_BENCH_THREADS (default 2) threads claiming units dynamically as the
/// executor does. HUB_BENCH_M/N/K set the shape (default 128 × 768 × 2048).
/// </summary>
public unsafe class QuantGemmInt4Bench(Xunit.Abstractions.ITestOutputHelper output)
{

    [SkippableFact]
    public void Q4_0_broadcast_gemm_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "the integer GEMMs need AVX2+FMA");
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128), n = BenchFeed.EnvInt("HUB_BENCH_N", 768), k = BenchFeed.EnvInt("HUB_BENCH_K", 2048), threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int unitRows = BenchFeed.EnvInt("HUB_BENCH_UNIT", QuantKernels.GemmRows);
        // HUB_BENCH_GROUP (default 32; 0 = per channel) and HUB_BENCH_SYM=0 (asymmetric; the default int4 export is g128)
        int group = BenchFeed.EnvInt("HUB_BENCH_GROUP", 32);
        bool sym = BenchFeed.EnvInt("HUB_BENCH_SYM", 1) != 0;
        var q = QuantKernelTests.RandomQ(true, n, k, group, sym, 5);
        var half = QuantKernelTests.HalfBits(q.Scales);   // F16 scales, as exported
        var x = Enumerable.Range(0, m * k).Select(i => (float)Math.Sin(i * 0.37)).ToArray();
        var y = new float[m * n];
        var panels = new byte[threads * (PanelMax(unitRows, k) + 64)];
        var newBuf = new byte[QuantGemmInt4.ActivationBytes(m, k) + 64];
        bool wideBefore = QuantGemmInt4.Wide;
        string[] names = { "broadcast 4x8 avx2", "broadcast 4x16 avx512" };
        fixed (byte* d = q.Data, nb0 = newBuf, pn0 = panels, z = q.Zeros)
        fixed (ushort* s = half)
        fixed (float* xp = x, yp = y)
        {
            var w = new QuantMatrix(d, s, sym ? null : z, n, k, group, true, sym);
            byte* nb = (byte*)(((nint)nb0 + 63) & ~(nint)63);
            nint nbA = (nint)nb, pnA = (nint)pn0, xA = (nint)xp, yA = (nint)yp;
            long panelStride = PanelMax(unitRows, k) + 64;
            int units = (n + unitRows - 1) / unitRows;
            void Unit(int c, int u, int t)
            {
                QuantGemmInt4.Wide = c == 1 && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported;
                int n0 = u * unitRows, n1 = Math.Min(n, n0 + unitRows);
                byte* p = (byte*)((pnA + t * (nint)panelStride + 31) & ~(nint)31);
                QuantGemmInt4.Gemm(w, m, (byte*)nbA, null, (float*)yA, n, 0, m, n0, n1, p);
            }
            void Quantize(int c, int r0, int r1) => QuantGemmInt4.QuantizeActivations(w, (float*)xA, m, (byte*)nbA, r0, r1);
            // single thread, CPU time
            var times = new[] { new List<double>(), new List<double>() };
            var proc = System.Diagnostics.Process.GetCurrentProcess();
            for (int round = 0; round < 7; round++)
                for (int c = 0; c < 2; c++)
                {
                    proc.Refresh();
                    var cpu0 = proc.TotalProcessorTime;
                    for (int rep = 0; rep < 3; rep++)
                    {
                        Quantize(c, 0, m);
                        for (int u = 0; u < units; u++) Unit(c, u, 0);
                    }
                    proc.Refresh();
                    times[c].Add((proc.TotalProcessorTime - cpu0).TotalSeconds / 3);
                }
            for (int c = 0; c < 2; c++)
            {
                double t = times[c].Order().ElementAt(times[c].Count / 2);
                output.WriteLine($"1 thread  {names[c],-20} [{m}x{n}x{k}] {(sym ? "sym" : "asym")} g{group} cpu  {t * 1e3,8:F2} ms  {2.0 * m * n * k / t / 1e9,6:F1} GOP/s");
            }
            // threads claiming units dynamically, wall time
            times = new[] { new List<double>(), new List<double>() };
            for (int round = 0; round < 7; round++)
                for (int c = 0; c < 2; c++)
                {
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    for (int rep = 0; rep < 3; rep++)
                    {
                        int cc = c;
                        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => Quantize(cc, m * t / threads, m * (t + 1) / threads));
                        int next = -1, total = units;
                        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                        {
                            for (int u; (u = Interlocked.Increment(ref next)) < total;) Unit(cc, u, t);
                        });
                    }
                    times[c].Add(sw.Elapsed.TotalSeconds / 3);
                }
            for (int c = 0; c < 2; c++)
            {
                double t = times[c].Order().ElementAt(times[c].Count / 2);
                output.WriteLine($"{threads} threads {names[c],-20} [{m}x{n}x{k}] {(sym ? "sym" : "asym")} g{group} wall {t * 1e3,8:F2} ms  {2.0 * m * n * k / t / 1e9,6:F1} GOP/s");
            }
        }
        QuantGemmInt4.Wide = wideBefore;
    }

    // Panel bytes for either tile width (the A/B switches between them on one buffer).
    private static long PanelMax(int rows, int k)
    {
        bool before = QuantGemmInt4.Wide;
        try
        {
            QuantGemmInt4.Wide = false; long a = QuantGemmInt4.PanelBytes(rows, k);
            QuantGemmInt4.Wide = true; return Math.Max(a, QuantGemmInt4.PanelBytes(rows, k));
        }
        finally { QuantGemmInt4.Wide = before; }
    }
}

/// <summary>The executor's Q4_0 prefill through the broadcast GEMM on one and two threads, with F16 and F32 scales.</summary>
public class QuantGemmInt4ExecutorTests
{
    [Theory]
    [InlineData(2, true)]
    [InlineData(1, false)]
    public void Executor_runs_q4_0_prefill_through_the_broadcast_gemm(int threads, bool f16Scales) =>
        new QuantKernelTests().Executor_runs_quantized_linear_and_embedding_in_gemv_and_prefill(true, true, 32, threads, f16Scales);
}

/// <summary>
/// In-process prefill A/B of an exported Q4_0 IR folder in HUB_BENCH_IR (HUB_BENCH=1 only; prints, asserts nothing
/// about time): the model compiled once with dequantized f32 panels (HUB_QUANT_GEMM=float) and once with the int4 GEMM,
/// alternating prefills of a HUB_BENCH_M-token prompt (default 128) for HUB_BENCH_AB_ROUNDS rounds (default 6), medians
/// of wall-time tok/s with HUB_BENCH_THREADS threads (default 2).
/// </summary>
public class QuantGemmInt4PrefillBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Q4_0_prefill_ab_of_an_ir_folder() =>
        output.WriteLine(Ab("f32 panels", "int4 gemm", () => Hub.Runtime.Execution.QuantLinearExec.UseInt4Gemm, v => Hub.Runtime.Execution.QuantLinearExec.UseInt4Gemm = v));

    /// <summary>
    /// The A/B of HUB_BENCH_IR with a per-thread executor switch off (<paramref name="off"/>) and on
    /// (<paramref name="on"/>): one compiled model per setting, alternating prefills; the line to print.
    /// </summary>
    internal static string Ab(string off, string on, Func<bool> get, Action<bool> set)
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128);
        int rounds = BenchFeed.EnvInt("HUB_BENCH_AB_ROUNDS", 6);
        using var ir = IrModel.Load(dir!);
        bool before = get();
        var models = new CompiledModel[2];
        var reqs = new InferRequest[2];
        try
        {
            // the switch is read when a request builds its executors
            for (int v = 0; v < 2; v++)
            {
                set(v == 1);
                models[v] = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 1024 });
                reqs[v] = models[v].CreateInferRequest();
            }
        }
        finally { set(before); }
        var names = ir.Graph.Inputs.Select(i => i.Name).ToList();
        var ids = Enumerable.Range(0, m).Select(i => (i * 13) % 1000 + 1).ToArray();
        var pos = Enumerable.Range(0, m).ToArray();
        var ones = Enumerable.Repeat(1f, m).ToArray();
        var rates = new[] { new List<double>(), new List<double>() };
        var outs = new float[2][];
        try
        {
            for (int round = -1; round < rounds; round++)   // round -1 warms up both
                for (int k = 0; k < 2; k++)
                {
                    int v = k ^ (round & 1);
                    var req = reqs[v];
                    req.ResetState();
                    req.SetInput("input_ids", ids, 1, m);
                    if (names.Contains("positions")) req.SetInput("positions", pos, 1, m);
                    if (names.Contains("position_ids")) req.SetInput("position_ids", pos, 1, m);
                    if (names.Contains("attention_mask")) req.SetInput("attention_mask", ones, 1, m);
                    if (names.Contains("logits_to_keep")) req.SetInput("logits_to_keep", new[] { 1 }, 1);
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    req.Infer();
                    if (round >= 0) rates[v].Add(m / sw.Elapsed.TotalSeconds);
                    else outs[v] = req.GetOutput(ir.Graph.Outputs[0].Name).ToArray();
                }
        }
        finally
        {
            foreach (var q in reqs) q.Dispose();
            foreach (var c in models) c.Dispose();
        }
        double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
        double maxDiff = outs[0].Zip(outs[1], (a, b) => Math.Abs(a - b)).Max(), maxAbs = outs[0].Max(Math.Abs);
        return $"prefill {m} tokens, {threads} threads: {off} {Med(rates[0]):F1} tok/s, {on} {Med(rates[1]):F1} tok/s ({on}/{off} {Med(rates[1]) / Med(rates[0]):F3}); " +
            $"per round {off} [{string.Join(" ", rates[0].Select(x => x.ToString("F0")))}] {on} [{string.Join(" ", rates[1].Select(x => x.ToString("F0")))}]; max |Δ output| {maxDiff:G3} of max |output| {maxAbs:G3}";
    }
}
