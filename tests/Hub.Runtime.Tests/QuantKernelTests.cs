using Hub.IR;
using Hub.Runtime.Kernels;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// int8/int4 kernels against their scalar twins and a float64 dequantize-then-matmul loop, for every scheme, group and
/// symmetry on odd shapes; then the executor's GEMV and prefill paths through a compiled graph.
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class QuantKernelTests
{
    /// <summary>Random stored values in the layout of docs/quantization.md (what the exporter would write).</summary>
    internal sealed record QData(bool Int4, int N, int K, int Group, bool Sym, byte[] Data, float[] Scales, byte[]? Zeros)
    {
        public int GL => Group == 0 ? K : Group;
        public int Groups => K / GL;
        public string Scheme => Int4 ? "int4" : "int8";

        public double Value(int r, int c)
        {
            int g = c / GL;
            int q;
            if (Int4)
            {
                int run = c / 32 * 32, j = c - run;
                byte b = Data[(r * K + run) / 2 + (j & 15)];
                q = (j < 16 ? b & 15 : b >> 4) - (Sym ? 8 : Zeros![r * Groups + g]);
            }
            else q = Sym ? (sbyte)Data[r * K + c] : Data[r * K + c] - Zeros![r * Groups + g];
            return q * (double)Scales[r * Groups + g];
        }
    }

    internal static QData RandomQ(bool int4, int n, int k, int group, bool sym, int seed)
    {
        var rnd = new Random(seed);
        int gl = group == 0 ? k : group, groups = k / gl;
        var data = new byte[int4 ? n * k / 2 : n * k];
        if (int4) rnd.NextBytes(data);
        else for (int i = 0; i < data.Length; i++) data[i] = sym ? (byte)(sbyte)rnd.Next(-127, 128) : (byte)rnd.Next(0, 256);
        var scales = new float[n * groups];
        for (int i = 0; i < scales.Length; i++) scales[i] = (float)(Half)((rnd.NextDouble() * 0.02 + 0.001) * (rnd.Next(2) * 2 - 1));
        if (scales.Length > 1) scales[^1] = 0f;   // an all-zero group
        if (scales.Length > 2) scales[^2] = (float)BitConverter.UInt16BitsToHalf(0x0123);   // an f16 subnormal
        if (scales.Length > 3) scales[^3] = -(float)BitConverter.UInt16BitsToHalf(0x0001);  // the smallest negative one
        byte[]? zeros = null;
        if (!sym)
        {
            zeros = new byte[n * groups];
            for (int i = 0; i < zeros.Length; i++) zeros[i] = (byte)rnd.Next(0, int4 ? 16 : 256);
        }
        return new QData(int4, n, k, group, sym, data, scales, zeros);
    }

    /// <summary>Uniform values in [−2, 2) from <paramref name="seed"/> (activations and biases of the quantized-kernel tests).</summary>
    internal static float[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray();
    }

    private static IEnumerable<(bool Int4, bool Sym, int Group, int N, int K)> Cases()
    {
        foreach (bool int4 in new[] { false, true })
            foreach (bool sym in new[] { true, false })
                foreach (int group in new[] { 0, 32, 64, 128 })
                    foreach (int n in new[] { 1, 7, 37 })
                        foreach (int k in new[] { 32, 96, 128, 256, 384 })
                            if (group == 0 || k % group == 0) yield return (int4, sym, group, n, k);
    }

    /// <summary>Runs <paramref name="body"/> on the matrix with F16 scales (the IR format), then with the same scales as F32 (older IRs).</summary>
    internal static void WithMatrix(QData d, Action<QuantMatrix> body)
    {
        var half = HalfBits(d.Scales);
        fixed (byte* p = d.Data)
        fixed (float* s = d.Scales)
        fixed (ushort* h = half)
        fixed (byte* z = d.Zeros)
        {
            body(new QuantMatrix(p, h, d.Sym ? null : z, d.N, d.K, d.Group, d.Int4, d.Sym));
            body(new QuantMatrix(p, s, d.Sym ? null : z, d.N, d.K, d.Group, d.Int4, d.Sym));
        }
    }

    /// <summary>The f16 bits of f16-exact scales (asserts exactness: the kernels must see the same values either way).</summary>
    internal static ushort[] HalfBits(float[] scales)
    {
        var h = new ushort[scales.Length];
        for (int i = 0; i < h.Length; i++)
        {
            Assert.Equal(scales[i], (float)(Half)scales[i]);
            h[i] = BitConverter.HalfToUInt16Bits((Half)scales[i]);
        }
        return h;
    }

    [Fact]
    public void Half_to_single_is_exact_for_every_finite_half()
    {
        var src = new ushort[65536];
        int n = 0;
        for (int i = 0; i < 65536; i++)
            if (Half.IsFinite(BitConverter.UInt16BitsToHalf((ushort)i))) src[n++] = (ushort)i;
        var dst = new float[n];
        fixed (ushort* sp = src) fixed (float* dp = dst) QuantKernels.HalfToSingle(sp, dp, n);
        for (int i = 0; i < n; i++)
        {
            float exp = (float)BitConverter.UInt16BitsToHalf(src[i]);
            Assert.Equal(BitConverter.SingleToInt32Bits(exp), BitConverter.SingleToInt32Bits(dst[i]));
            Assert.Equal(BitConverter.SingleToInt32Bits(exp), BitConverter.SingleToInt32Bits(QuantKernels.HalfToSingle(src[i])));
        }
    }

    [Fact]
    public void F16_and_f32_scales_give_identical_results_in_every_kernel()
    {
        foreach (var (int4, sym, group) in new[] { (true, true, 32), (false, true, 32), (true, false, 64), (false, false, 0), (true, true, 128), (false, false, 96) })
        {
            int n = 9, k = 384, m = 3;
            var d = RandomQ(int4, n, k, group, sym, 5 + group);
            var x = Rand(m * k, 6);
            var outs = new List<float[]>();
            var buf = new byte[Math.Max(QuantGemmInt4.ActivationBytes(m, k), QuantKernels.ActivationBytes(m, k, d.Groups)) + 64];
            var scratch = new float[Math.Max(QuantGemmInt4.PanelBytes(n, k) / 4 + 16, QuantGemmInt8.ScratchFloats(k))];
            var xs = new float[m * d.Groups];
            WithMatrix(d, w =>
            {
                var o = new float[5 * m * n + n * k];
                fixed (byte* b0 = buf)
                fixed (float* xp = x, op = o, sp = scratch, xsp = xs)
                {
                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                    QuantKernels.QuantizeActivations(w, xp, m, b);
                    QuantKernels.GemvInteger(w, m, b, null, op, n, 0, n);
                    QuantKernels.GemvIntegerReference(w, m, b, null, op + m * n, n, 0, n);
                    QuantKernels.GemvFloat(w, xp, m, null, op + 2 * m * n, n, 0, n, sp);
                    if (System.Runtime.Intrinsics.X86.Fma.IsSupported)
                    {
                        QuantKernels.GroupSums(xp, m, k, w.GroupLength, xsp);
                        QuantKernels.GemvFloatRegisters(w, xp, m, xsp, null, op + 3 * m * n, n, 0, n);
                    }
                    if (QuantGemmInt4.Fits(w))
                    {
                        QuantGemmInt4.QuantizeActivations(w, xp, m, b, 0, m);
                        QuantGemmInt4.Gemm(w, m, b, null, op + 4 * m * n, n, 0, m, 0, n, (byte*)(((nint)sp + 63) & ~(nint)63));
                    }
                    if (QuantGemmInt8.Fits(w))
                    {
                        QuantKernels.QuantizeActivations(w, xp, m, b);
                        QuantGemmInt8.Gemm(w, m, b, null, op + 4 * m * n, n, 0, m, 0, n, sp);
                    }
                    QuantKernels.DequantizeRows(w, 0, n, op + 5 * m * n);
                }
                outs.Add(o);
            });
            Assert.Equal(2, outs.Count);
            for (int i = 0; i < outs[0].Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(outs[0][i]) == BitConverter.SingleToInt32Bits(outs[1][i]),
                    $"{d.Scheme} sym={sym} g={group} output {i}: f16 scales {outs[0][i]}, f32 scales {outs[1][i]}");
        }
    }

    private static double[] Reference(QData d, float[] x, int m, float[]? bias)
    {
        var y = new double[m * d.N];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < d.N; j++)
            {
                double s = bias?[j] ?? 0;
                for (int c = 0; c < d.K; c++) s += x[i * d.K + c] * d.Value(j, c);
                y[i * d.N + j] = s;
            }
        return y;
    }

    private static double AbsSum(QData d, float[] x, int i, int j)
    {
        double s = 0;
        for (int c = 0; c < d.K; c++) s += Math.Abs(x[i * d.K + c] * d.Value(j, c));
        return s;
    }

    [Fact]
    public void Dequantize_row_matches_twin_and_layout_for_every_scheme()
    {
        foreach (var (int4, sym, group, n, k) in Cases())
        {
            var d = RandomQ(int4, n, k, group, sym, n * 1000 + k + group);
            var fast = new float[k]; var twin = new float[k];
            WithMatrix(d, w =>
            {
                for (int r = 0; r < n; r++)
                {
                    fixed (float* f = fast) QuantKernels.DequantizeRow(w, r, f);
                    fixed (float* t = twin) QuantKernels.DequantizeRowReference(w, r, t);
                    for (int c = 0; c < k; c++)
                    {
                        Assert.Equal(twin[c], fast[c]);
                        Assert.Equal((float)d.Value(r, c), twin[c]);
                    }
                }
            });
        }
    }

    [Fact]
    public void Activation_quantization_is_within_half_a_step_per_block()
    {
        foreach (int k in new[] { 32, 64, 224 })
        {
            int m = 3;
            var x = Rand(m * k, k);
            x[5] = 0; x[k + 7] = 2f;   // a tie-free exact value and an extreme
            for (int c = 0; c < 32; c++) x[2 * k + c] = 0;   // an all-zero block
            var buf = new byte[QuantKernels.ActivationBytes(m, k, k / 32) + 64];
            fixed (byte* b0 = buf)
            fixed (float* xp = x)
            {
                byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                QuantKernels.QuantizeActivations(xp, m, k, 32, b);
                sbyte* q = (sbyte*)b;
                float* dx = (float*)(b + ((m * k + 63) & ~63));
                for (int i = 0; i < m * k; i++)
                {
                    float d = dx[i / 32];
                    Assert.InRange(q[i], -127, 127);
                    Assert.True(Math.Abs(q[i] * d - x[i]) <= d * 0.5f * 1.0001f + 1e-7f, $"k {k} value {i}: {x[i]} vs {q[i]}·{d}");
                }
                float* xs = dx + m * (k / 32);
                for (int i = 0; i < m; i++)
                    for (int g = 0; g < k / 32; g++)
                    {
                        double e = 0;
                        for (int c = 0; c < 32; c++) e += q[i * k + g * 32 + c];
                        Assert.Equal(e * dx[i * (k / 32) + g], xs[i * (k / 32) + g], 4);
                    }
            }
        }
    }

    [Fact]
    public void Nibble_pair_order_is_a_permutation_of_natural_order_per_block_pair()
    {
        foreach (int k in new[] { 32, 64, 96, 224, 256 })
        {
            int m = 2, blocks = k / 32;
            var x = Rand(m * k, k + 3);
            var natural = new byte[QuantKernels.ActivationBytes(m, k, blocks) + 64];
            var paired = new byte[natural.Length];
            var d = RandomQ(true, 1, k, 32, true, k);
            WithMatrix(d, w =>
            {
                fixed (byte* n0 = natural, p0 = paired)
                fixed (float* xp = x)
                {
                    byte* n = (byte*)(((nint)n0 + 63) & ~(nint)63), p = (byte*)(((nint)p0 + 63) & ~(nint)63);
                    QuantKernels.QuantizeActivations(xp, m, k, 32, n);
                    QuantKernels.QuantizeActivations(w, xp, m, p);
                    var seen = new bool[k];
                    for (int c = 0; c < k; c++)
                    {
                        int at = QuantKernels.ActivationPosition(c, blocks, true);
                        Assert.InRange(at, c / 64 * 64, c / 64 * 64 + 63);   // stays inside its block pair
                        Assert.False(seen[at]);
                        seen[at] = true;
                        for (int i = 0; i < m; i++) Assert.Equal(((sbyte*)n)[i * k + c], ((sbyte*)p)[i * k + at]);
                    }
                    // the packed layout of a 32-byte load: low nibbles = [b 0..15 | b+1 0..15]
                    if (blocks >= 2) { Assert.Equal(16, QuantKernels.ActivationPosition(32, blocks, true)); Assert.Equal(32, QuantKernels.ActivationPosition(16, blocks, true)); }
                    if (blocks % 2 == 1) Assert.Equal(k - 1, QuantKernels.ActivationPosition(k - 1, blocks, true));
                    // scales and group sums do not depend on the order
                    int tail = (m * k + 63) & ~63;
                    for (int t = 0; t < 2 * m * blocks * 4; t++) Assert.Equal(n[tail + t], p[tail + t]);
                }
            });
        }
    }

    [Fact]
    public void Integer_gemv_matches_twin_beyond_one_scale_chunk()
    {
        // K = 8288: 259 blocks, more than twice the 128 whose combined scales one pass stages at once, and an odd count
        // (int4: the trailing natural-order block in the last chunk, after a staging remainder of 3 blocks)
        foreach (var (int4, sym, group) in new[] { (true, true, 32), (false, true, 32), (true, false, 32), (false, false, 32), (true, false, 0), (false, false, 224), (true, false, 224), (false, true, 0) })
        {
            int n = 5, k = 8288, m = 2;
            var d = RandomQ(int4, n, k, group, sym, group + (int4 ? 1 : 0));
            var x = Rand(m * k, 77);
            var fast = new float[m * n]; var twin = new float[m * n];
            var buf = new byte[QuantKernels.ActivationBytes(m, k, d.Groups) + 64];
            var exp = Reference(d, x, m, null);
            WithMatrix(d, w =>
            {
                fixed (byte* b0 = buf)
                fixed (float* xp = x, fp = fast, tp = twin)
                {
                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                    QuantKernels.QuantizeActivations(w, xp, m, b);
                    QuantKernels.GemvInteger(w, m, b, null, fp, n, 0, n);
                    QuantKernels.GemvIntegerReference(w, m, b, null, tp, n, 0, n);
                }
            });
            for (int i = 0; i < m * n; i++)
            {
                double scale = AbsSum(d, x, i / n, i % n);
                Assert.True(Math.Abs(fast[i] - twin[i]) <= 1e-5 * scale + 1e-6, $"{d.Scheme} sym={sym} g={group}: fast {fast[i]} twin {twin[i]}");
                Assert.True(Math.Abs(fast[i] - exp[i]) <= 0.01 * scale + 1e-4, $"{d.Scheme} sym={sym} g={group}: {fast[i]} vs {exp[i]}");
            }
        }
    }

    [Fact]
    public void Integer_gemv_matches_twin_and_float64_within_activation_rounding()
    {
        foreach (var (int4, sym, group, n, k) in Cases())
            foreach (int m in new[] { 1, 3, 4 })
            {
                var d = RandomQ(int4, n, k, group, sym, n * 7919 + k * 31 + group + m);
                var x = Rand(m * k, n + k + m);
                var bias = Rand(n, 5);
                var exp = Reference(d, x, m, bias);
                var fast = new float[m * n]; var twin = new float[m * n];
                var buf = new byte[QuantKernels.ActivationBytes(m, k, d.Groups) + 64];
                WithMatrix(d, w =>
                {
                    fixed (byte* b0 = buf)
                    fixed (float* xp = x, bp = bias, fp = fast, tp = twin)
                    {
                        byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                        QuantKernels.QuantizeActivations(w, xp, m, b);
                        // split the rows as the executor does: [0, 3) and [3, n)
                        int split = Math.Min(3, n);
                        QuantKernels.GemvInteger(w, m, b, bp, fp, n, 0, split);
                        QuantKernels.GemvInteger(w, m, b, bp, fp, n, split, n);
                        QuantKernels.GemvIntegerReference(w, m, b, bp, tp, n, 0, n);
                    }
                });
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        int at = i * n + j;
                        double scale = AbsSum(d, x, i, j) + Math.Abs(bias[j]);
                        Assert.True(Math.Abs(fast[at] - twin[at]) <= 1e-5 * scale + 1e-6, $"{d.Scheme} sym={sym} g={group} [{n},{k}] m={m} ({i},{j}): fast {fast[at]} twin {twin[at]}");
                        // activations carry ≤ half a step of their block scale (amax/127) per value
                        double bound = 0;
                        for (int c = 0; c < k; c++)
                        {
                            double amax = 0;
                            for (int t = c / 32 * 32; t < c / 32 * 32 + 32; t++) amax = Math.Max(amax, Math.Abs(x[i * k + t]));
                            bound += Math.Abs(d.Value(j, c)) * amax / 127 * 0.5;
                        }
                        Assert.True(Math.Abs(fast[at] - exp[at]) <= bound * 1.001 + 1e-5 * scale + 1e-6, $"{d.Scheme} sym={sym} g={group} [{n},{k}] m={m} ({i},{j}): {fast[at]} vs {exp[at]} (bound {bound})");
                    }
            }
    }

    [Fact]
    public void Integer_gemv_matches_twin_on_row_ranges_that_split_its_four_row_passes()
    {
        // The AVX2 GEMV computes four output rows per pass: ranges that start and end off a multiple of four, short
        // ranges (a last pass repeating its last row), odd block counts (int4's trailing natural-order block), group
        // lengths of one block, of even and odd block counts (int4 pairs straddling groups: 96) and per channel.
        var shapes = new (int Group, int K)[] { (32, 32), (32, 96), (32, 320), (64, 192), (96, 288), (128, 384), (0, 96), (0, 160), (0, 256) };
        foreach (bool int4 in new[] { false, true })
            foreach (bool sym in new[] { true, false })
                foreach (var (group, k) in shapes)
                    foreach (int m in new[] { 1, 2, 3, 4 })
                    {
                        int n = 11;
                        var d = RandomQ(int4, n, k, group, sym, k * 13 + group + m + (int4 ? 1 : 0) + (sym ? 2 : 0));
                        var x = Rand(m * k, k + m);
                        var bias = Rand(n, 9);
                        var twin = new float[m * n];
                        var buf = new byte[QuantKernels.ActivationBytes(m, k, d.Groups) + 64];
                        foreach (var (n0, n1) in new[] { (0, 11), (1, 10), (2, 5), (3, 4), (5, 11), (0, 8), (4, 7) })
                        {
                            var fast = Enumerable.Repeat(float.NaN, m * n).ToArray();
                            WithMatrix(d, w =>
                            {
                                fixed (byte* b0 = buf)
                                fixed (float* xp = x, bp = bias, fp = fast, tp = twin)
                                {
                                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                                    QuantKernels.QuantizeActivations(w, xp, m, b);
                                    QuantKernels.GemvInteger(w, m, b, (n0 & 1) == 0 ? bp : null, fp, n, n0, n1);
                                    QuantKernels.GemvIntegerReference(w, m, b, (n0 & 1) == 0 ? bp : null, tp, n, 0, n);
                                }
                            });
                            for (int i = 0; i < m; i++)
                                for (int j = 0; j < n; j++)
                                {
                                    int at = i * n + j;
                                    string what = $"{d.Scheme} sym={sym} g={group} K={k} m={m} rows [{n0}, {n1}) ({i},{j})";
                                    if (j < n0 || j >= n1) { Assert.True(float.IsNaN(fast[at]), $"{what}: wrote outside its rows"); continue; }
                                    double scale = AbsSum(d, x, i, j) + Math.Abs(bias[j]);
                                    Assert.True(Math.Abs(fast[at] - twin[at]) <= 1e-5 * scale + 1e-6, $"{what}: fast {fast[at]} twin {twin[at]}");
                                }
                        }
                    }
    }

    [SkippableFact]
    public void Int4_gemm_activations_quantized_in_row_ranges_match_one_pass()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        const int m = 13, k = 256, n = 3;
        var d = RandomQ(true, n, k, 32, true, 77);
        var x = Rand(m * k, 5);
        long bytes = QuantGemmInt4.ActivationBytes(m, k) + 64;
        var whole = new byte[bytes]; var split = new byte[bytes];
        WithMatrix(d, w =>
        {
            fixed (float* xp = x)
            fixed (byte* a = whole, b = split)
            {
                QuantGemmInt4.QuantizeActivations(w, xp, m, a, 0, m);
                // uneven ranges as the executor's workers take them, in reverse order
                QuantGemmInt4.QuantizeActivations(w, xp, m, b, 9, 13);
                QuantGemmInt4.QuantizeActivations(w, xp, m, b, 4, 9);
                QuantGemmInt4.QuantizeActivations(w, xp, m, b, 0, 4);
                bool threw = false;
                try { QuantGemmInt4.QuantizeActivations(w, xp, m, b, 4, 14); }
                catch (ArgumentOutOfRangeException) { threw = true; }
                Assert.True(threw, "rows past m must be rejected");
            }
        });
        Assert.Equal(whole, split);
    }

    [SkippableFact]
    public void Prefill_gemms_reject_bad_ranges_and_missing_buffers_naming_the_argument()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "the prefill GEMMs need AVX2+FMA");
        // int8 here; the int4 GEMM's argument checks are in QuantGemmInt4Tests
        foreach (bool int4 in new[] { false })
        {
            var d = RandomQ(int4, 3, 128, 32, true, 9);
            var act = new byte[QuantKernels.ActivationBytes(2, 128, 4) + 64];
            var y = new float[2 * 3];
            var scratch = new float[Math.Max(Gemm.ScratchFloats(128) + 64, QuantGemmInt8.ScratchFloats(128))];
            WithMatrix(d, w =>
            {
                fixed (byte* a = act)
                fixed (float* yp = y, sp = scratch)
                {
                    byte* ap = a; float* yq = yp, sq = sp;
                    void Call(int m1, int n1, int ldy, byte* pa, float* py, float* ps)
                    {
                        QuantGemmInt8.Gemm(w, 2, pa, null, py, ldy, 0, m1, 0, n1, ps);
                    }
                    Assert.Equal("m1", Assert.Throws<ArgumentOutOfRangeException>(() => Call(3, 3, 3, ap, yq, sq)).ParamName);
                    Assert.Equal("n1", Assert.Throws<ArgumentOutOfRangeException>(() => Call(2, 4, 4, ap, yq, sq)).ParamName);
                    Assert.Equal("ldy", Assert.Throws<ArgumentOutOfRangeException>(() => Call(2, 3, 2, ap, yq, sq)).ParamName);
                    Assert.Equal("act", Assert.Throws<ArgumentNullException>(() => Call(2, 3, 3, null, yq, sq)).ParamName);
                    Assert.Equal("y", Assert.Throws<ArgumentNullException>(() => Call(2, 3, 3, ap, null, sq)).ParamName);
                    Assert.Equal("scratch", Assert.Throws<ArgumentNullException>(() => Call(2, 3, 3, ap, yq, null)).ParamName);
                    Call(0, 0, 3, null, null, null);   // an empty range addresses nothing
                }
            });
        }
    }

    [Fact]
    public void Float_gemv_matches_float64_on_any_K()
    {
        var shapes = Cases().Select(c => (c.Int4, c.Sym, c.Group, c.N, c.K))
            .Concat(new[] { (false, true, 0, 5, 37), (false, false, 0, 9, 172), (false, true, 7, 3, 21), (false, false, 5, 4, 15) });
        foreach (var (int4, sym, group, n, k) in shapes)
            foreach (int m in new[] { 1, 4 })
            {
                var d = RandomQ(int4, n, k, group, sym, n * 31 + k + group * 3 + m);
                var x = Rand(m * k, n * k + m);
                var exp = Reference(d, x, m, null);
                var y = new float[m * n];
                var scratch = new float[k + 16];
                WithMatrix(d, w =>
                {
                    fixed (float* xp = x, yp = y, sp = scratch) QuantKernels.GemvFloat(w, xp, m, null, yp, n, 0, n, sp);
                });
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                        Assert.True(Math.Abs(y[i * n + j] - exp[i * n + j]) <= 1e-5 * AbsSum(d, x, i, j) + 1e-6, $"{d.Scheme} g={group} [{n},{k}] m={m}: {y[i * n + j]} vs {exp[i * n + j]}");
            }
    }

    [SkippableFact]
    public void Float_in_register_gemv_matches_float64()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs AVX2+FMA");
        foreach (var (int4, sym, group, n, k) in Cases())
            foreach (int m in new[] { 1, 3 })
            {
                var d = RandomQ(int4, n, k, group, sym, n * 17 + k + group * 5 + m);
                var x = Rand(m * k, n * k + m + 1);
                var bias = Rand(n, 9);
                var exp = Reference(d, x, m, bias);
                var y = new float[m * n];
                var xs = new float[m * d.Groups];
                WithMatrix(d, w =>
                {
                    fixed (float* xp = x, yp = y, sp = xs, bp = bias)
                    {
                        QuantKernels.GroupSums(xp, m, k, d.GL, sp);
                        QuantKernels.GemvFloatRegisters(w, xp, m, sp, bp, yp, n, 0, n);
                    }
                });
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                        Assert.True(Math.Abs(y[i * n + j] - exp[i * n + j]) <= 2e-5 * (AbsSum(d, x, i, j) + Math.Abs(bias[j]) + Math.Abs(d.Scales.Max()) * Math.Abs(x.Sum())) + 1e-5,
                            $"{d.Scheme} sym={sym} g={group} [{n},{k}] m={m}: {y[i * n + j]} vs {exp[i * n + j]}");
            }
    }

    [Theory]
    [InlineData(false, true, 0, 1, true)]
    [InlineData(false, false, 32, 2, true)]
    [InlineData(true, true, 32, 2, true)]
    [InlineData(true, false, 64, 1, true)]
    [InlineData(true, false, 0, 2, true)]
    [InlineData(false, false, 32, 2, false)]
    [InlineData(true, true, 32, 2, false)]
    public void Executor_runs_quantized_linear_and_embedding_in_gemv_and_prefill(bool int4, bool sym, int group, int threads, bool f16Scales)
    {
        int n = 70, k = 128, vocab = 11;
        var wq = RandomQ(int4, n, k, group, sym, 42);
        var tq = RandomQ(int4, vocab, k, group, sym, 43);
        var bias = Rand(n, 44);
        var b = new GraphBuilder("quant");
        var ids = b.Input("ids", DType.I32, "batch", "seq");
        var table = b.Weight("emb", LazyTensor.FromArray(new float[vocab * k], new Shape(vocab, k), "emb"), WeightKind.Embedding);
        var w = b.Weight("w", LazyTensor.FromArray(new float[n * k], new Shape(n, k), "w"), WeightKind.Matrix);
        var bb = b.Weight("b", LazyTensor.FromArray(bias, new Shape(n), "b"), WeightKind.Vector);
        var h = b.Op(Ops.Embedding, "e", new[] { ids, table });
        var y = b.Op(Ops.Linear, "lin", new[] { h, w, bb });
        b.Output(y, DType.F32);
        var dir = Path.Combine(Path.GetTempPath(), "hub-quant-" + Guid.NewGuid().ToString("N"));
        try
        {
            IrFormat.Write(dir, b.Build(), new IrWriteOptions { Encoder = QuantEncoder(wq, tq, k, group, sym, f16Scales) });
            using var ir = IrModel.Load(dir);
            Assert.Equal(group, ir.WeightInfo("w").Quant!.GroupSize);
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 256, MaxBatch = 1 });
            using var req = cm.CreateInferRequest();
            // 200 rows: with 2 threads the two 64-row panels are too few units, so prefill splits M as well
            foreach (int seq in new[] { 1, 3, 37, 200 })
            {
                var tokens = Enumerable.Range(0, seq).Select(i => (i * 7 + seq) % vocab).ToArray();
                req.SetInput("ids", tokens, 1, seq);
                req.Infer();
                var got = req.GetOutput(y);
                var x = new float[seq * k];
                for (int t = 0; t < seq; t++) for (int c = 0; c < k; c++) x[t * k + c] = (float)tq.Value(tokens[t], c);
                var exp = Reference(wq, x, seq, bias);
                for (int i = 0; i < seq; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double scale = AbsSum(wq, x, i, j) + Math.Abs(bias[j]);
                        // decode rows carry int8 activation rounding (≤ 1/254 of each block's range per value)
                        // (int4 prefill runs the int4 × int8 GEMM unless HUB_QUANT_GEMM=float: the same activation rounding)
                        bool intGemm = int4 && k % 64 == 0 && Hub.Runtime.Execution.QuantLinearExec.UseInt4Gemm
                            || !int4 && Hub.Runtime.Execution.QuantLinearExec.UseInt8Broadcast && System.Runtime.Intrinsics.X86.Fma.IsSupported;
                        double tol = seq <= 4 || intGemm ? scale / 100 : 1e-5 * scale + 1e-6;
                        Assert.True(Math.Abs(got[i * n + j] - exp[i * n + j]) <= tol, $"seq {seq} ({i},{j}): {got[i * n + j]} vs {exp[i * n + j]}");
                    }
            }
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }

    [Theory]
    [InlineData(2, true)]
    [InlineData(1, false)]
    public void Executor_runs_int8_q8_0_prefill_through_dequantized_panels(int threads, bool f16Scales)
    {
        bool bcast = Hub.Runtime.Execution.QuantLinearExec.UseInt8Broadcast;
        Hub.Runtime.Execution.QuantLinearExec.UseInt8Broadcast = false;   // the broadcast GEMM (the default) has its own test
        try { Executor_runs_quantized_linear_and_embedding_in_gemv_and_prefill(false, true, 32, threads, f16Scales); }
        finally { Hub.Runtime.Execution.QuantLinearExec.UseInt8Broadcast = bcast; }
    }

    // Encodes weight "w" as wq and "emb" as tq (scales F16 as exported now, or F32 as IRs exported before session 4).
    private static Func<PendingWeight, float[], IReadOnlyList<EncodedWeight>?> QuantEncoder(QData wq, QData tq, int k, int group, bool sym, bool f16Scales) =>
        (p, _) =>
        {
            var q = p.Name == "w" ? wq : p.Name == "emb" ? tq : null;
            if (q is null) return null;
            var quant = new Quantization(q.Scheme, group, sym, p.Name + ".scales", sym ? null : p.Name + ".zeros");
            var sb = new byte[q.Scales.Length * (f16Scales ? 2 : 4)];
            if (f16Scales) Buffer.BlockCopy(HalfBits(q.Scales), 0, sb, 0, sb.Length);
            else Buffer.BlockCopy(q.Scales, 0, sb, 0, sb.Length);
            var list = new List<EncodedWeight>
            {
                new(p.Name, q.Int4 || !sym ? DType.U8 : DType.I8, new Shape(q.N, q.Int4 ? k / 2 : k), q.Data, quant),
                new(quant.Scales, f16Scales ? DType.F16 : DType.F32, new Shape(q.N, q.Groups), sb, null),
            };
            if (!sym) list.Add(new EncodedWeight(quant.Zeros!, DType.U8, new Shape(q.N, q.Groups), q.Zeros!, null));
            return list;
        };

    [Theory]
    [InlineData(false, true, 32)]
    [InlineData(false, false, 0)]
    [InlineData(true, true, 32)]
    [InlineData(true, false, 128)]
    public void Ir_with_f32_scales_runs_bit_identical_to_the_same_ir_with_f16_scales(bool int4, bool sym, int group)
    {
        // IRs exported before session 4 store the (f16-exact) scales as F32: they must still load and give the same
        // outputs as the current F16 export, in decode (GEMV) and prefill (GEMM / panels) and the embedding lookup.
        int n = 36, k = 256, vocab = 13;
        var wq = RandomQ(int4, n, k, group, sym, 7);
        var tq = RandomQ(int4, vocab, k, group, sym, 8);
        var outs = new List<float[]>();
        foreach (bool f16 in new[] { true, false })
        {
            var b = new GraphBuilder("quant-scales");
            var ids = b.Input("ids", DType.I32, "batch", "seq");
            var table = b.Weight("emb", LazyTensor.FromArray(new float[vocab * k], new Shape(vocab, k), "emb"), WeightKind.Embedding);
            var w = b.Weight("w", LazyTensor.FromArray(new float[n * k], new Shape(n, k), "w"), WeightKind.Matrix);
            var h = b.Op(Ops.Embedding, "e", new[] { ids, table });
            var y = b.Op(Ops.Linear, "lin", new[] { h, w });
            b.Output(y, DType.F32);
            var dir = Path.Combine(Path.GetTempPath(), "hub-quant-scales-" + Guid.NewGuid().ToString("N"));
            try
            {
                IrFormat.Write(dir, b.Build(), new IrWriteOptions { Encoder = QuantEncoder(wq, tq, k, group, sym, f16) });
                using var ir = IrModel.Load(dir);
                using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 128, MaxBatch = 1 });
                using var req = cm.CreateInferRequest();
                var all = new List<float>();
                foreach (int seq in new[] { 1, 2, 70 })
                {
                    req.SetInput("ids", Enumerable.Range(0, seq).Select(i => (i * 5 + seq) % vocab).ToArray(), 1, seq);
                    req.Infer();
                    all.AddRange(req.GetOutput(y));
                }
                outs.Add(all.ToArray());
            }
            finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
        }
        Assert.Equal(outs[0].Length, outs[1].Length);
        for (int i = 0; i < outs[0].Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(outs[0][i]) == BitConverter.SingleToInt32Bits(outs[1][i]), $"output {i}: F16 scales {outs[0][i]}, F32 scales {outs[1][i]}");
    }
}

