using Hub.IR;

namespace Hub.Models.Tests;

/// <summary>
/// A float64 reference evaluator for the ops a LLaMA graph uses, written straight from the semantics in
/// <see cref="Ops"/>: it checks what the graph builder emits (wiring, attributes, weight transforms) independently of
/// the optimized runtime, the way a kernel's scalar twin checks its SIMD path. Slow by design; tiny models only.
/// </summary>
internal sealed class LlamaIrReference
{
    private readonly Graph _graph;
    private readonly Dictionary<string, (double[] Data, int[] Shape)> _weights = new(StringComparer.Ordinal);
    // state name → [batch, kv head] → one hd-vector per cached position
    private readonly Dictionary<string, List<double[]>[,]> _states = new(StringComparer.Ordinal);

    /// <summary>Positions already in the cache.</summary>
    public int Past { get; private set; }

    /// <summary>Evaluates a loaded IR (graph and weights as written to disk).</summary>
    public LlamaIrReference(IrModel ir)
    {
        _graph = ir.Graph;
        foreach (var w in ir.Graph.Weights)
            _weights[w.Name] = (Array.ConvertAll(ir.GetWeight(w.Name).ToFloat32(), x => (double)x), w.Shape.ToIntArray());
    }

    /// <summary>Empties the KV cache.</summary>
    public void Reset() { _states.Clear(); Past = 0; }

    /// <summary>Runs the graph once; inputs are given as doubles with their shapes (ids as exact integers).</summary>
    public Dictionary<string, (double[] Data, int[] Shape)> Run(IReadOnlyDictionary<string, (double[] Data, int[] Shape)> inputs)
    {
        var env = new Dictionary<string, (double[] Data, int[] Shape)>(_weights, StringComparer.Ordinal);
        foreach (var (k, v) in inputs) env[k] = v;
        int t = 0;
        foreach (var n in _graph.Nodes)
        {
            var x = n.Inputs.Select(i => i.Length == 0 ? default : env[i]).ToArray();
            switch (n.Op)
            {
                case Ops.Embedding: env[n.Outputs[0]] = Embedding(x[0], x[1]); break;
                case Ops.RMSNorm: env[n.Outputs[0]] = RmsNorm(x[0], x[1].Data, n.GetFloat("eps", 1e-6f)); break;
                case Ops.Linear: env[n.Outputs[0]] = Linear(x[0], x[1], x.Length > 2 ? x[2].Data : null); break;
                case Ops.Add: env[n.Outputs[0]] = Zip(x[0], x[1], (a, b) => a + b); break;
                case Ops.Mul: env[n.Outputs[0]] = Zip(x[0], x[1], (a, b) => a * b); break;
                case Ops.SwiGlu: env[n.Outputs[0]] = SwiGlu(x[0]); break;
                case Ops.KeepLast: env[n.Outputs[0]] = KeepLast(x[0], (int)x[1].Data[0]); break;
                case Ops.Split:
                    var parts = Split(x[0], n.GetInts("sizes"));
                    for (int i = 0; i < parts.Length; i++) env[n.Outputs[i]] = parts[i];
                    break;
                case Ops.Rope: env[n.Outputs[0]] = Rope(n, x[0], x[1]); break;
                case Ops.Attention:
                    t = x[0].Shape[1];
                    env[n.Outputs[0]] = Attention(n, x[0], x[1], x[2], n.Inputs.Count > 3 && n.Inputs[3].Length > 0 ? x[3] : default);
                    break;
                default: throw new NotSupportedException($"reference evaluator lacks op {n.Op}");
            }
        }
        Past += t;
        return _graph.Outputs.ToDictionary(o => o.Name, o => env[o.Name]);
    }

    private static (double[], int[]) Embedding((double[] Data, int[] Shape) ids, (double[] Data, int[] Shape) table)
    {
        int d = table.Shape[1];
        var y = new double[ids.Data.Length * d];
        for (int i = 0; i < ids.Data.Length; i++) Array.Copy(table.Data, (int)ids.Data[i] * d, y, i * d, d);
        return (y, [.. ids.Shape, d]);
    }

