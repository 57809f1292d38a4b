using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>The f16 KV cache's decode kernel against the reference on the same (rounded) values.</summary>
[Trait("Category", "Kernel")]
[Collection(nameof(AttentionStaticsCollection))]
public unsafe class HalfKvKernelTests
{
    private static float[] Rand(int n, int seed, float scale = 1f) => KernelTests.Rand(n, seed, scale);

    [Theory]
    [InlineData(1, 8, 1, false), InlineData(1, 64, 3, true), InlineData(1, 64, 64, false), InlineData(1, 64, 200, true),
     InlineData(3, 24, 67, true), InlineData(8, 64, 131, false), InlineData(2, 72, 65, true), InlineData(2, 128, 129, true),
     InlineData(2, 12, 37, true), InlineData(1, 64, 0, false), InlineData(4, 40, 70, false)]
    public void Half_row_kernel_matches_the_reference_on_the_rounded_cache(int groupHeads, int headDim, int keys, bool masked)
    {
        var q = Rand(groupHeads * headDim, 21);
        long stride = headDim + 8;
        int n = (int)(Math.Max(keys, 1) * stride);
        var kf = Rand(n, 22, 3f); var vf = Rand(n, 23);
        // tiny and subnormal halves, zeros of both signs and large ones too
        kf[0] = 3e-6f; kf[1] = -0f; vf[0] = -5e-7f; vf[2] = 0f; kf[3] = 6.0e4f / 1e4f; vf[3] = -2.5e4f / 1e4f;
        var kh = kf.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
        var vh = vf.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
        var kr = kh.Select(h => (float)BitConverter.UInt16BitsToHalf(h)).ToArray();
        var vr = vh.Select(h => (float)BitConverter.UInt16BitsToHalf(h)).ToArray();
        var mask = new float[Math.Max(keys, 1)];
        for (int j = 0; j < keys; j++) mask[j] = masked && (j % 7 == 2 || (keys > 128 && j >= 64 && j < 128)) ? 0f : 1f;
        float scale = 1f / MathF.Sqrt(headDim);
        var got = new float[groupHeads * headDim]; var want = new float[groupHeads * headDim];
        var scratch = new float[AttentionKernels.ScratchFloats(groupHeads, headDim)];
        fixed (float* qp = q, krp = kr, vrp = vr, mp = mask, gp = got, wp = want, sp = scratch)
        fixed (ushort* khp = kh, vhp = vh)
        {
            AttentionKernels.AttendRowHalf(qp, groupHeads, headDim, khp, vhp, stride, keys, masked ? mp : null, scale, gp, sp);
            AttentionKernels.AttendRowReference(qp, groupHeads, headDim, krp, vrp, stride, keys, masked ? mp : null, scale, wp);
        }
        for (int i = 0; i < got.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= 2e-5f * Math.Max(1f, Math.Abs(want[i])), $"output {i}: half kernel {got[i]:R} vs reference {want[i]:R}");
    }

