using System.Runtime.InteropServices;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>
/// A <c>torch.save</c> zip checkpoint (<c>pytorch_model.bin</c>, <c>consolidated.00.pth</c>) read without executing
/// anything: <c>data.pkl</c> is interpreted by a restricted unpickler, and contiguous tensors are zero-copy views of the
/// (uncompressed, mapped) storage members. Tensors sharing a storage (GPT-2's tied <c>lm_head.weight</c>) view the same
/// bytes. Non-tensor values (step counters, strings) are skipped; a FlagAI-style <c>{"module": {...}}</c> wrapper is
/// unwrapped.
/// </summary>
public sealed unsafe class TorchCheckpoint : ITensorSource
{
    private readonly MappedFile _file;
    private readonly Dictionary<string, ZipEntry> _zip;
    private readonly string _prefix;
    private readonly Dictionary<string, (TensorInfo Info, TorchTensorRef Ref)> _tensors;
    private readonly List<string> _names;
    private readonly NativeTensorCache _materialized = new();
    private readonly Dictionary<string, byte[]> _inflated = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public string Location => _file.Path;

    /// <inheritdoc/>
    public IReadOnlyCollection<string> Names => _names;

    /// <summary>The archive's folder prefix (derived from the file name at save time; informative only).</summary>
    public string ArchivePrefix => _prefix;

