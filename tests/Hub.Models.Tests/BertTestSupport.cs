using System.Text.Json;
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.Tests;

/// <summary>A float32 tensor of the tests (ids are carried as floats: exact below 2^24).</summary>
public sealed record BertTensor(float[] Data, int[] Shape)
{
    public int Count => Data.Length;
}

/// <summary>
/// A plain float64-accumulating interpreter of the IR ops the BERT graph uses, written from the semantics in
/// <see cref="Ops"/>: the oracle that checks the graph builder independently of the optimized runtime.
/// </summary>
public static class ReferenceExecutor
{
    public static Dictionary<string, BertTensor> Run(ModelExport export, IReadOnlyDictionary<string, BertTensor> inputs)
    {
        var values = new Dictionary<string, BertTensor>(StringComparer.Ordinal);
        foreach (var (k, v) in inputs) values[k] = v;
        foreach (var w in export.Weights) values[w.Name] = new BertTensor(w.Tensor.ToFloat32(), w.Tensor.Shape.ToIntArray());
        foreach (var node in export.Graph.Nodes)
        {
            BertTensor In(int i) => values[node.Inputs[i]];
            BertTensor? Opt(int i) => i < node.Inputs.Count && node.Inputs[i].Length > 0 ? values[node.Inputs[i]] : null;
            switch (node.Op)
            {
                case Ops.Embedding: values[node.Outputs[0]] = Embedding(In(0), In(1)); break;
                case Ops.Add: values[node.Outputs[0]] = Binary(In(0), In(1), (a, b) => a + b); break;
                case Ops.Mul: values[node.Outputs[0]] = Binary(In(0), In(1), (a, b) => a * b); break;
                case Ops.LayerNorm: values[node.Outputs[0]] = LayerNorm(In(0), In(1), Opt(2), node.GetFloat("eps", 1e-5f)); break;
                case Ops.Linear: values[node.Outputs[0]] = Linear(In(0), In(1), Opt(2)); break;
                case Ops.Split:
                    var parts = SplitLast(In(0), node.GetInts("sizes"));
                    for (int i = 0; i < parts.Length; i++) values[node.Outputs[i]] = parts[i];
                    break;
                case Ops.Attention: values[node.Outputs[0]] = Attention(node, In(0), In(1), In(2), Opt(3)); break;
                case Ops.Gelu:
                    bool tanh = node.GetString("approximate", "none") == "tanh";
                    values[node.Outputs[0]] = Map(In(0), x => tanh
                        ? 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)))
                        : 0.5 * x * (1 + Erf(x / Math.Sqrt(2))));
                    break;
                case Ops.Tanh: values[node.Outputs[0]] = Map(In(0), Math.Tanh); break;
                case Ops.Relu: values[node.Outputs[0]] = Map(In(0), x => Math.Max(x, 0)); break;
                case Ops.Silu: values[node.Outputs[0]] = Map(In(0), x => x / (1 + Math.Exp(-x))); break;
                case Ops.Sigmoid: values[node.Outputs[0]] = Map(In(0), x => 1 / (1 + Math.Exp(-x))); break;
                case Ops.Slice: values[node.Outputs[0]] = Slice(In(0), (int)node.GetInt("axis"), (int)node.GetInt("start", 0), node.Has("end") ? (int)node.GetInt("end") : null); break;
                case Ops.GatherRows: values[node.Outputs[0]] = GatherRows(In(0), In(1)); break;
                default: throw new NotSupportedException($"reference executor lacks {node.Op}");
            }
        }
        return export.Graph.Outputs.ToDictionary(o => o.Name, o => values[o.Name]);
    }

    private static BertTensor Embedding(BertTensor ids, BertTensor table)
    {
        int d = table.Shape[1];
        var r = new float[ids.Count * d];
        for (int i = 0; i < ids.Count; i++)
        {
            int id = (int)ids.Data[i];
            if (id < 0 || id >= table.Shape[0]) throw new ModelInputException($"id {id} outside [0, {table.Shape[0]})");
            Array.Copy(table.Data, id * d, r, i * d, d);
        }
        return new BertTensor(r, [.. ids.Shape, d]);
    }

    private static BertTensor Binary(BertTensor a, BertTensor b, Func<float, float, float> f)
    {
        var r = new float[a.Count];
        for (int i = 0; i < r.Length; i++) r[i] = f(a.Data[i], b.Data[i % b.Count]);
        return a with { Data = r };
    }

    private static BertTensor Map(BertTensor a, Func<double, double> f) => a with { Data = a.Data.Select(x => (float)f(x)).ToArray() };

    private static BertTensor LayerNorm(BertTensor x, BertTensor g, BertTensor? b, float eps)
    {
        int d = x.Shape[^1];
        var r = new float[x.Count];
        for (int row = 0; row < x.Count / d; row++)
        {
            double mean = 0, var = 0;
            for (int j = 0; j < d; j++) mean += x.Data[row * d + j];
            mean /= d;
            for (int j = 0; j < d; j++) { var t = x.Data[row * d + j] - mean; var += t * t; }
            var /= d;
            var inv = 1 / Math.Sqrt(var + eps);
            for (int j = 0; j < d; j++) r[row * d + j] = (float)((x.Data[row * d + j] - mean) * inv * g.Data[j] + (b?.Data[j] ?? 0));
        }
        return x with { Data = r };
    }

    private static BertTensor Linear(BertTensor x, BertTensor w, BertTensor? b)
    {
        int n = w.Shape[0], k = w.Shape[1], rows = x.Count / k;
        var r = new float[rows * n];
        for (int i = 0; i < rows; i++)
            for (int o = 0; o < n; o++)
            {
                double s = b?.Data[o] ?? 0;
                for (int j = 0; j < k; j++) s += (double)x.Data[i * k + j] * w.Data[o * k + j];
                r[i * n + o] = (float)s;
            }
        return new BertTensor(r, [.. x.Shape[..^1], n]);
    }

    private static BertTensor[] SplitLast(BertTensor x, long[] sizes)
    {
        int d = x.Shape[^1], rows = x.Count / d, at = 0;
        var res = new BertTensor[sizes.Length];
        for (int p = 0; p < sizes.Length; p++)
        {
            int s = (int)sizes[p];
            var r = new float[rows * s];
            for (int i = 0; i < rows; i++) Array.Copy(x.Data, i * d + at, r, i * s, s);
            res[p] = new BertTensor(r, [.. x.Shape[..^1], s]);
            at += s;
        }
        return res;
    }

    private static BertTensor Attention(Node node, BertTensor q, BertTensor k, BertTensor v, BertTensor? mask)
    {
        int heads = (int)node.GetInt("heads"), kvHeads = (int)node.GetInt("kv_heads", heads), hd = (int)node.GetInt("head_dim");
        double scale = node.GetFloat("scale", (float)(1 / Math.Sqrt(hd)));
        bool causal = node.GetBool("causal", true);
        int B = q.Shape[0], T = q.Shape[1], S = k.Shape[1];
        var r = new float[B * T * heads * hd];
        var p = new double[S];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < heads; h++)
            {
                int kh = h / (heads / kvHeads);
                for (int t = 0; t < T; t++)
                {
                    double max = double.NegativeInfinity;
                    for (int s = 0; s < S; s++)
                    {
                        bool keep = (mask is null || mask.Data[b * S + s] != 0) && (!causal || s <= t + S - T);
                        if (!keep) { p[s] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int j = 0; j < hd; j++) dot += (double)q.Data[((b * T + t) * heads + h) * hd + j] * k.Data[((b * S + s) * kvHeads + kh) * hd + j];
                        p[s] = dot * scale;
                        max = Math.Max(max, p[s]);
                    }
                    if (double.IsNegativeInfinity(max)) continue; // all keys masked → zeros
                    double sum = 0;
                    for (int s = 0; s < S; s++) { p[s] = double.IsNegativeInfinity(p[s]) ? 0 : Math.Exp(p[s] - max); sum += p[s]; }
                    for (int j = 0; j < hd; j++)
                    {
                        double acc = 0;
                        for (int s = 0; s < S; s++) acc += p[s] * v.Data[((b * S + s) * kvHeads + kh) * hd + j];
                        r[((b * T + t) * heads + h) * hd + j] = (float)(acc / sum);
                    }
                }
            }
        return new BertTensor(r, [B, T, heads * hd]);
    }

    private static BertTensor Slice(BertTensor x, int axis, int start, int? end)
    {
        if (axis < 0) axis += x.Shape.Length;
        int dim = x.Shape[axis];
        int e = end ?? dim;
        if (start < 0) start += dim;
        if (e < 0) e += dim;
        int outer = x.Shape[..axis].Aggregate(1, (a, c) => a * c), inner = x.Shape[(axis + 1)..].Aggregate(1, (a, c) => a * c);
        var r = new float[outer * (e - start) * inner];
        for (int o = 0; o < outer; o++)
            Array.Copy(x.Data, (o * dim + start) * inner, r, o * (e - start) * inner, (e - start) * inner);
        var shape = (int[])x.Shape.Clone();
        shape[axis] = e - start;
        return new BertTensor(r, shape);
    }

    private static BertTensor GatherRows(BertTensor x, BertTensor index)
    {
        int B = x.Shape[0], T = x.Shape[1], D = x.Shape[2];
        var r = new float[B * D];
        for (int b = 0; b < B; b++) Array.Copy(x.Data, (b * T + (int)index.Data[b]) * D, r, b * D, D);
        return new BertTensor(r, [B, D]);
    }

    // erf through Numerical Recipes' Chebyshev erfc (fractional error < 1.2e-7): ample for 1e-4 goldens.
    private static double Erf(double x)
    {
        double t = 1 / (1 + 0.5 * Math.Abs(x));
        double y = 1 - t * Math.Exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? y : -y;
    }
}

