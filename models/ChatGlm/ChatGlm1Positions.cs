// ChatGLM-6B (v1) 2D positions and the bidirectional prefix, after THUDM/chatglm-6b modeling_chatglm.py:
// ChatGLMModel.get_position_ids / get_masks and ChatGLMForConditionalGeneration.prepare_inputs_for_generation.
// For a row whose first <sop> (bos) sits at index C (the "context length") and whose mask token ([gMASK] if present,
// else [MASK]) first sits at index M, the token at absolute index i gets
//     i <  C: position i, block position 0
//     i >= C: position M, block position i − C + 1
// which covers the prompt and every decode step alike (THUDM passes [M, len − C] for the token at index len − 1).
// Keys at indices < C are visible to every query (bidirectional context); the rest is causal.
// A left-padded row (P pad ids first, as THUDM's v1 tokenizer pads: ChatGLMTokenizer._pad) gets the positions of its
// unpadded ids shifted right by P, zeros for the pads, and a prefix length of P + C counted from the padded start; the
// pads themselves are dropped by the attention mask, so the row computes exactly what it computes alone.
using System.Text.Json.Nodes;

namespace Hub.Models.ChatGlm;

/// <summary>The special ids ChatGLM-6B's positions depend on (config.json / graph metadata).</summary>
/// <param name="Mask"><c>[MASK]</c> (mask_token_id, 130000 in the 6B).</param>
/// <param name="GMask"><c>[gMASK]</c> (gmask_token_id, 130001).</param>
/// <param name="Bos"><c>&lt;sop&gt;</c> (bos_token_id, 130004).</param>
public readonly record struct ChatGlm1SpecialTokens(int Mask, int GMask, int Bos)
{
    /// <summary>Reads <c>mask_token_id</c>, <c>gmask_token_id</c>, <c>bos_token_id</c> from graph metadata or config.json.</summary>
    public static ChatGlm1SpecialTokens FromMetadata(JsonObject metadata)
    {
        static int Need(JsonObject m, string key) =>
            m[key] is JsonNode n ? n.GetValue<int>()
                : throw new ModelInputException($"ChatGLM-6B metadata lacks '{key}': re-export the model so its graph records the special ids");
        return new(Need(metadata, "mask_token_id"), Need(metadata, "gmask_token_id"), Need(metadata, "bos_token_id"));
    }
}

/// <summary>Where a row's context ends and its mask token sits; fixed for a whole generation.</summary>
/// <param name="ContextLength">Index of the first <c>&lt;sop&gt;</c>: the bidirectional prefix length.</param>
/// <param name="MaskPosition">Index of the first <c>[gMASK]</c> (or <c>[MASK]</c> when there is no [gMASK]).</param>
public readonly record struct ChatGlm1Layout(int ContextLength, int MaskPosition);

/// <summary>
/// Host-side inputs of a ChatGLM-6B (v1) graph (graph metadata <c>positions</c> = <c>chatglm1</c>): the 2D
/// <c>position_ids</c> [batch, 2, seq] and the <c>prefix_length</c> [batch] of the bidirectional attention prefix.
/// </summary>
public static class ChatGlm1Positions
{
    /// <summary>
    /// Finds the context length and mask position of one row of prompt ids. A row without <c>&lt;sop&gt;</c> or
    /// without a mask token is a <see cref="ModelInputException"/>: ChatGLM-6B prompts end with <c>[gMASK] &lt;sop&gt;</c>.
    /// </summary>
    public static ChatGlm1Layout Analyze(ReadOnlySpan<int> ids, ChatGlm1SpecialTokens tokens)
    {
        int bos = ids.IndexOf(tokens.Bos);
        if (bos < 0)
            throw new ModelInputException($"ChatGLM-6B prompt has no <sop> (id {tokens.Bos}); encode it with the model's tokenizer, which ends prompts with [gMASK] <sop>");
        int mask = ids.IndexOf(tokens.GMask);
        if (mask < 0) mask = ids.IndexOf(tokens.Mask);
        if (mask < 0)
            throw new ModelInputException($"ChatGLM-6B prompt has neither [gMASK] (id {tokens.GMask}) nor [MASK] (id {tokens.Mask}); the model needs one to place its generation");
        return new ChatGlm1Layout(bos, mask);
    }

    /// <summary>
    /// Writes the positions of <paramref name="count"/> tokens starting at absolute index <paramref name="start"/>:
    /// <paramref name="positions"/>[0..count) and <paramref name="blockPositions"/>[0..count).
    /// </summary>
    public static void Fill(ChatGlm1Layout layout, int start, int count, Span<int> positions, Span<int> blockPositions)
    {
        if (start < 0 || count < 0) throw new ArgumentOutOfRangeException(nameof(start), "start and count must be non-negative");
        if (positions.Length < count || blockPositions.Length < count) throw new ArgumentException("destination spans are shorter than count");
        for (int t = 0; t < count; t++)
        {
            int i = start + t;
            if (i < layout.ContextLength) { positions[t] = i; blockPositions[t] = 0; }
            else { positions[t] = layout.MaskPosition; blockPositions[t] = i - layout.ContextLength + 1; }
        }
    }

