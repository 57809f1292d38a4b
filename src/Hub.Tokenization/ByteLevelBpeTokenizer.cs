using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ML = Microsoft.ML.Tokenizers;

namespace Hub.Tokenization;

/// <summary>Unicode normalization a tokenizer.json <c>normalizer</c> asks for before tokenization.</summary>
public enum TextNormalization
{
    /// <summary>No normalizer.</summary>
    None,
    /// <summary>NFC.</summary>
    Nfc,
    /// <summary>NFD.</summary>
    Nfd,
    /// <summary>NFKC.</summary>
    Nfkc,
    /// <summary>NFKD.</summary>
    Nfkd,
}

/// <summary>
/// Byte-level BPE (GPT-2, GPT-NeoX, Aquila, Qwen-style): added tokens are split out first, the rest goes through
/// Microsoft.ML.Tokenizers' <see cref="ML.BpeTokenizer"/> with <c>ByteLevel</c> and a regex pre-tokenizer (never
/// without one: ML.NET #7715 silently drops spaces). Decoding is ours: byte-level characters back to bytes, then UTF-8.
/// </summary>
public sealed class ByteLevelBpeTokenizer : HubTokenizer
{
    /// <summary>GPT-2's pre-tokenizer split pattern (also GPT-NeoX's, via HF's ByteLevel pre-tokenizer).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly ML.BpeTokenizer _bpe;
    private readonly string[] _idToToken;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<int, AddedToken> _added;
    private readonly Dictionary<string, int> _special;
    private readonly AddedTokenSplitter _splitter;
    private readonly TextNormalization _normalization;
    private readonly bool _addPrefixSpace;
    private readonly string _source;

    private ByteLevelBpeTokenizer(string source, Dictionary<string, int> vocab, IEnumerable<string> merges, IReadOnlyList<AddedToken> added,
        TextNormalization normalization, string pattern, bool addPrefixSpace, TokenizerConfig cfg)
    {
        _source = source;
        _vocab = vocab;
        // GPT2Tokenizer's defaults: bos/eos/unk are <|endoftext|> when no config names them.
        if (cfg.BosToken is null && cfg.EosToken is null && (vocab.ContainsKey("<|endoftext|>") || added.Any(a => a.Content == "<|endoftext|>")))
            cfg = new TokenizerConfig
            {
                BosToken = "<|endoftext|>", EosToken = "<|endoftext|>", UnkToken = "<|endoftext|>", PadToken = cfg.PadToken, ChatTemplate = cfg.ChatTemplate,
                ModelMaxLength = cfg.ModelMaxLength, AddedTokensDecoder = cfg.AddedTokensDecoder, AddPrefixSpace = cfg.AddPrefixSpace,
                AdditionalSpecialTokens = cfg.AdditionalSpecialTokens, Raw = cfg.Raw, TokenizerClass = cfg.TokenizerClass,
                AddBosToken = cfg.AddBosToken, AddEosToken = cfg.AddEosToken,
            };
        _normalization = normalization;
        _addPrefixSpace = cfg.AddPrefixSpace ?? addPrefixSpace;

        // Added tokens: from tokenizer.json / added_tokens_decoder, plus special strings named in tokenizer_config.json
        // that are in the vocabulary (GPT-2's <|endoftext|> is a vocab entry marked special only in the config).
        var all = new Dictionary<string, AddedToken>();
        foreach (var t in added.Concat(cfg.AddedTokensDecoder)) all.TryAdd(t.Content, t);
        foreach (var s in new[] { cfg.BosToken, cfg.EosToken, cfg.PadToken, cfg.UnkToken }.Concat(cfg.AdditionalSpecialTokens))
            if (s is not null && !all.ContainsKey(s) && vocab.TryGetValue(s, out var sid)) all[s] = new AddedToken(s, sid);
        _added = new Dictionary<int, AddedToken>();
        foreach (var t in all.Values) _added[t.Id] = t;
        _special = all.Values.Where(t => t.Special).ToDictionary(t => t.Content, t => t.Id);
        _splitter = new AddedTokenSplitter(all.Values);

        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, _added.Count == 0 ? 0 : _added.Keys.Max() + 1);
        _idToToken = new string[size];
        foreach (var (tok, id) in vocab)
        {
            if (id < 0) throw new TokenizerException($"{source}: token '{tok}' has negative id {id}");
            _idToToken[id] = tok;
        }
        foreach (var t in _added.Values) _idToToken[t.Id] ??= t.Content;