/// <summary>Golden files of the BERT fixtures.</summary>
public static class BertGolden
{
    public static JsonObject Load(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    public static BertTensor Ints(JsonNode node)
    {
        var rows = node.AsArray();
        int b = rows.Count, s = rows[0]!.AsArray().Count;
        var data = rows.SelectMany(r => r!.AsArray().Select(x => (float)(double)x!)).ToArray();
        return new BertTensor(data, [b, s]);
    }

    public static float[] Flat(JsonNode node) => node switch
    {
        JsonArray a => a.SelectMany(x => Flat(x!)).ToArray(),
        _ => [(float)(double)node],
    };

    /// <summary>The inputs of a golden case: ids, types, mask, and positions 0..S-1.</summary>
    public static Dictionary<string, BertTensor> Inputs(JsonNode c)
    {
        var ids = Ints(c["input_ids"]!);
        var pos = new float[ids.Count];
        for (int i = 0; i < pos.Length; i++) pos[i] = i % ids.Shape[1];
        return new()
        {
            ["input_ids"] = ids,
            ["token_type_ids"] = Ints(c["token_type_ids"]!),
            ["attention_mask"] = Ints(c["attention_mask"]!),
            ["position_ids"] = new BertTensor(pos, ids.Shape),
        };
    }

    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }
}
