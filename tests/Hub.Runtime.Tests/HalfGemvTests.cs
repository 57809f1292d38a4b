using Hub.IR;
using Hub.Runtime.Kernels;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// The F16 decode GEMV (shift+mask widening with the 2^112 folded into x) against a float64 loop, on every depth, every
/// finite half and extreme x; and the executor's switch between the exact and the fast kernel. Kernel category, so
/// <see cref="IsaSweepTests"/> re-runs it with AVX2 off (the fast kernel then must not be used, the fallback must agree).
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class HalfGemvTests
{
    // Random halves including subnormals, ±0, ±65504 and ±min subnormal; finite only.
    private static ushort[] RandomHalves(int count, int seed)
    {
        var r = new Random(seed);
        var w = new ushort[count];
        for (int i = 0; i < count; i++)
        {
            w[i] = (r.Next(10)) switch
            {
                0 => (ushort)(r.Next(0x400) | (r.Next(2) << 15)),           // subnormal or ±0
                1 => (ushort)(0x7BFF | (r.Next(2) << 15)),                  // ±65504
                2 => (ushort)(r.Next(2) << 15),                             // ±0
                _ => BitConverter.HalfToUInt16Bits((Half)((r.NextDouble() * 2 - 1) * Math.Pow(2, r.Next(-14, 4)))),
            };
        }
        return w;
    }

    private static float[] RandomX(int k, int seed, double scale, bool subnormals)
    {
        var r = new Random(seed);
        var x = new float[k];
        for (int i = 0; i < k; i++)
        {
            x[i] = (float)((r.NextDouble() * 2 - 1) * scale);
            if (subnormals && i % 5 == 0) x[i] = BitConverter.Int32BitsToSingle(r.Next(1, 0x7FFFFF) | (r.Next(2) << 31));
            if (i % 13 == 0) x[i] = 0;
        }
        return x;
    }

    // The kernel loops this process can run: the 512-bit one (AVX-512F/BW) and the AVX2 one; the ISA sweep's children
    // without AVX-512 run only the AVX2 loop.
    private static bool[] Loops => HalfGemv.WideSupported ? [true, false] : [false];

    // y = PrepareX + Rows (fast kernel, the 512-bit loop when wide) where supported; the caller compares with float64.
    private static float[] Fast(float[] x, ushort[] w, float[]? bias, int k, int n, out double scale, bool wide)
    {
        var y = new float[n];
        var xp = new float[HalfGemv.PreparedFloats(k) + 1];
        fixed (float* xq = x) fixed (float* xpq = xp) fixed (ushort* wq = w) fixed (float* yq = y) fixed (float* bq = bias)
        {
            scale = HalfGemv.PrepareXFor(xq, k, xpq, wide);
            Assert.NotEqual(0, scale);
            HalfGemv.RowsFor(xpq, scale, xq, k, wq, bias == null ? null : bq, yq, 0, n, wide);
        }
        return y;
    }

    // Where PrepareX puts x[p]: per 32 values 16 even then 16 odd for the 512-bit loop, per 16 values 8 even then 8 odd
    // for the AVX2 loop and for the wide loop's last 16-value block.
    private static int PreparedIndex(int p, int k, bool wide)
    {
        int k32 = wide && HalfGemv.WideSupported ? (k & ~15) & ~31 : 0;
        if (p < k32) return (p & ~31) + (p & 1) * 16 + (p & 31) / 2;
        return (p & ~15) + (p & 1) * 8 + (p & 15) / 2;
    }

    [SkippableFact]
    public void Fast_half_gemv_matches_float64_on_every_depth_with_extreme_values()
    {
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        const int n = 13; // one 8-row pass and five single rows
        foreach (bool wide in Loops)
        foreach (var (scale, subnormals) in new[] { (1.0, false), (1e-30, true), (3e4, false), (1e12, false), (3e38, false), (1e-42, true) })
            for (int k = 1; k <= 256; k += k < 40 ? 1 : 7)
            {
                var w = RandomHalves(n * k, k);
                var x = RandomX(k, 1000 + k, scale, subnormals);
                var bias = Enumerable.Range(0, n).Select(i => (float)(i - 6) * 0.5f).ToArray();
                var y = Fast(x, w, bias, k, n, out _, wide);
                for (int j = 0; j < n; j++)
                {
                    double e = bias[j], mag = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double t = x[p] * (double)(float)BitConverter.UInt16BitsToHalf(w[j * k + p]);
                        e += t; mag += Math.Abs(t);
                    }
                    // float32 accumulation error, plus one denormal step per product.
                    double tol = 4 * (k + 2) * Math.Pow(2, -24) * (mag + Math.Abs(bias[j])) + (k + 1) * Math.Pow(2, -149);
                    if (mag > float.MaxValue) continue; // a float32 product or partial sum may overflow: no float answer to compare
                    Assert.True(Math.Abs(y[j] - e) <= tol, $"wide={wide} k={k} x-scale={scale} row {j}: {y[j]} vs {e} (tol {tol})");
                }
            }
    }

    [SkippableFact]
    public void Fast_half_gemv_widens_every_finite_half_exactly_at_any_x_magnitude()
    {
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        var finite = Enumerable.Range(0, 65536).Where(b => (b & 0x7C00) != 0x7C00).Select(b => (ushort)b).ToArray();
        const int k = 32;
        int n = finite.Length / k;
        // One-hot x (value v at column j): y[row] must be exactly v·half. 2^20 and 2^100 force the scale below 2^112.
        foreach (bool wide in Loops)
        foreach (float v in new[] { 1f, MathF.ScaleB(1f, -30), MathF.ScaleB(1f, 20), MathF.ScaleB(1f, 100), -MathF.ScaleB(1f, -100) })
            foreach (int j in new[] { 0, 1, 14, 15, 16, 31 })
            {
                var x = new float[k];
                x[j] = v;
                var y = Fast(x, finite, null, k, n, out _, wide);
                for (int r = 0; r < n; r++)
                {
                    float e = v * (float)BitConverter.UInt16BitsToHalf(finite[r * k + j]);
                    Assert.True(e.Equals(y[r]) || (e == 0 && y[r] == 0), $"wide={wide} half 0x{finite[r * k + j]:X4} × {v}: {e} vs {y[r]}");
                }
            }
    }

    // Sub-ranges of rows with both passes of 8 and single rows, depths with and without the next-pass prefetch
    // (k ≤ 1024) and with k % 16 tails: every row in range matches float64, rows outside the range are not written.
    [SkippableFact]
    public void Fast_half_gemv_on_row_ranges_matches_float64_and_leaves_other_rows_alone()
    {
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        const int n = 45;
        foreach (bool wide in Loops)
        foreach (int k in new[] { 16, 17, 768, 777, 1024, 1031, 1040, 2048 + 5, 5632, 5632 + 47 })
        {
            var w = RandomHalves(n * k, 7 * k);
            var x = RandomX(k, 11 * k, 1.0, subnormals: false);
            var bias = Enumerable.Range(0, n).Select(i => 0.25f * (i % 5) - 0.5f).ToArray();
            var xp = new float[HalfGemv.PreparedFloats(k)];
            foreach (var (n0, n1) in new[] { (0, n), (3, 40), (5, 29), (8, 24), (0, 16), (17, 18), (44, 45), (9, 9) })
            {
                var y = Enumerable.Repeat(float.NaN, n).ToArray();
                fixed (float* xq = x) fixed (float* xpq = xp) fixed (ushort* wq = w) fixed (float* yq = y) fixed (float* bq = bias)
                {
                    double s = HalfGemv.PrepareXFor(xq, k, xpq, wide);
                    HalfGemv.RowsFor(xpq, s, xq, k, wq, bq, yq, n0, n1, wide);
                }
                for (int j = 0; j < n; j++)
                {
                    if (j < n0 || j >= n1) { Assert.True(float.IsNaN(y[j]), $"wide={wide} k={k} [{n0}, {n1}): row {j} written"); continue; }
                    double e = bias[j], mag = Math.Abs(bias[j]);
                    for (int p = 0; p < k; p++)
                    {
                        double t = x[p] * (double)(float)BitConverter.UInt16BitsToHalf(w[j * k + p]);
                        e += t; mag += Math.Abs(t);
                    }
                    double tol = 4 * (k + 2) * Math.Pow(2, -24) * mag;
                    Assert.True(Math.Abs(y[j] - e) <= tol, $"wide={wide} k={k} [{n0}, {n1}) row {j}: {y[j]} vs {e} (tol {tol})");
                }
            }
        }
    }

    // Both loops on every depth 1..130 (each k % 64 residue: 64-value steps, the single 32-value step, the 16-value block
    // in the AVX2 layout and the exact tail) and on the 1b model's row lengths 2048 and 5632 with every kind of tail:
    // each against float64 and the two loops against each other (the same products summed in a different order).
    [SkippableFact]
    public void Both_loops_match_float64_and_each_other_on_every_residue_and_long_rows()
    {
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        const int n = 11;
        var ks = Enumerable.Range(1, 130).Concat(new[] { 0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63 }.SelectMany(r => new[] { 2048 + r, 5632 + r }));
        foreach (int k in ks)
        {
            var w = RandomHalves(n * k, 3 * k + 1);
            var x = RandomX(k, 5 * k + 2, 1.0, subnormals: false);
            var bias = Enumerable.Range(0, n).Select(i => 0.125f * i - 0.5f).ToArray();
            var ys = Loops.Select(wide => Fast(x, w, bias, k, n, out _, wide)).ToArray();
            for (int j = 0; j < n; j++)
            {
                double e = bias[j], mag = Math.Abs(bias[j]);
                for (int p = 0; p < k; p++)
                {
                    double t = x[p] * (double)(float)BitConverter.UInt16BitsToHalf(w[j * k + p]);
                    e += t; mag += Math.Abs(t);
                }
                // float32 accumulation over at most k + 2 additions, each off by ≤ 2^-24 of the running magnitude.
                double tol = 4 * (k + 2) * Math.Pow(2, -24) * mag;
                for (int l = 0; l < ys.Length; l++)
                    Assert.True(Math.Abs(ys[l][j] - e) <= tol, $"wide={Loops[l]} k={k} row {j}: {ys[l][j]} vs {e} (tol {tol})");
                if (ys.Length == 2) Assert.True(Math.Abs(ys[0][j] - ys[1][j]) <= 2 * tol, $"k={k} row {j}: wide {ys[0][j]} vs AVX2 {ys[1][j]}");
            }
        }
    }

    [SkippableFact]
    public void Rows_prepare_and_exact_reject_bad_arguments_naming_them()
    {
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        const int k = 32, n = 4;
        var x = new float[k]; var xp = new float[HalfGemv.PreparedFloats(k)]; var w = new ushort[n * k]; var y = new float[n];
        fixed (float* xq = x) fixed (float* xpq = xp) fixed (ushort* wq = w) fixed (float* yq = y)
        {
            float* xs = xq, xps = xpq, ys = yq; ushort* ws = wq; // fixed locals cannot be captured by the lambdas below
            void Throws<T>(string param, Action a) where T : ArgumentException => Assert.Equal(param, Assert.Throws<T>(a).ParamName);
            Throws<ArgumentNullException>("x", () => HalfGemv.PrepareX(null, k, xps));
            Throws<ArgumentNullException>("xp", () => HalfGemv.PrepareX(xs, k, null));
            Throws<ArgumentOutOfRangeException>("k", () => HalfGemv.PrepareX(xs, 0, xps));
            Throws<ArgumentOutOfRangeException>("k", () => HalfGemv.PrepareX(xs, -3, xps));
            Assert.Equal(1.0, HalfGemv.PrepareX(xs, 15, null)); // below 16 values nothing is prepared

            double s = HalfGemv.PrepareX(xs, k, xps);
            Throws<ArgumentNullException>("xp", () => HalfGemv.Rows(null, s, xs, k, ws, null, ys, 0, n));
            Throws<ArgumentNullException>("x", () => HalfGemv.Rows(xps, s, null, k, ws, null, ys, 0, n));
            Throws<ArgumentNullException>("w", () => HalfGemv.Rows(xps, s, xs, k, null, null, ys, 0, n));
            Throws<ArgumentNullException>("y", () => HalfGemv.Rows(xps, s, xs, k, ws, null, null, 0, n));
            Throws<ArgumentOutOfRangeException>("k", () => HalfGemv.Rows(xps, s, xs, 0, ws, null, ys, 0, n));
            Throws<ArgumentOutOfRangeException>("n0", () => HalfGemv.Rows(xps, s, xs, k, ws, null, ys, -1, n));
            Throws<ArgumentOutOfRangeException>("n1", () => HalfGemv.Rows(xps, s, xs, k, ws, null, ys, 3, 2));
            Throws<ArgumentOutOfRangeException>("scale", () => HalfGemv.Rows(xps, 0, xs, k, ws, null, ys, 0, n));
            Throws<ArgumentOutOfRangeException>("scale", () => HalfGemv.Rows(xps, double.NaN, xs, k, ws, null, ys, 0, n));
            HalfGemv.Rows(null, 1.0, xs, 15, ws, null, ys, 0, n); // k < 16: only the exact tail runs, xp is not read

            Throws<ArgumentNullException>("x", () => HalfGemv.RowsExact(null, k, ws, null, ys, 0, n));
            Throws<ArgumentNullException>("w", () => HalfGemv.RowsExact(xs, k, null, null, ys, 0, n));
            Throws<ArgumentNullException>("y", () => HalfGemv.RowsExact(xs, k, ws, null, null, 0, n));
            Throws<ArgumentOutOfRangeException>("k", () => HalfGemv.RowsExact(xs, 15, ws, null, ys, 0, n));
            Throws<ArgumentOutOfRangeException>("n0", () => HalfGemv.RowsExact(xs, k, ws, null, ys, -2, n));
            Throws<ArgumentOutOfRangeException>("n1", () => HalfGemv.RowsExact(xs, k, ws, null, ys, 2, 1));
        }
    }

    [Fact]
    public void Prepare_refuses_x_with_inf_or_nan_and_scales_by_powers_of_two()
    {
        const int k = 48;
        var xp = new float[HalfGemv.PreparedFloats(k)];
        var x = Enumerable.Range(0, k).Select(i => (float)(i + 1)).ToArray();
        fixed (float* xq = x) fixed (float* xpq = xp)
            foreach (bool wide in new[] { true, false })
            {
                x[7] = 8;
                double s = HalfGemv.PrepareXFor(xq, k, xpq, wide);
                Assert.Equal(1.0, s); // max 48 < 2^15: the full 2^112 goes into x
                for (int p = 0; p < k; p++)
                    Assert.Equal(x[p] * MathF.ScaleB(1f, 112), xp[PreparedIndex(p, k, wide)]);
                x[7] = 1e20f;
                s = HalfGemv.PrepareXFor(xq, k, xpq, wide);
                Assert.Equal(Math.ScaleB(1.0, 112 - (126 - Math.ILogB(1e20f))), s);
                Assert.Equal(1e20f * (float)(Math.ScaleB(1.0, 112) / s), xp[PreparedIndex(7, k, wide)]);
                x[7] = float.NaN;
                Assert.Equal(0, HalfGemv.PrepareXFor(xq, k, xpq, wide));
                x[7] = float.NegativeInfinity;
                Assert.Equal(0, HalfGemv.PrepareXFor(xq, k, xpq, wide));
            }
    }

    [SkippableFact]
    public void Exact_rows_report_inf_and_nan_weights_in_the_vector_part_and_the_tail()
    {
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        const int k = 37, n = 6;
        var x = Enumerable.Range(0, k).Select(i => 0.25f * (i % 7 - 3) + 0.125f).ToArray();
        var clean = RandomHalves(n * k, 5);
        var y = new float[n];
        fixed (float* xq = x) fixed (float* yq = y)
        {
            fixed (ushort* wq = clean) Assert.True(HalfGemv.RowsExact(xq, k, wq, null, yq, 0, n));
            foreach (var (row, col, bits) in new[] { (0, 5, (ushort)0x7C00), (3, 20, (ushort)0x7E00), (5, 35, (ushort)0xFC00) })
            {
                var w = (ushort[])clean.Clone();
                w[row * k + col] = bits;
                fixed (ushort* wq = w)
                {
                    Assert.False(HalfGemv.RowsExact(xq, k, wq, null, yq, 0, n), $"{bits:X4} at ({row}, {col})");
                    Assert.False(float.IsFinite(y[row]), $"row {row}: {y[row]}");
                    // Rows outside the bad one's 4-row group are unaffected.
                    Assert.True(HalfGemv.RowsExact(xq, k, wq, null, yq, row < 4 ? 4 : 0, row < 4 ? n : 4));
                }
            }
        }
    }

    // One Linear with F16 weights through the runtime: the first decode step runs the exact kernel (and learns which
    // units are finite), later ones the fast kernel; both must match the float64 loop, and inf/NaN weights propagate.
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void Linear_f16_decode_steps_match_reference_and_propagate_inf(int threads, bool withInf)
    {
        const int n = 1100, k = 96; // 2·n·k ≥ 200k flops: split into 32 units of 36 rows (8-row passes plus single rows)
        var r = new Random(3);
        var w = new float[n * k];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(Half)(r.NextDouble() - 0.5);
        if (withInf) { w[17 * k + 40] = float.PositiveInfinity; w[1050 * k + 3] = float.NaN; }
        var dir = Path.Combine(Path.GetTempPath(), "hub-halfgemv-" + Guid.NewGuid().ToString("N"));
        try
        {
            var b = new GraphBuilder("f16gemv");
            var xin = b.Input("x", DType.F32, "batch", "seq", k);
            var y = b.Op(Ops.Linear, "y", new[] { xin, b.Weight("w", LazyTensor.FromArray(w, new Shape(n, k), "w"), WeightKind.Matrix) });
            b.Output(y, DType.F32, "batch", "seq", n);
            IrFormat.Write(dir, b.Build(), new IrWriteOptions { WeightDType = DType.F16 });
            using var ir = IrModel.Load(dir);
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads });
            using var req = cm.CreateInferRequest();
            for (int step = 0; step < 3; step++)
            {
                var x = Enumerable.Range(0, k).Select(_ => (float)(r.NextDouble() * 2 - 1) * (step == 2 ? 1e6f : 1f)).ToArray();
                req.SetInput("x", x, 1, 1, k);
                req.Infer();
                var got = req.GetOutput("y").ToArray();
                for (int j = 0; j < n; j++)
                {
                    double e = 0, mag = 0;
                    for (int p = 0; p < k; p++) { double t = x[p] * (double)w[j * k + p]; e += t; mag += Math.Abs(t); }
                    if (double.IsNaN(e)) Assert.True(float.IsNaN(got[j]), $"step {step} row {j}: {got[j]}");
                    else if (double.IsInfinity(e)) Assert.Equal((float)e, got[j]);
                    else Assert.True(Math.Abs(got[j] - e) <= 1e-5 * mag + 1e-30, $"step {step} row {j}: {got[j]} vs {e}");
                }
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>
/// Single-thread F16 decode GEMV against the F32 GEMV on the same shapes, L2-hot (~200 KB of F16 weights, re-read) and
/// DRAM-cold (160 MB of F16 weights, each byte read once per round), HUB_BENCH=1 only; prints, asserts nothing about time.
/// </summary>
public unsafe class HalfGemvBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Half_gemv_throughput_hot_and_cold()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2 + FMA");
        foreach (int k in new[] { 768, 2048 })
            foreach (bool cold in new[] { false, true })
            {
                int n = cold ? (160 << 20) / (2 * k) / 8 * 8 : 196608 / (2 * k) / 8 * 8, chunk = cold ? 1024 : n, passes = cold ? 1 : 400;
                long count = (long)n * k;
                ushort* w16 = (ushort*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(count * 2), 64);
                float* w32 = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(count * 4), 64);
                try
                {
                    var r = new Random(1);
                    for (long i = 0; i < count; i++) { var h = (Half)(r.NextDouble() - 0.5); w16[i] = BitConverter.HalfToUInt16Bits(h); w32[i] = (float)h; }
                    var x = Enumerable.Range(0, k).Select(i => (float)Math.Sin(i)).ToArray();
                    var xp = new float[HalfGemv.PreparedFloats(k)];
                    var y = new float[n];
                    var scratch = new float[Gemm.ScratchFloats(k)];
                    var names = new[] { "f32 Gemm.GemvRows", "f16 HalfGemv.Rows", "f16 HalfGemv.RowsExact" };
                    var wall = names.Select(_ => new List<double>()).ToArray();
                    var cpu = names.Select(_ => new List<double>()).ToArray();
                    fixed (float* xq = x, xpq = xp, yq = y, sq = scratch)
                    {
                        double s = HalfGemv.PrepareX(xq, k, xpq);
                        for (int round = 0; round < 6; round++)
                            for (int c = 0; c < names.Length; c++)
                            {
                                var proc = System.Diagnostics.Process.GetCurrentProcess();
                                var cpu0 = proc.TotalProcessorTime;
                                var sw = System.Diagnostics.Stopwatch.StartNew();
                                for (int ps = 0; ps < passes; ps++)
                                    for (int j = 0; j < n; j += chunk)
                                    {
                                        int j1 = Math.Min(n, j + chunk);
                                        if (c == 0) Gemm.GemvRows(xq, 1, k, (byte*)w32, DType.F32, n, null, yq, j, j1, sq);
                                        else if (c == 1) HalfGemv.Rows(xpq, s, xq, k, w16, null, yq, j, j1);
                                        else HalfGemv.RowsExact(xq, k, w16, null, yq, j, j1);
                                    }
                                double t = sw.Elapsed.TotalSeconds;
                                proc.Refresh();
                                if (round == 0) continue; // warm-up (JIT, page faults)
                                wall[c].Add(t); cpu[c].Add((proc.TotalProcessorTime - cpu0).TotalSeconds);
                            }
                    }
                    for (int c = 0; c < names.Length; c++)
                    {
                        double bytes = (double)count * (c == 0 ? 4 : 2) * passes;
                        double tw = wall[c].Order().ElementAt(wall[c].Count / 2), tc = cpu[c].Order().ElementAt(cpu[c].Count / 2);
                        output.WriteLine($"k={k} {(cold ? "cold" : "hot"),-4} {names[c],-24} {bytes / tw / 1e9,6:F1} GB/s wall  {bytes / tc / 1e9,6:F1} GB/s cpu  {count * passes / tw / 1e9,6:F2} Gw/s");
                    }
                }
                finally
                {
                    System.Runtime.InteropServices.NativeMemory.AlignedFree(w16);
                    System.Runtime.InteropServices.NativeMemory.AlignedFree(w32);
                }
            }
    }
}
