using System.Text;
using System.Text.Json;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>
/// A memory-mapped <c>.safetensors</c> file whose tensors are zero-copy views. The header is validated as strictly as
/// the reference Rust crate does, so a file that loads here also loads in transformers and vice versa.
/// </summary>
/// <remarks>
/// Rules (from huggingface/safetensors <c>tensor.rs</c>): 8-byte little-endian header length N, N ≤ 100,000,000
/// (the crate's <c>MAX_HEADER_SIZE</c>, so a hostile length cannot make us allocate gigabytes), a UTF-8 JSON object
/// header, every tensor's <c>data_offsets</c> <c>[begin, end)</c> relative to the data area; sorted by offset the
/// tensors must be contiguous (no overlap, no hole), begin at 0 and end exactly at the end of the file; each byte
/// length must equal dtype size × product of the shape.
/// </remarks>
public sealed unsafe class SafetensorsFile : ITensorSource
{
    /// <summary>Largest header accepted (the Rust crate's <c>MAX_HEADER_SIZE</c>).</summary>
    public const long MaxHeaderSize = 100_000_000;

    private readonly MappedFile _file;
    private readonly Dictionary<string, Entry> _entries;
    private readonly List<string> _names;
    private readonly long _dataStart;

    private readonly record struct Entry(TensorInfo Info, long Begin, long End);

    /// <inheritdoc/>
    public string Location => _file.Path;

    /// <inheritdoc/>
    public IReadOnlyCollection<string> Names => _names;

    /// <summary>The free-form <c>__metadata__</c> map (empty when the header has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(MappedFile file, Dictionary<string, Entry> entries, List<string> names, long dataStart, Dictionary<string, string> metadata)
    {
        _file = file; _entries = entries; _names = names; _dataStart = dataStart; Metadata = metadata;
    }

