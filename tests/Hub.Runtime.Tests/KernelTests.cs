using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// Fast kernels vs their scalar reference twins vs a float64 loop (llama.cpp test-backend-ops style). CI runs this
/// class once per ISA path (DOTNET_EnableAVX512F=0, DOTNET_EnableAVX2=0, DOTNET_EnableHWIntrinsic=0) through
/// <see cref="IsaSweepTests"/>, so every branch is exercised.
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class KernelTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // Per-op tolerances (absolute, on values of order 1).
    private const double TolElementwise = 2e-6, TolNorm = 2e-5, TolGemm = 2e-5, TolAttention = 2e-5;

    internal static float[] Rand(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            double err = Math.Abs(e - a) / Math.Max(1.0, Math.Abs(e));
            if (!(err <= tol)) Assert.Fail($"{what}: element {i}: expected {e:R}, got {a:R} (err {err:E2} > {tol:E1})");
        }
    }

    private static void Close(double[] expected, ReadOnlySpan<float> actual, double tol, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(expected[i] - actual[i]) / Math.Max(1.0, Math.Abs(expected[i]));
            if (!(err <= tol)) Assert.Fail($"{what}: element {i}: expected {expected[i]:R}, got {actual[i]:R} (err {err:E2} > {tol:E1})");
        }
    }

    [Fact]
    public void Elementwise_activations_match_reference_and_float64_for_lengths_0_to_256()
    {
        for (int n = 0; n <= 256; n++)
        {
            var x = Rand(n, n, 6f);
            var fast = new float[n]; var refr = new float[n]; var d = new double[n];

            Activations.GeluErf(x, fast); Activations.GeluErfReference(x, refr);
            for (int i = 0; i < n; i++) d[i] = 0.5 * x[i] * (1 + Activations.ErfReference(x[i] / Math.Sqrt(2)));
            Close(d, fast, TolElementwise, $"gelu erf n={n}"); Close(d, refr, TolElementwise, $"gelu erf ref n={n}");

            Activations.GeluTanhPrimitives(x, refr);
            Activations.GeluTanh(x, fast);
            Close(refr, fast, TolElementwise, $"gelu tanh vs primitives n={n}");
            Activations.GeluTanhReference(x, refr);
            for (int i = 0; i < n; i++) d[i] = 0.5 * x[i] * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x[i] + 0.044715 * Math.Pow(x[i], 3))));
            Close(d, fast, TolElementwise, $"gelu tanh n={n}"); Close(d, refr, TolElementwise, $"gelu tanh ref n={n}");

            Activations.Silu(x, fast); Activations.SiluReference(x, refr);
            for (int i = 0; i < n; i++) d[i] = x[i] / (1 + Math.Exp(-x[i]));
            Close(d, fast, TolElementwise, $"silu n={n}"); Close(d, refr, TolElementwise, $"silu ref n={n}");

            if (n % 2 == 0)
            {
                int f = n / 2;
                var sf = new float[f]; var sr = new float[f]; var sd = new double[f];
                Activations.SwiGlu(x, sf, f); Activations.SwiGluReference(x, sr, f);
                for (int i = 0; i < f; i++) sd[i] = x[i] / (1 + Math.Exp(-x[i])) * x[f + i];
                Close(sd, sf, TolElementwise, $"swiglu n={n}"); Close(sd, sr, TolElementwise, $"swiglu ref n={n}");
            }
        }
    }

    [Fact]
    public void VecMath_exp_sigmoid_tanh_relu_scale_match_float64_for_lengths_0_to_256()
    {
        for (int n = 0; n <= 256; n++)
        {
            var x = Rand(n, n + 77, 12f);
            var y = new float[n];
            fixed (float* xp = x, yp = y)
            {
                VecMath.Sigmoid(xp, yp, n);
                Close(x.Select(v => 1 / (1 + Math.Exp(-v))).ToArray(), y, TolElementwise, $"sigmoid n={n}");
                VecMath.Tanh(xp, yp, n);
                Close(x.Select(v => Math.Tanh(v)).ToArray(), y, TolElementwise, $"tanh n={n}");
                VecMath.Relu(xp, yp, n);
                Close(x.Select(v => Math.Max(v, 0.0)).ToArray(), y, 0, $"relu n={n}");
                VecMath.ScaleShift(xp, 0.5f, -2f, yp, n);
                Close(x.Select(v => v * 0.5 - 2).ToArray(), y, TolElementwise, $"scale n={n}");
                VecMath.Add(xp, xp, yp, n);
                Close(x.Select(v => 2.0 * v).ToArray(), y, 0, $"add n={n}");
            }
        }
        // exp over its whole clamped range, relative error
        var e = new float[8];
        for (float v = -87f; v < 88.3f; v += 0.37f)
        {
            System.Runtime.Intrinsics.Vector256.CopyTo(VecMath.Exp(System.Runtime.Intrinsics.Vector256.Create(v)), e);
            double want = Math.Exp(v);
            Assert.True(Math.Abs(e[0] - want) <= 3e-7 * want, $"exp({v}) = {e[0]} vs {want}");
        }
    }

    [Fact]
    public void Gelu_in_place_equals_out_of_place()
    {
        var x = Rand(100, 3, 4f);
        var y = new float[100];
        Activations.GeluTanh(x, y);
        var z = (float[])x.Clone();
        Activations.GeluTanh(z, z);
        Assert.Equal(y, z);
    }

    [Fact]
    public void Erf_is_accurate_to_1e7_relative_over_the_float_range_that_matters()
    {
        double worst = 0, worstX = 0;
        for (int i = -100_000; i <= 100_000; i++)
        {
            double x = i * 6e-5;  // [-6, 6]
            double e = Activations.ErfReference(x);
            double got = Activations.Erf((float)x);
            // compare against erf of the float input the fast path actually sees
            e = Activations.ErfReference((float)x);
            double rel = Math.Abs(got - e) / Math.Max(Math.Abs(e), 1e-30);
            if (rel > worst) { worst = rel; worstX = x; }
        }
        Assert.True(worst <= 1e-7, $"max relative erf error {worst:E3} at x = {worstX}");
        // the double reference against known values
        Assert.Equal(0.8427007929497149, Activations.ErfReference(1.0), 14);
        Assert.Equal(0.9999779095030014, Activations.ErfReference(3.0), 14);
        Assert.Equal(-0.5204998778130465, Activations.ErfReference(-0.5), 14);
        Assert.Equal(0.9999999999984626, Activations.ErfReference(5.0), 14);
    }

    [Fact]
    public void Norms_match_reference_and_float64_for_lengths_1_to_256()
    {
        for (int d = 1; d <= 256; d++)
        {
            var x = Rand(3 * d, d, 3f);
            for (int i = 0; i < x.Length; i++) x[i] += 0.5f; // non-zero mean
            var g = Rand(d, d + 1000); var b = Rand(d, d + 2000);
            var fast = new float[3 * d]; var refr = new float[3 * d]; var dd = new double[3 * d];
            Norms.LayerNorm(x, g, b, fast, d, 1e-5f); Norms.LayerNormReference(x, g, b, refr, d, 1e-5f);
            for (int r = 0; r < 3; r++)
            {
                double mean = 0, var = 0;
                for (int i = 0; i < d; i++) mean += x[r * d + i];
                mean /= d;
                for (int i = 0; i < d; i++) var += Math.Pow(x[r * d + i] - mean, 2);
                var /= d;
                for (int i = 0; i < d; i++) dd[r * d + i] = (x[r * d + i] - mean) / Math.Sqrt(var + 1e-5) * g[i] + b[i];
            }
            Close(dd, fast, TolNorm, $"layernorm d={d}"); Close(dd, refr, TolNorm, $"layernorm ref d={d}");

            Norms.RmsNorm(x, g, fast, d, 1e-6f); Norms.RmsNormReference(x, g, refr, d, 1e-6f);
            for (int r = 0; r < 3; r++)
            {
                double ms = 0;
                for (int i = 0; i < d; i++) ms += Math.Pow(x[r * d + i], 2);
                for (int i = 0; i < d; i++) dd[r * d + i] = x[r * d + i] / Math.Sqrt(ms / d + 1e-6) * g[i];
            }
            Close(dd, fast, TolNorm, $"rmsnorm d={d}"); Close(dd, refr, TolNorm, $"rmsnorm ref d={d}");
        }
    }

    [Fact]
    public void Softmax_and_topk_match_reference_for_lengths_1_to_256()
    {
        for (int n = 1; n <= 256; n++)
        {
            var x = Rand(2 * n, n, 20f);
            if (n > 3) { x[1] = x[2]; x[n + 1] = x[n + 3]; } // ties
            var fast = new float[2 * n]; var refr = new float[2 * n];
            Reductions.Softmax(x, fast, n); Reductions.SoftmaxReference(x, refr, n);
            Close(refr, fast, 1e-6, $"softmax n={n}");
            int k = Math.Min(n, 1 + n % 7);
            var v1 = new float[k]; var i1 = new int[k]; var v2 = new float[k]; var i2 = new int[k];
            Reductions.TopK(x.AsSpan(0, n), k, v1, i1); Reductions.TopKReference(x.AsSpan(0, n), k, v2, i2);
            Assert.Equal(i2, i1); Assert.Equal(v2, v1);
        }
        var tie = new float[] { 1, 3, 3, 2, 3 };
        var tv = new float[3]; var ti = new int[3];
        Reductions.TopK(tie, 3, tv, ti);
        Assert.Equal(new[] { 1, 2, 4 }, ti);
    }

    public static IEnumerable<object[]> GemmShapes()
    {
        foreach (var dt in new[] { DType.F32, DType.F16, DType.BF16 })
            foreach (var (m, n, k) in new[] { (1, 1, 1), (1, 7, 3), (1, 33, 65), (2, 17, 31), (3, 40, 9), (4, 5, 300), (5, 17, 31),
                                               (7, 23, 257), (13, 65, 70), (6, 16, 256), (12, 32, 512), (37, 129, 513), (1, 0, 5), (3, 4, 0),
                                               // every remainder of the 6-row tiling with 4-row tiles after it; K split
                                               // into equal blocks (385, 777); more than NC columns with several K blocks
                                               (8, 16, 385), (9, 31, 8), (10, 17, 9), (11, 48, 777), (14, 33, 400), (131, 270, 391) })
                yield return new object[] { dt, m, n, k };
    }

    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Linear_fast_matches_reference_and_float64_on_odd_shapes(DType dt, int m, int n, int k)
    {
        var x = Rand(m * k, m * 31 + k);
        var wf = Rand(n * k, n * 17 + k);
        var bias = Rand(n, n);
        var wbytes = new byte[n * k * dt.SizeOf()];
        DTypeConvert.FromFloat32(wf, dt, wbytes);
        var wq = new float[n * k];
        DTypeConvert.ToFloat32(wbytes, dt, wq); // the values the kernels see
        var expect = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias[j];
                for (int p = 0; p < k; p++) s += (double)x[i * k + p] * wq[j * k + p];
                expect[i * n + j] = s;
            }
        var fast = new float[m * n]; var refr = new float[m * n];
        var gemm = new float[m * n];
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
        try
        {
            fixed (float* xp = x, bp = bias, fp = fast, rp = refr, gp = gemm)
            fixed (byte* wp = wbytes)
            {
                Gemm.Linear(xp, m, k, wp, dt, n, bp, fp, scratch);
                Gemm.LinearReference(xp, m, k, wp, dt, n, bp, rp);
                Gemm.GemmBlock(xp, 0, m, k, wp, dt, n, bp, gp, 0, n, scratch); // the GEMM path even for tiny m
            }
        }
        finally { NativeMemory.AlignedFree(scratch); }
        double tol = TolGemm * Math.Max(1, Math.Sqrt(k) / 4);
        Close(expect, fast, tol, $"linear {dt} m={m} n={n} k={k}");
        Close(expect, refr, tol, $"linear ref {dt} m={m} n={n} k={k}");
        Close(expect, gemm, tol, $"gemm {dt} m={m} n={n} k={k}");
    }

    [Theory]
    [InlineData(1, 8, 1), InlineData(4, 8, 37), InlineData(2, 12, 64), InlineData(3, 5, 65), InlineData(1, 64, 200), InlineData(2, 3, 0)]
    public void Attention_row_matches_reference_and_float64(int groupHeads, int headDim, int keys)
    {
        var q = Rand(groupHeads * headDim, 1);
        long stride = headDim + 3; // keys interleaved with other data
        var k = Rand((int)(Math.Max(keys, 1) * stride), 2, 2f);
        var v = Rand((int)(Math.Max(keys, 1) * stride), 3);
        var mask = new float[Math.Max(keys, 1)];
        for (int j = 0; j < keys; j++) mask[j] = j % 5 == 1 ? 0f : 1f;
        float scale = 1f / MathF.Sqrt(headDim);
        var fast = new float[groupHeads * headDim]; var refr = new float[groupHeads * headDim];
        var scratch = new float[AttentionKernels.ScratchFloats(groupHeads, headDim)];
        var expect = new double[groupHeads * headDim];
        for (int g = 0; g < groupHeads; g++)
        {
            var s = new double[keys];
            double mx = double.NegativeInfinity;
            for (int j = 0; j < keys; j++)
            {
                if (mask[j] == 0) { s[j] = double.NegativeInfinity; continue; }
                for (int i = 0; i < headDim; i++) s[j] += (double)q[g * headDim + i] * k[j * stride + i];
                s[j] *= scale; mx = Math.Max(mx, s[j]);
            }
            double sum = 0;
            for (int j = 0; j < keys; j++) { s[j] = mask[j] == 0 ? 0 : Math.Exp(s[j] - mx); sum += s[j]; }
            for (int i = 0; i < headDim; i++)
            {
                double a = 0;
                for (int j = 0; j < keys; j++) a += s[j] * v[j * stride + i];
                expect[g * headDim + i] = sum > 0 ? a / sum : 0;
            }
        }
        fixed (float* qp = q, kp = k, vp = v, mp = mask, fp = fast, rp = refr, sp = scratch)
        {
            AttentionKernels.AttendRow(qp, groupHeads, headDim, kp, vp, stride, keys, mp, scale, fp, sp);
            AttentionKernels.AttendRowReference(qp, groupHeads, headDim, kp, vp, stride, keys, mp, scale, rp);
        }
        Close(expect, fast, TolAttention, "attention"); Close(expect, refr, TolAttention, "attention ref");
    }

    [Fact]
    public void Fully_masked_attention_row_yields_zeros()
    {
        var q = Rand(8, 1); var k = Rand(8 * 3, 2); var v = Rand(8 * 3, 3);
        var mask = new float[3];
        var o = Enumerable.Repeat(7f, 8).ToArray();
        var scratch = new float[AttentionKernels.ScratchFloats(1, 8)];
        fixed (float* qp = q, kp = k, vp = v, mp = mask, op = o, sp = scratch)
            AttentionKernels.AttendRow(qp, 1, 8, kp, vp, 8, 3, mp, 0.3f, op, sp);
        Assert.All(o, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Rope_half_and_interleaved_rotate_the_documented_pairs()
    {
        // head_dim 8, rotary 4 at offset 2: channels 0,1,6,7 pass through.
        var x = Enumerable.Range(1, 8).Select(i => (float)i).ToArray();
        var inv = new float[2];
        RopeKernels.InverseFrequencies(10000f, 4, inv);
        Assert.Equal(1f, inv[0]); Assert.Equal(0.01f, inv[1], 6);
        var cos = new float[2]; var sin = new float[2];
        var half = new float[8]; var inter = new float[8];
        fixed (float* xp = x, hp = half, ip = inter)
        {
            RopeKernels.RotatePosition(xp, hp, 1, 8, 4, 2, false, 3f, inv, cos, sin);
            RopeKernels.RotatePosition(xp, ip, 1, 8, 4, 2, true, 3f, inv, cos, sin);
        }
        double c0 = Math.Cos(3), s0 = Math.Sin(3), c1 = Math.Cos(0.03), s1 = Math.Sin(0.03);
        // half: pairs (2,4) freq0 and (3,5) freq1 (channel values 3,5 and 4,6)
        Assert.Equal(3 * c0 - 5 * s0, half[2], 5); Assert.Equal(5 * c0 + 3 * s0, half[4], 5);
        Assert.Equal(4 * c1 - 6 * s1, half[3], 5); Assert.Equal(6 * c1 + 4 * s1, half[5], 5);
        // interleaved: pairs (2,3) freq0 and (4,5) freq1
        Assert.Equal(3 * c0 - 4 * s0, inter[2], 5); Assert.Equal(4 * c0 + 3 * s0, inter[3], 5);
        Assert.Equal(5 * c1 - 6 * s1, inter[4], 5); Assert.Equal(6 * c1 + 5 * s1, inter[5], 5);
        foreach (var c in new[] { 0, 1, 6, 7 }) { Assert.Equal(x[c], half[c]); Assert.Equal(x[c], inter[c]); }
    }

    [Theory]
    [InlineData(8, 8, 0)]     // stories260K: half 4, the four-wide path only
    [InlineData(6, 6, 0)]     // half 3: scalar only
    [InlineData(14, 10, 2)]   // half 5: four-wide + one scalar pair, channels outside the rotation copied
    [InlineData(24, 24, 0)]   // half 12: eight-wide + four-wide
    [InlineData(64, 64, 0)]   // half 32: eight-wide only
    [InlineData(80, 72, 4)]   // half 36: eight-wide ×4 + four-wide
    public void Rope_half_rotation_is_bit_identical_to_the_scalar_formula_on_every_width(int headDim, int rotary, int offset)
    {
        const int heads = 3;
        var rnd = new Random(headDim * 31 + rotary);
        var x = Enumerable.Range(0, heads * headDim).Select(_ => (float)(rnd.NextDouble() * 4 - 2)).ToArray();
        int half = rotary / 2;
        var cos = Enumerable.Range(0, half).Select(i => MathF.Cos(0.7f + i)).ToArray();
        var sin = Enumerable.Range(0, half).Select(i => MathF.Sin(0.7f + i)).ToArray();
        var y = new float[x.Length];
        var inPlace = (float[])x.Clone();
        fixed (float* xp = x, yp = y, ip = inPlace)
        {
            RopeKernels.Rotate(xp, yp, heads, headDim, rotary, offset, false, cos, sin);
            RopeKernels.Rotate(ip, ip, heads, headDim, rotary, offset, false, cos, sin);
        }
        for (int h = 0; h < heads; h++)
            for (int c = 0; c < headDim; c++)
            {
                int j = h * headDim + c, r = c - offset;
                float expected = r < 0 || r >= rotary ? x[j]
                    : r < half ? x[j] * cos[r] - x[j + half] * sin[r]
                    : x[j] * cos[r - half] + x[j - half] * sin[r - half];
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[j]), $"head {h} channel {c}: {y[j]:R} vs {expected:R}");
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(inPlace[j]), $"in place, head {h} channel {c}");
            }
    }

    [Fact]
    public void Llama3_scaling_matches_transformers_formula()
    {
        var inv = new float[64];
        RopeKernels.InverseFrequencies(500000f, 128, inv);
        var scaled = (float[])inv.Clone();
        RopeKernels.Llama3Scale(scaled, 8f, 1f, 4f, 8192f);
        for (int i = 0; i < 64; i++)
        {
            double f = inv[i], wl = 2 * Math.PI / f, exp;
            if (wl < 8192.0 / 4) exp = f;
            else if (wl > 8192.0 / 1) exp = f / 8;
            else { double sm = (8192 / wl - 1) / (4 - 1); exp = (1 - sm) * f / 8 + sm * f; }
            Assert.Equal(exp, scaled[i], 1e-6 * Math.Abs(exp) + 1e-12);
        }
        Assert.Equal(inv[0], scaled[0]);
        Assert.Equal(inv[63] / 8, scaled[63], 1e-9);
    }

    [Fact]
    public void CpuInfo_names_the_paths_in_use()
    {
        var d = CpuInfo.Describe();
        output.WriteLine(d);
        Assert.Contains("gemm", d);
        Assert.Contains(CpuInfo.GemmPath, d);
        // the int8 prefill GEMM's path follows AVX-VNNI (off in the ISA sweep's DOTNET_EnableAVXVNNI=0 child)
        Assert.Contains(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported ? "avx-vnni" : "int8 prefill", d);
        // and so does the int8 decode GEMV's (the Q8_0 row pairs exist only on VNNI)
        Assert.Equal(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, d.Contains("int8 decode avx-vnni"));
    }
}

