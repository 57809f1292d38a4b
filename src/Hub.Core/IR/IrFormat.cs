using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hub.Weights;

namespace Hub.IR;

/// <summary>Options for writing IR weights.</summary>
public sealed class IrWriteOptions
{
    /// <summary>
    /// Storage type for <see cref="WeightKind.Matrix"/> and <see cref="WeightKind.Embedding"/> weights:
    /// F32, F16, BF16, or null to keep each tensor's source dtype (f16/bf16 checkpoints stay half-size).
    /// Vectors are always F32.
    /// </summary>
    public DType? WeightDType { get; init; }

    /// <summary>
    /// Optional hook that encodes a weight itself (quantization): returns the stored tensors (the weight and its
    /// scales/zeros) or null to use the default path. Kept as a hook so Core stays free of quantization math.
    /// </summary>
    public Func<PendingWeight, float[], IReadOnlyList<EncodedWeight>?>? Encoder { get; init; }

    /// <summary>Reports (weights done, total).</summary>
    public IProgress<(int Done, int Total)>? Progress { get; init; }
}

/// <summary>A tensor produced by <see cref="IrWriteOptions.Encoder"/>.</summary>
public sealed record EncodedWeight(string Name, DType DType, Shape Shape, byte[] Data, Quantization? Quant);

/// <summary>
/// Reads and writes the IR folder: <c>model.ir.json</c> (graph, states, weights index) and <c>model.ir.bin</c>
/// (every weight 64-byte aligned, little-endian, SHA-256 checksummed).
/// </summary>
public static class IrFormat
{
    /// <summary>File name of the graph.</summary>
    public const string JsonFile = "model.ir.json";
    /// <summary>File name of the weights.</summary>
    public const string BinFile = "model.ir.bin";
    /// <summary>Alignment of every weight inside the bin.</summary>
    public const int Alignment = 64;
    /// <summary>
    /// Sub-folder of an IR folder where the runtime caches weights in its load-time layout (optimum-intel's name for
    /// OpenVINO's cache folder). Derived data: anything that fingerprints, copies or serves an IR folder skips it.
    /// </summary>
    public const string CacheFolder = "model_cache";
    private const string FormatTag = "hub-ir";

    /// <summary>
    /// Writes the IR of <paramref name="export"/> into <paramref name="dir"/>, streaming one weight at a time.
    /// Files are written under temporary names and renamed at the end: nothing half-written is left behind.
    /// </summary>
    public static Graph Write(string dir, ModelExport export, IrWriteOptions? options = null)
    {
        options ??= new IrWriteOptions();
        Directory.CreateDirectory(dir);
        var graph = export.Graph;
        var binPath = Path.Combine(dir, BinFile);
        var jsonPath = Path.Combine(dir, JsonFile);
        var tmpBin = binPath + $".tmp{Environment.ProcessId}";
        var tmpJson = jsonPath + $".tmp{Environment.ProcessId}";
        var index = new List<WeightInfo>();
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long offset = 0;
            using (var fs = new ChunkedFileWriter(tmpBin))   // the page cache then holds it in 2 MiB folios
            {
                int done = 0;
                var zeros = new byte[Alignment];
                foreach (var w in export.Weights)
                {
                    foreach (var enc in Encode(w, options))
                    {
                        var pad = (int)((Alignment - offset % Alignment) % Alignment);
                        if (pad > 0) { fs.Write(zeros, 0, pad); sha.AppendData(zeros, 0, pad); offset += pad; }
                        fs.Write(enc.Data);
                        sha.AppendData(enc.Data);
                        index.Add(new WeightInfo(enc.Name, enc.DType, enc.Shape, offset, enc.Data.LongLength, enc.Quant));
                        offset += enc.Data.LongLength;
                    }
                    options.Progress?.Report((++done, export.Weights.Count));
                }
                fs.Flush(true);
                // Tables only lookups read: out of the page cache again, so a lookup faults a small folio around its
                // row (the runtime advises MADV_NOHUGEPAGE there) instead of mapping a 2 MiB one the write left.
                var lookupOnly = LookupOnlyWeights(graph);
                foreach (var w in index)
                    if (lookupOnly.Contains(w.Name)) fs.DropFromPageCache(w.Offset, w.Length);
            }
            graph.Weights.Clear();
            graph.Weights.AddRange(index);
            var json = ToJson(graph, offset, Convert.ToHexStringLower(sha.GetHashAndReset()));
            File.WriteAllText(tmpJson, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(tmpBin, binPath, overwrite: true);
            File.Move(tmpJson, jsonPath, overwrite: true);
            return graph;
        }
        finally
        {
            TryDelete(tmpBin);
            TryDelete(tmpJson);
        }
    }

