using System.Text.Json;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>
/// A checkpoint split over several files by an index (<c>model.safetensors.index.json</c> or
/// <c>pytorch_model.bin.index.json</c>, as transformers' <c>save_pretrained</c> writes them): names come from the
/// index's <c>weight_map</c>, and each shard is opened only when one of its tensors is first asked for.
/// </summary>
public sealed class ShardedCheckpoint : ITensorSource
{
    private readonly string _indexPath;
    private readonly string _dir;
    private readonly Dictionary<string, string> _map;
    private readonly List<string> _names;
    private readonly Dictionary<string, ITensorSource> _open = new(StringComparer.Ordinal);
    private readonly object _lock = new();
    private bool _disposed;

    /// <inheritdoc/>
    public string Location => _indexPath;

    /// <inheritdoc/>
    public IReadOnlyCollection<string> Names => _names;

    /// <summary>The shard files named by the index (relative to its folder), in first-use order of the index.</summary>
    public IReadOnlyList<string> ShardFiles { get; }

    /// <summary>The index's <c>metadata</c> object (e.g. <c>total_size</c>), or null.</summary>
    public JsonElement? IndexMetadata { get; }

    private ShardedCheckpoint(string indexPath, Dictionary<string, string> map, JsonElement? meta)
    {
        _indexPath = indexPath;
        _dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        _map = map;
        _names = map.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        ShardFiles = map.Values.Distinct(StringComparer.Ordinal).ToList();
        IndexMetadata = meta;
    }

    /// <summary>Reads the index at <paramref name="indexPath"/>; checks that every shard file exists (without opening it).</summary>
    public static ShardedCheckpoint Open(string indexPath)
    {
        if (!File.Exists(indexPath)) throw new ModelFileNotFoundException(indexPath, "the shard index does not exist");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(indexPath)); }
        catch (JsonException e) { throw new CheckpointFormatException(indexPath, null, $"index is not valid JSON ({e.Message})", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, null, "index lacks a 'weight_map' object (tensor name → shard file)");
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(indexPath, p.Name, "weight_map value must be a shard file name");
                var shard = p.Value.GetString()!;
                if (shard.Length == 0 || Path.IsPathRooted(shard) || shard.Split('/', '\\').Contains(".."))
                    throw new CheckpointFormatException(indexPath, p.Name, $"shard '{shard}' must be a file name inside the model folder");
                map[p.Name] = shard;
            }
            JsonElement? meta = doc.RootElement.TryGetProperty("metadata", out var m) ? m.Clone() : null;
            var sc = new ShardedCheckpoint(indexPath, map, meta);
            foreach (var shard in sc.ShardFiles)
            {
                var full = Path.Combine(sc._dir, shard);
                if (!File.Exists(full))
                {
                    var example = map.First(kv => kv.Value == shard).Key;
                    throw new CheckpointFormatException(indexPath, example,
                        $"shard '{shard}' listed in the index is missing from {sc._dir}; download it again (e.g. huggingface-cli download with the same revision)");
                }
            }
            return sc;
        }
    }

    private ITensorSource Shard(string shard)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_open.TryGetValue(shard, out var s)) return s;
            var full = Path.Combine(_dir, shard);
            if (!File.Exists(full))
                throw new CheckpointFormatException(_indexPath, null, $"shard '{shard}' listed in the index is missing from {_dir}");
            s = shard.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? SafetensorsFile.Open(full) : TorchCheckpoint.Open(full);
            _open[shard] = s;
            return s;
        }
    }

    /// <inheritdoc/>
    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (!_map.TryGetValue(name, out var shard)) { info = null!; return false; }
        var s = Shard(shard);
        if (!s.TryGetInfo(name, out info))
            throw new CheckpointFormatException(_indexPath, name,
                $"the index places it in shard '{shard}', but that shard has no such tensor; the index and shards come from different saves (re-download both)");
        return true;
    }

    /// <summary>The tensor from its shard (zero-copy where the shard's format allows).</summary>
    public TensorView OpenTensor(string name)
    {
        if (!_map.TryGetValue(name, out var shard))
            throw new CheckpointFormatException(_indexPath, name, "not listed in the index's weight_map");
        var s = Shard(shard);
        if (!s.TryGetInfo(name, out _))
            throw new CheckpointFormatException(_indexPath, name,
                $"the index places it in shard '{shard}', but that shard has no such tensor; the index and shards come from different saves (re-download both)");
        return s.Open(name);
    }

    TensorView ITensorSource.Open(string name) => OpenTensor(name);

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var s in _open.Values) s.Dispose();
            _open.Clear();
        }
    }
}
