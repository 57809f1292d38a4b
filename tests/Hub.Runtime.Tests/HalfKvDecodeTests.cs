using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>The opt-in f16 decode copy of the KV cache: its kernel against the reference on the same (rounded) values.</summary>
[Trait("Category", "Kernel")]
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

/// <summary>A request whose decode steps read the f16 copy: close to the f32 cache's logits across truncation, reorder and reset.</summary>
public class HalfKvDecodeTests
{
    private static void Run(InferRequest req, int[] ids, int[] pos, int batch, int t, int total)
    {
        req.SetInput("input_ids", ids, batch, t);
        req.SetInput("positions", pos, batch, t);
        req.SetInput("attention_mask", Enumerable.Repeat(1f, batch * total).ToArray(), batch, total);
        req.SetInput("logits_to_keep", new[] { 1 }, 1);
        req.Infer();
    }

    private static void Close(InferRequest a, InferRequest b, string what)
    {
        var x = a.GetOutput("logits"); var y = b.GetOutput("logits");
        Assert.Equal(x.Length, y.Length);
        double worst = 0;
        for (int i = 0; i < x.Length; i++) worst = Math.Max(worst, Math.Abs(x[i] - y[i]) / Math.Max(1, Math.Abs(x[i])));
        // f16 keys/values carry 11 significant bits: ~1e-3 relative per value, the logits of the tiny model move less
        Assert.True(worst <= 1e-2, $"{what}: f16 decode differs from the f32 cache by {worst:G3}");
        Assert.True(worst > 0 || x.Length == 0, $"{what}: identical logits, so the f16 copy was not read");
    }

    [Fact]
    public void Half_decode_steps_allocate_nothing()
    {
        using var tm = new TinyModel();
        using var ir = tm.Build(8);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 2, MaxContext = 64 });
        using var req = cm.CreateInferRequest();
        req.HalfKvDecode = true;
        int[] id = [1], p = [0], keep = [1], s11 = [1, 1], s1 = [1];
        int batch = 1;
        var ones = Enumerable.Repeat(1f, 64).ToArray();
        void Step()
        {
            int past = req.PastLength;
            id[0] = past * 7 % 99; p[0] = past;
            // shapes from arrays and variables: constant params spans are heap arrays in a Debug (unoptimized) build
            req.SetInput("input_ids", id, s11);
            req.SetInput("positions", p, s11);
            req.SetInput("attention_mask", ones.AsSpan(0, past + 1), batch, past + 1);
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
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Half_decode_follows_the_f32_cache_through_truncate_reorder_and_reset(int threads)
    {
        using var tm = new TinyModel();
        using var ir = tm.Build(7);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 32, MaxBatch = 2 });
        using var f32 = cm.CreateInferRequest();
        using var f16 = cm.CreateInferRequest();
        f32.HalfKvDecode = false; f16.HalfKvDecode = true;
        var both = new[] { f32, f16 };
        int[] prompt = { 3, 14, 15, 92, 65, 35 };
        foreach (var r in both) Run(r, prompt, Enumerable.Range(0, 6).ToArray(), 1, 6, 6);
        for (int step = 6; step < 10; step++)
        {
            foreach (var r in both) Run(r, new[] { step * 7 % 99 }, new[] { step }, 1, 1, step + 1);
            Close(f32, f16, $"decode step {step}");
        }
        // positions 8.. are rewritten with other tokens: the copy must not keep the old ones
        foreach (var r in both) r.TruncateState(8);
        for (int step = 8; step < 11; step++)
        {
            foreach (var r in both) Run(r, new[] { step * 11 % 99 }, new[] { step }, 1, 1, step + 1);
            Close(f32, f16, $"after truncation, step {step}");
        }
        // two rows from one: the copy is rebuilt from the reordered f32 states
        foreach (var r in both) r.ReorderState(new[] { 0, 0 });
        // the copy's rows moved with the states (no reconversion of the whole cache after a beam-search reorder)
        Assert.Equal(11, f16.HalfValid(0));
        foreach (var r in both) Run(r, new[] { 5, 6 }, new[] { 11, 11 }, 2, 1, 12);
        Close(f32, f16, "after reorder");
        // a fresh prompt of another length after a reset
        foreach (var r in both) { r.ResetState(); Run(r, new[] { 9, 8, 7 }, new[] { 0, 1, 2 }, 1, 3, 3); }
        foreach (var r in both) Run(r, new[] { 1 }, new[] { 3 }, 1, 1, 4);
        Close(f32, f16, "after reset");
    }
}
