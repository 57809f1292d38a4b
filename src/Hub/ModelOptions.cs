using Hub.IR;

namespace Hub;

/// <summary>Storage precision of exported weights (matrices and embeddings; norms and biases stay float32).</summary>
public enum WeightFormat
{
    /// <summary>Keep each tensor's checkpoint precision (f16/bf16 checkpoints stay half-size, others float32).</summary>
    Auto,
    /// <summary>float32.</summary>
    F32,
    /// <summary>IEEE half precision.</summary>
    F16,
    /// <summary>bfloat16.</summary>
    BF16,
    /// <summary>8-bit integer weights with float16-exact scales (default: asymmetric, one scale per output channel).</summary>
    Int8,
    /// <summary>
    /// 4-bit integer weights (default: asymmetric, groups of 128); embeddings and the output projection stay int8
    /// unless <see cref="ModelOptions.AllLayers"/> is set, as NNCF's backup precision does.
    /// </summary>
    Int4,
}

/// <summary>Options for <c>FromPretrained</c>: where to fetch from, how to export, how to run.</summary>
public sealed class ModelOptions
{
    /// <summary>Hub revision (branch, tag or commit); default <c>main</c>.</summary>
    public string? Revision { get; init; }
    /// <summary>Folder inside the repo or local folder that holds the model (e.g. <c>stories260K</c>).</summary>
    public string? Subfolder { get; init; }
    /// <summary>Checkpoint layout: null (auto-detect), <c>hf</c>, <c>meta</c>, <c>llama2c</c> or <c>aquila</c>.</summary>
    public string? SourceFormat { get; init; }
    /// <summary>Weight precision of the export.</summary>
    public WeightFormat WeightFormat { get; init; } = WeightFormat.Auto;
    /// <summary>
    /// Int8/Int4 only: values per scale along each weight row (0 = one scale per output channel); null takes the
    /// scheme's default (int8: per channel, int4: 128). int4 needs a multiple of 32.
    /// </summary>
    public int? GroupSize { get; init; }
    /// <summary>Int8/Int4 only: symmetric weights (no zero points; maps to GGUF Q8_0/Q4_0 at group 32); null = asymmetric.</summary>
    public bool? Symmetric { get; init; }
    /// <summary>Int8/Int4 only: regexes on IR weight names that stay in float (e.g. <c>lm_head</c>, <c>layers\.0\.</c>).</summary>
    public IReadOnlyList<string> IgnoredScope { get; init; } = Array.Empty<string>();
    /// <summary>Int4 only: compress embeddings and the output projection to int4 too instead of the int8 backup.</summary>
    public bool AllLayers { get; init; }
    /// <summary>Compute threads (0 = all cores).</summary>
    public int Threads { get; init; }
    /// <summary>KV cache capacity in positions (0 = the model's maximum, capped at 4096).</summary>
    public int MaxContext { get; init; }
    /// <summary>
    /// Batch rows the KV cache is first allocated for. The cache is preallocated (rows × context × layers), so the
    /// default is 1; <see cref="CausalLM"/> grows it when a generation needs more rows (batches, beams).
    /// </summary>
    public int MaxBatch { get; init; } = 1;
    /// <summary>
    /// Element type of the KV cache (<see cref="Hub.Runtime.RuntimeOptions.KvCachePrecision"/>): Auto (the default)
    /// keeps f16 keys/values for compressed (F16/BF16/int8/int4) weights and f32 for F32 weights.
    /// </summary>
    public Hub.Runtime.KvCachePrecision KvCachePrecision { get; init; } = Hub.Runtime.KvCachePrecision.Auto;
    /// <summary>Where converted models are cached (default <c>$HUB_CACHE</c> or <c>~/.cache/hub/ir</c>).</summary>
    public string? ExportCacheDir { get; init; }
    /// <summary>Hub endpoint override (default <c>HF_ENDPOINT</c> or the public hub).</summary>
    public string? Endpoint { get; init; }
    /// <summary>Hugging Face cache folder override (default <c>HF_HUB_CACHE</c>, <c>HF_HOME/hub</c> or <c>~/.cache/huggingface/hub</c>).</summary>
    public string? HubCacheDir { get; init; }
    /// <summary>Hub token override (default <c>HF_TOKEN</c> or the token file).</summary>
    public string? Token { get; init; }
    /// <summary>Never touch the network (also <c>HF_HUB_OFFLINE=1</c>).</summary>
    public bool Offline { get; init; }
    /// <summary>Download/export progress messages.</summary>
    public IProgress<string>? Progress { get; init; }

    internal static ModelOptions Default { get; } = new();

    internal DType? IrDType => WeightFormat switch
    {
        WeightFormat.F32 => DType.F32,
        WeightFormat.F16 => DType.F16,
        WeightFormat.BF16 => DType.BF16,
        _ => null,
    };

    internal bool IsQuantized => WeightFormat is WeightFormat.Int8 or WeightFormat.Int4;

    /// <summary>The compression options of an Int8/Int4 export (null for float formats); throws on inconsistent options.</summary>
    internal Converters.Compression.WeightCompressionOptions? CompressionOptions(Graph? graph = null)
    {
        if (!IsQuantized)
        {
            if (GroupSize is not null || Symmetric is not null || IgnoredScope.Count > 0 || AllLayers)
                throw new ArgumentException($"GroupSize, Symmetric, IgnoredScope and AllLayers apply to WeightFormat Int8 or Int4, not {WeightFormat}");
            return null;
        }
        if (AllLayers && WeightFormat != WeightFormat.Int4) throw new ArgumentException("AllLayers applies to WeightFormat Int4 only", nameof(AllLayers));
        var o = new Converters.Compression.WeightCompressionOptions
        {
            Scheme = WeightFormat == WeightFormat.Int4 ? Converters.Compression.WeightCompressor.Int4 : Converters.Compression.WeightCompressor.Int8,
            GroupSize = GroupSize,
            Symmetric = Symmetric,
            IgnoredScope = IgnoredScope,
            AllLayers = AllLayers,
            OutputProjections = graph is null ? Array.Empty<string>() : Converters.Compression.WeightCompressor.FindOutputProjections(graph),
        };
        o.Validate();
        return o;
    }

    internal string ExportCacheRoot
    {
        get
        {
            if (!string.IsNullOrEmpty(ExportCacheDir)) return ExportCacheDir;
            var env = Environment.GetEnvironmentVariable("HUB_CACHE");
            if (!string.IsNullOrEmpty(env)) return Path.Combine(env, "ir");
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "hub", "ir");
        }
    }
}
