using Hub.IR;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// A tiny odd-sized transformer built with GraphBuilder (random weights), plus a straightforward float64 C# forward
/// pass over the same weights to check the runtime against. Layer 0: LayerNorm, half RoPE, GQA attention, RMSNorm,
/// SwiGLU MLP. Layer 1: interleaved partial RoPE (rotary 4 at channel 2, ChatGLM-like), GELU MLP with biases.
/// </summary>
public sealed class TinyModel : IDisposable
{
    public int V { get; init; } = 99;
    public int D { get; init; } = 32;
    public int H { get; init; } = 4;
    public int KV { get; init; } = 2;
    public int Hd => D / H;
    public int F { get; init; } = 37;
    public int Layers { get; init; } = 2;
    public DType WeightType { get; init; } = DType.F32;

    private readonly Dictionary<string, float[]> _w = new();
    private readonly Dictionary<string, long[]> _shapes = new();
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "hub-rt-test-" + Guid.NewGuid().ToString("N"));
    public IrModel? Ir { get; private set; }

    public IrModel Build(int seed = 1)
    {
        var rnd = new Random(seed);
        var b = new GraphBuilder("tiny");
        string W(string name, WeightKind kind, float scale, float offset, params long[] shape)
        {
            var n = (int)shape.Aggregate(1L, (a, x) => a * x);
            var data = new float[n];
            for (int i = 0; i < n; i++) data[i] = offset + (float)(rnd.NextDouble() * 2 - 1) * scale;
            _shapes[name] = shape;
            _w[name] = data;
            return b.Weight(name, LazyTensor.FromArray(data, new Shape(shape), name), kind);
        }
        var ids = b.Input("input_ids", DType.I32, "batch", "seq");
        var pos = b.Input("positions", DType.I32, "batch", "seq");
        var mask = b.Input("attention_mask", DType.F32, "batch", "total");
        var keep = b.Input("logits_to_keep", DType.I32, 1);
        var x = b.Op(Ops.Embedding, "embed", new[] { ids, W("wte", WeightKind.Embedding, 1f, 0, V, D) });
        float s = 1f / MathF.Sqrt(D);
        for (int l = 0; l < Layers; l++)
        {
            var h = b.Op(Ops.LayerNorm, $"l{l}.ln1", new[] { x, W($"l{l}.ln1.g", WeightKind.Vector, 0.2f, 1f, D), W($"l{l}.ln1.b", WeightKind.Vector, 0.1f, 0, D) }, new { eps = 1e-5 });
            var qkv = b.Op(Ops.Linear, $"l{l}.qkv", new[] { h, W($"l{l}.wqkv", WeightKind.Matrix, s, 0, (H + 2 * KV) * Hd, D), W($"l{l}.bqkv", WeightKind.Vector, 0.1f, 0, (H + 2 * KV) * Hd) });
            var qkvs = b.OpMulti(Ops.Split, $"l{l}.split", new[] { qkv }, 3, new { sizes = new[] { H * Hd, KV * Hd, KV * Hd } });
            object rope(int heads) => l == 0
                ? new { heads, head_dim = Hd, style = "half", theta = 10000.0 }
                : new { heads, head_dim = Hd, style = "interleaved", rotary_dims = 4, channel_offset = 2, theta = 500.0 };
            var q = b.Op(Ops.Rope, $"l{l}.rope_q", new[] { qkvs[0], pos }, rope(H));
            var k = b.Op(Ops.Rope, $"l{l}.rope_k", new[] { qkvs[1], pos }, rope(KV));
            var sk = b.State($"past_k.{l}", DType.F32, "batch", KV, "ctx", Hd);
            var sv = b.State($"past_v.{l}", DType.F32, "batch", KV, "ctx", Hd);
            var a = b.Op(Ops.Attention, $"l{l}.attn", new[] { q, k, qkvs[2], mask }, new { heads = H, kv_heads = KV, head_dim = Hd, state_k = sk, state_v = sv });
            var o = b.Op(Ops.Linear, $"l{l}.o", new[] { a, W($"l{l}.wo", WeightKind.Matrix, s, 0, D, H * Hd), W($"l{l}.bo", WeightKind.Vector, 0.1f, 0, D) });
            x = b.Op(Ops.Add, $"l{l}.res1", new[] { x, o });
            var h2 = b.Op(Ops.RMSNorm, $"l{l}.ln2", new[] { x, W($"l{l}.ln2.g", WeightKind.Vector, 0.2f, 1f, D) }, new { eps = 1e-6 });
            string f;
            if (l % 2 == 0)
            {
                var u = b.Op(Ops.Linear, $"l{l}.up", new[] { h2, W($"l{l}.wup", WeightKind.Matrix, s, 0, 2 * F, D) });
                var g = b.Op(Ops.SwiGlu, $"l{l}.swiglu", new[] { u });
                f = b.Op(Ops.Linear, $"l{l}.down", new[] { g, W($"l{l}.wdown", WeightKind.Matrix, 1f / MathF.Sqrt(F), 0, D, F) });
            }
            else
            {
                var u = b.Op(Ops.Linear, $"l{l}.fc", new[] { h2, W($"l{l}.wfc", WeightKind.Matrix, s, 0, F, D), W($"l{l}.bfc", WeightKind.Vector, 0.1f, 0, F) });
                var g = b.Op(Ops.Gelu, $"l{l}.gelu", new[] { u }, new { approximate = "none" });
                f = b.Op(Ops.Linear, $"l{l}.proj", new[] { g, W($"l{l}.wproj", WeightKind.Matrix, 1f / MathF.Sqrt(F), 0, D, F), W($"l{l}.bproj", WeightKind.Vector, 0.1f, 0, D) });
            }
            x = b.Op(Ops.Add, $"l{l}.res2", new[] { x, f });
        }
        var xf = b.Op(Ops.LayerNorm, "lnf", new[] { x, W("lnf.g", WeightKind.Vector, 0.2f, 1f, D), "" });
        var xl = b.Op(Ops.KeepLast, "keep", new[] { xf, keep });
        var logits = b.Op(Ops.Linear, "logits", new[] { xl, W("lm_head", WeightKind.Matrix, 1f, 0, V, D) });
        var top = b.OpMulti(Ops.TopK, "top", new[] { logits }, 2, new { k = 3 });
        b.Output(logits, DType.F32, "batch", "keep", V);
        b.Output(top[1], DType.I32, "batch", "keep", 3);
        IrFormat.Write(Dir, b.Build(), new IrWriteOptions { WeightDType = WeightType });
        // The reference sees exactly the stored values (f16/bf16 rounding of matrices and embeddings).
        foreach (var name in _w.Keys.ToArray())
        {
            var bytes = new byte[_w[name].Length * WeightType.SizeOf()];
            if (name.Contains(".w") || name is "wte" or "lm_head")
            {
                DTypeConvert.FromFloat32(_w[name], WeightType, bytes);
                DTypeConvert.ToFloat32(bytes, WeightType, _w[name]);
            }
        }
        Ir = IrModel.Load(Dir);
        return Ir;
    }

    /// <summary>Reference logits [B, T, V] of a full forward (no cache) in float64.</summary>
    public double[] Reference(int[] ids, int[] pos, float[] mask, int batch, int t)
    {
        double[] x = new double[batch * t * D];
        for (int i = 0; i < batch * t; i++) for (int d = 0; d < D; d++) x[i * D + d] = _w["wte"][ids[i] * D + d];
        for (int l = 0; l < Layers; l++)
        {
            var h = LayerNorm(x, _w[$"l{l}.ln1.g"], _w[$"l{l}.ln1.b"], 1e-5);
            var qkv = Linear(h, _w[$"l{l}.wqkv"], _w[$"l{l}.bqkv"], (H + 2 * KV) * Hd);
            int n3 = (H + 2 * KV) * Hd;
            var q = new double[batch * t * H * Hd]; var k = new double[batch * t * KV * Hd]; var v = new double[batch * t * KV * Hd];
            for (int i = 0; i < batch * t; i++)
            {
                Array.Copy(qkv, i * n3, q, i * H * Hd, H * Hd);
                Array.Copy(qkv, i * n3 + H * Hd, k, i * KV * Hd, KV * Hd);
                Array.Copy(qkv, i * n3 + (H + KV) * Hd, v, i * KV * Hd, KV * Hd);
            }
            bool inter = l != 0; int rot = l == 0 ? Hd : 4, off = l == 0 ? 0 : 2; double theta = l == 0 ? 10000 : 500;
            Rope(q, pos, H, rot, off, inter, theta); Rope(k, pos, KV, rot, off, inter, theta);
            var a = new double[batch * t * H * Hd];
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < t; i++)
                    for (int hh = 0; hh < H; hh++)
                    {
                        int kh = hh / (H / KV);
                        var sc = new double[t];
                        double mx = double.NegativeInfinity;
                        for (int j = 0; j <= i; j++)
                        {
                            if (mask[b * t + j] == 0) { sc[j] = double.NegativeInfinity; continue; }
                            double dot = 0;
                            for (int d = 0; d < Hd; d++) dot += q[((b * t + i) * H + hh) * Hd + d] * k[((b * t + j) * KV + kh) * Hd + d];
                            sc[j] = dot / Math.Sqrt(Hd); mx = Math.Max(mx, sc[j]);
                        }
                        if (double.IsNegativeInfinity(mx)) continue;
                        double sum = 0;
                        for (int j = 0; j <= i; j++) { sc[j] = double.IsNegativeInfinity(sc[j]) ? 0 : Math.Exp(sc[j] - mx); sum += sc[j]; }
                        for (int d = 0; d < Hd; d++)
                        {
                            double acc = 0;
                            for (int j = 0; j <= i; j++) acc += sc[j] * v[((b * t + j) * KV + kh) * Hd + d];
                            a[((b * t + i) * H + hh) * Hd + d] = acc / sum;
                        }
                    }
            var o = Linear(a, _w[$"l{l}.wo"], _w[$"l{l}.bo"], D);
            for (int i = 0; i < x.Length; i++) x[i] += o[i];
            var h2 = RmsNorm(x, _w[$"l{l}.ln2.g"], 1e-6);
            double[] f;
            if (l % 2 == 0)
            {
                var u = Linear(h2, _w[$"l{l}.wup"], null, 2 * F);
                var g = new double[batch * t * F];
                for (int i = 0; i < batch * t; i++)
                    for (int j = 0; j < F; j++) { double gt = u[i * 2 * F + j]; g[i * F + j] = gt / (1 + Math.Exp(-gt)) * u[i * 2 * F + F + j]; }
                f = Linear(g, _w[$"l{l}.wdown"], null, D);
            }
            else
            {
                var u = Linear(h2, _w[$"l{l}.wfc"], _w[$"l{l}.bfc"], F);
                for (int i = 0; i < u.Length; i++) u[i] = 0.5 * u[i] * (1 + Hub.Runtime.Kernels.Activations.ErfReference(u[i] / Math.Sqrt(2)));
                f = Linear(u, _w[$"l{l}.wproj"], _w[$"l{l}.bproj"], D);
            }
            for (int i = 0; i < x.Length; i++) x[i] += f[i];
        }
        var xf = LayerNorm(x, _w["lnf.g"], null, 1e-5);
        return Linear(xf, _w["lm_head"], null, V);
    }

    private double[] Linear(double[] x, float[] w, float[]? bias, int n)
    {
        int k = w.Length / n, m = x.Length / k;
        var y = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias?[j] ?? 0;
                for (int p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
                y[i * n + j] = s;
            }
        return y;
    }

    private double[] LayerNorm(double[] x, float[] g, float[]? b, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / D; r++)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < D; i++) mean += x[r * D + i];
            mean /= D;
            for (int i = 0; i < D; i++) var += Math.Pow(x[r * D + i] - mean, 2);
            var /= D;
            for (int i = 0; i < D; i++) y[r * D + i] = (x[r * D + i] - mean) / Math.Sqrt(var + eps) * g[i] + (b?[i] ?? 0);
        }
        return y;
    }

    private double[] RmsNorm(double[] x, float[] g, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / D; r++)
        {
            double ms = 0;
            for (int i = 0; i < D; i++) ms += x[r * D + i] * x[r * D + i];
            for (int i = 0; i < D; i++) y[r * D + i] = x[r * D + i] / Math.Sqrt(ms / D + eps) * g[i];
        }
        return y;
    }

    private void Rope(double[] x, int[] pos, int heads, int rot, int off, bool interleaved, double theta)
    {
        for (int i = 0; i < pos.Length; i++)
            for (int h = 0; h < heads; h++)
            {
                int baseIx = (i * heads + h) * Hd + off;
                for (int f = 0; f < rot / 2; f++)
                {
                    double ang = pos[i] * Math.Pow(theta, -2.0 * f / rot);
                    int a = interleaved ? baseIx + 2 * f : baseIx + f, b = interleaved ? a + 1 : baseIx + f + rot / 2;
                    double xa = x[a], xb = x[b];
                    x[a] = xa * Math.Cos(ang) - xb * Math.Sin(ang);
                    x[b] = xb * Math.Cos(ang) + xa * Math.Sin(ang);
                }
            }
    }

    public void Dispose()
    {
        Ir?.Dispose();
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}
