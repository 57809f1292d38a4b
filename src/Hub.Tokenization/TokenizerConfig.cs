using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hub.Tokenization;

/// <summary>
/// An added token as tokenizer.json / tokenizer_config.json describe it; the flags decide how it is matched in raw text
/// before the model's own algorithm sees the rest.
/// </summary>
/// <param name="Content">The literal text of the token.</param>
/// <param name="Id">Its id.</param>
/// <param name="Special">Special tokens are dropped by <c>Decode(skipSpecialTokens: true)</c>.</param>
/// <param name="LStrip">The match swallows whitespace on its left.</param>
/// <param name="RStrip">The match swallows whitespace on its right.</param>
/// <param name="Normalized">Matched against normalized text (HF semantics); kept for fidelity.</param>
/// <param name="SingleWord">Only matched when not inside a word.</param>
public sealed record AddedToken(string Content, int Id, bool Special = true, bool LStrip = false, bool RStrip = false,
    bool Normalized = false, bool SingleWord = false);

/// <summary>
/// What tokenizer_config.json and special_tokens_map.json say about a tokenizer: special-token strings, whether BOS/EOS
/// are added, the chat template and the maximum length. Missing files give an empty config (all fields null).
/// </summary>
public sealed class TokenizerConfig
{
    /// <summary>The <c>tokenizer_class</c> field (e.g. <c>GPT2Tokenizer</c>, <c>ChatGLMTokenizer</c>).</summary>
    public string? TokenizerClass { get; init; }
    /// <summary>BOS token content.</summary>
    public string? BosToken { get; init; }
    /// <summary>EOS token content.</summary>
    public string? EosToken { get; init; }
    /// <summary>PAD token content.</summary>
    public string? PadToken { get; init; }
    /// <summary>UNK token content.</summary>
    public string? UnkToken { get; init; }
    /// <summary><c>add_bos_token</c>, when the file states it.</summary>
    public bool? AddBosToken { get; init; }
    /// <summary><c>add_eos_token</c>, when the file states it.</summary>
    public bool? AddEosToken { get; init; }
    /// <summary><c>add_prefix_space</c>, when the file states it.</summary>
    public bool? AddPrefixSpace { get; init; }
    /// <summary><c>do_lower_case</c> (BERT).</summary>
    public bool? DoLowerCase { get; init; }
    /// <summary><c>strip_accents</c> (BERT; null means "follow do_lower_case").</summary>
    public bool? StripAccents { get; init; }
    /// <summary><c>tokenize_chinese_chars</c> (BERT).</summary>
    public bool? TokenizeChineseChars { get; init; }
    /// <summary>The Jinja chat template (a string, or the "default" entry of the list form).</summary>
    public string? ChatTemplate { get; init; }
    /// <summary><c>model_max_length</c>, when it is a real limit (HF writes 1e30 for "none").</summary>
    public int? ModelMaxLength { get; init; }
    /// <summary>Tokens of <c>added_tokens_decoder</c>.</summary>
    public IReadOnlyList<AddedToken> AddedTokensDecoder { get; init; } = Array.Empty<AddedToken>();
    /// <summary>Additional special token strings (<c>additional_special_tokens</c>).</summary>
    public IReadOnlyList<string> AdditionalSpecialTokens { get; init; } = Array.Empty<string>();
    /// <summary>The raw tokenizer_config.json object (empty when absent), for model-specific fields.</summary>
    public JsonObject Raw { get; init; } = new();

    /// <summary>Reads tokenizer_config.json and special_tokens_map.json from <paramref name="dir"/> (either may be absent).</summary>
    public static TokenizerConfig Load(string dir)
    {
        var cfgPath = Path.Combine(dir, "tokenizer_config.json");
        var mapPath = Path.Combine(dir, "special_tokens_map.json");
        var cfg = ReadObject(cfgPath) ?? new JsonObject();
        var map = ReadObject(mapPath) ?? new JsonObject();

        string? Special(string key) => TokenString(cfg[key], cfgPath, key) ?? TokenString(map[key], mapPath, key);

        var added = new List<AddedToken>();
        if (cfg["added_tokens_decoder"] is JsonObject dec)
        {
            foreach (var (k, v) in dec)
            {
                if (!int.TryParse(k, out var id) || v is not JsonObject o || o["content"]?.GetValue<string>() is not { } content)
                    throw new ConfigException(cfgPath, $"added_tokens_decoder.{k}", "expected an integer key and an object with \"content\"");
                added.Add(new AddedToken(content, id, Bool(o, "special") ?? true, Bool(o, "lstrip") ?? false, Bool(o, "rstrip") ?? false,
                    Bool(o, "normalized") ?? false, Bool(o, "single_word") ?? false));
            }
        }

        var extra = new List<string>();
        foreach (var src in new[] { (cfg, cfgPath), (map, mapPath) })
            if (src.Item1["additional_special_tokens"] is JsonArray arr)
                foreach (var e in arr)
                    if (TokenString(e, src.Item2, "additional_special_tokens") is { } s && !extra.Contains(s)) extra.Add(s);

        string? template = cfg["chat_template"] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonArray a => a.OfType<JsonObject>().FirstOrDefault(o => o["name"]?.GetValue<string>() == "default")?["template"]?.GetValue<string>()
                           ?? a.OfType<JsonObject>().FirstOrDefault()?["template"]?.GetValue<string>(),
            _ => null,
        };
        if (template is null)
        {
            var jinja = Path.Combine(dir, "chat_template.jinja");
            if (File.Exists(jinja)) template = File.ReadAllText(jinja);
        }

        int? maxLen = null;
        if (cfg["model_max_length"] is JsonValue mv && mv.TryGetValue<double>(out var ml) && ml > 0 && ml < int.MaxValue) maxLen = (int)ml;

        return new TokenizerConfig
        {
            TokenizerClass = Str(cfg, "tokenizer_class"),
            BosToken = Special("bos_token"),
            EosToken = Special("eos_token"),
            PadToken = Special("pad_token"),
            UnkToken = Special("unk_token"),
            AddBosToken = Bool(cfg, "add_bos_token"),
            AddEosToken = Bool(cfg, "add_eos_token"),
            AddPrefixSpace = Bool(cfg, "add_prefix_space"),
            DoLowerCase = Bool(cfg, "do_lower_case"),
            StripAccents = Bool(cfg, "strip_accents"),
            TokenizeChineseChars = Bool(cfg, "tokenize_chinese_chars"),
            ChatTemplate = template,
            ModelMaxLength = maxLen,
            AddedTokensDecoder = added,
            AdditionalSpecialTokens = extra,
            Raw = cfg,
        };
    }

    internal static JsonObject? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }) as JsonObject
                   ?? throw new TokenizerException($"{path}: expected a JSON object at the top level");
        }
        catch (JsonException e)
        {
            throw new TokenizerException($"{path}: invalid JSON ({e.Message}); re-download the file", e);
        }
    }

    /// <summary>Accepts a special token in string form or object form (<c>{"content": ...}</c>).</summary>
    internal static string? TokenString(JsonNode? node, string file, string field) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
        _ => throw new ConfigException(file, field, "expected a token string or an object with \"content\""),
    };

    private static bool? Bool(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;
    private static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}
