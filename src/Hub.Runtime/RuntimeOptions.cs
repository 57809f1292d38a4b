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

    internal int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;
}