    // Weights whose every reader is an Embedding node's table input.
    private static HashSet<string> LookupOnlyWeights(Graph g)
    {
        var lookup = new HashSet<string>(StringComparer.Ordinal);
        var other = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in g.Nodes)
            for (int i = 0; i < n.Inputs.Count; i++)
                (n.Op == Ops.Embedding && i == 1 ? lookup : other).Add(n.Inputs[i]);
        lookup.ExceptWith(other);
        return lookup;
    }

    private static IEnumerable<EncodedWeight> Encode(PendingWeight w, IrWriteOptions options)
    {
        var t = w.Tensor;
        DType target = w.Kind == WeightKind.Vector ? DType.F32 : options.WeightDType ?? (t.SourceDType is DType.F16 or DType.BF16 ? t.SourceDType : DType.F32);
        if (options.Encoder is null && t.IsPassthrough && t.SourceDType == target)
        {
            var v = t.OpenView();
            if (v.Shape != t.Shape) throw new CheckpointFormatException(t.Origin, null, $"shape {v.Shape} differs from the declared {t.Shape}");
            return new[] { new EncodedWeight(w.Name, target, t.Shape, v.Bytes.ToArray(), null) };
        }
        var f32 = t.ToFloat32();
        if (options.Encoder?.Invoke(w, f32) is { } custom) return custom;
        var bytes = new byte[f32.LongLength * target.SizeOf()];
        DTypeConvert.FromFloat32(f32, target, bytes);
        return new[] { new EncodedWeight(w.Name, target, t.Shape, bytes, null) };
    }

    private static JsonObject ToJson(Graph g, long binSize, string sha256)
    {
        static JsonArray Dims(IEnumerable<Dim> dims) => new(dims.Select(d => d.IsSymbolic ? (JsonNode)JsonValue.Create(d.Symbol)! : JsonValue.Create(d.Value)).ToArray());
        static JsonObject Val(string name, DType dt, IEnumerable<Dim> shape) => new() { ["name"] = name, ["dtype"] = dt.ToSafetensorsName(), ["shape"] = Dims(shape) };
        return new JsonObject
        {
            ["format"] = FormatTag,
            ["version"] = Graph.CurrentVersion,
            ["model_type"] = g.ModelType,
            ["metadata"] = g.Metadata.DeepClone(),
            ["inputs"] = new JsonArray(g.Inputs.Select(i => (JsonNode)Val(i.Name, i.DType, i.Shape)).ToArray()),
            ["outputs"] = new JsonArray(g.Outputs.Select(i => (JsonNode)Val(i.Name, i.DType, i.Shape)).ToArray()),
            ["states"] = new JsonArray(g.States.Select(i => (JsonNode)Val(i.Name, i.DType, i.Shape)).ToArray()),
            ["nodes"] = new JsonArray(g.Nodes.Select(n => (JsonNode)new JsonObject
            {
                ["name"] = n.Name,
                ["op"] = n.Op,
                ["inputs"] = new JsonArray(n.Inputs.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray()),
                ["outputs"] = new JsonArray(n.Outputs.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray()),
                ["attrs"] = n.Attributes.DeepClone(),
            }).ToArray()),
            ["weights"] = new JsonObject
            {
                ["file"] = BinFile,
                ["size"] = binSize,
                ["sha256"] = sha256,
                ["alignment"] = Alignment,
                ["tensors"] = new JsonArray(g.Weights.Select(w =>
                {
                    var o = new JsonObject
                    {
                        ["name"] = w.Name,
                        ["dtype"] = w.DType.ToSafetensorsName(),
                        ["shape"] = new JsonArray(w.Shape.Select(d => (JsonNode)JsonValue.Create(d)).ToArray()),
                        ["offset"] = w.Offset,
                        ["length"] = w.Length,
                    };
                    if (w.Quant is { } q)
                        o["quant"] = new JsonObject { ["scheme"] = q.Scheme, ["group_size"] = q.GroupSize, ["symmetric"] = q.Symmetric, ["scales"] = q.Scales, ["zeros"] = q.Zeros };
                    return (JsonNode)o;
                }).ToArray()),
            },
        };
    }

    /// <summary>Parses <c>model.ir.json</c> (no weights are touched). Throws <see cref="IrFormatException"/> when malformed.</summary>
    public static (Graph Graph, long BinSize, string Sha256) ReadJson(string jsonPath)
    {
        if (!File.Exists(jsonPath)) throw new ModelFileNotFoundException(jsonPath, "not an IR folder; convert the model first (hub convert, or FromPretrained(..., export: true))");
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(jsonPath))?.AsObject() ?? throw new JsonException("empty document"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new IrFormatException(jsonPath, $"not valid JSON: {e.Message}", e); }
        try
        {
            if ((string?)root["format"] != FormatTag) throw new IrFormatException(jsonPath, $"'format' is not '{FormatTag}'");
            int version = (int)root["version"]!;
            if (version != Graph.CurrentVersion)
                throw new IrFormatException(jsonPath, $"IR version {version} is not supported by this Hub (reads version {Graph.CurrentVersion}); re-export the model with this version");
            var g = new Graph { ModelType = (string)root["model_type"]!, Metadata = root["metadata"]?.DeepClone().AsObject() ?? new JsonObject() };
            foreach (var v in root["inputs"]!.AsArray()) g.Inputs.Add(new ValueInfo((string)v!["name"]!, ParseDType(jsonPath, (string)v["dtype"]!), ParseDims(v["shape"]!)));
            foreach (var v in root["outputs"]!.AsArray()) g.Outputs.Add(new ValueInfo((string)v!["name"]!, ParseDType(jsonPath, (string)v["dtype"]!), ParseDims(v["shape"]!)));
            foreach (var v in root["states"]!.AsArray()) g.States.Add(new StateInfo((string)v!["name"]!, ParseDType(jsonPath, (string)v["dtype"]!), ParseDims(v["shape"]!)));
            foreach (var n in root["nodes"]!.AsArray())
            {
                var op = (string)n!["op"]!;
                if (!Ops.All.Contains(op)) throw new IrFormatException(jsonPath, $"node '{n["name"]}' uses op '{op}', unknown to this Hub; re-export or upgrade Hub");
                g.Nodes.Add(new Node
                {
                    Name = (string)n["name"]!,
                    Op = op,
                    Inputs = n["inputs"]!.AsArray().Select(x => (string)x!).ToArray(),
                    Outputs = n["outputs"]!.AsArray().Select(x => (string)x!).ToArray(),
                    Attributes = n["attrs"]?.DeepClone().AsObject() ?? new JsonObject(),
                });
            }
            var weights = root["weights"]!.AsObject();
            long size = (long)weights["size"]!;
            foreach (var w in weights["tensors"]!.AsArray())
            {
                Quantization? q = null;
                if (w!["quant"] is JsonObject qo)
                    q = new Quantization((string)qo["scheme"]!, (int)qo["group_size"]!, (bool)qo["symmetric"]!, (string)qo["scales"]!, (string?)qo["zeros"]);
                var shape = new Shape(w["shape"]!.AsArray().Select(x => (long)x!).ToArray());
                var info = new WeightInfo((string)w["name"]!, ParseDType(jsonPath, (string)w["dtype"]!), shape, (long)w["offset"]!, (long)w["length"]!, q);
                if (info.Offset < 0 || info.Length < 0 || info.Offset + info.Length > size)
                    throw new IrFormatException(jsonPath, $"weight '{info.Name}' spans [{info.Offset}, {info.Offset + info.Length}) beyond the declared bin size {size}");
                if (info.Length != shape.ElementCount * info.DType.SizeOf())
                    throw new IrFormatException(jsonPath, $"weight '{info.Name}': {info.Length} bytes do not match {info.DType} {shape}");
                g.Weights.Add(info);
            }
            try { g.Validate(); }
            catch (InvalidOperationException e) { throw new IrFormatException(jsonPath, e.Message, e); }
            return (g, size, (string)weights["sha256"]!);
        }
        catch (Exception e) when (e is NullReferenceException or InvalidOperationException or FormatException or JsonException)
        {
            throw new IrFormatException(jsonPath, $"malformed IR document: {e.Message}", e);
        }
    }

    private static DType ParseDType(string file, string s) =>
        DTypeInfo.TryParse(s, out var d) ? d : throw new IrFormatException(file, $"unknown dtype '{s}'");

    private static Dim[] ParseDims(JsonNode node) =>
        node.AsArray().Select(x => x!.GetValueKind() == JsonValueKind.String ? (Dim)(string)x! : (Dim)(long)x!).ToArray();

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    internal static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// A loaded IR: the graph and its memory-mapped weights. Loading reads only the JSON and maps the bin, so it takes
/// the same time for any model size and weights never enter managed memory.
/// </summary>
public sealed class IrModel : IDisposable
{
    private readonly MappedFile _bin;
    private readonly Dictionary<string, WeightInfo> _weights;
    private readonly string _sha256;

