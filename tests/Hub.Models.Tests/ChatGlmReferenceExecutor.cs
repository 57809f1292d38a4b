using Hub.IR;

namespace Hub.Models.Tests;

/// <summary>
/// A deliberately naive interpreter of the IR ops the ChatGLM graphs use, written from the op semantics in Ops.cs
/// (float64 accumulation, no fusion, no blocking). It checks the graph builders, weight hooks and host-side positions
/// against the goldens independently of the optimized runtime, and is the "reference twin" the runtime is compared to.
/// </summary>
internal sealed class ChatGlmReferenceExecutor
{
    private readonly ModelExport _export;
    private readonly Dictionary<string, (float[] Data, int[] Shape)> _weights = new(StringComparer.Ordinal);
    private readonly Dictionary<string, float[]> _states = new(StringComparer.Ordinal);
    private readonly int _capacity;
    private int _batch = -1;

    /// <summary>Positions already in the cache.</summary>
    public int Past { get; private set; }

    public ChatGlmReferenceExecutor(ModelExport export, int capacity)
    {
        _export = export;
        _capacity = capacity;
        foreach (var w in export.Weights)
            _weights[w.Name] = (w.Tensor.ToFloat32(), w.Tensor.Shape.ToIntArray());
    }

    public void Reset() { _states.Clear(); Past = 0; _batch = -1; }

