using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Hub.IR;
using Hub.Runtime.Execution;
using Hub.Runtime.Kernels;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// The 4-row interleaved Q8_0 layout (session 11, the compiled model's load-time repack): the x4 decode GEMV against the
/// scalar twin (which reads the layout through RowStart/Scale, bit-identical to the twin on the original), the current
/// VNNI pair kernel and a float64 loop, on N = 4·odd and K of 1–25 blocks, 1–4 activation rows and ranges not aligned to
/// 4 rows; the prefill GEMM and the float paths reading the layout bit-identically; and the executor: which weights
/// are packed, prefill bit-identical and decode within rounding of the unpacked model. Kernel category:
/// <see cref="IsaSweepTests"/> re-runs it without AVX-VNNI (nothing is packed, the twin reads the layout).
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class Int8X4Tests
{
    // The interleaved copy of a matrix (native, freed by the caller).
    private static byte* Interleave(in QuantMatrix w)
    {
        var dst = (byte*)NativeMemory.AlignedAlloc((nuint)QuantKernels.X4Bytes(w.N, w.K), 64);
        QuantKernels.InterleaveX4(w, dst, 0, w.N / 4);
        return dst;
    }

    // F16 scales, as the IR stores them (the only scales the layout takes).
    private static void WithHalfMatrix(QuantKernelTests.QData d, Action<QuantMatrix> body)
    {
        var half = QuantKernelTests.HalfBits(d.Scales);
        fixed (byte* p = d.Data)
        fixed (ushort* h = half)
            body(new QuantMatrix(p, h, null, d.N, d.K, 32, false, true));
    }

    private delegate void PackedBody(QuantMatrix w, byte* x4, byte* act);

    // The matrix with F16 scales, its interleaved copy and the m activation rows x quantized for the integer GEMVs.
    private static void WithPacked(QuantKernelTests.QData d, float[] x, int m, PackedBody body)
    {
        var buf = new byte[QuantKernels.ActivationBytes(m, d.K, d.K / 32) + 64];
        WithHalfMatrix(d, w =>
        {
            byte* x4 = Interleave(w);
            try
            {
                fixed (byte* b0 = buf)
                fixed (float* xp = x)
                {
                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                    QuantKernels.QuantizeActivations(w, xp, m, b);
                    body(w, x4, b);
                }
            }
            finally { NativeMemory.AlignedFree(x4); }
        });
    }

    [Fact]
    public void X4_gemv_matches_twin_pair_kernel_and_float64_on_odd_shapes()
    {
        foreach (int n in new[] { 4, 8, 12, 20, 36 })
            foreach (int k in new[] { 32, 64, 96, 800 })
                for (int m = 1; m <= Gemm.GemvMaxRows; m++)
                {
                    var d = QuantKernelTests.RandomQ(false, n, k, 32, true, n * 131 + k * 7 + m);
                    d.Data[0] = 0x80;          // -128: the flipped byte is 0
                    d.Data[^1] = 0x7F;
                    var x = QuantKernelTests.Rand(m * k, k + m);
                    var bias = QuantKernelTests.Rand(n, n + 1);
                    WithPacked(d, x, m, (w, x4, b) =>
                    {
                        var wx = new QuantMatrix(w, x4);
                        fixed (float* bp0 = bias)
                        {
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
                                var pair = new float[m * n];
                                if (AvxVnni.IsSupported) fixed (float* pp = pair) QuantKernels.GemvIntegerRowsAvx2(w, m, b, bp, pp, n, 0, n, true, int.MaxValue);
                                var ranges = new List<(int, int)> { (0, n), (1, n - 1), (2, 3) };
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
                                            if (!AvxVnni.IsSupported) { Assert.Equal(twin[at], y[at]); continue; }   // the twin runs
                                            double exact = withBias ? bias[j] : 0, scale = withBias ? Math.Abs(bias[j]) : 0;
                                            for (int c = 0; c < k; c++)
                                            {
                                                exact += d.Value(j, c) * dxs[i * (k / 32) + c / 32] * xq[i * k + c];
                                                scale += Math.Abs(x[i * k + c] * d.Value(j, c));
                                            }
                                            // the tolerance of the int8 GEMV tests: float accumulation in another order
                                            // (per-row FMA chains, the 128·Σx term per block in 4 lanes)
                                            double tol = 1e-5 * scale + 1e-6;
                                            Assert.True(Math.Abs(y[at] - twin[at]) <= tol, $"{what}: {y[at]} vs twin {twin[at]}");
                                            Assert.True(Math.Abs(y[at] - exact) <= tol, $"{what}: {y[at]} vs float64 {exact}");
                                            Assert.True(Math.Abs(y[at] - pair[at]) <= tol, $"{what}: {y[at]} vs pair kernel {pair[at]}");
                                        }
                                }
                            }
                        }
                    });
                }
    }

    [Fact]
    public void X4_gemv_is_exact_at_extreme_bytes_on_odd_shapes_and_unaligned_ranges()
    {
        // Weights of −128 and 127 (flipped: 0 and 255) against activations quantized to ±127 with dx = 1 and scales 1:
        // every block sum is an integer of up to 32·128·127 and every output an integer below 2^24, so the x4 kernel
        // (and the stream bench's X4C prototype: integer vphaddd of the 4 rows' lanes) must reproduce the float64 sum exactly.
        foreach (int n in new[] { 4, 12, 20 })
            foreach (int k in new[] { 32, 96, 800 })
                for (int m = 1; m <= Gemm.GemvMaxRows; m++)
                {
                    var d = QuantKernelTests.RandomQ(false, n, k, 32, true, n + k + m);
                    var rnd = new Random(n * 7 + k + m);
                    for (int i = 0; i < d.Data.Length; i++) d.Data[i] = rnd.Next(3) == 0 ? (byte)0x7F : (byte)0x80;
                    Array.Fill(d.Scales, 1f);
                    var x = new float[m * k];
                    for (int i = 0; i < x.Length; i++) x[i] = rnd.Next(2) == 0 ? 127f : -127f;
                    WithPacked(d, x, m, (w, x4, b) =>
                    {
                        foreach (var (n0, n1) in new[] { (0, n), (1, n - 1), (2, 3), (3, n) })
                        {
                            var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
                            var yc = Enumerable.Repeat(float.NaN, n).ToArray();
                            fixed (float* yp = y) QuantKernels.GemvInteger(new QuantMatrix(w, x4), m, b, null, yp, n, n0, n1);
                            // the stream bench's integer-reduction prototype (one activation row)
                            bool proto = m == 1 && AvxVnni.IsSupported && Fma.IsSupported;
                            if (proto) fixed (float* yp = yc) Int8StreamBench.X4C(x4, k, b, yp, n0, n1);
                            for (int i = 0; i < m; i++)
                                for (int j = n0; j < n1; j++)
                                {
                                    double exact = 0;
                                    for (int c = 0; c < k; c++) exact += d.Value(j, c) * x[i * k + c];
                                    Assert.True(exact == y[i * n + j], $"[{n},{k}] m={m} rows [{n0}, {n1}) ({i},{j}): {y[i * n + j]} vs {exact}");
                                    if (proto) Assert.True(exact == yc[j], $"X4C [{n},{k}] rows [{n0}, {n1}) row {j}: {yc[j]} vs {exact}");
                                }
                        }
                    });
                }
    }

    [SkippableFact]
    public void Half4_conversions_convert_every_finite_half_exactly()
    {
        Skip.IfNot(Sse41.IsSupported, "LoadHalf4 needs SSE4.1");
        // the x4 kernel's and the int8 GEMM's scale conversion, and the stream bench's 4-op one (Int8StreamBench
        // LoadHalf4C: sign-extend, shift, mask, × 2^112), against HalfToSingle and .NET's Half on every finite half:
        // ±0, subnormals, normals
        var h = new ushort[4];
        fixed (ushort* hp = h)
            for (int v = 0; v < 0x10000; v += 4)
            {
                for (int t = 0; t < 4; t++) h[t] = (ushort)(v + t);
                var f = QuantKernels.LoadHalf4(hp);
                var fc = Int8StreamBench.LoadHalf4C(hp);
                for (int t = 0; t < 4; t++)
                {
                    if ((h[t] & 0x7C00) == 0x7C00) continue;   // infinities and NaN: not mapped (the bind rejects them)
                    float want = (float)BitConverter.UInt16BitsToHalf(h[t]);
                    Assert.Equal(BitConverter.SingleToInt32Bits(want), BitConverter.SingleToInt32Bits(f.GetElement(t)));
                    Assert.Equal(BitConverter.SingleToInt32Bits(want), BitConverter.SingleToInt32Bits(fc.GetElement(t)));
                    Assert.Equal(BitConverter.SingleToInt32Bits(want), BitConverter.SingleToInt32Bits(QuantKernels.HalfToSingle(h[t])));
                }
            }
    }

    [SkippableFact]
    public void X4_gemv_sums_are_exact_integers_when_activations_have_a_large_mean()
    {
        Skip.IfNot(AvxVnni.IsSupported && Fma.IsSupported, "the x4 kernel needs AVX-VNNI");
        // The x4 kernel's integer block sums are exact (vpdpbusd on w + 128 from −128·Σx), as the AVX2 sign trick's:
        // the two differ only in float accumulation order, ~1e-7 of Σ|x·w| even at a mean of 30 (a float 128·Σx
        // correction, as the VNNI pair loop subtracts, was 10× further from the float64 sum there).
        foreach (int k in new[] { 768, 2048, 5632 })
        {
            int n = 12;
            var d = QuantKernelTests.RandomQ(false, n, k, 32, true, k + 1);
            var x = QuantKernelTests.Rand(k, 3).Select(v => v + 30f).ToArray();
            WithPacked(d, x, 1, (w, x4, b) =>
            {
                var y4 = new float[n];
                var ya = new float[n];
                fixed (float* p4 = y4, pa = ya)
                {
                    QuantKernels.GemvInteger(new QuantMatrix(w, x4), 1, b, null, p4, n, 0, n);
                    QuantKernels.GemvIntegerRowsAvx2(w, 1, b, null, pa, n, 0, n, false, null);
                }
                for (int j = 0; j < n; j++)
                {
                    double scale = 0;
                    for (int c = 0; c < k; c++) scale += Math.Abs(x[c] * d.Value(j, c));
                    Assert.True(Math.Abs(y4[j] - ya[j]) <= 1e-7 * scale + 1e-6, $"K {k} row {j}: x4 {y4[j]} vs sign trick {ya[j]} (Σ|x·w| {scale:E2})");
                }
            });
        }
    }

    [SkippableFact]
    public void Prefill_gemm_and_float_paths_read_the_layout_bit_identically()
    {
        Skip.IfNot(QuantGemmInt8.Fits(new QuantMatrix((byte*)16, (float*)16, null, 4, 32, 32, false, true)), "the int8 GEMM needs AVX2+FMA");
        foreach (var (n, k, m) in new[] { (4, 32, 5), (12, 96, 17), (36, 800, 9), (72, 128, 40) })
        {
            var d = QuantKernelTests.RandomQ(false, n, k, 32, true, n + k + m);
            var x = QuantKernelTests.Rand(m * k, m);
            var bias = QuantKernelTests.Rand(n, 3);
            var act = new byte[QuantKernels.ActivationBytes(m, k, k / 32) + 64];
            var scratch = new float[QuantGemmInt8.ScratchFloats(k) + 64];
            WithHalfMatrix(d, w =>
            {
                byte* x4 = Interleave(w);
                try
                {
                    var wx = new QuantMatrix(w, x4);
                    fixed (byte* a0 = act)
                    fixed (float* xp = x, bp = bias, sp0 = scratch)
                    {
                        byte* a = (byte*)(((nint)a0 + 63) & ~(nint)63);
                        float* sp = (float*)(((nint)sp0 + 63) & ~(nint)63);
                        QuantKernels.QuantizeActivations(w, xp, m, a);
                        var paths = QuantGemmInt8.UseVnni ? new[] { false, true } : new[] { false };
                        foreach (bool vnni in paths)
                        {
                            // the executor's 16-row units (8-row halves of whole 4-row groups, or one and padding:
                            // scales read from the block headers) and 6-row units (not aligned to the groups)
                            foreach (int unit in new[] { 16, 6 })
                            {
                                var y0 = new float[m * n];
                                var y1 = new float[m * n];
                                fixed (float* p0 = y0, p1 = y1)
                                    for (int n0 = 0; n0 < n; n0 += unit)
                                    {
                                        QuantGemmInt8.GemmOnPath(w, m, a, bp, p0, n, 0, m, n0, Math.Min(n, n0 + unit), sp, vnni);
                                        QuantGemmInt8.GemmOnPath(wx, m, a, bp, p1, n, 0, m, n0, Math.Min(n, n0 + unit), sp, vnni);
                                    }
                                Assert.Equal(y0, y1);
                            }
                        }
                        var r0 = new float[k];
                        var r1 = new float[k];
                        for (int j = 0; j < n; j++)
                        {
                            fixed (float* p0 = r0, p1 = r1) { QuantKernels.DequantizeRow(w, j, p0); QuantKernels.DequantizeRow(wx, j, p1); }
                            Assert.Equal(r0, r1);
                            for (int b = 0; b < k / 32; b++) Assert.Equal(w.Scale(j, b), wx.Scale(j, b));
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
                    }
                }
                finally { NativeMemory.AlignedFree(x4); }
            });
        }
    }

    [Fact]
    public void Layout_takes_only_symmetric_q8_0_with_f16_scales_and_rejects_bad_input()
    {
        byte* p = (byte*)64;
        ushort* h = (ushort*)64;
        Assert.True(QuantKernels.X4Fits(new QuantMatrix(p, h, null, 8, 64, 32, false, true)));
        Assert.False(QuantKernels.X4Fits(new QuantMatrix(p, h, null, 6, 64, 32, false, true)));     // ragged last group
        Assert.False(QuantKernels.X4Fits(new QuantMatrix(p, h, null, 8, 64, 64, false, true)));     // longer groups
        Assert.False(QuantKernels.X4Fits(new QuantMatrix(p, h, p, 8, 64, 32, false, false)));       // asymmetric
        Assert.True(QuantKernels.X4Fits(new QuantMatrix(p, (float*)h, null, 8, 64, 32, false, true)));    // F32 scales (f16-exact ones)
        Assert.False(QuantKernels.X4Fits(new QuantMatrix(p, h, null, 8, 64, 32, true, true)));      // int4
        Assert.Throws<ArgumentException>(() => new QuantMatrix(new QuantMatrix(p, h, null, 6, 64, 32, false, true), p));
        Assert.Throws<ArgumentNullException>(() => new QuantMatrix(new QuantMatrix(p, h, null, 8, 64, 32, false, true), null));
        var d = QuantKernelTests.RandomQ(false, 8, 64, 32, true, 5);
        var half = QuantKernelTests.HalfBits(d.Scales);
        half[3] = 0x7C00;   // +inf
        var dst = new byte[QuantKernels.X4Bytes(8, 64)];
        fixed (byte* dp = d.Data, o = dst)
        fixed (ushort* hp = half)
        {
            var w = new QuantMatrix(dp, hp, null, 8, 64, 32, false, true);
            byte* op = o;
            var e = Assert.Throws<InvalidOperationException>(() => QuantKernels.InterleaveX4(w, op, 0, 2));
            Assert.Contains("not finite", e.Message);
            Assert.Throws<ArgumentOutOfRangeException>(() => QuantKernels.InterleaveX4(w, op, 0, 3));
            Assert.Throws<ArgumentNullException>(() => QuantKernels.InterleaveX4(w, null, 0, 1));
        }
        // F32 scales: f16-exact ones interleave to the same bytes as their F16 bits, any other is refused
        var scales = d.Scales.ToArray();
        var h16 = QuantKernelTests.HalfBits(scales);
        var a = new byte[QuantKernels.X4Bytes(8, 64)];
        var b = new byte[QuantKernels.X4Bytes(8, 64)];
        fixed (byte* dp = d.Data, ap = a, bp = b)
        fixed (float* sp = scales)
        fixed (ushort* hp = h16)
        {
            var w32 = new QuantMatrix(dp, sp, null, 8, 64, 32, false, true);
            Assert.True(QuantKernels.ScalesAreHalves(w32));
            QuantKernels.InterleaveX4(w32, ap, 0, 2);
            QuantKernels.InterleaveX4(new QuantMatrix(dp, hp, null, 8, 64, 32, false, true), bp, 0, 2);
            Assert.Equal(b, a);
            sp[5] = 0.1f;   // not a half
            Assert.False(QuantKernels.ScalesAreHalves(w32));
            byte* op = ap;
            Assert.Throws<InvalidOperationException>(() => QuantKernels.InterleaveX4(w32, op, 0, 2));
        }
    }

    // Embedding "emb" [vocab, k] → Linear "w" [n, k] (+ bias) → Linear "emb" (a tied head: the table is its weight too).
    private static (string Dir, string Head, string Tied) WriteModel(int n, int k, int vocab, bool badScale = false)
    {
        var wq = QuantKernelTests.RandomQ(false, n, k, 32, true, 42);
        var tq = QuantKernelTests.RandomQ(false, vocab, n, 32, true, 43);
        var eq = QuantKernelTests.RandomQ(false, vocab, k, 32, true, 44);
        var bias = QuantKernelTests.Rand(n, 45);
        var b = new GraphBuilder("x4");
        var ids = b.Input("ids", DType.I32, "batch", "seq");
        var emb = b.Weight("emb", LazyTensor.FromArray(new float[vocab * k], new Shape(vocab, k), "emb"), WeightKind.Embedding);
        var w = b.Weight("w", LazyTensor.FromArray(new float[n * k], new Shape(n, k), "w"), WeightKind.Matrix);
        var head = b.Weight("head", LazyTensor.FromArray(new float[vocab * n], new Shape(vocab, n), "head"), WeightKind.Matrix);
        var bb = b.Weight("b", LazyTensor.FromArray(bias, new Shape(n), "b"), WeightKind.Vector);
        var h = b.Op(Ops.Embedding, "e", new[] { ids, emb });
        var y = b.Op(Ops.Linear, "lin", new[] { h, w, bb });
        var z = b.Op(Ops.Linear, "lm", new[] { y, head });
        var t = b.Op(Ops.Linear, "tied", new[] { h, emb });   // reads the embedding table as a weight: never packed
        b.Output(z, DType.F32);
        b.Output(t, DType.F32);
        var dir = Path.Combine(Path.GetTempPath(), "hub-x4-" + Guid.NewGuid().ToString("N"));
        IrFormat.Write(dir, b.Build(), new IrWriteOptions
        {
            Encoder = (p, _) =>
            {
                var q = p.Name switch { "w" => wq, "head" => tq, "emb" => eq, _ => null };
                if (q is null) return null;
                var quant = new Quantization("int8", 32, true, p.Name + ".scales", null);
                var sb = new byte[q.Scales.Length * 2];
                Buffer.BlockCopy(QuantKernelTests.HalfBits(q.Scales), 0, sb, 0, sb.Length);
                if (badScale && p.Name == "w") { sb[6] = 0x00; sb[7] = 0x7C; }   // scale 3: +inf
                return new List<EncodedWeight>
                {
                    new(p.Name, DType.I8, new Shape(q.N, q.K), q.Data, quant),
                    new(quant.Scales, DType.F16, new Shape(q.N, q.Groups), sb, null),
                };
            },
        });
        return (dir, z, t);
    }

    [SkippableFact]
    public void Compile_reports_a_non_finite_scale_of_a_packed_weight_as_a_format_error()
    {
        Skip.IfNot(AvxVnni.IsSupported, "weights are packed on AVX-VNNI only");
        var (dir, _, _) = WriteModel(96, 160, 20, badScale: true);
        try
        {
            using var ir = IrModel.Load(dir);
            var e = Assert.Throws<IrFormatException>(() => CompiledModel.Compile(ir, new RuntimeOptions { Threads = 2, MaxContext = 64, MaxBatch = 1 }));
            Assert.Contains("not finite", e.Message);
            Assert.Contains("'w'", e.Message);
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Compiled_model_packs_linear_only_q8_0_weights_prefill_bit_identical_decode_within_rounding(int threads)
    {
        int n = 96, k = 160, vocab = 20;
        var (dir, headOut, tiedOut) = WriteModel(n, k, vocab);
        bool before = CompiledModel.RepackInt8;
        try
        {
            using var ir = IrModel.Load(dir);
            CompiledModel.RepackInt8 = false;
            using var plain = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 256, MaxBatch = 1 });
            CompiledModel.RepackInt8 = true;
            using var packed = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 256, MaxBatch = 1 });
            int Id(string name) => plain.ValueId(name);
            Assert.True(plain.InterleavedWeight(Id("w")) == null);
            bool vnni = AvxVnni.IsSupported;
            Assert.Equal(vnni, packed.InterleavedWeight(Id("w")) != null);
            Assert.Equal(vnni, packed.InterleavedWeight(Id("head")) != null);
            Assert.True(packed.InterleavedWeight(Id("emb")) == null);   // also read by the Embedding
            Assert.Equal(vnni ? QuantKernels.X4Bytes(n, k) + QuantKernels.X4Bytes(vocab, n) : 0, packed.InterleavedBytes);
            // 0: the defaults; 1: the widen-in-registers float GEMV (reads the original); 2: prefill through dequantized
            // panels (DequantizeRow on the copy)
            foreach (int mode in new[] { 0, 1, 2 })
            {
                bool forceFloat = mode == 1;
                bool ff = QuantLinearExec.ForceFloatPath, bc = QuantLinearExec.UseInt8Broadcast;
                QuantLinearExec.ForceFloatPath = forceFloat;
                QuantLinearExec.UseInt8Broadcast = mode != 2;
                try
                {
                    using var r0 = plain.CreateInferRequest();
                    using var r1 = packed.CreateInferRequest();
                    // the executors really read the copy (a compiled copy nobody binds would pass the value checks)
                    var execs = r1.Executors.OfType<QuantLinearExec>().ToList();
                    Assert.Equal(3, execs.Count);   // w, head and the tied table's projection (not packed)
                    Assert.Equal(vnni && !forceFloat ? 2 : 0, execs.Count(e => e.Weight.Interleaved != null));
                    Assert.All(r0.Executors.OfType<QuantLinearExec>(), e => Assert.True(e.Weight.Interleaved == null));
                    X4Checks.AssertPackedMatchesUnpacked(r0, r1, vocab, forceFloat, headOut, tiedOut);
                }
                finally { QuantLinearExec.ForceFloatPath = ff; QuantLinearExec.UseInt8Broadcast = bc; }
            }
        }
        finally
        {
            CompiledModel.RepackInt8 = before;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>
/// Prefill GEMM on the interleaved layout against the row-major original (HUB_BENCH=1 only; prints, asserts nothing
/// about time): QuantGemmInt8 on one thread over HUB_BENCH_M × N × K (default 128 × 2048 × 5632, the 1b down
/// projection), 16-row units as the executor hands them out, alternating over 9 rounds, median ratio.
/// </summary>
public unsafe class Int8X4PrefillBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void X4_prefill_gemm_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        Skip.IfNot(QuantGemmInt8.UseVnni, "the x4 layout needs AVX-VNNI");
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128), n = BenchFeed.EnvInt("HUB_BENCH_N", 2048), k = BenchFeed.EnvInt("HUB_BENCH_K", 5632);
        var d = QuantKernelTests.RandomQ(false, n, k, 32, true, 1);
        var half = QuantKernelTests.HalfBits(d.Scales);
        var x = QuantKernelTests.Rand(m * k, 2);
        var act = new byte[QuantKernels.ActivationBytes(m, k, k / 32) + 64];
        var scratch = new float[QuantGemmInt8.ScratchFloats(k) + 64];
        var y = new float[m * n];
        byte* x4 = (byte*)NativeMemory.AlignedAlloc((nuint)QuantKernels.X4Bytes(n, k), 64);
        try
        {
            fixed (byte* dp = d.Data, a0 = act)
            fixed (ushort* hp = half)
            fixed (float* xp = x, s0 = scratch, yp = y)
            {
                var w = new QuantMatrix(dp, hp, null, n, k, 32, false, true);
                QuantKernels.InterleaveX4(w, x4, 0, n / 4);
                var wx = new QuantMatrix(w, x4);
                byte* a = (byte*)(((nint)a0 + 63) & ~(nint)63);
                float* sp = (float*)(((nint)s0 + 63) & ~(nint)63);
                QuantKernels.QuantizeActivations(w, xp, m, a);
                var t = new[] { new List<double>(), new List<double>() };
                for (int round = 0; round < 9; round++)
                    for (int v = 0; v < 2; v++)
                    {
                        int which = v ^ (round & 1);
                        var mat = which == 1 ? wx : w;
                        var sw = System.Diagnostics.Stopwatch.StartNew();
                        for (int n0 = 0; n0 < n; n0 += QuantGemmInt8.Rows)
                            QuantGemmInt8.GemmOnPath(mat, m, a, null, yp, n, 0, m, n0, Math.Min(n, n0 + QuantGemmInt8.Rows), sp, true);
                        t[which].Add(sw.Elapsed.TotalMilliseconds);
                    }
                var ratios = t[0].Zip(t[1], (o, i) => o / i).Order().ToList();
                output.WriteLine($"x4 prefill GEMM {m}x{n}x{k}: row-major {t[0].Order().ElementAt(4):F2} ms, x4 {t[1].Order().ElementAt(4):F2} ms, speed x4/row-major median {ratios[4]:F3}");
            }
        }
        finally { NativeMemory.AlignedFree(x4); }
    }
}

