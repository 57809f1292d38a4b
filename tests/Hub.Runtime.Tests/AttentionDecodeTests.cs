using Hub.Runtime.Execution;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// Tests that switch the attention kernels' process-wide statics (<see cref="AttentionKernels.HalfGroupMinGroup"/>,
/// <see cref="AttentionKernels.UseHalfRow512"/>, <see cref="AttentionKernels.UseHalfGroup512"/>) run alone: another
/// test's f16 decode would otherwise take a kernel it did not ask for while they run.
/// </summary>
[CollectionDefinition(nameof(AttentionStaticsCollection), DisableParallelization = true)]
public sealed class AttentionStaticsCollection { }

/// <summary>The decode attention's bit-identical variants: 512-bit rows of the f16 per-head kernel, and the prefetches.</summary>
[Trait("Category", "Kernel")]
[Collection(nameof(AttentionStaticsCollection))]
public unsafe class AttentionDecodeTests
{
    // The per-head f16 kernel (forced at group sizes 1–3) with 512-bit rows against its 256-bit rows, bit for bit: head
    // dims 8 (no 16-step), 24/40/72 (an 8-dim tail after 16-steps, 64-column P·V blocks and 32-/8-column tails), key
    // counts 0..257 around the 4-key score steps and 64-key blocks, padded rows, sparse and whole-block masks. On a
    // machine without AVX-512 both runs take the 256-bit rows.
    [Fact]
    public void Half_per_head_kernel_512_bit_rows_match_the_256_bit_rows_bit_for_bit()
    {
        int[] dims = [8, 16, 24, 40, 64, 72, 128];
        int[] ends = [0, 1, 2, 3, 4, 5, 7, 9, 31, 35, 63, 64, 65, 67, 100, 129, 192, 257];
        int minGroup = AttentionKernels.HalfGroupMinGroup;
        bool row512 = AttentionKernels.UseHalfRow512, keys16 = AttentionKernels.UseHalfRowKeys16;
        var rnd = new Random(17);
        try
        {
            AttentionKernels.HalfGroupMinGroup = int.MaxValue;
            AttentionKernels.UseHalfRowKeys16 = false;   // the 4-key path's two widths (the 16-key path has no 256-bit twin)
            for (int G = 1; G <= 3; G++)
                foreach (int hd in dims)
                    foreach (int end in ends)
                    {
                        int maskKind = rnd.Next(3);   // none, sparse, a whole block (64..127)
                        long stride = hd + (rnd.Next(2) == 0 ? 0 : 8);
                        int rows = Math.Max(end, 1);
                        var q = KernelTests.Rand(G * hd, G * 100 + hd + end, 1.5f);
                        var kh = KernelTests.Rand((int)(rows * stride), end + 3 * hd + G, 2f).Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
                        var vh = KernelTests.Rand((int)(rows * stride), end + 5 * hd + G).Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
                        var mask = new float[rows];
                        for (int j = 0; j < rows; j++) mask[j] = maskKind switch { 1 => j % 5 == 3 ? 0f : 1f, 2 => j >= 64 && j < 128 ? 0f : 1f, _ => 1f };
                        var got = new float[2][];
                        var scratch = new float[AttentionKernels.ScratchFloats(G, hd)];
                        for (int wide = 0; wide < 2; wide++)
                        {
                            AttentionKernels.UseHalfRow512 = wide == 1;
                            got[wide] = new float[G * hd];
                            fixed (float* qp = q, mp = mask, op = got[wide], sp = scratch)
                            fixed (ushort* khp = kh, vhp = vh)
                                AttentionKernels.AttendRowHalf(qp, G, hd, khp, vhp, stride, end, maskKind == 0 ? null : mp, 1f / MathF.Sqrt(hd), op, sp);
                        }
                        for (int i = 0; i < got[0].Length; i++)
                            Assert.True(BitConverter.SingleToInt32Bits(got[0][i]) == BitConverter.SingleToInt32Bits(got[1][i]),
                                $"G {G}, head_dim {hd}, {end} keys, mask {maskKind}, output {i}: 256-bit {got[0][i]:R} vs 512-bit {got[1][i]:R}");
                    }
        }
        finally
        {
            AttentionKernels.HalfGroupMinGroup = minGroup;
            AttentionKernels.UseHalfRow512 = row512;
            AttentionKernels.UseHalfRowKeys16 = keys16;
        }
    }

    // A decode step's prefetches (the append's lines, the next kv head's first keys) touch no value: two requests of one
    // model, one with them and one without, give the same logits bit for bit over 150 steps of a growing cache, with an
    // f16 and an f32 cache, on one and two threads.
    [Theory]
    [InlineData(KvCachePrecision.F16, 1)]
    [InlineData(KvCachePrecision.F16, 2)]
    [InlineData(KvCachePrecision.F32, 1)]
    [InlineData(KvCachePrecision.F32, 2)]
    public void Decode_prefetch_changes_no_logit(KvCachePrecision kv, int threads)
    {
        // head dim 64: past 128 positions a step's attention work (positions · heads · head_dim) crosses
        // AttentionExec's parallel threshold, so with 2 threads the last steps run the per-unit prefetch of the next unit
        using var tm = new TinyModel { D = 256, H = 4, KV = 2 };
        using var ir = tm.Build(11);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 160, KvCachePrecision = kv });
        using var on = cm.CreateInferRequest();
        using var off = cm.CreateInferRequest();
        var ones = Enumerable.Repeat(1f, 160).ToArray();
        bool before = AttentionExec.Prefetch;
        try
        {
            for (int step = 0; step < 150; step++)
            {
                foreach (var (r, prefetch) in new[] { (on, true), (off, false) })
                {
                    AttentionExec.Prefetch = prefetch;
                    int past = r.PastLength;
                    r.SetInput("input_ids", [step * 7 % 99], [1, 1]);
                    r.SetInput("positions", [past], [1, 1]);
                    r.SetInput("attention_mask", ones.AsSpan(0, past + 1), [1, past + 1]);
                    r.SetInput("logits_to_keep", [1], [1]);
                    r.Infer();
                }
                var a = on.GetOutput("logits"); var b = off.GetOutput("logits");
                Assert.Equal(a.Length, b.Length);
                for (int i = 0; i < a.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]), $"step {step}, logit {i}: {a[i]:R} vs {b[i]:R}");
            }
        }
        finally { AttentionExec.Prefetch = before; }
    }
}