        // ML.Tokenizers requires every token in the model vocabulary; added tokens outside it are handled by our splitter.
        var specialsInVocab = _special.Where(kv => vocab.ContainsKey(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        var regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        try
        {
            _bpe = ML.BpeTokenizer.Create(new ML.BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = true,
                PreTokenizer = new ML.RegexPreTokenizer(regex, specialsInVocab.Count > 0 ? specialsInVocab : null),
                SpecialTokens = specialsInVocab.Count > 0 ? specialsInVocab : null,
            });
        }
        catch (Exception e) when (e is not HubException)
        {
            throw new TokenizerException($"{source}: the BPE vocabulary/merges are inconsistent ({e.Message}); every merge's parts and result must be vocabulary tokens", e);
        }

        Specials = new ConfigSpecials(cfg, TokenToId, _special, addBosByDefault: false);
        MaxLength = cfg.ModelMaxLength;
    }

    /// <summary>
    /// GPT-2 style folder: vocab.json + merges.txt, with tokenizer_config.json / special_tokens_map.json when present.
    /// <c>&lt;|endoftext|&gt;</c> is bos/eos/unk when no config names any special token (GPT2Tokenizer's default).
    /// </summary>
    public static ByteLevelBpeTokenizer FromVocabAndMerges(string vocabJsonPath, string mergesPath, TokenizerConfig? config = null)
    {
        config ??= TokenizerConfig.Load(Path.GetDirectoryName(Path.GetFullPath(vocabJsonPath))!);
        var vocab = ReadVocabJson(vocabJsonPath);
        var merges = ReadMergesTxt(mergesPath);
        return new ByteLevelBpeTokenizer(vocabJsonPath, vocab, merges, Array.Empty<AddedToken>(), TextNormalization.None, Gpt2Pattern, false, config);
    }

