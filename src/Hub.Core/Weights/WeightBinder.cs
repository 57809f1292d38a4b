namespace Hub.Weights;

/// <summary>
/// Binds checkpoint tensors by scoped names, as candle's VarBuilder does: <c>w.Scope("model").Scope("layers.0")
/// .Get("self_attn.q_proj.weight", 64, 64)</c> checks the shape and names the full path in any error.
/// </summary>
public sealed class WeightBinder
{
    private readonly string _prefix;

    /// <summary>The underlying checkpoint.</summary>
    public ITensorSource Source { get; }

    /// <summary>Creates a binder at the root of <paramref name="source"/>.</summary>
    public WeightBinder(ITensorSource source, string prefix = "")
    {
        Source = source;
        _prefix = prefix;
    }

    /// <summary>A binder whose names are prefixed with <c>prefix.</c>.</summary>
    public WeightBinder Scope(string prefix) => new(Source, Full(prefix) + ".");

    /// <summary>The full name of <paramref name="name"/> in this scope.</summary>
    public string Full(string name) => _prefix.Length == 0 ? name : _prefix + name;

    /// <summary>True when the tensor exists.</summary>
    public bool Has(string name) => Source.TryGetInfo(Full(name), out _);

    /// <summary>A required tensor; <paramref name="shape"/> (when given) must match exactly.</summary>
    public LazyTensor Get(string name, params long[] shape)
    {
        var full = Full(name);
        if (!Source.TryGetInfo(full, out var info))
            throw new CheckpointFormatException(Source.Location, full, "required tensor is missing from the checkpoint" + Nearby(full));
        CheckShape(info, shape);
        return Source is ILazyTensorSource lazy ? lazy.GetLazy(info) : LazyTensor.FromSource(Source, info);
    }

    /// <summary>An optional tensor; null when absent.</summary>
    public LazyTensor? TryGet(string name, params long[] shape)
    {
        var full = Full(name);
        if (!Source.TryGetInfo(full, out var info)) return null;
        CheckShape(info, shape);
        return Source is ILazyTensorSource lazy ? lazy.GetLazy(info) : LazyTensor.FromSource(Source, info);
    }

    /// <summary>Metadata of a required tensor.</summary>
    public TensorInfo Info(string name)
    {
        var full = Full(name);
        return Source.TryGetInfo(full, out var info) ? info
            : throw new CheckpointFormatException(Source.Location, full, "required tensor is missing from the checkpoint" + Nearby(full));
    }

    private static void CheckShape(TensorInfo info, long[] shape)
    {
        if (shape.Length == 0) return;
        if (!info.Shape.ToArray().AsSpan().SequenceEqual(shape))
            throw new CheckpointFormatException(info.FilePath, info.Name,
                $"shape {info.Shape} does not match the configuration, which implies {new Shape(shape)}; check that config.json belongs to these weights");
    }

    private string Nearby(string full)
    {
        var dot = full.LastIndexOf('.');
        var stem = dot > 0 ? full[..dot] : full;
        var similar = Source.Names.Where(n => n.StartsWith(stem, StringComparison.Ordinal)).Take(4).ToList();
        if (similar.Count == 0)
        {
            var sample = Source.Names.Take(3).ToList();
            return sample.Count == 0 ? " (the checkpoint is empty)" : $" (the checkpoint has e.g. {string.Join(", ", sample)})";
        }
        return $" (found {string.Join(", ", similar)})";
    }
}