[Trait("Category", "Kernel")]
public unsafe class WeightWideningTests
{
    [Fact]
    public void Every_half_and_bfloat16_bit_pattern_widens_exactly()
    {
        var bits = new ushort[65536 + 5]; // odd length exercises the tail
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)(i & 0xFFFF);
        var dst = new float[bits.Length];
        fixed (ushort* bp = bits) fixed (float* dp = dst)
        {
            Hub.Runtime.Kernels.Gemm.ToFloat((byte*)bp, DType.F16, 0, dp, bits.Length);
            for (int i = 0; i < bits.Length; i++)
            {
                float e = (float)BitConverter.UInt16BitsToHalf(bits[i]);
                if (float.IsNaN(e)) Assert.True(float.IsNaN(dst[i]), $"half 0x{bits[i]:X4}");
                else Assert.True(BitConverter.SingleToInt32Bits(e) == BitConverter.SingleToInt32Bits(dst[i]), $"half 0x{bits[i]:X4}: {e} vs {dst[i]}");
            }
            Hub.Runtime.Kernels.Gemm.ToFloat((byte*)bp, DType.BF16, 3, dp, bits.Length - 3);
            for (int i = 0; i < bits.Length - 3; i++)
                Assert.Equal(bits[i + 3] << 16, BitConverter.SingleToInt32Bits(dst[i]));
        }
    }
    [Fact]
    public void Half_gemv_widens_every_finite_half_exactly_and_propagates_inf_and_nan()
    {
        // Every finite half bit pattern, 16 per row; a one-hot x picks column j, so y[row] must equal the half exactly.
        var finite = Enumerable.Range(0, 65536).Where(b => (b & 0x7C00) != 0x7C00).Select(b => (ushort)b).ToArray();
        const int k = 16;
        int n = finite.Length / k;
        var x = new float[k];
        var y = new float[n];
        var scratch = new float[Hub.Runtime.Kernels.Gemm.ScratchFloats(k)];
        fixed (ushort* wp = finite) fixed (float* xp = x) fixed (float* yp = y) fixed (float* sp = scratch)
        {
            for (int j = 0; j < k; j++)
            {
                Array.Clear(x); x[j] = 1f;
                Hub.Runtime.Kernels.Gemm.GemvRows(xp, 1, k, (byte*)wp, DType.F16, n, null, yp, 0, n, sp);
                for (int r = 0; r < n; r++)
                {
                    float e = (float)BitConverter.UInt16BitsToHalf(finite[r * k + j]);
                    Assert.True(e == y[r], $"half 0x{finite[r * k + j]:X4}: {e} vs {y[r]}");
                }
            }
        }

        // Rows with +inf / NaN among ordinary values: the affected dot products are inf / NaN, their neighbours exact.
        const int k2 = 40, n2 = 4;
        var w = new ushort[n2 * k2];
        var xs = Enumerable.Range(0, k2).Select(i => 0.25f * (i % 7 - 3)).ToArray();
        for (int i = 0; i < w.Length; i++) w[i] = BitConverter.HalfToUInt16Bits((Half)(0.125f * (i % 9 - 4)));
        w[0 * k2 + 5] = 0x7C00;  // +inf in row 0 (x[5] = 0.5 > 0)
        w[2 * k2 + 17] = 0x7E00; // NaN in row 2
        var y2 = new float[n2];
        fixed (ushort* wp = w) fixed (float* xp = xs) fixed (float* yp = y2) fixed (float* sp = scratch)
            Hub.Runtime.Kernels.Gemm.GemvRows(xp, 1, k2, (byte*)wp, DType.F16, n2, null, yp, 0, n2, sp);
        Assert.True(float.IsPositiveInfinity(y2[0]), $"row 0: {y2[0]}");
        Assert.True(float.IsNaN(y2[2]), $"row 2: {y2[2]}");
        foreach (int r in new[] { 1, 3 })
        {
            double e = 0;
            for (int i = 0; i < k2; i++) e += xs[i] * (double)(float)BitConverter.UInt16BitsToHalf(w[r * k2 + i]);
            Assert.True(Math.Abs(e - y2[r]) < 1e-5, $"row {r}: {e} vs {y2[r]}");
        }
    }
}