    /// <summary>The folder.</summary>
    public string Directory { get; }
    /// <summary>The graph, with its weights index.</summary>
    public Graph Graph { get; }

    private IrModel(string dir, Graph graph, MappedFile bin, string sha)
    {
        Directory = dir; Graph = graph; _bin = bin; _sha256 = sha;
        _weights = graph.Weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
    }

    /// <summary>True when <paramref name="dir"/> holds an IR.</summary>
    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, IrFormat.JsonFile));

    /// <summary>Loads the IR in <paramref name="dir"/>. A bin shorter or longer than its index says is an <see cref="IrFormatException"/>.</summary>
    public static IrModel Load(string dir)
    {
        var (graph, size, sha) = IrFormat.ReadJson(Path.Combine(dir, IrFormat.JsonFile));
        var binPath = Path.Combine(dir, IrFormat.BinFile);
        if (!File.Exists(binPath)) throw new IrFormatException(binPath, "missing: the IR's weights file is not beside model.ir.json; re-export the model");
        var len = MappedFile.LengthOf(binPath);
        if (len != size)
            throw new IrFormatException(binPath, $"is {len} bytes but model.ir.json declares {size}: the file is truncated or belongs to another export; re-export the model");
        return new IrModel(dir, graph, new MappedFile(binPath), sha);
    }

    /// <summary>Start of the bin's mapping (weights are at their index offsets from it).</summary>
    internal unsafe byte* BinPointer => _bin.Pointer;

    /// <summary>Length of the bin in bytes.</summary>
    internal long BinLength => _bin.Length;

    /// <summary>The bin's SHA-256 as model.ir.json records it (lower-case hex; not recomputed), for keys of derived caches.</summary>
    internal string Sha256 => _sha256;

    /// <summary>True when the weight exists.</summary>
    public bool HasWeight(string name) => _weights.ContainsKey(name);

    /// <summary>Index entry of a weight.</summary>
    public WeightInfo WeightInfo(string name) =>
        _weights.TryGetValue(name, out var w) ? w : throw new IrFormatException(Path.Combine(Directory, IrFormat.JsonFile), $"weight '{name}' is not in the index");

    /// <summary>A zero-copy view of a weight inside the mapped bin.</summary>
    public unsafe TensorView GetWeight(string name)
    {
        var w = WeightInfo(name);
        var shape = w.Quant is null ? w.Shape : new Shape(w.Length);
        var dtype = w.Quant is null ? w.DType : DType.U8;
        return new TensorView(dtype, shape, (nint)(_bin.Pointer + w.Offset), w.Length);
    }

    /// <summary>Recomputes the bin's SHA-256 and compares it with the index (reads the whole file).</summary>
    public bool VerifyChecksum()
    {
        using var fs = new FileStream(_bin.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(fs)) == _sha256;
    }

    /// <inheritdoc/>
    public void Dispose() => _bin.Dispose();
}
