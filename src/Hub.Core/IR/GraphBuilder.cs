using System.Text.Json;
using System.Text.Json.Nodes;
using Hub.Weights;

namespace Hub.IR;

/// <summary>How a weight is used; decides which ones weight compression may touch.</summary>
public enum WeightKind
{
    /// <summary>A Linear weight [N, K]: compressible to f16/bf16/int8/int4.</summary>
    Matrix,
    /// <summary>An embedding table [V, D]: compressible to f16/bf16/int8 (kept in higher precision by default).</summary>
    Embedding,
    /// <summary>Norm weights, biases, small vectors: always float32.</summary>
    Vector,
}

/// <summary>A weight declared by a graph builder and produced lazily at export.</summary>
public sealed record PendingWeight(string Name, LazyTensor Tensor, WeightKind Kind);

/// <summary>A graph plus the weights it needs, ready to be written as IR.</summary>
public sealed record ModelExport(Graph Graph, IReadOnlyList<PendingWeight> Weights);

/// <summary>
/// Straight-line construction of IR graphs: every call appends one node and returns its output name,
/// so builders read like the reference forward pass and every intermediate has a stable, dumpable name.
/// </summary>
public sealed class GraphBuilder
{
    private readonly Graph _graph;
    private readonly List<PendingWeight> _weights = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>Starts a graph for HF <paramref name="modelType"/>.</summary>
    public GraphBuilder(string modelType) => _graph = new Graph { ModelType = modelType };

    /// <summary>The graph's metadata object (export options, source, ...).</summary>
    public JsonObject Metadata => _graph.Metadata;

    /// <summary>Declares a graph input and returns its name.</summary>
    public string Input(string name, DType dtype, params Dim[] shape)
    {
        Claim(name);
        _graph.Inputs.Add(new ValueInfo(name, dtype, shape));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as a graph output.</summary>
    public void Output(string value, DType dtype, params Dim[] shape) => _graph.Outputs.Add(new ValueInfo(value, dtype, shape));

    /// <summary>Declares a state (KV cache buffer) and returns its name.</summary>
    public string State(string name, DType dtype, params Dim[] shape)
    {
        _graph.States.Add(new StateInfo(name, dtype, shape));
        return name;
    }

    /// <summary>Declares a weight produced from <paramref name="tensor"/> and returns its IR name.</summary>
    public string Weight(string name, LazyTensor tensor, WeightKind kind)
    {
        Claim(name);
        _weights.Add(new PendingWeight(name, tensor, kind));
        return name;
    }

    /// <summary>Appends a node with one output named <paramref name="name"/>.</summary>
    /// <param name="op">Op from <see cref="Ops"/>.</param>
    /// <param name="name">Node and output name.</param>
    /// <param name="inputs">Input value names (null or "" for an absent optional input).</param>
    /// <param name="attrs">An anonymous object or dictionary of attributes (snake_case names).</param>
    public string Op(string op, string name, string?[] inputs, object? attrs = null) => OpMulti(op, name, inputs, 1, attrs)[0];

    /// <summary>Appends a node with <paramref name="outputs"/> outputs named <c>name:0</c>, <c>name:1</c>, ...</summary>
    public string[] OpMulti(string op, string name, string?[] inputs, int outputs, object? attrs = null)
    {
        if (!Ops.All.Contains(op)) throw new ArgumentException($"unknown op '{op}'", nameof(op));
        var outs = outputs == 1 ? new[] { name } : Enumerable.Range(0, outputs).Select(i => $"{name}:{i}").ToArray();
        foreach (var o in outs) Claim(o);
        _graph.Nodes.Add(new Node
        {
            Name = name,
            Op = op,
            Inputs = inputs.Select(i => i ?? "").ToArray(),
            Outputs = outs,
            Attributes = attrs is null ? new JsonObject() : attrs as JsonObject ?? (JsonObject)JsonSerializer.SerializeToNode(attrs)!,
        });
        return outs;
    }

    /// <summary>Finishes the graph and validates it.</summary>
    public ModelExport Build()
    {
        foreach (var w in _weights)
            _graph.Weights.Add(new WeightInfo(w.Name, w.Tensor.SourceDType, w.Tensor.Shape, 0, 0));
        _graph.Validate();
        _graph.Weights.Clear(); // offsets are assigned by the writer
        return new ModelExport(_graph, _weights.ToArray());
    }

    private void Claim(string name)
    {
        if (!_names.Add(name)) throw new ArgumentException($"name '{name}' is already used in the graph", nameof(name));
    }
}