/// <summary>Checks shared by the Q8_0 and Q4_0 compiled-model repack tests.</summary>
internal static class X4Checks
{
    /// <summary>
    /// Feeds 1, 3 and 37 tokens to an unpacked request <paramref name="r0"/> and a packed one <paramref name="r1"/> and
    /// compares <paramref name="outputs"/>: prefill (and the float paths) read the same values in the same order, so
    /// they are bit-identical; decode rows (seq ≤ GemvMaxRows) carry the x4 GEMV's rounding.
    /// </summary>
    internal static void AssertPackedMatchesUnpacked(InferRequest r0, InferRequest r1, int vocab, bool forceFloat, params string[] outputs)
    {
        foreach (int seq in new[] { 1, 3, 37 })
        {
            var tokens = Enumerable.Range(0, seq).Select(i => (i * 7 + seq) % vocab).ToArray();
            foreach (var r in new[] { r0, r1 }) { r.SetInput("ids", tokens, 1, seq); r.Infer(); }
            foreach (var o in outputs)
            {
                var a = r0.GetOutput(o).ToArray();
                var b = r1.GetOutput(o).ToArray();
                Assert.Equal(a.Length, b.Length);
                if (seq > Gemm.GemvMaxRows || forceFloat) Assert.Equal(a, b);
                else
                {
                    double amax = a.Max(v => Math.Abs(v));
                    for (int i = 0; i < a.Length; i++)
                        Assert.True(Math.Abs(a[i] - b[i]) <= 1e-4 * amax + 1e-6, $"{o} seq {seq} [{i}]: {a[i]} vs {b[i]}");
                }
            }
        }
    }
}
