using Hub.Models.Bert;
using Hub.Runtime;
using Hub.Tokenization;

namespace Hub;

/// <summary>
/// Sentence embeddings from an encoder (BERT, MiniLM, ...): the repo's sentence-transformers pipeline
/// (<c>modules.json</c>: pooling mode, Normalize; <c>sentence_bert_config.json</c>: default truncation) runs on the
/// hidden states the graph returns, exactly as <c>SentenceTransformer.encode</c> does.
/// </summary>
public sealed class TextEncoder : Model
{
    private readonly EncoderSession _session;

    internal TextEncoder(LoadedModel loaded) : base(loaded)
    {
        _session = new EncoderSession(loaded, this);
        Pipeline = SentenceEmbeddingConfig.Load(loaded.Directory);
        Dimension = _session.Hidden * Pipeline.Pooling.Count;
    }

    /// <summary>Loads a text encoder (see <see cref="Model.FromPretrained"/>).</summary>
    public static new TextEncoder FromPretrained(string idOrPath, bool export = false, ModelOptions? options = null)
    {
        var model = Model.FromPretrained(idOrPath, export, options);
        if (model is TextEncoder e) return e;
        var kind = model.GetType().Name;
        model.Dispose();
        throw new UnsupportedModelException($"{idOrPath} is a {kind}, not a text encoder; load it with Model.FromPretrained or {kind}.FromPretrained");
    }

    /// <summary>The pooling/normalization pipeline read from the repo.</summary>
    public SentenceEmbeddingConfig Pipeline { get; }

    /// <summary>Width of one embedding.</summary>
    public int Dimension { get; }

    /// <summary>Default truncation: sentence_bert_config.json's max_seq_length, else the model's position limit.</summary>
    public int DefaultMaxLength => Math.Min(Pipeline.MaxSeqLength ?? _session.MaxPositions, _session.MaxPositions);

    /// <summary>Rows per forward pass when embedding many texts (bounds activation memory).</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>The embedding of one text.</summary>
    public float[] Embed(string text) => Embed([text])[0];

    /// <summary>
    /// Embeds <paramref name="texts"/> (one vector of <see cref="Dimension"/> floats each, in input order), truncating
    /// each to <paramref name="maxLength"/> tokens (default <see cref="DefaultMaxLength"/>; never more than the model's
    /// position table).
    /// </summary>
    public float[][] Embed(IReadOnlyList<string> texts, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("give at least one text to embed", nameof(texts));
        int max = maxLength ?? DefaultMaxLength;
        if (max < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), $"maxLength {max} leaves no room for [CLS] and [SEP]");
        if (max > _session.MaxPositions)
            throw new ModelInputException($"maxLength {max} exceeds the model's {_session.MaxPositions} positions (max_position_embeddings); use at most {_session.MaxPositions}");
        var result = new float[texts.Count][];
        for (int start = 0; start < texts.Count; start += Math.Max(1, BatchSize))
        {
            int n = Math.Min(Math.Max(1, BatchSize), texts.Count - start);
            var chunk = Slice(texts, start, n);
            var batch = _session.Tokenize(chunk, null, max, truncation: true);
            var hidden = _session.Run(batch, "last_hidden_state");
            var mask = Array.ConvertAll(batch.AttentionMask, x => (float)x);
            var pooled = Pipeline.Pool(hidden, mask, batch.Batch, batch.SeqLen, _session.Hidden);
            pooled.CopyTo(result, start);
        }
        return result;
    }

    /// <summary>Hidden states <c>[seq][hidden]</c> of one text (for inspection and comparison with transformers).</summary>
    public float[][] HiddenStates(string text, int? maxLength = null)
    {
        var batch = _session.Tokenize([text], null, maxLength ?? DefaultMaxLength, truncation: true);
        var flat = _session.Run(batch, "last_hidden_state");
        var rows = new float[batch.SeqLen][];
        for (int t = 0; t < rows.Length; t++) rows[t] = flat.Slice(t * _session.Hidden, _session.Hidden).ToArray();
        return rows;
    }

    /// <summary>Cosine similarity of two embeddings (1 = same direction).</summary>
    public static float CosineSimilarity(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"embeddings differ in width: {a.Length} vs {b.Length}", nameof(b));
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
        return aa == 0 || bb == 0 ? 0f : (float)(ab / Math.Sqrt(aa * bb));
    }

    internal static IReadOnlyList<T> Slice<T>(IReadOnlyList<T> list, int start, int count)
    {
        var r = new T[count];
        for (int i = 0; i < count; i++) r[i] = list[start + i];
        return r;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _session.Dispose();
    }
}

