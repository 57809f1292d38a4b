// Tensors that cannot be a view of a mapped file (strided torch storages, deflated zip entries, merged model-parallel
// pieces) are copied once into native memory and kept until the source is disposed, because a TensorView must stay
// valid for as long as its source lives.
using System.Runtime.InteropServices;

namespace Hub.Converters;

/// <summary>Views materialized into native memory once per tensor name, freed together on <see cref="Dispose"/>.</summary>
internal sealed unsafe class NativeTensorCache : IDisposable
{
    private readonly Dictionary<string, TensorView> _views = new(StringComparer.Ordinal);
    private readonly List<nint> _blocks = new();
    private bool _disposed;

    /// <summary>True once disposed: the owning source is closed and its views are gone.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>The lock guarding the cache; sources also take it around their own per-tensor state.</summary>
    public object Sync { get; } = new();

    /// <summary>
    /// The view of <paramref name="name"/>, materialized on first use: <paramref name="fill"/> writes the tensor's
    /// <paramref name="bytes"/> bytes at the address it is given. The caller holds <see cref="Sync"/>.
    /// </summary>
    public TensorView GetOrAdd(string name, DType dtype, Shape shape, long bytes, Action<nint> fill)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_views.TryGetValue(name, out var cached)) return cached;
        var p = (nint)NativeMemory.Alloc((nuint)Math.Max(bytes, 1));
        _blocks.Add(p);
        fill(p);
        var v = new TensorView(dtype, shape, p, bytes);
        _views[name] = v;
        return v;
    }

    /// <summary>Frees every materialized tensor (once); returns false when it was already disposed.</summary>
    public bool TryDispose()
    {
        lock (Sync)
        {
            if (_disposed) return false;
            _disposed = true;
            foreach (var p in _blocks) NativeMemory.Free((void*)p);
            _blocks.Clear();
            _views.Clear();
            return true;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => TryDispose();
}