/// <summary>Single-thread GEMV throughput per weight format (HUB_BENCH=1 only; prints, asserts nothing about time).</summary>
public unsafe class QuantGemvBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Quantized_gemv_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        int n = BenchFeed.EnvInt("HUB_BENCH_N", 2048);
        int k = BenchFeed.EnvInt("HUB_BENCH_K", 768);
        int reps = Math.Max(3, (int)(300_000_000L / ((long)n * k)));
        var x = Enumerable.Range(0, k).Select(i => (float)Math.Sin(i)).ToArray();
        var y = new float[n];
        var wf = Enumerable.Range(0, n * k).Select(i => (float)Math.Cos(i) * 0.02f).ToArray();
        var scratch = new float[Gemm.ScratchFloats(k)];
        var cases = new (string Name, QuantKernelTests.QData? Q)[]
        {
            ("f32", null),
            ("int8 asym per-channel", QuantKernelTests.RandomQ(false, n, k, 0, false, 1)),
            ("int8 sym g32 (Q8_0)", QuantKernelTests.RandomQ(false, n, k, 32, true, 2)),
            ("int4 sym g32 (Q4_0)", QuantKernelTests.RandomQ(true, n, k, 32, true, 3)),
            ("int4 asym g128", QuantKernelTests.RandomQ(true, n, k, 128, false, 4)),
        };
        // each integer case with F16 scales (as exported) and with F32 scales (IRs exported before session 4)
        cases = cases.Concat(cases.Skip(1).Select(c => (c.Name + " f32-scales", c.Q)))
                     .Concat(cases.Skip(1).Select(c => (c.Name + " float-reg", c.Q))).ToArray();
        var halves = cases.Select(c => c.Q is null ? null : QuantKernelTests.HalfBits(c.Q.Scales)).ToArray();   // F16 scales as exported
        var times = cases.Select(_ => new List<double>()).ToArray();
        var cpuTimes = cases.Select(_ => new List<double>()).ToArray();   // process CPU time: steadier on a shared machine
        var xsums = new float[k];
        var buf = new byte[QuantKernels.ActivationBytes(1, k, k / 32) + 64];
        for (int round = 0; round < 7; round++)
            for (int c = 0; c < cases.Length; c++)
            {
                var q = cases[c].Q;
                fixed (float* xp = x, yp = y, wp = wf, sp = scratch)
                fixed (byte* b0 = buf)
                {
                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                    var proc = System.Diagnostics.Process.GetCurrentProcess();
                    var cpu0 = proc.TotalProcessorTime;
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    if (q is null)
                        for (int r = 0; r < reps; r++) Gemm.GemvRows(xp, 1, k, (byte*)wp, DType.F32, n, null, yp, 0, n, sp);
                    else
                        fixed (byte* d = q.Data)
                        fixed (ushort* s = halves[c])
                        fixed (float* s32 = q.Scales)
                        fixed (byte* z = q.Zeros)
                        {
                        fixed (float* xsp = xsums)
                        {
                            var w = cases[c].Name.EndsWith("f32-scales", StringComparison.Ordinal)
                                ? new QuantMatrix(d, s32, q.Sym ? null : z, n, k, q.Group, q.Int4, q.Sym)
                                : new QuantMatrix(d, s, q.Sym ? null : z, n, k, q.Group, q.Int4, q.Sym);
                            bool reg = cases[c].Name.EndsWith("float-reg", StringComparison.Ordinal);
                            for (int r = 0; r < reps; r++)
                            {
                                if (reg)
                                {
                                    QuantKernels.GroupSums(xp, 1, k, w.GroupLength, xsp);
                                    QuantKernels.GemvFloatRegisters(w, xp, 1, xsp, null, yp, n, 0, n);
                                    continue;
                                }
                                QuantKernels.QuantizeActivations(w, xp, 1, b);
                                QuantKernels.GemvInteger(w, 1, b, null, yp, n, 0, n);
                            }
                        }
                        }
                    times[c].Add(sw.Elapsed.TotalSeconds / reps);
                    proc.Refresh();
                    cpuTimes[c].Add((proc.TotalProcessorTime - cpu0).TotalSeconds / reps);
                }
            }
        for (int c = 0; c < cases.Length; c++)
        {
            double t = times[c].Order().ElementAt(times[c].Count / 2);
            double tc = cpuTimes[c].Order().ElementAt(cpuTimes[c].Count / 2);
            var q = cases[c].Q;
            long bytes = q is null ? 4L * n * k : q.Data.Length + q.Scales.Length * (cases[c].Name.EndsWith("f32-scales", StringComparison.Ordinal) ? 4L : 2L) + (q.Zeros?.Length ?? 0);
            output.WriteLine($"{cases[c].Name,-34} [{n}x{k}] {t * 1e6,8:F1} µs  {bytes / t / 1e9,6:F2} GB/s  {(double)n * k / t / 1e9,6:F2} GMAC/s  cpu {tc * 1e6,8:F1} µs {(double)n * k / tc / 1e9,6:F2} GMAC/s");
        }
    }
}

