namespace Hub.Generation;

/// <summary>
/// The seam between generation and a model: a stateful causal LM whose KV cache lives in the runtime.
/// Implemented by <c>CausalLM</c> for every architecture; generation strategies never see model details.
/// </summary>
public interface ICausalLMRunner
{
    /// <summary>Size of each logits row.</summary>
    int VocabSize { get; }

    /// <summary>Capacity of the KV cache in positions (prompt + generated).</summary>
    int MaxContext { get; }

    /// <summary>Batch size the cache currently holds (0 after <see cref="Reset"/>).</summary>
    int Batch { get; }

    /// <summary>Positions already in the cache (padding included).</summary>
    int PastLength { get; }

    /// <summary>
    /// Appends <paramref name="seqLen"/> tokens per row to the cache and returns the logits of the last new position
    /// of every row, <c>[batch, VocabSize]</c> row-major; the span is valid until the next call.
    /// </summary>
    /// <param name="tokens">Row-major ids <c>[batch, seqLen]</c>.</param>
    /// <param name="batch">Rows; must equal <see cref="Batch"/> unless the cache is empty.</param>
    /// <param name="seqLen">New positions per row.</param>
    /// <param name="leftPadding">Per row, how many positions at the start of the whole sequence are padding (empty =
    /// none). Fixed for a generation; the runner derives the attention mask and position ids from it.</param>
    ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int batch, int seqLen, ReadOnlySpan<int> leftPadding);

    /// <summary>
    /// Changes whenever the cache changes (a forward pass, reset, reorder or truncation), so that a chat engine can tell
    /// that someone else used the model since its last turn and not trust its record of the cache. Runners that do not
    /// track it return 0 (the engine then compares lengths only).
    /// </summary>
    long CacheStamp => 0;

    /// <summary>Empties the cache.</summary>
    void Reset();

    /// <summary>
    /// Makes room for <paramref name="rows"/> cache rows before a generation that will grow the batch past its prefill
    /// (beam search expands each prompt's row to its beams with <see cref="ReorderCache"/>). Called on an empty cache;
    /// runners without a fixed capacity ignore it.
    /// </summary>
    void ReserveBatch(int rows) { }

    /// <summary>Reorders (and possibly resizes) the batch of the cache: new row i takes old row <paramref name="rows"/>[i].</summary>
    void ReorderCache(ReadOnlySpan<int> rows);

    /// <summary>Drops cached positions beyond <paramref name="length"/> (chat rollback, stop strings).</summary>
    void TruncateCache(int length);
}

/// <summary>
/// A runner whose graph ends with a TopK over the last position's logits (OpenVINO-style post-processing on the graph):
/// after each <see cref="ICausalLMRunner.Forward"/> it also offers the <see cref="LogitsTopK"/> largest logits of every row
/// with their ids, so that greedy and top-k sampling read k values instead of the whole vocabulary row.
/// </summary>
public interface ITopKLogitsRunner : ICausalLMRunner
{
    /// <summary>Candidates per row the graph returns (0 = the graph has no TopK; the generator then reads the full row).</summary>
    int LogitsTopK { get; }

    /// <summary>The largest logits of the last Forward, <c>[batch, LogitsTopK]</c>, descending, ties to the lowest id (valid until the next call).</summary>
    ReadOnlySpan<float> TopKValues { get; }

    /// <summary>The ids of <see cref="TopKValues"/>, same layout.</summary>
    ReadOnlySpan<int> TopKIndices { get; }
}
