namespace Hub.Weights;

/// <summary>Metadata of one tensor in a checkpoint.</summary>
/// <param name="Name">The checkpoint's own name for it.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Shape">Stored shape.</param>
/// <param name="FilePath">The file (or shard) holding it, for error messages.</param>
public sealed record TensorInfo(string Name, DType DType, Shape Shape, string FilePath);

/// <summary>
/// A checkpoint as a set of named tensors (safetensors, torch zip, sharded indexes, llama2.c, ...).
/// Implementations are lazy: opening a tensor maps or reads only that tensor.
/// </summary>
public interface ITensorSource : IDisposable
{
    /// <summary>Human-readable location (folder or file) for error messages.</summary>
    string Location { get; }

    /// <summary>All tensor names.</summary>
    IReadOnlyCollection<string> Names { get; }

    /// <summary>Metadata of a tensor; false when absent.</summary>
    bool TryGetInfo(string name, out TensorInfo info);

    /// <summary>
    /// The tensor's bytes as stored (little-endian, row-major, contiguous). Zero-copy where the format allows;
    /// the view is valid until the source is disposed. Throws <see cref="CheckpointFormatException"/> when corrupt.
    /// </summary>
    TensorView Open(string name);
}

/// <summary>
/// A tensor source whose tensors are computed (merged model-parallel shards, renamed or reshaped originals): the
/// binder asks it for a <see cref="LazyTensor"/> instead of a stored view, so nothing is materialized early.
/// </summary>
public interface ILazyTensorSource : ITensorSource
{
    /// <summary>The lazy tensor for <paramref name="info"/>.</summary>
    LazyTensor GetLazy(TensorInfo info);
}