    // Softmax attention of one head straight from the halves, in float64 (the reference's maths, not its code).
    private static double[] AttendHead64(float[] q, int g, int hd, ushort[] k, ushort[] v, long stride, int end, float[]? mask, float scale)
    {
        var o = new double[hd];
        var sc = new double[end];
        double mx = double.NegativeInfinity, sum = 0;
        for (int j = 0; j < end; j++)
        {
            sc[j] = double.NegativeInfinity;
            if (mask != null && mask[j] == 0f) continue;
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)q[g * hd + i] * (double)BitConverter.UInt16BitsToHalf(k[j * stride + i]);
            sc[j] = d * scale;
            mx = Math.Max(mx, sc[j]);
        }
        if (mx == double.NegativeInfinity) return o;
        for (int j = 0; j < end; j++)
        {
            if (sc[j] == double.NegativeInfinity) continue;
            double p = Math.Exp(sc[j] - mx);
            sum += p;
            for (int i = 0; i < hd; i++) o[i] += p * (double)BitConverter.UInt16BitsToHalf(v[j * stride + i]);
        }
        for (int i = 0; i < hd; i++) o[i] /= sum;
        return o;
    }

    // Every group size 1..16 (the per-head kernel at 1–2, the heads-in-lanes kernel with 8-lane chunks, partial chunks
    // and the 4-/1-head P·V tails from 3), head dims 16–128 and 12 (not a multiple of 8: the scalar path), key counts
    // 0..257 around the 64-key blocks and the 8-key score steps, padded rows, and masks that drop single keys, a whole
    // block, or every key. Against AttendRowReference on the widened rows and a float64 loop on the halves: the kernel
    // rounds q·scale once and sums in f32 (head_dim terms per score, 64 keys per block), ≤ 2e-5 relative as the per-head
    // kernel's bound. Once with the AVX-512 micro-kernels and once without (the AVX2 heads-in-lanes scoring and P·V a
    // machine without AVX-512 takes); head dims 24 and 40 (≡ 8 mod 16) reach the 8-column tails on either path.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Half_row_kernel_matches_the_reference_at_every_group_size_head_dim_and_length(bool wide)
    {
        bool before = AttentionKernels.UseHalfGroup512;
        AttentionKernels.UseHalfGroup512 = wide;
        try { HalfRowKernelCases(); }
        finally { AttentionKernels.UseHalfGroup512 = before; }
    }

    private static void HalfRowKernelCases()
    {
        int[] dims = [16, 24, 32, 40, 64, 80, 96, 128, 12];
        int[] ends = [0, 1, 5, 8, 9, 63, 64, 65, 100, 129, 192, 257];
        var rnd = new Random(41);
        for (int G = 1; G <= 16; G++)
            foreach (int hd in dims)
                foreach (int end in ends)
                {
                    int maskKind = rnd.Next(4);   // none, sparse, a whole block (64..127), everything
                    long stride = hd + (rnd.Next(2) == 0 ? 0 : 8);
                    int rows = Math.Max(end, 1);
                    var q = KernelTests.Rand(G * hd, G * 1000 + hd + end, 1.5f);
                    var kf = KernelTests.Rand((int)(rows * stride), end + 7 * hd + G, 2f);
                    var vf = KernelTests.Rand((int)(rows * stride), end + 11 * hd + G);
                    kf[0] = 3e-6f; vf[0] = -5e-7f; kf[1] = -0f;   // a subnormal half, a negative zero
                    var kh = kf.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
                    var vh = vf.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
                    var kr = kh.Select(h => (float)BitConverter.UInt16BitsToHalf(h)).ToArray();
                    var vr = vh.Select(h => (float)BitConverter.UInt16BitsToHalf(h)).ToArray();
                    var mask = new float[rows];
                    for (int j = 0; j < rows; j++)
                        mask[j] = maskKind switch { 1 => j % 7 == 2 ? 0f : 1f, 2 => j >= 64 && j < 128 ? 0f : 1f, 3 => 0f, _ => 1f };
                    float[]? m = maskKind == 0 ? null : mask;
                    float scale = 1f / MathF.Sqrt(hd);
                    var got = new float[G * hd]; var want = new float[G * hd];
                    Array.Fill(got, float.NaN);
                    var scratch = new float[AttentionKernels.ScratchFloats(G, hd)];
                    fixed (float* qp = q, krp = kr, vrp = vr, mp = mask, gp = got, wp = want, sp = scratch)
                    fixed (ushort* khp = kh, vhp = vh)
                    {
                        AttentionKernels.AttendRowHalf(qp, G, hd, khp, vhp, stride, end, m != null ? mp : null, scale, gp, sp);
                        AttentionKernels.AttendRowReference(qp, G, hd, krp, vrp, stride, end, m != null ? mp : null, scale, wp);
                    }
                    for (int g = 0; g < G; g++)
                    {
                        var exact = AttendHead64(q, g, hd, kh, vh, stride, end, m, scale);
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

    [Theory]
    [InlineData(0), InlineData(1), InlineData(15), InlineData(16), InlineData(17), InlineData(64), InlineData(1000)]
    public void Half_conversions_match_the_half_cast_bit_for_bit(int n)
    {
        // random magnitudes over the whole half range and beyond, plus ties, subnormals, the overflow edge and specials
        var rnd = new Random(n + 5);
        var f = new float[n + 40];
        for (int i = 0; i < f.Length; i++) f[i] = (float)((rnd.NextDouble() * 2 - 1) * Math.Pow(2, rnd.Next(-30, 18)));
        float[] edge = [0f, -0f, 65504f, 65519.99f, 65520f, -70000f, 6.1035156e-5f, 6.1e-5f, 5.9604645e-8f, 2.9802322e-8f,
            2.9802326e-8f, 1e-9f, -3.0e-6f, 1.00048828125f, 1.000732421875f, 1.0009765625f, 2049f, 2051f, 4097f,
            float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, 1e-45f, -1.5e-5f];
        edge.CopyTo(f, 0);
        var h = new ushort[f.Length]; var w = new float[f.Length];
        fixed (float* fp = f, wp = w)
        fixed (ushort* hp = h)
        {
            AttentionKernels.NarrowToHalf(fp, hp, f.Length);
            for (int i = 0; i < f.Length; i++)
                Assert.True(BitConverter.HalfToUInt16Bits((Half)f[i]) == h[i], $"{f[i]:R}: {h[i]:x4} vs the cast's {BitConverter.HalfToUInt16Bits((Half)f[i]):x4}");
            AttentionKernels.WidenHalf(hp, wp, f.Length);
            for (int i = 0; i < f.Length; i++)
                if (Half.IsFinite(BitConverter.UInt16BitsToHalf(h[i])))
                    Assert.True(BitConverter.SingleToInt32Bits((float)BitConverter.UInt16BitsToHalf(h[i])) == BitConverter.SingleToInt32Bits(w[i]), $"half {h[i]:x4}: {w[i]:R}");
            // the first n values alone: the vector body and the scalar tail give the same bits
            var h2 = new ushort[Math.Max(1, n)];
            fixed (ushort* h2p = h2) AttentionKernels.NarrowToHalf(fp, h2p, n);
            for (int i = 0; i < n; i++) Assert.Equal(h[i], h2[i]);
        }
        // NaN stays NaN
        var nan = new[] { float.NaN }; var hn = new ushort[1];
        fixed (float* np = nan) fixed (ushort* hnp = hn) AttentionKernels.NarrowToHalf(np, hnp, 1);
        Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(hn[0])));
    }

    [Fact]
    public void Half_row_kernel_checks_its_arguments()
    {
        var f = new float[64]; var h = new ushort[64]; var s = new float[AttentionKernels.ScratchFloats(1, 16)];
        fixed (float* fp = f, sp = s)
        fixed (ushort* hp = h)
        {
            float* F = fp; ushort* H = hp; float* S = sp;
            Assert.Throws<ArgumentOutOfRangeException>(() => AttentionKernels.AttendRowHalf(F, 1, 16, H, H, 8, 2, null, 1f, F, S));
            Assert.Throws<ArgumentOutOfRangeException>(() => AttentionKernels.AttendRowHalf(F, 1, 16, H, H, 16, -1, null, 1f, F, S));
            Assert.Throws<ArgumentNullException>(() => AttentionKernels.AttendRowHalf(null, 1, 16, H, H, 16, 2, null, 1f, F, S));
        }
    }
}