    /// <summary>
    /// Inputs of the prompt pass: for <paramref name="batch"/> unpadded rows of <paramref name="seqLen"/> ids
    /// (row-major), fills <paramref name="positionIds"/> [batch, 2, seqLen] and <paramref name="prefixLength"/> [batch],
    /// and returns each row's layout for the decode steps.
    /// </summary>
    public static ChatGlm1Layout[] ForPrompt(ReadOnlySpan<int> ids, int batch, int seqLen, ChatGlm1SpecialTokens tokens,
        Span<int> positionIds, Span<int> prefixLength) =>
        ForPrompt(ids, batch, seqLen, default, tokens, positionIds, prefixLength);

    /// <summary>
    /// Inputs of the prompt pass for rows left-padded by <paramref name="leftPadding"/>[b] ids (empty = none): the
    /// layout of each row is that of its unpadded ids, its positions are shifted right past the pads (which get 0, 0) and
    /// its prefix length counts the pads. The pads must also be masked (the graph's attention_mask).
    /// </summary>
    public static ChatGlm1Layout[] ForPrompt(ReadOnlySpan<int> ids, int batch, int seqLen, ReadOnlySpan<int> leftPadding,
        ChatGlm1SpecialTokens tokens, Span<int> positionIds, Span<int> prefixLength)
    {
        if (batch <= 0 || seqLen <= 0 || ids.Length != batch * seqLen)
            throw new ArgumentException($"ids has {ids.Length} values for batch {batch} × seq {seqLen}", nameof(ids));
        if (positionIds.Length < batch * 2 * seqLen || prefixLength.Length < batch)
            throw new ArgumentException("positionIds needs batch·2·seq values and prefixLength batch values");
        CheckPadding(leftPadding, batch, seqLen);
        var layouts = new ChatGlm1Layout[batch];
        for (int b = 0; b < batch; b++)
        {
            int pad = leftPadding.IsEmpty ? 0 : leftPadding[b];
            var l = Analyze(ids.Slice(b * seqLen + pad, seqLen - pad), tokens);
            layouts[b] = l;
            prefixLength[b] = pad + l.ContextLength;
            var row = positionIds.Slice(b * 2 * seqLen, 2 * seqLen);
            row[..pad].Clear();
            row.Slice(seqLen, pad).Clear();
            Fill(l, 0, seqLen - pad, row[pad..seqLen], row[(seqLen + pad)..]);
        }
        return layouts;
    }

    /// <summary>
    /// Inputs of a decode step appending <paramref name="seqLen"/> tokens (usually 1) after <paramref name="past"/>
    /// cached positions: fills <paramref name="positionIds"/> [batch, 2, seqLen] and <paramref name="prefixLength"/>
    /// [batch] (the context lengths, unchanged). Allocation-free, for the per-token path.
    /// </summary>
    public static void ForStep(ReadOnlySpan<ChatGlm1Layout> layouts, int past, int seqLen, Span<int> positionIds, Span<int> prefixLength) =>
        ForStep(layouts, default, past, seqLen, positionIds, prefixLength);

    /// <summary>
    /// <see cref="ForStep(ReadOnlySpan{ChatGlm1Layout}, int, int, Span{int}, Span{int})"/> for rows left-padded by
    /// <paramref name="leftPadding"/>[b] (empty = none), as given to
    /// <see cref="ForPrompt(ReadOnlySpan{int}, int, int, ReadOnlySpan{int}, ChatGlm1SpecialTokens, Span{int}, Span{int})"/>.
    /// </summary>
    public static void ForStep(ReadOnlySpan<ChatGlm1Layout> layouts, ReadOnlySpan<int> leftPadding, int past, int seqLen,
        Span<int> positionIds, Span<int> prefixLength)
    {
        int batch = layouts.Length;
        if (positionIds.Length < batch * 2 * seqLen || prefixLength.Length < batch)
            throw new ArgumentException("positionIds needs batch·2·seq values and prefixLength batch values");
        CheckPadding(leftPadding, batch, past + 1);
        for (int b = 0; b < batch; b++)
        {
            int pad = leftPadding.IsEmpty ? 0 : leftPadding[b];
            prefixLength[b] = pad + layouts[b].ContextLength;
            var row = positionIds.Slice(b * 2 * seqLen, 2 * seqLen);
            Fill(layouts[b], past - pad, seqLen, row[..seqLen], row[seqLen..]);
        }
    }

    // Each row keeps at least one id after its padding (the unpadded row must still hold [gMASK] <sop>).
    private static void CheckPadding(ReadOnlySpan<int> leftPadding, int batch, int seqLen)
    {
        if (leftPadding.IsEmpty) return;
        if (leftPadding.Length != batch)
            throw new ArgumentException($"leftPadding has {leftPadding.Length} entries for a batch of {batch}", nameof(leftPadding));
        for (int b = 0; b < batch; b++)
            if ((uint)leftPadding[b] >= (uint)seqLen)
                throw new ArgumentOutOfRangeException(nameof(leftPadding), leftPadding[b], $"row {b}: {leftPadding[b]} pads leave no ids of a {seqLen}-position row");
    }
}
