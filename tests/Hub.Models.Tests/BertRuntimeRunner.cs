using Hub.IR;
using Hub.Runtime;
using Hub.Tests;

namespace Hub.Models.Tests;

/// <summary>Writes an export as IR, loads and compiles it on the CPU runtime, and runs golden inputs through it.</summary>
public sealed class CompiledBert : IDisposable
{
    private readonly string _dir;
    private readonly IrModel _ir;
    private readonly CompiledModel _compiled;
    private readonly InferRequest _request;

    public CompiledBert(ModelExport export)
    {
        _dir = SharedDir.TempDir("bert-ir");
        IrFormat.Write(_dir, export);
        _ir = IrModel.Load(_dir);
        _compiled = CompiledModel.Compile(_ir, new RuntimeOptions { Threads = 2 });
        _request = _compiled.CreateInferRequest();
    }

    public Dictionary<string, BertTensor> Run(IReadOnlyDictionary<string, BertTensor> inputs)
    {
        foreach (var info in _ir.Graph.Inputs)
        {
            var t = inputs[info.Name];
            if (info.DType == DType.I32) _request.SetInput(info.Name, Array.ConvertAll(t.Data, x => (int)x), t.Shape);
            else _request.SetInput(info.Name, t.Data, t.Shape);
        }
        _request.Infer();
        return _ir.Graph.Outputs.ToDictionary(o => o.Name, o => new BertTensor(_request.GetOutput(o.Name).ToArray(), _request.GetOutputShape(o.Name)));
    }

    public void Dispose()
    {
        _request.Dispose();
        _compiled.Dispose();
        _ir.Dispose();
        Directory.Delete(_dir, true);
    }
}
