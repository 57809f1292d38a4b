// Greedy and multinomial decoding over an ICausalLMRunner, after transformers' GenerationMixin._sample: a batch of
// prompts is left-padded into one prefill, every step feeds one token per row, finished rows keep feeding the pad id
// with their output frozen (as transformers does), and each row stops on its own (any eos id, a stop string, its
// length budget, the context size, or cancellation). Beam search lives in BeamSearch.cs.

using System.Runtime.InteropServices;

namespace Hub.Generation;

/// <summary>Why a returned sequence ended.</summary>
public enum FinishReason
{
    /// <summary>An id of <see cref="GenerationConfig.EosTokenId"/> was generated (it ends the sequence).</summary>
    Eos,
    /// <summary>max_new_tokens / max_length or the model's context was reached.</summary>
    Length,
    /// <summary>A stop string appeared in the decoded continuation.</summary>
    StopString,
    /// <summary>The cancellation token fired.</summary>
    Cancelled,
}

/// <summary>Turns ids into text (usually <c>tokenizer.Decode(ids, skipSpecialTokens: true)</c>); needed for stop strings.</summary>
public delegate string TokenDecoder(ReadOnlySpan<int> ids);

/// <summary>Callbacks into a running generation: per-token notification (streamers) and decoding (stop strings, texts).</summary>
public sealed class GenerationHooks
{
    /// <summary>Called with (row, id) for every token a live row generates, in order; rows that finished get no calls.</summary>
    public Action<int, int>? OnToken { get; init; }

    /// <summary>Decodes ids; required when stop strings are configured, and fills <see cref="GenerationResult.Texts"/>.</summary>
    public TokenDecoder? Decode { get; init; }
}

/// <summary>The outcome of <see cref="Generator"/>: one entry per returned sequence.</summary>
public sealed class GenerationResult
{
    internal GenerationResult(int[][] sequences, FinishReason[] reasons, string?[] texts, float[]? scores, int perPrompt)
    {
        Sequences = sequences;
        FinishReasons = reasons;
        Texts = texts;
        Scores = scores;
        SequencesPerPrompt = perPrompt;
    }

    /// <summary>New ids per returned sequence (prompt excluded; a final eos id included; for stop strings see <see cref="Texts"/>).
    /// Sequences of prompt p are at indices p·<see cref="SequencesPerPrompt"/> and following.</summary>
    public IReadOnlyList<int[]> Sequences { get; }

    /// <summary>Why each sequence ended.</summary>
    public IReadOnlyList<FinishReason> FinishReasons { get; }

    /// <summary>Decoded continuation per sequence, cut at the stop string (kept when include_stop_str_in_output); null
    /// entries when no <see cref="GenerationHooks.Decode"/> was given.</summary>
    public IReadOnlyList<string?> Texts { get; }

    /// <summary>Beam search only: the length-normalized log-probability of each sequence (transformers' sequences_scores).</summary>
    public IReadOnlyList<float>? Scores { get; }

    /// <summary>Returned sequences per prompt (num_return_sequences).</summary>
    public int SequencesPerPrompt { get; }
}

/// <summary>
/// Drives a causal LM to generate: greedy, sampling and beam search, batched prompts with left padding, eos lists, stop
/// strings, streaming hooks and cancellation. Model-independent: everything goes through <see cref="ICausalLMRunner"/>.
/// </summary>
public static class Generator
{
    /// <summary>
    /// Generates continuations of <paramref name="prompts"/> (ids including any BOS/prefix) under <paramref name="config"/>
    /// (validated first). The runner's cache is reset and left holding the last batch.
    /// </summary>
    public static GenerationResult Generate(ICausalLMRunner model, IReadOnlyList<int[]> prompts, GenerationConfig config,
                                            GenerationHooks? hooks = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (prompts.Count == 0) throw new ModelInputException("generation needs at least one prompt; the batch is empty");
        for (int p = 0; p < prompts.Count; p++) CheckPrompt(model, prompts[p], p);
        if (config.StopStrings is { Length: > 0 } && hooks?.Decode is null)
            throw new ArgumentException("stop_strings need a decoder: pass GenerationHooks.Decode (e.g. ids => tokenizer.Decode(ids, true))", nameof(hooks));

        if ((uint)PadId(config) >= (uint)model.VocabSize)
            throw new GenerationConfigException(new[] { "pad_token_id", "eos_token_id" }, $"the pad id {PadId(config)} (pad_token_id, else the first eos_token_id) is outside the model's vocabulary [0, {model.VocabSize})");
        if (config.NumBeams > 1) return BeamSearch.Run(model, prompts, config, hooks, ct);

        int perPrompt = config.DoSample ? config.NumReturnSequences : 1;
        int batch = prompts.Count * perPrompt;
        int maxPrompt = prompts.Max(p => p.Length);
        int maxNew = ClampToContext(model, maxPrompt, config.ResolveMaxNewTokens(maxPrompt));
        int pad = PadId(config);

        var tokens = new int[batch * maxPrompt];
        var padding = new int[batch];
        var rows = new RowState[batch];
        for (int b = 0; b < batch; b++)
        {
            var prompt = prompts[b / perPrompt];
            padding[b] = maxPrompt - prompt.Length;
            tokens.AsSpan(b * maxPrompt, padding[b]).Fill(pad);
            prompt.CopyTo(tokens.AsSpan(b * maxPrompt + padding[b]));
            rows[b] = new RowState(prompt, maxNew);
        }

        model.Reset();
        var logits = model.Forward(tokens, batch, maxPrompt, padding);
        return Decode(model, rows, padding, logits, maxNew, config, hooks, ct, perPrompt);
    }