    private static (double[], int[]) RmsNorm((double[] Data, int[] Shape) x, double[] g, double eps)
    {
        int d = g.Length;
        var y = new double[x.Data.Length];
        for (int r = 0; r < x.Data.Length / d; r++)
        {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += x.Data[r * d + i] * x.Data[r * d + i];
            double inv = 1 / Math.Sqrt(ss / d + eps);
            for (int i = 0; i < d; i++) y[r * d + i] = x.Data[r * d + i] * inv * g[i];
        }
        return (y, x.Shape);
    }

    private static (double[], int[]) Linear((double[] Data, int[] Shape) x, (double[] Data, int[] Shape) w, double[]? b)
    {
        int n = w.Shape[0], k = w.Shape[1], rows = x.Data.Length / k;
        var y = new double[rows * n];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < n; o++)
            {
                double s = b?[o] ?? 0;
                for (int i = 0; i < k; i++) s += x.Data[r * k + i] * w.Data[o * k + i];
                y[r * n + o] = s;
            }
        return (y, [.. x.Shape[..^1], n]);
    }

    private static (double[], int[]) Zip((double[] Data, int[] Shape) a, (double[] Data, int[] Shape) b, Func<double, double, double> f)
    {
        var y = new double[a.Data.Length];
        for (int i = 0; i < y.Length; i++) y[i] = f(a.Data[i], b.Data[i % b.Data.Length]);
        return (y, a.Shape);
    }

    private static (double[], int[]) SwiGlu((double[] Data, int[] Shape) x)
    {
        int two = x.Shape[^1], f = two / 2, rows = x.Data.Length / two;
        var y = new double[rows * f];
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < f; i++)
            {
                double g = x.Data[r * two + i];
                y[r * f + i] = g / (1 + Math.Exp(-g)) * x.Data[r * two + f + i];
            }
        return (y, [.. x.Shape[..^1], f]);
    }

    private static (double[], int[]) KeepLast((double[] Data, int[] Shape) x, int n)
    {
        int b = x.Shape[0], t = x.Shape[1], keep = n == 0 ? t : Math.Min(n, t), row = x.Data.Length / (b * t);
        var y = new double[b * keep * row];
        for (int i = 0; i < b; i++) Array.Copy(x.Data, (i * t + t - keep) * row, y, i * keep * row, keep * row);
        return (y, [b, keep, .. x.Shape[2..]]);
    }

    private static (double[], int[])[] Split((double[] Data, int[] Shape) x, long[] sizes)
    {
        int total = x.Shape[^1], rows = x.Data.Length / total, at = 0;
        var outs = new (double[], int[])[sizes.Length];
        for (int s = 0; s < sizes.Length; s++)
        {
            int w = (int)sizes[s];
            var y = new double[rows * w];
            for (int r = 0; r < rows; r++) Array.Copy(x.Data, r * total + at, y, r * w, w);
            outs[s] = (y, [.. x.Shape[..^1], w]);
            at += w;
        }
        return outs;
    }

    /// <summary>Inverse frequencies of the Rope op (theta^(−2i/r), with the documented scaling rules) in float64.</summary>
    public static double[] InverseFrequencies(double theta, int rotary, System.Text.Json.Nodes.JsonObject? scaling, int seqLen)
    {
        var type = (string?)scaling?["type"];
        if (type == "dynamic")
        {
            double factor = (double)scaling!["factor"]!, orig = (double)scaling["original_max_position_embeddings"]!;
            if (seqLen > orig) theta *= Math.Pow(factor * seqLen / orig - (factor - 1), rotary / (rotary - 2.0));
        }
        var inv = new double[rotary / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / rotary);
        if (type == "llama3")
        {
            double factor = (double)scaling!["factor"]!, lo = (double)scaling["low_freq_factor"]!, hi = (double)scaling["high_freq_factor"]!;
            double orig = (double)scaling["original_max_position_embeddings"]!;
            double loWave = orig / lo, hiWave = orig / hi;
            for (int i = 0; i < inv.Length; i++)
            {
                double wave = 2 * Math.PI / inv[i];
                if (wave < hiWave) continue;
                if (wave > loWave) { inv[i] /= factor; continue; }
                double smooth = (orig / wave - lo) / (hi - lo);
                inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
            }
        }
        if (type == "linear") for (int i = 0; i < inv.Length; i++) inv[i] /= (double)scaling!["factor"]!;
        return inv;
    }

    private static (double[], int[]) Rope(Node n, (double[] Data, int[] Shape) x, (double[] Data, int[] Shape) pos)
    {
        int heads = (int)n.GetInt("heads"), hd = (int)n.GetInt("head_dim"), rot = (int)n.GetInt("rotary_dims", hd), r = rot / 2;
        bool half = n.GetString("style", "half") == "half";
        int rows = pos.Data.Length;
        int seqLen = (int)pos.Data.Max() + 1;
        double theta = n.Attributes["theta"] is { } tn ? tn.GetValue<double>() : 10000;
        var inv = InverseFrequencies(theta, rot, n.Attributes["scaling"] as System.Text.Json.Nodes.JsonObject, seqLen);
        var y = (double[])x.Data.Clone();
        for (int row = 0; row < rows; row++)
            for (int h = 0; h < heads; h++)
            {
                int b0 = row * heads * hd + h * hd;
                for (int j = 0; j < r; j++)
                {
                    double a = pos.Data[row] * inv[j], c = Math.Cos(a), s = Math.Sin(a);
                    int i0 = b0 + (half ? j : 2 * j), i1 = b0 + (half ? j + r : 2 * j + 1);
                    y[i0] = x.Data[i0] * c - x.Data[i1] * s;
                    y[i1] = x.Data[i1] * c + x.Data[i0] * s;
                }
            }
        return (y, x.Shape);
    }

    private (double[], int[]) Attention(Node n, (double[] Data, int[] Shape) q, (double[] Data, int[] Shape) k,
        (double[] Data, int[] Shape) v, (double[] Data, int[] Shape) mask)
    {
        int heads = (int)n.GetInt("heads"), kvHeads = (int)n.GetInt("kv_heads", heads), hd = (int)n.GetInt("head_dim");
        double scale = n.Attributes["scale"] is { } sn ? sn.GetValue<double>() : 1 / Math.Sqrt(hd);
        bool causal = n.GetBool("causal", true);
        int b = q.Shape[0], t = q.Shape[1];
        var names = (n.GetString("state_k"), n.GetString("state_v"));
        if (!_states.TryGetValue(names.Item1, out var ks))
        {
            ks = new List<double[]>[b, kvHeads];
            var vs0 = new List<double[]>[b, kvHeads];
            for (int i = 0; i < b; i++) for (int h = 0; h < kvHeads; h++) { ks[i, h] = new(); vs0[i, h] = new(); }
            _states[names.Item1] = ks;
            _states[names.Item2] = vs0;
        }
        var vs = _states[names.Item2];
        for (int i = 0; i < b; i++)
            for (int p = 0; p < t; p++)
                for (int h = 0; h < kvHeads; h++)
                {
                    int at = (i * t + p) * kvHeads * hd + h * hd;
                    ks[i, h].Add(k.Data.AsSpan(at, hd).ToArray());
                    vs[i, h].Add(v.Data.AsSpan(at, hd).ToArray());
                }
        int total = ks[0, 0].Count, past = total - t, group = heads / kvHeads;
        var y = new double[b * t * heads * hd];
        for (int i = 0; i < b; i++)
            for (int p = 0; p < t; p++)
                for (int h = 0; h < heads; h++)
                {
                    var keys = ks[i, h / group];
                    var vals = vs[i, h / group];
                    int qAt = (i * t + p) * heads * hd + h * hd;
                    var scores = new double[total];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s < total; s++)
                    {
                        bool visible = (!causal || s <= past + p) && (mask.Data is null || mask.Data[i * total + s] != 0);
                        if (!visible) { scores[s] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int c = 0; c < hd; c++) dot += q.Data[qAt + c] * keys[s][c];
                        scores[s] = dot * scale;
                        max = Math.Max(max, scores[s]);
                    }
                    if (double.IsNegativeInfinity(max)) continue;
                    double sum = 0;
                    for (int s = 0; s < total; s++) { scores[s] = Math.Exp(scores[s] - max); sum += scores[s]; }
                    for (int s = 0; s < total; s++)
                        if (scores[s] != 0)
                            for (int c = 0; c < hd; c++) y[qAt + c] += scores[s] / sum * vals[s][c];
                }
        return (y, [b, t, heads * hd]);
    }
}
