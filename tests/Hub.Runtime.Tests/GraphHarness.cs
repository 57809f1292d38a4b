using Hub.IR;

namespace Hub.Runtime.Tests;

/// <summary>Writes graphs to temporary IR folders, compiles them and hands out requests; disposes all of it.</summary>
internal sealed class GraphHarness : IDisposable
{
    private readonly List<string> _dirs = new();
    private readonly List<IDisposable> _owned = new();

    /// <summary>Compiles <paramref name="b"/> with <paramref name="options"/> and returns a fresh request.</summary>
    public InferRequest Compile(GraphBuilder b, RuntimeOptions options)
    {
        var dir = Path.Combine(Path.GetTempPath(), "hub-rt-graph-" + Guid.NewGuid().ToString("N"));
        _dirs.Add(dir);
        IrFormat.Write(dir, b.Build());
        var ir = IrModel.Load(dir); _owned.Add(ir);
        var cm = CompiledModel.Compile(ir, options); _owned.Add(cm);
        var req = cm.CreateInferRequest(); _owned.Add(req);
        return req;
    }

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        foreach (var d in _dirs) try { Directory.Delete(d, true); } catch (IOException) { }
    }
}