/// <summary>
/// What the encoder classes share: tokenization into the graph's inputs (ids, token types, mask, positions 0..S-1),
/// one infer request, and input checks (empty batch, too-long text, ids outside the vocabulary).
/// </summary>
internal sealed class EncoderSession : IDisposable
{
    private readonly LoadedModel _loaded;
    private readonly Model _owner;
    private readonly InferRequest _request;
    private readonly bool _hasTypes, _hasPositions, _lastToken, _linearPositions;
    private int[] _positions = [], _lastIndex = [];
    private float[] _mask = [];

    public EncoderSession(LoadedModel loaded, Model owner)
    {
        _loaded = loaded;
        _owner = owner;
        var md = loaded.Ir.Graph.Metadata;
        MaxPositions = (int?)md["max_position_embeddings"] ?? 512;
        ConfigPadId = (int?)md["pad_token_id"];
        PadId = ConfigPadId ?? 0;
        Hidden = (int?)md["hidden_size"] ?? (int)(loaded.Ir.Graph.Outputs.FirstOrDefault(o => o.Name == "last_hidden_state")?.Shape[^1].Value ?? 0);
        _hasTypes = loaded.Ir.Graph.Inputs.Any(i => i.Name == "token_type_ids");
        _hasPositions = loaded.Ir.Graph.Inputs.Any(i => i.Name == "position_ids");
        // Decoder classifiers (GPT2ForSequenceClassification): pooled on the last non-padding token, positions that
        // skip left padding (docs/model-graphs.md).
        _lastToken = loaded.Ir.Graph.Inputs.Any(i => i.Name == "last_token_index");
        _linearPositions = (string?)md["positions"] == "linear";
        _request = loaded.Compiled.CreateInferRequest();
    }

    public int MaxPositions { get; }
    public int PadId { get; }
    /// <summary>The config's pad_token_id, or null when it has none.</summary>
    public int? ConfigPadId { get; }
    /// <summary>Where padding goes in a batch of unequal rows (non-WordPiece tokenizers only; BERT pads right).</summary>
    public PaddingSide PaddingSide { get; set; } = PaddingSide.Right;
    public int Hidden { get; }

    /// <summary>The WordPiece tokenizer, or a typed error naming vocab.txt when the model folder has none.</summary>
    public HubTokenizer Tokenizer => _owner.Tokenizer ?? throw new ModelFileNotFoundException(
        Path.Combine(_loaded.Directory, "vocab.txt"),
        "the model has no tokenizer files (BERT needs vocab.txt with tokenizer_config.json); copy them from the original repo into the checkpoint folder and export again");

