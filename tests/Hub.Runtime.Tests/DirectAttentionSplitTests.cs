using Hub.IR;

namespace Hub.Runtime.Tests;

/// <summary>
/// The encoder (bidirectional, cache-less) attention path splits query rows into more work units when batch × kv heads
/// would leave workers idle; every output element must come out as with one unit per kv head.
/// </summary>
public sealed class DirectAttentionSplitTests : IDisposable
{
    private readonly GraphHarness _graphs = new();

    public void Dispose() => _graphs.Dispose();

    private InferRequest Compile(int threads, int heads, int kvHeads, int hd)
    {
        var b = new GraphBuilder("enc-attn");
        var q = b.Input("q", DType.F32, "batch", "seq", heads * hd);
        var k = b.Input("k", DType.F32, "batch", "seq", kvHeads * hd);
        var v = b.Input("v", DType.F32, "batch", "seq", kvHeads * hd);
        var m = b.Input("m", DType.F32, "batch", "seq");
        var o = b.Op(Ops.Attention, "o", new[] { q, k, v, m }, new { heads, kv_heads = kvHeads, head_dim = hd, causal = false, scale = 0.25 });
        b.Output(o, DType.F32);
        return _graphs.Compile(b, new RuntimeOptions { Threads = threads, MaxBatch = 2 });
    }

    private static float[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray();
    }

    [Theory]
    [InlineData(1, 2, 1, 32, 130)]  // 1 kv head on 8 workers: split into 24-row units
    [InlineData(2, 4, 2, 16, 97)]   // 4 units on 8 workers, a padded row
    public void Query_rows_split_over_more_workers_give_the_same_bits_as_one_thread(int batch, int heads, int kvHeads, int hd, int seq)
    {
        Assert.True(batch * kvHeads < 4 * 8 && Hub.Runtime.Kernels.AttentionKernels.DirectQueriesPerUnit(seq, batch * kvHeads, 8) < seq,
            "the case must make the 8-worker run split its query rows");
        var one = Compile(1, heads, kvHeads, hd);
        var many = Compile(8, heads, kvHeads, hd);
        var qd = Rand(batch * seq * heads * hd, 1); var kd = Rand(batch * seq * kvHeads * hd, 2); var vd = Rand(batch * seq * kvHeads * hd, 3);
        var mask = new float[batch * seq];
        for (int i = 0; i < mask.Length; i++) mask[i] = i >= seq && i % seq < 5 ? 0f : 1f; // row 1 left-padded by 5
        foreach (var r in new[] { one, many })
        {
            r.SetInput("q", qd, batch, seq, heads * hd); r.SetInput("k", kd, batch, seq, kvHeads * hd);
            r.SetInput("v", vd, batch, seq, kvHeads * hd); r.SetInput("m", mask, batch, seq);
            r.Infer();
        }
        var a = one.GetOutput("o").ToArray();
        var b = many.GetOutput("o").ToArray();
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                Assert.Fail($"element {i}: 1 thread {a[i]:R}, 8 threads {b[i]:R}");
    }
}