/// <summary>The interleaved decode attention kernel against the per-key one it replaces: the same bits on odd shapes.</summary>
[Trait("Category", "Kernel")]
public unsafe class AttentionRowKernelTests
{
    private static float[] Rand(int n, int seed, float scale = 1f) => KernelTests.Rand(n, seed, scale);

    [Theory]
    [InlineData(1, 8, 1, false), InlineData(1, 64, 3, true), InlineData(1, 64, 64, false), InlineData(1, 64, 200, true),
     InlineData(3, 24, 67, true), InlineData(8, 64, 131, false), InlineData(2, 72, 65, true), InlineData(2, 128, 129, true),
     InlineData(4, 16, 5, false), InlineData(2, 12, 37, true), InlineData(1, 64, 0, false)]
    public void Interleaved_row_kernel_is_bit_identical_to_the_per_key_kernel(int groupHeads, int headDim, int keys, bool masked)
    {
        var q = Rand(groupHeads * headDim, 11);
        long stride = headDim + 8; // keys interleaved with other data
        var k = Rand((int)(Math.Max(keys, 1) * stride), 12, 3f);
        var v = Rand((int)(Math.Max(keys, 1) * stride), 13);
        var mask = new float[Math.Max(keys, 1)];
        // masked: some keys off, and a whole 64-key block off when there are enough keys (a block with no visible key)
        for (int j = 0; j < keys; j++) mask[j] = masked && (j % 7 == 2 || (keys > 128 && j >= 64 && j < 128)) ? 0f : 1f;
        float scale = 1f / MathF.Sqrt(headDim);
        var a = new float[groupHeads * headDim]; var b = new float[groupHeads * headDim]; var r = new float[groupHeads * headDim];
        var s1 = new float[AttentionKernels.ScratchFloats(groupHeads, headDim)];
        var s2 = new float[AttentionKernels.ScratchFloats(groupHeads, headDim)];
        fixed (float* qp = q, kp = k, vp = v, mp = mask, ap = a, bp = b, rp = r, sp1 = s1, sp2 = s2)
        {
            AttentionKernels.AttendRowWith(qp, groupHeads, headDim, kp, vp, stride, keys, masked ? mp : null, scale, ap, sp1, AttentionKernels.RowKernel.PerKey);
            AttentionKernels.AttendRowWith(qp, groupHeads, headDim, kp, vp, stride, keys, masked ? mp : null, scale, bp, sp2, AttentionKernels.RowKernel.Interleaved);
            AttentionKernels.AttendRowReference(qp, groupHeads, headDim, kp, vp, stride, keys, masked ? mp : null, scale, rp);
            // the prefetching variant computes the same (the prefetches stop at the last key row)
            var c = new float[a.Length];
            fixed (float* cp = c)
                AttentionKernels.AttendRowWith(qp, groupHeads, headDim, kp, vp, stride, keys, masked ? mp : null, scale, cp, sp2, AttentionKernels.RowKernel.InterleavedPrefetch);
            for (int i = 0; i < a.Length; i++) Assert.Equal(BitConverter.SingleToInt32Bits(b[i]), BitConverter.SingleToInt32Bits(c[i]));
        }
        for (int i = 0; i < a.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]), $"output {i}: per-key {a[i]:R} vs interleaved {b[i]:R}");
            Assert.True(Math.Abs(b[i] - r[i]) <= 1e-5f * Math.Max(1f, Math.Abs(r[i])), $"output {i}: interleaved {b[i]:R} vs reference {r[i]:R}");
        }
    }
}
