using System.Text.Json;
using Hub.IR;

namespace Hub.Models.Tests;

/// <summary>Runs a causal-LM export one step at a time with the graph conventions' inputs (no padding).</summary>
internal interface ITestRunner : IDisposable
{
    /// <summary>Feeds <paramref name="ids"/> [batch, seq] after the cached positions; returns logits [batch, kept, vocab].</summary>
    float[] Forward(int[] ids, int batch, int seq, int keep);

    /// <summary>Empties the cache.</summary>
    void Reset();
}

/// <summary>The float64 reference evaluator behind <see cref="ITestRunner"/>.</summary>
internal sealed class ReferenceRunner(ModelExport export) : ITestRunner
{
    private readonly IrReference _ir = new(export);

    public float[] Forward(int[] ids, int batch, int seq, int keep)
    {
        int past = _ir.Past;
        var pos = new double[batch * seq];
        for (int b = 0; b < batch; b++) for (int t = 0; t < seq; t++) pos[b * seq + t] = past + t;
        var mask = Enumerable.Repeat(1.0, batch * (past + seq)).ToArray();
        var outs = _ir.Run(new Dictionary<string, (double[], int[])>
        {
            ["input_ids"] = (Array.ConvertAll(ids, i => (double)i), [batch, seq]),
            ["position_ids"] = (pos, [batch, seq]),
            ["attention_mask"] = (mask, [batch, past + seq]),
            ["logits_to_keep"] = ([keep], [1]),
        });
        return Array.ConvertAll(outs["logits"].Data, x => (float)x);
    }

    public void Reset() => _ir.Reset();

    public void Dispose() { }
}

/// <summary>golden.json of a causal-LM fixture.</summary>
internal sealed record GoldenCase(int[][] InputIds, float[][][] Logits, int[][]? GreedyIds)
{
    public static GoldenCase[] Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase(
            c.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray(),
            c.GetProperty("logits").EnumerateArray().Select(b => b.EnumerateArray().Select(t => t.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray()).ToArray(),
            c.TryGetProperty("greedy_ids", out var g) ? g.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray() : null)).ToArray();
    }
}