    private TorchCheckpoint(MappedFile file, Dictionary<string, ZipEntry> zip, string prefix,
        Dictionary<string, (TensorInfo, TorchTensorRef)> tensors, List<string> names)
    {
        _file = file; _zip = zip; _prefix = prefix; _tensors = tensors; _names = names;
    }

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="UnsafePickleException"/> for a pickle naming
    /// anything beyond tensor-rebuild globals, <see cref="CheckpointFormatException"/> when corrupt.</summary>
    public static TorchCheckpoint Open(string path)
    {
        var file = new MappedFile(path);
        try
        {
            return Load(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static TorchCheckpoint Load(MappedFile file)
    {
        string path = file.Path;
        if (file.Length >= 2 && file.Span(0, 1)[0] == 0x80)
            throw new CheckpointFormatException(path, null, "this is a legacy (pre-1.6, non-zip) torch serialization, which is not supported; re-save it with a current torch.save or convert it to safetensors");
        if (file.Length < 4 || !file.Span(0, 4).SequenceEqual("PK\u0003\u0004"u8))
            throw new CheckpointFormatException(path, null, "not a torch.save zip archive (no zip signature); the file is corrupt or of another format");
        Dictionary<string, ZipEntry> zip;
        try { zip = ZipIndex.Read(file); }
        catch (Exception e) when (e is ArgumentOutOfRangeException or OverflowException or InvalidDataException)
        {
            throw new CheckpointFormatException(path, null, $"zip structure is corrupt ({e.Message}); the file is truncated or damaged (re-download it)", e);
        }

        // data.pkl sits in one top-level folder whose name torch derives from the file name: find it, do not assume it.
        var pkls = zip.Keys.Where(k => k == "data.pkl" || (k.EndsWith("/data.pkl", StringComparison.Ordinal) && k.IndexOf('/') == k.Length - "/data.pkl".Length)).ToList();
        if (pkls.Count == 0)
            throw new CheckpointFormatException(path, null, $"zip archive has no <folder>/data.pkl (members: {string.Join(", ", zip.Keys.Take(5))}); it is not a torch.save checkpoint");
        if (pkls.Count > 1)
            throw new CheckpointFormatException(path, null, $"zip archive has several data.pkl members ({string.Join(", ", pkls)}); expected exactly one");
        string prefix = pkls[0][..^"data.pkl".Length];

        if (zip.TryGetValue(prefix + "byteorder", out var bo))
        {
            var order = System.Text.Encoding.ASCII.GetString(ZipIndex.ReadAll(file, bo)).Trim();
            if (order != "little")
                throw new CheckpointFormatException(path, null, $"storages are stored {order}-endian; only little-endian checkpoints are supported (re-save on a little-endian machine)");
        }

        var root = RestrictedUnpickler.Load(ZipIndex.ReadAll(file, zip[pkls[0]]), path);
        var dict = Unwrap(root) ?? throw new CheckpointFormatException(path, null,
            $"the pickled object is a {Describe(root)}, not a state dict (a dict of tensors)");

        var tensors = new Dictionary<string, (TensorInfo, TorchTensorRef)>(StringComparer.Ordinal);
        var names = new List<string>();
        foreach (var (k, v) in dict.Items)
        {
            if (k is not string name || v is not TorchTensorRef t) continue; // legacy extras: ints, strings, nested dicts
            Validate(file, zip, prefix, name, t);
            tensors[name] = (new TensorInfo(name, t.Storage.DType, new Shape(t.Size), path), t);
            names.Add(name);
        }
        return new TorchCheckpoint(file, zip, prefix, tensors, names);
    }

    private static PickleDict? Unwrap(object? root)
    {
        if (root is not PickleDict d) return null;
        bool hasTensors = d.Items.Any(kv => kv.Value is TorchTensorRef);
        if (!hasTensors)
        {
            foreach (var wrapper in new[] { "module", "state_dict", "model" })
            {
                var inner = d.Items.FirstOrDefault(kv => kv.Key is string s && s == wrapper).Value as PickleDict;
                if (inner is not null && inner.Items.Any(kv => kv.Value is TorchTensorRef)) return inner;
            }
        }
        return d;
    }

    private static string Describe(object? o) => o switch
    {
        null => "None",
        TorchTensorRef => "single tensor",
        List<object?> => "list",
        object?[] => "tuple",
        _ => o.GetType().Name,
    };

    private static void Validate(MappedFile file, Dictionary<string, ZipEntry> zip, string prefix, string name, TorchTensorRef t)
    {
        string path = file.Path;
        var st = t.Storage;
        if (!zip.TryGetValue(prefix + "data/" + st.Key, out var e))
            throw new CheckpointFormatException(path, name, $"its storage '{prefix}data/{st.Key}' is missing from the archive; the file is truncated or corrupt");
        int es = st.DType.SizeOf();
        if (e.UncompressedSize < checked(st.Numel * es))
            throw new CheckpointFormatException(path, name, $"storage '{st.Key}' holds {e.UncompressedSize} bytes but declares {st.Numel} × {st.StorageClass}");
        if (t.Size.Length != t.Stride.Length)
            throw new CheckpointFormatException(path, name, $"size has {t.Size.Length} dims but stride {t.Stride.Length}");
        if (t.Offset < 0 || t.Size.Any(s => s < 0) || t.Stride.Any(s => s < 0))
            throw new CheckpointFormatException(path, name, "negative offset, size or stride");
        long count = 1;
        long last = t.Offset;
        try
        {
            for (int i = 0; i < t.Size.Length; i++)
            {
                count = checked(count * t.Size[i]);
                if (t.Size[i] > 0) last = checked(last + (t.Size[i] - 1) * t.Stride[i]);
            }
        }
        catch (OverflowException)
        {
            throw new CheckpointFormatException(path, name, "size/stride overflow");
        }
        if (count > 0 && last >= st.Numel)
            throw new CheckpointFormatException(path, name, $"reaches element {last} of storage '{st.Key}', which has {st.Numel}; the checkpoint is corrupt");
    }

    /// <inheritdoc/>
    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (_tensors.TryGetValue(name, out var t)) { info = t.Info; return true; }
        info = null!;
        return false;
    }

    /// <summary>The tensor: a zero-copy view when it is contiguous and stored uncompressed, otherwise a copy kept until
    /// <see cref="Dispose"/>.</summary>
    public TensorView OpenTensor(string name)
    {
        if (!_tensors.TryGetValue(name, out var t))
            throw new CheckpointFormatException(_file.Path, name, "no such tensor in this checkpoint");
        ObjectDisposedException.ThrowIf(_materialized.IsDisposed, this);
        var (info, r) = t;
        var entry = _zip[_prefix + "data/" + r.Storage.Key];
        int es = r.Storage.DType.SizeOf();
        long bytes = info.Shape.ElementCount * es;
        if (entry.Method == 0 && IsContiguous(r))
            return new TensorView(info.DType, info.Shape, (nint)(_file.Pointer + entry.DataOffset + r.Offset * es), bytes);

        lock (_materialized.Sync)
        {
            return _materialized.GetOrAdd(name, info.DType, info.Shape, bytes, dst =>
            {
                if (entry.Method == 0) { Gather(r, _file.Pointer + entry.DataOffset, (byte*)dst, es); return; }
                if (!_inflated.TryGetValue(entry.Name, out var buf)) _inflated[entry.Name] = buf = ZipIndex.ReadAll(_file, entry);
                fixed (byte* storage = buf) Gather(r, storage, (byte*)dst, es);
            });
        }
    }

    private static bool IsContiguous(TorchTensorRef r)
    {
        long expect = 1;
        for (int i = r.Size.Length - 1; i >= 0; i--)
        {
            if (r.Size[i] != 1 && r.Stride[i] != expect) return r.Size.Contains(0);
            expect *= r.Size[i];
        }
        return true;
    }

    /// <summary>Copies a strided window into row-major order.</summary>
    private static void Gather(TorchTensorRef r, byte* storage, byte* dst, int es)
    {
        int rank = r.Size.Length;
        long count = 1;
        foreach (var s in r.Size) count *= s;
        if (count == 0) return;
        var idx = new long[rank];
        for (long n = 0; n < count; n++)
        {
            long off = r.Offset;
            for (int i = 0; i < rank; i++) off += idx[i] * r.Stride[i];
            Buffer.MemoryCopy(storage + off * es, dst + n * es, es, es);
            for (int i = rank - 1; i >= 0; i--)
            {
                if (++idx[i] < r.Size[i]) break;
                idx[i] = 0;
            }
        }
    }

    TensorView ITensorSource.Open(string name) => OpenTensor(name);

    /// <inheritdoc/>
    public void Dispose()
    {
        if (!_materialized.TryDispose()) return;
        lock (_materialized.Sync) _inflated.Clear();
        _file.Dispose();
    }
}
