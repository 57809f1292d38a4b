using System.Text.Json.Nodes;
using ML = Microsoft.ML.Tokenizers;

namespace Hub.Tokenization;

/// <summary>How <see cref="BertWordPieceTokenizer.EncodeBatch"/> shortens inputs longer than the maximum length (HF names).</summary>
public enum TruncationStrategy
{
    /// <summary>Remove tokens one at a time from the longer of the two sequences.</summary>
    LongestFirst,
    /// <summary>Only truncate the first sequence.</summary>
    OnlyFirst,
    /// <summary>Only truncate the second sequence.</summary>
    OnlySecond,
    /// <summary>Never truncate: too-long input is an error.</summary>
    DoNotTruncate,
}

/// <summary>A BERT model input batch, each array row-major <c>[Batch, SeqLen]</c>.</summary>
/// <param name="InputIds">Token ids, right-padded with [PAD].</param>
/// <param name="TokenTypeIds">0 for the first segment, 1 for the second.</param>
/// <param name="AttentionMask">1 for real tokens, 0 for padding.</param>
/// <param name="Batch">Number of rows.</param>
/// <param name="SeqLen">Row length.</param>
public sealed record BertBatch(int[] InputIds, int[] TokenTypeIds, int[] AttentionMask, int Batch, int SeqLen)
{
    /// <summary>One row of <see cref="InputIds"/>.</summary>
    public ReadOnlySpan<int> Row(int b) => InputIds.AsSpan(b * SeqLen, SeqLen);
}

/// <summary>
/// BERT's WordPiece tokenizer (vocab.txt + tokenizer_config.json) over Microsoft.ML.Tokenizers' <see cref="ML.BertTokenizer"/>,
/// with HF's config mapping (do_lower_case; strip_accents null ⇒ follow lower-casing; tokenize_chinese_chars) and
/// HF-style batching: <c>[CLS] a [SEP] (b [SEP])</c>, truncation and right padding.
/// </summary>
public sealed class BertWordPieceTokenizer : HubTokenizer
{
    private readonly ML.BertTokenizer _ml;
    private readonly string[] _idToToken;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int> _special = new();
    private readonly string _source;
    private readonly bool _lower, _stripAccents;

    /// <summary>[CLS] id.</summary>
    public int ClsId { get; }
    /// <summary>[SEP] id.</summary>
    public int SepId { get; }
    /// <summary>[PAD] id.</summary>
    public int PadId { get; }
    /// <summary>[UNK] id.</summary>
    public int UnkId { get; }
    /// <summary>Maximum sequence length (model_max_length, else config.json max_position_embeddings, else 512).</summary>
    public int MaxLength { get; }

    private BertWordPieceTokenizer(string vocabPath, TokenizerConfig cfg, int maxLength)
    {
        _source = vocabPath;
        var lines = File.ReadAllLines(vocabPath);
        int n = lines.Length;
        while (n > 0 && lines[n - 1].Length == 0) n--;
        _idToToken = new string[n];
        _vocab = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++) { var t = lines[i].TrimEnd('\r'); _idToToken[i] = t; _vocab.TryAdd(t, i); }

        string cls = cfg.Raw["cls_token"] is { } c ? TokenizerConfig.TokenString(c, "tokenizer_config.json", "cls_token")! : "[CLS]";
        string sep = cfg.Raw["sep_token"] is { } s ? TokenizerConfig.TokenString(s, "tokenizer_config.json", "sep_token")! : "[SEP]";
        string mask = cfg.Raw["mask_token"] is { } m ? TokenizerConfig.TokenString(m, "tokenizer_config.json", "mask_token")! : "[MASK]";
        string pad = cfg.PadToken ?? "[PAD]", unk = cfg.UnkToken ?? "[UNK]";
        int Need(string tok) => _vocab.TryGetValue(tok, out var id) ? id
            : throw new TokenizerException($"{vocabPath}: special token '{tok}' is not in the vocabulary");
        ClsId = Need(cls); SepId = Need(sep); PadId = Need(pad); UnkId = Need(unk);
        foreach (var t in new[] { cls, sep, pad, unk, mask }) if (_vocab.TryGetValue(t, out var id)) _special[t] = id;
        foreach (var a in cfg.AddedTokensDecoder) if (a.Special) _special[a.Content] = a.Id;
        MaxLength = maxLength;
        _lower = cfg.DoLowerCase ?? true;
        _stripAccents = cfg.StripAccents ?? _lower;

