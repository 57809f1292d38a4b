using System.Text.Json;
using Hub.IR;
using Hub.Runtime;

namespace Hub.Models.Tests;

/// <summary>A named input: float32 or int32 data with its shape.</summary>
internal sealed record LlamaInput(string Name, int[] Shape, float[]? F = null, int[]? I = null);

/// <summary>Runs an export (the runtime or the float64 reference), and drives causal LMs with the conventions' inputs.</summary>
internal abstract class LlamaRunner : IDisposable
{
    /// <summary>Positions in the cache.</summary>
    public int Past { get; private set; }

    /// <summary>Runs the graph once and returns <paramref name="output"/> as float32.</summary>
    public abstract float[] Run(string output, params LlamaInput[] inputs);

    /// <summary>Empties the cache.</summary>
    public void Reset() { Past = 0; ResetState(); }

    protected abstract void ResetState();

    /// <summary>Feeds <paramref name="ids"/> [batch, seq] after the cached positions (no padding); returns logits [batch, kept, vocab].</summary>
    public float[] Forward(int[] ids, int batch, int seq, int keep)
    {
        var pos = new int[batch * seq];
        for (int b = 0; b < batch; b++) for (int t = 0; t < seq; t++) pos[b * seq + t] = Past + t;
        var logits = Run("logits",
            new LlamaInput("input_ids", [batch, seq], I: ids),
            new LlamaInput("position_ids", [batch, seq], I: pos),
            new LlamaInput("attention_mask", [batch, Past + seq], F: Enumerable.Repeat(1f, batch * (Past + seq)).ToArray()),
            new LlamaInput("logits_to_keep", [1], I: [keep]));
        Past += seq;
        return logits;
    }

    public virtual void Dispose() { }
}

/// <summary>
/// The float64 reference evaluator (<see cref="LlamaIrReference"/>) over the export as written to disk and loaded back, so
/// the IR file path (weight dtypes, attribute JSON) is part of what it checks.
/// </summary>
internal sealed class LlamaReferenceRunner : LlamaRunner
{
    private readonly string _dir = Hub.Tests.SharedDir.TempDir("hub-llama-ir");
    private readonly LlamaIrReference _ir;

    public LlamaReferenceRunner(ModelExport export)
    {
        IrFormat.Write(_dir, export);
        using var ir = IrModel.Load(_dir);
        _ir = new LlamaIrReference(ir);
    }

    public override float[] Run(string output, params LlamaInput[] inputs)
    {
        var outs = _ir.Run(inputs.ToDictionary(i => i.Name, i => (i.F is not null ? Array.ConvertAll(i.F, x => (double)x) : Array.ConvertAll(i.I!, x => (double)x), i.Shape)));
        return Array.ConvertAll(outs[output].Data, x => (float)x);
    }

    protected override void ResetState() => _ir.Reset();

    public override void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The CPU runtime: the export written as IR, loaded, compiled, and run through one <see cref="InferRequest"/>.</summary>
internal sealed class LlamaRuntimeRunner : LlamaRunner
{
    private readonly string _dir = Hub.Tests.SharedDir.TempDir("hub-llama-ir");
    private readonly IrModel _ir;
    private readonly CompiledModel _model;
    private readonly InferRequest _request;

    public LlamaRuntimeRunner(ModelExport export)
    {
        IrFormat.Write(_dir, export);
        _ir = IrModel.Load(_dir);
        // golden logits from transformers' float32 cache (an Auto cache would be f16 for the half-precision fixtures)
        _model = CompiledModel.Compile(_ir, new RuntimeOptions { MaxContext = 256, MaxBatch = 2, Threads = 1, KvCachePrecision = KvCachePrecision.F32 });
        _request = _model.CreateInferRequest();
    }

    public override float[] Run(string output, params LlamaInput[] inputs)
    {
        foreach (var i in inputs)
        {
            if (i.F is not null) _request.SetInput(i.Name, i.F, i.Shape);
            else _request.SetInput(i.Name, i.I!, i.Shape);
        }
        _request.Infer();
        return _request.GetOutput(output).ToArray();
    }

    protected override void ResetState() => _request.ResetState();

    public override void Dispose()
    {
        _request.Dispose();
        _model.Dispose();
        _ir.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>golden.json of a causal-LM fixture.</summary>
internal sealed record LlamaGoldenCase(int[][] InputIds, float[][][] Logits, int[][]? GreedyIds)
{
    public static LlamaGoldenCase[] Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new LlamaGoldenCase(
            c.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray(),
            c.GetProperty("logits").EnumerateArray().Select(b => b.EnumerateArray().Select(t => t.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray()).ToArray(),
            c.TryGetProperty("greedy_ids", out var g) ? g.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray() : null)).ToArray();
    }
}
