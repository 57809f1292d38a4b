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
/// both models decode the same sequence one token at a time through their KV caches — the decode kernels a user
/// runs — and every position's logits are compared.
/// </summary>
public static class CompressionAccuracy
{
    /// <summary>
    /// Exports <paramref name="idOrPath"/> twice — float32 and as <paramref name="options"/> says (Int8/Int4 …) — and
    /// compares them over <paramref name="positions"/> positions of <paramref name="text"/>, or of
    /// <paramref name="prompt"/> continued greedily by the float32 model.
    /// </summary>
    public static CompressionAccuracyReport Measure(string idOrPath, ModelOptions options, int positions = 256, string? prompt = null, string? text = null)
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
        if (text is not null)
        {
            var tok = reference.Tokenizer ?? throw new ArgumentException("this model has no tokenizer; give no text to use its own continuation");
            start = tok.Encode(text);
            if (start.Length > positions) start = start[..positions];
        }
        else if (prompt is not null && reference.Tokenizer is { } tok) start = tok.Encode(prompt);
        else start = [reference.GenerationConfig.BosTokenId ?? 1];
        if (start.Length == 0) throw new ArgumentException("the prompt or text encodes to no tokens");
        return Compare(reference, compressed, start, text is not null ? start.Length : positions);
    }

    /// <summary>
    /// Feeds <paramref name="start"/> and then the reference's greedy choices to both models one token at a time until
    /// <paramref name="positions"/> positions (capped by the context) have been compared.
    /// </summary>
    public static CompressionAccuracyReport Compare(CausalLM reference, CausalLM compressed, int[] start, int positions)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(compressed);
        ArgumentNullException.ThrowIfNull(start);
        if (reference.VocabSize != compressed.VocabSize) throw new ArgumentException($"vocabularies differ ({reference.VocabSize} vs {compressed.VocabSize})");
        positions = Math.Min(positions, Math.Min(reference.MaxContext, compressed.MaxContext));
        reference.Reset(); compressed.Reset();
        var tokens = new List<int>(start.Take(positions));
        int agree = 0;
        double maxErr = 0, sumErr = 0;
        int one = 0;
        for (int t = 0; t < positions && t < tokens.Count; t++)
        {
            int[] id = [tokens[t]];
            var a = reference.Forward(id, 1, 1, default);
            int argA = ArgMax(a);
            var b = compressed.Forward(id, 1, 1, default);
            int argB = ArgMax(b);
            for (int v = 0; v < a.Length; v++)
            {
                double e = Math.Abs((double)a[v] - b[v]);
                if (e > maxErr || double.IsNaN(e)) maxErr = e;
                sumErr += e;
            }
            if (argA == argB) agree++;
            one++;
            if (tokens.Count == t + 1 && tokens.Count < positions) tokens.Add(argA);
        }
        reference.Reset(); compressed.Reset();
        static long Bytes(Model m) => m.Graph.Weights.Sum(w => w.Length);
        return new CompressionAccuracyReport(one, (double)agree / one, maxErr, sumErr / ((double)one * reference.VocabSize),
            Bytes(reference), Bytes(compressed), tokens.ToArray());
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
