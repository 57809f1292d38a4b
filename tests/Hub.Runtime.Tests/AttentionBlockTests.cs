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
}