        bool lower = cfg.DoLowerCase ?? true;
        var options = new ML.BertOptions
        {
            LowerCaseBeforeTokenization = lower,
            RemoveNonSpacingMarks = false,   // done by us: ML.Tokenizers relies on string.Normalize, a no-op without ICU
            IndividuallyTokenizeCjk = cfg.TokenizeChineseChars ?? true,
            ApplyBasicTokenization = !(cfg.Raw["do_basic_tokenize"] is JsonValue db && db.TryGetValue<bool>(out var dbv) && !dbv),
            SplitOnSpecialTokens = true,
            ClassificationToken = cls, SeparatorToken = sep, PaddingToken = pad, UnknownToken = unk, MaskingToken = mask,
        };
        try { _ml = ML.BertTokenizer.Create(vocabPath, options); }
        catch (Exception e) when (e is not HubException) { throw new TokenizerException($"{vocabPath}: cannot build the WordPiece tokenizer ({e.Message})", e); }
    }

    /// <summary>Loads vocab.txt with tokenizer_config.json (and config.json's max_position_embeddings) from <paramref name="dir"/>.</summary>
    public static BertWordPieceTokenizer FromPretrained(string dir, TokenizerConfig? config = null, JsonObject? modelConfig = null)
    {
        var vocab = Path.Combine(dir, "vocab.txt");
        if (!File.Exists(vocab)) throw new ModelFileNotFoundException(vocab, "a BERT/WordPiece tokenizer needs vocab.txt");
        config ??= TokenizerConfig.Load(dir);
        modelConfig ??= TokenizerConfig.ReadObject(Path.Combine(dir, "config.json"));
        int max = config.ModelMaxLength
                  ?? (modelConfig?["max_position_embeddings"] is JsonValue mp && mp.TryGetValue<int>(out var v) ? v : 512);
        return new BertWordPieceTokenizer(vocab, config, max);
    }

    /// <inheritdoc/>
    public override int VocabSize => _idToToken.Length;
    /// <inheritdoc/>
    public override int? PadTokenId => PadId;
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>Word-piece ids of <paramref name="text"/> without [CLS]/[SEP].</summary>
    public int[] EncodeWords(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_stripAccents) text = UnicodeNormalizer.StripAccents(_lower ? text.ToLowerInvariant() : text);
        return _ml.EncodeToIds(text, addSpecialTokens: false, considerPreTokenization: true, considerNormalization: true).ToArray();
    }

    /// <summary>Word-piece strings of <paramref name="text"/> without [CLS]/[SEP] (for debugging and tests).</summary>
    public string[] Tokenize(string text) => EncodeWords(text).Select(i => _idToToken[i]).ToArray();

    /// <summary><c>[CLS] text [SEP]</c> with <paramref name="addSpecialTokens"/>; no truncation.</summary>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        var w = EncodeWords(text);
        return addSpecialTokens ? [ClsId, .. w, SepId] : w;
    }

    /// <summary>
    /// Encodes a batch of texts (and optional second segments) as BERT inputs: <c>[CLS] a [SEP] b [SEP]</c>, truncated
    /// to <paramref name="maxLength"/> (default <see cref="MaxLength"/>) and right-padded to the longest row.
    /// </summary>
    public BertBatch EncodeBatch(IReadOnlyList<string> texts, IReadOnlyList<string?>? pairs = null, int? maxLength = null,
        TruncationStrategy truncation = TruncationStrategy.LongestFirst, bool padding = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ModelInputException("EncodeBatch needs at least one text");
        if (pairs is not null && pairs.Count != texts.Count)
            throw new ModelInputException($"pairs has {pairs.Count} entries but texts has {texts.Count}; pass one (possibly null) second segment per text");
        int max = maxLength ?? MaxLength;
        var rows = new List<(int[] Ids, int[] Types)>(texts.Count);
        for (int b = 0; b < texts.Count; b++)
        {
            var a = EncodeWords(texts[b]).ToList();
            var pairText = pairs?[b];
            List<int>? p = pairText is null ? null : EncodeWords(pairText).ToList();
            int specials = p is null ? 2 : 3;
            int total = a.Count + (p?.Count ?? 0) + specials;
            if (total > max)
            {
                if (truncation == TruncationStrategy.DoNotTruncate)
                    throw new ModelInputException($"text {b} has {total} tokens, more than the maximum length {max}, and truncation is off; shorten it or enable truncation");
                if (max < specials) throw new ModelInputException($"maxLength {max} leaves no room for the {specials} special tokens");
                int excess = total - max;
                switch (truncation)
                {
                    case TruncationStrategy.LongestFirst:
                        for (; excess > 0; excess--)
                        {
                            if (p is not null && p.Count > a.Count) p.RemoveAt(p.Count - 1);
                            else a.RemoveAt(a.Count - 1);
                        }
                        break;
                    case TruncationStrategy.OnlyFirst:
                        if (a.Count < excess) throw new ModelInputException($"text {b}: the first segment is too short to truncate by {excess} tokens (only_first)");
                        a.RemoveRange(a.Count - excess, excess);
                        break;
                    case TruncationStrategy.OnlySecond:
                        if (p is null || p.Count < excess) throw new ModelInputException($"text {b}: the second segment cannot absorb {excess} tokens of truncation (only_second)");
                        p.RemoveRange(p.Count - excess, excess);
                        break;
                }
            }
            var ids = new List<int>(max) { ClsId };
            ids.AddRange(a); ids.Add(SepId);
            int firstLen = ids.Count;
            if (p is not null) { ids.AddRange(p); ids.Add(SepId); }
            var types = new int[ids.Count];
            for (int i = firstLen; i < types.Length; i++) types[i] = 1;
            rows.Add((ids.ToArray(), types));
        }
        int seq = rows.Max(r => r.Ids.Length);
        if (!padding && rows.Any(r => r.Ids.Length != seq))
            throw new ModelInputException("rows have different lengths and padding is off; enable padding or encode texts one at a time");
        var inputIds = new int[rows.Count * seq];
        var typeIds = new int[rows.Count * seq];
        var mask = new int[rows.Count * seq];
        Array.Fill(inputIds, PadId);
        for (int b = 0; b < rows.Count; b++)
        {
            rows[b].Ids.CopyTo(inputIds, b * seq);
            rows[b].Types.CopyTo(typeIds, b * seq);
            mask.AsSpan(b * seq, rows[b].Ids.Length).Fill(1);
        }
        return new BertBatch(inputIds, typeIds, mask, rows.Count, seq);
    }

    /// <inheritdoc/>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var list = new List<int>(ids.Length);
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_idToToken.Length)
                throw new ModelInputException($"token id {id} is outside the vocabulary (size {VocabSize}) of {_source}");
            if (skipSpecialTokens && _special.ContainsValue(id)) continue;
            list.Add(id);
        }
        return _ml.Decode(list, skipSpecialTokens);
    }

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out var id) ? id : null;

    /// <inheritdoc/>
    public override string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;
}