/// <summary>
/// Single-thread prefill of int4 (Q4_0) and int8 (Q8_0) weights: the integer GEMM (int4 × int8 / int8 × int8) against
/// dequantized panels + the f32 GEMM, alternating, CPU-time medians of 7 rounds (HUB_BENCH=1 only; prints, asserts
/// nothing about time). HUB_BENCH_M/N/K set the shape (default 128 × 768 × 2048).
/// </summary>
public unsafe class QuantGemmBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Int4_prefill_gemm_throughput() => Run(int4: true);

    [SkippableFact]
    public void Int8_prefill_gemm_throughput() => Run(int4: false);


    private void Run(bool int4)
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, "the integer GEMMs need AVX2+FMA");
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128), n = BenchFeed.EnvInt("HUB_BENCH_N", 768), k = BenchFeed.EnvInt("HUB_BENCH_K", 2048);
        var q = QuantKernelTests.RandomQ(int4, n, k, 32, true, 5);
        var half = QuantKernelTests.HalfBits(q.Scales);   // F16 scales, as exported
        var x = Enumerable.Range(0, m * k).Select(i => (float)Math.Sin(i * 0.37)).ToArray();
        var y = new float[m * n];
        var scratch = new float[Gemm.ScratchFloats(k) + 64L * k + 64];
        var buf = new byte[(int4 ? QuantGemmInt4.ActivationBytes(m, k) : QuantKernels.ActivationBytes(m, k, k / 32)) + 64];
        var times = new[] { new List<double>(), new List<double>() };
        fixed (byte* d = q.Data, b0 = buf)
        fixed (ushort* s = half)
        fixed (float* xp = x, yp = y, sp = scratch)
        {
            var w = new QuantMatrix(d, s, null, n, k, 32, int4, true);
            byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
            float* panel = sp + Gemm.ScratchFloats(k);
            panel = (float*)(((nint)panel + 63) & ~(nint)63);
            var proc = System.Diagnostics.Process.GetCurrentProcess();
            for (int round = 0; round < 7; round++)
                for (int c = 0; c < 2; c++)
                {
                    proc.Refresh();
                    var cpu0 = proc.TotalProcessorTime;
                    for (int rep = 0; rep < 3; rep++)
                    {
                        if (c == 0)
                        {
                            if (int4) QuantGemmInt4.QuantizeActivations(w, xp, m, b, 0, m);
                            else QuantKernels.QuantizeActivations(w, xp, m, b);
                            for (int n0 = 0; n0 < n; n0 += QuantKernels.GemmRows)
                            {
                                int n1 = Math.Min(n, n0 + QuantKernels.GemmRows);
                                if (int4) QuantGemmInt4.Gemm(w, m, b, null, yp, n, 0, m, n0, n1, (byte*)panel);
                                else QuantGemmInt8.Gemm(w, m, b, null, yp, n, 0, m, n0, n1, sp);
                            }
                        }
                        else
                            // the panel path as QuantLinearExec runs it: 64-row dequantized panels
                            for (int n0 = 0; n0 < n; n0 += 64)
                            {
                                int n1 = Math.Min(n, n0 + 64);
                                QuantKernels.DequantizeRows(w, n0, n1, panel);
                                Gemm.GemmBlock(xp, 0, m, k, (byte*)(panel - (long)n0 * k), DType.F32, n, null, yp, n0, n1, sp);
                            }
                    }
                    proc.Refresh();
                    times[c].Add((proc.TotalProcessorTime - cpu0).TotalSeconds / 3);
                }
        }
        string[] names = { int4 ? "int4 x int8 GEMM" : "int8 x int8 GEMM", "dequantize + f32 GEMM" };
        for (int c = 0; c < 2; c++)
        {
            double t = times[c].Order().ElementAt(times[c].Count / 2);
            output.WriteLine($"{names[c],-24} [{m}x{n}x{k}] cpu {t * 1e3,8:F2} ms  {2.0 * m * n * k / t / 1e9,6:F1} GFLOP/s");
        }
    }
}

