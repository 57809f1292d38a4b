using System.Runtime.InteropServices;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>
/// A tensor source presenting an original checkpoint under Hugging Face names. Each tensor is either a stored view
/// (renamed, or a slice of a mapped file) or a concatenation of model-parallel pieces computed on demand: through
/// <see cref="ILazyTensorSource.GetLazy"/> the merge happens only when the converter asks for that tensor and is not
/// kept, while <see cref="Open"/> keeps the merged bytes until <see cref="Dispose"/> (views must stay valid).
/// </summary>
public sealed unsafe class RenamedTensorSource : ILazyTensorSource
{
    private sealed record Entry(TensorInfo Info, Func<TensorView>? View, Action<Action<long, ReadOnlySpan<byte>>>? Merge, string Origin);

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly List<string> _names = new();
    private readonly List<IDisposable> _owned = new();
    private readonly NativeTensorCache _materialized = new();

    /// <inheritdoc/>
    public string Location { get; }

    /// <inheritdoc/>
    public IReadOnlyCollection<string> Names => _names;

    /// <summary>Creates an empty source for <paramref name="location"/>.</summary>
    public RenamedTensorSource(string location) => Location = location;

    /// <summary>Disposes <paramref name="d"/> with this source (the underlying checkpoint files).</summary>
    public void Own(IDisposable d) => _owned.Add(d);

    /// <summary>Adds a stored tensor, opened through <paramref name="open"/>.</summary>
    public void AddView(string name, DType dtype, Shape shape, string filePath, string origin, Func<TensorView> open)
    {
        Add(new Entry(new TensorInfo(name, dtype, shape, filePath), open, null, origin));
    }

    /// <summary>Adds <paramref name="sourceName"/> of <paramref name="source"/> under <paramref name="name"/>.</summary>
    public void AddRenamed(string name, ITensorSource source, string sourceName)
    {
        if (!source.TryGetInfo(sourceName, out var info))
            throw new CheckpointFormatException(source.Location, sourceName, "required tensor is missing from the checkpoint");
        AddView(name, info.DType, info.Shape, info.FilePath, $"{info.FilePath}: {sourceName}", () => source.Open(sourceName));
    }

    /// <summary>Adds the concatenation of <paramref name="parts"/> along <paramref name="axis"/> (same dtype, same
    /// other dimensions), as model-parallel shards are merged; one part is a plain rename.</summary>
    public void AddConcat(string name, int axis, IReadOnlyList<(ITensorSource Source, string Name)> parts)
    {
        if (parts.Count == 1) { AddRenamed(name, parts[0].Source, parts[0].Name); return; }
        var infos = new List<TensorInfo>();
        foreach (var (s, n) in parts)
        {
            if (!s.TryGetInfo(n, out var i)) throw new CheckpointFormatException(s.Location, n, "required tensor is missing from this model-parallel shard");
            infos.Add(i);
        }
        var first = infos[0];
        var dims = first.Shape.ToArray();
        if (axis < 0 || axis >= dims.Length) throw new CheckpointFormatException(first.FilePath, first.Name, $"cannot merge shards along axis {axis} of shape {first.Shape}");
        long total = 0;
        foreach (var i in infos)
        {
            var d = i.Shape.ToArray();
            bool same = i.DType == first.DType && d.Length == dims.Length && Enumerable.Range(0, d.Length).All(k => k == axis || d[k] == dims[k]);
            if (!same)
                throw new CheckpointFormatException(i.FilePath, i.Name, $"{i.DType} {i.Shape} cannot be merged with {first.FilePath}'s {first.DType} {first.Shape} along axis {axis}; the shards come from different checkpoints");
            total += d[axis];
        }
        dims[axis] = total;
        var shape = new Shape(dims);
        string origin = $"concat(axis {axis}: {string.Join(", ", infos.Select(i => $"{Path.GetFileName(i.FilePath)}:{i.Name}"))})";
        int es = first.DType.SizeOf();
        long outer = 1;
        for (int k = 0; k < axis; k++) outer *= dims[k];
        long innerPer = 1;
        for (int k = axis + 1; k < dims.Length; k++) innerPer *= dims[k];
        // Visits the merged tensor as a sequence of contiguous byte chunks (one per part per outer index), so the
        // merge writes straight into its destination (native bytes for Open, float32 for GetLazy) without a staging copy.
        void Merge(Action<long, ReadOnlySpan<byte>> sink)
        {
            long at = 0;
            var views = parts.Select(p => p.Source.Open(p.Name)).ToArray();
            var chunk = infos.Select(i => i.Shape[axis] * innerPer * es).ToArray();
            for (long o = 0; o < outer; o++)
                for (int p = 0; p < views.Length; p++)
                {
                    sink(at, new ReadOnlySpan<byte>((byte*)views[p].Pointer + o * chunk[p], checked((int)chunk[p])));
                    at += chunk[p];
                }
        }
        Add(new Entry(new TensorInfo(name, first.DType, shape, first.FilePath), null, Merge, origin));
    }

    private void Add(Entry e)
    {
        if (_entries.ContainsKey(e.Info.Name)) throw new InvalidOperationException($"{Location}: '{e.Info.Name}' added twice");
        _entries[e.Info.Name] = e;
        _names.Add(e.Info.Name);
    }

    /// <inheritdoc/>
    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (_entries.TryGetValue(name, out var e)) { info = e.Info; return true; }
        info = null!;
        return false;
    }

    /// <inheritdoc/>
    public TensorView Open(string name)
    {
        if (!_entries.TryGetValue(name, out var e)) throw new CheckpointFormatException(Location, name, "no such tensor");
        ObjectDisposedException.ThrowIf(_materialized.IsDisposed, this);
        if (e.View is not null) return e.View();
        lock (_materialized.Sync)
        {
            long bytes = e.Info.Shape.ElementCount * e.Info.DType.SizeOf();
            return _materialized.GetOrAdd(name, e.Info.DType, e.Info.Shape, bytes,
                p => e.Merge!((at, chunk) => chunk.CopyTo(new Span<byte>((byte*)p + at, chunk.Length))));
        }
    }

    /// <inheritdoc/>
    public LazyTensor GetLazy(TensorInfo info)
    {
        if (!_entries.TryGetValue(info.Name, out var e)) throw new CheckpointFormatException(Location, info.Name, "no such tensor");
        if (e.View is not null) return LazyTensor.FromSource(this, e.Info);
        var merge = e.Merge!;
        var dtype = e.Info.DType;
        int es = dtype.SizeOf();
        return LazyTensor.FromFunc(e.Info.Shape, dtype, e.Origin, () =>
        {
            var f = new float[e.Info.Shape.ElementCount];
            merge((at, chunk) => DTypeConvert.ToFloat32(chunk, dtype, f.AsSpan(checked((int)(at / es)), chunk.Length / es)));
            return f;
        });
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (!_materialized.TryDispose()) return;
        foreach (var d in _owned) d.Dispose();
    }
}
