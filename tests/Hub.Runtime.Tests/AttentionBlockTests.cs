using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>The flash-style prefill block against a float64 softmax over materialized scores.</summary>
[Trait("Category", "Kernel")]
public unsafe class AttentionBlockTests
{
    private static float[] Rand(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    public static IEnumerable<object[]> Cases()
    {
        // groupHeads, headDim, T, past, causal, masked, prefix
        yield return new object[] { 1, 8, 1, 0, true, false, 0 };
        yield return new object[] { 1, 32, 70, 0, true, false, 0 };
        yield return new object[] { 1, 32, 128, 0, false, true, 0 };
        yield return new object[] { 3, 37, 33, 9, true, true, 0 };
        yield return new object[] { 8, 64, 19, 130, true, false, 0 };
        yield return new object[] { 2, 80, 65, 0, false, false, 0 };
        yield return new object[] { 4, 5, 40, 0, true, false, 23 };
        yield return new object[] { 1, 16, 20, 3, true, true, 12 };
        yield return new object[] { 40, 8, 3, 0, true, false, 0 };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Block_matches_float64_softmax_with_causal_masks_and_prefix(int g, int hd, int t, int past, bool causal, bool masked, int prefix)
    {
        int kv = 2, h = kv * g, s = past + t;
        long qStride = (long)h * hd, kvStride = (long)kv * hd + 5; // keys interleaved with other data
        var q = Rand((int)(t * qStride), 1);
        var k = Rand((int)(s * kvStride), 2, 2f);
        var v = Rand((int)(s * kvStride), 3);
        var mask = new float[s];
        for (int j = 0; j < s; j++) mask[j] = masked && (j % 7 == 2 || j >= s - 3) ? 0f : 1f;
        float scale = 1f / MathF.Sqrt(hd);
        var o = new float[t * qStride];
        int per = AttentionKernels.QueriesPerBlock(g);
        var scratch = new float[AttentionKernels.PrefillScratchFloats(g, hd)];
        fixed (float* qp = q, kp = k, vp = v, mp = mask, op = o, sp = scratch)
            for (int kvh = 0; kvh < kv; kvh++)
                for (int t0 = 0; t0 < t; t0 += per)
                    AttentionKernels.AttendBlock(qp + kvh * g * hd, qStride, t0, Math.Min(t, t0 + per), g, hd,
                        kp + kvh * hd, vp + kvh * hd, kvStride, s, masked ? mp : null, causal, past, prefix, scale, op + kvh * g * hd, sp);
        for (int ti = 0; ti < t; ti++)
            for (int head = 0; head < h; head++)
            {
                int kvh = head / g, qpos = past + ti;
                int end = causal ? Math.Min(s, qpos < prefix ? Math.Max(qpos + 1, prefix) : qpos + 1) : s;
                var sc = new double[end];
                double mx = double.NegativeInfinity;
                for (int j = 0; j < end; j++)
                {
                    if (mask[j] == 0) { sc[j] = double.NegativeInfinity; continue; }
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += (double)q[ti * qStride + head * hd + i] * k[j * kvStride + kvh * hd + i];
                    sc[j] = d * scale; mx = Math.Max(mx, sc[j]);
                }
                double sum = 0;
                for (int j = 0; j < end; j++) { sc[j] = double.IsNegativeInfinity(sc[j]) ? 0 : Math.Exp(sc[j] - mx); sum += sc[j]; }
                for (int i = 0; i < hd; i++)
                {
                    double a = 0;
                    for (int j = 0; j < end; j++) a += sc[j] * v[j * kvStride + kvh * hd + i];
                    double e = sum > 0 ? a / sum : 0, got = o[ti * qStride + head * hd + i];
                    if (!(Math.Abs(e - got) <= 2e-5 * Math.Max(1, Math.Abs(e))))
                        Assert.Fail($"t={ti} head={head} ch={i}: expected {e:R}, got {got:R}");
                }
            }
    }

    public static IEnumerable<object[]> DirectCases()
    {
        // groupHeads, headDim, T, masked
        yield return new object[] { 1, 32, 128, true };
        yield return new object[] { 1, 32, 128, false };
        yield return new object[] { 2, 37, 53, true };
        yield return new object[] { 1, 8, 2, false };
        yield return new object[] { 3, 80, 17, true };
        yield return new object[] { 1, 16, 300, true };
        yield return new object[] { 1, 5, AttentionKernels.DirectMaxKeys, false };
    }

    [Theory]
    [MemberData(nameof(DirectCases))]
    public void Direct_path_matches_float64_softmax_on_odd_shapes_and_masks(int g, int hd, int t, bool masked)
    {
        int kv = 2, h = kv * g, s = t;
        long qStride = (long)h * hd + 3, kvStride = (long)kv * hd + 5; // rows interleaved with other data
        var q = Rand((int)(t * qStride), 11);
        var k = Rand((int)(s * kvStride), 12, 2f);
        var v = Rand((int)(s * kvStride), 13);
        var mask = new float[s];
        for (int j = 0; j < s; j++) mask[j] = masked && (j % 7 == 2 || j >= s - 3) ? 0f : 1f;
        if (masked && s > 1) mask[0] = 0f;
        float scale = 1f / MathF.Sqrt(hd);
        long oStride = (long)h * hd + 1; // output rows laid out apart from the query rows
        var o = Enumerable.Repeat(float.NaN, (int)(t * oStride)).ToArray();
        var scratch = new float[AttentionKernels.DirectScratchFloats(hd)];
        fixed (float* qp = q, kp = k, vp = v, mp = mask, op = o, sp = scratch)
            for (int kvh = 0; kvh < kv; kvh++)
                for (int t0 = 0; t0 < t; t0 += 50) // a split that is not a multiple of the 48-row block
                    AttentionKernels.AttendDirect(qp + kvh * g * hd, qStride, t0, Math.Min(t, t0 + 50), g, hd,
                        kp + kvh * hd, vp + kvh * hd, kvStride, s, masked ? mp : null, scale, op + kvh * g * hd, oStride, sp);
        var expected = new float[g * hd];
        fixed (float* kp = k, vp = v, mp = mask, ep = expected)
            for (int ti = 0; ti < t; ti++)
                for (int kvh = 0; kvh < kv; kvh++)
                {
                    fixed (float* qp = q)
                        AttentionKernels.AttendRowReference(qp + ti * qStride + kvh * g * hd, g, hd, kp + kvh * hd, vp + kvh * hd, kvStride, s,
                            masked ? mp : null, scale, ep);
                    for (int i = 0; i < g * hd; i++)
                    {
                        float e = expected[i], got = o[ti * oStride + kvh * g * hd + i];
                        if (!(Math.Abs(e - got) <= 2e-5 * Math.Max(1, Math.Abs(e))))
                            Assert.Fail($"t={ti} kv head={kvh} ch={i}: expected {e:R}, got {got:R}");
                    }
                }
    }

    [Fact]
    public void Direct_path_gives_zeros_when_every_key_is_masked()
    {
        const int hd = 16, t = 9;
        var q = Rand(t * hd, 1); var k = Rand(t * hd, 2); var v = Rand(t * hd, 3);
        var mask = new float[t];
        var o = Enumerable.Repeat(float.NaN, t * hd).ToArray();
        var scratch = new float[AttentionKernels.DirectScratchFloats(hd)];
        fixed (float* qp = q, kp = k, vp = v, mp = mask, op = o, sp = scratch)
            AttentionKernels.AttendDirect(qp, hd, 0, t, 1, hd, kp, vp, hd, t, mp, 0.25f, op, hd, sp);
        Assert.All(o, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Rows_whose_keys_are_all_masked_get_zeros()
    {
        int hd = 8, t = 5;
        var q = Rand(t * hd, 1); var k = Rand(t * hd, 2); var v = Rand(t * hd, 3);
        var mask = new float[] { 0, 0, 1, 1, 1 };
        var o = Enumerable.Repeat(7f, t * hd).ToArray();
        var scratch = new float[AttentionKernels.PrefillScratchFloats(1, hd)];
        fixed (float* qp = q, kp = k, vp = v, mp = mask, op = o, sp = scratch)
            AttentionKernels.AttendBlock(qp, hd, 0, t, 1, hd, kp, vp, hd, t, mp, true, 0, 0, 0.3f, op, sp);
        Assert.All(o.AsSpan(0, 2 * hd).ToArray(), x => Assert.Equal(0f, x)); // queries 0, 1 see only masked keys
        Assert.Contains(o.AsSpan(2 * hd).ToArray(), x => x != 0f);
    }

    [Fact]
    public void Direct_units_split_query_rows_only_when_kv_heads_leave_workers_idle()
    {
        // MiniLM/BERT-base at batch 1: 12 kv heads already give 2 workers six units each.
        Assert.Equal(128, AttentionKernels.DirectQueriesPerUnit(128, 12, 2));
        Assert.Equal(128, AttentionKernels.DirectQueriesPerUnit(128, 1, 1));
        // The same model on 8 workers: 12 units would leave most idle, so the 128 rows are split in whole register tiles.
        int rows = AttentionKernels.DirectQueriesPerUnit(128, 12, 8);
        Assert.InRange(rows, AttentionKernels.DirectMinUnitRows, 127);
        Assert.Equal(0, rows % Gemm.MR);
        Assert.True(12 * ((128 + rows - 1) / rows) >= 2 * 8, $"{rows} rows per unit");
        // Short sequences are not split below the minimum.
        Assert.Equal(20, AttentionKernels.DirectQueriesPerUnit(20, 1, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => AttentionKernels.DirectQueriesPerUnit(128, 0, 2));
    }

    [Theory]
    [InlineData(1, 32, 128, false)]
    [InlineData(3, 24, 131, true)]
    [InlineData(2, 16, 500, true)]
    public void Direct_path_split_into_units_gives_the_same_bits_as_one_unit(int g, int hd, int t, bool masked)
    {
        int h = g;
        long stride = (long)h * hd;
        var q = Rand((int)(t * stride), 21); var k = Rand(t * hd, 22, 2f); var v = Rand(t * hd, 23);
        var mask = new float[t];
        for (int j = 0; j < t; j++) mask[j] = masked && j % 9 == 4 ? 0f : 1f;
        var whole = new float[t * stride]; var split = new float[t * stride];
        var scratch = new float[AttentionKernels.DirectScratchFloats(hd)];
        int rows = AttentionKernels.DirectQueriesPerUnit(t, 1, 8);
        Assert.True(rows < t, "the planner should split this case");
        fixed (float* qp = q, kp = k, vp = v, mp = mask, wp = whole, sp2 = split, sp = scratch)
        {
            AttentionKernels.AttendDirect(qp, stride, 0, t, g, hd, kp, vp, hd, t, masked ? mp : null, 0.2f, wp, stride, sp);
            // units in reverse order, as workers may take them
            for (int t0 = (t - 1) / rows * rows; t0 >= 0; t0 -= rows)
                AttentionKernels.AttendDirect(qp, stride, t0, Math.Min(t, t0 + rows), g, hd, kp, vp, hd, t, masked ? mp : null, 0.2f, sp2, stride, sp);
        }
        for (int i = 0; i < whole.Length; i++)
            if (BitConverter.SingleToInt32Bits(whole[i]) != BitConverter.SingleToInt32Bits(split[i]))
                Assert.Fail($"element {i} (row {i / stride}): one unit {whole[i]:R}, split into {rows}-row units {split[i]:R}");
    }

    [Fact]
    public void Vector_exp_is_within_one_ulp_over_the_softmax_range()
    {
        // Attention's row softmax and online softmax, and every activation, share VecMath.Exp (one FMA implementation);
        // on x − max ≤ 0 it must stay within one float ulp of e^x down to e^−80.
        var e = new float[8];
        double worst = 0;
        for (float x = -80f; x <= 0f; x += 0.0137f)
        {
            System.Runtime.Intrinsics.Vector256.CopyTo(VecMath.Exp(System.Runtime.Intrinsics.Vector256.Create(x)), e);
            double want = Math.Exp(x), ulp = MathF.BitIncrement((float)want) - (float)want;
            worst = Math.Max(worst, Math.Abs(e[0] - want) / ulp);
        }
        Assert.True(worst <= 1.0, $"worst error {worst:F2} ulp");
    }
}