    /// <summary>Tokenizes a batch: [CLS] a [SEP] (b [SEP]), truncated to <paramref name="maxLength"/>, right-padded.</summary>
    public BertBatch Tokenize(IReadOnlyList<string> texts, IReadOnlyList<string?>? pairs, int maxLength, bool truncation)
    {
        if (texts.Count == 0) throw new ArgumentException("give at least one text", nameof(texts));
        for (int i = 0; i < texts.Count; i++)
            if (texts[i] is null) throw new ArgumentNullException(nameof(texts), $"text {i} is null");
        maxLength = Math.Min(maxLength, MaxPositions);
        var tok = Tokenizer;
        if (tok is BertWordPieceTokenizer bert)
            return bert.EncodeBatch(texts, pairs, maxLength, truncation ? TruncationStrategy.LongestFirst : TruncationStrategy.DoNotTruncate);
        // Other tokenizers (e.g. byte-level BPE for GPT-2 classifiers): the tokenizer's own special tokens, no pairs.
        if (pairs is not null && pairs.Any(p => p is not null))
            throw new UnsupportedModelException($"{_loaded.Directory}: text pairs need a BERT (WordPiece) tokenizer; this model's is {tok.GetType().Name}");
        var rows = texts.Select(t => tok.Encode(t)).ToList();
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Length <= maxLength) continue;
            if (!truncation)
                throw new ModelInputException($"text {i} has {rows[i].Length} tokens, more than the maximum length {maxLength}, and truncation is off; shorten it or enable truncation");
            rows[i] = rows[i][..maxLength];
        }
        // Last-token classifiers find each row's end by its pad id, so they pad with the config's (as transformers does).
        int? pad = _lastToken ? ConfigPadId : tok.PadTokenId ?? PadId;
        if (_lastToken && pad is null && rows.Count > 1)
            throw new ModelInputException(
                $"Cannot handle batch sizes > 1 if no padding token is defined: {Path.Combine(_loaded.Directory, "config.json")} has no pad_token_id, " +
                $"so the last token of a padded row cannot be found ({rows.Count} texts given); classify one text at a time, or set pad_token_id " +
                "in config.json (GPT-2 repos usually use the eos id, 50256) and export again");
        int seq = Math.Max(1, rows.Max(r => r.Length));
        var ids = new int[rows.Count * seq];
        var mask = new int[rows.Count * seq];
        Array.Fill(ids, pad ?? 0);
        for (int b = 0; b < rows.Count; b++)
        {
            int at = b * seq + (PaddingSide == PaddingSide.Left ? seq - rows[b].Length : 0);
            rows[b].CopyTo(ids, at);
            mask.AsSpan(at, rows[b].Length).Fill(1);
        }
        return new BertBatch(ids, new int[ids.Length], mask, rows.Count, seq);
    }

    /// <summary>Runs one forward pass and returns <paramref name="output"/> (valid until the next run).</summary>
    public ReadOnlySpan<float> Run(BertBatch batch, string output)
    {
        int b = batch.Batch, s = batch.SeqLen, n = b * s;
        if (b == 0 || s == 0) throw new ModelInputException("empty batch: give at least one non-empty text");
        if (s > MaxPositions)
            throw new ModelInputException($"{s} tokens exceed the model's {MaxPositions} positions (max_position_embeddings); enable truncation or shorten the text");
        if (_mask.Length < n) { _mask = new float[n]; _positions = new int[n]; }
        if (_lastIndex.Length < b) _lastIndex = new int[b];
        for (int i = 0; i < n; i++)
        {
            _mask[i] = batch.AttentionMask[i];
            _positions[i] = i % s;
        }
        if (_linearPositions)
        {
            // Position = index among the row's real tokens (cumsum(mask) - 1, pads 0), so left padding changes nothing.
            for (int r = 0; r < b; r++)
                for (int t = 0, seen = 0; t < s; t++)
                {
                    bool real = batch.AttentionMask[r * s + t] != 0;
                    _positions[r * s + t] = real ? seen : 0;
                    if (real) seen++;
                }
        }
        if (_lastToken)
        {
            // transformers: the rightmost token whose id != pad_token_id (0 when the row is all padding); no pad id →
            // the last position (a batch of one).
            for (int r = 0; r < b; r++)
            {
                int last = ConfigPadId is null ? s - 1 : 0;
                if (ConfigPadId is int padId)
                    for (int t = s - 1; t >= 0; t--)
                        if (batch.InputIds[r * s + t] != padId) { last = t; break; }
                _lastIndex[r] = last;
            }
            _request.SetInput("last_token_index", _lastIndex.AsSpan(0, b), b);
        }
        _request.SetInput("input_ids", batch.InputIds.AsSpan(0, n), b, s);
        if (_hasTypes) _request.SetInput("token_type_ids", batch.TokenTypeIds.AsSpan(0, n), b, s);
        _request.SetInput("attention_mask", _mask.AsSpan(0, n), b, s);
        if (_hasPositions) _request.SetInput("position_ids", _positions.AsSpan(0, n), b, s);
        _request.Infer();
        return _request.GetOutput(output);
    }

    public void Dispose() => _request.Dispose();
}