    /// <summary>Runs one step. Int inputs are (data, shape); float inputs likewise. Returns the graph output "logits".</summary>
    public (float[] Data, int[] Shape) Run(IReadOnlyDictionary<string, (int[] Data, int[] Shape)> intInputs,
        IReadOnlyDictionary<string, (float[] Data, int[] Shape)> floatInputs)
    {
        var f = new Dictionary<string, (float[] Data, int[] Shape)>(StringComparer.Ordinal);
        foreach (var kv in floatInputs) f[kv.Key] = kv.Value;
        foreach (var kv in _weights) f[kv.Key] = kv.Value;
        var ints = intInputs;
        int batch = ints["input_ids"].Shape[0], seq = ints["input_ids"].Shape[1];
        if (_batch < 0) _batch = batch;
        Assert.Equal(_batch, batch);

        foreach (var n in _export.Graph.Nodes)
        {
            var ins = n.Inputs;
            switch (n.Op)
            {
                case Ops.Embedding:
                {
                    var (ids, idShape) = ints[ins[0]];
                    var (table, ts) = f[ins[1]];
                    int d = ts[1];
                    var y = new float[ids.Length * d];
                    for (int i = 0; i < ids.Length; i++)
                    {
                        if (ids[i] < 0 || ids[i] >= ts[0]) throw new ModelInputException($"id {ids[i]} outside [0,{ts[0]})");
                        Array.Copy(table, (long)ids[i] * d, y, (long)i * d, d);
                    }
                    f[n.Outputs[0]] = (y, new[] { idShape[0], idShape[1], d });
                    break;
                }
                case Ops.RMSNorm:
                case Ops.LayerNorm:
                {
                    var (x, xs) = f[ins[0]];
                    var gamma = f[ins[1]].Data;
                    float[]? beta = ins.Count > 2 && ins[2].Length > 0 ? f[ins[2]].Data : null;
                    float eps = n.GetFloat("eps", n.Op == Ops.RMSNorm ? 1e-6f : 1e-5f);
                    int d = xs[^1];
                    var y = new float[x.Length];
                    for (int r = 0; r < x.Length / d; r++)
                    {
                        double mean = 0;
                        if (n.Op == Ops.LayerNorm) { for (int i = 0; i < d; i++) mean += x[r * d + i]; mean /= d; }
                        double var = 0;
                        for (int i = 0; i < d; i++) { double v = x[r * d + i] - mean; var += v * v; }
                        var /= d;
                        double inv = 1.0 / Math.Sqrt(var + eps);
                        for (int i = 0; i < d; i++)
                            y[r * d + i] = (float)((x[r * d + i] - mean) * inv * gamma[i] + (beta?[i] ?? 0));
                    }
                    f[n.Outputs[0]] = (y, xs);
                    break;
                }
                case Ops.Linear:
                {
                    var (x, xs) = f[ins[0]];
                    var (w, ws) = f[ins[1]];
                    float[]? b = ins.Count > 2 && ins[2].Length > 0 ? f[ins[2]].Data : null;
                    int k = xs[^1], nOut = ws[0];
                    Assert.Equal(k, ws[1]);
                    int rows = x.Length / k;
                    var y = new float[rows * nOut];
                    for (int r = 0; r < rows; r++)
                        for (int o = 0; o < nOut; o++)
                        {
                            double acc = b?[o] ?? 0;
                            for (int i = 0; i < k; i++) acc += (double)x[r * k + i] * w[(long)o * k + i];
                            y[(long)r * nOut + o] = (float)acc;
                        }
                    var shape = (int[])xs.Clone(); shape[^1] = nOut;
                    f[n.Outputs[0]] = (y, shape);
                    break;
                }
                case Ops.Split:
                {
                    var (x, xs) = f[ins[0]];
                    var sizes = n.GetInts("sizes").Select(s => (int)s).ToArray();
                    int d = xs[^1], rows = x.Length / d, at = 0;
                    Assert.Equal(d, sizes.Sum());
                    for (int o = 0; o < sizes.Length; o++)
                    {
                        var y = new float[rows * sizes[o]];
                        for (int r = 0; r < rows; r++) Array.Copy(x, r * d + at, y, r * sizes[o], sizes[o]);
                        var shape = (int[])xs.Clone(); shape[^1] = sizes[o];
                        f[n.Outputs[o]] = (y, shape);
                        at += sizes[o];
                    }
                    break;
                }
                case Ops.Rope:
                    f[n.Outputs[0]] = Rope(n, f[ins[0]], ints[ins[1]]);
                    break;
                case Ops.Attention:
                    f[n.Outputs[0]] = Attention(n, f[ins[0]], f[ins[1]], f[ins[2]], ins.Count > 3 ? ins[3] : "", ins.Count > 4 ? ins[4] : "", f, ints);
                    break;
                case Ops.Add:
                case Ops.Mul:
                {
                    var (a, s) = f[ins[0]];
                    var b = f[ins[1]].Data;
                    var y = new float[a.Length];
                    for (int i = 0; i < a.Length; i++) y[i] = n.Op == Ops.Add ? a[i] + b[i % b.Length] : a[i] * b[i % b.Length];
                    f[n.Outputs[0]] = (y, s);
                    break;
                }
                case Ops.Scale:
                {
                    var (a, s) = f[ins[0]];
                    float alpha = n.GetFloat("alpha", 1f), beta = n.GetFloat("beta", 0f);
                    f[n.Outputs[0]] = (a.Select(v => v * alpha + beta).ToArray(), s);
                    break;
                }
                case Ops.SwiGlu:
                {
                    var (x, xs) = f[ins[0]];
                    int d2 = xs[^1], h = d2 / 2, rows = x.Length / d2;
                    var y = new float[rows * h];
                    for (int r = 0; r < rows; r++)
                        for (int i = 0; i < h; i++)
                        {
                            double g = x[r * d2 + i];
                            y[r * h + i] = (float)(g / (1 + Math.Exp(-g)) * x[r * d2 + h + i]);
                        }
                    var shape = (int[])xs.Clone(); shape[^1] = h;
                    f[n.Outputs[0]] = (y, shape);
                    break;
                }
                case Ops.Gelu:
                {
                    var (x, xs) = f[ins[0]];
                    Assert.Equal("tanh", n.GetString("approximate", "none"));
                    f[n.Outputs[0]] = (x.Select(v => (float)(0.5 * v * (1 + Math.Tanh(0.7978845608028654 * (v + 0.044715 * (double)v * v * v))))).ToArray(), xs);
                    break;
                }
                case Ops.KeepLast:
                {
                    var (x, xs) = f[ins[0]];
                    int keep = ints[ins[1]].Data[0];
                    int t = xs[1], kept = keep == 0 ? t : Math.Min(keep, t), d = xs[2];
                    var y = new float[xs[0] * kept * d];
                    for (int b = 0; b < xs[0]; b++) Array.Copy(x, ((long)b * t + (t - kept)) * d, y, (long)b * kept * d, (long)kept * d);
                    f[n.Outputs[0]] = (y, new[] { xs[0], kept, d });
                    break;
                }
                default:
                    throw new NotSupportedException($"reference executor lacks op {n.Op}");
            }
        }
        Past += seq;
        var outName = _export.Graph.Outputs[0].Name;
        return f[outName];
    }

