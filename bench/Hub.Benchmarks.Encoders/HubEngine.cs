using Hub.Converters;
using Hub.IR;
using Hub.Models;
using Hub.Models.Bert;
using Hub.Runtime;

namespace Hub.Benchmarks.Encoders;

/// <summary>Hub: the safetensors folder converted to IR (in a temp folder), compiled on the CPU runtime.</summary>
internal sealed class HubEngine : IEncoderEngine
{
    private readonly string _irDir;
    private readonly IrModel _ir;
    private readonly CompiledModel _compiled;
    private readonly InferRequest _request;
    private int[] _types = [], _positions = [];

    public string Name => "hub";

    public HubEngine(string modelDir, int threads)
    {
        var configPath = Path.Combine(modelDir, "config.json");
        var config = ConfigReader.Load(configPath);
        _irDir = Path.Combine(Path.GetTempPath(), $"hub-bench-{Guid.NewGuid():N}");
        using (var weights = CheckpointLoader.OpenFolder(modelDir))
        {
            var export = new BertArchitecture().Build(
                new ModelSource { Directory = modelDir, Config = config, ConfigPath = configPath, Weights = weights }, ExportSettings.Default);
            IrFormat.Write(_irDir, export);
        }
        _ir = IrModel.Load(_irDir);
        _compiled = CompiledModel.Compile(_ir, new RuntimeOptions { Threads = threads });
        _request = _compiled.CreateInferRequest();
    }

    public float[] Run(int[] ids, float[] mask, int batch, int seq)
    {
        int n = batch * seq;
        if (_types.Length != n)
        {
            _types = new int[n];
            _positions = new int[n];
            for (int i = 0; i < n; i++) _positions[i] = i % seq;
        }
        _request.SetInput("input_ids", ids, batch, seq);
        _request.SetInput("token_type_ids", _types, batch, seq);
        _request.SetInput("attention_mask", mask, batch, seq);
        _request.SetInput("position_ids", _positions, batch, seq);
        _request.Infer();
        return _request.GetOutput("last_hidden_state").ToArray();
    }

    /// <summary>Runs <paramref name="calls"/> times with per-node timing and returns ms per call summed by op type.</summary>
    public IReadOnlyList<(string Op, double Ms, int Nodes)> Profile(int[] ids, float[] mask, int batch, int seq, int calls)
    {
        var nodes = _ir.Graph.Nodes;
        var ticks = new long[nodes.Count];
        Run(ids, mask, batch, seq);
        _request.OpTicks = ticks;
        for (int c = 0; c < calls; c++) Run(ids, mask, batch, seq);
        _request.OpTicks = null;
        return nodes.Select((n, i) => (n.Op, Ticks: ticks[i], Name: n.Name))
            .GroupBy(x => x.Op)
            .Select(g => (g.Key, g.Sum(x => x.Ticks) * 1000.0 / System.Diagnostics.Stopwatch.Frequency / calls, g.Count()))
            .OrderByDescending(x => x.Item2).ToList();
    }

    public void Dispose()
    {
        _request.Dispose();
        _compiled.Dispose();
        _ir.Dispose();
        try { Directory.Delete(_irDir, true); } catch (IOException) { }
    }
}
