using Hub.IR;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>Ops not covered by the tiny transformer, each checked through the executor against plain loops.</summary>
public sealed class OpGraphTests : IDisposable
{
    private readonly List<string> _dirs = new();
    private readonly List<IDisposable> _owned = new();

    private InferRequest Compile(GraphBuilder b, int threads = 1)
    {
        var dir = Path.Combine(Path.GetTempPath(), "hub-rt-ops-" + Guid.NewGuid().ToString("N"));
        _dirs.Add(dir);
        IrFormat.Write(dir, b.Build());
        var ir = IrModel.Load(dir); _owned.Add(ir);
        var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 16, MaxBatch = 2 }); _owned.Add(cm);
        var req = cm.CreateInferRequest(); _owned.Add(req);
        return req;
    }

    private static float[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray();
    }

    [Fact]
    public void Slice_concat_scale_activations_softmax_gather_and_matmul_follow_the_catalog()
    {
        var b = new GraphBuilder("ops");
        var a = b.Input("a", DType.F32, "batch", "seq", 6);
        var idx = b.Input("idx", DType.I32, "batch");
        var sl = b.Op(Ops.Slice, "sl", new[] { a }, new { axis = 2, start = 1, end = -1 });
        var c = b.Op(Ops.Concat, "c", new[] { sl, a }, new { axis = -1 });
        var sc = b.Op(Ops.Scale, "sc", new[] { c }, new { alpha = 2.0, beta = 1.0 });
        var re = b.Op(Ops.Relu, "re", new[] { sc });
        var th = b.Op(Ops.Tanh, "th", new[] { re });
        var sg = b.Op(Ops.Sigmoid, "sg", new[] { th });
        var sm = b.Op(Ops.Softmax, "sm", new[] { c }, new { axis = 1 });
        var g = b.Op(Ops.GatherRows, "g", new[] { c, idx });
        var wm = b.Weight("wm", LazyTensor.FromArray(Rand(18, 9), new Shape(6, 3), "wm"), WeightKind.Vector);
        var mm = b.Op(Ops.MatMul, "mm", new[] { a, wm });
        var mul = b.Op(Ops.Mul, "mul", new[] { sg, sm });
        var last = b.Op(Ops.Slice, "last", new[] { mul }, new { axis = 1, start = -1 });
        foreach (var o in new[] { sg, sm, g, mm, last }) b.Output(o, DType.F32);
        var req = Compile(b);
        int B = 2, S = 3;
        var x = Rand(B * S * 6, 1);
        req.SetInput("a", x, B, S, 6);
        req.SetInput("idx", new[] { 2, 0 }, B);
        req.Infer();
        float[] cexp = new float[B * S * 10];
        for (int r = 0; r < B * S; r++)
        {
            for (int i = 0; i < 4; i++) cexp[r * 10 + i] = x[r * 6 + 1 + i];
            for (int i = 0; i < 6; i++) cexp[r * 10 + 4 + i] = x[r * 6 + i];
        }
        var sgExp = cexp.Select(v => 1f / (1f + MathF.Exp(-MathF.Tanh(MathF.Max(2 * v + 1, 0))))).ToArray();
        Assert.Equal(new[] { B, S, 10 }, req.GetOutputShape("sg"));
        Close(sgExp, req.GetOutput("sg"));
        var smExp = new float[cexp.Length];
        for (int bb = 0; bb < B; bb++)
            for (int j = 0; j < 10; j++)
            {
                double mx = double.NegativeInfinity, sum = 0;
                for (int s = 0; s < S; s++) mx = Math.Max(mx, cexp[(bb * S + s) * 10 + j]);
                for (int s = 0; s < S; s++) sum += Math.Exp(cexp[(bb * S + s) * 10 + j] - mx);
                for (int s = 0; s < S; s++) smExp[(bb * S + s) * 10 + j] = (float)(Math.Exp(cexp[(bb * S + s) * 10 + j] - mx) / sum);
            }
        Close(smExp, req.GetOutput("sm"));
        Assert.Equal(new[] { B, 10 }, req.GetOutputShape("g"));
        Close(cexp.Skip(2 * 10).Take(10).Concat(cexp.Skip(S * 10).Take(10)).ToArray(), req.GetOutput("g"));
        var w = Rand(18, 9);
        var mmExp = new float[B * S * 3];
        for (int r = 0; r < B * S; r++) for (int j = 0; j < 3; j++) { float s = 0; for (int p = 0; p < 6; p++) s += x[r * 6 + p] * w[p * 3 + j]; mmExp[r * 3 + j] = s; }
        Close(mmExp, req.GetOutput("mm"));
        Assert.Equal(new[] { B, 1, 10 }, req.GetOutputShape("last"));
        var lastExp = new float[B * 10];
        for (int bb = 0; bb < B; bb++) for (int j = 0; j < 10; j++) { int ix = (bb * S + S - 1) * 10 + j; lastExp[bb * 10 + j] = sgExp[ix] * smExp[ix]; }
        Close(lastExp, req.GetOutput("last"));

        req.SetInput("idx", new[] { 3, 0 }, B);
        var e = Assert.Throws<ModelInputException>(() => req.Infer());
        Assert.Contains("index 3", e.Message);
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 2)]
    [InlineData(true, 1)]
    public void Stateless_attention_handles_bidirectional_padding_and_prefix_modes(bool prefix, int threads)
    {
        int B = 2, T = 70, H = 4, KV = 2, hd = 32; // T > one key block; T·S·H·hd above the parallel threshold
        var b = new GraphBuilder("attn");
        var q = b.Input("q", DType.F32, "batch", "seq", H * hd);
        var k = b.Input("k", DType.F32, "batch", "seq", KV * hd);
        var v = b.Input("v", DType.F32, "batch", "seq", KV * hd);
        var m = prefix ? b.Input("m", DType.I32, "batch") : b.Input("m", DType.F32, "batch", "seq");
        var o = b.Op(Ops.Attention, "o", new[] { q, k, v, m }, new { heads = H, kv_heads = KV, head_dim = hd, causal = prefix, prefix_bidirectional = prefix, scale = 0.3 });
        b.Output(o, DType.F32);
        var req = Compile(b, threads);
        var qd = Rand(B * T * H * hd, 1); var kd = Rand(B * T * KV * hd, 2); var vd = Rand(B * T * KV * hd, 3);
        var mask = new float[B * T]; var plen = new[] { 5, 0 };
        for (int i = 0; i < B * T; i++) mask[i] = i % T < 3 && i >= T ? 0f : 1f; // row 1: first 3 keys padded
        req.SetInput("q", qd, B, T, H * hd); req.SetInput("k", kd, B, T, KV * hd); req.SetInput("v", vd, B, T, KV * hd);
        if (prefix) req.SetInput("m", plen, B); else req.SetInput("m", mask, B, T);
        req.Infer();
        var exp = new float[B * T * H * hd];
        for (int bb = 0; bb < B; bb++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < H; h++)
                {
                    int kh = h / (H / KV);
                    var s = new double[T]; double mx = double.NegativeInfinity;
                    bool Visible(int j) => prefix ? (j <= t || (t < plen[bb] && j < plen[bb])) : mask[bb * T + j] != 0;
                    for (int j = 0; j < T; j++)
                    {
                        if (!Visible(j)) { s[j] = double.NegativeInfinity; continue; }
                        double d = 0;
                        for (int i = 0; i < hd; i++) d += (double)qd[((bb * T + t) * H + h) * hd + i] * kd[((bb * T + j) * KV + kh) * hd + i];
                        s[j] = d * 0.3; mx = Math.Max(mx, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < T; j++) { s[j] = double.IsNegativeInfinity(s[j]) ? 0 : Math.Exp(s[j] - mx); sum += s[j]; }
                    for (int i = 0; i < hd; i++)
                    {
                        double acc = 0;
                        for (int j = 0; j < T; j++) acc += s[j] * vd[((bb * T + j) * KV + kh) * hd + i];
                        exp[((bb * T + t) * H + h) * hd + i] = (float)(acc / sum);
                    }
                }
        Close(exp, req.GetOutput("o"), 1e-5f);
    }

    [Theory]
    [InlineData(DType.F32, 3)]
    [InlineData(DType.F16, 2)]
    [InlineData(DType.BF16, 3)]
    public unsafe void Multithreaded_linear_partitions_match_the_scalar_reference(DType dt, int threads)
    {
        int k = 160, n = 701;
        var b = new GraphBuilder("lin");
        var x = b.Input("x", DType.F32, "batch", "seq", k);
        var wf = Rand(n * k, 12);
        var bias = Rand(n, 13);
        var y = b.Op(Ops.Linear, "y", new[] { x, b.Weight("w", LazyTensor.FromArray(wf, new Shape(n, k), "w"), WeightKind.Matrix),
            b.Weight("b", LazyTensor.FromArray(bias, new Shape(n), "b"), WeightKind.Vector) });
        b.Output(y, DType.F32);
        var dir = Path.Combine(Path.GetTempPath(), "hub-rt-ops-" + Guid.NewGuid().ToString("N"));
        _dirs.Add(dir);
        IrFormat.Write(dir, b.Build(), new IrWriteOptions { WeightDType = dt });
        var ir = IrModel.Load(dir); _owned.Add(ir);
        var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads }); _owned.Add(cm);
        var req = cm.CreateInferRequest(); _owned.Add(req);
        var wv = ir.GetWeight("w");
        req.SetInput("x", Array.Empty<float>(), 1, 0, k); // an empty sequence is a valid (empty) input
        req.Infer();
        Assert.Equal(new[] { 1, 0, n }, req.GetOutputShape("y"));
        foreach (var m in new[] { 1, 3, 9, 200 }) // GEMV, GEMV multi-row, GEMM one row block, GEMM 3 row blocks
        {
            var xd = Rand(m * k, m);
            req.SetInput("x", xd, 1, m, k);
            req.Infer();
            var expect = new float[m * n];
            fixed (float* xp = xd, bp = bias, ep = expect)
                Hub.Runtime.Kernels.Gemm.LinearReference(xp, m, k, (byte*)wv.Pointer, dt, n, bp, ep);
            Close(expect, req.GetOutput("y"), 2e-5f);
        }
    }

    [Fact]
    public void Dynamic_and_linear_rope_scaling_change_frequencies_as_transformers()
    {
        var b = new GraphBuilder("rope");
        var x = b.Input("x", DType.F32, "batch", "seq", 8);
        var p = b.Input("p", DType.I32, "batch", "seq");
        var lin = b.Op(Ops.Rope, "lin", new[] { x, p }, new System.Text.Json.Nodes.JsonObject
        {
            ["heads"] = 1, ["head_dim"] = 8, ["scaling"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "linear", ["factor"] = 4.0 },
        });
        var dyn = b.Op(Ops.Rope, "dyn", new[] { x, p }, new System.Text.Json.Nodes.JsonObject
        {
            ["heads"] = 1, ["head_dim"] = 8, ["position_scale"] = 0.5,
            ["scaling"] = new System.Text.Json.Nodes.JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0, ["original_max_position_embeddings"] = 4 },
        });
        b.Output(lin, DType.F32); b.Output(dyn, DType.F32);
        var req = Compile(b);
        var xd = Rand(6 * 8, 4);
        var pos = new[] { 0, 1, 2, 3, 4, 5 };
        req.SetInput("x", xd, 1, 6, 8); req.SetInput("p", pos, 1, 6);
        req.Infer();
        float[] Expect(Func<int, double> angleScale, double theta)
        {
            var e = new float[xd.Length];
            for (int t = 0; t < 6; t++)
                for (int i = 0; i < 4; i++)
                {
                    double ang = angleScale(pos[t]) * Math.Pow(theta, -2.0 * i / 8);
                    double a = xd[t * 8 + i], c = xd[t * 8 + i + 4];
                    e[t * 8 + i] = (float)(a * Math.Cos(ang) - c * Math.Sin(ang));
                    e[t * 8 + i + 4] = (float)(c * Math.Cos(ang) + a * Math.Sin(ang));
                }
            return e;
        }
        Close(Expect(q => q / 4.0, 10000), req.GetOutput("lin"), 1e-5f);
        // seq = max position + 1 = 6 > 4: base = 10000 · (2·6/4 − 1)^(8/6)
        double dynTheta = 10000 * Math.Pow(2.0 * 6 / 4 - 1, 8.0 / 6);
        Close(Expect(q => q * 0.5, dynTheta), req.GetOutput("dyn"), 1e-5f);
    }

    [Theory]
    [InlineData("none", 1)]
    [InlineData("none", 2)]
    [InlineData("tanh", 2)]
    public unsafe void Gelu_folded_into_its_linear_matches_the_separate_ops(string approximate, int threads)
    {
        // up = Linear(x) → Gelu → down = Linear, + x: the Gelu is folded into the up projection (run in place). The same
        // graph with `up` also a graph output keeps them apart and is the reference; x stays alive across the pair.
        int k = 40, n = 203;
        var wu = Rand(n * k, 21); var bu = Rand(n, 22); var wd = Rand(k * n, 23); var bd = Rand(k, 24);
        GraphBuilder Build(bool exposeUp)
        {
            var b = new GraphBuilder("ffn");
            var x = b.Input("x", DType.F32, "batch", "seq", k);
            var up = b.Op(Ops.Linear, "up", new[] { x, b.Weight("wu", LazyTensor.FromArray(wu, new Shape(n, k), "wu"), WeightKind.Matrix),
                b.Weight("bu", LazyTensor.FromArray(bu, new Shape(n), "bu"), WeightKind.Vector) });
            var act = b.Op(Ops.Gelu, "act", new[] { up }, new { approximate });
            var down = b.Op(Ops.Linear, "down", new[] { act, b.Weight("wd", LazyTensor.FromArray(wd, new Shape(k, n), "wd"), WeightKind.Matrix),
                b.Weight("bd", LazyTensor.FromArray(bd, new Shape(k), "bd"), WeightKind.Vector) });
            var res = b.Op(Ops.Add, "res", new[] { down, x });
            b.Output(res, DType.F32);
            if (exposeUp) b.Output(up, DType.F32);
            return b;
        }
        var fused = Compile(Build(false), threads);
        var apart = Compile(Build(true), threads);
        Assert.Single(fused.Model.Model.Graph.Nodes, nd => fused.Model.IsFusedGelu(nd));
        Assert.DoesNotContain(apart.Model.Model.Graph.Nodes, nd => apart.Model.IsFusedGelu(nd));
        foreach (var m in new[] { 1, 3, 150 }) // GEMV rows and GEMM blocks
        {
            var xd = Rand(m * k, 30 + m);
            foreach (var r in new[] { fused, apart }) { r.SetInput("x", xd, 1, m, k); r.Infer(); }
            Close(apart.GetOutput("res").ToArray(), fused.GetOutput("res"), 1e-5f);
            // and the reference itself is GELU of the projection
            var upv = apart.GetOutput("up").ToArray();
            var act = new float[upv.Length];
            if (approximate == "tanh") Hub.Runtime.Kernels.Activations.GeluTanhReference(upv, act);
            else Hub.Runtime.Kernels.Activations.GeluErfReference(upv, act);
            var expect = new float[m * k];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < k; j++)
                {
                    double sum = bd[j] + xd[i * k + j];
                    for (int p = 0; p < n; p++) sum += (double)act[i * n + p] * wd[j * n + p];
                    expect[i * k + j] = (float)sum;
                }
            Close(expect, fused.GetOutput("res"), 1e-4f);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Attention_reading_q_k_v_from_the_fused_projection_matches_the_split(int threads)
    {
        // qkv = Linear(x); q, k, v = Split(qkv); Attention(q, k, v, mask): the Split is elided and attention reads the
        // projection's column slices. Exposing q as a graph output keeps the Split, which is the reference. Lengths
        // cover the direct kernel and the fallbacks that want the Split's copy (one token; more than 512 keys).
        const int heads = 2, kvHeads = 1, hd = 8, k = 12, n = (heads + 2 * kvHeads) * hd;
        var w = Rand(n * k, 41); var bias = Rand(n, 42);
        GraphBuilder Build(bool exposeQ)
        {
            var b = new GraphBuilder("enc");
            var x = b.Input("x", DType.F32, "batch", "seq", k);
            var mask = b.Input("mask", DType.F32, "batch", "seq");
            var qkv = b.Op(Ops.Linear, "qkv", new[] { x, b.Weight("w", LazyTensor.FromArray(w, new Shape(n, k), "w"), WeightKind.Matrix),
                b.Weight("b", LazyTensor.FromArray(bias, new Shape(n), "b"), WeightKind.Vector) });
            var parts = b.OpMulti(Ops.Split, "split", new[] { qkv }, 3, new { sizes = new[] { heads * hd, kvHeads * hd, kvHeads * hd } });
            var ctx = b.Op(Ops.Attention, "attn", new[] { parts[0], parts[1], parts[2], mask },
                new { heads, kv_heads = kvHeads, head_dim = hd, causal = false, scale = 0.3 });
            var res = b.Op(Ops.Add, "res", new[] { ctx, ctx });
            b.Output(res, DType.F32);
            if (exposeQ) b.Output(parts[0], DType.F32);
            return b;
        }
        var fused = Compile(Build(false), threads);
        var apart = Compile(Build(true), threads);
        Assert.Single(fused.Model.Model.Graph.Nodes, nd => fused.Model.IsElidedSplit(nd));
        Assert.DoesNotContain(apart.Model.Model.Graph.Nodes, nd => apart.Model.IsElidedSplit(nd));
        foreach (var (batch, seq) in new[] { (3, 37), (2, 1), (1, 520) })
        {
            var xd = Rand(batch * seq * k, seq);
            var md = new float[batch * seq];
            for (int i = 0; i < md.Length; i++) md[i] = i % seq >= seq - 2 && seq > 2 && i / seq == 1 ? 0f : 1f; // row 1 padded
            foreach (var r in new[] { fused, apart })
            {
                r.SetInput("x", xd, batch, seq, k);
                r.SetInput("mask", md, batch, seq);
                r.Infer();
            }
            Close(apart.GetOutput("res").ToArray(), fused.GetOutput("res"), 1e-6f);
        }
    }

    [Fact]
    public void Row_ops_split_over_the_pool_give_the_same_bits_as_one_thread()
    {
        // Big enough (3 × 70 × 240 values) for LayerNorm, RMSNorm, Add (equal and broadcast), Mul and Split to run in
        // chunks on two threads; every element must come out as on one thread.
        GraphBuilder Build()
        {
            var b = new GraphBuilder("rows");
            var a = b.Input("a", DType.F32, "batch", "seq", 240);
            var c = b.Input("c", DType.F32, "batch", "seq", 240);
            var gamma = b.Weight("g", LazyTensor.FromArray(Rand(240, 5), new Shape(240), "g"), WeightKind.Vector);
            var beta = b.Weight("be", LazyTensor.FromArray(Rand(240, 6), new Shape(240), "be"), WeightKind.Vector);
            var sum = b.Op(Ops.Add, "sum", new[] { a, c });
            var biased = b.Op(Ops.Add, "biased", new[] { sum, beta });
            var ln = b.Op(Ops.LayerNorm, "ln", new[] { biased, gamma, beta }, new { eps = 1e-5 });
            var rms = b.Op(Ops.RMSNorm, "rms", new[] { sum, gamma }, new { eps = 1e-6 });
            var mul = b.Op(Ops.Mul, "mul", new[] { ln, rms });
            var parts = b.OpMulti(Ops.Split, "split", new[] { mul }, 3, new { sizes = new[] { 50, 150, 40 } });
            foreach (var o in parts) b.Output(o, DType.F32);
            return b;
        }
        var one = Compile(Build(), threads: 1);
        var two = Compile(Build(), threads: 2);
        int B = 3, S = 70;
        var x = Rand(B * S * 240, 7); var y = Rand(B * S * 240, 8);
        foreach (var r in new[] { one, two })
        {
            r.SetInput("a", x, B, S, 240);
            r.SetInput("c", y, B, S, 240);
            r.Infer();
        }
        foreach (var name in new[] { "split:0", "split:1", "split:2" })
        {
            var e = one.GetOutput(name).ToArray(); var g = two.GetOutput(name).ToArray();
            Assert.Equal(e.Length, g.Length);
            for (int i = 0; i < e.Length; i++)
                if (BitConverter.SingleToInt32Bits(e[i]) != BitConverter.SingleToInt32Bits(g[i])) Assert.Fail($"{name}[{i}]: {g[i]:R} on two threads, {e[i]:R} on one");
        }
        // and the chain is right, not just consistent: row 0 of the first part against plain loops
        var row = new double[240];
        var gm = Rand(240, 5); var bt = Rand(240, 6);
        for (int i = 0; i < 240; i++) row[i] = x[i] + y[i] + bt[i];
        double mean = row.Average(), var = row.Select(v => (v - mean) * (v - mean)).Average();
        double ms = Enumerable.Range(0, 240).Select(i => (double)(x[i] + y[i]) * (x[i] + y[i])).Average();
        var first = one.GetOutput("split:0");
        for (int i = 0; i < 50; i++)
        {
            double ln = (row[i] - mean) / Math.Sqrt(var + 1e-5) * gm[i] + bt[i];
            double rms = (x[i] + y[i]) / Math.Sqrt(ms + 1e-6) * gm[i];
            Assert.True(Math.Abs(ln * rms - first[i]) < 1e-4 * Math.Max(1, Math.Abs(ln * rms)), $"[{i}] {first[i]} vs {ln * rms}");
        }
    }

    private static void Close(float[] expected, ReadOnlySpan<float> actual, float tol = 1e-6f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * Math.Max(1, Math.Abs(expected[i])), $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        foreach (var d in _dirs) try { Directory.Delete(d, true); } catch (IOException) { }
    }
}