    /// <summary>Maps and validates <paramref name="path"/>; throws <see cref="CheckpointFormatException"/> when it is not a valid safetensors file.</summary>
    public static SafetensorsFile Open(string path)
    {
        var file = new MappedFile(path);
        try
        {
            var (entries, names, dataStart, meta) = Parse(file);
            return new SafetensorsFile(file, entries, names, dataStart, meta);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, Entry>, List<string>, long, Dictionary<string, string>) Parse(MappedFile file)
    {
        string path = file.Path;
        if (file.Length < 8)
            throw new CheckpointFormatException(path, null, $"file is {file.Length} bytes, shorter than the 8-byte header length; the file is truncated or not safetensors (re-download it)");
        ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(file.Span(0, 8));
        if (n > MaxHeaderSize)
            throw new CheckpointFormatException(path, null, $"header length {n} exceeds the {MaxHeaderSize}-byte limit of the safetensors format (MAX_HEADER_SIZE); the file is corrupt or not safetensors");
        if ((long)n > file.Length - 8)
            throw new CheckpointFormatException(path, null, $"header length {n} runs past the end of the file ({file.Length} bytes); the file is truncated (re-download it)");
        long dataStart = 8 + (long)n;
        long dataLen = file.Length - dataStart;

        JsonDocument doc;
        try
        {
            var headerBytes = file.Span(8, (long)n);
            var text = new UTF8Encoding(false, true).GetString(headerBytes);
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (Exception e) when (e is JsonException or DecoderFallbackException or ArgumentException)
        {
            throw new CheckpointFormatException(path, null, $"header is not valid UTF-8 JSON ({e.Message}); the file is corrupt or not safetensors", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(path, null, $"header must be a JSON object, found {doc.RootElement.ValueKind}");
            var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
            var meta = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointFormatException(path, null, "__metadata__ must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new CheckpointFormatException(path, null, $"__metadata__ entry '{m.Name}' must be a string, found {m.Value.ValueKind}");
                        meta[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                if (entries.ContainsKey(prop.Name))
                    throw new CheckpointFormatException(path, prop.Name, "appears twice in the header");
                entries[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLen);
            }

            // Contiguity, as the Rust crate checks: sorted by offsets, each tensor starts where the previous ended.
            var sorted = entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
            long cursor = 0;
            string? prev = null;
            foreach (var e in sorted)
            {
                if (e.Begin < cursor)
                    throw new CheckpointFormatException(path, e.Info.Name, $"data_offsets [{e.Begin}, {e.End}) overlap tensor '{prev}' (which ends at {cursor}); the header is corrupt");
                if (e.Begin > cursor)
                    throw new CheckpointFormatException(path, e.Info.Name, $"data_offsets [{e.Begin}, {e.End}) leave a hole of {e.Begin - cursor} bytes after {(prev is null ? "the header" : $"tensor '{prev}'")}; " +
                        "safetensors requires the tensors to be contiguous and cover the whole data area");
                cursor = e.End;
                prev = e.Info.Name;
            }
            if (cursor != dataLen)
                throw new CheckpointFormatException(path, null, cursor < dataLen
                    ? $"the tensors cover {cursor} of the {dataLen} data bytes; safetensors requires them to cover the whole data area (trailing garbage or a corrupt header)"
                    : $"data area is {dataLen} bytes but the tensors need {cursor}; the file is truncated");

            var names = entries.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
            return (entries, names, dataStart, meta);
        }
    }

    private static Entry ParseEntry(string path, string name, JsonElement v, long dataLen)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(path, name, $"header entry must be an object with dtype, shape and data_offsets, found {v.ValueKind}");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new CheckpointFormatException(path, name, "header entry lacks a string 'dtype'");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException(path, name, "header entry lacks an array 'shape'");
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new CheckpointFormatException(path, name, "header entry lacks 'data_offsets' as [begin, end]");
        var dtName = dt.GetString()!;
        if (!DTypeInfo.TryParse(dtName, out var dtype))
            throw new CheckpointFormatException(path, name, $"unknown or unsupported dtype '{dtName}' (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
        var dims = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var x) || x < 0)
                throw new CheckpointFormatException(path, name, $"shape {sh.GetRawText()} must hold non-negative integers");
            dims[i++] = x;
        }
        long[] o = new long[2];
        i = 0;
        foreach (var d in off.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var x) || x < 0)
                throw new CheckpointFormatException(path, name, $"data_offsets {off.GetRawText()} must be two non-negative integers");
            o[i++] = x;
        }
        if (o[1] < o[0])
            throw new CheckpointFormatException(path, name, $"data_offsets [{o[0]}, {o[1]}) end before they begin");
        if (o[1] > dataLen)
            throw new CheckpointFormatException(path, name, $"data_offsets [{o[0]}, {o[1]}) run past the data area ({dataLen} bytes); the file is truncated or the header corrupt");
        long expected;
        try
        {
            long count = 1;
            foreach (var d in dims) count = checked(count * d);
            expected = checked(count * dtype.SizeOf());
        }
        catch (OverflowException)
        {
            throw new CheckpointFormatException(path, name, $"shape {sh.GetRawText()} overflows");
        }
        if (o[1] - o[0] != expected)
            throw new CheckpointFormatException(path, name, $"holds {o[1] - o[0]} bytes but {dtName} {new Shape(dims)} needs {expected}; the header is inconsistent");
        return new Entry(new TensorInfo(name, dtype, new Shape(dims), path), o[0], o[1]);
    }

    /// <inheritdoc/>
    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (_entries.TryGetValue(name, out var e)) { info = e.Info; return true; }
        info = null!;
        return false;
    }

    /// <summary>The tensor as a zero-copy view of the mapping (valid until <see cref="Dispose"/>).</summary>
    /// <remarks>Named apart from the static <see cref="Open(string)"/>; through <see cref="ITensorSource"/> it is <c>Open(name)</c>.</remarks>
    public TensorView OpenTensor(string name)
    {
        if (!_entries.TryGetValue(name, out var e))
            throw new CheckpointFormatException(_file.Path, name, "no such tensor in this file");
        if (_file.Pointer == null) throw new ObjectDisposedException(_file.Path);
        return new TensorView(e.Info.DType, e.Info.Shape, (nint)(_file.Pointer + _dataStart + e.Begin), e.End - e.Begin);
    }

    TensorView ITensorSource.Open(string name) => OpenTensor(name);

    /// <inheritdoc/>
    public void Dispose() => _file.Dispose();
}
