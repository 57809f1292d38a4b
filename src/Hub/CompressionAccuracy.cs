using Hub.Generation;

namespace Hub;

/// <summary>How far a compressed export's logits are from the float32 export's, teacher-forced over one sequence.</summary>
/// <param name="Positions">Positions compared (each predicts the next token).</param>
/// <param name="Top1Agreement">Fraction of positions whose argmax token is the same in both models.</param>
/// <param name="MaxAbsError">Largest |logit difference| over all positions and vocabulary entries.</param>
/// <param name="MeanAbsError">Mean |logit difference| over all positions and vocabulary entries.</param>
/// <param name="ReferenceWeightBytes">Bytes of the float32 export's weights.</param>
/// <param name="CompressedWeightBytes">Bytes of the compressed export's weights (scales and zero points included).</param>
/// <param name="Tokens">The sequence that was fed (prompt, then the reference's greedy continuation, or the given text).</param>
public sealed record CompressionAccuracyReport(int Positions, double Top1Agreement, double MaxAbsError, double MeanAbsError,
    long ReferenceWeightBytes, long CompressedWeightBytes, int[] Tokens);

/// <summary>
/// Measures the accuracy cost of weight compression (the figures of <c>hub accuracy</c> and docs/quantization.md):
/// both models read the same prompt and then decode the float32 model's greedy continuation one token at a time
/// through their KV caches — the decode kernels a user runs — and every position's logits are compared.
/// </summary>
public static class CompressionAccuracy
{
    /// <summary>
    /// Exports <paramref name="idOrPath"/> twice — float32 and as <paramref name="options"/> says (Int8/Int4 …) — and
    /// compares them over <paramref name="positions"/> positions of <paramref name="text"/>, or of
    /// <paramref name="prompt"/> continued greedily by the float32 model.
    /// </summary>
    public static CompressionAccuracyReport Measure(string idOrPath, ModelOptions options, int positions = 256, string? prompt = null, string? text = null) =>
        Measure(idOrPath, options, positions, prompt, text, null);

    /// <summary>As the other overload; <paramref name="promptIds"/> starts the sequence from token ids instead of text.</summary>
    public static CompressionAccuracyReport Measure(string idOrPath, ModelOptions options, int positions, string? prompt, string? text, int[]? promptIds)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (positions < 1) throw new ArgumentOutOfRangeException(nameof(positions), $"positions {positions} must be ≥ 1");
        var refOptions = new ModelOptions
        {
            Revision = options.Revision, Subfolder = options.Subfolder, SourceFormat = options.SourceFormat, Threads = options.Threads,
            MaxContext = options.MaxContext, ExportCacheDir = options.ExportCacheDir, Endpoint = options.Endpoint,
            HubCacheDir = options.HubCacheDir, Token = options.Token, Offline = options.Offline, Progress = options.Progress,
            WeightFormat = WeightFormat.F32,
        };
        using var reference = CausalLM.FromPretrained(idOrPath, export: true, refOptions);
        using var compressed = CausalLM.FromPretrained(idOrPath, export: true, options);
        int[] start;
        if (new object?[] { prompt, text, promptIds }.Count(o => o is not null) > 1) throw new ArgumentException("give at most one of prompt, text and prompt ids");
        if (promptIds is not null) start = promptIds;
        else if (text is not null)
        {
            var tok = reference.Tokenizer ?? throw new ArgumentException("this model has no tokenizer; give no text to use its own continuation");
            start = tok.Encode(text);
            if (start.Length > positions) start = start[..positions];
        }
        else if (prompt is not null)
            start = (reference.Tokenizer ?? throw new ArgumentException("this model has no tokenizer; give no prompt to start from its BOS token")).Encode(prompt);
        else start = [reference.GenerationConfig.BosTokenId ?? 1];
        if (start.Length == 0) throw new ArgumentException("the prompt or text encodes to no tokens");
        return text is not null ? CompareSequence(reference, compressed, start) : Compare(reference, compressed, start, positions);
    }

    /// <summary>
    /// Runs <paramref name="start"/> as one prompt through both models, then feeds the reference's greedy choices one
    /// token at a time (the decode path) until <paramref name="positions"/> positions (capped by the context) have been
    /// compared. The prompt contributes its last position; the model's own continuation supplies the rest.
    /// </summary>
    public static CompressionAccuracyReport Compare(CausalLM reference, CausalLM compressed, int[] start, int positions)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(compressed);
        ArgumentNullException.ThrowIfNull(start);
        if (start.Length == 0) throw new ArgumentException("the start sequence is empty", nameof(start));
        if (reference.VocabSize != compressed.VocabSize) throw new ArgumentException($"vocabularies differ ({reference.VocabSize} vs {compressed.VocabSize})");
        int room = Math.Min(reference.MaxContext, compressed.MaxContext) - start.Length + 1;
        positions = Math.Max(1, Math.Min(positions, room));
        reference.Reset(); compressed.Reset();
        var acc = new Accumulator(reference.VocabSize);
        var tokens = new List<int>(start);
        int next = acc.Add(reference.Forward(start, 1, start.Length, default), compressed.Forward(start, 1, start.Length, default));
        while (acc.Positions < positions)
        {
            tokens.Add(next);
            int[] id = [next];
            next = acc.Add(reference.Forward(id, 1, 1, default), compressed.Forward(id, 1, 1, default));
        }
        reference.Reset(); compressed.Reset();
        return acc.Report(reference, compressed, tokens.ToArray());
    }

    /// <summary>Teacher-forced comparison of every position of <paramref name="ids"/> in one forward pass (the prefill path).</summary>
    public static CompressionAccuracyReport CompareSequence(CausalLM reference, CausalLM compressed, int[] ids)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(compressed);
        ArgumentNullException.ThrowIfNull(ids);
        var a = reference.Logits(ids);
        var b = compressed.Logits(ids);
        var acc = new Accumulator(reference.VocabSize);
        for (int t = 0; t < a.Length; t++) acc.Add(a[t], b[t]);
        return acc.Report(reference, compressed, ids);
    }

    private sealed class Accumulator(int vocab)
    {
        private int _agree;
        private double _max, _sum;
        public int Positions { get; private set; }

        /// <summary>Adds one position; returns the reference's argmax (the next greedy token).</summary>
        public int Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
        {
            if (a.Length != vocab || b.Length != vocab) throw new InvalidOperationException($"expected one row of {vocab} logits, got {a.Length} and {b.Length}");
            for (int v = 0; v < vocab; v++)
            {
                double e = Math.Abs((double)a[v] - b[v]);
                if (e > _max || double.IsNaN(e)) _max = e;
                _sum += e;
            }
            int argA = LogitsProcessors.ArgMax(a);
            if (argA == LogitsProcessors.ArgMax(b)) _agree++;
            Positions++;
            return argA;
        }

        public CompressionAccuracyReport Report(Model reference, Model compressed, int[] tokens)
        {
            static long Bytes(Model m) => m.Graph.Weights.Sum(w => w.Length);
            return new CompressionAccuracyReport(Positions, (double)_agree / Positions, _max, _sum / ((double)Positions * vocab),
                Bytes(reference), Bytes(compressed), tokens);
        }
    }
}
