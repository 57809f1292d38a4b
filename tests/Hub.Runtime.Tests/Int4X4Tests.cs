using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Hub.IR;
using Hub.Runtime.Execution;
using Hub.Runtime.Kernels;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// The 4-row interleaved Q4_0 layout (session 12, the compiled model's load-time repack of int4 sym g32 weights): the
/// layout round trip, the x4 decode GEMV against the scalar twin (which reads the layout through Int4Block/Scale,
/// bit-identical to the twin on the original) and a float64 loop on N = 4·odd, K of 1–5 units, 1–4 activation rows and
/// ranges not aligned to 4 rows; the prefill GEMM and the float paths reading the layout bit-identically; and the
/// executor: which weights are packed, prefill bit-identical and decode within rounding of the unpacked model, every
/// other path explicit. Kernel category: <see cref="IsaSweepTests"/> re-runs it without AVX2 (nothing is packed, the
/// twin reads the layout).
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class Int4X4Tests
{
    private static byte* Interleave(in QuantMatrix w)
    {
        var dst = (byte*)NativeMemory.AlignedAlloc((nuint)QuantGemvInt4.X4Bytes(w.N, w.K), 64);
        QuantGemvInt4.InterleaveX4(w, dst, 0, w.N / 4);
        return dst;
    }

    private static void WithHalfMatrix(QuantKernelTests.QData d, Action<QuantMatrix> body)
    {
        var half = QuantKernelTests.HalfBits(d.Scales);
        fixed (byte* p = d.Data)
        fixed (ushort* h = half)
            body(new QuantMatrix(p, h, null, d.N, d.K, 32, true, true));
    }

    private static bool KernelRuns => Avx2.IsSupported && Fma.IsSupported;

    [Fact]
    public void Layout_round_trips_every_value_and_scale()
    {
        foreach (var (n, k) in new[] { (4, 256), (12, 768), (8, 1280) })
        {
            var d = QuantKernelTests.RandomQ(true, n, k, 32, true, n + k);
            WithHalfMatrix(d, w =>
            {
                byte* x4 = Interleave(w);
                try
                {
                    var wx = new QuantMatrix(w, x4);
                    for (int j = 0; j < n; j++)
                        for (int b = 0; b < k / 32; b++)
                        {
                            Assert.Equal(w.Scale(j, b), wx.Scale(j, b));
                            byte* p = w.Int4Block(j, b), q = wx.Int4Block(j, b);
                            for (int t = 0; t < 16; t++) Assert.Equal(p[t], q[t]);
                        }
                    // every byte of the copy is written exactly once: the data bytes and scales add up to its size
                    Assert.Equal((long)n * k / 2 + (long)n * (k / 32) * 2, QuantGemvInt4.X4Bytes(n, k));
                    // the layout's accessors point inside the copy
                    Assert.True(wx.Int4Block(n - 1, k / 32 - 1) + 16 <= x4 + QuantGemvInt4.X4Bytes(n, k));
                    var rs = new float[k / 32];
                    fixed (float* r = rs)
                        for (int j = 0; j < n; j++)
                        {
                            float* s = wx.RowScales(j, r);
                            for (int b = 0; b < k / 32; b++) Assert.Equal(w.Scale(j, b), s[b]);
                        }
                    Assert.Throws<InvalidOperationException>(() => wx.BlockStride);
                }
                finally { NativeMemory.AlignedFree(x4); }
            });
        }
    }

    [Fact]
    public void X4_gemv_matches_twin_and_float64_on_odd_shapes()
    {
        foreach (int n in new[] { 4, 8, 12, 20, 36 })
            foreach (int k in new[] { 256, 768, 1280 })
                for (int m = 1; m <= Gemm.GemvMaxRows; m++)
                {
                    var d = QuantKernelTests.RandomQ(true, n, k, 32, true, n * 131 + k * 7 + m);
                    d.Data[0] = 0x0F; d.Data[1] = 0xF0; d.Data[^1] = 0xFF;   // nibbles 0 and 15 (−8 and +7)
                    var x = QuantKernelTests.Rand(m * k, k + m);
                    var bias = QuantKernelTests.Rand(n, n + 1);
                    var buf = new byte[QuantKernels.ActivationBytes(m, k, k / 32) + 64];
                    WithHalfMatrix(d, w =>
                    {
                        byte* x4 = Interleave(w);
                        try
                        {
                            var wx = new QuantMatrix(w, x4);
                            fixed (byte* b0 = buf)
                            fixed (float* xp = x, bp0 = bias)
                            {
                                byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                                QuantKernels.QuantizeActivations(w, xp, m, b);
                                foreach (bool withBias in new[] { true, false })
                                {
                                    float* bp = withBias ? bp0 : null;
                                    var twin = new float[m * n];
                                    var twinX4 = new float[m * n];
                                    fixed (float* tp = twin, tx = twinX4)
                                    {
                                        QuantKernels.GemvIntegerReference(w, m, b, bp, tp, n, 0, n);
                                        QuantKernels.GemvIntegerReference(wx, m, b, bp, tx, n, 0, n);
                                    }
                                    Assert.Equal(twin, twinX4);   // the layout accessors read the same values and scales
                                    var ranges = new List<(int, int)> { (0, n), (1, n - 1), (2, 3), (3, 4) };
                                    if (n >= 8) ranges.Add((4, 8));
                                    foreach (var (n0, n1) in ranges)
                                    {
                                        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
                                        fixed (float* yp = y) QuantKernels.GemvInteger(wx, m, b, bp, yp, n, n0, n1);
                                        sbyte* xq = (sbyte*)b;
                                        float* dxs = QuantKernels.BlockScales(b, m, k);
                                        for (int i = 0; i < m; i++)
                                            for (int j = 0; j < n; j++)
                                            {
                                                int at = i * n + j;
                                                string what = $"[{n},{k}] m={m} rows [{n0}, {n1}) bias={withBias} ({i},{j})";
                                                if (j < n0 || j >= n1) { Assert.True(float.IsNaN(y[at]), $"{what}: wrote outside its rows"); continue; }
                                                if (!KernelRuns) { Assert.Equal(twin[at], y[at]); continue; }   // the twin runs
                                                double exact = withBias ? bias[j] : 0, scale = withBias ? Math.Abs(bias[j]) : 0;
                                                for (int c = 0; c < k; c++)
                                                {
                                                    exact += d.Value(j, c) * dxs[i * (k / 32) + c / 32] * xq[i * k + QuantKernels.ActivationPosition(c, k / 32, true)];
                                                    scale += Math.Abs(x[i * k + c] * d.Value(j, c));
                                                }
                                                // the int4 GEMV tests' tolerance: exact integer block sums, float accumulation in another order
                                                double tol = 1e-5 * scale + 1e-6;
                                                Assert.True(Math.Abs(y[at] - twin[at]) <= tol, $"{what}: {y[at]} vs twin {twin[at]}");
                                                Assert.True(Math.Abs(y[at] - exact) <= tol, $"{what}: {y[at]} vs float64 {exact}");
                                            }
                                    }
                                    if (KernelRuns && QuantGemvInt4.Fits(w))
                                    {
                                        // the IR-layout kernel the copy replaces: the same sums within rounding
                                        var yk = new float[m * n];
                                        var yx = new float[m * n];
                                        fixed (float* pk = yk, px = yx)
                                        {
                                            QuantGemvInt4.Gemv(w, m, b, bp, pk, n, 0, n);
                                            QuantKernels.GemvInteger(wx, m, b, bp, px, n, 0, n);
                                        }
                                        for (int t = 0; t < yk.Length; t++) Assert.True(Math.Abs(yk[t] - yx[t]) <= 1e-4 * Math.Abs(yk[t]) + 1e-4, $"[{n},{k}] m={m} {t}: x4 {yx[t]} vs IR-layout kernel {yk[t]}");
                                    }
                                }
                            }
                        }
                        finally { NativeMemory.AlignedFree(x4); }
                    });
                }
    }

    [SkippableFact]
    public void X4_gemv_sums_are_exact_integers_when_activations_have_a_large_mean()
    {
        Skip.IfNot(KernelRuns, "the x4 kernel needs AVX2+FMA");
        // the offset 8 leaves the integer block sums as Σ(q − 8)·x in int32: the result stays within float accumulation
        // rounding of Σ|x·w| even when Σx per block is large
        foreach (int k in new[] { 768, 2048, 5632 })
        {
            int n = 12;
            var d = QuantKernelTests.RandomQ(true, n, k, 32, true, k + 1);
            var x = QuantKernelTests.Rand(k, 3).Select(v => v + 30f).ToArray();
            var buf = new byte[QuantKernels.ActivationBytes(1, k, k / 32) + 64];
            WithHalfMatrix(d, w =>
            {
                byte* x4 = Interleave(w);
                try
                {
                    fixed (byte* b0 = buf)
                    fixed (float* xp = x)
                    {
                        byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                        QuantKernels.QuantizeActivations(w, xp, 1, b);
                        var y4 = new float[n];
                        var yr = new float[n];
                        fixed (float* p4 = y4, pr = yr)
                        {
                            QuantKernels.GemvInteger(new QuantMatrix(w, x4), 1, b, null, p4, n, 0, n);
                            QuantKernels.GemvIntegerReference(w, 1, b, null, pr, n, 0, n);
                        }
                        for (int j = 0; j < n; j++)
                        {
                            double scale = 0;
                            for (int c = 0; c < k; c++) scale += Math.Abs(x[c] * d.Value(j, c));
                            Assert.True(Math.Abs(y4[j] - yr[j]) <= 1e-6 * scale + 1e-6, $"K {k} row {j}: x4 {y4[j]} vs twin {yr[j]} (Σ|x·w| {scale:E2})");
                        }
                    }
                }
                finally { NativeMemory.AlignedFree(x4); }
            });
        }
    }

    [SkippableFact]
    public void Prefill_gemm_and_float_paths_read_the_layout_bit_identically()
    {
        Skip.IfNot(QuantGemmInt4.Fits(new QuantMatrix((byte*)16, (float*)16, null, 4, 256, 32, true, true)), "the int4 GEMM needs AVX2+FMA");
        foreach (var (n, k, m) in new[] { (4, 256, 5), (12, 768, 17), (36, 1280, 9), (72, 256, 40) })
        {
            var d = QuantKernelTests.RandomQ(true, n, k, 32, true, n + k + m);
            var x = QuantKernelTests.Rand(m * k, m);
            var bias = QuantKernelTests.Rand(n, 3);
            var act = new byte[QuantGemmInt4.ActivationBytes(m, k) + 64];
            WithHalfMatrix(d, w =>
            {
                byte* x4 = Interleave(w);
                try
                {
                    var wx = new QuantMatrix(w, x4);
                    fixed (byte* a0 = act)
                    fixed (float* xp = x, bp = bias)
                    {
                        byte* a = (byte*)(((nint)a0 + 63) & ~(nint)63);
                        QuantGemmInt4.QuantizeActivations(w, xp, m, a, 0, m);
                        var wides = Avx512BW.IsSupported ? new[] { false, true } : new[] { false };
                        foreach (bool wide in wides)
                            // the executor's 16-row units (4 whole groups) and 6-row units (not aligned to the groups)
                            foreach (int unit in new[] { 16, 6 })
                            {
                                var y0 = new float[m * n];
                                var y1 = new float[m * n];
                                var panel = new byte[QuantGemmInt4.PanelBytes(unit, k, wide) + 64];
                                fixed (float* p0 = y0, p1 = y1)
                                fixed (byte* pp0 = panel)
                                {
                                    byte* pp = (byte*)(((nint)pp0 + 63) & ~(nint)63);
                                    for (int n0 = 0; n0 < n; n0 += unit)
                                    {
                                        int n1 = Math.Min(n, n0 + unit);
                                        QuantGemmInt4.Repack(w, n0, n1, pp, wide);
                                        QuantGemmInt4.GemmPacked(w, m, a, pp, bp, p0, n, 0, m, n0, n1, wide);
                                        QuantGemmInt4.Repack(wx, n0, n1, pp, wide);
                                        QuantGemmInt4.GemmPacked(wx, m, a, pp, bp, p1, n, 0, m, n0, n1, wide);
                                    }
                                }
                                Assert.Equal(y0, y1);
                            }
                        var r0 = new float[k];
                        var r1 = new float[k];
                        for (int j = 0; j < n; j++)
                        {
                            fixed (float* p0 = r0, p1 = r1) { QuantKernels.DequantizeRow(w, j, p0); QuantKernels.DequantizeRow(wx, j, p1); }
                            Assert.Equal(r0, r1);
                            fixed (float* p1 = r1) QuantKernels.DequantizeRowReference(wx, j, p1);
                            Assert.Equal(r0, r1);
                        }
                        var g0 = new float[m * n];
                        var g1 = new float[m * n];
                        var rowScratch = new float[k + 16];
                        int mg = Math.Min(m, Gemm.GemvMaxRows);
                        fixed (float* p0 = g0, p1 = g1, rs = rowScratch)
                        {
                            QuantKernels.GemvFloat(w, xp, mg, bp, p0, n, 0, n, rs);
                            QuantKernels.GemvFloat(wx, xp, mg, bp, p1, n, 0, n, rs);
                        }
                        Assert.Equal(g0, g1);
                        // the widen-in-registers GEMV and the IR-layout int4 kernel refuse the copy
                        var xs = new float[mg * (k / 32)];
                        var yy = new float[mg * n];
                        var act1 = new byte[QuantKernels.ActivationBytes(mg, k, k / 32) + 64];
                        fixed (float* xsp = xs, yp = yy)
                        fixed (byte* ab0 = act1)
                        {
                            float* xsp1 = xsp, yp1 = yp, xp1 = xp;
                            byte* ab = (byte*)(((nint)ab0 + 63) & ~(nint)63);
                            QuantKernels.QuantizeActivations(w, xp, mg, ab);
                            Assert.Throws<NotSupportedException>(() => QuantKernels.GemvFloatRegisters(wx, xp1, mg, xsp1, null, yp1, n, 0, n));
                            Assert.Throws<ArgumentException>(() => QuantGemvInt4.Gemv(wx, mg, ab, null, yp1, n, 0, n));
                        }
                    }
                }
                finally { NativeMemory.AlignedFree(x4); }
            });
        }
    }

    [Fact]
    public void Layout_takes_only_q4_0_with_whole_units_and_rejects_bad_input()
    {
        byte* p = (byte*)64;
        ushort* h = (ushort*)64;
        Assert.True(QuantGemvInt4.X4Fits(new QuantMatrix(p, h, null, 8, 256, 32, true, true)));
        Assert.True(QuantGemvInt4.X4Fits(new QuantMatrix(p, (float*)h, null, 8, 512, 32, true, true)));   // F32 scales (f16-exact ones)
        Assert.False(QuantGemvInt4.X4Fits(new QuantMatrix(p, h, null, 6, 256, 32, true, true)));     // ragged last group
        Assert.False(QuantGemvInt4.X4Fits(new QuantMatrix(p, h, null, 8, 192, 32, true, true)));     // K not whole units
        Assert.False(QuantGemvInt4.X4Fits(new QuantMatrix(p, h, null, 8, 256, 128, true, true)));    // longer groups
        Assert.False(QuantGemvInt4.X4Fits(new QuantMatrix(p, h, p, 8, 256, 32, true, false)));      // asymmetric
        Assert.False(QuantGemvInt4.X4Fits(new QuantMatrix(p, h, null, 8, 256, 32, false, true)));    // int8
        Assert.Throws<ArgumentException>(() => new QuantMatrix(new QuantMatrix(p, h, null, 8, 192, 32, true, true), p));
        var d = QuantKernelTests.RandomQ(true, 8, 256, 32, true, 5);
        var half = QuantKernelTests.HalfBits(d.Scales);
        half[3] = 0x7C00;   // +inf
        var dst = new byte[QuantGemvInt4.X4Bytes(8, 256)];
        fixed (byte* dp = d.Data, o = dst)
        fixed (ushort* hp = half)
        {
            var w = new QuantMatrix(dp, hp, null, 8, 256, 32, true, true);
            byte* op = o;
            var e = Assert.Throws<InvalidOperationException>(() => QuantGemvInt4.InterleaveX4(w, op, 0, 2));
            Assert.Contains("not finite", e.Message);
            Assert.Throws<ArgumentOutOfRangeException>(() => QuantGemvInt4.InterleaveX4(w, op, 0, 3));
            Assert.Throws<ArgumentNullException>(() => QuantGemvInt4.InterleaveX4(w, null, 0, 1));
            Assert.Throws<ArgumentException>(() => QuantGemvInt4.GemvX4(w, 1, op, null, (float*)op, 8, 0, 8));   // not interleaved
        }
        // F32 scales: f16-exact ones interleave to the same bytes as their F16 bits, any other is refused
        var scales = d.Scales.ToArray();
        var h16 = QuantKernelTests.HalfBits(scales);
        var a = new byte[QuantGemvInt4.X4Bytes(8, 256)];
        var b = new byte[QuantGemvInt4.X4Bytes(8, 256)];
        fixed (byte* dp = d.Data, ap = a, bp = b)
        fixed (float* sp = scales)
        fixed (ushort* hp = h16)
        {
            var w32 = new QuantMatrix(dp, sp, null, 8, 256, 32, true, true);
            QuantGemvInt4.InterleaveX4(w32, ap, 0, 2);
            QuantGemvInt4.InterleaveX4(new QuantMatrix(dp, hp, null, 8, 256, 32, true, true), bp, 0, 2);
            Assert.Equal(b, a);
            sp[5] = 0.1f;   // not a half
            byte* op = ap;
            Assert.Throws<InvalidOperationException>(() => QuantGemvInt4.InterleaveX4(w32, op, 0, 2));
        }
    }

    // Embedding "emb" [vocab, k] → Linear "w" [n, k] (+ bias) → Linear "head" [vocab, n] (K = n: not whole units, never
    // packed); Linear "tied" reads the embedding table as its weight (never packed); Linear "odd" [20, k] reads the
    // embedding output too (packed).
    private static (string Dir, string Head, string Tied, string Odd) WriteModel(int n, int k, int vocab, bool badScale = false)
    {
        var wq = QuantKernelTests.RandomQ(true, n, k, 32, true, 42);
        var tq = QuantKernelTests.RandomQ(true, vocab, n, 32, true, 43);
        var eq = QuantKernelTests.RandomQ(true, vocab, k, 32, true, 44);
        var oq = QuantKernelTests.RandomQ(true, 20, k, 32, true, 46);
        var bias = QuantKernelTests.Rand(n, 45);
        var b = new GraphBuilder("q4x4");
        var ids = b.Input("ids", DType.I32, "batch", "seq");
        var emb = b.Weight("emb", LazyTensor.FromArray(new float[vocab * k], new Shape(vocab, k), "emb"), WeightKind.Embedding);
        var w = b.Weight("w", LazyTensor.FromArray(new float[n * k], new Shape(n, k), "w"), WeightKind.Matrix);
        var head = b.Weight("head", LazyTensor.FromArray(new float[vocab * n], new Shape(vocab, n), "head"), WeightKind.Matrix);
        var odd = b.Weight("odd", LazyTensor.FromArray(new float[20 * k], new Shape(20, k), "odd"), WeightKind.Matrix);
        var bb = b.Weight("b", LazyTensor.FromArray(bias, new Shape(n), "b"), WeightKind.Vector);
        var h = b.Op(Ops.Embedding, "e", new[] { ids, emb });
        var y = b.Op(Ops.Linear, "lin", new[] { h, w, bb });
        var z = b.Op(Ops.Linear, "lm", new[] { y, head });
        var t = b.Op(Ops.Linear, "tied", new[] { h, emb });
        var o = b.Op(Ops.Linear, "oddlin", new[] { h, odd });
        b.Output(z, DType.F32);
        b.Output(t, DType.F32);
        b.Output(o, DType.F32);
        var dir = Path.Combine(Path.GetTempPath(), "hub-q4x4-" + Guid.NewGuid().ToString("N"));
        IrFormat.Write(dir, b.Build(), new IrWriteOptions
        {
            Encoder = (p, _) =>
            {
                var q = p.Name switch { "w" => wq, "head" => tq, "emb" => eq, "odd" => oq, _ => null };
                if (q is null) return null;
                var quant = new Quantization("int4", 32, true, p.Name + ".scales", null);
                var sb = new byte[q.Scales.Length * 2];
                Buffer.BlockCopy(QuantKernelTests.HalfBits(q.Scales), 0, sb, 0, sb.Length);
                if (badScale && p.Name == "w") { sb[6] = 0x00; sb[7] = 0x7C; }   // scale 3: +inf
                return new List<EncodedWeight>
                {
                    new(p.Name, DType.U8, new Shape(q.N, q.K / 2), q.Data, quant),
                    new(quant.Scales, DType.F16, new Shape(q.N, q.Groups), sb, null),
                };
            },
        });
        return (dir, z, t, o);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_unpacked_weight_has_its_scales_checked_once_per_model(bool badScale)
    {
        var (dir, _, _, _) = WriteModel(96, 256, 24, badScale: badScale);
        bool repack = CompiledModel.RepackInt4;
        CompiledModel.RepackInt4 = false;   // per thread: the executors bind the original, so the bind checks its scales
        try
        {
            using var ir = IrModel.Load(dir);
            var options = new RuntimeOptions { Threads = 1, MaxContext = 64, MaxBatch = 1 };
            if (badScale)
            {
                // the compile's probe request binds every executor: the model never compiles
                var e = Assert.ThrowsAny<Exception>(() => CompiledModel.Compile(ir, options));
                Assert.Contains("not finite", e.ToString());
                Assert.Contains("w.scales", e.ToString());
                return;
            }
            using var cm = CompiledModel.Compile(ir, options);
            Assert.True(cm.InterleavedWeight(cm.ValueId("w")) == null);
            Assert.True(cm.ScalesChecked(cm.ValueId("w.scales")));   // by the probe request; later requests skip the scan
            using var r1 = cm.CreateInferRequest();
            using var r2 = cm.CreateInferRequest();
        }
        finally
        {
            CompiledModel.RepackInt4 = repack;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    [SkippableFact]
    public void Compile_reports_a_non_finite_scale_of_a_packed_weight_as_a_format_error()
    {
        Skip.IfNot(KernelRuns, "int4 weights are packed on AVX2+FMA only");
        var (dir, _, _, _) = WriteModel(96, 256, 24, badScale: true);
        bool repack = CompiledModel.RepackInt4;
        CompiledModel.RepackInt4 = true;   // per thread: HUB_INT4_REPACK=0 in the environment would leave the original to the executor's bind
        try
        {
            using var ir = IrModel.Load(dir);
            var e = Assert.Throws<IrFormatException>(() => CompiledModel.Compile(ir, new RuntimeOptions { Threads = 2, MaxContext = 64, MaxBatch = 1 }));
            Assert.Contains("not finite", e.Message);
            Assert.Contains("'w'", e.Message);
        }
        finally
        {
            CompiledModel.RepackInt4 = repack;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Compiled_model_packs_linear_only_q4_0_weights_prefill_bit_identical_decode_within_rounding(int threads)
    {
        int n = 96, k = 256, vocab = 24;
        var (dir, headOut, tiedOut, oddOut) = WriteModel(n, k, vocab);
        bool before = CompiledModel.RepackInt4;
        try
        {
            using var ir = IrModel.Load(dir);
            CompiledModel.RepackInt4 = false;
            using var plain = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 256, MaxBatch = 1 });
            CompiledModel.RepackInt4 = true;
            using var packed = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 256, MaxBatch = 1 });
            int Id(string name) => plain.ValueId(name);
            Assert.True(plain.InterleavedWeight(Id("w")) == null);
            bool on = KernelRuns;   // without AVX2+FMA nothing is packed
            Assert.Equal(on, packed.InterleavedWeight(Id("w")) != null);
            Assert.Equal(on, packed.InterleavedWeight(Id("odd")) != null);
            Assert.True(packed.InterleavedWeight(Id("head")) == null);  // K = 96: not whole units
            Assert.True(packed.InterleavedWeight(Id("emb")) == null);   // also read by the Embedding
            Assert.Equal(on ? QuantGemvInt4.X4Bytes(n, k) + QuantGemvInt4.X4Bytes(20, k) : 0, packed.InterleavedBytes);
            // 0: the defaults; 1: the widen-in-registers float GEMV (binds the original); 2: prefill through dequantized
            // panels (HUB_QUANT_GEMM=float: DequantizeRow on the copy)
            foreach (int mode in new[] { 0, 1, 2 })
            {
                bool forceFloat = mode == 1;
                bool ff = QuantLinearExec.ForceFloatPath, g4 = QuantLinearExec.UseInt4Gemm;
                QuantLinearExec.ForceFloatPath = forceFloat;
                QuantLinearExec.UseInt4Gemm = mode != 2;
                try
                {
                    using var r0 = plain.CreateInferRequest();
                    using var r1 = packed.CreateInferRequest();
                    var execs = r1.Executors.OfType<QuantLinearExec>().ToList();
                    Assert.Equal(4, execs.Count);   // w, head, the tied table's projection, odd
                    Assert.Equal(on && !forceFloat ? 2 : 0, execs.Count(e => e.Weight.Interleaved != null));
                    Assert.All(r0.Executors.OfType<QuantLinearExec>(), e => Assert.True(e.Weight.Interleaved == null));
                    X4Checks.AssertPackedMatchesUnpacked(r0, r1, vocab, forceFloat, headOut, tiedOut, oddOut);
                }
                finally { QuantLinearExec.ForceFloatPath = ff; QuantLinearExec.UseInt4Gemm = g4; }
            }
        }
        finally
        {
            CompiledModel.RepackInt4 = before;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>
/// Int4 prefill GEMM (panel repack + tiles) on the interleaved layout against the row-major original (HUB_BENCH=1
/// only; prints, asserts nothing about time): QuantGemmInt4 on one thread over HUB_BENCH_M × N × K (default 128 × 2048
/// × 5632, the 1b down projection), 16-row units as the executor hands them out, alternating over 9 rounds, median ratio.
/// </summary>
public unsafe class Int4X4PrefillBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Int4_x4_prefill_gemm_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "needs AVX2+FMA");
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128), n = BenchFeed.EnvInt("HUB_BENCH_N", 2048), k = BenchFeed.EnvInt("HUB_BENCH_K", 5632);
        var d = QuantKernelTests.RandomQ(true, n, k, 32, true, 1);
        var half = QuantKernelTests.HalfBits(d.Scales);
        var x = QuantKernelTests.Rand(m * k, 2);
        var act = new byte[QuantGemmInt4.ActivationBytes(m, k) + 64];
        var panel = new byte[QuantGemmInt4.PanelBytes(16, k) + 64];
        var y = new float[m * n];
        byte* x4 = (byte*)NativeMemory.AlignedAlloc((nuint)QuantGemvInt4.X4Bytes(n, k), 64);
        try
        {
            fixed (byte* dp = d.Data, a0 = act, p0 = panel)
            fixed (ushort* hp = half)
            fixed (float* xp = x, yp = y)
            {
                var w = new QuantMatrix(dp, hp, null, n, k, 32, true, true);
                QuantGemvInt4.InterleaveX4(w, x4, 0, n / 4);
                var wx = new QuantMatrix(w, x4);
                byte* a = (byte*)(((nint)a0 + 63) & ~(nint)63);
                byte* pp = (byte*)(((nint)p0 + 63) & ~(nint)63);
                QuantGemmInt4.QuantizeActivations(w, xp, m, a, 0, m);
                var t = new[] { new List<double>(), new List<double>() };
                var tr = new[] { new List<double>(), new List<double>() };
                for (int round = 0; round < 9; round++)
                    for (int v = 0; v < 2; v++)
                    {
                        int which = v ^ (round & 1);
                        var mat = which == 1 ? wx : w;
                        var sw = System.Diagnostics.Stopwatch.StartNew();
                        for (int n0 = 0; n0 < n; n0 += 16)
                        {
                            QuantGemmInt4.Repack(mat, n0, Math.Min(n, n0 + 16), pp);
                            QuantGemmInt4.GemmPacked(mat, m, a, pp, null, yp, n, 0, m, n0, Math.Min(n, n0 + 16));
                        }
                        t[which].Add(sw.Elapsed.TotalMilliseconds);
                        sw.Restart();
                        for (int n0 = 0; n0 < n; n0 += 16) QuantGemmInt4.Repack(mat, n0, Math.Min(n, n0 + 16), pp);
                        tr[which].Add(sw.Elapsed.TotalMilliseconds);
                    }
                var ratios = t[0].Zip(t[1], (o, i) => o / i).Order().ToList();
                output.WriteLine($"x4 int4 prefill GEMM {m}x{n}x{k}: row-major {t[0].Order().ElementAt(4):F2} ms, x4 {t[1].Order().ElementAt(4):F2} ms, speed x4/row-major median {ratios[4]:F3}; repack alone row-major {tr[0].Order().ElementAt(4):F2} ms, x4 {tr[1].Order().ElementAt(4):F2} ms");
            }
        }
        finally { NativeMemory.AlignedFree(x4); }
    }
}