    private static (float[] Data, int[] Shape) Rope(Node n, (float[] Data, int[] Shape) xIn, (int[] Data, int[] Shape) posIn)
    {
        var (x, xs) = xIn;
        int heads = (int)n.GetInt("heads"), hd = (int)n.GetInt("head_dim"), r = (int)n.GetInt("rotary_dims", hd);
        int off = (int)n.GetInt("channel_offset", 0), pOff = (int)n.GetInt("positions_offset", 0);
        float theta = n.GetFloat("theta", 10000f), pScale = n.GetFloat("position_scale", 1f);
        bool interleaved = n.GetString("style") == "interleaved";
        bool f16 = n.GetString("freq_dtype", "f32") == "f16";
        int batch = xs[0], seq = xs[1];
        var freqs = new float[r / 2];
        for (int i = 0; i < r / 2; i++)
        {
            float fr = 1f / MathF.Pow(theta, (2 * i) / (float)r);
            freqs[i] = f16 ? (float)(Half)fr : fr;
        }
        int rows = posIn.Shape.Length == 3 ? posIn.Shape[1] : 1;
        var y = (float[])x.Clone();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seq; t++)
            {
                float p = posIn.Data[(b * rows + pOff) * seq + t] * pScale;
                for (int h = 0; h < heads; h++)
                {
                    int bas = ((b * seq + t) * heads + h) * hd + off;
                    for (int i = 0; i < r / 2; i++)
                    {
                        float angle = p * freqs[i];
                        float cos = (float)Math.Cos(angle), sin = (float)Math.Sin(angle);
                        int ia = interleaved ? bas + 2 * i : bas + i, ib = interleaved ? bas + 2 * i + 1 : bas + i + r / 2;
                        float a = x[ia], c = x[ib];
                        y[ia] = a * cos - c * sin;
                        y[ib] = c * cos + a * sin;
                    }
                }
            }
        return (y, xs);
    }

    private (float[] Data, int[] Shape) Attention(Node n, (float[] Data, int[] Shape) qIn, (float[] Data, int[] Shape) kIn,
        (float[] Data, int[] Shape) vIn, string maskName, string prefixMaskName, Dictionary<string, (float[] Data, int[] Shape)> f,
        IReadOnlyDictionary<string, (int[] Data, int[] Shape)> ints)
    {
        int h = (int)n.GetInt("heads"), kvh = (int)n.GetInt("kv_heads", h), hd = (int)n.GetInt("head_dim");
        float scale = n.GetFloat("scale", 1f / MathF.Sqrt(hd));
        bool causal = n.GetBool("causal", true), prefixMode = n.GetBool("prefix_bidirectional", false);
        string sk = n.GetString("state_k"), sv = n.GetString("state_v");
        int batch = qIn.Shape[0], seq = qIn.Shape[1], past = Past, total = past + seq;
        var kc = _states.TryGetValue(sk, out var k0) ? k0 : _states[sk] = new float[batch * kvh * _capacity * hd];
        var vc = _states.TryGetValue(sv, out var v0) ? v0 : _states[sv] = new float[batch * kvh * _capacity * hd];
        Assert.True(total <= _capacity);
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seq; t++)
                for (int g = 0; g < kvh; g++)
                {
                    int src = ((b * seq + t) * kvh + g) * hd, dst = ((b * kvh + g) * _capacity + past + t) * hd;
                    Array.Copy(kIn.Data, src, kc, dst, hd);
                    Array.Copy(vIn.Data, src, vc, dst, hd);
                }
        // (v1: the prefix lengths take the fourth input's place and the padding mask comes fifth)
        float[]? mask = !prefixMode && maskName.Length > 0 ? f[maskName].Data : prefixMode && prefixMaskName.Length > 0 ? f[prefixMaskName].Data : null;
        int[]? prefix = prefixMode ? ints[maskName].Data : null;
        var y = new float[batch * seq * h * hd];
        var scores = new double[total];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seq; t++)
                for (int head = 0; head < h; head++)
                {
                    int g = head / (h / kvh), qi = past + t;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < total; j++)
                    {
                        // causal, plus (v1) a bidirectional prefix: keys before the prefix length are visible to every query
                        bool ok = !causal || j <= qi || (prefix is not null && j < prefix[b]);
                        if (mask is not null && mask[b * total + j] == 0) ok = false;
                        if (!ok) { scores[j] = double.NegativeInfinity; continue; }
                        double s = 0;
                        for (int i = 0; i < hd; i++)
                            s += (double)qIn.Data[((b * seq + t) * h + head) * hd + i] * kc[((b * kvh + g) * _capacity + j) * hd + i];
                        scores[j] = s * scale;
                        max = Math.Max(max, scores[j]);
                    }
                    if (double.IsNegativeInfinity(max)) continue;
                    double sum = 0;
                    for (int j = 0; j < total; j++) { scores[j] = Math.Exp(scores[j] - max); sum += scores[j]; }
                    for (int i = 0; i < hd; i++)
                    {
                        double acc = 0;
                        for (int j = 0; j < total; j++) acc += scores[j] * vc[((b * kvh + g) * _capacity + j) * hd + i];
                        y[((b * seq + t) * h + head) * hd + i] = (float)(acc / sum);
                    }
                }
        return (y, qIn.Shape);
    }
}