/// <summary>
/// RuntimeOptions.KvCachePrecision: an f16 cache stores halves only, matches an f32 cache fed the same keys/values
/// rounded to f16 (prefill bit for bit, decode within the half kernel's bound), follows an f32 cache's logits through
/// decode, truncation, reorder and reset, allocates nothing per decode step and holds half the bytes.
/// </summary>
[Collection(nameof(AttentionStaticsCollection))]
public class KvCachePrecisionTests
{
    private const int KV = 2, Hd = 24;
    private int H = 4;   // query heads: 4 (groups of 2: AttendRowHalf's per-head kernel) or 8/16 (4/8: its heads-in-lanes kernel)

    // One stateful causal Attention (GQA H/2, head_dim 24) over graph inputs: q, k, v and the key mask are given, so a
    // reference can feed the f32 cache exactly the values the f16 cache stores.
    private InferRequest AttentionOnly(GraphHarness h, KvCachePrecision kv, int threads)
    {
        var b = new GraphBuilder("attn");
        var q = b.Input("q", DType.F32, "batch", "seq", H * Hd);
        var k = b.Input("k", DType.F32, "batch", "seq", KV * Hd);
        var v = b.Input("v", DType.F32, "batch", "seq", KV * Hd);
        var mask = b.Input("mask", DType.F32, "batch", "total");
        var sk = b.State("past.k", DType.F32, "batch", KV, "ctx", Hd);
        var sv = b.State("past.v", DType.F32, "batch", KV, "ctx", Hd);
        var y = b.Op(Ops.Attention, "attn", new[] { q, k, v, mask }, new { heads = H, kv_heads = KV, head_dim = Hd, state_k = sk, state_v = sv });
        b.Output(y, DType.F32, "batch", "seq", H * Hd);
        return h.Compile(b, new RuntimeOptions { Threads = threads, MaxContext = 200, MaxBatch = 3, KvCachePrecision = kv });
    }

