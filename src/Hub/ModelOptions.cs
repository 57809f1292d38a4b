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
    /// <summary>Compute threads (0 = all cores).</summary>
    public int Threads { get; init; }
    /// <summary>KV cache capacity in positions (0 = the model's maximum, capped at 4096).</summary>
    public int MaxContext { get; init; }
    /// <summary>
    /// Batch rows the KV cache is first allocated for. The cache is preallocated (rows × context × layers), so the
    /// default is 1; <see cref="CausalLM"/> grows it when a generation needs more rows (batches, beams).
    /// </summary>
    public int MaxBatch { get; init; } = 1;
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