    /// <summary>Generates a continuation of one prompt; see the batched overload.</summary>
    public static GenerationResult Generate(ICausalLMRunner model, int[] prompt, GenerationConfig config,
                                            GenerationHooks? hooks = null, CancellationToken ct = default)
        => Generate(model, new[] { prompt ?? throw new ArgumentNullException(nameof(prompt)) }, config, hooks, ct);

    /// <summary>Per-row state of a greedy/sampling generation: the true (unpadded) history with room for the output.</summary>
    internal sealed class RowState
    {
        public readonly int[] History;
        public readonly int PromptLength;
        public int Length;
        public bool Finished;
        public FinishReason Reason = FinishReason.Length;
        public string? Text;
        public int KeptIds = -1;

        public RowState(ReadOnlySpan<int> prompt, int maxNew)
        {
            History = new int[prompt.Length + maxNew];
            prompt.CopyTo(History);
            PromptLength = Length = prompt.Length;
        }

        public int Generated => Length - PromptLength;
        public ReadOnlySpan<int> Output => History.AsSpan(PromptLength, Length - PromptLength);
    }

    /// <summary>
    /// The decode loop shared by Generate and the chat engine: <paramref name="logits"/> are the runner's last
    /// logits for all rows (after the prefill); each step picks one token per live row and feeds it.
    /// </summary>
    internal static GenerationResult Decode(ICausalLMRunner model, RowState[] rows, int[] padding, ReadOnlySpan<float> logits,
                                            int maxNew, GenerationConfig config, GenerationHooks? hooks, CancellationToken ct, int perPrompt)
    {
        int batch = rows.Length, vocab = model.VocabSize;
        var eos = config.EosTokenId ?? Array.Empty<int>();
        var pipeline = new LogitsPipeline(config, vocab, eos);
        var rng = new Xoshiro256(config.Seed ?? (ulong)Random.Shared.NextInt64());
        int pad = PadId(config);
        var next = new int[batch];
        var stops = config.StopStrings ?? Array.Empty<string>();
        int maxStop = stops.Length == 0 ? 0 : stops.Max(s => s.Length);
        var decode = hooks?.Decode;
        int live = batch;
        // Post-processing on the graph: read the graph's TopK candidates instead of the whole row when the config allows.
        var topk = model as ITopKLogitsRunner;
        int cands = topk?.LogitsTopK ?? 0;
        if (!pipeline.CanUseTopK(cands)) cands = 0;

        for (int step = 0; ; step++)
        {
            if (ct.IsCancellationRequested)
            {
                foreach (var r in rows) if (!r.Finished) { r.Finished = true; r.Reason = FinishReason.Cancelled; }
                break;
            }
            // The candidate outputs are looked up once per step, not once per row.
            ReadOnlySpan<float> topValues = cands > 0 ? topk!.TopKValues : default;
            ReadOnlySpan<int> topIds = cands > 0 ? topk!.TopKIndices : default;
            for (int b = 0; b < batch; b++)
            {
                var r = rows[b];
                if (r.Finished) { next[b] = pad; continue; }
                int tok;
                if (cands == 0 || !pipeline.TryNextFromTopK(topValues.Slice(b * cands, cands), topIds.Slice(b * cands, cands), ref rng, out tok))
                    tok = pipeline.Next(logits.Slice(b * vocab, vocab), r.History.AsSpan(0, r.Length), r.Generated, ref rng);
                r.History[r.Length++] = tok;
                next[b] = tok;
                hooks?.OnToken?.Invoke(b, tok);
                if (Array.IndexOf(eos, tok) >= 0) Finish(r, FinishReason.Eos);
                else if (maxStop > 0 && CheckStopStrings(r, stops, maxStop, config.IncludeStopStrInOutput, decode!)) Finish(r, FinishReason.StopString);
                else if (r.Generated >= maxNew) Finish(r, FinishReason.Length);
                if (r.Finished) live--;
            }
            if (live == 0) break;
            if (model.PastLength + 1 > model.MaxContext)
            {
                foreach (var r in rows) if (!r.Finished) Finish(r, FinishReason.Length);
                break;
            }
            logits = model.Forward(next, batch, 1, padding);
        }

        var seqs = new int[batch][];
        var reasons = new FinishReason[batch];
        var texts = new string?[batch];
        for (int b = 0; b < batch; b++)
        {
            var r = rows[b];
            var output = r.Output;
            seqs[b] = (r.KeptIds >= 0 ? output[..r.KeptIds] : output).ToArray();
            reasons[b] = r.Reason;
            texts[b] = r.Text ?? (decode is null ? null : decode(output));
        }
        return new GenerationResult(seqs, reasons, texts, null, perPrompt);

        static void Finish(RowState r, FinishReason reason) { r.Finished = true; r.Reason = reason; }
    }

