namespace Hub.Runtime;

/// <summary>Options fixed when a model is compiled: they size the thread pool and the preallocated KV-cache states.</summary>
public sealed class RuntimeOptions
{
    /// <summary>Worker threads, the calling thread included; 0 = <see cref="Environment.ProcessorCount"/>.</summary>
    public int Threads { get; init; }

    /// <summary>Capacity of the <c>ctx</c> state dimension: the longest prompt + generation a request can hold.</summary>
    public int MaxContext { get; init; } = 2048;

    /// <summary>Largest batch (rows of the KV cache) a request accepts; states are allocated for this many rows.</summary>
    public int MaxBatch { get; init; } = 1;

    /// <summary>
    /// Largest total size (bytes, as float32 panels) of a model's float Linear weights for which the runtime keeps a
    /// second, GEMM-ready packed copy of them (made on a weight's first multi-row use): small encoders such as
    /// MiniLM (≈ 43 MB) then skip the per-call transposition/widening of every weight panel, while large models
    /// stay mapped-only (no doubled memory). 0 turns packing off.
    /// </summary>
    public long PackWeightsMaxBytes { get; init; } = 256L << 20;

    /// <summary>
    /// Element type of the KV-cache states. <see cref="KvCachePrecision.Auto"/> (the default) stores keys and values as
    /// f16 when the model's Linear weights are compressed (F16, BF16, int8 or int4) and as f32 when they are F32, so an
    /// f32 model keeps full-precision results and a compressed one holds half the cache bytes, as llama.cpp's default
    /// f16 cache does.
    /// </summary>
    public KvCachePrecision KvCachePrecision { get; init; } = KvCachePrecision.Auto;

    /// <summary>
    /// Whether the weights the compile repacks into the CPU's interleaved layout (Q8_0 on AVX-VNNI CPUs, Q4_0 on
    /// AVX2+FMA) are saved to a cache file beside the IR after the first compile and memory-mapped by later ones instead
    /// of repacking, so that a load reads nothing from the IR's weights up front (a cold repack reads the whole file).
    /// Costs disk space equal to the interleaved bytes, about the size of those weights (1.1 GB for a 1b Q8_0 model);
    /// the first compile also spends the time to write it. A file that does not match (another IR, runtime layout or
    /// CPU outcome) is ignored and replaced. Default true; false, or HUB_WEIGHT_CACHE=0 in the environment, turns it
    /// off.
    /// </summary>
    public bool WeightCache { get; init; } = true;

    /// <summary>
    /// Folder of the weight cache file (see <see cref="WeightCache"/>); null (the default) is the IR folder's
    /// <c>model_cache</c> sub-folder (<see cref="Hub.IR.IrFormat.CacheFolder"/>). Created when missing.
    /// </summary>
    public string? WeightCacheDirectory { get; init; }

    internal int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;
}

/// <summary>Element type of the KV cache (see <see cref="RuntimeOptions.KvCachePrecision"/>).</summary>
public enum KvCachePrecision
{
    /// <summary>F16 when the model's Linear weights are compressed (F16, BF16, int8, int4), else F32.</summary>
    Auto,

    /// <summary>Keys and values kept as float32: results match a float32 reference exactly.</summary>
    F32,

    /// <summary>
    /// Keys and values rounded to IEEE half when appended: half the cache memory and half the bytes a decode step
    /// streams, at about 11 significant bits per cached value (values beyond ±65504 saturate to infinity).
    /// </summary>
    F16,
}

/// <summary>Parses the <c>auto|f32|f16</c> spelling of <see cref="KvCachePrecision"/> used by command lines and config.</summary>
public static class KvCachePrecisionNames
{
    /// <summary>The accepted spellings, in the order help texts list them.</summary>
    public const string Allowed = "auto, f32, f16";

    /// <summary>
    /// The precision named by <paramref name="value"/> (case-insensitive <c>auto</c>, <c>f32</c>, <c>f16</c>); throws
    /// <see cref="ArgumentException"/> naming <paramref name="argumentName"/> and the allowed values otherwise.
    /// </summary>
    public static KvCachePrecision Parse(string? value, string argumentName = "value") => value?.Trim().ToLowerInvariant() switch
    {
        "auto" => KvCachePrecision.Auto,
        "f32" or "fp32" or "float32" => KvCachePrecision.F32,
        "f16" or "fp16" or "float16" => KvCachePrecision.F16,
        _ => throw new ArgumentException($"{argumentName} '{value}' is not a KV-cache precision; use one of {Allowed}", argumentName),
    };
}
