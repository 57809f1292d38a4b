using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The 16-key decode kernels (f32 cache: <see cref="AttentionKernels.UseRowKeys16"/>; f16 cache at 1–2 heads per kv
/// head: <see cref="AttentionKernels.UseHalfRowKeys16"/>) against the reference and a float64 loop, and their switches.
/// On a machine (or ISA-sweep pass) without AVX-512F the default kernels are the older ones and the checks still hold.
/// </summary>
[Trait("Category", "Kernel")]
[Collection(nameof(AttentionStaticsCollection))]
public unsafe class AttentionKeys16Tests
{
    // Softmax attention of head g in float64 over f32 keys and values.
    private static double[] AttendHead64(float[] q, int g, int hd, float[] k, float[] v, long stride, int end, float[]? mask, float scale)
    {
        var o = new double[hd];
        var sc = new double[end];
        double mx = double.NegativeInfinity, sum = 0;
        for (int j = 0; j < end; j++)
        {
            sc[j] = double.NegativeInfinity;
            if (mask != null && mask[j] == 0f) continue;
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)q[g * hd + i] * k[j * stride + i];
            sc[j] = d * scale;
            mx = Math.Max(mx, sc[j]);
        }
        if (mx == double.NegativeInfinity) return o;
        for (int j = 0; j < end; j++)
        {
            if (sc[j] == double.NegativeInfinity) continue;
            double p = Math.Exp(sc[j] - mx);
            sum += p;
            for (int i = 0; i < hd; i++) o[i] += p * v[j * stride + i];
        }
        for (int i = 0; i < hd; i++) o[i] /= sum;
        return o;
    }

    // The f32 default kernel at group sizes 1, 2, 3 and 8, head dims 16/64/80/128 (the 16-key kernel: 64-column P·V
    // blocks and 16-column tails) and 24/40 (not multiples of 16: the interleaved kernel), key counts 0..257 around the
    // 16-key groups, their 4-key and single-key tails and the 64-key blocks, padded rows, and masks that drop single
    // keys, a whole block, or every key. The 16-key kernel sums a score in 16 lanes reduced pairwise (the interleaved
    // kernel: two 8-lane chains) and a block's weights in a vector, so it is not bit-identical to the interleaved
    // kernel; its bound against the reference and float64 is the f32 kernels' attention tolerance, 2e-5 relative.
    [Fact]
    public void F32_default_kernel_matches_the_reference_and_float64()
    {
        int[] groups = [1, 2, 3, 8];
        int[] dims = [16, 24, 40, 64, 80, 128];
        int[] ends = [0, 1, 3, 4, 5, 15, 16, 17, 19, 31, 33, 63, 64, 65, 80, 100, 129, 192, 257];
        var rnd = new Random(61);
        foreach (int G in groups)
            foreach (int hd in dims)
                foreach (int end in ends)
                {
                    int maskKind = rnd.Next(4);   // none, sparse, a whole block (64..127), everything
                    long stride = hd + (rnd.Next(2) == 0 ? 0 : 16);
                    int rows = Math.Max(end, 1);
                    var q = KernelTests.Rand(G * hd, G * 1000 + hd + end, 1.5f);
                    var k = KernelTests.Rand((int)(rows * stride), end + 7 * hd + G, 2f);
                    var v = KernelTests.Rand((int)(rows * stride), end + 11 * hd + G);
                    var mask = new float[rows];
                    for (int j = 0; j < rows; j++)
                        mask[j] = maskKind switch { 1 => j % 7 == 2 ? 0f : 1f, 2 => j >= 64 && j < 128 ? 0f : 1f, 3 => 0f, _ => 1f };
                    float[]? m = maskKind == 0 ? null : mask;
                    float scale = 1f / MathF.Sqrt(hd);
                    var got = new float[G * hd]; var want = new float[G * hd];
                    Array.Fill(got, float.NaN);
                    var scratch = new float[AttentionKernels.ScratchFloats(G, hd)];
                    fixed (float* qp = q, kp = k, vp = v, mp = mask, gp = got, wp = want, sp = scratch)
                    {
                        AttentionKernels.AttendRow(qp, G, hd, kp, vp, stride, end, m != null ? mp : null, scale, gp, sp);
                        AttentionKernels.AttendRowReference(qp, G, hd, kp, vp, stride, end, m != null ? mp : null, scale, wp);
                    }
                    for (int g = 0; g < G; g++)
                    {
                        var exact = AttendHead64(q, g, hd, k, v, stride, end, m, scale);
                        for (int i = 0; i < hd; i++)
                        {
                            int at = g * hd + i;
                            string where = $"G {G}, head_dim {hd}, {end} keys, mask {maskKind}, head {g}, dim {i}";
                            Assert.True(Math.Abs(got[at] - want[at]) <= 2e-5f * Math.Max(1f, Math.Abs(want[at])), $"{where}: {got[at]:R} vs reference {want[at]:R}");
                            Assert.True(Math.Abs(got[at] - exact[i]) <= 2e-5 * Math.Max(1, Math.Abs(exact[i])), $"{where}: {got[at]:R} vs float64 {exact[i]:R}");
                        }
                    }
                }
    }

    // Scores far apart (one key dominates, then a later block raises the running max by a lot) and large values: the
    // 16-key kernels' online rescaling against float64, f32 and f16 caches.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Keys16_kernels_rescale_across_blocks_with_far_apart_scores(bool half)
    {
        const int G = 2, hd = 64, end = 200;
        var q = KernelTests.Rand(G * hd, 5, 1f);
        var k = KernelTests.Rand(end * hd, 6, 1f);
        var v = KernelTests.Rand(end * hd, 7, 100f);
        for (int i = 0; i < hd; i++) { k[3 * hd + i] = q[i] * 4; k[150 * hd + i] = q[i] * 12; k[190 * hd + i] = q[hd + i] * 10; }
        if (half) { k = k.Select(x => (float)(Half)x).ToArray(); v = v.Select(x => (float)(Half)x).ToArray(); }
        var kh = k.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
        var vh = v.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
        var got = new float[G * hd];
        var scratch = new float[AttentionKernels.ScratchFloats(G, hd)];
        fixed (float* qp = q, kp = k, vp = v, gp = got, sp = scratch)
        fixed (ushort* khp = kh, vhp = vh)
        {
            if (half) AttentionKernels.AttendRowHalf(qp, G, hd, khp, vhp, hd, end, null, 0.125f, gp, sp);
            else AttentionKernels.AttendRow(qp, G, hd, kp, vp, hd, end, null, 0.125f, gp, sp);
        }
        for (int g = 0; g < G; g++)
        {
            var exact = AttendHead64(q, g, hd, k, v, hd, end, null, 0.125f);
            for (int i = 0; i < hd; i++)
                Assert.True(Math.Abs(got[g * hd + i] - exact[i]) <= 2e-5 * Math.Max(1, Math.Abs(exact[i])), $"head {g}, dim {i}: {got[g * hd + i]:R} vs float64 {exact[i]:R}");
        }
    }

    // Switched off, the f32 default is the interleaved prefetching kernel again, bit for bit, and the f16 per-head kernel
    // is its 4-key path (which the 512/256-bit test pins down): the A/B switches choose the kernel and nothing else.
    [Fact]
    public void Switched_off_the_f32_default_is_the_interleaved_kernel_bit_for_bit()
    {
        bool before = AttentionKernels.UseRowKeys16;
        try
        {
            AttentionKernels.UseRowKeys16 = false;
            foreach (int G in new[] { 1, 8 })
                foreach (int end in new[] { 1, 37, 200 })
                {
                    const int hd = 64;
                    var q = KernelTests.Rand(G * hd, 31 + end, 1f);
                    var k = KernelTests.Rand(end * hd, 32 + end, 2f);
                    var v = KernelTests.Rand(end * hd, 33 + end);
                    var a = new float[G * hd]; var b = new float[G * hd];
                    var scratch = new float[AttentionKernels.ScratchFloats(G, hd)];
                    fixed (float* qp = q, kp = k, vp = v, ap = a, bp = b, sp = scratch)
                    {
                        AttentionKernels.AttendRow(qp, G, hd, kp, vp, hd, end, null, 0.125f, ap, sp);
                        AttentionKernels.AttendRowWith(qp, G, hd, kp, vp, hd, end, null, 0.125f, bp, sp, AttentionKernels.RowKernel.InterleavedPrefetch);
                    }
                    for (int i = 0; i < a.Length; i++) Assert.Equal(BitConverter.SingleToInt32Bits(b[i]), BitConverter.SingleToInt32Bits(a[i]));
                }
        }
        finally { AttentionKernels.UseRowKeys16 = before; }
    }
}