/// <summary>
/// Decode profile of an exported IR folder given in HUB_BENCH_IR (HUB_BENCH=1 only): tok/s after 8 warm-up steps (the
/// first F16 step runs the exact kernel), time per op kind and the slowest nodes. HUB_BENCH_THREADS (default 2);
/// HUB_BENCH_PROFILE=0 measures without per-op timestamps.
/// </summary>
public class QuantDecodeProfile(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Decode_profile_of_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        using var ir = IrModel.Load(dir!);
        // HUB_BENCH_KV=auto|f32|f16 sets the KV-cache precision; the kvf16 A/B runs an f32-cache model against an f16 one
        var kv = Environment.GetEnvironmentVariable("HUB_BENCH_AB") == "kvf16" ? KvCachePrecision.F32
            : KvCachePrecisionNames.Parse(Environment.GetEnvironmentVariable("HUB_BENCH_KV") ?? "auto", "HUB_BENCH_KV");
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2), MaxContext = 8192, KvCachePrecision = kv });
        using var req = cm.CreateInferRequest();
        var names = ir.Graph.Inputs.Select(i => i.Name).ToList();
        output.WriteLine(string.Join(",", names));
        req.OpTicks = new long[ir.Graph.Nodes.Count];
        int[] id = { 1 }, p = { 0 };
        // HUB_BENCH_WARMUP decode steps fill the cache first (default 8); timed steps then attend over that many positions.
        int warm = BenchFeed.EnvInt("HUB_BENCH_WARMUP", 8), steps = 64;
        var ones = Enumerable.Repeat(1f, warm + steps).ToArray();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var proc = System.Diagnostics.Process.GetCurrentProcess();
        var cpu0 = proc.TotalProcessorTime;
        bool prof = Environment.GetEnvironmentVariable("HUB_BENCH_PROFILE") != "0";
        if (!prof) req.OpTicks = null;
        for (int s = 0; s < steps + warm; s++)
        {
            if (s == warm) { sw.Restart(); proc.Refresh(); cpu0 = proc.TotalProcessorTime; if (prof) Array.Clear(req.OpTicks!); }
            BenchFeed.DecodeStep(req, names, id, p, ref ones);
        }
        proc.Refresh();
        // process CPU time per token: with one thread a steadier figure than wall time on a shared machine
        output.WriteLine($"{steps * 1000.0 / sw.Elapsed.TotalMilliseconds:F1} tok/s, cpu {(proc.TotalProcessorTime - cpu0).TotalMilliseconds / steps:F2} ms/token");
        if (Environment.GetEnvironmentVariable("HUB_BENCH_AB") is { } ab)
        {
            // In-process A/B of a kernel switch: segments of 16 decode steps alternate the switch off/on (the cache
            // keeps growing, so the order flips every round) for HUB_BENCH_AB_ROUNDS rounds (default 8); medians of
            // the per-segment tok/s.
            int unitsOff = Hub.Runtime.Execution.QuantLinearExec.GemvUnitsPerWorker;
            int pairMaxKOff = Hub.Runtime.Kernels.QuantKernels.PairMaxK;
            var f32Default = Hub.Runtime.Kernels.GemvF32.Default;
            InferRequest?[] reqs = { req, null };
            CompiledModel? cm2 = null;
            void Step(InferRequest r) => BenchFeed.DecodeStep(r, names, id, p, ref ones);
            if (ab == "x4")
            {
                // the model above interleaved its Q8_0 / Q4_0 weights at compile (the default); "off" is a second model
                // compiled without either repack (it maps the original's released pages in again, as before the repack)
                bool repack = CompiledModel.RepackInt8, repack4 = CompiledModel.RepackInt4;
                CompiledModel.RepackInt8 = false; CompiledModel.RepackInt4 = false;
                try { cm2 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = cm.Pool.Size, MaxContext = 8192, KvCachePrecision = kv }); }
                finally { CompiledModel.RepackInt8 = repack; CompiledModel.RepackInt4 = repack4; }
                output.WriteLine($"x4: {cm.InterleavedBytes / 1048576.0:F0} MiB interleaved (off model: {cm2.InterleavedBytes})");
                reqs[0] = cm2.CreateInferRequest();
                reqs[1] = req;
                if (prof) reqs[0]!.OpTicks = new long[ir.Graph.Nodes.Count];
                for (int s = 0; s < warm + steps; s++) Step(reqs[0]!);
            }
            if (ab == "kvf16")
            {
                cm2 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = cm.Pool.Size, MaxContext = 8192, KvCachePrecision = KvCachePrecision.F16 });
                reqs[1] = cm2.CreateInferRequest();
                if (prof) reqs[1]!.OpTicks = new long[ir.Graph.Nodes.Count];
                for (int s = 0; s < warm + steps; s++) Step(reqs[1]!);
            }
            Action<bool> set = ab is "kvf16" or "x4" or "aa" ? _ => { }
                : ab == "attnrow" ? on => req.AttentionRowKernel = on ? Hub.Runtime.Kernels.AttentionKernels.RowKernel.Default : Hub.Runtime.Kernels.AttentionKernels.RowKernel.PerKey
                : ab == "attnpf" ? on => { Hub.Runtime.Execution.AttentionExec.Prefetch = on; Hub.Runtime.Kernels.AttentionKernels.PrefetchHalfKeys = on ? 16 : 8; }
                : ab == "attn16" ? on => Hub.Runtime.Kernels.AttentionKernels.UseHalfRowKeys16 = Hub.Runtime.Kernels.AttentionKernels.UseRowKeys16 = on
                : ab == "homed" ? on => Hub.Runtime.Threading.WorkerPool.HomedClaims = on
                                : ab == "attnhomed" ? on => Hub.Runtime.Execution.AttentionExec.HomedDecode = on
                : ab == "vnni" ? on => Hub.Runtime.Kernels.QuantKernels.Int8Vnni = on && System.Runtime.Intrinsics.X86.AvxVnni.IsSupported
                : ab.StartsWith("pairmaxk=", StringComparison.Ordinal) && int.TryParse(ab.AsSpan(9), out var pmk) ? on => Hub.Runtime.Kernels.QuantKernels.PairMaxK = on ? pmk : pairMaxKOff
                : ab == "int4" ? on => Hub.Runtime.Kernels.QuantGemvInt4.Enabled = on
                : ab.StartsWith("f32gemv=", StringComparison.Ordinal) && ab[8..].Split('/') is var f32s
                  && Enum.TryParse<Hub.Runtime.Kernels.GemvF32.Variant>(f32s[^1], out var f32v)
                  && Enum.TryParse<Hub.Runtime.Kernels.GemvF32.Variant>(f32s.Length > 1 ? f32s[0] : "Dot4", out var f32o)
                ? on => Hub.Runtime.Kernels.GemvF32.Default = on ? f32v : f32o
                : ab.StartsWith("units=", StringComparison.Ordinal) && int.TryParse(ab.AsSpan(6), out var upw) && upw > 0
                ? on => Hub.Runtime.Execution.QuantLinearExec.GemvUnitsPerWorker = on ? upw : unitsOff
                : throw new ArgumentException($"HUB_BENCH_AB={ab}: known switches are kvf16 (a model with an f16 KV cache; off = an f32 cache), x4 (Q8_0 and Q4_0 weights interleaved at compile, the default; off = a model compiled with CompiledModel.RepackInt8 and RepackInt4 off), attnrow (the default decode attention kernel, interleaved with prefetch; off = the per-key loop), attnpf (decode attention prefetches its append's lines, the next kv head's first keys, and f16 keys 16 ahead; off = none, 8 ahead), attn16 (decode attention scores 16 keys at a time with the block's softmax on vectors: the f16 kernel at 1–2 heads per kv head, the f32 kernel at any group; off = 4 keys at a time), vnni (the int8 decode GEMV multiplies with AVX-VNNI, Q8_0 rows up to 1 KiB in pairs; off = the AVX2 sign trick, Q8_0 one row at a time), pairmaxk=<n> (Q8_0 VNNI row pairs up to K = n; off = the default QuantKernels.PairMaxK), units=<n> (decode GEMV units per worker; off = the default), homed (the decode GEMVs' and attention's units claimed as contiguous per-worker shares, WorkerPool.RunHomed; off = the plain guided claims), attnhomed (decode attention's kv-head units claimed homed; off = plain claims), int4 (the QuantGemvInt4 decode GEMV; off = the session-6 loop), aa (no switch: both halves identical, the harness's own spread), f32gemv=[<off>/]<on> (GemvF32.Variant of the F32 decode GEMV; off defaults to Dot4)");
            var rates = new[] { new List<double>(), new List<double>() };
            // With the per-op profile on (the default), each segment also sums the time of the ops that are not a
            // Linear (ms per token) and of the Attention ops, per variant.
            var nonLinear = new[] { new List<double>(), new List<double>() };
            var attention = new[] { new List<double>(), new List<double>() };
            // process CPU time per token: with HUB_BENCH_THREADS=1 the figure a busy machine disturbs least
            var cpuMs = new[] { new List<double>(), new List<double>() };
            if (!prof) req.OpTicks = null;
            int abRounds = BenchFeed.EnvInt("HUB_BENCH_AB_ROUNDS", 8);
            for (int round = 0; round < abRounds; round++)
                for (int v = 0; v < 2; v++)
                {
                    bool on = (v ^ (round & 1)) == 1;
                    set(on);
                    var r = reqs[on && reqs[1] != null ? 1 : 0]!;
                    if (r.OpTicks is { } ot0) Array.Clear(ot0);
                    proc.Refresh();
                    var segCpu = proc.TotalProcessorTime;
                    sw.Restart();
                    for (int s = 0; s < 16; s++) Step(r);
                    rates[on ? 1 : 0].Add(16 / sw.Elapsed.TotalSeconds);
                    proc.Refresh();
                    cpuMs[on ? 1 : 0].Add((proc.TotalProcessorTime - segCpu).TotalMilliseconds / 16);
                    if (r.OpTicks is { } ot)
                    {
                        double ms(long ticks) => ticks * 1000.0 / System.Diagnostics.Stopwatch.Frequency / 16;
                        long nl = 0, at = 0;
                        for (int i = 0; i < ot.Length; i++)
                        {
                            if (ir.Graph.Nodes[i].Op != Hub.IR.Ops.Linear) nl += ot[i];
                            if (ir.Graph.Nodes[i].Op == Hub.IR.Ops.Attention) at += ot[i];
                        }
                        nonLinear[on ? 1 : 0].Add(ms(nl)); attention[on ? 1 : 0].Add(ms(at));
                    }
                }
            set(false);
            if (ab is "attnpf" or "attn16" or "homed" or "attnhomed") set(true);   // switches on by default
            if (ab == "x4")
            {
                // the yardstick of the greedy check: the unpacked model through the float GEMV (no activation rounding)
                bool ffp = Hub.Runtime.Execution.QuantLinearExec.ForceFloatPath;
                Hub.Runtime.Execution.QuantLinearExec.ForceFloatPath = true;
                InferRequest fl;
                try { fl = cm2!.CreateInferRequest(); } finally { Hub.Runtime.Execution.QuantLinearExec.ForceFloatPath = ffp; }
                using (fl) X4PrefillAndGreedy(reqs[0]!, reqs[1]!, fl, ir, names, ref ones);
            }
            if (ab.StartsWith("f32gemv=", StringComparison.Ordinal)) Hub.Runtime.Kernels.GemvF32.Default = f32Default;
            if (ab == "x4") reqs[0]?.Dispose(); else reqs[1]?.Dispose();
            cm2?.Dispose();
            double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
            output.WriteLine($"A/B {ab}: off {Med(rates[0]):F1} tok/s, on {Med(rates[1]):F1} tok/s (on/off {Med(rates[1]) / Med(rates[0]):F3}; per segment off [{string.Join(" ", rates[0].Select(r => r.ToString("F0")))}] on [{string.Join(" ", rates[1].Select(r => r.ToString("F0")))}])");
            // per-round on/off (the two segments of a round are adjacent in time): steadier than the ratio of medians when
            // a neighbour's load comes and goes across rounds
            var paired = rates[1].Zip(rates[0], (a, b) => a / b).Order().ToList();
            output.WriteLine($"A/B {ab} paired per-round on/off: median {Med(paired):F3} (quartiles {paired[paired.Count / 4]:F3}..{paired[paired.Count * 3 / 4]:F3})");
            output.WriteLine($"A/B {ab} process CPU per token: off {Med(cpuMs[0]):F3} ms, on {Med(cpuMs[1]):F3} ms (on/off {Med(cpuMs[1]) / Med(cpuMs[0]):F3})");
            if (nonLinear[0].Count > 0)
            {
                output.WriteLine($"A/B {ab} per token outside the Linear ops: off {Med(nonLinear[0]):F3} ms (Attention {Med(attention[0]):F3}), on {Med(nonLinear[1]):F3} ms (Attention {Med(attention[1]):F3})");
                // the Attention ops' speed per round (off time / on time of the two adjacent segments)
                var attnPaired = attention[0].Zip(attention[1], (a, b) => a / b).Order().ToList();
                output.WriteLine($"A/B {ab} paired per-round Attention speed on/off: median {Med(attnPaired):F3} (quartiles {attnPaired[attnPaired.Count / 4]:F3}..{attnPaired[attnPaired.Count * 3 / 4]:F3})");
            }
            return;
        }
        if (!prof) return;
        double Ms(long ticks) => ticks * 1000.0 / System.Diagnostics.Stopwatch.Frequency / steps;
        // Op kind, with a Linear keyed by the last part of its node name (qkv_proj, gate_up_proj, down_proj, logits, ...).
        string Kind(int i) => ir.Graph.Nodes[i].Op == Hub.IR.Ops.Linear ? "Linear " + ir.Graph.Nodes[i].Name.Split('.')[^1] : ir.Graph.Nodes[i].Op;
        foreach (var g in Enumerable.Range(0, req.OpTicks!.Length).GroupBy(Kind).OrderByDescending(g => g.Sum(i => req.OpTicks[i])))
            output.WriteLine($"  [{g.Key}] x{g.Count()} {Ms(g.Sum(i => req.OpTicks[i])):F3} ms");
        var top = Enumerable.Range(0, req.OpTicks.Length).OrderByDescending(i => req.OpTicks[i]).Take(12);
        foreach (var i in top) output.WriteLine($"  {ir.Graph.Nodes[i].Name} ({ir.Graph.Nodes[i].Op}) {Ms(req.OpTicks[i]):F3} ms");
    }

    // The x4 A/B's prefill and greedy check (off = unpacked model, on = interleaved): HUB_BENCH_PREFILL tokens (default
    // 128) from an empty cache, alternating order over 8 rounds, median tok/s; then the same prompt and 32 greedy steps
    // (each request fed the unpacked model's pick), counting the steps whose argmax differs and the largest logit
    // difference, for x4 and, as the yardstick of what any other summation does to these random-weight models, for the
    // unpacked model's float GEMV.
    private void X4PrefillAndGreedy(InferRequest off, InferRequest on, InferRequest fl, IrModel ir, List<string> names, ref float[] ones)
    {
        int pn = BenchFeed.EnvInt("HUB_BENCH_PREFILL", 128);
        var ids = Enumerable.Range(0, pn).Select(i => (i * 37) % 1000 + 1).ToArray();
        var pos = Enumerable.Range(0, pn).ToArray();
        var rates = new[] { new List<double>(), new List<double>() };
        var sw = new System.Diagnostics.Stopwatch();
        for (int round = 0; round < 8; round++)
            for (int v = 0; v < 2; v++)
            {
                int which = v ^ (round & 1);
                var r = which == 1 ? on : off;
                r.ResetState();
                BenchFeed.Set(r, names, ids, pos, pn, ref ones);
                sw.Restart();
                r.Infer();
                rates[which].Add(pn / sw.Elapsed.TotalSeconds);
            }
        double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
        output.WriteLine($"A/B x4 prefill {pn} tokens: off {Med(rates[0]):F1} tok/s, on {Med(rates[1]):F1} tok/s (on/off {Med(rates[1]) / Med(rates[0]):F3})");
        int differ = 0;
        double maxDiff = 0, maxAbs = 0;
        var tok = new int[2][];
        var one = new int[1];
        var p1 = new int[1];
        string logits = ir.Graph.Outputs[0].Name;
        double maxDiffFloat = 0;
        int differFloat = 0;
        var last = new Dictionary<InferRequest, float[]>(ReferenceEqualityComparer.Instance);
        void Run(InferRequest r)
        {
            r.Infer();
            last[r] = r.GetOutput(logits).ToArray();
        }
        foreach (var r in new[] { off, on, fl }) { r.ResetState(); BenchFeed.Set(r, names, ids, pos, pn, ref ones); Run(r); }
        for (int step = 0; step < 32; step++)
        {
            var a = last[off];
            var b = last[on];
            int V = a.Length;
            int am = 0, bm = 0;
            for (int i = 0; i < V; i++)
            {
                if (a[i] > a[am]) am = i;
                if (b[i] > b[bm]) bm = i;
                maxDiff = Math.Max(maxDiff, Math.Abs(a[i] - b[i]));
                maxAbs = Math.Max(maxAbs, Math.Abs(a[i]));
            }
            if (am != bm) differ++;
            var c = last[fl];
            int cm = 0;
            for (int i = 0; i < V; i++) { if (c[i] > c[cm]) cm = i; maxDiffFloat = Math.Max(maxDiffFloat, Math.Abs(a[i] - c[i])); }
            if (am != cm) differFloat++;
            // all continue with the unpacked model's token, so one flip does not change every later step
            foreach (var r in new[] { off, on, fl })
            {
                one[0] = am; p1[0] = r.PastLength;
                BenchFeed.Set(r, names, one, p1, 1, ref ones);
                Run(r);
            }
        }
        output.WriteLine($"x4 greedy against the unpacked model: x4 picks another token in {differ} of 32 steps, max |Δ logit| {maxDiff:E2}; the unpacked model's float GEMV (yardstick) in {differFloat}, max |Δ logit| {maxDiffFloat:E2} (max |logit| {maxAbs:E2})");
    }
}