    /// <summary>
    /// A Hugging Face tokenizer.json whose model is byte-level BPE. Unsupported normalizers/pre-tokenizers/decoders throw
    /// <see cref="TokenizerException"/> naming the component instead of silently tokenizing differently.
    /// </summary>
    public static ByteLevelBpeTokenizer FromTokenizerJson(string tokenizerJsonPath, TokenizerConfig? config = null)
    {
        config ??= TokenizerConfig.Load(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath))!);
        var root = TokenizerConfig.ReadObject(tokenizerJsonPath) ?? throw new ModelFileNotFoundException(tokenizerJsonPath, "tokenizer.json is required");
        var p = tokenizerJsonPath;
        if (root["model"] is not JsonObject model) throw new ConfigException(p, "model", "missing");
        var type = model["type"]?.GetValue<string>();
        if (type is not null && type != "BPE")
            throw new TokenizerException($"{p}: model.type is '{type}'; only byte-level 'BPE' tokenizer.json files are supported here (WordPiece loads from vocab.txt, SentencePiece from tokenizer.model)");
        if (model["vocab"] is not JsonObject vocabNode) throw new ConfigException(p, "model.vocab", "expected an object token → id");
        var vocab = new Dictionary<string, int>(vocabNode.Count, StringComparer.Ordinal);
        foreach (var (k, v) in vocabNode) vocab[k] = v!.GetValue<int>();

        var merges = new List<string>();
        if (model["merges"] is JsonArray mergeArr)
        {
            foreach (var m in mergeArr)
            {
                switch (m)
                {
                    case JsonValue sv when sv.TryGetValue<string>(out var s): merges.Add(s); break;
                    case JsonArray pair when pair.Count == 2: merges.Add(pair[0]!.GetValue<string>() + " " + pair[1]!.GetValue<string>()); break;
                    default: throw new ConfigException(p, "model.merges", $"entry {merges.Count} is neither \"a b\" nor [\"a\", \"b\"]");
                }
            }
        }
        if (model["byte_fallback"] is JsonValue bf && bf.TryGetValue<bool>(out var byteFallback) && byteFallback)
            throw new TokenizerException($"{p}: model.byte_fallback is true (a SentencePiece-style BPE); load the repo's tokenizer.model instead");

        var added = new List<AddedToken>();
        if (root["added_tokens"] is JsonArray addedArr)
            foreach (var a in addedArr.OfType<JsonObject>())
                added.Add(new AddedToken(a["content"]!.GetValue<string>(), a["id"]!.GetValue<int>(), B(a, "special"), B(a, "lstrip"), B(a, "rstrip"), B(a, "normalized"), B(a, "single_word")));

        var norm = ParseNormalizer(root["normalizer"], p);
        var (pattern, prefixSpace) = ParsePreTokenizer(root["pre_tokenizer"], p);
        CheckDecoder(root["decoder"], p);
        return new ByteLevelBpeTokenizer(p, vocab, merges, added, norm, pattern, prefixSpace, config);

        static bool B(JsonObject o, string k) => o[k] is JsonValue v && v.TryGetValue<bool>(out var b) && b;
    }

    private static TextNormalization ParseNormalizer(JsonNode? node, string file)
    {
        if (node is null) return TextNormalization.None;
        var type = node["type"]?.GetValue<string>();
        switch (type)
        {
            case "NFC": return TextNormalization.Nfc;
            case "NFD": return TextNormalization.Nfd;
            case "NFKC": return TextNormalization.Nfkc;
            case "NFKD": return TextNormalization.Nfkd;
            case "Sequence":
                var parts = (node["normalizers"] as JsonArray ?? new JsonArray()).Select(n => ParseNormalizer(n, file)).Where(n => n != TextNormalization.None).ToList();
                if (parts.Count > 1) throw new TokenizerException($"{file}: normalizer Sequence with several Unicode normalizations is not supported");
                return parts.Count == 1 ? parts[0] : TextNormalization.None;
            default:
                throw new TokenizerException($"{file}: normalizer '{type}' is not supported for byte-level BPE (supported: NFC, NFD, NFKC, NFKD, Sequence of them)");
        }
    }

    private static (string Pattern, bool AddPrefixSpace) ParsePreTokenizer(JsonNode? node, string file)
    {
        if (node is null)
            throw new TokenizerException($"{file}: no pre_tokenizer; byte-level BPE needs the ByteLevel pre-tokenizer (a BPE without one is not GPT-2-style)");
        var type = node["type"]?.GetValue<string>();
        if (type == "ByteLevel")
        {
            bool useRegex = node["use_regex"] is not JsonValue ur || !ur.TryGetValue<bool>(out var u) || u;
            if (!useRegex) throw new TokenizerException($"{file}: ByteLevel pre_tokenizer with use_regex false needs a preceding Split pre-tokenizer");
            return (Gpt2Pattern, node["add_prefix_space"] is JsonValue ap && ap.GetValue<bool>());
        }
        if (type == "Sequence" && node["pretokenizers"] is JsonArray seq)
        {
            string? pattern = null;
            bool prefix = false, sawByteLevel = false;
            foreach (var pt in seq)
            {
                var t = pt?["type"]?.GetValue<string>();
                if (t == "Split" && pattern is null && pt!["pattern"]?["Regex"]?.GetValue<string>() is { } rx
                    && pt["behavior"]?.GetValue<string>() == "Isolated" && !(pt["invert"]?.GetValue<bool>() ?? false))
                    pattern = rx;
                else if (t == "ByteLevel")
                {
                    sawByteLevel = true;
                    prefix = pt!["add_prefix_space"] is JsonValue ap && ap.GetValue<bool>();
                    bool useRegex = pt["use_regex"] is not JsonValue ur || ur.GetValue<bool>();
                    if (useRegex && pattern is not null) throw new TokenizerException($"{file}: Split followed by ByteLevel(use_regex: true) is not supported");
                    if (useRegex) pattern = Gpt2Pattern;
                }
                else throw new TokenizerException($"{file}: pre_tokenizer component '{t}' is not supported (supported: ByteLevel, Split(Regex, Isolated) + ByteLevel)");
            }
            if (!sawByteLevel || pattern is null) throw new TokenizerException($"{file}: pre_tokenizer Sequence lacks a ByteLevel step with a split regex");
            return (pattern, prefix);
        }
        throw new TokenizerException($"{file}: pre_tokenizer '{type}' is not byte-level; only ByteLevel BPE tokenizer.json files are supported");
    }

    private static void CheckDecoder(JsonNode? node, string file)
    {
        if (node is null) return;
        var type = node["type"]?.GetValue<string>();
        if (type == "ByteLevel") return;
        if (type == "Sequence" && node["decoders"] is JsonArray seq && seq.Any(d => d?["type"]?.GetValue<string>() == "ByteLevel")) return;
        throw new TokenizerException($"{file}: decoder '{type}' is not a ByteLevel decoder; this tokenizer.json is not byte-level BPE");
    }

    /// <summary>Reads a vocab.json (token → id object).</summary>
    public static Dictionary<string, int> ReadVocabJson(string path)
    {
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "vocab.json is required for a GPT-2 style tokenizer");
        try
        {
            using var s = File.OpenRead(path);
            return JsonSerializer.Deserialize<Dictionary<string, int>>(s) ?? throw new TokenizerException($"{path}: empty vocabulary");
        }
        catch (JsonException e) { throw new TokenizerException($"{path}: not a token → id JSON object ({e.Message})", e); }
    }

    /// <summary>Reads merges.txt ("a b" per line, optional <c>#version</c> header).</summary>
    public static List<string> ReadMergesTxt(string path)
    {
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "merges.txt is required beside vocab.json");
        var list = new List<string>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version"))) continue;
            if (line.IndexOf(' ') <= 0) throw new TokenizerException($"{path}:{lineNo}: expected 'left right', got '{line}'");
            list.Add(line);
        }
        return list;
    }

    /// <summary>The model's maximum sequence length from tokenizer_config.json, if any.</summary>
    public int? MaxLength { get; }

    /// <inheritdoc/>
    public override int VocabSize => _idToToken.Length;

    /// <inheritdoc/>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = Normalize(text);
        var ids = Specials!.Start(addSpecialTokens, text.Length / 3 + 2);
        foreach (var seg in _splitter.Split(text))
        {
            if (seg.Token is { } t) { ids.Add(t.Id); continue; }
            var s = seg.Text!;
            if (_addPrefixSpace && s[0] != ' ') s = " " + s;
            ids.AddRange(_bpe.EncodeToIds(s, considerPreTokenization: true, considerNormalization: false));
        }
        return Specials.Finish(ids, addSpecialTokens);
    }

    private string Normalize(string text) => _normalization switch
    {
        TextNormalization.Nfc => UnicodeNormalizer.Normalize(text, NormalizationForm.FormC),
        TextNormalization.Nfd => UnicodeNormalizer.Normalize(text, NormalizationForm.FormD),
        TextNormalization.Nfkc => UnicodeNormalizer.Normalize(text, NormalizationForm.FormKC),
        TextNormalization.Nfkd => UnicodeNormalizer.Normalize(text, NormalizationForm.FormKD),
        _ => text,
    };

    /// <inheritdoc/>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            CheckId(id);
            if (_added.TryGetValue(id, out var at))
            {
                Flush(bytes, sb);
                if (!(skipSpecialTokens && at.Special)) sb.Append(at.Content);
                continue;
            }
            var tok = _idToToken[id] ?? throw new ModelInputException($"token id {id} is a hole in the vocabulary of {_source} (size {VocabSize})");
            if (!ByteLevel.TryAppendBytes(tok, bytes)) { Flush(bytes, sb); sb.Append(tok); }
        }
        Flush(bytes, sb);
        return sb.ToString();

        static void Flush(List<byte> b, StringBuilder sb)
        {
            if (b.Count == 0) return;
            sb.Append(Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(b)));
            b.Clear();
        }
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)_idToToken.Length)
            throw new ModelInputException($"token id {id} is outside the vocabulary (size {VocabSize}) of {_source}");
    }

    /// <inheritdoc/>
    public override int? TokenToId(string token) =>
        _vocab.TryGetValue(token, out var id) ? id : _added.Values.FirstOrDefault(t => t.Content == token)?.Id;

    /// <inheritdoc/>
    public override string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;
}
