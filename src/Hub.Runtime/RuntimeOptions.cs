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

    internal int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;
}