    private static float[] RoundedToHalf(float[] x) => x.Select(f => (float)(Half)f).ToArray();

    // Runs one step of [batch, t] new positions on both requests: the f16 cache gets k/v as they are, the reference f32
    // cache gets them rounded to f16. Rows mask key 3 and, in row 1, every 5th key. Returns the worst relative difference.
    private double Step(InferRequest f16, InferRequest reference, int batch, int t, int seed)
    {
        int past = f16.PastLength, total = past + t;
        Assert.Equal(past, reference.PastLength);
        var q = KernelTests.Rand(batch * t * H * Hd, seed, 2f);
        var k = KernelTests.Rand(batch * t * KV * Hd, seed + 1, 3f);
        var v = KernelTests.Rand(batch * t * KV * Hd, seed + 2);
        var mask = new float[batch * total];
        for (int r = 0; r < batch; r++)
            for (int j = 0; j < total; j++) mask[r * total + j] = j == 3 && total > 4 || r == 1 && j % 5 == 4 ? 0f : 1f;
        int[] s3 = [batch, t, 0], s2 = [batch, total];
        foreach (var (req, kk, vv) in new[] { (f16, k, v), (reference, RoundedToHalf(k), RoundedToHalf(v)) })
        {
            s3[2] = H * Hd; req.SetInput("q", q, s3);
            s3[2] = KV * Hd; req.SetInput("k", kk, s3);
            req.SetInput("v", vv, s3);
            req.SetInput("mask", mask, s2);
            req.Infer();
        }
        var a = f16.GetOutput("attn"); var e = reference.GetOutput("attn");
        double worst = 0;
        for (int i = 0; i < a.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - e[i]) / Math.Max(1, Math.Abs(e[i])));
        return worst;
    }

    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 4)]
    [InlineData(2, 8)]
    [InlineData(2, 16)]
    public void F16_cache_matches_an_f32_cache_fed_the_rounded_keys_and_values(int threads, int heads)
    {
        H = heads;
        using var h = new GraphHarness();
        var f16 = AttentionOnly(h, KvCachePrecision.F16, threads);
        var reference = AttentionOnly(h, KvCachePrecision.F32, threads);
        // Multi-position steps run the f32 block kernel on the widened halves: the same values, the same kernel, bit
        // for bit. Decode steps run AttendRowHalf, which matches the f32 row kernels within 2e-5 relative (its kernel test).
        Assert.Equal(0, Step(f16, reference, 2, 37, 1));            // prefill, batch 2
        for (int i = 0; i < 20; i++) Assert.True(Step(f16, reference, 2, 1, 10 + 3 * i) <= 2e-5, $"decode step {i}");
        Assert.Equal(0, Step(f16, reference, 2, 9, 100));           // a chunk of 9 after 57 cached positions
        foreach (var r in new[] { f16, reference }) r.TruncateState(40);
        Assert.True(Step(f16, reference, 2, 1, 200) <= 2e-5, "decode after truncation");
        Assert.Equal(0, Step(f16, reference, 2, 5, 210));
        // beam-search style reorder to three rows (one repeated), then decode and a chunk
        foreach (var r in new[] { f16, reference }) r.ReorderState(new[] { 1, 0, 1 });
        Assert.Equal(f16.StateBytesCopied * 2, reference.StateBytesCopied);
        for (int i = 0; i < 5; i++) Assert.True(Step(f16, reference, 3, 1, 300 + 3 * i) <= 2e-5, $"decode step {i} after reorder");
        Assert.Equal(0, Step(f16, reference, 3, 4, 330));
        foreach (var r in new[] { f16, reference }) r.ResetState();
        Assert.Equal(0, Step(f16, reference, 1, 70, 400));          // a longer prompt than the first after a reset
        Assert.True(Step(f16, reference, 1, 1, 410) <= 2e-5, "decode after reset");
        Assert.Equal(f16.StateBytesAppended * 2, reference.StateBytesAppended);
    }

    private static void Run(InferRequest req, int[] ids, int[] pos, float[] mask, int batch, int t)
    {
        req.SetInput("input_ids", ids, [batch, t]);
        req.SetInput("positions", pos, [batch, t]);
        req.SetInput("attention_mask", mask, [batch, mask.Length / batch]);
        req.SetInput("logits_to_keep", new[] { 1 }, [1]);
        req.Infer();
    }

    private static double Worst(InferRequest a, InferRequest b)
    {
        var x = a.GetOutput("logits"); var y = b.GetOutput("logits");
        Assert.Equal(x.Length, y.Length);
        double worst = 0;
        for (int i = 0; i < x.Length; i++) worst = Math.Max(worst, Math.Abs(x[i] - y[i]) / Math.Max(1, Math.Abs(x[i])));
        return worst;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void F16_cache_logits_follow_the_f32_cache_over_many_decode_steps(int threads)
    {
        using var tm = new TinyModel();
        using var ir = tm.Build(7);
        using var c32 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 96, MaxBatch = 2, KvCachePrecision = KvCachePrecision.F32 });
        using var c16 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 96, MaxBatch = 2, KvCachePrecision = KvCachePrecision.F16 });
        using var f32 = c32.CreateInferRequest();
        using var f16 = c16.CreateInferRequest();
        var both = new[] { f32, f16 };
        // batch 2, the second row left-padded by 3 positions
        int[] prompt = [3, 14, 15, 92, 65, 35, 89, 79, 0, 0, 0, 32, 38, 46, 26, 43];
        int[] pos = [0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 1, 2, 3, 4];
        var mask = Enumerable.Repeat(1f, 16).ToArray();
        for (int j = 8; j < 11; j++) mask[j] = 0f;
        foreach (var r in both) Run(r, prompt, pos, mask, 2, 8);
        // f16 keys/values carry 11 significant bits (relative rounding ≤ 2^-11 ≈ 4.9e-4 per value); through the tiny
        // model's two layers the logits move by about that much (measured worst 6.7e-4 over prefill and 60 steps): 1e-2 leaves a margin and
        // still catches a wrong row, position or unconverted cache (those differ by O(1)).
        double worst = Worst(f32, f16);
        Assert.True(worst is > 0 and <= 1e-2, $"prefill: {worst:G3}");
        for (int step = 0; step < 60; step++)
        {
            int total = 8 + step + 1;
            var m = new float[2 * total];
            for (int r = 0; r < 2; r++)
                for (int j = 0; j < total; j++) m[r * total + j] = j < 8 ? mask[r * 8 + j] : 1f;
            foreach (var r in both) Run(r, [step * 7 % 99, step * 11 % 99], [8 + step, 5 + step], m, 2, 1);
            worst = Worst(f32, f16);
            Assert.True(worst is > 0 and <= 1e-2, $"decode step {step}: {worst:G3}");
        }
    }

    [Fact]
    public void F16_cache_decode_steps_allocate_nothing_and_never_move_the_cache()
    {
        using var tm = new TinyModel();
        using var ir = tm.Build(8);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 2, MaxContext = 64, KvCachePrecision = KvCachePrecision.F16 });
        using var req = cm.CreateInferRequest();
        var addresses = req.StateNames.Select(req.GetStateAddress).ToArray();
        int[] id = [1], p = [0], keep = [1], s11 = [1, 1], s1 = [1], sm = [1, 1];
        var ones = Enumerable.Repeat(1f, 64).ToArray();
        void Step()
        {
            int past = req.PastLength;
            id[0] = past * 7 % 99; p[0] = past; sm[1] = past + 1;
            // shapes from arrays: constant params spans are heap arrays in a Debug (unoptimized) build
            req.SetInput("input_ids", id, s11);
            req.SetInput("positions", p, s11);
            req.SetInput("attention_mask", ones.AsSpan(0, past + 1), sm);
            req.SetInput("logits_to_keep", keep, s1);
            req.Infer();
        }
        for (int i = 0; i < 3; i++) Step();
        // up to three windows: a per-step allocation shows in each, the runtime's one-off work (tiering) in one at most
        long allocated = 0;
        for (int window = 0; window < 3; window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10; i++) Step();
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (allocated == 0) break;
        }
        Assert.Equal(0, allocated);
        Assert.Equal(addresses, req.StateNames.Select(req.GetStateAddress).ToArray());
        Assert.Equal(req.StateNames.Count, req.StateAllocations);
    }

    [Fact]
    public void F16_cache_holds_and_appends_half_the_bytes()
    {
        using var tm = new TinyModel();
        using var ir = tm.Build(9);
        using var c32 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 64, KvCachePrecision = KvCachePrecision.F32 });
        using var c16 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 64, KvCachePrecision = KvCachePrecision.F16 });
        using var f32 = c32.CreateInferRequest();
        using var f16 = c16.CreateInferRequest();
        foreach (var r in new[] { f32, f16 })
        {
            Run(r, [1, 2, 3, 4], [0, 1, 2, 3], [1, 1, 1, 1], 1, 4);
            Run(r, [5], [4], [1, 1, 1, 1, 1], 1, 1);
        }
        // 5 positions × 2 layers × K and V × KV heads 2 × head_dim 8 × element bytes
        Assert.Equal(5L * 2 * 2 * 2 * 8 * 4, f32.StateBytesAppended);
        Assert.Equal(5L * 2 * 2 * 2 * 8 * 2, f16.StateBytesAppended);
        Assert.Equal(KvCachePrecision.F16, c16.KvCachePrecision);
        Assert.Equal(KvCachePrecision.F32, c32.KvCachePrecision);
    }

    [Theory]
    [InlineData(DType.F32, KvCachePrecision.F32)]
    [InlineData(DType.F16, KvCachePrecision.F16)]
    [InlineData(DType.BF16, KvCachePrecision.F16)]
    public void Auto_is_f16_for_compressed_weights_and_f32_for_f32_weights(DType weights, KvCachePrecision expected)
    {
        using var tm = new TinyModel { WeightType = weights };
        using var ir = tm.Build(3);
        using var auto = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 16 });
        Assert.Equal(expected, auto.KvCachePrecision);
        // an explicit choice wins over the weights
        using var f32 = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 16, KvCachePrecision = KvCachePrecision.F32 });
        Assert.Equal(KvCachePrecision.F32, f32.KvCachePrecision);
    }

    [Fact]
    public void Bad_precision_names_and_values_are_rejected_naming_the_allowed_ones()
    {
        Assert.Equal(KvCachePrecision.F16, KvCachePrecisionNames.Parse("F16"));
        Assert.Equal(KvCachePrecision.F32, KvCachePrecisionNames.Parse("fp32"));
        Assert.Equal(KvCachePrecision.Auto, KvCachePrecisionNames.Parse("auto"));
        var e = Assert.Throws<ArgumentException>(() => KvCachePrecisionNames.Parse("q8", "--kv-cache"));
        Assert.Equal("--kv-cache", e.ParamName);
        Assert.Contains("auto, f32, f16", e.Message);
        Assert.Throws<ArgumentException>(() => KvCachePrecisionNames.Parse(null, "--kv-cache"));
        using var tm = new TinyModel();
        using var ir = tm.Build(3);
        var o = Assert.Throws<ArgumentOutOfRangeException>(() => CompiledModel.Compile(ir, new RuntimeOptions { KvCachePrecision = (KvCachePrecision)7 }));
        Assert.Contains("KvCachePrecision", o.Message);
    }
}

