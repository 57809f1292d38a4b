using Hub.IR;

namespace Hub.Runtime.Tests;

/// <summary>
/// Attention in prefix_bidirectional mode (ChatGLM-6B) with the optional fifth input, a [B, S] key mask for left-padded
/// rows: prefill (flash blocks) and decode steps (cache rows) against a float64 loop.
/// </summary>
public sealed class PrefixAttentionMaskTests : IDisposable
{
    private const int H = 2, Hd = 16;
    private readonly GraphHarness _graphs = new();

    public void Dispose() => _graphs.Dispose();

    private InferRequest Compile(bool prefix, int threads)
    {
        var b = new GraphBuilder("prefix-mask");
        var q = b.Input("q", DType.F32, "batch", "seq", H * Hd);
        var k = b.Input("k", DType.F32, "batch", "seq", H * Hd);
        var v = b.Input("v", DType.F32, "batch", "seq", H * Hd);
        var p = b.Input("p", DType.I32, "batch");
        var m = b.Input("m", DType.F32, "batch", "total");
        var sk = b.State("sk", DType.F32, "batch", H, "ctx", Hd);
        var sv = b.State("sv", DType.F32, "batch", H, "ctx", Hd);
        var o = b.Op(Ops.Attention, "o", new[] { q, k, v, p, m },
            new { heads = H, head_dim = Hd, causal = true, prefix_bidirectional = prefix, scale = 0.3, state_k = sk, state_v = sv });
        b.Output(o, DType.F32);
        return _graphs.Compile(b, new RuntimeOptions { Threads = threads, MaxBatch = 2, MaxContext = 128 });
    }

    private static float[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Prefix_attention_drops_masked_keys_in_prefill_and_decode(int threads)
    {
        const int B = 2, T = 70, Steps = 3;
        int[] pads = [0, 9], prefix = [20, 9 + 12];   // row 1: 9 pads, then a 12-token context
        var req = Compile(prefix: true, threads);
        int total = T + Steps, d = H * Hd;
        var qd = Rand(B * total * d, 1); var kd = Rand(B * total * d, 2); var vd = Rand(B * total * d, 3);
        var maskAll = new float[B * total];
        for (int b = 0; b < B; b++) for (int j = 0; j < total; j++) maskAll[b * total + j] = j >= pads[b] ? 1f : 0f;

        // positions [t0, t1) of every row, the mask of the first t1 keys
        float[] Slice(float[] x, int t0, int t1)
        {
            var r = new float[B * (t1 - t0) * d];
            for (int b = 0; b < B; b++) Array.Copy(x, (b * total + t0) * d, r, b * (t1 - t0) * d, (t1 - t0) * d);
            return r;
        }
        float[] Mask(int keys) => Enumerable.Range(0, B * keys).Select(i => maskAll[i / keys * total + i % keys]).ToArray();

        for (int t0 = 0; t0 < total; t0 = t0 == 0 ? T : t0 + 1)
        {
            int t1 = t0 == 0 ? T : t0 + 1, n = t1 - t0;
            req.SetInput("q", Slice(qd, t0, t1), B, n, d); req.SetInput("k", Slice(kd, t0, t1), B, n, d);
            req.SetInput("v", Slice(vd, t0, t1), B, n, d); req.SetInput("p", prefix, B);
            req.SetInput("m", Mask(t1), B, t1);
            req.Infer();
            var got = req.GetOutput("o");
            for (int b = 0; b < B; b++)
                for (int t = t0; t < t1; t++)
                {
                    if (t < pads[b]) continue;   // a pad's own output is not used
                    for (int h = 0; h < H; h++)
                    {
                        var s = new double[t1];
                        double mx = double.NegativeInfinity;
                        for (int j = 0; j < t1; j++)
                        {
                            bool visible = (j <= t || (t < prefix[b] && j < prefix[b])) && maskAll[b * total + j] != 0;
                            if (!visible) { s[j] = double.NegativeInfinity; continue; }
                            double dot = 0;
                            for (int i = 0; i < Hd; i++) dot += (double)qd[(b * total + t) * d + h * Hd + i] * kd[(b * total + j) * d + h * Hd + i];
                            s[j] = dot * 0.3; mx = Math.Max(mx, s[j]);
                        }
                        double sum = 0;
                        for (int j = 0; j < t1; j++) { s[j] = double.IsNegativeInfinity(s[j]) ? 0 : Math.Exp(s[j] - mx); sum += s[j]; }
                        for (int i = 0; i < Hd; i++)
                        {
                            double acc = 0;
                            for (int j = 0; j < t1; j++) acc += s[j] * vd[(b * total + j) * d + h * Hd + i];
                            float want = (float)(acc / sum), have = got[(b * n + t - t0) * d + h * Hd + i];
                            if (!(Math.Abs(want - have) <= 1e-5f)) Assert.Fail($"row {b} position {t} head {h} ch {i}: {have} vs {want}");
                        }
                    }
                }
        }
    }

    [Fact]
    public void A_fifth_attention_input_without_prefix_mode_is_a_graph_error()
    {
        var e = Assert.ThrowsAny<HubException>(() => Compile(prefix: false, threads: 1));
        Assert.Contains("prefix_bidirectional", e.Message);
    }
}
