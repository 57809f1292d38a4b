using System.Globalization;

namespace Hub;

/// <summary>The classification of one text (or text pair).</summary>
public sealed class ClassificationResult
{
    /// <summary>The best label's name (from the model's id2label).</summary>
    public required string Label { get; init; }
    /// <summary>The best label's id.</summary>
    public required int LabelId { get; init; }
    /// <summary>The best label's probability (softmax for single-label, sigmoid for multi-label, the raw value for regression).</summary>
    public required float Score { get; init; }
    /// <summary>Every label's probability, in id order (for regression: the logits).</summary>
    public required float[] Probabilities { get; init; }
    /// <summary>The raw logits, in id order.</summary>
    public required float[] Logits { get; init; }
    /// <summary>Label names in id order.</summary>
    public required IReadOnlyList<string> Labels { get; init; }

    /// <inheritdoc/>
    public override string ToString() => $"{Label} ({Score.ToString("0.0000", CultureInfo.InvariantCulture)})";
}

/// <summary>Where a batch's shorter rows get their padding (transformers' tokenizer <c>padding_side</c>).</summary>
public enum PaddingSide
{
    /// <summary>Pads after the tokens (the default of most tokenizers).</summary>
    Right,
    /// <summary>Pads before the tokens (decoder-only models often ship <c>padding_side: left</c>).</summary>
    Left,
}

/// <summary>
/// Text (and text-pair) classification with a sequence classification head (BertForSequenceClassification on [CLS],
/// GPT2ForSequenceClassification on each row's last non-padding token):
/// probabilities follow the config's <c>problem_type</c> as transformers' pipelines do (softmax for
/// single_label_classification, sigmoid for multi_label_classification, raw values for regression).
/// </summary>
public sealed class SequenceClassifier : Model
{
    private readonly EncoderSession _session;
    private readonly string[] _labels;

    internal SequenceClassifier(LoadedModel loaded) : base(loaded)
    {
        var md = loaded.Ir.Graph.Metadata;
        NumLabels = (int?)md["num_labels"] ?? throw new UnsupportedModelException($"{loaded.Directory}: graph metadata lacks num_labels; re-export the model");
        _labels = new string[NumLabels];
        for (int i = 0; i < NumLabels; i++)
            _labels[i] = (string?)md["id2label"]?[i.ToString(CultureInfo.InvariantCulture)] ?? $"LABEL_{i}";
        ProblemType = (string?)md["problem_type"] ?? (NumLabels == 1 ? "regression" : "single_label_classification");
        _session = new EncoderSession(loaded, this) { PaddingSide = PaddingSideOf(loaded.Directory) };
    }

    // tokenizer_config.json's padding_side (transformers' default: right).
    private static PaddingSide PaddingSideOf(string dir)
    {
        var path = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(path)) return PaddingSide.Right;
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["padding_side"]?.GetValue<string>() == "left" ? PaddingSide.Left : PaddingSide.Right;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            throw new ConfigException(path, "padding_side", $"tokenizer_config.json is not valid JSON or padding_side is not a string ({e.Message}); fix the file");
        }
    }

    /// <summary>Loads a sequence classifier (see <see cref="Model.FromPretrained"/>).</summary>
    public static new SequenceClassifier FromPretrained(string idOrPath, bool export = false, ModelOptions? options = null)
    {
        var model = Model.FromPretrained(idOrPath, export, options);
        if (model is SequenceClassifier c) return c;
        var kind = model.GetType().Name;
        model.Dispose();
        throw new UnsupportedModelException($"{idOrPath} is a {kind}, not a sequence classifier; load it with Model.FromPretrained or {kind}.FromPretrained");
    }

    /// <summary>Number of labels (the classifier's width).</summary>
    public int NumLabels { get; }

    /// <summary>Label names in id order (id2label).</summary>
    public IReadOnlyList<string> Labels => _labels;

    /// <summary>transformers' problem_type: single_label_classification, multi_label_classification or regression.</summary>
    public string ProblemType { get; }

    /// <summary>The longest input in tokens (max_position_embeddings).</summary>
    public int MaxLength => _session.MaxPositions;

    /// <summary>
    /// Where shorter rows of a batch are padded, for models whose tokenizer is not WordPiece (BERT always pads right).
    /// Defaults to tokenizer_config.json's <c>padding_side</c>. A GPT-2 classifier gives the same result either way:
    /// it reads each row's last non-padding token and its positions skip left padding.
    /// </summary>
    public PaddingSide PaddingSide { get => _session.PaddingSide; set => _session.PaddingSide = value; }

    /// <summary>Rows per forward pass when classifying many texts (bounds activation memory).</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Classifies one text, or the pair (<paramref name="text"/>, <paramref name="pair"/>).</summary>
    public ClassificationResult Classify(string text, string? pair = null) => Classify([text], pair is null ? null : [pair])[0];

    /// <summary>
    /// Classifies texts, optionally each with a second segment (<c>pairs[i]</c> belongs to <c>texts[i]</c>; null = none).
    /// Inputs longer than <paramref name="maxLength"/> (default and upper bound: <see cref="MaxLength"/>) are truncated
    /// longest-first, or rejected with a <see cref="ModelInputException"/> when <paramref name="truncation"/> is false.
    /// </summary>
    public IReadOnlyList<ClassificationResult> Classify(IReadOnlyList<string> texts, IReadOnlyList<string?>? pairs = null, int? maxLength = null, bool truncation = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("give at least one text to classify", nameof(texts));
        if (pairs is not null && pairs.Count != texts.Count)
            throw new ArgumentException($"pairs has {pairs.Count} entries but texts has {texts.Count}; give one (possibly null) pair per text", nameof(pairs));
        int max = maxLength ?? MaxLength;
        if (max > MaxLength)
            throw new ModelInputException($"maxLength {max} exceeds the model's {MaxLength} positions (max_position_embeddings); use at most {MaxLength}");
        var results = new ClassificationResult[texts.Count];
        int step = Math.Max(1, BatchSize);
        for (int start = 0; start < texts.Count; start += step)
        {
            int n = Math.Min(step, texts.Count - start);
            var batch = _session.Tokenize(TextEncoder.Slice(texts, start, n), pairs is null ? null : TextEncoder.Slice(pairs, start, n), max, truncation);
            var logits = _session.Run(batch, "logits");
            if (logits.Length != n * NumLabels)
                throw new UnsupportedModelException($"{Directory}: the graph's logits have {logits.Length} values for {n} rows of {NumLabels} labels; re-export the model");
            for (int b = 0; b < n; b++)
                results[start + b] = Result(logits.Slice(b * NumLabels, NumLabels).ToArray());
        }
        return results;
    }

    private ClassificationResult Result(float[] logits)
    {
        var probs = new float[logits.Length];
        switch (ProblemType)
        {
            case "multi_label_classification":
                for (int i = 0; i < probs.Length; i++) probs[i] = (float)(1 / (1 + Math.Exp(-logits[i])));
                break;
            case "regression":
                logits.CopyTo(probs, 0);
                break;
            default:
                double max = logits.Max(), sum = 0;
                for (int i = 0; i < probs.Length; i++) sum += Math.Exp(logits[i] - max);
                for (int i = 0; i < probs.Length; i++) probs[i] = (float)(Math.Exp(logits[i] - max) / sum);
                break;
        }
        int best = 0;
        for (int i = 1; i < probs.Length; i++) if (probs[i] > probs[best]) best = i;
        return new ClassificationResult { Label = _labels[best], LabelId = best, Score = probs[best], Probabilities = probs, Logits = logits, Labels = _labels };
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _session.Dispose();
    }
}