/// <summary>
/// In-process A/B of the cache precision on an IR folder (HUB_BENCH=1, HUB_BENCH_IR): prefill of HUB_BENCH_PROMPT
/// positions (default 128) and decode steps at that context, f32 cache vs f16, alternating, medians.
/// </summary>
public class KvCachePrecisionBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Prefill_and_decode_ab_of_the_kv_cache_precision()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        int prompt = BenchFeed.EnvInt("HUB_BENCH_PROMPT", 128);
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        using var ir = IrModel.Load(dir!);
        var names = ir.Graph.Inputs.Select(i => i.Name).ToHashSet();
        var reqs = new[] { KvCachePrecision.F32, KvCachePrecision.F16 }.Select(kv =>
            CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = prompt + 64, KvCachePrecision = kv }).CreateInferRequest()).ToArray();
        var ids = Enumerable.Range(0, prompt).Select(i => i * 13 % 1000 + 1).ToArray();
        var pos = Enumerable.Range(0, prompt).ToArray();
        var ones = Enumerable.Repeat(1f, prompt + 64).ToArray();
        void Feed(InferRequest r, int[] id, int[] p, int t)
        {
            r.SetInput("input_ids", id, [1, t]);
            if (names.Contains("positions")) r.SetInput("positions", p, [1, t]);
            if (names.Contains("position_ids")) r.SetInput("position_ids", p, [1, t]);
            if (names.Contains("attention_mask")) r.SetInput("attention_mask", ones.AsSpan(0, r.PastLength + t), [1, r.PastLength + t]);
            if (names.Contains("logits_to_keep")) r.SetInput("logits_to_keep", new[] { 1 }, [1]);
            r.Infer();
        }
        var prefill = new[] { new List<double>(), new List<double>() };
        var decode = new[] { new List<double>(), new List<double>() };
        int rounds = BenchFeed.EnvInt("HUB_BENCH_AB_ROUNDS", 8);
        for (int round = -1; round < rounds; round++)
            for (int v = 0; v < 2; v++)
            {
                int which = v ^ (round & 1);
                var r = reqs[which];
                r.ResetState();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                Feed(r, ids, pos, prompt);
                double pre = sw.Elapsed.TotalMilliseconds;
                sw.Restart();
                for (int s = 0; s < 32; s++) Feed(r, [s + 1], [r.PastLength], 1);
                double dec = sw.Elapsed.TotalMilliseconds / 32;
                if (round >= 0) { prefill[which].Add(pre); decode[which].Add(dec); }
            }
        double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
        output.WriteLine($"prefill {prompt}: f32 cache {Med(prefill[0]):F1} ms, f16 {Med(prefill[1]):F1} ms (f16/f32 {Med(prefill[1]) / Med(prefill[0]):F3})");
        output.WriteLine($"decode at {prompt}..{prompt + 32}: f32 cache {Med(decode[0]):F2} ms/token, f16 {Med(decode[1]):F2} (f16/f32 {Med(decode[1]) / Med(decode[0]):F3})");
        foreach (var r in reqs) { var m = r.Model; r.Dispose(); m.Dispose(); }
    }
}