    // Looks for a stop string that the newest token completed: decodes only a tail window of ids (a stop string of L chars
    // spans at most 4·L byte-level tokens), so the check costs O(L) per token, not O(output). On a match, decodes the whole
    // output once to fix the row's text and the ids to keep.
    private static bool CheckStopStrings(RowState r, string[] stops, int maxStop, bool include, TokenDecoder decode)
    {
        var output = r.Output;
        int window = 4 * maxStop + 4;
        var tail = decode(output.Length > window ? output[^window..] : output);
        if (FindStop(tail, stops).At < 0) return false;
        var text = decode(output);
        var (at, len) = FindStop(text, stops);
        if (at < 0) return false; // only a window artefact (e.g. a cut-off multi-byte character)
        if (include)
        {
            r.Text = text[..(at + len)];
            r.KeptIds = output.Length;
        }
        else
        {
            r.Text = text[..at];
            // Keep the longest prefix of ids whose text ends before the stop string; a token straddling it is dropped
            // from the ids (Texts holds the exact cut).
            int k = output.Length - 1;
            while (k > 0 && decode(output[..k]).Length > at) k--;
            r.KeptIds = k;
        }
        return true;
    }

    // The earliest stop string in text (the longest one when several start at the same place).
    internal static (int At, int Length) FindStop(string text, string[] stops)
    {
        int at = -1, len = 0;
        foreach (var s in stops)
        {
            var i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (at < 0 || i < at || (i == at && s.Length > len))) { at = i; len = s.Length; }
        }
        return (at, len);
    }

    internal static void CheckPrompt(ICausalLMRunner model, int[] prompt, int index)
    {
        if (prompt is null || prompt.Length == 0) throw new ModelInputException($"prompt {index} is empty; give at least one token (e.g. the BOS id)");
        foreach (var id in prompt)
            if ((uint)id >= (uint)model.VocabSize)
                throw new ModelInputException($"prompt {index} holds token id {id}, outside the model's vocabulary [0, {model.VocabSize}); was it encoded with another tokenizer?");
        if (prompt.Length >= model.MaxContext)
            throw new ModelInputException($"prompt {index} has {prompt.Length} tokens but the model's context holds {model.MaxContext}; shorten the prompt");
    }

    internal static int ClampToContext(ICausalLMRunner model, int promptLength, int maxNew) =>
        Math.Max(1, Math.Min(maxNew, model.MaxContext - promptLength));

    internal static int PadId(GenerationConfig config) => config.PadTokenId ?? (config.EosTokenId is { Length: > 0 } e ? e[0] : 0);

    /// <summary>Merges eos ids (config first, then the extras), without duplicates; handy when adding the tokenizer's
    /// eos and chat end-of-turn ids to a config.</summary>
    public static int[] UnionIds(IEnumerable<int>? first, params IEnumerable<int>?[] more)
    {
        var list = new List<int>();
        foreach (var src in more.Prepend(first))
            if (src is not null)
                foreach (var id in src)
                    if (!list.Contains(id)) list.Add(id);
        return list.ToArray();
    }

    internal static Span<int> AsSpan(List<int> list) => CollectionsMarshal.AsSpan(list);
}
